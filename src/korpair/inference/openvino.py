"""Export a model folder to OpenVINO (fp32, or static int8 by NNCF) for OpenVINO's CPU plugin.

``export_openvino`` writes a folder that holds ``openvino_model.xml`` and
``openvino_model.bin`` (dynamic axes; output ``logits``; a BERT classifier
takes pairs packed several to a row, ``korpair.inference.packing.PACKED_INPUTS``,
any other model padded batches: ``input_ids``, ``attention_mask`` and, where
the tokenizer makes them, ``token_type_ids``) beside the same companions as an ONNX
export: ``config.json`` with its ``korpair`` section, the tokenizer
(``model_max_length`` set to the trained max length), the model card and a
0.1 run's ``korpair_train.yaml``. ``korpair.Predictor.from_pretrained`` opens
it as it opens the PyTorch folder (``korpair.inference.runtimes.OpenVinoRuntime``).

``quantize=True`` quantizes weights and activations to int8 ahead of time
(NNCF post-training quantization), calibrated on real pairs: those given, else
the validation split of the corpus the folder records it was trained on.
Exporting needs the ``openvino`` extra: ``pip install "korpair[openvino]"``.

Example::

    ov_dir = export_openvino("runs/sample/model")                   # runs/sample/model/openvino
    int8_dir = export_openvino("runs/sample/model", quantize=True)  # runs/sample/model/openvino-int8
    [p] = Predictor.from_pretrained(int8_dir).predict([("비가 온다", "날씨가 맑다")])
    p.label  # 'contradiction'
    export_openvino("model", quantize=True, calibration_pairs=[("비가 온다", "날씨가 맑다"), ...])
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch

from korpair.atomic import write_dir
from korpair.errors import ConfigError, ModelFolderError, disk_full_as_error
from korpair.inference.onnx import check_export_source, load_export_source, traced_graph, write_companions
from korpair.inference.own_pairs import own_pairs, spread
from korpair.inference.packing import packable
from korpair.inference.predictor import PairLike, Predictor
from korpair.inference.quiet import verbose
from korpair.inference.runtimes import OPENVINO_MODEL_FILE, require_openvino, signal_stack_kept
from korpair.model_folder import trained_max_length

log = logging.getLogger(__name__)

# NNCF's default subset: more pairs hardly move the activation ranges, and each costs a forward pass (twice,
# with the bias correction).
MAX_CALIBRATION_PAIRS = 300
# One pair a calibration sample: NNCF's statistics assume a sample is one sequence, and a pair alone is padded
# to its own length, as the Predictor pads a batch to its longest pair.
CALIBRATION_BATCH = 1


def export_openvino(model_dir: str | Path, output_dir: str | Path | None = None, quantize: bool = False,
                    calibration_pairs: Sequence[PairLike] | None = None) -> Path:
    """Write ``openvino_model.xml``/``.bin`` beside the source's ``config.json``, tokenizer and model card, atomically.

    The folder defaults to ``MODEL_DIR/openvino`` (``MODEL_DIR/openvino-int8``
    with ``quantize``). The graph is converted from the PyTorch model with its
    SDPA attention, which OpenVINO runs as one fused op; weights are stored in
    fp32 (the runtime computes in bf16 where the CPU runs it faster).
    ``quantize`` runs NNCF's static int8 quantization for transformers,
    calibrated on up to 300 of ``calibration_pairs`` ((premise, hypothesis)
    pairs), else of the validation split of the corpus recorded in the folder,
    each tokenized as the Predictor tokenizes it; with neither, a
    ``CorpusError`` asks for calibration pairs before anything is converted.
    If anything fails, a full disk included (a ``DiskFullError``), an existing
    output folder is left as it was.

    Example::

        export_openvino("runs/sample/model", "runs/sample/openvino-int8", quantize=True)
    """
    model_dir = Path(model_dir)
    check_export_source(model_dir)
    out = Path(output_dir) if output_dir is not None else model_dir / ("openvino-int8" if quantize else "openvino")
    if out.resolve() == model_dir.resolve():
        raise ModelFolderError(f"{out}: the OpenVINO folder must differ from the model folder it is made from")
    ov = require_openvino(nncf=quantize)
    pairs = _calibration_pairs(model_dir, calibration_pairs) if quantize else None
    tokenizer, model, input_names = load_export_source(model_dir)

    def fill(tmp: Path) -> None:
        converted = _convert(ov, model, input_names)
        if pairs is not None:
            converted = _quantize_int8(converted, _calibration_batches(model, tokenizer, pairs, model_dir,
                                                                       input_names))
        # fp16 weights would change an fp32 model's answers; the int8 model keeps only small tensors in float
        ov.save_model(converted, str(tmp / OPENVINO_MODEL_FILE), compress_to_fp16=False)
        write_companions(model_dir, model, tokenizer, tmp)

    with disk_full_as_error(out), signal_stack_kept():  # NNCF runs the model on OpenVINO's CPU plugin
        write_dir(out, fill)
    log.info("OpenVINO model%s written to %s", " (int8)" if quantize else "", out)
    return out


def _calibration_pairs(model_dir: Path, given: Sequence[PairLike] | None) -> list[PairLike]:
    """Up to ``MAX_CALIBRATION_PAIRS`` pairs spread evenly over ``given`` or the recorded validation split (which
    may be sorted by label or source)."""
    ask = ("pass calibration_pairs=: a few hundred (premise, hypothesis) pairs like those the model will "
           "see, such as its validation pairs")
    if given is not None:
        pairs = list(given)
        if not pairs:
            raise ConfigError(f"calibration_pairs is empty; {ask}")
    else:
        pairs = own_pairs(model_dir, MAX_CALIBRATION_PAIRS, ask=ask)
    return spread(pairs, MAX_CALIBRATION_PAIRS)


class _Recorder:
    """A runtime that keeps the batches a Predictor hands it: calibration data encoded exactly as at inference
    (packed rows where the graph takes them)."""

    name = "calibration"
    device = torch.device("cpu")
    precision = "32"

    def __init__(self, config, input_names: list[str], packed: bool) -> None:
        self.config, self.input_names, self.packed, self.batches = config, input_names, packed, []

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        self.batches.append({name: batch[name].numpy() for name in self.input_names})
        return np.zeros((len(batch["input_ids"]), self.config.num_labels), dtype=np.float32)

    def packed_logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        self.batches.append(dict(inputs))
        return np.zeros((len(inputs["cls_index"]), self.config.num_labels), dtype=np.float32)


def _calibration_batches(model, tokenizer, pairs: list[PairLike], model_dir: Path,
                         input_names: list[str]) -> list[dict[str, np.ndarray]]:
    recorder = _Recorder(model.config, input_names, packable(model))
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    predictor = Predictor(recorder, tokenizer, labels, max_seq_length=trained_max_length(model_dir) or 128)
    predictor.predict_logits(pairs, CALIBRATION_BATCH)  # checks each pair, as predict would
    return recorder.batches


def _convert(ov, model: torch.nn.Module, input_names: list[str]):
    """The PyTorch model as an OpenVINO model, every input's axes left dynamic: a BERT classifier as its
    ``PackedClassifier`` (several pairs a row), anything else as it takes padded batches."""
    module, names, example = traced_graph(model, input_names)
    shapes = [ov.PartialShape([-1] * t.dim()) for t in example]
    with torch.no_grad(), warnings.catch_warnings(), _quiet_transformers():
        # As for the ONNX export: the tracer warns about every Python-level shape check in the model code.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        # ... and reads every attribute of the model, deprecated ones (is_gradient_checkpointing) included.
        warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")
        converted = ov.convert_model(module.eval(), example_input=example,
                                     input=[(shape, ov.Type.i64) for shape in shapes])
    # The tracer names inputs after forward's parameters (one *inputs here); the runtime feeds them by name.
    for port, name in zip(converted.inputs, names):
        port.get_tensor().set_names({name})
    converted.outputs[0].get_tensor().set_names({"logits"})
    return converted


def _quantize_int8(model, batches: list[dict[str, np.ndarray]]):
    import nncf

    with _quiet_nncf():
        return nncf.quantize(model, nncf.Dataset(batches), model_type=nncf.ModelType.TRANSFORMER,
                             subset_size=len(batches))


@contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers' notices while OpenVINO's tracer reads every attribute of the model (``loss_type=None``
    is unrecognized), unless korpair's logger asks for detail."""
    if verbose():
        yield
        return
    from transformers.utils import logging as hf_logging

    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)


@contextmanager
def _quiet_nncf() -> Iterator[None]:
    """NNCF's INFO lines and progress bars ("Statistics collection", "Applying Smooth Quant"), unless korpair's
    logger asks for detail; its warnings still show.

    The bars are drawn on rich's global console (NNCF passes none of its own), so that console is quiet for the
    block, and as it was after it.
    """
    if verbose():
        yield
        return
    import rich
    from nncf.common.logging import nncf_logger

    level, console = nncf_logger.level, rich.get_console()
    was_quiet = console.quiet
    nncf_logger.setLevel(logging.WARNING)
    console.quiet = True
    try:
        yield
    finally:
        console.quiet = was_quiet
        nncf_logger.setLevel(level)
