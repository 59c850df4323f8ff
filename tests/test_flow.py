"""Flow backends: sign convention and units on known motion; backend selection, CUDA paths."""
import numpy as np
import pytest

from flowprep.errors import BackendUnavailable, ConfigError
from flowprep.flow import (FlowChoice, make_backend, merge_params, parse_device,
                           parse_param_items, resolve)
from flowprep.flow.opencv_cuda import OpenCVCuda, cuda_create_args
from synth import translated_frames


def _interior(f, m=12):
    return f[m:-m, m:-m]


@pytest.mark.parametrize("algo,tol", [("tvl1", 0.1), ("farneback", 0.1), ("dis", 0.15)])
def test_cpu_backends_recover_translation(algo, tol):
    dx, dy = 1.25, -0.75
    frames = translated_frames(2, 96, 128, dx, dy, sigma=2.5)
    prev, nxt = (f[..., 0] for f in frames)
    be = make_backend(resolve(algo, "cpu"), merge_params(algo))
    flow = be.compute(prev, nxt)
    assert flow.dtype == np.float32 and flow.shape == (96, 128, 2)
    err = np.abs(_interior(flow) - np.array([dx, dy], np.float32)).reshape(-1, 2).mean(axis=0)
    assert err.max() < tol, err


def test_compute_batch_equals_one_by_one():
    frames = [f[..., 0] for f in translated_frames(3, 64, 80, 1.0, 0.5)]
    be = make_backend(resolve("farneback", "cpu"), merge_params("farneback"))
    pairs = [(frames[0], frames[1]), (frames[1], frames[2])]
    batch = be.compute_batch(pairs)
    assert batch.shape == (2, 64, 80, 2)
    for j, (a, b) in enumerate(pairs):
        np.testing.assert_array_equal(batch[j], be.compute(a, b))


def test_params_are_parsed_typed_and_validated():
    p = merge_params("tvl1", parse_param_items(["warps=3", "tau=0.2", "lambda=0.1"]))
    assert p["warps"] == 3 and isinstance(p["warps"], int)
    assert p["tau"] == 0.2 and p["lambda"] == 0.1
    assert merge_params("tvl1")["nscales"] == 5  # OpenCV's defaults
    with pytest.raises(ConfigError, match="unknown parameter 'wraps'.*warps"):
        merge_params("tvl1", {"wraps": 3})
    with pytest.raises(ConfigError, match="integer"):
        merge_params("tvl1", {"warps": "many"})
    with pytest.raises(ConfigError, match="key=value"):
        parse_param_items(["warps"])
    with pytest.raises(ConfigError, match="preset"):
        merge_params("dis", {"preset": "slow"})


def test_dis_presets_record_the_values_used():
    fast = make_backend(resolve("dis", "cpu"), merge_params("dis", {"preset": "ultrafast"}))
    med = make_backend(resolve("dis", "cpu"), merge_params("dis", {"preset": "medium"}))
    assert fast.params["preset"] == "ultrafast"
    assert fast.params["patch_size"] == 8 and med.params["patch_size"] == 8
    assert fast.params["variational_refinement_iterations"] == 0
    assert med.params["variational_refinement_iterations"] > 0
    tuned = make_backend(resolve("dis", "cpu"), merge_params("dis", {"patch_size": 12}))
    assert tuned.params["patch_size"] == 12


@pytest.mark.parametrize("backend", ["opencv", "native"])
def test_tvl1_result_does_not_depend_on_earlier_small_frames(backend):
    """OpenCV's calc() lowers nscales for good after a tiny frame; no backend may carry it over."""
    frames = [f[..., 0] for f in translated_frames(2, 96, 128, 1.25, -0.5)]
    fresh = make_backend(resolve("tvl1", "cpu", backend), merge_params("tvl1")).compute(*frames)
    be = make_backend(resolve("tvl1", "cpu", backend), merge_params("tvl1"))
    tiny = np.zeros((20, 20), np.uint8)
    be.compute(tiny, tiny)
    np.testing.assert_array_equal(be.compute(*frames), fresh)


