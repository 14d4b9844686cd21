"""The Python API that notebooks and the CLI share.

Every call checks its arguments, files and output paths before it loads a
model, and keeps the libraries under korpair quiet (``korpair.quiet``):
``verbose=True`` lets them speak. korpair's own messages go through
``logging`` (the ``korpair`` logger).

Example::

    import korpair
    result = korpair.train("sample")                       # a preset, a YAML path or a TrainConfig
    report = korpair.evaluate(result.model_dir, corpus="sample", split="test")
    report.metrics["accuracy"], report.output_dir
    korpair.api.predict_file(result.model_dir, "pairs.tsv", "predictions.tsv")
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from korpair.api.checks import (
    STDOUT,
    at_least_one,
    known_encoding,
    output_format,
    readable_file,
    writable_dir,
    writable_file,
)
from korpair.api.exporting import export as export  # re-exported
from korpair.api.exporting import export_backends as export_backends
from korpair.api.prediction_files import PairCount, check_input, prediction_writer, verbatim_pairs
from korpair.api.publish import PushPlan as PushPlan  # re-exported
from korpair.api.publish import push_to_hub as push_to_hub
from korpair.api.tuning import tune as tune
from korpair.config import BUILTIN_TASKS, CorpusConfig, TrainConfig, load_config
from korpair.corpora import BUILTIN_CORPORA, read_pairs, read_split, resolve_files
from korpair.errors import ConfigError, CorpusError
from korpair.hardware import check_inference_precision
from korpair.inference import EvalReport, Predictor, evaluate_pairs
from korpair.inference.backends import check_backend
from korpair.inference.report import REPORT_NAME, write_report
from korpair.model_folder import SECTION, corpus_config, model_task, read_section
from korpair.quiet import quiet
from korpair.training import TrainResult, fit
from korpair.training.run import resume_run
from korpair.types import Pair, Prediction, ScoreRange

log = logging.getLogger(__name__)
SPLITS = ("train", "validation", "test")


def train(config: str | Path | TrainConfig | dict | None = "sample", overrides: Sequence[str] = (),
          overwrite: bool = False, resume: str | Path | None = None, callbacks: Sequence = (), *,
          verbose: bool = False) -> TrainResult:
    """Fine-tune a classifier or a regression (similarity) model; returns where the model went and its metrics.

    ``resume`` continues a run: a run folder (its saved config is used,
    ``overrides`` still apply, e.g. more epochs), or ``"auto"``: the config's
    output folder, if it holds a run of the same config, else a fresh run
    there (as a SLURM job submitted again wants). Either way a run killed
    before its first checkpoint starts again, and a finished one is returned
    as it is. ``overwrite`` replaces the run in a non-empty output folder,
    once the new one has checked its data and has a checkpoint. Only one run
    at a time may use an output folder. ``callbacks`` are Lightning callbacks
    added to the run's Trainer. ``verbose`` lets Lightning and transformers
    print their own lines and warnings.
    """
    with quiet(verbose):
        if resume is not None and str(resume) != "auto":
            return resume_run(resume, overrides, callbacks=callbacks)
        cfg = load_config(config, overrides)
        return fit(cfg, overwrite=overwrite, resume="auto" if resume is not None else False, callbacks=callbacks)


def evaluate(model_dir: str | Path, data: str | Path | None = None, *, corpus: str | CorpusConfig | None = None,
             split: str = "validation", output_dir: str | Path | None = None, batch_size: int = 64,
             text_a_column: str | None = None, text_b_column: str | None = None,
             label_column: str | None = None, encoding: str = "utf-8", fmt: str = "auto",
             data_dir: str | Path | None = None, device: str | None = None, precision: str = "32",
             backend: str = "auto", trust_remote_code: bool = False, calibrated: bool = True, report: bool = False,
             verbose: bool = False) -> EvalReport:
    """Score a model on a labelled file (``data``), a split of a corpus, or by default its own data.

    Without ``data`` or ``corpus``, the ``split`` (``validation`` or ``test``)
    of the corpus recorded in the model folder is scored: the data the model
    was trained on, read with the same columns and options. ``data`` wins over
    ``corpus``; ``data_dir`` is where a built-in corpus's files are.
    ``metrics["data"]`` says which data was scored, ``metrics["dropped_rows"]``
    how many rows were left out and why (e.g. KLUE's ``-`` gold label). A
    regression model's gold labels are read as scores (in the corpus's range).
    The paths, the corpus and the options are checked before the model loads.
    ``report`` also writes ``report.html``: one self-contained page with the
    metrics, plots, the surest errors, the least sure right answers and
    accuracy by slice (``korpair.inference.report``). ``calibrated=False``
    scores the model's raw probabilities (the report has both either way).
    """
    with quiet(verbose):
        at_least_one("batch_size", batch_size)
        check_inference_precision(precision)
        check_backend(backend)
        task = _local_task(model_dir)
        cfg = resolved = None
        if data is not None:
            readable_file(data, fmt)
            known_encoding(encoding)
            source, stem = str(data), Path(data).stem
        else:
            cfg, source = _corpus_to_score(Path(model_dir), corpus, split)
            if data_dir is not None:
                cfg = cfg.model_copy(update={"data_dir": Path(data_dir)})
            _check_task_fits(model_dir, task, cfg)
            resolved = resolve_files(cfg, [split])  # a built-in corpus is fetched here, before the model loads
            stem = f"{cfg.name}-{split}"
        if output_dir is None:
            base = Path(model_dir).parent if Path(model_dir).name == "model" else Path(model_dir)
            output_dir = base / f"eval-{stem}"
        writable_dir(output_dir)

        predictor = Predictor.from_pretrained(model_dir, device=device, precision=precision, backend=backend,
                                              trust_remote_code=trust_remote_code, calibrated=calibrated)
        regression = predictor.task == "regression"
        dropped: Counter = Counter()
        if cfg is None:
            pairs = read_pairs(data, fmt=fmt, text_a_column=text_a_column, text_b_column=text_b_column,
                               label_column=label_column, encoding=encoding, dropped=dropped,
                               labels=None if regression else predictor.labels,
                               scores=ScoreRange() if regression else None)
        else:
            target = (resolved.scores or ScoreRange()) if regression else predictor.labels
            pairs = read_split(cfg, split, target, dropped, resolved=resolved)
        for reason, n in sorted(dropped.items()):
            log.warning("dropped %d row(s): %s", n, reason)
        log.info("evaluating %s on %s", model_dir, source)
        result = evaluate_pairs(predictor, pairs, Path(output_dir), batch_size, source, dropped)
        if report:
            write_report(result.output_dir)
        else:  # a page of an earlier run would no longer match the metrics beside it
            (result.output_dir / REPORT_NAME).unlink(missing_ok=True)
        return result


def _local_task(model_dir: str | Path) -> str | None:
    """What a local model folder predicts, read from its config.json without loading it; ``None`` for a hub name."""
    return model_task(model_dir) if (Path(model_dir) / "config.json").is_file() else None


def _corpus_to_score(model_dir: Path, corpus: str | CorpusConfig | None, split: str) -> tuple[CorpusConfig, str]:
    """The corpus ``evaluate`` reads a split of, and how the report names it."""
    if split not in SPLITS:
        raise ConfigError(f"split={split!r}: expected 'validation', 'test' or 'train'")
    if corpus is None:
        return _recorded_corpus(model_dir, split)
    if isinstance(corpus, CorpusConfig):
        return corpus, f"{corpus.name}:{split}"
    if corpus not in BUILTIN_TASKS:
        raise ConfigError(f"corpus={corpus!r}: not a built-in corpus; the built-in ones are "
                          f"{', '.join(BUILTIN_TASKS)} (for a file of your own pass data=)")
    return CorpusConfig(name=corpus), f"{corpus}:{split}"


def _check_task_fits(model_dir: str | Path, task: str | None, cfg: CorpusConfig) -> None:
    """A similarity corpus cannot score a classifier, nor a label corpus a regression model."""
    if task is None or cfg.known_task in (None, task):
        return
    has = "similarity scores" if cfg.known_task == "regression" else "labels"
    model = "predicts a score (regression)" if task == "regression" else "predicts labels (classification)"
    others = [name for name, t in BUILTIN_TASKS.items() if t == task]
    raise ConfigError(f"{model_dir}: the model {model}, but corpus {cfg.name!r} has {has}; score it on a "
                      f"{task} corpus ({', '.join(others)}) or pass data= a file of its kind")


def _recorded_corpus(model_dir: Path, split: str) -> tuple[CorpusConfig, str]:
    """The corpus a model folder records, checked for ``split``, and how to name it in a report."""
    ask = f"pass data= (a labelled file) or corpus= (a built-in corpus name: {', '.join(BUILTIN_TASKS)})"
    where = model_dir / "config.json"
    cfg = corpus_config(read_section(model_dir), str(where))
    if cfg is None:
        raise CorpusError(f"{model_dir}: the model folder records no training corpus "
                          f"(no {SECTION}.corpus in {where}); {ask}")
    path = getattr(cfg, f"{split}_file")
    builtin = BUILTIN_CORPORA.get(cfg.name)
    if path is None and (cfg.name == "files" or (builtin and split not in builtin.splits)):
        has = sorted(builtin.splits) if builtin else [s for s in SPLITS if getattr(cfg, f"{s}_file") is not None]
        raise CorpusError(f"{model_dir}: the corpus the model was trained on ({cfg.name}) has no {split} split "
                          f"(no {SECTION}.corpus.{split}_file in {where}; it has {', '.join(has)}); {ask}")
    if path is not None and not Path(path).is_file():
        raise CorpusError(f"{path}: the {split} file the model was trained with is not found "
                          f"({SECTION}.corpus.{split}_file in {where}; a relative path is read from the "
                          f"current folder); {ask}")
    shown = f"{cfg.name}:{split}" + (f" {path}" if path is not None else "")
    return cfg, f"{shown} (the corpus the model was trained on)"


def predict(model_dir: str | Path, pairs: Sequence[Pair | tuple[str, str]], batch_size: int = 64,
            precision: str = "32", trust_remote_code: bool = False, *, device: str | None = None,
            backend: str = "auto", calibrated: bool = True, verbose: bool = False) -> list[Prediction]:
    """Classify (or score) pairs in memory (loads the model each call: keep a ``Predictor`` for repeated use)."""
    with quiet(verbose):
        at_least_one("batch_size", batch_size)
        check_inference_precision(precision)
        check_backend(backend)
        predictor = Predictor.from_pretrained(model_dir, device=device, precision=precision, backend=backend,
                                              trust_remote_code=trust_remote_code, calibrated=calibrated)
        return predictor.predict(pairs, batch_size=batch_size)


def predict_file(model_dir: str | Path | Predictor, input_file: str | Path, output_file: str | Path, *,
                 batch_size: int = 64, text_a_column: str | None = None, text_b_column: str | None = None,
                 encoding: str = "utf-8", fmt: str = "auto", progress: bool = False, device: str | None = None,
                 precision: str = "32", backend: str = "auto", trust_remote_code: bool = False,
                 calibrated: bool = True, verbose: bool = False) -> int:
    """Stream pairs from a CSV/TSV/JSONL/JSON file to a file of predictions; returns the number written.

    The output format comes from ``output_file``'s extension (``.jsonl``,
    ``.json``, ``.csv``, ``.tsv``; ``-`` is JSONL on stdout), written so that
    korpair reads it back unchanged (``korpair.api.prediction_files``): the
    texts as they are in the input, TSV unquoted. Before the model loads, the
    options and paths are checked and the whole input is read once (every bad
    row reported at once). The input is streamed, so files larger than memory
    work; the output appears only when complete (on a full disk, a
    ``DiskFullError`` leaves a previous output file as it was).
    """
    with quiet(verbose):
        out_format = output_format(output_file)
        at_least_one("batch_size", batch_size)
        check_inference_precision(precision)
        check_backend(backend)
        known_encoding(encoding)
        input_file = Path(input_file)
        fmt = readable_file(input_file, fmt)
        if str(output_file) != STDOUT:
            writable_file(output_file, input_file)
        columns = (text_a_column, text_b_column)
        total = check_input(input_file, fmt, encoding, columns, out_format)

        predictor = model_dir if isinstance(model_dir, Predictor) else Predictor.from_pretrained(
            model_dir, device=device, precision=precision, backend=backend, trust_remote_code=trust_remote_code,
            calibrated=calibrated)
        labels = None if predictor.task == "regression" else predictor.labels
        pairs = (pair for _, pair in verbatim_pairs(input_file, fmt, encoding, columns))
        with prediction_writer(output_file, out_format, labels) as write, PairCount(progress, total) as shown:
            for pair, prediction in predictor.predict_stream(pairs, batch_size):
                write(pair, prediction)
                shown(write.rows)
        return write.rows


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          precision: str = "32", backend: str = "auto", limits: dict | None = None, calibrated: bool = True,
          verbose: bool = False) -> None:
    """Serve a model folder over HTTP (JSON API and web page) until interrupted."""
    from korpair.serve import ServeLimits, run_server

    checked = ServeLimits.from_dict(limits or {}, "korpair serve")
    with quiet(verbose):
        run_server(model_dir, host=host, port=port, limits=checked, device=device, precision=precision,
                   backend=backend, calibrated=calibrated)
