"""What a ``Predictor`` runs its model on: PyTorch or ONNX Runtime.

A runtime turns a padded batch (the tensors ``PairCollator`` makes) into
logits as a numpy array, and says which ``device`` and ``precision`` it runs
in; the ``Predictor`` holding it does the rest (encoding, length-sorted
batches, softmax, answers in input order). ``load_runtime`` picks the runtime
a model folder needs: an exported ONNX folder (``model.onnx``) runs on ONNX
Runtime, anything else (a PyTorch folder or a hub name) on PyTorch.

Example::

    runtime = load_runtime("runs/sample/model/onnx-int8")
    runtime.name, runtime.device, runtime.precision  # ('ONNX Runtime', device(type='cpu'), '32')
"""

from __future__ import annotations

import contextlib
import pickle
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

from korpair.errors import ConfigError, KorpairError, ModelFolderError, loading_error
from korpair.hardware import autocast_dtype, check_inference_precision, resolve_device
from korpair.inference.quiet import quiet_loading
from korpair.model_folder import check_model_folder

ONNX_MODEL_FILE = "model.onnx"  # what `korpair export` writes, and what marks an ONNX model folder
# What transformers raises for a folder it cannot load: no or bad files (OSError, ValueError), weights
# that do not fit the config (RuntimeError), damaged safetensors, a pickle weights_only refuses.
LOAD_ERRORS = (OSError, ValueError, KeyError, RuntimeError, SafetensorError, pickle.UnpicklingError)


class Runtime(Protocol):
    """What a ``Predictor`` needs from the engine under it."""

    name: str
    config: PretrainedConfig  # the folder's config.json: labels, model type
    device: torch.device
    precision: str

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray: ...


class TorchRuntime:
    """A ``transformers`` sequence classifier on a PyTorch device, in fp32 or under autocast."""

    name = "PyTorch"

    def __init__(self, model: torch.nn.Module, *, device: str | None = None, precision: str = "32") -> None:
        self._dtype = autocast_dtype(precision)
        self.device = resolve_device(device)
        self.precision = precision
        self.model = model.eval().to(self.device)
        self.config = model.config

    @classmethod
    def load(cls, name_or_path: str | Path, *, device: str | None = None, precision: str = "32",
             trust_remote_code: bool = False) -> TorchRuntime:
        """Load a PyTorch model folder or hub name (safetensors weights; remote code only when asked).

        A local folder is checked first (``korpair.model_folder.check_model_folder``).
        """
        check_inference_precision(precision)
        if Path(name_or_path).is_dir():
            check_model_folder(name_or_path)
        try:
            with quiet_loading():
                model = AutoModelForSequenceClassification.from_pretrained(
                    str(name_or_path), trust_remote_code=trust_remote_code)
        except LOAD_ERRORS as err:
            raise loading_error(name_or_path, "model", err) from err
        return cls(model, device=device, precision=precision)

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Logits of one padded batch, as float32 numpy."""
        batch = {k: v.to(self.device) for k, v in batch.items() if k != "labels"}
        autocast = (torch.autocast(self.device.type, dtype=self._dtype) if self._dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            return self.model(**batch).logits.float().cpu().numpy()


class OnnxRuntime:
    """A model exported by ``korpair.inference.onnx.export_onnx``, on ONNX Runtime; it runs as exported."""

    name = "ONNX Runtime"
    precision = "32"

    def __init__(self, session, config: PretrainedConfig, device: torch.device) -> None:
        self.session = session
        self.config = config
        self.device = device
        self.input_names = [i.name for i in session.get_inputs()]

    @classmethod
    def load(cls, folder: str | Path, *, device: str | None = None, precision: str = "32") -> OnnxRuntime:
        """Load ``FOLDER/model.onnx``; ``device`` defaults to a GPU where ONNX Runtime has CUDA, else the CPU."""
        folder = Path(folder)
        check_inference_precision(precision, onnx_model=str(folder))
        ort = require_onnxruntime()
        providers, resolved = _onnx_providers(ort, device)
        check_model_folder(folder)
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except LOAD_ERRORS as err:
            raise loading_error(folder, "config", err) from err
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        from onnxruntime.capi import onnxruntime_pybind11_state as ort_errors

        try:
            session = ort.InferenceSession(str(folder / ONNX_MODEL_FILE), options, providers=providers)
        except (ort_errors.Fail, ort_errors.InvalidProtobuf, ort_errors.InvalidGraph) as err:
            raise ModelFolderError(f"{folder / ONNX_MODEL_FILE}: ONNX Runtime cannot load it: {err}") from None
        return cls(session, config, resolved)

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Logits of one padded batch, as numpy."""
        [logits] = self.session.run(["logits"], {name: batch[name].numpy() for name in self.input_names})
        return logits


def load_runtime(name_or_path: str | Path, *, device: str | None = None, precision: str = "32",
                 trust_remote_code: bool = False) -> TorchRuntime | OnnxRuntime:
    """ONNX Runtime for a folder with ``model.onnx`` (written by ``export_onnx``), PyTorch for anything else."""
    if (Path(name_or_path) / ONNX_MODEL_FILE).is_file():
        return OnnxRuntime.load(name_or_path, device=device, precision=precision)
    return TorchRuntime.load(name_or_path, device=device, precision=precision, trust_remote_code=trust_remote_code)


def require_onnxruntime():
    """The ``onnxruntime`` module, or a ``KorpairError`` that says how to install the onnx extra."""
    try:
        import onnx  # noqa: F401
        import onnxruntime
    except ImportError as err:
        raise KorpairError(f"ONNX support needs the onnx extra ({err.name} is missing): "
                           'pip install "korpair[onnx]"') from None
    return onnxruntime


def _onnx_providers(ort, device: str | None) -> tuple[list, torch.device]:
    available = ort.get_available_providers()
    has_cuda = "CUDAExecutionProvider" in available
    if device is None:
        device = "cuda" if has_cuda else "cpu"
    try:
        wanted = torch.device(device)
    except (RuntimeError, TypeError):
        raise ConfigError(f"device {device!r}: an ONNX model runs on 'cpu' or 'cuda' (or 'cuda:N')") from None
    if wanted.type == "cpu":
        return ["CPUExecutionProvider"], wanted
    if wanted.type != "cuda":
        raise ConfigError(f"device {device!r}: an ONNX model runs on 'cpu' or 'cuda' (or 'cuda:N')")
    if not has_cuda:
        raise ConfigError(f"device {device!r}: this ONNX Runtime has no CUDA provider (it has "
                          f"{', '.join(available)}); install onnxruntime-gpu, or use device='cpu'")
    # Nodes the CUDA provider lacks (some int8 ones) fall back to the CPU provider.
    return [("CUDAExecutionProvider", {"device_id": wanted.index or 0}), "CPUExecutionProvider"], wanted
