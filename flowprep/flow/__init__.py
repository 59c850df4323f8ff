"""Flow backends by name, and the choice of who computes them where.

    make_backend(resolve("tvl1", device="auto", backend="auto"), params)

``resolve`` is pure given the machine's CUDA device counts, so the selection
rules are testable without a GPU:

- backend "native": flowprep's compiled TV-L1 (flowprep._tvl1; tvl1 only, CPU).
- backend "opencv": OpenCV on the CPU, or cv2.cuda when the device is CUDA.
- backend "torch": the batched PyTorch TV-L1 (tvl1 only), on any torch device.
- backend "auto": OpenCV CUDA when this OpenCV has CUDA and the algorithm
  exists there; else torch on a CUDA device when the algorithm is tvl1 and
  a CUDA build of PyTorch sees a GPU; else, on the CPU, the native TV-L1 for
  tvl1 (OpenCV's DualTVL1 when the extension is missing, with a note saying
  so and how to get it) and OpenCV for the other algorithms.
- device "auto" means CUDA when the chosen backend can use it, else CPU.
"""
from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from ..errors import BackendUnavailable, ConfigError
from .base import FlowBackend
from .opencv_cpu import DIS_DEFAULTS, DIS_PRESETS, FARNEBACK_DEFAULTS
from .opencv_cuda import BROX_DEFAULTS, CUDA_ALGOS, cuda_device_count

ALGOS = ("tvl1", "farneback", "dis", "brox")
BACKENDS = ("auto", "native", "opencv", "torch")
CPU_ALGOS = ("tvl1", "farneback", "dis")


def default_params(algo: str) -> Dict[str, Any]:
    """The default parameters of ``algo`` (a fresh dict)."""
    if algo == "tvl1":
        from .tvl1_params import TVL1_DEFAULTS
        return dict(TVL1_DEFAULTS)
    if algo == "farneback":
        return dict(FARNEBACK_DEFAULTS)
    if algo == "dis":
        return dict(DIS_DEFAULTS)
    if algo == "brox":
        return dict(BROX_DEFAULTS)
    raise ConfigError(f"unknown flow algorithm {algo!r}; choose one of {', '.join(ALGOS)}")


def _coerce(key: str, value: Any, default: Any) -> Any:
    if isinstance(value, str):
        text = value.strip()
        if isinstance(default, bool) or default is None:
            low = text.lower()
            if low in ("true", "yes", "on"):
                return True
            if low in ("false", "no", "off"):
                return False
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            value = text
    if isinstance(default, bool):
        if not isinstance(value, (bool, int)):
            raise ConfigError(f"parameter {key} must be true or false, got {value!r}")
        return bool(value)
    if isinstance(default, int) and not isinstance(default, bool):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool):
            raise ConfigError(f"parameter {key} must be an integer, got {value!r}")
        return value
    if isinstance(default, float):
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ConfigError(f"parameter {key} must be a number, got {value!r}")
        return float(value)
    return value


