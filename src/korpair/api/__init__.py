"""The Python API that notebooks and the CLI share.

Example::

    import korpair
    result = korpair.train("sample")                       # a preset, a YAML path or a TrainConfig
    report = korpair.evaluate(result.model_dir, corpus="sample", split="test")
    report.metrics["accuracy"], report.output_dir
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from korpair.atomic import open_atomic
from korpair.config import CorpusConfig, TrainConfig, load_config
from korpair.corpora import BUILTIN_CORPORA, iter_pairs, read_pairs, read_split
from korpair.errors import ConfigError, CorpusError, disk_full_as_error
from korpair.inference import EvalReport, Predictor, evaluate_pairs
from korpair.inference.onnx import export_onnx
from korpair.model_folder import SECTION, corpus_config, read_section
from korpair.training import TrainResult, fit
from korpair.training.run import resume_run
from korpair.types import Pair, Prediction

log = logging.getLogger(__name__)


def export(model_dir: str | Path, output_dir: str | Path | None = None, quantize: bool = False) -> Path:
    """Export a model folder to ONNX (optionally int8-quantized) for ``predict``, ``evaluate`` and ``serve``."""
    return export_onnx(model_dir, output_dir, quantize=quantize)


def train(config: str | Path | TrainConfig | dict | None = "sample", overrides: Sequence[str] = (),
          overwrite: bool = False, resume: str | Path | None = None, callbacks: Sequence = ()) -> TrainResult:
    """Fine-tune a classifier; returns where the model went and its validation metrics.

    ``resume`` continues a run: a run folder (its saved config is used,
    ``overrides`` still apply, e.g. more epochs), or ``"auto"``: the config's
    output folder, if it holds a run of the same config, else a fresh run
    there (as a SLURM job submitted again wants). Either way a run killed
    before its first checkpoint starts again, and a finished one is returned
    as it is. ``overwrite`` replaces the run in a non-empty output folder,
    once the new one has checked its data and has a checkpoint. Only one run
    at a time may use an output folder. ``callbacks`` are Lightning callbacks
    added to the run's Trainer.
    """
    if resume is not None and str(resume) != "auto":
        return resume_run(resume, overrides, callbacks=callbacks)
    cfg = load_config(config, overrides)
    return fit(cfg, overwrite=overwrite, resume="auto" if resume is not None else False, callbacks=callbacks)


def evaluate(model_dir: str | Path, data: str | Path | None = None, *, corpus: str | CorpusConfig | None = None,
             split: str = "validation", output_dir: str | Path | None = None, batch_size: int = 64,
             text_a_column: str | None = None, text_b_column: str | None = None,
             label_column: str | None = None, encoding: str = "utf-8", fmt: str = "auto",
             device: str | None = None, precision: str = "32", trust_remote_code: bool = False) -> EvalReport:
    """Score a model on a labelled file (``data``), a split of a corpus, or by default its own data.

    Without ``data`` or ``corpus``, the ``split`` (``validation`` or ``test``)
    of the corpus recorded in the model folder is scored: the data the model
    was trained on, read with the same columns and options. ``data`` wins over
    ``corpus``. ``metrics["data"]`` says which data was scored.
    """
    predictor = Predictor.from_pretrained(model_dir, device=device, precision=precision,
                                          trust_remote_code=trust_remote_code)
    labels = predictor.labels
    if data is not None:
        pairs = read_pairs(data, fmt=fmt, text_a_column=text_a_column, text_b_column=text_b_column,
                           label_column=label_column, labels=labels, encoding=encoding)
        source, stem = str(data), Path(data).stem
    else:
        if corpus is None:
            cfg, source = _recorded_corpus(Path(model_dir), split)
        else:
            cfg = corpus if isinstance(corpus, CorpusConfig) else CorpusConfig(name=corpus)
            source = f"{cfg.name}:{split}"
        pairs = read_split(cfg, split, labels, Counter())
        stem = f"{cfg.name}-{split}"
    log.info("evaluating %s on %s", model_dir, source)
    if output_dir is None:
        model_dir = Path(model_dir)
        base = model_dir.parent if model_dir.name == "model" else model_dir
        output_dir = base / f"eval-{stem}"
    return evaluate_pairs(predictor, pairs, Path(output_dir), batch_size, source)


def _recorded_corpus(model_dir: Path, split: str) -> tuple[CorpusConfig, str]:
    """The corpus a model folder records, checked for ``split``, and how to name it in a report."""
    ask = "pass data= (a labelled file) or corpus= (a built-in corpus name: sample, klue-nli, kornli)"
    where = model_dir / "config.json"
    cfg = corpus_config(read_section(model_dir), str(where))
    if cfg is None:
        raise CorpusError(f"{model_dir}: the model folder records no training corpus "
                          f"(no {SECTION}.corpus in {where}); {ask}")
    if split not in ("train", "validation", "test"):
        raise ConfigError(f"split={split!r}: expected 'validation', 'test' or 'train'")
    path = getattr(cfg, f"{split}_file")
    builtin = BUILTIN_CORPORA.get(cfg.name)
    if path is None and (cfg.name == "files" or (builtin and split not in builtin.splits)):
        has = sorted(builtin.splits) if builtin else [s for s in ("train", "validation", "test")
                                                      if getattr(cfg, f"{s}_file") is not None]
        raise CorpusError(f"{model_dir}: the corpus the model was trained on ({cfg.name}) has no {split} split "
                          f"(no {SECTION}.corpus.{split}_file in {where}; it has {', '.join(has)}); {ask}")
    if path is not None and not Path(path).is_file():
        raise CorpusError(f"{path}: the {split} file the model was trained with is not found "
                          f"({SECTION}.corpus.{split}_file in {where}; a relative path is read from the "
                          f"current folder); {ask}")
    shown = f"{cfg.name}:{split}" + (f" {path}" if path is not None else "")
    return cfg, f"{shown} (the corpus the model was trained on)"


def predict(model_dir: str | Path, pairs: Sequence[Pair | tuple[str, str]], batch_size: int = 64,
            precision: str = "32", trust_remote_code: bool = False) -> list[Prediction]:
    """Classify pairs in memory (loads the model each call: keep a ``Predictor`` for repeated use)."""
    predictor = Predictor.from_pretrained(model_dir, precision=precision, trust_remote_code=trust_remote_code)
    return predictor.predict(pairs, batch_size=batch_size)


def serve(model_dir: str | Path, *, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
          precision: str = "32", limits: dict | None = None) -> None:
    """Serve a model folder over HTTP (JSON API and web page) until interrupted."""
    from korpair.serve import ServeLimits, run_server

    checked = ServeLimits.from_dict(limits or {}, "korpair serve")
    run_server(model_dir, host=host, port=port, limits=checked, device=device, precision=precision)


def predict_file(model_dir: str | Path | Predictor, input_file: str | Path, output_file: str | Path, *,
                 batch_size: int = 64, text_a_column: str | None = None, text_b_column: str | None = None,
                 encoding: str = "utf-8", fmt: str = "auto", progress: bool = False,
                 precision: str = "32", trust_remote_code: bool = False) -> int:
    """Stream pairs from a CSV/TSV/JSONL file to a JSONL or CSV file of predictions.

    The input is read in chunks, so files larger than memory work; the output
    appears only when complete (on a full disk, a ``DiskFullError`` leaves a
    previous output file as it was). Returns the number of pairs written.
    """
    predictor = model_dir if isinstance(model_dir, Predictor) else \
        Predictor.from_pretrained(model_dir, precision=precision, trust_remote_code=trust_remote_code)
    pairs = iter_pairs(input_file, fmt=fmt, text_a_column=text_a_column, text_b_column=text_b_column,
                       require_label=False, drop_labels=(), encoding=encoding, strict=False)
    output_file = Path(output_file)
    as_csv = output_file.suffix.lower() in (".csv", ".tsv")
    count = 0
    with disk_full_as_error(output_file), open_atomic(output_file, newline="" if as_csv else None) as fh, \
            _progress(progress) as bar:
        writer = _csv_writer(fh, output_file, predictor.labels) if as_csv else None
        for pair, pred in predictor.predict_stream(pairs, batch_size):
            if writer is not None:
                writer.writerow([pair.premise, pair.hypothesis, pred.label,
                                 *(f"{pred.scores[n]:.6f}" for n in predictor.labels)])
            else:
                fh.write(json.dumps({"premise": pair.premise, "hypothesis": pair.hypothesis, **pred.to_dict()},
                                    ensure_ascii=False) + "\n")
            count += 1
            bar(count)
    return count


def _csv_writer(fh, path: Path, labels: Sequence[str]):
    import csv

    writer = csv.writer(fh, delimiter="\t" if path.suffix.lower() == ".tsv" else ",")
    writer.writerow(["premise", "hypothesis", "label", *(f"p_{n}" for n in labels)])
    return writer


class _progress:
    """A rich spinner with a running count (the total of a stream is unknown)."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def __enter__(self):
        if not self.enabled:
            return lambda n: None
        from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

        self._p = Progress(SpinnerColumn(), TextColumn("{task.completed} pairs"), TimeElapsedColumn(),
                           transient=False)
        self._p.__enter__()
        task = self._p.add_task("predict", total=None)
        return lambda n: self._p.update(task, completed=n) if n % 256 == 0 else None

    def __exit__(self, *exc):
        if self.enabled:
            self._p.__exit__(*exc)
