"""What a ``Predictor`` runs its model on: PyTorch, ONNX Runtime or OpenVINO.

A runtime turns a padded batch (the tensors ``PairCollator`` makes) into
logits as a numpy array, and says which ``device`` and ``precision`` it runs
in; the ``Predictor`` holding it does the rest (encoding, length-sorted
batches, softmax, answers in input order). ``load_runtime`` picks the runtime
a model folder needs: an exported ONNX folder (``model.onnx``) runs on ONNX
Runtime, an OpenVINO folder (``openvino_model.xml``) on OpenVINO's CPU plugin,
anything else (a PyTorch folder or a hub name) on PyTorch.

Example::

    runtime = load_runtime("runs/sample/model/onnx-int8")
    runtime.name, runtime.device, runtime.precision  # ('ONNX Runtime', device(type='cpu'), '32')
    load_runtime("runs/sample/model/openvino").precision  # 'bf16' on a CPU with AVX512-BF16 or AMX
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import os
import pickle
import threading
from pathlib import Path
from typing import Protocol

import numpy as np
import torch
from safetensors import SafetensorError
from transformers import AutoConfig, AutoModelForSequenceClassification, PretrainedConfig

from korpair import hardware
from korpair.errors import ConfigError, KorpairError, ModelFolderError, loading_error
from korpair.hardware import autocast_dtype, check_inference_precision, resolve_device
from korpair.inference.packing import PACKED_INPUTS, PackedClassifier, packable, split_rows
from korpair.inference.quiet import quiet_loading
from korpair.model_folder import check_model_folder

ONNX_MODEL_FILE = "model.onnx"  # what `korpair export` writes, and what marks an ONNX model folder
OPENVINO_MODEL_FILE = "openvino_model.xml"  # beside its weights (.bin): what marks an OpenVINO model folder
# THROUGHPUT: a stream a core or so, one thread each, and every batch split among them. On batch-64 calls it
# gave 1.2-1.35x the pairs/s of LATENCY (one stream whose threads meet at every op) on a 2-core AVX512-BF16 CPU
# (fp32 IR and int8 alike); the price is a single pair's latency, which runs on one stream's cores (about 1.6x).
# So a batch smaller than the stream count (a lone request to the server) runs on a second compilation with the
# LATENCY hint: 11 ms instead of 19-26 ms for one pair of a BERT-base int8 model on 2 cores.
OPENVINO_HINT = "THROUGHPUT"
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

    # A runtime with ``packed = True`` also has ``packed_logits(inputs)``: the logits of pairs packed in rows
    # (``korpair.inference.packing``), which the Predictor then sends instead of padded batches.


class TorchRuntime:
    """A ``transformers`` sequence classifier on a PyTorch device, in fp32 or under autocast.

    The runtime takes the model over: it moves it to ``device`` and, for a
    16-bit precision, keeps its linear layers' weights in that dtype.
    """

    name = "PyTorch"

    def __init__(self, model: torch.nn.Module, *, device: str | None = None, precision: str = "32") -> None:
        self._dtype = autocast_dtype(precision)
        self.device = resolve_device(device)
        self.precision = precision
        self.model = model.eval().to(self.device)
        if self._dtype is not None:
            # Autocast would cast every linear weight again on each call (for BERT-base on a CPU, a pair alone
            # took 1.5x as long); cast once, these products run as under autocast, to the bit.
            for module in self.model.modules():
                if isinstance(module, torch.nn.Linear):
                    module.to(self._dtype)
        self.config = model.config
        # On a GPU, padded batches run on fused attention kernels that take no mask of this shape.
        self.packed = self.device.type == "cpu" and packable(model)
        self._packed = PackedClassifier(self.model) if self.packed else None

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

    def packed_logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of pairs packed in rows (``korpair.inference.packing``), as float32 numpy."""
        autocast = (torch.autocast(self.device.type, dtype=self._dtype) if self._dtype is not None
                    else contextlib.nullcontext())
        with torch.inference_mode(), autocast:
            return self._packed(*(torch.from_numpy(inputs[n]) for n in PACKED_INPUTS)).float().numpy()