def merge_params(algo: str, overrides: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """Defaults of ``algo`` updated by ``overrides`` (strings are parsed to the default's type).

    Raises ConfigError naming an unknown key and listing the valid ones.
    """
    params = default_params(algo)
    for key, value in (overrides or {}).items():
        if key not in params:
            raise ConfigError(
                f"unknown parameter {key!r} for {algo}; valid: {', '.join(sorted(params))}")
        params[key] = _coerce(key, value, params[key])
    if algo == "tvl1":
        from .tvl1_params import validate_tvl1_params
        params = validate_tvl1_params(params)  # the run's one check (a TVL1Params)
    if algo == "dis" and params["preset"] not in DIS_PRESETS:
        raise ConfigError(f"dis preset must be one of {', '.join(DIS_PRESETS)}, got {params['preset']!r}")
    return params


def parse_param_items(items: Iterable[str]) -> Dict[str, str]:
    """Parse CLI ``key=value`` strings into a dict (values stay strings)."""
    out: Dict[str, str] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--param takes key=value, got {item!r}")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def parse_device(device: str) -> Tuple[str, List[int]]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'cuda:0,1,...' -> (kind, explicit GPU indices)."""
    d = (device or "auto").strip().lower()
    if d in ("auto", "cpu", "cuda"):
        return d, []
    if d.startswith("cuda:"):
        try:
            ids = [int(x) for x in d[5:].split(",") if x.strip() != ""]
        except ValueError:
            ids = []
        if ids and all(i >= 0 for i in ids):
            return "cuda", ids
    raise ConfigError(f"device must be auto, cpu, cuda, cuda:N or cuda:N,M,..., got {device!r}")


#: files whose presence means a GPU driver may be installed: NVIDIA's kernel driver and
#: device nodes, WSL's GPU paravirtualization, AMD's ROCm (torch.cuda runs on HIP there)
GPU_DRIVER_PATHS = ("/proc/driver/nvidia/version", "/dev/nvidiactl", "/dev/nvidia0",
                    "/dev/dxg", "/dev/kfd")


def gpu_driver_present(paths: Sequence[str] = GPU_DRIVER_PATHS) -> bool:
    """Whether a GPU could exist here, decided without importing torch (~0.1 ms).

    True when one of ``paths`` exists or the CUDA driver library (libcuda) is on the
    loader's path. False means no CUDA device can be visible to any library, so
    ``--device auto`` picks the CPU without asking PyTorch (whose import costs 1-2 s).
    Set FLOWPREP_ASSUME_GPU=1 to skip this check (torch then decides, as before).
    """
    import os
    if os.environ.get("FLOWPREP_ASSUME_GPU", "").strip() == "1":
        return True
    if any(os.path.exists(p) for p in paths):
        return True
    import ctypes.util
    return ctypes.util.find_library("cuda") is not None


def torch_cuda_device_count() -> int:
    """GPUs a CUDA build of PyTorch sees; 0 without torch, or without any GPU driver here
    (then torch is not imported: :func:`gpu_driver_present`)."""
    try:
        import importlib.util
        if importlib.util.find_spec("torch") is None:
            return 0
        if not gpu_driver_present():
            return 0
        import torch
        return int(torch.cuda.device_count()) if torch.cuda.is_available() else 0
    except Exception:  # a broken torch install must not break CPU extraction
        return 0


@dataclass(frozen=True)
class FlowChoice:
    """Who computes the flow where: the result of :func:`resolve`.

    Attributes:
        algo: algorithm name.
        implementation: "native", "opencv-cpu", "opencv-cuda" or "torch".
        device_kind: "cpu" or "cuda".
        gpus: GPU indices to spread workers over (empty on the CPU).
        note: a line for the user about the choice (auto's fallback from the
            native TV-L1 to OpenCV), or "" (not part of equality).
    """

    algo: str
    implementation: str
    device_kind: str
    gpus: Tuple[int, ...] = field(default_factory=tuple)
    note: str = field(default="", compare=False)

    def device_for_worker(self, worker_index: int) -> str:
        """Device string for worker ``worker_index``: GPUs are assigned round-robin."""
        if self.device_kind == "cpu" or not self.gpus:
            return "cpu"
        return f"cuda:{self.gpus[worker_index % len(self.gpus)]}"


def resolve(algo: str, device: str = "auto", backend: str = "auto",
            opencv_gpus: Optional[int] = None, torch_gpus: Optional[int] = None,
            native: Optional[bool] = None) -> FlowChoice:
    """Choose the implementation and device for ``algo``.

    Args:
        algo: one of ALGOS.
        device: "auto", "cpu", "cuda", "cuda:N" or "cuda:N,M".
        backend: "auto", "native", "opencv" or "torch".
        opencv_gpus, torch_gpus: device counts (looked up when None; given in tests).
        native: whether the compiled TV-L1 is usable here (looked up when None).
    Raises:
        ConfigError for unknown names; BackendUnavailable with what to install
        or choose instead when the combination cannot run here.
    """
    if algo not in ALGOS:
        raise ConfigError(f"unknown flow algorithm {algo!r}; choose one of {', '.join(ALGOS)}")
    if backend not in BACKENDS:
        raise ConfigError(f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}")
    kind, ids = parse_device(device)
    cv_n = cuda_device_count() if opencv_gpus is None else opencv_gpus
    if backend == "torch" and algo != "tvl1":
        raise BackendUnavailable(f"the torch backend computes tvl1 only; use --backend opencv for {algo}")
    if backend == "native":
        if algo != "tvl1":
            raise BackendUnavailable(f"the native backend computes tvl1 only; use --backend opencv for {algo}")
        if kind == "cuda":
            raise BackendUnavailable(
                "the native TV-L1 runs on the CPU; for CUDA use --backend torch or --backend opencv "
                "(with an OpenCV built with CUDA), or choose --device cpu")
        if not _native_ok(native):
            from .native_tvl1 import _require
            _require()  # raises BackendUnavailable saying why and what to do
            raise BackendUnavailable("--backend native asked for, but the native TV-L1 is not available "
                                     "here; choose --backend opencv")
        return FlowChoice(algo, "native", "cpu")

    def gpus(n: int) -> Tuple[int, ...]:
        if ids:
            bad = [i for i in ids if i >= n]
            if bad:
                raise BackendUnavailable(
                    f"cuda:{','.join(map(str, bad))} asked for, but only {n} CUDA device(s) are visible")
            return tuple(ids)
        return tuple(range(n))

    no_cuda_msg = (
        "CUDA was asked for, but this OpenCV has no CUDA (PyPI's opencv wheels are CPU-only). "
        "Install an OpenCV built with WITH_CUDA=ON and opencv_contrib's cudaoptflow, "
        "or use --backend torch with a CUDA build of PyTorch (tvl1), or choose --device cpu")

    if algo == "brox":
        if kind == "cpu" or backend == "torch":
            raise BackendUnavailable(
                "brox runs only on CUDA (cv2.cuda.BroxOpticalFlow has no CPU version in OpenCV); "
                "choose --algo tvl1, farneback or dis for the CPU")
        if cv_n == 0:
            raise BackendUnavailable(no_cuda_msg.replace("CUDA was asked for", "brox needs CUDA"))
        return FlowChoice(algo, "opencv-cuda", "cuda", gpus(cv_n))

    if backend == "torch":
        if kind == "cpu":
            return FlowChoice(algo, "torch", "cpu")
        th_n = torch_cuda_device_count() if torch_gpus is None else torch_gpus
        if th_n == 0:
            if kind == "auto":
                return FlowChoice(algo, "torch", "cpu")
            raise BackendUnavailable(
                "CUDA was asked for with --backend torch, but PyTorch sees no GPU; install a CUDA "
                "build of PyTorch (https://pytorch.org) or choose --device cpu")
        return FlowChoice(algo, "torch", "cuda", gpus(th_n))

    # backend opencv or auto
    if kind == "cpu":
        return _cpu_choice(algo, backend, native)
    if cv_n > 0 and algo in CUDA_ALGOS:
        return FlowChoice(algo, "opencv-cuda", "cuda", gpus(cv_n))
    if backend == "auto" and algo == "tvl1":
        th_n = torch_cuda_device_count() if torch_gpus is None else torch_gpus
        if th_n > 0:
            return FlowChoice(algo, "torch", "cuda", gpus(th_n))
    if kind == "cuda":
        if cv_n > 0:
            raise BackendUnavailable(
                f"OpenCV's CUDA module has no {algo}; choose --device cpu, or one of "
                f"{', '.join(CUDA_ALGOS)}")
        raise BackendUnavailable(no_cuda_msg)
    return _cpu_choice(algo, backend, native)


def _native_ok(native: Optional[bool]) -> bool:
    if native is not None:
        return bool(native)
    from .native_tvl1 import native_available
    return native_available()


def _cpu_choice(algo: str, backend: str, native: Optional[bool]) -> FlowChoice:
    """auto on the CPU: the native TV-L1 for tvl1 when it is here, else OpenCV (with a note)."""
    if backend == "auto" and algo == "tvl1":
        if _native_ok(native):
            return FlowChoice(algo, "native", "cpu")
        from .native_tvl1 import fallback_message
        return FlowChoice(algo, "opencv-cpu", "cpu", note=fallback_message())
    return FlowChoice(algo, "opencv-cpu", "cpu")


def make_backend(choice: FlowChoice, params: Dict[str, Any], device: str = "cpu",
                 batch_size: Optional[int] = None, threads: Optional[int] = None) -> FlowBackend:
    """Instantiate the backend for ``choice`` on ``device`` (a worker's device string).

    ``threads`` caps the CPU threads of the torch backend (OpenCV's are set per
    process with cv2.setNumThreads), so N workers do not oversubscribe the cores.
    """
    if choice.implementation == "native":
        from .native_tvl1 import NativeTVL1
        return NativeTVL1(params, "cpu")
    if choice.implementation == "opencv-cpu":
        from .opencv_cpu import OpenCVDIS, OpenCVFarneback, OpenCVTVL1
        cls = {"tvl1": OpenCVTVL1, "farneback": OpenCVFarneback, "dis": OpenCVDIS}[choice.algo]
        return cls(params, "cpu")
    if choice.implementation == "opencv-cuda":
        from .opencv_cuda import OpenCVCuda
        return OpenCVCuda(choice.algo, params, device)
    if choice.implementation == "torch":
        from .torch_tvl1 import TorchTVL1Backend
        return TorchTVL1Backend(params, device=device, batch_size=batch_size, threads=threads)
    raise ConfigError(f"unknown implementation {choice.implementation!r}")
