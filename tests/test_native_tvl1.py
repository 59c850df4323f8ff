"""The native (compiled) TV-L1 against OpenCV's DualTVL1, the torch backend and known motion.

Synthetic frames are smooth random textures moved by a known field (cv2.remap)
or translated, so the true flow is known; real frames come from the sample
clips in data/samples at the size extract uses (short side 256). Every
comparison runs OpenCV on the same frames in the same test.
"""
import glob
import os
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

import flowprep
from flowprep.cli.main import cli
from flowprep.errors import BackendUnavailable, ConfigError
from flowprep.flow import make_backend, merge_params, resolve
from flowprep.flow import native_tvl1
from flowprep.flow.native_tvl1 import NativeTVL1, native_available, tvl1_flow
from flowprep.flow.torch_tvl1 import TVL1_DEFAULTS, validate_tvl1_params

from synth import texture, translated_frames, translated_video, write_video

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
SAMPLES = sorted(glob.glob(os.path.join(REPO, "data", "samples", "*", "*.mp4")))

needs_native = pytest.mark.skipif(not native_available(), reason="flowprep._tvl1 is not built here")
pytestmark = needs_native


def test_extension_is_built_where_the_build_requires_it():
    # `make test` sets FLOWPREP_REQUIRE_TVL1=1, so a build that silently lost the
    # compiled TV-L1 (and would fall back to OpenCV's, 10x slower) fails.
    if os.environ.get("FLOWPREP_REQUIRE_TVL1") != "1":
        pytest.skip("FLOWPREP_REQUIRE_TVL1 is not set")
    assert native_tvl1._ext is not None, "flowprep._tvl1 was not built (no C compiler?)"
    assert native_available()


# ---- helpers ---------------------------------------------------------------------------

def opencv_tvl1(prev, nxt, params=None):
    p = validate_tvl1_params(params)
    of = cv2.optflow.DualTVL1OpticalFlow_create()  # fresh: calc() lowers nscales for good
    for key, name in (("tau", "Tau"), ("lambda", "Lambda"), ("theta", "Theta"),
                      ("nscales", "ScalesNumber"), ("warps", "WarpingsNumber"), ("epsilon", "Epsilon"),
                      ("inner_iterations", "InnerIterations"), ("outer_iterations", "OuterIterations"),
                      ("scale_step", "ScaleStep"), ("gamma", "Gamma"), ("median_filtering", "MedianFiltering")):
        getattr(of, "set" + name)(p[key])
    return of.calc(prev, nxt, None)