class OnnxRuntime:
    """A model exported by ``korpair.inference.onnx.export_onnx``, on ONNX Runtime; it runs as exported (a BERT
    classifier's graph takes packed rows, ``packed``)."""

    name = "ONNX Runtime"
    precision = "32"

    def __init__(self, session, config: PretrainedConfig, device: torch.device) -> None:
        self.session = session
        self.config = config
        self.device = device
        self.input_names = [i.name for i in session.get_inputs()]
        self.packed = "segment_ids" in self.input_names  # exported from a PackedClassifier

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

    def packed_logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of pairs packed in rows (``korpair.inference.packing``), as float32 numpy."""
        [logits] = self.session.run(["logits"], {name: inputs[name] for name in self.input_names})
        return logits


class OpenVinoRuntime:
    """A model exported by ``korpair.inference.openvino.export_openvino`` (fp32 or int8), on OpenVINO's CPU plugin.

    Compiled for the CPU's physical cores with throughput streams, and once
    more for latency (batches smaller than the stream count: a lone pair).
    Float operations run in bf16 where the CPU computes in it faster than in
    fp32 (AVX512-BF16 or AMX, and ``korpair.hardware.cpu_bf16_speedup`` says
    so: some CPUs with the instructions run them slower), else in fp32, and
    ``precision`` says which (``"bf16"`` or ``"32"``).
    Shapes are dynamic, so every batch runs on the same compiled models.
    """

    name = "OpenVINO"

    def __init__(self, compiled, config: PretrainedConfig, precision: str, small=None) -> None:
        self.compiled = compiled
        self.config = config
        self.device = torch.device("cpu")
        self.precision = precision
        self.input_names = [i.get_any_name() for i in compiled.inputs]
        # One request a stream, made once and reused; a batch is split among them (rows are independent).
        streams = max(1, int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")))
        self._requests = [compiled.create_infer_request() for _ in range(streams)]
        # fewer rows than streams: one request of the LATENCY compilation, whose threads share the work
        self._small = small.create_infer_request() if small is not None and streams > 1 else None
        self._lock = threading.Lock()  # calls from several threads take turns with the requests
        self.packed = "segment_ids" in self.input_names  # exported from a PackedClassifier

    @classmethod
    def load(cls, folder: str | Path, *, device: str | None = None, precision: str = "32",
             bf16: bool | None = None) -> OpenVinoRuntime:
        """Read and compile ``FOLDER/openvino_model.xml`` for the CPU.

        ``precision="32"`` runs the model as exported, its float operations in
        bf16 where the CPU computes in it faster than in fp32 (scores within
        about 1e-2 of fp32, the same as PyTorch's bf16 autocast); ``bf16=False``
        keeps fp32, ``bf16=True`` takes bf16 wherever the CPU has it. ``"bf16"``
        insists on bf16, and is refused on a CPU without it.
        """
        folder = Path(folder)
        ov = require_openvino()
        if device is not None and str(device) != "cpu":
            raise ConfigError(f"device {device!r}: an OpenVINO model runs on 'cpu'")
        check_inference_precision(precision)
        with signal_stack_kept():
            return cls._compile(ov, folder, precision, bf16)

    @classmethod
    def _compile(cls, ov, folder: Path, precision: str, bf16: bool | None) -> OpenVinoRuntime:
        core = ov.Core()
        has_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        if precision == "16" or (precision == "bf16" and not has_bf16):
            raise ConfigError(f"{folder}: precision {precision!r}: this CPU runs an OpenVINO model in "
                              f"{'bf16 or ' if has_bf16 else ''}fp32 only; load it with precision='32'")
        check_model_folder(folder)
        try:
            config = AutoConfig.from_pretrained(str(folder))
        except LOAD_ERRORS as err:
            raise loading_error(folder, "config", err) from err
        if bf16 is None and has_bf16 and precision != "bf16":
            # the OpenVINO plugin takes bf16 wherever the flag is, even where it runs slower than fp32 (1.6x on a
            # 2-core Xeon with AVX512-BF16); the timing training's precision auto uses says which is faster
            bf16 = hardware.cpu_bf16_speedup() >= hardware.CPU_BF16_MIN_SPEEDUP
        use_bf16 = has_bf16 and (precision == "bf16" or bf16 is not False)
        settings = {"PERFORMANCE_HINT": OPENVINO_HINT, "INFERENCE_NUM_THREADS": physical_cores(),
                    "INFERENCE_PRECISION_HINT": "bf16" if use_bf16 else "f32"}
        path = folder / OPENVINO_MODEL_FILE
        try:
            model = core.read_model(str(path))
            compiled = core.compile_model(model, "CPU", settings)
            streams = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
            small = None
            if streams > 1 and OPENVINO_HINT != "LATENCY":
                small = core.compile_model(model, "CPU", {**settings, "PERFORMANCE_HINT": "LATENCY"})
        except RuntimeError as err:  # OpenVINO's own errors: a damaged XML, missing or short weights
            detail = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ModelFolderError(f"{path}: OpenVINO cannot load it ({detail}); export the model again") from None
        runs_bf16 = compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16
        return cls(compiled, config, "bf16" if runs_bf16 else "32", small)

    def logits(self, batch: dict[str, torch.Tensor]) -> np.ndarray:
        """Logits of one padded batch, as float32 numpy."""
        inputs = {name: batch[name].numpy() for name in self.input_names}
        rows = len(inputs["input_ids"])
        bounds = np.linspace(0, rows, min(len(self._requests), rows) + 1).astype(int)
        return self._run(inputs, [{n: v[a:b] for n, v in inputs.items()} for a, b in zip(bounds, bounds[1:])])

    def packed_logits(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """Logits of pairs packed in rows (``korpair.inference.packing``), as float32 numpy."""
        return self._run(inputs, split_rows(inputs, len(self._requests)))

    def _run(self, inputs: dict[str, np.ndarray], parts: list[dict[str, np.ndarray]]) -> np.ndarray:
        """The whole call on the LATENCY request where it has fewer rows than there are streams, else its parts
        side by side, one a stream (rows are independent)."""
        with self._lock:
            if self._small is not None and len(inputs["input_ids"]) < len(self._requests):
                return self._small.infer(inputs)[0].astype(np.float32, copy=True)
            requests = self._requests[:len(parts)]
            for request, part in zip(requests, parts):
                request.start_async(part)
            for request in requests:
                request.wait()
            # copied: a request's output buffer is overwritten by its next call
            return np.concatenate([r.get_output_tensor(0).data for r in requests]).astype(np.float32, copy=False)


def load_runtime(name_or_path: str | Path, *, device: str | None = None, precision: str = "32",
                 trust_remote_code: bool = False) -> TorchRuntime | OnnxRuntime | OpenVinoRuntime:
    """ONNX Runtime for a folder with ``model.onnx`` (written by ``export_onnx``), OpenVINO for one with
    ``openvino_model.xml`` (``export_openvino``), PyTorch for anything else."""
    if (Path(name_or_path) / OPENVINO_MODEL_FILE).is_file():
        return OpenVinoRuntime.load(name_or_path, device=device, precision=precision)
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


def require_openvino(nncf: bool = False):
    """The ``openvino`` module (and with ``nncf``, that NNCF is there), or a ``KorpairError`` that says how to
    install the openvino extra."""
    try:
        import openvino

        if nncf:
            importlib.import_module("nncf")
    except ImportError as err:
        raise KorpairError(f"OpenVINO support needs the openvino extra ({err.name} is missing): "
                           'pip install "korpair[openvino]"') from None
    return openvino


class _SignalStack(ctypes.Structure):
    _fields_ = [("ss_sp", ctypes.c_void_p), ("ss_flags", ctypes.c_int), ("ss_size", ctypes.c_size_t)]


@contextlib.contextmanager
def signal_stack_kept():
    """Put back the calling thread's alternate signal stack after OpenVINO's CPU plugin has run.

    Loading the plugin leaves a small alternate signal stack of its own on the thread (11 KiB, its memory not ours to
    trust); Python installs its handlers with SA_ONSTACK, so a later Ctrl+C or SIGTERM in that thread (a
    training run's interruption) was delivered on it and killed the process with a segmentation fault.
    """
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        before = _SignalStack()
        if libc.sigaltstack(None, ctypes.byref(before)) != 0:
            libc = None
    except (OSError, AttributeError):  # not a POSIX libc: nothing to keep
        libc = None
    try:
        yield
    finally:
        if libc is not None:
            libc.sigaltstack(ctypes.byref(before), None)


def physical_cores() -> int:
    """The physical cores among those this process may run on: threads beyond them only contend for the same
    units (OpenVINO, like ONNX Runtime, runs best with one thread a core)."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    try:
        import psutil

        logical, physical = psutil.cpu_count(logical=True), psutil.cpu_count(logical=False)
    except ImportError:
        return usable
    if not logical or not physical:
        return usable
    return max(1, usable * physical // logical)


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
