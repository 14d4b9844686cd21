"""Quiet by default: from Python and from the shell, a run prints korpair's own lines, none of the libraries'."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import warnings
from pathlib import Path

from korpair.quiet import LIGHTNING_LOGGERS, quiet, verbose_requested

# Lines the libraries print on a plain CPU run when left to themselves (each seen on this machine).
CHATTER = ("GPU available", "TPU available", "💡", "Tip:", "LeafSpec", "treespec", "Writing model shards",
           "Loading weights", "Using bfloat16", "`Trainer(", "Trainer.fit", "Loading `train_dataloader`",
           "Warning", "warn(", "site-packages", "INFO:")
RUN = ["trainer.max_steps=3", "trainer.progress_bar=false", "data.batch_size=16"]


def _library_state() -> dict:
    from huggingface_hub.utils import are_progress_bars_disabled
    from transformers.utils import logging as hf_logging

    return {"lightning": [logging.getLogger(n).level for n in LIGHTNING_LOGGERS],
            "transformers": (hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()),
            "hub_bars_off": are_progress_bars_disabled(), "filters": list(warnings.filters),
            "root": (list(logging.getLogger().handlers), list(logging.getLogger().filters))}


def test_quiet_silences_the_libraries_and_puts_them_back_as_they_were():
    import lightning.pytorch  # noqa: F401  (its import sets its loggers' levels: that is not quiet's doing)
    from transformers.utils import logging as hf_logging

    before = _library_state()
    with quiet():
        assert all(logging.getLogger(n).level == logging.WARNING for n in LIGHTNING_LOGGERS)
        assert not hf_logging.is_progress_bar_enabled() and hf_logging.get_verbosity() == logging.ERROR
        with warnings.catch_warnings(record=True) as caught:  # quiet's filters, korpair's and the user's warnings
            warnings.warn_explicit("LeafSpec is deprecated", UserWarning, "x.py", 1, module="lightning.pytorch.x")
            warnings.warn_explicit("will save all targets", UserWarning, "x.py", 1, module="torchmetrics.x")
            warnings.warn_explicit("a user's own warning", UserWarning, "x.py", 1, module="notebook")
        assert [str(w.message) for w in caught] == ["a user's own warning"]
    assert _library_state() == before
    with quiet(verbose=True):
        assert _library_state() == before, "verbose changes nothing"
        assert verbose_requested(), "code below the API can tell that the user asked for everything"
    assert not verbose_requested()


def test_onnxruntime_advice_on_the_root_logger_is_dropped_and_configures_nothing(tmp_path):
    """onnxruntime calls logging.warning(): without quiet that prints, and installs a root handler for good."""
    code = """
import logging, sys, korpair.quiet as q
fake = sys.argv[1]
with q.quiet():
    logging.warning("mine")  # a user's own root warning still prints
    exec(compile("import logging; logging.warning('Please consider pre-processing before quantization')",
                 fake, "exec"))
print("handlers", len(logging.getLogger().handlers))
"""
    fake = tmp_path / "site-packages" / "onnxruntime" / "quantization" / "quantize.py"
    done = subprocess.run([sys.executable, "-c", code, str(fake)], capture_output=True, text=True, check=True)
    assert "pre-processing" not in done.stderr and "mine" in done.stderr
    assert done.stdout.strip() == "handlers 0"


def _korpair_lines(records_file: Path) -> set[str]:
    messages = [json.loads(line) for line in records_file.read_text(encoding="utf-8").splitlines()]
    return {line.strip() for m in messages for line in m.splitlines()}


def _check_only_korpair(output: str, records_file: Path, what: str) -> None:
    ours = _korpair_lines(records_file)
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for line in lines:
        assert not any(word in line for word in CHATTER), f"{what} printed a library's line: {line!r}"
        assert line in ours or line.startswith("RESULT"), f"{what} printed a line korpair did not log: {line!r}"


# Records korpair's own log messages (at every level) to a file, beside whatever the run prints.
RECORDER = """
import json, logging, sys
class Record(logging.Handler):
    def emit(self, record):
        with open(sys.argv[1], "a", encoding="utf-8") as fh:
            fh.write(json.dumps(record.getMessage(), ensure_ascii=False) + "\\n")
logging.getLogger("korpair").addHandler(Record())
"""


def test_korpair_train_from_python_prints_no_library_chatter_and_verbose_shows_it(tiny_model_dir, tmp_path):
    """A fresh Python session, as a notebook user has: only korpair's warnings may print (Python's last resort)."""
    records = tmp_path / "records.jsonl"
    records.touch()
    common = [f"model.name_or_path={tiny_model_dir}", f"data.cache_dir={tmp_path / 'cache'}", *RUN]
    code = RECORDER + f"""
import korpair
r = korpair.train("sample", {[f"trainer.output_dir={tmp_path / 'quiet'}", *common]!r})
print("RESULT", r.metrics["global_step"], flush=True)
print("VERBOSE", flush=True)
print("VERBOSE", file=sys.stderr, flush=True)
korpair.train("sample", {[f"trainer.output_dir={tmp_path / 'verbose'}", *common]!r}, verbose=True)
"""
    done = subprocess.run([sys.executable, "-c", code, str(records)], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "COLUMNS": "1000"})
    assert done.returncode == 0, done.stderr
    stdout, _, _ = done.stdout.partition("VERBOSE")
    stderr, _, verbose = done.stderr.partition("VERBOSE")
    assert "RESULT 3" in stdout
    _check_only_korpair(stdout + stderr, records, "korpair.train")
    assert "GPU available" in verbose and "Loading weights" in verbose, "verbose=True lets the libraries speak"


def test_korpair_train_on_the_command_line_prints_no_library_chatter(tiny_model_dir, tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "korpair", "train", "sample", "-o", str(tmp_path / "run"), "--model",
         str(tiny_model_dir), *[x for o in [f"data.cache_dir={tmp_path / 'cache'}", *RUN] for x in ("--set", o)]],
        capture_output=True, text=True, timeout=300, env={**os.environ, "COLUMNS": "1000"})
    assert done.returncode == 0, done.stderr
    for line in (done.stdout + done.stderr).splitlines():
        assert not any(word in line for word in CHATTER), f"korpair train printed a library's line: {line!r}"
    assert "val_accuracy" in done.stdout and "corpus sample: 900 train" in done.stderr, "korpair's own lines stay"


def test_predict_and_export_from_python_print_nothing(tiny_model_dir, tmp_path):
    code = f"""
import korpair.api as api
api.predict({str(tiny_model_dir)!r}, [("비가 온다", "날씨가 맑다")])
api.export({str(tiny_model_dir)!r}, {str(tmp_path / 'onnx')!r}, quantize=True)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout + done.stderr == "", done.stdout + done.stderr
