"""Issue 5, part 5: concurrent runs and readers.

- a second ``flowprep extract`` on a store while one runs is refused with a
  clear message, unless the two work on disjoint --shard parts;
- a run killed with SIGKILL leaves no stuck lock (flock is released by the kernel);
- a reader polling the store while an extract adds to it (or --force replaces
  videos) only ever lists published videos, and every listed video reads whole.
"""
import os
import signal
import subprocess
import threading
import time

import pytest

import flowprep
from synth import translated_video
from test_bad_inputs import FLOWPREP, format_param
from test_crash import group_alive

FORMATS = [format_param("jpeg"), format_param("hdf5"), format_param("wds")]
N = 12


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("conc") / "in"
    root.mkdir()
    for k in range(N):
        translated_video(str(root / f"v{k:02d}.mkv"), n=12, h=64, w=96, seed=k)
    return str(root)


def cmd(inputs, out, fmt="jpeg", *extra):
    return [FLOWPREP, "extract", inputs, "-o", str(out), "--algo", "farneback", "--short-side", "0",
            "--jobs", "2", "--format", fmt, "--no-progress", *extra]


def start(c, hook=None):
    env = {**os.environ, **({"FLOWPREP_TEST_HOOK": hook} if hook else {})}
    return subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
                            start_new_session=True)


def wait_locked(out, p, timeout=60):
    """Until run ``p`` holds the store's lock (its staging area exists)."""
    tmp = os.path.join(out, ".flowprep", "tmp")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if os.path.isdir(tmp) and os.listdir(tmp):
            return
        assert p.poll() is None, p.communicate()
        time.sleep(0.05)
    raise AssertionError("the first run never took the lock")


def test_a_second_run_on_the_same_store_is_refused_and_the_first_completes(inputs, tmp_path):
    out = tmp_path / "o"
    a = start(cmd(inputs, out), hook="sleep:v00")  # v00 sleeps 2 s: the run is still going
    try:
        wait_locked(str(out), a)
        b = subprocess.run(cmd(inputs, out), capture_output=True, text=True, timeout=120)
        assert b.returncode == 2
        assert "another flowprep extract is running on this store" in b.stderr
        assert "--shard" in b.stderr and "Traceback" not in b.stderr
        assert a.wait(120) == 0, a.communicate()
        assert len(flowprep.open_store(out).video_ids) == N
    finally:
        if a.poll() is None:
            os.killpg(a.pid, signal.SIGKILL)


def test_a_killed_run_leaves_no_stuck_lock(inputs, tmp_path):
    out = tmp_path / "o"
    a = start(cmd(inputs, out), hook="hang:v03")
    wait_locked(str(out), a)
    time.sleep(0.5)
    os.killpg(a.pid, signal.SIGKILL)
    a.wait(30)
    while group_alive(a.pid):
        time.sleep(0.05)
    b = subprocess.run(cmd(inputs, out), capture_output=True, text=True, timeout=120)
    assert b.returncode == 0, b.stderr
    assert len(flowprep.open_store(out).video_ids) == N
    assert not os.listdir(out / ".flowprep" / "tmp")  # the killed run's staging is gone


def test_disjoint_shard_parts_run_at_once(inputs, tmp_path):
    out = tmp_path / "o"
    parts = [start(cmd(inputs, out, "jpeg", "--shard", f"{i}/2")) for i in range(2)]
    for p in parts:
        assert p.wait(120) == 0, p.communicate()
    assert len(flowprep.open_store(out).video_ids) == N
    # the same part twice at once is refused
    a = start(cmd(inputs, out, "jpeg", "--shard", "0/2", "--force"), hook="sleep:v")
    try:
        wait_locked(str(out), a)
        b = subprocess.run(cmd(inputs, out, "jpeg", "--shard", "0/2"), capture_output=True,
                           text=True, timeout=120)
        assert b.returncode == 2 and "already running shard 0/2" in b.stderr
    finally:
        os.killpg(a.pid, signal.SIGKILL)
        a.wait(30)


