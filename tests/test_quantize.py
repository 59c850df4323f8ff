import numpy as np
import pytest

from flowprep import quantize as qz
from flowprep.errors import ConfigError


@pytest.mark.parametrize("bound", [15.0, 20.0, 32.0])
def test_fixed_round_trip_within_half_step(bound):
    d = np.linspace(-bound, bound, 100001, dtype=np.float32)
    back = qz.dequantize_fixed(qz.quantize_fixed(d, bound), bound)
    half_step = bound / 255.0
    assert np.abs(back - d).max() <= half_step * (1 + 1e-4)


def test_fixed_endpoints_and_dtype():
    q = qz.quantize_fixed(np.array([-20.0, 0.0, 20.0]), 20.0)
    assert q.dtype == np.uint8
    assert q.tolist() == [0, 128, 255]  # 127.5 rounds to even 128
    assert qz.dequantize_fixed(np.array([0, 255], np.uint8), 20.0).tolist() == [-20.0, 20.0]


def test_fixed_clips_outside_bound():
    d = np.array([-1000.0, -20.5, 20.5, 1e9], dtype=np.float32)
    q = qz.quantize_fixed(d, 20.0)
    assert q.tolist() == [0, 0, 255, 255]
    f = np.zeros((4, 4, 2), np.float32)
    f[0, 0, 0] = 25.0
    f[1, 1, 1] = -21.0
    assert qz.clipped_fraction(f, 20.0) == pytest.approx(2 / 32)


def test_flip_in_uint8_space_is_exact_negation():
    q = np.arange(256, dtype=np.uint8)
    d = qz.dequantize_fixed(q, 20.0)
    d_flip = qz.dequantize_fixed(255 - q, 20.0)
    np.testing.assert_allclose(d_flip, -d, atol=1e-5)


def test_adaptive_round_trip_and_ranges():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(32, 48, 2)).astype(np.float32) * np.array([3.0, 0.5], np.float32)
    q, ranges = qz.quantize_adaptive(f)
    assert q.dtype == np.uint8 and ranges.shape == (2, 2)
    assert q[..., 0].min() == 0 and q[..., 0].max() == 255
    back = qz.dequantize_adaptive(q, ranges)
    half = (ranges[:, 1] - ranges[:, 0]) / 255 / 2
    assert np.all(np.abs(back - f).reshape(-1, 2).max(axis=0) <= half * (1 + 1e-4))
    # flip: q -> 255 - q with (lo, hi) -> (-hi, -lo) gives exactly -d
    flipped = qz.dequantize_adaptive(255 - q, -ranges[:, ::-1])
    np.testing.assert_allclose(flipped, -back, atol=1e-5)


def test_adaptive_constant_flow():
    f = np.full((4, 4, 2), 2.5, np.float32)
    q, ranges = qz.quantize_adaptive(f)
    np.testing.assert_allclose(qz.dequantize_adaptive(q, ranges), f)


def test_mean_flow_is_on_float_flow():
    f = np.zeros((10, 10, 2), np.float32)
    f[..., 0] = 0.013  # far below one quantization step
    f[..., 1] = -50.0  # beyond the bound
    m = qz.mean_flow(f)
    assert m.dtype == np.float32 and m.shape == (2,)
    np.testing.assert_allclose(m, [0.013, -50.0], rtol=1e-6)


@pytest.mark.parametrize("bad", [0, -1, float("nan"), "x"])
def test_bad_bound(bad):
    with pytest.raises(ConfigError, match="bound"):
        qz.check_bound(bad)


def test_kth_smallest_is_np_partitions_value_exactly():
    """motion_stats' percentile selection (issue 21) against np.partition on awkward data."""
    from flowprep.quantize import kth_smallest
    rng = np.random.default_rng(7)
    n = 340 * 256
    cases = {
        "magnitudes": np.abs(rng.normal(size=n)).astype(np.float32) * 3,
        "few values (ties)": rng.integers(0, 4, n).astype(np.float32),
        "all equal": np.full(n, 0.25, np.float32),
        "mostly zero": np.where(rng.random(n) < 0.97, 0.0, rng.random(n)).astype(np.float32),
        "ascending (sample misleads)": np.arange(n, dtype=np.float32),
        "descending": np.arange(n, dtype=np.float32)[::-1].copy(),
        "top in the unsampled slots": np.where(np.arange(n) % 16 == 0, 0.0, 1.0).astype(np.float32),
        # the threshold lands too high: the whole-array fallback
        "top in the sampled slots": np.where(np.arange(n) % 16 == 0, 1000.0 + np.arange(n),
                                             0.0).astype(np.float32),
        "NaN and inf": np.where(rng.random(n) < 0.03, np.nan,
                                np.where(rng.random(n) < 0.03, np.inf, rng.random(n))).astype(np.float32),
        "small": rng.random(100).astype(np.float32),
    }
    for name, flat in cases.items():
        m = flat.size
        for k in sorted({0, m // 2, int(np.ceil(0.95 * m)) - 1, m - 2, m - 1}):
            want, got = np.partition(flat, k)[k], kth_smallest(flat, k)
            assert (np.isnan(want) and np.isnan(got)) or want == got, (name, k, want, got)
    # motion_stats' p95 is that value on |d|
    from flowprep.quantize import motion_stats
    flow = rng.normal(size=(256, 340, 2)).astype(np.float32) * 2
    mag = np.hypot(flow[..., 0], flow[..., 1]).astype(np.float32).reshape(-1)
    k = int(np.ceil(0.95 * mag.size)) - 1
    assert motion_stats(flow)[1] == pytest.approx(float(np.partition(mag, k)[k]), rel=1e-6)
