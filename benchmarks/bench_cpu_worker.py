"""One measurement of bench_cpu.py, in a fresh process of either virtual environment.

korpair's venv runs the transformers pipeline and korpair's Predictor systems; the sentence-transformers
venv (``.venv-st``, whose transformers is older than korpair's) runs the CrossEncoder systems. So this file
imports neither korpair nor sentence-transformers at the top, only what the task at hand needs.

    python benchmarks/bench_cpu_worker.py --worker '{"task": "time", "system": {...}, ...}'

Tasks: ``versions`` (installed package versions), ``prepare_korpair`` (korpair's ONNX / OpenVINO exports),
``prepare_ce`` (CrossEncoder's ONNX, dynamic int8, OpenVINO and static int8 exports), ``time`` (load, warm
up, time one pass over the pairs; korpair systems also time single-pair calls), ``labels`` (logits on the
agreement sets, saved to an .npz). The last line printed is the JSON result (bench_common.emit_result).
"""

from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_common import cpu_ticks, emit_result, others_cpu_share  # noqa: E402

# Written by sentence-transformers' exporters into the CrossEncoder's folder (FOLDER/onnx/..., FOLDER/openvino/...).
CE_ONNX = "onnx/model.onnx"
CE_ONNX_INT8 = "onnx/model_qint8_avx512_vnni.onnx"
CE_OPENVINO = "openvino/openvino_model.xml"


def ce_static_file(samples: int) -> str:
    """The static-int8 OpenVINO file for a calibration of ``samples`` pairs (each size its own file)."""
    return f"openvino/openvino_model_qint8_calib{samples}.xml"


# --- data ------------------------------------------------------------------------------------------------

def load_klue(path: Path) -> list[tuple[str, str]]:
    rows = json.loads(Path(path).read_text(encoding="utf-8"))
    return [(r["premise"], r["hypothesis"]) for r in rows]


