"""The PyTorch TV-L1 backend against OpenCV's DualTVL1 and against known motion.

Frames are small (96 x 80) synthetic textures (Gaussian-filtered noise scaled
to 0..255) moved by a known field with cv2.remap, so every test knows the true
flow. Run from the repository root:

    PYTHONPATH=. python -m pytest tests/test_torch_tvl1.py
"""
import os
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

from flowprep.errors import BackendUnavailable, ConfigError  # noqa: E402
from flowprep.flow.torch_tvl1 import (  # noqa: E402
    TVL1_DEFAULTS,
    TorchTVL1Backend,
    auto_batch_size,
    tvl1_batch,
    validate_tvl1_params,
)

H, W = 80, 96
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def texture(h, w, seed, sigma=2.0):
    """float32 (h, w) smooth random texture spanning 0..255."""
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.standard_normal((h, w)).astype(np.float32), (0, 0), sigma)
    return (noise - noise.min()) / (noise.max() - noise.min()) * 255.0


def smooth_field(h, w):
    """float32 (h, w, 2) smooth flow, |d| up to ~2.3 px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fx = 1.5 * np.sin(2 * np.pi * xx / w) + 0.8 * np.cos(2 * np.pi * yy / h)
    fy = 1.0 * np.cos(1.4 * np.pi * xx / w) - 0.7 * np.sin(2.6 * np.pi * yy / h)
    return np.stack([fx, fy], -1).astype(np.float32)


def to_u8(img):
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def pair_with_flow(seed, flow):
    """(prev, next) uint8 with prev(x) = next(x + flow(x)): the project's convention."""
    nxt = texture(H, W, seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    prev = cv2.remap(nxt, xx + flow[..., 0], yy + flow[..., 1], cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REFLECT)
    return to_u8(prev), to_u8(nxt)


def translated_pair(seed, dx, dy, margin=8):
    """(prev, next) uint8 where next is prev's scene moved by (dx, dy)."""
    big = texture(H + 2 * margin, W + 2 * margin, seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    prev = big[margin:margin + H, margin:margin + W]
    nxt = cv2.remap(big, xx + margin - dx, yy + margin - dy, cv2.INTER_CUBIC)
    return to_u8(prev), to_u8(nxt)


def opencv_tvl1(prev, nxt, params=None):
    p = validate_tvl1_params(params)
    algo = cv2.optflow.DualTVL1OpticalFlow_create()  # a fresh object: calc() mutates nscales
    algo.setTau(p["tau"])
    algo.setLambda(p["lambda"])
    algo.setTheta(p["theta"])
    algo.setScalesNumber(p["nscales"])
    algo.setWarpingsNumber(p["warps"])
    algo.setEpsilon(p["epsilon"])
    algo.setInnerIterations(p["inner_iterations"])
    algo.setOuterIterations(p["outer_iterations"])
    algo.setScaleStep(p["scale_step"])
    algo.setGamma(p["gamma"])
    algo.setMedianFiltering(p["median_filtering"])
    return algo.calc(prev, nxt, None)


def epe(flow, truth, margin=0):
    err = np.linalg.norm(flow - truth, axis=-1)
    if margin:
        err = err[margin:-margin, margin:-margin]
    return float(err.mean())


@pytest.fixture(scope="module")
def smooth_pairs():
    truth = smooth_field(H, W)
    pairs = [pair_with_flow(seed, truth) for seed in (1, 2, 3)]
    return pairs, truth


@pytest.fixture(scope="module")
def cpu_backend():
    return TorchTVL1Backend({}, device="cpu")


@pytest.fixture(scope="module")
def smooth_results(smooth_pairs, cpu_backend):
    pairs, truth = smooth_pairs
    ours = cpu_backend.compute_batch(pairs)
    ref = np.stack([opencv_tvl1(a, b) for a, b in pairs])
    return ours, ref, truth


def test_defaults_are_opencvs():
    algo = cv2.optflow.DualTVL1OpticalFlow_create()
    assert TVL1_DEFAULTS == {
        "tau": algo.getTau(), "lambda": algo.getLambda(), "theta": algo.getTheta(),
        "nscales": algo.getScalesNumber(), "warps": algo.getWarpingsNumber(),
        "epsilon": algo.getEpsilon(), "inner_iterations": algo.getInnerIterations(),
        "outer_iterations": algo.getOuterIterations(), "scale_step": algo.getScaleStep(),
        "gamma": algo.getGamma(), "median_filtering": algo.getMedianFiltering(),
    }


def test_output_contract(smooth_results):
    ours, _, _ = smooth_results
    assert ours.shape == (3, H, W, 2)
    assert ours.dtype == np.float32
    assert np.isfinite(ours).all()


def test_accuracy_matches_opencv_on_smooth_flow(smooth_results):
    ours, ref, truth = smooth_results
    for i in range(len(ours)):
        e_ours = epe(ours[i], truth, margin=4)
        e_ref = epe(ref[i], truth, margin=4)
        assert e_ours <= 1.10 * e_ref, (i, e_ours, e_ref)
        assert e_ours < 0.2, (i, e_ours)  # and the method works at all
        dist = float(np.linalg.norm(ours[i] - ref[i], axis=-1).mean())
        assert dist <= 0.15, (i, dist)


def test_constant_translation_recovered(cpu_backend):
    dx, dy = 1.5, -0.75
    prev, nxt = translated_pair(7, dx, dy)
    flow = cpu_backend.compute(prev, nxt)
    assert flow.shape == (H, W, 2) and flow.dtype == np.float32
    inner = flow[10:-10, 10:-10]
    err = np.linalg.norm(inner - np.array([dx, dy], np.float32), axis=-1).mean()
    assert err <= 0.1, err


def test_sign_convention_matches_opencv(cpu_backend):
    # next is prev moved right and up: dx > 0, dy < 0, next(x + d) = prev(x)
    prev, nxt = translated_pair(11, 2.25, -1.25)
    ours = cpu_backend.compute(prev, nxt)[10:-10, 10:-10].mean(axis=(0, 1))
    ref = opencv_tvl1(prev, nxt)[10:-10, 10:-10].mean(axis=(0, 1))
    assert ours[0] > 2.0 and ours[1] < -1.0, ours
    assert np.sign(ours).tolist() == np.sign(ref).tolist()
    assert np.allclose(ours, ref, atol=0.05), (ours, ref)
    # and swapping the frames reverses the flow
    back = cpu_backend.compute(nxt, prev)[10:-10, 10:-10].mean(axis=(0, 1))
    assert np.allclose(back, -ours, atol=0.1), (back, ours)


def test_batch_equals_one_by_one(smooth_pairs):
    pairs, truth = smooth_pairs
    translated = translated_pair(5, -0.5, 1.25)
    pairs = list(pairs) + [translated, (pairs[0][1], pairs[0][0])]
    batched = TorchTVL1Backend({}, batch_size=len(pairs)).compute_batch(pairs)
    single = TorchTVL1Backend({}, batch_size=1)
    one_by_one = np.stack([single.compute(a, b) for a, b in pairs])
    np.testing.assert_allclose(batched, one_by_one, rtol=0, atol=1e-4)


def test_device_side_masking_gives_the_same_result(smooth_pairs):
    # sync_every > 1 is the path used on GPUs: converged pairs are masked on the
    # device between host checks; the result must not change.
    pairs, _ = smooth_pairs
    prev = np.stack([a for a, _ in pairs])
    nxt = np.stack([b for _, b in pairs])
    every = tvl1_batch(prev, nxt, {}, "cpu", sync_every=1)
    masked = tvl1_batch(prev, nxt, {}, "cpu", sync_every=7)
    np.testing.assert_allclose(masked, every, rtol=0, atol=1e-4)


def test_deterministic_on_cpu(smooth_pairs):
    pairs, _ = smooth_pairs
    prev = np.stack([a for a, _ in pairs[:2]])
    nxt = np.stack([b for _, b in pairs[:2]])
    a = tvl1_batch(prev, nxt, {}, "cpu")
    b = tvl1_batch(prev, nxt, {}, "cpu")
    assert np.array_equal(a, b)


def test_tensor_in_tensor_out(smooth_pairs):
    pairs, _ = smooth_pairs
    prev = torch.from_numpy(np.stack([a for a, _ in pairs[:1]]).astype(np.float32))
    nxt = torch.from_numpy(np.stack([b for _, b in pairs[:1]]).astype(np.float32))
    out = tvl1_batch(prev, nxt, {"warps": 2, "nscales": 3}, "cpu")
    assert isinstance(out, torch.Tensor) and out.shape == (1, H, W, 2) and out.dtype == torch.float32
    ref = tvl1_batch(prev.numpy(), nxt.numpy(), {"warps": 2, "nscales": 3}, "cpu")
    assert np.array_equal(out.numpy(), ref)


@pytest.mark.parametrize("params", [{"gamma": 0.1}, {"median_filtering": 3, "warps": 3}])
def test_other_parameters_agree_with_opencv(smooth_pairs, params):
    pairs, truth = smooth_pairs
    prev, nxt = pairs[0]
    ours = TorchTVL1Backend(params).compute(prev, nxt)
    ref = opencv_tvl1(prev, nxt, params)
    assert float(np.linalg.norm(ours - ref, axis=-1).mean()) <= 0.15
    assert epe(ours, truth, 4) <= 1.10 * epe(ref, truth, 4)


def test_unknown_param_is_a_config_error():
    with pytest.raises(ConfigError) as info:
        TorchTVL1Backend({"lamda": 0.1})
    message = str(info.value)
    assert "'lamda'" in message
    for key in TVL1_DEFAULTS:
        assert key in message


@pytest.mark.parametrize("params", [
    {"median_filtering": 4}, {"scale_step": 1.0}, {"tau": 0}, {"warps": 0},
    {"nscales": 2.5}, {"epsilon": -1}, {"theta": "0.3"},
])
def test_bad_param_values_are_config_errors(params):
    with pytest.raises(ConfigError) as info:
        TorchTVL1Backend(params)
    assert next(iter(params)) in str(info.value)


def test_params_merged_and_recorded():
    backend = TorchTVL1Backend({"warps": 3})
    assert backend.params == dict(TVL1_DEFAULTS, warps=3)
    info = backend.describe()
    assert info["algo"] == "tvl1" and info["implementation"] == "torch"
    assert info["device"] == "cpu" and info["params"]["warps"] == 3


def test_bad_frames_are_config_errors(cpu_backend):
    a = np.zeros((H, W), np.uint8)
    with pytest.raises(ConfigError):
        cpu_backend.compute(a.astype(np.float32), a)
    with pytest.raises(ConfigError):
        cpu_backend.compute(a, np.zeros((H, W + 1), np.uint8))
    with pytest.raises(ConfigError):
        cpu_backend.compute(np.zeros((H, W, 3), np.uint8), a)
    with pytest.raises(ConfigError):
        cpu_backend.compute_batch([(a, a), (a[:-1], a[:-1])])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error on machines without CUDA")
def test_missing_cuda_is_backend_unavailable():
    with pytest.raises(BackendUnavailable):
        TorchTVL1Backend({}, device="cuda:0")


def test_auto_batch_size():
    assert auto_batch_size(256, 340, "cpu") == 4
    assert 1 <= auto_batch_size(2160, 3840, "cpu") <= auto_batch_size(80, 96, "cpu") <= 16


def test_module_imports_without_torch():
    # TVL1_DEFAULTS must be importable where torch is not installed; the
    # backend then says how to install it.
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from flowprep.flow.torch_tvl1 import TVL1_DEFAULTS, TorchTVL1Backend\n"
        "from flowprep.errors import BackendUnavailable\n"
        "assert TVL1_DEFAULTS['lambda'] == 0.15\n"
        "try:\n"
        "    TorchTVL1Backend({})\n"
        "except BackendUnavailable as e:\n"
        "    assert \"pip install 'flowprep[torch]'\" in str(e), str(e)\n"
        "else:\n"
        "    raise SystemExit('no BackendUnavailable')\n"
    )
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_threads_option_restores_torch_setting():
    before = torch.get_num_threads()
    prev, nxt = translated_pair(3, 1.0, 0.5)
    flow = TorchTVL1Backend({"nscales": 2, "warps": 1}, threads=1).compute(prev, nxt)
    assert flow.shape == (H, W, 2)
    assert torch.get_num_threads() == before
    with pytest.raises(ConfigError):
        TorchTVL1Backend({}, threads=0)
