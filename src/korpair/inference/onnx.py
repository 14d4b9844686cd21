"""Export a model folder to ONNX (fp32 or int8) for ONNX Runtime.

``export_onnx`` writes a folder that holds ``model.onnx`` (a BERT classifier
packed several pairs to a row, as ``korpair.inference.packing`` runs it; any
other model with dynamic batch and sequence axes) beside the source folder's
``config.json`` (labels and the ``korpair`` section), its tokenizer
(``model_max_length`` set to the trained max length) and, when the source
has them, the model card ``README.md`` and a 0.1 run's ``korpair_train.yaml``. ``korpair.Predictor.from_pretrained``
opens such a folder as it opens the PyTorch one, and answers the same way.
A regression (similarity) model exports the same way: its one output is the
score, and ``config.json`` keeps ``problem_type`` and the section's task, so
the ONNX folder loads as a regression model too. ``agreement`` measures how
closely an exported model answers as the one it was made from. Exporting and
ONNX Runtime need the ``onnx`` extra: ``pip install "korpair[onnx]"``.

Example::

    onnx_dir = export_onnx("runs/sample/model")                  # runs/sample/model/onnx
    int8_dir = export_onnx("runs/sample/model", quantize=True)   # runs/sample/model/onnx-int8
    [p] = Predictor.from_pretrained(int8_dir).predict([("비가 온다", "날씨가 맑다")])
    p.label  # 'contradiction'
    agreement(Predictor.from_pretrained("runs/sample/model"), Predictor.from_pretrained(int8_dir), pairs)
    # {'task': 'classification', 'n': 500, 'label_agreement': 0.992}
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
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from korpair.atomic import write_dir
from korpair.config import RUN_CONFIG_NAME
from korpair.errors import ModelFolderError, disk_full_as_error, loading_error
from korpair.inference.metrics import spearman
from korpair.inference.packing import PACKED_INPUTS, PackedClassifier, example_packed_inputs, packable
from korpair.inference.predictor import PairLike, Predictor
from korpair.inference.quiet import quiet_loading, quiet_onnxruntime
from korpair.inference.runtimes import LOAD_ERRORS, ONNX_MODEL_FILE, OPENVINO_MODEL_FILE, require_onnxruntime
from korpair.model_folder import check_model_folder, trained_max_length

log = logging.getLogger(__name__)

OPSET = 17  # LayerNormalization is a single op from 17 on; ONNX Runtime >= 1.14 runs it
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
# Copied beside the ONNX model when the source folder has them: the model card, and the run config
# that a korpair 0.1 folder keeps its trained max length in.
EXTRA_FILES = ("README.md", RUN_CONFIG_NAME)
# Encoders whose attention ONNX Runtime's transformer optimizer knows how to fuse.
FUSABLE = {"bert", "roberta", "xlm-roberta", "electra", "distilbert", "camembert"}


def export_onnx(model_dir: str | Path, output_dir: str | Path | None = None, quantize: bool = False) -> Path:
    """Write ``model.onnx`` beside the source's ``config.json``, tokenizer and model card, atomically.

    The folder defaults to ``MODEL_DIR/onnx`` (``MODEL_DIR/onnx-int8`` with
    ``quantize``). A BERT classifier is exported as its ``PackedClassifier``:
    several pairs to a row, no padding, ``korpair.inference.packing.PACKED_INPUTS``
    in (rows, tokens and pairs dynamic), the logits of each pair out. Any other
    model takes padded batches: ``input_ids``, ``attention_mask`` and, when the
    tokenizer makes them, ``token_type_ids``, every axis but the labels'
    dynamic, and BERT-like encoders get their attention, GELU and LayerNorm
    fused (ONNX Runtime's transformer optimizer). ``quantize`` then stores the
    weights of every MatMul as int8 (dynamic quantization: activations are
    quantized per batch at run time). If anything fails, a full disk included
    (a ``DiskFullError``), an existing output folder is left as it was.

    Example::

        export_onnx("runs/sample/model", "runs/sample/onnx")  # PosixPath('runs/sample/onnx')
    """
    model_dir = Path(model_dir)
    check_export_source(model_dir)
    out = Path(output_dir) if output_dir is not None else model_dir / ("onnx-int8" if quantize else "onnx")
    if out.resolve() == model_dir.resolve():
        raise ModelFolderError(f"{out}: the ONNX folder must differ from the model folder it is made from")
    require_onnxruntime()
    # Eager attention traces to the MatMul/Softmax pattern that ONNX Runtime fuses into one op;
    # the SDPA path exports too, but stays unfused and slower.
    tokenizer, model, input_names = load_export_source(model_dir, attn_implementation="eager")

    def fill(tmp: Path) -> None:
        onnx_path = tmp / ONNX_MODEL_FILE
        _export_graph(model, input_names, onnx_path)
        with quiet_onnxruntime():
            # The optimizer's attention fusion expects a padding mask: on the packed graph it fused part of the
            # pattern and ran slower than ONNX Runtime's own fusions at load (BERT-base, fp32 and int8).
            if model.config.model_type in FUSABLE and not packable(model):
                _fuse_transformer_ops(onnx_path, model.config)
            if quantize:
                _quantize_int8(onnx_path)
        write_companions(model_dir, model, tokenizer, tmp)

    with disk_full_as_error(out):
        write_dir(out, fill)
    log.info("ONNX model%s written to %s", " (int8)" if quantize else "", out)
    return out


def agreement(reference: Predictor, exported: Predictor, pairs: Sequence[PairLike], batch_size: int = 64) -> dict:
    """How closely ``exported`` (e.g. the int8 ONNX model) answers as ``reference`` (the model it came from).

    A classifier's is ``label_agreement``, the share of pairs given the same
    label, with ``max_abs_diff`` of their probabilities (calibrated ones, where
    both apply the model's temperature); a regression model's is ``spearman``,
    the rank correlation of the two models' scores (``None`` if either is
    constant), with ``max_abs_diff``.
    The test suite holds int8 exports of trained models to a label agreement
    of 0.98 or more and a Spearman of 0.99 or more (on real KorSTS pairs).
    """
    if reference.task != exported.task:
        raise ValueError(f"the models differ in task: {reference.task} and {exported.task}")
    pairs = list(pairs)
    if not pairs:
        raise ValueError("no pairs to compare the models on")
    if reference.task == "regression":
        ours, theirs = (m.predict_scores(pairs, batch_size) for m in (reference, exported))
        return {"task": "regression", "n": len(pairs), "spearman": spearman(ours, theirs),
                "max_abs_diff": float(np.abs(ours - theirs).max())}
    ours, theirs = (m.predict_proba(pairs, batch_size) for m in (reference, exported))
    return {"task": "classification", "n": len(pairs),
            "label_agreement": float(np.mean(ours.argmax(axis=1) == theirs.argmax(axis=1))),
            "max_abs_diff": float(np.abs(ours - theirs).max())}


def check_export_source(path: Path) -> None:
    """Refuse, naming the folder, what cannot be exported: no folder, a run folder, an exported model folder."""
    if not path.is_dir():
        raise ModelFolderError(f"{path}: no such model folder")
    for marker, kind in ((ONNX_MODEL_FILE, "ONNX"), (OPENVINO_MODEL_FILE, "OpenVINO")):
        if (path / marker).is_file():
            raise ModelFolderError(f"{path}: already an {kind} model folder; export the PyTorch model folder "
                                   "it was made from")
    if not (path / "config.json").is_file():
        hint = f"; did you mean {path / 'model'}?" if (path / "model" / "config.json").is_file() else ""
        raise ModelFolderError(f"{path}: not a model folder (no config.json){hint}")
    check_model_folder(path)


def load_export_source(model_dir: Path, attn_implementation: str | None = None) -> tuple:
    """The tokenizer (``model_max_length`` set to the trained max length), the model in eval mode, and the
    names of the inputs the tokenizer makes (``INPUTS`` order), for an exporter.

    ``attn_implementation`` is transformers' (``"eager"``, ``"sdpa"``); ``None``
    is its default, SDPA where the model has it.
    """
    try:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
        with quiet_loading():
            model = AutoModelForSequenceClassification.from_pretrained(
                str(model_dir), attn_implementation=attn_implementation)
    except LOAD_ERRORS as err:
        raise loading_error(model_dir, "model", err) from err
    model.eval()
    # The folder then says its max length in the tokenizer too, as a folder korpair trains does.
    if (max_length := trained_max_length(model_dir)) is not None:
        tokenizer.model_max_length = max_length
    return tokenizer, model, [n for n in INPUTS if n == "input_ids" or n in tokenizer.model_input_names]


def write_companions(model_dir: Path, model, tokenizer, folder: Path) -> None:
    """What an exported folder holds beside the graph: ``config.json``, the tokenizer, and the model card and
    run config where the source has them."""
    model.config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    for name in EXTRA_FILES:
        if (model_dir / name).is_file():
            shutil.copy2(model_dir / name, folder / name)


def example_inputs(input_names: list[str]) -> tuple[torch.Tensor, ...]:
    """The batch a tracing exporter runs the model on, one tensor per name in ``input_names``.

    2 rows of 16 tokens and a padded row: no axis of size 1 (it would be
    specialised), and the masking code is traced on its padded path (an
    all-ones mask may be skipped, and that shortcut would be baked in).
    """
    ids = torch.full((2, 16), 5, dtype=torch.long)
    mask = torch.ones(2, 16, dtype=torch.long)
    mask[1, 10:] = 0
    types = torch.zeros(2, 16, dtype=torch.long)
    types[:, 8:] = 1
    example = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
    return tuple(example[n] for n in input_names)


class Logits(torch.nn.Module):
    """Positional inputs, logits out: the signature the exporters trace."""

    def __init__(self, model: torch.nn.Module, input_names: list[str]) -> None:
        super().__init__()
        self.model, self.input_names = model, input_names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.input_names, inputs))).logits


def traced_graph(model: torch.nn.Module, input_names: list[str]) -> tuple[torch.nn.Module, list[str], tuple]:
    """What an exporter traces for ``model``: the module, its input names in order, and an example input.

    A BERT classifier is its ``PackedClassifier`` (several pairs a row,
    ``PACKED_INPUTS``); any other model takes padded batches (``Logits``).
    """
    if packable(model):
        return PackedClassifier(model), list(PACKED_INPUTS), example_packed_inputs()
    return Logits(model, input_names), list(input_names), example_inputs(input_names)


def _export_graph(model: torch.nn.Module, input_names: list[str], path: Path) -> None:
    # The TorchScript exporter (dynamo=False): the torch.export-based one needs onnxscript, which the
    # onnx extra does not install. It traces one example.
    module, names, example = traced_graph(model, input_names)
    if names == list(PACKED_INPUTS):
        axes = {name: {0: "rows", 1: "tokens"} for name in names if name != "cls_index"}
        axes = {**axes, "cls_index": {0: "pairs"}, "logits": {0: "pairs"}}
    else:
        axes = {**{name: {0: "batch", 1: "sequence"} for name in names}, "logits": {0: "batch"}}
    with torch.no_grad(), warnings.catch_warnings():
        # The tracer warns about every Python-level shape check in the model code; the example above
        # takes the general path of each, and the test suite checks other shapes against PyTorch.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # BERT's indexing uses no negative indices, which is the case this warning is about.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator")
        torch.onnx.export(module.eval(), example, str(path), input_names=names, output_names=["logits"],
                          dynamic_axes=axes, opset_version=OPSET, dynamo=False)


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