def to_u8(img):
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def smooth_field(h, w, amp):
    """float32 (h, w, 2) smooth flow with |d| up to about 2.3 * amp px."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    fx = 1.5 * np.sin(2 * np.pi * xx / w) + 0.8 * np.cos(2 * np.pi * yy / h)
    fy = 1.0 * np.cos(1.4 * np.pi * xx / w) - 0.7 * np.sin(2.6 * np.pi * yy / h)
    return (amp * np.stack([fx, fy], -1)).astype(np.float32)


def pair_with_flow(h, w, seed, flow, margin=24):
    """(prev, next) uint8 with prev(x) = next(x + flow(x)), next a texture bigger than the frame."""
    big = texture(h + 2 * margin, w + 2 * margin, seed, sigma=3.0)
    nxt = big[margin:margin + h, margin:margin + w]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    prev = cv2.remap(big, xx + margin + flow[..., 0], yy + margin + flow[..., 1], cv2.INTER_CUBIC)
    return to_u8(prev), to_u8(nxt)


def epe(flow, truth, m=8):
    return float(np.linalg.norm(flow - truth, axis=-1)[m:-m, m:-m].mean())


def real_pairs(per_clip=1, gap=2):
    """uint8 grey (256, W) pairs from each sample clip: frames (k, k + gap) at short side 256."""
    pairs = []
    for path in SAMPLES:
        cap = cv2.VideoCapture(path)
        frames = []
        while len(frames) < 2 + gap * per_clip:
            ok, bgr = cap.read()
            if not ok:
                break
            h, w = bgr.shape[:2]
            s = 256 / min(h, w)
            bgr = cv2.resize(bgr, (round(w * s), round(h * s)), interpolation=cv2.INTER_AREA)
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
        cap.release()
        for k in range(per_clip):
            if k * gap + gap < len(frames):
                pairs.append((os.path.basename(path), frames[k * gap], frames[k * gap + gap]))
    assert pairs, "no sample clips in data/samples"
    return pairs


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)


# ---- accuracy ----------------------------------------------------------------------------

@pytest.mark.parametrize("amp", [0.5, 1.5, 3.5])  # |d| up to ~1.2, ~3.5, ~8 px
def test_smooth_flow_as_good_as_opencv(amp):
    h, w = 96, 128
    truth = smooth_field(h, w, amp)
    for seed in (1, 2):
        prev, nxt = pair_with_flow(h, w, seed, truth)
        ours, ref = tvl1_flow(prev, nxt), opencv_tvl1(prev, nxt)
        e_ours, e_ref = epe(ours, truth), epe(ref, truth)
        assert e_ours <= 1.02 * e_ref, (amp, seed, e_ours, e_ref)
        assert float(np.abs(ours - ref).mean()) <= 0.05, (amp, seed)


@pytest.mark.parametrize("dx,dy", [(0.4, -0.3), (2.0, 1.0), (-4.5, 3.0), (7.0, -2.5)])
def test_constant_shift_as_good_as_opencv(dx, dy):
    frames = [f[..., 0] for f in translated_frames(2, 96, 128, dx, dy, seed=3, sigma=3.0)]
    truth = np.broadcast_to(np.array([dx, dy], np.float32), (96, 128, 2))
    ours, ref = tvl1_flow(*frames), opencv_tvl1(*frames)
    e_ours, e_ref = epe(ours, truth, 16), epe(ref, truth, 16)
    assert e_ours <= 1.02 * e_ref + 1e-3, (e_ours, e_ref)
    assert e_ours < 0.1 * np.hypot(dx, dy) + 0.05


def test_real_frames_match_opencv():
    for name, prev, nxt in real_pairs():
        ours, ref = tvl1_flow(prev, nxt), opencv_tvl1(prev, nxt)
        assert ours.shape == ref.shape == prev.shape + (2,) and ours.dtype == np.float32
        diff = float(np.abs(ours - ref).mean())
        assert diff <= 0.05, (name, diff)
        # the flow is not trivially small: the comparison means something
        assert float(np.abs(ref).mean()) > 0.2, name


def test_matches_the_torch_backend():
    torch_tvl1 = pytest.importorskip("flowprep.flow.torch_tvl1")
    pytest.importorskip("torch")
    truth = smooth_field(80, 96, 1.0)
    prev, nxt = pair_with_flow(80, 96, 5, truth)
    ours = tvl1_flow(prev, nxt)
    theirs = torch_tvl1.tvl1_batch(prev[None], nxt[None])[0]
    assert float(np.abs(ours - theirs).mean()) <= 0.05


@pytest.mark.parametrize("params", [
    {"median_filtering": 3}, {"median_filtering": 1}, {"gamma": 0.1},
    {"warps": 2, "nscales": 3, "scale_step": 0.5}, {"epsilon": 0.0, "outer_iterations": 1, "inner_iterations": 15},
    {"tau": 0.2, "lambda": 0.3, "theta": 0.5},
])
def test_other_parameters_agree_with_opencv(params):
    truth = smooth_field(80, 96, 1.0)
    prev, nxt = pair_with_flow(80, 96, 7, truth)
    ours, ref = tvl1_flow(prev, nxt, params), opencv_tvl1(prev, nxt, params)
    assert float(np.abs(ours - ref).mean()) <= 0.05, params
    assert epe(ours, truth) <= 1.02 * epe(ref, truth) + 1e-3, params


def test_float32_frames_are_grey_values():
    prev, nxt = pair_with_flow(64, 80, 9, smooth_field(64, 80, 1.0))
    np.testing.assert_array_equal(tvl1_flow(prev.astype(np.float32), nxt.astype(np.float32)),
                                  tvl1_flow(prev, nxt))


def test_median_network_in_the_c_source_selects_the_median():
    # the 5x5 median's network on sorted columns, read from flowprep/_tvl1.c and run on
    # every 0-1 input with sorted columns (exhaustive by the 0-1 principle) and random ones
    sys.path.insert(0, HERE)
    from make_median_net import SRC, check
    with open(SRC) as fh:
        comparators, operations = check(fh.read())
    assert (comparators, operations) == (74, 124)


def test_median_tile_networks_in_the_c_source_select_the_median():
    # the 5x5 median of a 2x2 tile of outputs: MED16_NET (ranks 3..12 of the 16 values the
    # four windows share), MED14_NET (+ a column: ranks 7..12 of the 20 a vertical pair
    # shares), MED11_NET (+ a row: the median), read from flowprep/_tvl1.c, each on every 0-1
    # input (exhaustive) and all together on random 6x6 blocks with ties
    sys.path.insert(0, HERE)
    from make_median_net import SRC, check_tile
    with open(SRC) as fh:
        assert check_tile(fh.read()) == {"MED16": (41, 76), "MED14": (17, 26), "MED11": (11, 12)}


def test_median3_network_in_the_c_source_selects_the_median():
    # the 3x3 median from sorted columns (median of the highest low, the middle middle and
    # the lowest high), read from flowprep/_tvl1.c: every 0-1 input, random blocks with ties
    sys.path.insert(0, HERE)
    from make_median_net import SRC, check_med9
    with open(SRC) as fh:
        assert check_med9(fh.read()) == (10, 12)


def test_median_plane_equals_cv2_median_blur(tmp_path):
    """The C median (median_plane, 3x3 and 5x5, in place, replicated border), compiled from
    flowprep/_tvl1.c with the extension's flags (dispatching build) and called through ctypes,
    equals cv2.medianBlur bit for bit on float planes with ties: odd and even heights (the
    5x5 computes 2x2 tiles, an odd height's last row alone), widths under 16 (row by row),
    widths not a multiple of 16 (an overlapping last span) or over a span of 128, and planes
    smaller than the window."""
    import ctypes
    import shutil
    import sysconfig
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here")
    src = tmp_path / "median.c"
    src.write_text(f'#include "{os.path.join(REPO, "flowprep", "_tvl1.c")}"\n'
                   "void flowprep_median(float *u, int h, int w, int us, int k) {\n"
                   "    float *pad = malloc(sizeof(float) * (size_t)(h + 9) * (w + 4));\n"
                   "    median_plane(u, h, w, us, k, pad);\n"
                   "    free(pad);\n"
                   "}\n")
    so = str(tmp_path / "median.so")
    r = subprocess.run([cc, "-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-fno-wrapv",
                        "-std=c99", "-shared", "-fPIC", "-I" + sysconfig.get_paths()["include"], str(src),
                        "-o", so, "-lm"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    lib = ctypes.CDLL(so)
    lib.flowprep_median.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int]
    rng = np.random.default_rng(21)
    shapes = [(1, 1), (1, 9), (9, 1), (2, 2), (2, 3), (3, 2), (3, 3), (4, 5), (5, 4), (5, 5), (6, 7),
              (7, 6), (8, 8), (9, 15), (1, 16), (2, 16), (3, 17), (16, 16), (31, 40), (6, 130), (7, 143),
              (64, 57), (105, 139), (20, 258), (256, 340), (257, 341)]
    for shape in shapes:
        for kind in ("ties", "real", "binary"):
            if kind == "ties":
                a = rng.integers(0, 4, shape).astype(np.float32)
            elif kind == "real":
                a = (rng.standard_normal(shape) * 3).astype(np.float32)
            else:
                a = rng.integers(0, 2, shape).astype(np.float32)
            for k in (3, 5):
                want = cv2.medianBlur(a, k)
                got = np.ascontiguousarray(a.copy())
                lib.flowprep_median(got.ctypes.data, shape[0], shape[1], shape[1], k)
                assert np.array_equal(got, want), (shape, kind, k)
                # rows with a stride (as the solver's planes: rounded up to 16, and more)
                # whose padding stays untouched
                us = (shape[1] + 15) // 16 * 16 + 16
                wide = np.full((shape[0], us), np.nan, np.float32)
                wide[:, :shape[1]] = a
                lib.flowprep_median(wide.ctypes.data, shape[0], shape[1], us, k)
                assert np.array_equal(wide[:, :shape[1]], want), (shape, kind, k, us)
                assert np.isnan(wide[:, shape[1]:]).all(), (shape, kind, k, us)


# ---- determinism -------------------------------------------------------------------------

def test_same_output_twice_and_in_a_fresh_process():
    _, prev, nxt = real_pairs()[0]
    a, b = tvl1_flow(prev, nxt), tvl1_flow(prev, nxt)
    assert a.tobytes() == b.tobytes()
    code = ("import sys, numpy as np; from flowprep.flow.native_tvl1 import tvl1_flow; "
            "d = np.load(sys.argv[1]); sys.stdout.buffer.write(tvl1_flow(d['a'], d['b']).tobytes())")
    path = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"native_tvl1_{os.getpid()}.npz")
    np.savez(path, a=prev, b=nxt)
    try:
        out = subprocess.run([sys.executable, "-c", code, path], capture_output=True, check=True).stdout
    finally:
        os.unlink(path)
    assert out == a.tobytes()


def test_extract_jobs_1_and_2_store_the_same_flow(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        translated_video(str(src / f"v{k}.mkv"), n=3, h=64, w=80, dx=1.0 + k, dy=-0.5, seed=k)
    stores = []
    for jobs in (1, 2):
        out = tmp_path / f"out{jobs}"
        r = run_cli("extract", src, "-o", out, "--short-side", 0, "--jobs", jobs)
        assert r.exit_code == 0, r.output
        stores.append(flowprep.open_store(out))
    a, b = stores
    assert a.config["implementation"] == b.config["implementation"] == "native"
    for vid in a.video_ids:
        for i in range(a[vid].num_flows):
            np.testing.assert_array_equal(a[vid].flow_quantized(i), b[vid].flow_quantized(i))
        np.testing.assert_array_equal(a[vid].mean_flow, b[vid].mean_flow)


# ---- parameters --------------------------------------------------------------------------

def test_defaults_are_opencvs_and_recorded():
    be = NativeTVL1({})
    assert be.params == TVL1_DEFAULTS and be.implementation == "native"
    info = be.describe()
    assert info["implementation"] == "native" and info["params"] == TVL1_DEFAULTS
    assert info["isa"] in ("avx512f", "avx2", "avx", "sse2", "generic")


def test_unknown_and_bad_params_are_config_errors():
    with pytest.raises(ConfigError, match="unknown.*'warp'.*warps"):
        merge_params("tvl1", {"warp": 3})
    for bad in ({"warps": 0}, {"tau": -1.0}, {"scale_step": 1.0}, {"median_filtering": 4},
                {"nscales": 2.5}, {"epsilon": float("nan")}):
        with pytest.raises(ConfigError):
            NativeTVL1(bad)
        with pytest.raises(ConfigError):
            merge_params("tvl1", bad)
    with pytest.raises(ConfigError, match="integer"):
        merge_params("tvl1", {"warps": "three"})
    assert merge_params("tvl1", {"warps": "3", "tau": "0.2"})["warps"] == 3


def test_param_errors_through_the_cli_exit_2(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=2, h=48, w=64, dx=1.0, dy=0.0)
    for item, word in (("warp=3", "warps"), ("warps=x", "integer"), ("median_filtering=4", "3 or 5")):
        r = run_cli("extract", src, "-o", tmp_path / "o", "--short-side", 0, "--param", item)
        assert r.exit_code == 2, (item, r.output)
        assert word in r.output, (item, r.output)
    r = run_cli("extract", src, "-o", tmp_path / "o", "--short-side", 0, "--param", "warps=2", "--jobs", 1)
    assert r.exit_code == 0, r.output
    assert flowprep.open_store(tmp_path / "o").config["params"]["warps"] == 2


def test_bad_frames_are_config_errors():
    a = np.zeros((20, 20), np.uint8)
    with pytest.raises(ConfigError, match="uint8 or float32"):
        tvl1_flow(a.astype(np.float64), a.astype(np.float64))
    with pytest.raises(ConfigError, match="uint8 or float32"):
        tvl1_flow(np.zeros((20, 20, 3), np.uint8), np.zeros((20, 20, 3), np.uint8))
    with pytest.raises(ConfigError, match="differ"):
        tvl1_flow(a, np.zeros((20, 21), np.uint8))
    with pytest.raises(ConfigError, match="non-finite"):
        tvl1_flow(np.full((8, 8), np.nan, np.float32), np.zeros((8, 8), np.float32))


# ---- sizes -------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(1, 1), (1, 50), (50, 1), (2, 2), (3, 40), (10, 200), (15, 15)])
def test_small_and_thin_frames(shape):
    rng = np.random.default_rng(0)
    a = rng.integers(0, 256, shape, dtype=np.uint8)
    b = np.roll(a, 1, axis=1)
    flow, levels = tvl1_flow(a, b, stats=True)
    assert flow.shape == shape + (2,) and flow.dtype == np.float32
    assert np.isfinite(flow).all()
    assert len(levels) == 1  # no level with a side under 16


def test_level_count_follows_the_frame_size():
    # sizes round(side * 0.8^s), stopping before a side under 16, as OpenCV builds them
    expect = {(40, 40): 5, (24, 24): 2, (20, 300): 2, (16, 16): 1, (256, 340): 5}
    for shape, n in expect.items():
        a = np.zeros(shape, np.uint8)
        _, levels = tvl1_flow(a, a, stats=True)
        assert len(levels) == n, shape
        assert (levels[0]["height"], levels[0]["width"]) == shape
    _, levels = tvl1_flow(np.zeros((40, 40), np.uint8), np.zeros((40, 40), np.uint8), {"nscales": 2}, stats=True)
    assert [(l["height"], l["width"]) for l in levels] == [(40, 40), (32, 32)]


def test_thin_real_frame_close_to_opencv():
    # a 20-pixel strip: two levels (20, 16); OpenCV handles it too
    frames = [f[..., 0] for f in translated_frames(2, 20, 160, 1.5, 0.0, seed=4, sigma=3.0)]
    ours, ref = tvl1_flow(*frames), opencv_tvl1(*frames)
    assert float(np.abs(ours - ref).mean()) <= 0.05


def test_small_video_does_not_change_later_flow():
    frames = [f[..., 0] for f in translated_frames(2, 96, 128, 1.25, -0.5)]
    be = make_backend(resolve("tvl1", "cpu", "native"), merge_params("tvl1"))
    fresh = be.compute(*frames)
    tiny = np.zeros((20, 20), np.uint8)
    be.compute(tiny, tiny)
    be.compute(np.zeros((1, 7), np.uint8), np.zeros((1, 7), np.uint8))
    np.testing.assert_array_equal(be.compute(*frames), fresh)


# ---- the GIL -----------------------------------------------------------------------------

def test_gil_is_released_during_the_computation():
    """While a worker thread is inside the C call, the main thread runs Python code.

    The switch interval is raised to an hour, so a thread holding the GIL is never
    made to give it up: the main thread can then only see the flag set (it is set
    and cleared around the call) while the worker has released the GIL, i.e. inside
    the C computation; the main thread itself yields the GIL on every loop
    (sleep(0)), so the worker gets it back at once when the call returns. Held
    for the whole call, the count would stay at 0 or 1 per call.
    """
    rng = np.random.default_rng(1)
    a = cv2.GaussianBlur(rng.integers(0, 256, (256, 340)).astype(np.uint8), (0, 0), 2)
    b = np.roll(a, 2, axis=1)
    started, inside, done = threading.Event(), [False], threading.Event()
    seen_inside = [0]

    def work():
        started.set()
        for _ in range(3):
            inside[0] = True
            tvl1_flow(a, b)
            inside[0] = False
        done.set()

    old = sys.getswitchinterval()
    sys.setswitchinterval(3600.0)
    try:
        t = threading.Thread(target=work)
        t.start()
        started.wait()
        while not done.is_set():
            if inside[0]:
                seen_inside[0] += 1
            time.sleep(0)  # hand the GIL over whenever the worker asks for it
        t.join()
    finally:
        sys.setswitchinterval(old)
    assert seen_inside[0] > 100, seen_inside[0]


def test_concurrent_calls_of_different_sizes_give_the_sequential_flow():
    """The working block is kept between calls and shared: threads computing pairs of
    different sizes at the same time (the GIL released) get exactly the flow of one call
    alone, whichever block each took."""
    jobs = []
    for k, (h, w) in enumerate(((96, 128), (40, 52), (120, 90), (64, 64))):
        truth = smooth_field(h, w, 1.0)
        jobs.append(pair_with_flow(h, w, 20 + k, truth))
    alone = [tvl1_flow(a, b) for a, b in jobs]
    got = [[None] * len(jobs) for _ in range(3)]

    def work(t):
        for i in range(len(jobs)):
            j = (i + t) % len(jobs)
            got[t][j] = tvl1_flow(*jobs[j])

    threads = [threading.Thread(target=work, args=(t,)) for t in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for t in range(3):
        for j in range(len(jobs)):
            assert got[t][j].tobytes() == alone[j].tobytes(), (t, j)


# ---- selection and fallback ---------------------------------------------------------------

def test_auto_picks_native_for_tvl1_on_the_cpu():
    assert resolve("tvl1", "cpu").implementation == "native"
    assert resolve("tvl1", "auto", "auto", opencv_gpus=0, torch_gpus=0).implementation == "native"
    assert resolve("tvl1", "cpu", "opencv").implementation == "opencv-cpu"
    assert resolve("farneback", "cpu").implementation == "opencv-cpu"
    # GPUs keep today's choice
    assert resolve("tvl1", "auto", "auto", opencv_gpus=1, torch_gpus=0).implementation == "opencv-cuda"
    assert resolve("tvl1", "auto", "auto", opencv_gpus=0, torch_gpus=1).implementation == "torch"
    with pytest.raises(BackendUnavailable, match="tvl1 only"):
        resolve("dis", "cpu", "native")
    with pytest.raises(BackendUnavailable, match="CPU"):
        resolve("tvl1", "cuda", "native")


def _run_python(code, env_extra=None):
    env = dict(os.environ, **(env_extra or {}))
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=REPO)


def test_missing_extension_falls_back_with_one_line(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=3, h=64, w=80, dx=1.0, dy=0.5)
    out = tmp_path / "out"
    # the extension made unimportable, as on a machine without a C compiler
    code = ("import sys; sys.modules['flowprep._tvl1'] = None\n"
            "from flowprep.cli.main import main\n"
            f"sys.argv = ['flowprep', 'extract', {str(src)!r}, '-o', {str(out)!r}, '--short-side', '0', '--jobs', '1']\n"
            "main()")
    r = _run_python(code)
    assert r.returncode == 0, r.stderr
    notes = [line for line in r.stderr.splitlines() if "compiled TV-L1" in line]
    assert len(notes) == 1, r.stderr
    assert "not built" in notes[0] and "C compiler" in notes[0] and "OpenCV" in notes[0]
    store = flowprep.open_store(out)
    assert store.config["implementation"] == "opencv-cpu"
    np.testing.assert_allclose(store["v"].flow(0)[16:-16, 16:-16].reshape(-1, 2).mean(0), [1.0, 0.5], atol=0.15)
    # --backend native says why and what to do, exit 2
    code = code.replace("'--jobs', '1'", "'--jobs', '1', '--backend', 'native'")
    r = _run_python(code)
    assert r.returncode == 2, r.stderr
    assert "not built" in r.stderr and "C compiler" in r.stderr


def test_env_var_disables_native(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=2, h=48, w=64, dx=1.0, dy=0.0)
    r = _run_python("from flowprep.cli.main import main; import sys; sys.argv = ['flowprep', 'extract', "
                    f"{str(src)!r}, '-o', {str(tmp_path / 'o')!r}, '--short-side', '0', '--jobs', '1']; main()",
                    {"FLOWPREP_NO_NATIVE": "1"})
    assert r.returncode == 0, r.stderr
    assert "FLOWPREP_NO_NATIVE=1" in r.stderr
    assert flowprep.open_store(tmp_path / "o").config["implementation"] == "opencv-cpu"


def test_resume_with_another_implementation_is_not_taken_as_done(tmp_path):
    src = translated_video(str(tmp_path / "v.mkv"), n=3, h=64, w=80, dx=1.0, dy=0.0)
    out = tmp_path / "out"
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--jobs", 1, "--backend", "opencv")
    assert r.exit_code == 0 and "1 published, 0 already" in r.output, r.output
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--jobs", 1)  # default: native
    assert r.exit_code == 0 and "1 published, 0 already" in r.output, r.output
    assert flowprep.open_store(out).config["implementation"] == "native"
    r = run_cli("extract", src, "-o", out, "--short-side", 0, "--jobs", 1, "--backend", "native")
    assert r.exit_code == 0 and "0 published, 1 already" in r.output, r.output


# ---- the CLI end to end ---------------------------------------------------------------------

def test_default_cli_uses_native_and_pins_sign_and_units(tmp_path):
    # 384x512 source moving (+3.0, -1.5) px/frame, resized to short side 256 (x 2/3): (2.0, -1.0)
    src = tmp_path / "in" / "Move" / "v_move.mkv"
    src.parent.mkdir(parents=True)
    write_video(str(src), translated_frames(3, 384, 512, 3.0, -1.5, sigma=3.0))
    out = tmp_path / "out"
    r = run_cli("extract", tmp_path / "in", "-o", out, "--jobs", 1)
    assert r.exit_code == 0, r.output
    store = flowprep.open_store(out)
    assert store.config["algo"] == "tvl1" and store.config["implementation"] == "native"
    v = store["Move/v_move"]
    for i in range(v.num_flows):
        f = v.flow(i)
        assert f.shape == (256, 341, 2)
        np.testing.assert_allclose(f[16:-16, 16:-16].reshape(-1, 2).mean(0), [2.0, -1.0], atol=0.1)


# ---- the same answer on every CPU -------------------------------------------------------------

def test_baseline_build_gives_the_same_bytes_as_the_dispatching_one(tmp_path):
    """The C compiled for the baseline ISA only (SSE2 on x86-64, no target_clones), without
    the GCC vector types (the plain-C loops other compilers get), and for x86-64-v3 (AVX2)
    outright give the flow of the installed, dispatching build bit for bit:
    -ffp-contract=off keeps every code path to the same IEEE float operations."""
    import shutil
    import sysconfig
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler here")
    src = os.path.join(REPO, "flowprep", "_tvl1.c")
    flags = ["-O3", "-ffp-contract=off", "-fno-math-errno", "-fno-trapping-math", "-std=c99", "-shared",
             "-fPIC", "-DFLOWPREP_NO_CLONES", "-I" + sysconfig.get_paths()["include"]]
    # plain C in place of the GCC/Clang vector types (what other compilers build)
    builds = [("baseline", []), ("no vector types", ["-DFLOWPREP_NO_VECTOR_EXT"])]
    if platform_is_x86_64():
        builds.append(("x86-64-v3", ["-march=x86-64-v3"]))
    code = ("import sys, hashlib, importlib.machinery, importlib.util, numpy as np\n"
            "if sys.argv[1] != '-':\n"
            "    ld = importlib.machinery.ExtensionFileLoader('flowprep._tvl1', sys.argv[1])\n"
            "    m = importlib.util.module_from_spec(importlib.util.spec_from_file_location('flowprep._tvl1', sys.argv[1], loader=ld))\n"
            "    ld.exec_module(m); sys.modules['flowprep._tvl1'] = m\n"
            "from flowprep.flow import native_tvl1\n"
            "d = np.load(sys.argv[2]); h = hashlib.sha1()\n"
            "for p in ({}, {'gamma': 0.1}, {'median_filtering': 3}):\n"
            "    h.update(native_tvl1.tvl1_flow(d['a'], d['b'], p).tobytes())\n"
            "print(native_tvl1.native_isa(), h.hexdigest())\n")
    _, a, b = real_pairs()[0]
    frames = str(tmp_path / "frames.npz")
    np.savez(frames, a=a[:120, :170], b=b[:120, :170])
    ref = _run_python_args(code, ["-", frames])
    assert ref.returncode == 0, ref.stderr
    for name, extra in builds:
        so = str(tmp_path / f"_tvl1_{name.replace(' ', '_')}.so")
        r = subprocess.run([cc] + flags + extra + [src, "-o", so, "-lm"], capture_output=True, text=True)
        if r.returncode != 0:
            pytest.skip(f"{name} build failed here: {r.stderr[-300:]}")
        got = _run_python_args(code, [so, frames])
        assert got.returncode == 0, (name, got.stderr)
        assert got.stdout.split()[1] == ref.stdout.split()[1], (name, got.stdout, ref.stdout)


def platform_is_x86_64():
    import platform
    return platform.machine() in ("x86_64", "AMD64")


def _run_python_args(code, args):
    return subprocess.run([sys.executable, "-c", code] + args, capture_output=True, text=True, cwd=REPO)


def _setup_tvl1_flags():
    """setup.py's compiler flags for flowprep._tvl1 (read from the file, so the test builds
    what pip builds)."""
    import ast
    with open(os.path.join(REPO, "setup.py")) as fh:
        tree = ast.parse(fh.read())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "_UNIX_TVL1_FLAGS":
            return ast.literal_eval(node.value)
    raise AssertionError("setup.py has no _UNIX_TVL1_FLAGS")


def test_aarch64_build_gives_the_same_flow_bit_for_bit(tmp_path):
    """The kernel compiled for aarch64 (GCC's cross compiler, setup.py's flags: NEON
    vectors, no target_clones) and run under qemu-aarch64 gives the x86-64 extension's
    flow bit for bit on real frames, for the defaults, gamma > 0 and the 3x3 median.
    The same source is also built for this machine through tests/tvl1_standalone.c, which
    checks the driver itself. `make test` installs the cross compiler and qemu where
    apt-get works (FLOWPREP_REQUIRE_AARCH64=1 then turns a missing tool into a failure)."""
    import shutil
    cross, qemu = shutil.which("aarch64-linux-gnu-gcc"), shutil.which("qemu-aarch64")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not (cross and qemu and cc):
        if os.environ.get("FLOWPREP_REQUIRE_AARCH64") == "1":
            pytest.fail("aarch64-linux-gnu-gcc / qemu-aarch64 are missing (apt-get install gcc-aarch64-linux-gnu "
                        "qemu-user)")
        pytest.skip("no aarch64 cross compiler or qemu-aarch64 here")
    drv = os.path.join(HERE, "tvl1_standalone.c")
    flags = _setup_tvl1_flags()
    exe_arm, exe_host = str(tmp_path / "tvl1_arm64"), str(tmp_path / "tvl1_host")
    for comp, exe, extra in ((cross, exe_arm, ["-static"]), (cc, exe_host, [])):
        r = subprocess.run([comp] + flags + extra + [drv, "-o", exe, "-lm"], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
    pairs = real_pairs()
    (_, a, b), (_, c, d) = pairs[0], pairs[1]
    cases = [(a[:120, :170], b[:120, :170], {}), (a[:120, :170], b[:120, :170], {"gamma": 0.1}),
             (a[:120, :170], b[:120, :170], {"median_filtering": 3}), (c[:200, :250], d[:200, :250], {})]
    for k, (p0, p1, params) in enumerate(cases):
        p0, p1 = np.ascontiguousarray(p0), np.ascontiguousarray(p1)
        want = tvl1_flow(p0, p1, params)
        (tmp_path / "a.raw").write_bytes(p0.tobytes())
        (tmp_path / "b.raw").write_bytes(p1.tobytes())
        q = dict(TVL1_DEFAULTS, **params)
        args = [str(p0.shape[0]), str(p0.shape[1]), str(tmp_path / "a.raw"), str(tmp_path / "b.raw"),
                str(tmp_path / "out.raw")] + [repr(q[name]) for name in (
                    "tau", "lambda", "theta", "nscales", "warps", "epsilon", "inner_iterations",
                    "outer_iterations", "scale_step", "gamma", "median_filtering")]
        for label, cmd in (("host", [exe_host]), ("aarch64", [qemu, exe_arm])):
            r = subprocess.run(cmd + args, capture_output=True, text=True, timeout=600)
            assert r.returncode == 0, (label, r.stderr)
            got = np.frombuffer((tmp_path / "out.raw").read_bytes(), np.float32).reshape(want.shape)
            assert np.array_equal(got, want), (label, k, params, float(np.abs(got - want).max()))