def test_tvl1_parameters_reach_opencv():
    be = make_backend(resolve("tvl1", "cpu", "opencv"), merge_params("tvl1", {"warps": 2, "epsilon": 0.02}))
    assert be._of.getWarpingsNumber() == 2
    assert be._of.getEpsilon() == pytest.approx(0.02)
    assert be._of.getScalesNumber() == 5 and be._of.getMedianFiltering() == 5


# ---- selection, without a GPU -------------------------------------------------------------

def test_auto_without_cuda_is_cpu():
    # tvl1 on the CPU: the native TV-L1, or OpenCV's with a note where it is missing
    assert resolve("tvl1", "auto", "auto", opencv_gpus=0, torch_gpus=0, native=True) == \
        FlowChoice("tvl1", "native", "cpu")
    fallback = resolve("tvl1", "auto", "auto", opencv_gpus=0, torch_gpus=0, native=False)
    assert fallback == FlowChoice("tvl1", "opencv-cpu", "cpu")
    assert "OpenCV" in fallback.note and "C compiler" in fallback.note
    assert resolve("tvl1", "cpu", "opencv", native=True) == FlowChoice("tvl1", "opencv-cpu", "cpu")
    assert resolve("tvl1", "cpu", "native", native=True) == FlowChoice("tvl1", "native", "cpu")
    with pytest.raises(BackendUnavailable, match="--backend opencv"):
        resolve("tvl1", "cpu", "native", native=False)
    assert resolve("dis", "auto", "auto", opencv_gpus=0, torch_gpus=0).implementation == "opencv-cpu"


def test_auto_prefers_opencv_cuda_then_torch_cuda():
    c = resolve("tvl1", "auto", "auto", opencv_gpus=2, torch_gpus=2)
    assert (c.implementation, c.gpus) == ("opencv-cuda", (0, 1))
    c = resolve("tvl1", "auto", "auto", opencv_gpus=0, torch_gpus=1)
    assert (c.implementation, c.device_kind) == ("torch", "cuda")
    # DIS has no CUDA version in OpenCV: auto falls back to the CPU
    assert resolve("dis", "auto", "auto", opencv_gpus=2, torch_gpus=0).implementation == "opencv-cpu"


def test_cuda_without_cuda_opencv_says_what_to_do():
    with pytest.raises(BackendUnavailable, match="no CUDA.*PyPI.*WITH_CUDA.*--backend torch.*--device cpu"):
        resolve("tvl1", "cuda", "opencv", opencv_gpus=0, torch_gpus=0)
    with pytest.raises(BackendUnavailable, match="no CUDA"):
        resolve("farneback", "cuda:0", "auto", opencv_gpus=0, torch_gpus=0)


def test_brox_needs_cuda():
    with pytest.raises(BackendUnavailable, match="brox runs only on CUDA.*tvl1, farneback or dis"):
        resolve("brox", "cpu")
    with pytest.raises(BackendUnavailable, match="brox needs CUDA"):
        resolve("brox", "auto", opencv_gpus=0)
    assert resolve("brox", "auto", opencv_gpus=1).implementation == "opencv-cuda"


def test_dis_on_cuda_is_refused_with_alternatives():
    with pytest.raises(BackendUnavailable, match="no dis.*--device cpu"):
        resolve("dis", "cuda", "opencv", opencv_gpus=1)


def test_torch_backend_rules():
    assert resolve("tvl1", "cpu", "torch").implementation == "torch"
    with pytest.raises(BackendUnavailable, match="tvl1 only"):
        resolve("farneback", "cpu", "torch")
    with pytest.raises(BackendUnavailable, match="PyTorch sees no GPU"):
        resolve("tvl1", "cuda", "torch", torch_gpus=0)


