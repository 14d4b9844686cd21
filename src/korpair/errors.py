"""Exceptions raised by korpair.

Every error a user can cause is a ``KorpairError``; its message says what is
wrong, where (file and line, or config key, or request field) and what is
allowed. Only the CLI turns them into an exit code.
"""


class KorpairError(Exception):
    """Base class: a problem the user can fix."""


class ConfigError(KorpairError):
    """A config file or option is invalid."""


class CorpusError(KorpairError):
    """A data file is missing, malformed or holds invalid rows."""


class DownloadError(KorpairError):
    """A corpus could not be downloaded or failed its checksum."""


class ModelFolderError(KorpairError):
    """A model folder is missing files or cannot be loaded."""


class OutputExistsError(KorpairError):
    """The output folder already holds a run."""


class TrainingInterrupted(KorpairError):
    """Training stopped on a signal after saving a resumable checkpoint."""

    def __init__(self, output_dir, step: int, resumable: bool = True) -> None:
        self.output_dir, self.step = output_dir, step
        if resumable:
            message = (f"training interrupted at step {step}; a resumable checkpoint is in "
                       f"{output_dir}/checkpoints/; continue it with resume='{output_dir}'")
        else:
            message = "training stopped by a signal before its first step; nothing to resume: start it again"
        super().__init__(message)
