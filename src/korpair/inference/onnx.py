"""Export a model folder to ONNX, and classify pairs with ONNX Runtime.

``export_onnx`` writes a folder that holds ``model.onnx`` (dynamic batch and
sequence axes), the tokenizer, ``config.json`` with the labels and, when the
source has one, ``korpair_train.yaml`` (so the trained max length carries
over). ``OnnxPredictor`` reads such a folder and answers like ``Predictor``:
same ``labels``, same ``predict`` and ``predict_stream``, same ``Prediction``
objects in input order, so the server and ``korpair.api.predict_file`` take
either. ``load_predictor`` takes any model folder and returns the right one of
the two, which is how ``predict``, ``evaluate`` and ``serve`` load models.
Exporting and ONNX Runtime need the ``onnx`` extra: ``pip install "korpair[onnx]"``.

Example::

    onnx_dir = export_onnx("runs/sample/model")                  # runs/sample/model/onnx
    int8_dir = export_onnx("runs/sample/model", quantize=True)   # runs/sample/model/onnx-int8
    [p] = OnnxPredictor.from_pretrained(int8_dir).predict([("비가 온다", "날씨가 맑다")])
    p.label  # 'contradiction'
"""

from __future__ import annotations

import logging
import os
import shutil
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from transformers import AutoConfig, AutoModelForSequenceClassification, AutoTokenizer

from korpair.atomic import write_dir
from korpair.errors import ConfigError, KorpairError, ModelFolderError
from korpair.features import PairCollator, encode_pairs
from korpair.inference.predictor import PRECISIONS, Predictor
from korpair.model_folder import trained_max_length
from korpair.types import Pair

log = logging.getLogger(__name__)

MODEL_FILE = "model.onnx"
OPSET = 17  # LayerNormalization is a single op from 17 on; ONNX Runtime >= 1.14 runs it
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Copied beside the ONNX model when the source folder has them (korpair_train.yaml: the max length).
EXTRA_FILES = ("korpair_train.yaml",)
# Encoders whose attention ONNX Runtime's transformer optimizer knows how to fuse.
FUSABLE = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert"}


def export_onnx(model_dir: str | Path, output_dir: str | Path | None = None, quantize: bool = False) -> Path:
    """Write ``model.onnx``, the tokenizer and ``config.json`` into a folder, atomically.

    The folder defaults to ``MODEL_DIR/onnx`` (``MODEL_DIR/onnx-int8`` with
    ``quantize``). Inputs are ``input_ids``, ``attention_mask`` and, when the
    tokenizer makes them, ``token_type_ids``; every axis but the labels' is
    dynamic. BERT-like encoders get their attention, GELU and LayerNorm fused
    (ONNX Runtime's transformer optimizer); ``quantize`` then stores the
    weights of every MatMul as int8 (dynamic quantization: activations are
    quantized per batch at run time). If anything fails, an existing output
    folder is left as it was.

    Example::

        export_onnx("runs/sample/model", "runs/sample/onnx")  # PosixPath('runs/sample/onnx')
    """
    model_dir = Path(model_dir)
    _check_model_folder(model_dir)
    out = Path(output_dir) if output_dir is not None else model_dir / ("onnx-int8" if quantize else "onnx")
    if out.resolve() == model_dir.resolve():
        raise ModelFolderError(f"{out}: the ONNX folder must differ from the model folder it is made from")
    _require_onnxruntime()
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        # Eager attention traces to the MatMul/Softmax pattern that ONNX Runtime fuses into one op;
        # the SDPA path exports too, but stays unfused and slower.
        model = AutoModelForSequenceClassification.from_pretrained(str(model_dir), attn_implementation="eager")
    except (OSError, ValueError) as err:
        raise ModelFolderError(f"cannot load model {str(model_dir)!r}: {err}") from None
    model.eval()
    input_names = [n for n in INPUTS if n == "input_ids" or n in tokenizer.model_input_names]

    def fill(tmp: Path) -> None:
        onnx_path = tmp / MODEL_FILE
        _export_graph(model, input_names, onnx_path)
        if model.config.model_type in FUSABLE:
            _fuse_transformer_ops(onnx_path, model.config)
        if quantize:
            _quantize_int8(onnx_path)
        model.config.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        for name in EXTRA_FILES:
            if (model_dir / name).is_file():
                shutil.copy2(model_dir / name, tmp / name)

    write_dir(out, fill)
    log.info("ONNX model%s written to %s", " (int8)" if quantize else "", out)
    return out