def test_device_parsing_and_gpu_assignment():
    assert parse_device("cuda:0,2") == ("cuda", [0, 2])
    for bad in ("gpu", "cuda:x", "cuda:-1"):
        with pytest.raises(ConfigError, match="device must be"):
            parse_device(bad)
    c = resolve("tvl1", "cuda:1,3", "opencv", opencv_gpus=4)
    assert c.gpus == (1, 3)
    assert [c.device_for_worker(i) for i in range(4)] == ["cuda:1", "cuda:3", "cuda:1", "cuda:3"]
    with pytest.raises(BackendUnavailable, match="cuda:5.*4 CUDA device"):
        resolve("tvl1", "cuda:5", "opencv", opencv_gpus=4)


def test_unknown_names():
    with pytest.raises(ConfigError, match="unknown flow algorithm 'raft'"):
        resolve("raft")
    with pytest.raises(ConfigError, match="unknown backend"):
        resolve("tvl1", backend="jax")


def test_cuda_parameter_mapping():
    name, args, notes = cuda_create_args("tvl1", merge_params("tvl1"))
    assert name == "OpticalFlowDual_TVL1"
    assert list(args) == ["tau", "lambda", "theta", "nscales", "warps", "epsilon", "iterations",
                          "scaleStep", "gamma", "useInitialFlow"]  # cv::cuda create() order
    assert args["iterations"] == 300 and args["lambda"] == 0.15 and args["scaleStep"] == 0.8
    assert "median_filtering" in notes
    name, args, _ = cuda_create_args("farneback", merge_params("farneback"))
    assert name == "FarnebackOpticalFlow"
    assert list(args)[:2] == ["numLevels", "pyrScale"] and args["winSize"] == 15
    name, args, _ = cuda_create_args("brox", merge_params("brox"))
    assert name == "BroxOpticalFlow" and args["alpha"] == 0.197 and args["outer_iterations"] == 150
    with pytest.raises(BackendUnavailable, match="no 'dis' flow"):
        cuda_create_args("dis", merge_params("dis"))


def test_cuda_backend_refuses_without_cuda_opencv():
    import cv2
    assert cv2.cuda.getCudaEnabledDeviceCount() == 0  # PyPI OpenCV
    with pytest.raises(BackendUnavailable, match="no CUDA"):
        OpenCVCuda("tvl1", merge_params("tvl1"), "cuda:0")


def test_cuda_backend_calls_the_cv2_cuda_api(monkeypatch):
    """Everything short of a kernel: device selection, factory, upload/calc/download."""
    import cv2
    calls = []

    class FakeGpuMat:
        def upload(self, a):
            calls.append(("upload", a.dtype.name, a.shape))
            self.a = a

    class FakeFlowMat:
        def __init__(self, shape):
            self.shape = shape

        def download(self):
            return np.zeros(self.shape + (2,), np.float32)

    class FakeAlgo:
        def calc(self, g0, g1, flow):
            calls.append(("calc",))
            return FakeFlowMat(g0.a.shape)

    class Factory:
        @staticmethod
        def create(*args):
            calls.append(("create", args))
            return FakeAlgo()

    monkeypatch.setattr(cv2.cuda, "getCudaEnabledDeviceCount", lambda: 2)
    monkeypatch.setattr(cv2.cuda, "setDevice", lambda i: calls.append(("setDevice", i)), raising=False)
    monkeypatch.setattr(cv2.cuda, "BroxOpticalFlow", Factory, raising=False)
    monkeypatch.setattr(cv2, "cuda_GpuMat", FakeGpuMat, raising=False)
    be = OpenCVCuda("brox", merge_params("brox"), "cuda:1")
    out = be.compute(np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8))
    assert out.shape == (8, 10, 2)
    assert ("setDevice", 1) in calls
    assert ("create", (0.197, 50.0, 0.8, 5, 150, 10)) in calls
    assert ("upload", "float32", (8, 10)) in calls  # Brox takes float [0, 1]
    with pytest.raises(BackendUnavailable, match="cuda:2.*2 CUDA device"):
        OpenCVCuda("brox", merge_params("brox"), "cuda:2")