def load_xnli(path: Path) -> list[tuple[str, str]]:
    """KorNLI's xnli dev TSV (sentence1, sentence2, gold_label); split on tabs, as quotes are part of the text."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    header = lines[0].split("\t")
    a, b = header.index("sentence1"), header.index("sentence2")
    return [(f[a], f[b]) for f in (line.split("\t") for line in lines[1:] if line.strip())]


# --- systems ---------------------------------------------------------------------------------------------

def load_system(system: dict, batch_size: int, max_length: int):
    """(fn(pairs, batch_size) -> logits (n, labels) as float32 numpy, details) for one system."""
    kind = system["kind"]
    if kind == "korpair":
        from korpair import Predictor

        pred = Predictor.from_pretrained(system["folder"], device="cpu", precision=system.get("precision", "32"),
                                         max_seq_length=max_length)
        details = {"runtime": pred.runtime.name, "precision": pred.precision, "labels": list(pred.labels)}
        if hasattr(pred.runtime, "compiled"):  # OpenVINO: the precision it computes in, which may be bf16
            details["openvino_inference_precision"] = openvino_precision(pred.runtime.compiled)
        return (lambda pairs, bs=batch_size: pred.predict_logits(pairs, bs)), details
    if kind == "pipeline":
        from transformers import pipeline

        pipe = pipeline("text-classification", model=system["folder"], device="cpu", top_k=None,
                        function_to_apply="none")
        label2id = pipe.model.config.label2id
        labels = [pipe.model.config.id2label[i] for i in range(pipe.model.config.num_labels)]

        def run(pairs, bs=batch_size):
            out = pipe([{"text": p, "text_pair": h} for p, h in pairs], batch_size=bs, truncation=True,
                       max_length=max_length)
            logits = np.empty((len(pairs), len(labels)), dtype=np.float32)
            for i, scores in enumerate(out):
                for s in scores:
                    logits[i, label2id[s["label"]]] = s["score"]
            return logits

        return run, {"labels": labels}
    if kind == "crossencoder":
        from sentence_transformers import CrossEncoder

        kwargs = {"file_name": system["file_name"]} if system.get("file_name") else {}
        ce = CrossEncoder(system["folder"], backend=system["backend"], device="cpu", max_length=max_length,
                          model_kwargs=kwargs)
        labels = [ce.config.id2label[i] for i in range(ce.config.num_labels)]
        details = {"labels": labels, "num_labels": ce.config.num_labels}
        if system["backend"] == "openvino":
            details["openvino_inference_precision"] = openvino_precision(ce.transformers_model.request)

        def run(pairs, bs=batch_size):
            return np.asarray(ce.predict(pairs, batch_size=bs, show_progress_bar=False, convert_to_numpy=True),
                              dtype=np.float32).reshape(len(pairs), -1)

        return run, details
    raise ValueError(f"unknown system kind {kind!r}")


def openvino_precision(compiled) -> str | None:
    """What an OpenVINO CPU model computes its float ops in: f32, or bf16 on a CPU with AVX512-BF16 / AMX."""
    try:
        compiled = compiled.get_compiled_model() if hasattr(compiled, "get_compiled_model") else compiled
        hint = compiled.get_property("INFERENCE_PRECISION_HINT")
        return hint.to_string() if hasattr(hint, "to_string") else str(hint)
    except Exception as err:  # not compiled yet, or another OpenVINO API: the table says so
        return f"unknown ({type(err).__name__})"


def torch_threads() -> int | None:
    try:
        import torch

        return torch.get_num_threads()
    except ImportError:
        return None


# --- tasks -----------------------------------------------------------------------------------------------

def task_versions(spec: dict) -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {"python": sys.version.split()[0]}
    for name in spec["packages"]:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return {"versions": found}


def task_time(spec: dict) -> dict:
    pairs = load_klue(spec["data"])[: spec["pairs"]]
    t0 = time.perf_counter()
    fn, details = load_system(spec["system"], spec["batch_size"], spec["max_length"])
    load_s = time.perf_counter() - t0
    fn(pairs[: spec["warmup_pairs"]])  # kernels, thread pools, OpenVINO/ORT first runs
    ticks, t0 = cpu_ticks(), time.perf_counter()
    fn(pairs)
    elapsed = time.perf_counter() - t0
    result = {"system": spec["system"]["name"], "load_s": round(load_s, 2), "seconds": round(elapsed, 3),
              "pairs": len(pairs), "pairs_per_s": round(len(pairs) / elapsed, 2),
              "others_cpu_share": round(others_cpu_share(ticks, cpu_ticks(), elapsed), 3),
              "torch_threads": torch_threads(), **details}
    if spec.get("single_pairs"):  # the single-request offline path that a served request is held to
        # spread over the timed pairs, which the served requests cycle through: the same lengths
        picks = [pairs[i] for i in np.linspace(0, len(pairs) - 1, min(spec["single_pairs"], len(pairs)))
                 .round().astype(int)]
        for pair in picks:  # a warm pass: a new (1, length) shape costs OpenVINO a first-run overhead
            fn([pair], 1)
        times = []
        for pair in picks:
            t0 = time.perf_counter()
            fn([pair], 1)
            times.append(time.perf_counter() - t0)
        result["single_pair_ms"] = round(statistics.median(times) * 1000, 2)
    return result


def task_labels(spec: dict) -> dict:
    """Logits on the agreement sets, saved to ``spec["out"]`` (.npz, one array per set)."""
    fn, details = load_system(spec["system"], spec["batch_size"], spec["max_length"])
    limit = spec.get("limit") or None
    arrays, counts = {}, {}
    t0 = time.perf_counter()
    for name, (loader, path) in {"klue": (load_klue, spec["data"]), "xnli": (load_xnli, spec["xnli"])}.items():
        pairs = loader(path)[:limit]
        arrays[name] = fn(pairs)
        counts[name] = len(pairs)
    out = Path(spec["out"])
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp.npz")
    np.savez(tmp, **arrays)
    os.replace(tmp, out)
    return {"system": spec["system"]["name"], "out": str(out), "pairs": counts,
            "seconds": round(time.perf_counter() - t0, 1), **details}


def task_prepare_korpair(spec: dict) -> dict:
    """korpair's exports of the base folder: ONNX fp32 and int8, and OpenVINO where korpair has it."""
    from korpair.inference.onnx import export_onnx

    base, done, errors = Path(spec["base"]), {}, {}
    for name, quantize in (("korpair-onnx", False), ("korpair-onnx-int8", True)):
        out = Path(spec["work"]) / name
        if not (out / "model.onnx").is_file():
            t0 = time.perf_counter()
            export_onnx(base, out, quantize=quantize)
            done[name] = round(time.perf_counter() - t0, 1)
    folders = {"onnx": str(Path(spec["work"]) / "korpair-onnx"),
               "onnx-int8": str(Path(spec["work"]) / "korpair-onnx-int8")}
    try:
        from korpair.inference.openvino import export_openvino
    except ImportError as err:
        errors["openvino"] = f"korpair.inference.openvino not importable: {err}"
        return {"folders": folders, "export_seconds": done, "errors": errors}
    params = inspect.signature(export_openvino).parameters
    samples = spec["calibration_samples"]
    klue = load_klue(spec["data"])
    calibration = [klue[i] for i in np.linspace(0, len(klue) - 1, samples).round().astype(int)]
    for name, quantize in (("openvino", False), ("openvino-int8", True)):
        out = Path(spec["work"]) / (f"korpair-{name}-calib{samples}" if quantize else f"korpair-{name}")
        kwargs: dict = {"quantize": quantize}
        if "output_dir" in params:
            kwargs["output_dir"] = out
        if quantize and "calibration_pairs" in params:  # the same KLUE-NLI pairs as the CrossEncoder's static int8
            kwargs["calibration_pairs"] = calibration
        if (out / "openvino_model.xml").is_file():  # written atomically: there means whole
            folders[name] = str(out)
            continue
        try:
            t0 = time.perf_counter()
            folders[name] = str(export_openvino(base, **kwargs))
            done[name] = round(time.perf_counter() - t0, 1)
        except Exception as err:  # another developer's module, in progress: the race goes on without it
            errors[name] = f"{type(err).__name__}: {err}"[:500]
    return {"folders": folders, "export_seconds": done, "errors": errors}