def read_whole(store, vid):
    v = store[vid]
    for i in range(v.num_frames):
        assert v.rgb(i).shape == (v.height, v.width, 3)
    for i in range(v.num_flows):
        v.flow_quantized(i)
    return v.num_frames


def poll_reader(out, proc, seen, errors):
    """Open the store afresh again and again while ``proc`` runs; read every listed video."""
    while proc.poll() is None:
        try:
            store = flowprep.open_store(out)
        except flowprep.FlowprepError:
            continue  # not created yet
        ids = store.video_ids
        for vid in ids:
            try:
                n = read_whole(store, vid)
                seen.setdefault(vid, set()).add(n)
            except Exception as exc:  # noqa: BLE001 - any failure is the finding
                errors.append(f"{vid}: {type(exc).__name__}: {exc}")
        if hasattr(store, "close"):
            store.close()


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("force", [False, True], ids=["adding", "replacing"])
def test_a_reader_during_extract_sees_only_whole_published_videos(inputs, tmp_path, fmt, force):
    out = str(tmp_path / "o")
    if force:  # first a complete store, then --force republishes every video under the reader
        assert subprocess.run(cmd(inputs, out, fmt), capture_output=True).returncode == 0
    p = start(cmd(inputs, out, fmt, *(["--force"] if force else []), "--shard-size", "100KiB"))
    seen, errors = {}, []
    t = threading.Thread(target=poll_reader, args=(out, p, seen, errors))
    t.start()
    rc = p.wait(180)
    t.join(60)
    assert rc == 0, p.communicate()
    assert errors == []
    assert set(seen) <= {f"v{k:02d}" for k in range(N)}
    assert all(ns == {12} for ns in seen.values()), seen
    assert len(flowprep.open_store(out).video_ids) == N


def test_republishing_a_jpeg_video_never_hides_it_from_a_reader(tmp_path):
    """--force or a new configuration republishes videos: the old version is swapped for
    the new one in one atomic step (renameat2 RENAME_EXCHANGE), never removed first."""
    import numpy as np
    from flowprep.store.base import write_store_file
    from flowprep.store.jpeg import JpegStoreWriter
    root = str(tmp_path / "store")
    os.makedirs(root)
    write_store_file(root, {"format": "jpeg", "config": {}, "config_key": "k", "classes": []})
    tmp = os.path.join(root, ".flowprep", "tmp", "t")
    w = JpegStoreWriter(root, tmp)
    rgb, q = np.zeros((16, 16, 3), np.uint8), np.zeros((16, 16, 2), np.uint8)
    meta = {"num_frames": 2, "num_flows": 1, "fps": 25.0, "width": 16, "height": 16, "step": 1,
            "quant": {"scheme": "fixed", "bound": 20.0}, "config_key": "k",
            "mean_flow": [[0, 0]], "clipped_fraction": [0]}

    def publish():
        vw = w.begin("a/v")
        vw.add_rgb(rgb)
        vw.add_rgb(rgb)
        vw.add_flow(q)
        vw.commit(meta)

    publish()
    stop, errors, reads = [], [], [0]

    def reader():
        while not stop:
            s = flowprep.open_store(root)
            try:
                if "a/v" not in s.video_ids:
                    errors.append("not listed")
                    continue
                v = s["a/v"]
                v.rgb(1)
                v.flow_quantized(0)
                reads[0] += 1
            except Exception as exc:  # noqa: BLE001
                errors.append(f"{type(exc).__name__}: {exc}")

    t = threading.Thread(target=reader)
    t.start()
    for _ in range(400):
        publish()
    stop.append(True)
    t.join()
    assert reads[0] > 100
    assert errors == [], (len(errors), errors[:3])
    assert sorted(os.listdir(tmp)) == []  # the old versions were removed