class OnnxPredictor(Predictor):
    """``Predictor`` on ONNX Runtime: the same ``labels``, ``predict`` and ``predict_stream``.

    Example::

        predictor = OnnxPredictor.from_pretrained("runs/sample/model/onnx")
        predictor.predict([("비가 온다", "날씨가 맑다")], batch_size=64)[0].label  # 'contradiction'
    """

    def __init__(self, session, tokenizer, labels: Sequence[str], *, max_seq_length: int = 128) -> None:
        # Predictor.__init__ moves a torch model to a device; here ONNX Runtime owns the weights.
        self.session = session
        self.tokenizer = tokenizer
        self.max_seq_length = max_seq_length
        self.labels = tuple(labels)
        self.device = torch.device("cpu")
        self.precision = "32"
        self.input_names = [i.name for i in session.get_inputs()]
        gpu = "CUDAExecutionProvider" in session.get_providers()
        self._collate = PairCollator(tokenizer.pad_token_id or 0, pad_to_multiple_of=8 if gpu else None)

    @classmethod
    def from_pretrained(cls, folder: str | Path, *, max_seq_length: int | None = None,
                        threads: int | None = None) -> OnnxPredictor:
        """Load a folder written by ``export_onnx``; ``threads`` defaults to ONNX Runtime's choice."""
        ort = _require_onnxruntime()
        folder = Path(folder)
        if not (folder / MODEL_FILE).is_file():
            hint = ""
            if (folder / "onnx" / MODEL_FILE).is_file():
                hint = f"; did you mean {folder / 'onnx'}?"
            elif (folder / "config.json").is_file():
                hint = f"; make one with korpair.onnx.export_onnx({str(folder)!r})"
            raise ModelFolderError(f"{folder}: not an ONNX model folder (no {MODEL_FILE}){hint}")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(folder))
            config = AutoConfig.from_pretrained(str(folder))
        except (OSError, ValueError) as err:
            raise ModelFolderError(f"cannot load the tokenizer or config.json of {str(folder)!r}: {err}") from None
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        try:
            session = ort.InferenceSession(str(folder / MODEL_FILE), options, providers=["CPUExecutionProvider"])
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph) as err:
            raise ModelFolderError(f"{folder / MODEL_FILE}: ONNX Runtime cannot load it: {err}") from None
        labels = [config.id2label[i] for i in range(config.num_labels)]
        if max_seq_length is None:
            max_seq_length = trained_max_length(folder) or 128
        return cls(session, tokenizer, labels, max_seq_length=max_seq_length)

    def predict_proba(self, pairs: Sequence[Pair], batch_size: int = 64) -> np.ndarray:
        """Probabilities, shape ``(len(pairs), num_labels)``, in input order."""
        feats = encode_pairs(self.tokenizer, pairs, None, self.max_seq_length)
        order = np.argsort(-feats.lengths, kind="stable")
        out = np.empty((len(pairs), len(self.labels)), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = self._collate([feats[i] for i in idx])
            feed = {name: batch[name].numpy() for name in self.input_names}
            [logits] = self.session.run(["logits"], feed)
            out[idx] = _softmax(logits)
        return out


def _check_model_folder(path: Path) -> None:
    if not path.is_dir():
        raise ModelFolderError(f"{path}: no such model folder")
    if not (path / "config.json").is_file():
        hint = f"; did you mean {path / 'model'}?" if (path / "model" / "config.json").is_file() else ""
        raise ModelFolderError(f"{path}: not a model folder (no config.json){hint}")


def _require_onnxruntime():
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as err:
        raise KorpairError(f"ONNX support needs the onnx extra ({err.name} is missing): "
                           'pip install "korpair[onnx]"') from None
    return onnxruntime


class _Logits(torch.nn.Module):
    """Positional inputs, logits out: the signature the exporter traces."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def _export_graph(model: torch.nn.Module, input_names: list[str], path: Path) -> None:
    # The TorchScript exporter (dynamo=False): the torch.export-based one needs onnxscript, which the
    # onnx extra does not install. It traces one example, so the example has 2 rows of 16 tokens and a
    # padded row: no axis of size 1 (it would be specialised), and the masking code is traced on its
    # padded path (an all-ones mask may be skipped, and that shortcut would be baked in).
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0
    types = torch.zeros(2, 16, dtype=torch.long)
    types[:, 8:] = 1
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    axes = {name: {0: "batch", 1: "sequence"} for name in input_names}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in the model code; the example above
        # takes the general path of each, and the test suite checks other shapes against PyTorch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # BERT's indexing uses no negative indices, which is the case this warning is about.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(
            _Logits(model, input_names).eval(), tuple(example[n] for n in input_names), str(path),
            input_names=input_names, output_names=["logits"], dynamic_axes={**axes, "logits": {0: "batch"}},
            opset_version=OPSET, dynamo=False,
        )


def _fuse_transformer_ops(path: Path, config) -> None:
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(path), model_type="bert", num_heads=getattr(config, "num_attention_heads", 0),
                           hidden_size=getattr(config, "hidden_size", 0))
    log.info("fused ONNX ops: %s", {k: v for k, v in fused.get_fused_operator_statistics().items() if v})
    fused.save_model_to_file(str(path))


def _quantize_int8(path: Path) -> None:
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    fp32 = path.with_name(f".fp32.{path.name}")
    os.replace(path, fp32)
    # Fused ops (Attention, SkipLayerNormalization) are outside ONNX's shape inference, so the
    # quantizer is told that an untyped tensor is float.
    quantize_dynamic(fp32, path, weight_type=QuantType.QInt8, per_channel=True,
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    fp32.unlink()


def _softmax(logits: np.ndarray) -> np.ndarray:
    z = logits.astype(np.float32) - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def load_predictor(model_dir: str | Path, *, device: str | None = None, precision: str = "32",
                   trust_remote_code: bool = False) -> Predictor:
    """A ``Predictor`` for a model folder; an exported ONNX folder (``model.onnx``) runs on ONNX Runtime.

    ``precision="bf16"`` runs a PyTorch model under bf16 autocast: about 2x the
    pairs/s on a CPU with AVX512-BF16 or AMX and on recent GPUs, with scores
    within about 1e-2 of fp32. An ONNX model runs as it was exported.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"precision {precision!r}: expected 32 or bf16")
    if (Path(model_dir) / MODEL_FILE).is_file():  # a folder written by `korpair export`
        if precision not in ("32", "32-true"):
            raise ConfigError(f"{model_dir}: an ONNX model runs as exported; --precision applies to PyTorch "
                              "model folders (export with --quantize int8 for a faster ONNX model)")
        predictor = OnnxPredictor.from_pretrained(model_dir)
        log.info("loaded %s on ONNX Runtime (labels: %s)", model_dir, ", ".join(predictor.labels))
        return predictor
    predictor = Predictor.from_pretrained(model_dir, device=device, precision=precision,
                                          trust_remote_code=trust_remote_code)
    log.info("loaded %s on %s, precision %s (labels: %s)", model_dir, predictor.device, precision,
             ", ".join(predictor.labels))
    return predictor