def task_prepare_ce(spec: dict) -> dict:
    """sentence-transformers' own export paths, each written into the CrossEncoder's folder once."""
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_dynamic_quantized_onnx_model

    folder, max_length = spec["ce_dir"], spec["max_length"]
    done: dict[str, float] = {}
    ce = CrossEncoder(folder, device="cpu", max_length=max_length)
    check = {"num_labels": ce.config.num_labels,
             "id2label": {str(k): v for k, v in ce.config.id2label.items()}}
    del ce
    if not (Path(folder) / CE_ONNX).is_file() or not (Path(folder) / CE_ONNX_INT8).is_file():
        t0 = time.perf_counter()
        ce = CrossEncoder(folder, backend="onnx", device="cpu", max_length=max_length)  # exports with optimum
        ce.save_pretrained(folder)  # FOLDER/onnx/model.onnx
        export_dynamic_quantized_onnx_model(ce, "avx512_vnni", folder)  # FOLDER/onnx/model_qint8_avx512_vnni.onnx
        done["onnx + dynamic int8"] = round(time.perf_counter() - t0, 1)
        del ce
    if not (Path(folder) / CE_OPENVINO).is_file():
        t0 = time.perf_counter()
        ce = CrossEncoder(folder, backend="openvino", device="cpu", max_length=max_length,
                          model_kwargs={"export": True})
        ce.save_pretrained(folder)  # FOLDER/openvino/openvino_model.xml
        done["openvino"] = round(time.perf_counter() - t0, 1)
        del ce
    samples = spec["calibration_samples"]
    static = ce_static_file(samples)
    if not (Path(folder) / static).is_file():
        done["openvino static int8"] = make_static_int8(folder, spec["calibration_dir"], samples, max_length)
    return {"ce_check": check, "export_seconds": done,
            "files": {"onnx": CE_ONNX, "onnx-int8": CE_ONNX_INT8, "openvino": CE_OPENVINO, "openvino-int8": static}}


def make_static_int8(folder: str, calibration_dir: str, samples: int, max_length: int) -> float:
    """``export_static_quantized_openvino_model`` calibrated on local KLUE-NLI pairs instead of GLUE/SST-2.

    Its dataset arguments go to ``datasets.load_dataset(dataset_name, dataset_config_name, split=...)``
    (optimum-intel's ``OVQuantizer.get_calibration_dataset``), which reads a local folder of JSON lines as
    well as a hub name: ``calibration_dir/train.jsonl`` holds one ``{"pair": [premise, hypothesis]}`` a line.
    sentence-transformers tokenizes the column's values as ``tokenizer(values, padding="max_length",
    max_length=384)``; a list of two-element lists is a batch of pairs to a fast tokenizer, so the model is
    calibrated on real sentence pairs with their segment ids (padded to 384 tokens, as ST always does).
    """
    from optimum.intel import OVQuantizationConfig
    from sentence_transformers import CrossEncoder
    from sentence_transformers.backend import export_static_quantized_openvino_model

    t0 = time.perf_counter()
    ce = CrossEncoder(folder, backend="openvino", device="cpu", max_length=max_length,
                      model_kwargs={"file_name": CE_OPENVINO})
    export_static_quantized_openvino_model(
        ce, OVQuantizationConfig(num_samples=samples), folder, dataset_name=calibration_dir,
        dataset_config_name="default", dataset_split="train", column_name="pair",
        file_suffix=Path(ce_static_file(samples)).stem.removeprefix("openvino_model_"))
    return round(time.perf_counter() - t0, 1)


TASKS = {"versions": task_versions, "time": task_time, "labels": task_labels,
         "prepare_korpair": task_prepare_korpair, "prepare_ce": task_prepare_ce}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", required=True, help="the task as JSON")
    spec = json.loads(ap.parse_args().worker)
    emit_result({"task": spec["task"], **TASKS[spec["task"]](spec)})


if __name__ == "__main__":
    main()
