"""HDF5 store specifics: same data as the JPEG store, sealing and index, convert, verify,
kill -9 and resume, concurrent writers, readers in other processes, the raw payload."""
from __future__ import annotations

import json
import multiprocessing as mp
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import flowprep
from flowprep import quantize as qz
from flowprep.convert import convert
from flowprep.store import hdf5 as h5
from flowprep.store.base import STORE_FILE
from flowprep.verify import verify_store
from synth import translated_frames, write_video
from test_store_contract import (BASE_OPTS, BOUND, MOTION, H, W, _read_some, copy_store,
                                 make_dataset, make_store, signature)

os.environ["HDF5_USE_FILE_LOCKING"] = "FALSE"
FLOWPREP = [sys.executable, "-c", "from flowprep.cli.main import main; main()"]


def _tree(root):
    """relative path -> bytes of every file of a JPEG store outside .flowprep."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = [d for d in dirnames if d != ".flowprep"]
        for f in filenames:
            p = os.path.join(dirpath, f)
            with open(p, "rb") as fh:
                out[os.path.relpath(p, root)] = fh.read()
    return out


# --------------------------------------------------------------------------------------
# the same data as the JPEG store


def test_hdf5_holds_exactly_the_jpeg_stores_data():
    jpath, _ = make_store("jpeg")
    hpath, _ = make_store("hdf5")
    j, h = flowprep.open_store(jpath), flowprep.open_store(hpath)
    assert j.config == h.config and j.info["config_key"] == h.info["config_key"]
    assert j.video_ids == h.video_ids
    for vid in j.video_ids:
        a, b = j[vid], h[vid]
        assert a.meta == b.meta
        for i in range(a.num_frames):
            assert a.rgb_bytes(i) == b.rgb_bytes(i)
        for i in range(a.num_flows):
            assert a.flow_payload(i) == b.flow_payload(i)
    assert j.failures == h.failures
    for name in ("rgb_list.txt", "flow_list.txt", "classes.txt"):
        with open(os.path.join(jpath, name), "rb") as f1, open(os.path.join(hpath, name), "rb") as f2:
            assert f1.read() == f2.read()


def test_layout_on_disk():
    hpath, _ = make_store("hdf5")
    parts, errors = h5.read_index_parts(hpath)
    assert errors == [] and len(parts) >= 1
    shards = sorted(os.listdir(h5.shard_dir(hpath)))
    assert sorted(p["shard"] for p in parts) == shards
    for p in parts:
        assert p["_part"] == p["shard"][: -len(h5.SHARD_EXT)] + ".json"
        assert os.path.getsize(os.path.join(h5.shard_dir(hpath), p["shard"])) == p["shard_bytes"]
    f = h5.open_h5(os.path.join(h5.shard_dir(hpath), shards[0]))
    try:
        g = f[parts[0]["videos"][sorted(parts[0]["videos"])[0]]["group"]]
        assert g["rgb"].dtype == np.int64 and g["rgb"].shape[1] == 3
        assert g["blob"].dtype == np.uint8 and g["blob"].chunks == (h5.BLOB_CHUNK,)
        meta = json.loads(g["meta"][()].tobytes())
        assert meta["video_id"] == g.attrs["video_id"]
    finally:
        f.close()


# --------------------------------------------------------------------------------------
# the writer: sealing, index last, drain_published


def _meta(vid, n, key="k"):
    return {"video_id": vid, "num_frames": n, "num_flows": n - 1, "fps": 25.0, "width": 16,
            "height": 8, "step": 1, "backward": False, "quant": {"scheme": "fixed", "bound": 20.0},
            "mean_flow": [[0.0, 0.0]] * (n - 1), "clipped_fraction": [0.0] * (n - 1),
            "config_key": key, "label": 0}


def _write_video(writer, vid, n=3, seed=0):
    rng = np.random.default_rng(seed)
    vw = writer.begin(vid)
    for _ in range(n):
        vw.add_rgb(rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))
    for _ in range(n - 1):
        vw.add_flow(rng.integers(0, 255, (8, 16, 2), dtype=np.uint8))
    return vw


def test_published_only_when_sealed_and_indexed(tmp_path):
    root, tmp = str(tmp_path / "s"), str(tmp_path / "s" / ".flowprep" / "tmp" / "run")
    w = h5.Hdf5StoreWriter(root, tmp, "host-1-w0-99", shard_size=1 << 30)
    _write_video(w, "a/x").commit(_meta("a/x", 3))
    _write_video(w, "a/y", seed=1).commit(_meta("a/y", 3))
    assert w.drain_published() == []
    assert os.listdir(tmp) == ["host-1-w0-99-0000.h5.tmp"]  # written aside
    assert not os.path.exists(h5.index_dir(root))
    assert h5.published_keys(root) == {}
    vw = _write_video(w, "a/z", seed=2)
    vw.abort()  # the aborted video leaves nothing in the index
    w.close()
    assert sorted(w.drain_published()) == ["a/x", "a/y"]
    assert w.drain_published() == []
    assert os.listdir(tmp) == []
    assert h5.published_keys(root) == {"a/x": "k", "a/y": "k"}
    f = h5.open_h5(os.path.join(h5.shard_dir(root), "host-1-w0-99-0000.h5"))
    assert sorted(f["videos"]) == ["0", "1"]  # the aborted group is gone
    f.close()


def test_a_new_shard_when_the_current_one_passes_shard_size(tmp_path):
    root, tmp = str(tmp_path / "s"), str(tmp_path / "tmp")
    w = h5.Hdf5StoreWriter(root, tmp, "w", shard_size=1)
    for k in range(3):
        _write_video(w, f"v{k}", seed=k).commit(_meta(f"v{k}", 3))
        assert w.drain_published() == [f"v{k}"]  # sealed at once
    w.close()
    assert len(os.listdir(h5.shard_dir(root))) == 3
    assert len(os.listdir(h5.index_dir(root))) == 3


# --------------------------------------------------------------------------------------
# write errors: a video whose commit fails is never registered, its shard never sealed


def _h5_error(code):
    """What h5py raises when libhdf5's write fails: the errno only in the text."""
    why = os.strerror(code)
    return RuntimeError(f"Unable to synchronously flush file (file write failed: time = Mon Jan  1 "
                        f"00:00:00 2026\n, filename = 'x.h5', file descriptor = 3, errno = {code}, "
                        f"error message = '{why}', buf = 0x1, total write size = 4096, bytes this "
                        f"sub-write = 4096, offset = 0)")


def _intact(root):
    """video id -> number of frames, of every published video, after checking every checksum."""
    import zlib
    out = {}
    for vid, e in h5.load_index(root).items():
        f = h5.open_h5(os.path.join(h5.shard_dir(root), e["shard"]))
        try:
            g = f[e["group"]]
            blob = g["blob"][()]
            for stream in ("rgb", "flow_x", "flow_y"):
                for off, length, crc in g[stream][()]:
                    assert zlib.crc32(blob[off:off + length].tobytes()) == crc, (vid, stream)
            assert json.loads(g["meta"][()].tobytes())["video_id"] == vid
            out[vid] = len(g["rgb"])
        finally:
            f.close()
    return out


@pytest.mark.parametrize("code,kind,text", [(5, "WriteError", "I/O error"),
                                            (28, "DiskFullError", "no space left")])
def test_a_failed_flush_at_commit_registers_and_publishes_nothing(tmp_path, monkeypatch, code,
                                                                  kind, text):
    import h5py
    from flowprep.errors import WriteError
    root, tmp = str(tmp_path / "s"), str(tmp_path / "tmp")
    w = h5.Hdf5StoreWriter(root, tmp, "w")
    _write_video(w, "a").commit(_meta("a", 3))
    vw = _write_video(w, "b", seed=1)

    def failing(self):
        raise _h5_error(code)
    monkeypatch.setattr(h5py.File, "flush", failing)
    with pytest.raises(WriteError) as ei:
        vw.commit(_meta("b", 3))
    assert type(ei.value).__name__ == kind  # h5py's RuntimeError, mapped by its errno text
    assert text in str(ei.value) and "\n" not in str(ei.value)
    assert "dropped, unsealed, with 1 committed video not published" in str(ei.value)
    assert w._videos == {} and str(w.error) in str(ei.value)  # out of use from now on
    with pytest.raises(WriteError, match="out of use after a write error"):
        w.begin("c")
    vw.abort()  # what a caller's clean-up does: nothing more is written
    w.close()  # drops the shard instead of sealing it, without raising again
    assert w.drain_published() == []
    assert h5.published_keys(root) == {} and not os.path.exists(h5.shard_dir(root))
    assert os.listdir(tmp) == []


# one EIO under libhdf5's own write() (tests/faultinject.py), at three points: flushing a
# dataset of the first video, flushing the file at its commit, and in the second video
# (the first then sits committed in the open shard)
_EIO_SCRIPT = r"""
import json, os, sys
import numpy as np
from flowprep.errors import WriteError
from flowprep.store import hdf5 as h5
root, tmp = sys.argv[1], sys.argv[2]
ids = ["v0", "v1", "v2", "v3"]

def video(w, vid, n=4):
    rng = np.random.default_rng(int(vid[1:]))
    vw = w.begin(vid)
    for _ in range(n):
        vw.add_rgb(rng.integers(0, 255, (8, 16, 3), dtype=np.uint8))
    for _ in range(n - 1):
        vw.add_flow(rng.integers(0, 255, (8, 16, 2), dtype=np.uint8))
    vw.commit({"video_id": vid, "num_frames": n, "num_flows": n - 1, "config_key": "k"})

out = {"error": None}
w = h5.Hdf5StoreWriter(root, tmp, "w0")
for vid in ids:
    try:
        video(w, vid)
    except WriteError as exc:
        out.update(error=str(exc), kind=type(exc).__name__, failed=vid, registered=sorted(w._videos))
        break
w.close()
out["published"] = w.drain_published()
w = h5.Hdf5StoreWriter(root, tmp, "w1")  # a fresh writer redoes what was not published
for vid in ids:
    if vid not in out["published"]:
        video(w, vid)
w.close()
out["tmp_left"] = os.listdir(tmp)
print(json.dumps(out))
"""


@pytest.mark.parametrize("skip", [2, 15, 20])
def test_an_io_error_in_libhdf5_fails_the_commit_cleanly_and_seals_nothing(tmp_path, skip):
    from faultinject import build_shim, fault_env
    shim = build_shim(str(tmp_path / "shim"))
    if shim is None:
        pytest.skip("no C compiler for the LD_PRELOAD fault shim")
    root, tmp = str(tmp_path / "s"), str(tmp_path / "s" / ".flowprep" / "tmp" / "run")
    env = dict(os.environ, **fault_env(shim, 5, ".h5", skip=skip, count=1))
    p = subprocess.run([sys.executable, "-c", _EIO_SCRIPT, root, tmp], capture_output=True,
                       text=True, env=env, timeout=120)
    # no crash, not even at exit (libhdf5 crashes on a dataset whose close failed)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["kind"] == "WriteError" and "Input/output error" in out["error"], out
    assert out["registered"] == []  # the failing video is not registered
    assert out["published"] == []  # the shard was not sealed: nothing of it is published
    if out["failed"] != "v0":  # the videos committed before it were dropped with the shard
        assert "committed video" in out["error"]
    assert out["tmp_left"] == []
    assert _intact(root) == {"v0": 4, "v1": 4, "v2": 4, "v3": 4}
    parts, errors = h5.read_index_parts(root)
    assert errors == [] and {p["writer"] for p in parts} == {"w1"}  # w0 sealed nothing


def test_convert_stops_on_a_write_error_publishing_nothing_unsealed_and_resumes(tmp_path,
                                                                                monkeypatch):
    import h5py
    from flowprep.errors import WriteError
    jpath, _ = make_store("jpeg")
    dst = str(tmp_path / "h")
    real, calls = h5py.File.flush, []

    def second_fails(self):
        calls.append(1)
        if len(calls) == 2:
            raise _h5_error(5)
        return real(self)
    monkeypatch.setattr(h5py.File, "flush", second_fails)
    with pytest.raises(WriteError, match="I/O error"):
        convert(jpath, dst, "hdf5")
    assert h5.published_keys(dst) == {}  # the first video sat in the dropped shard
    monkeypatch.setattr(h5py.File, "flush", real)
    convert(jpath, dst, "hdf5")  # resumes
    assert signature(flowprep.open_store(dst)) == signature(flowprep.open_store(jpath))
    assert verify_store(dst) == []


def test_newest_index_entry_wins_deterministically():
    parts = [
        {"shard": "b.h5", "sealed_ns": 5, "videos": {"x": {"group": "videos/0"}}},
        {"shard": "a.h5", "sealed_ns": 5, "videos": {"x": {"group": "videos/3"}}},
        {"shard": "c.h5", "sealed_ns": 1, "videos": {"x": {"group": "videos/9"}, "y": {"group": "g"}}},
    ]
    parts.sort(key=lambda p: (p["sealed_ns"], p["shard"]))
    merged = h5.merge_index(parts)
    assert merged["x"]["shard"] == "b.h5"  # newest; on a tie the larger shard name
    assert merged["y"]["shard"] == "c.h5"


def test_force_rerun_supersedes_older_copies(tmp_path):
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    old = flowprep.open_store(path).entries
    flowprep.extract([make_dataset()], path, format="hdf5", force=True, **BASE_OPTS)
    store = flowprep.open_store(path)
    for vid, e in store.entries.items():
        assert e["sealed_ns"] > old[vid]["sealed_ns"] and e["shard"] != old[vid]["shard"]
    from flowprep.verify import describe_store
    assert describe_store(path)["superseded"] == len(MOTION)
    assert verify_store(path) == []


# --------------------------------------------------------------------------------------
# convert


def test_convert_round_trip_is_byte_identical(tmp_path):
    jpath, _ = make_store("jpeg")
    with open(os.path.join(jpath, "trainlist01.txt"), "w") as fh:  # a user's split list
        fh.write("MoveRight/a 0\n")
    try:
        convert(jpath, str(tmp_path / "h"), "hdf5")
        convert(str(tmp_path / "h"), str(tmp_path / "j"), "jpeg")
    finally:
        os.unlink(os.path.join(jpath, "trainlist01.txt"))
    a, b = _tree(jpath), _tree(str(tmp_path / "j"))
    a["trainlist01.txt"] = b"MoveRight/a 0\n"
    ia, ib = json.loads(a.pop(STORE_FILE)), json.loads(b.pop(STORE_FILE))
    assert ib.pop("converted_from")["format"] == "hdf5"
    assert ia == ib
    assert a == b  # every frame file, meta.json and list, byte for byte
    h = flowprep.open_store(str(tmp_path / "h"))
    assert h.format == "hdf5" and h.failures == flowprep.open_store(jpath).failures
    assert verify_store(str(tmp_path / "h")) == [] and verify_store(str(tmp_path / "j")) == []


def test_convert_hdf5_to_jpeg_to_hdf5_reads_the_same(tmp_path):
    hpath, _ = make_store("hdf5")
    convert(hpath, str(tmp_path / "j"), "jpeg")
    convert(str(tmp_path / "j"), str(tmp_path / "h"), "hdf5", shard_size=1)
    a, b = flowprep.open_store(hpath), flowprep.open_store(str(tmp_path / "h"))
    assert signature(a) == signature(b)
    assert len(os.listdir(h5.shard_dir(str(tmp_path / "h")))) == len(MOTION)


def test_convert_refuses_a_non_empty_destination(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "x").write_text("x")
    with pytest.raises(flowprep.FlowprepError, match="not empty"):
        convert(make_store("jpeg")[0], str(tmp_path / "d"), "hdf5")


def test_convert_raw_to_jpeg_encodes_and_rekeys(tmp_path):
    raw, _ = make_store("hdf5", "raw", payload="raw")
    convert(raw, str(tmp_path / "j"), "jpeg")
    r, j = flowprep.open_store(raw), flowprep.open_store(str(tmp_path / "j"))
    assert r.config["payload"] == "raw" and "payload" not in j.config
    assert j.info["config_key"] == flowprep.open_store(make_store("jpeg")[0]).info["config_key"]
    assert all(j.meta(v)["config_key"] == j.info["config_key"] for v in j.video_ids)
    for vid in r.video_ids:
        diff = np.abs(r[vid].flow_quantized(1).astype(int) - j[vid].flow_quantized(1).astype(int))
        assert diff.max() <= 3
        assert r[vid].rgb_bytes(2) == j[vid].rgb_bytes(2)
    assert verify_store(str(tmp_path / "j")) == []


# --------------------------------------------------------------------------------------
# verify


def _blob_file_offset(video, stream, i):
    """Position in the shard file of the middle byte of item i of ``stream``."""
    off, length, _ = (int(x) for x in video.table(stream)[i])
    b = off + length // 2
    start = b // h5.BLOB_CHUNK * h5.BLOB_CHUNK
    info = video._dataset("blob").id.get_chunk_info_by_coord((start,))
    return info.byte_offset + (b - start)


def test_verify_catches_a_corrupted_frame(tmp_path):
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    store = flowprep.open_store(path)
    v = store["MoveRight/a"]
    pos = _blob_file_offset(v, "flow_x", 3)
    shard = os.path.join(h5.shard_dir(path), v.shard)
    store.close()
    with open(shard, "r+b") as fh:
        fh.seek(pos)
        byte = fh.read(1)
        fh.seek(pos)
        fh.write(bytes([byte[0] ^ 0x5A]))
    problems = verify_store(path)
    assert len(problems) == 1
    p = problems[0]
    assert (p.video_id, p.where) == ("MoveRight/a", "flow 3 x")
    assert "checksum" in p.message and v.shard in p.path


def test_verify_catches_a_truncated_shard(tmp_path):
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    shard = sorted(os.listdir(h5.shard_dir(path)))[0]
    full = os.path.join(h5.shard_dir(path), shard)
    os.truncate(full, os.path.getsize(full) // 2)
    problems = verify_store(path)
    assert any(p.video_id is None and shard in p.where and "truncated" in p.message for p in problems)
    victims = {vid for vid, e in h5.load_index(path).items() if e["shard"] == shard}
    assert victims and victims <= {p.video_id for p in problems}


def test_verify_catches_a_missing_shard(tmp_path):
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    shard = sorted(os.listdir(h5.shard_dir(path)))[0]
    victims = {vid for vid, e in h5.load_index(path).items() if e["shard"] == shard}
    os.unlink(os.path.join(h5.shard_dir(path), shard))
    problems = verify_store(path)
    assert any(shard in p.where and "missing" in p.message for p in problems)
    assert victims <= {p.video_id for p in problems}
    # a reader ignores the index entries of a missing shard, so a rerun redoes those videos
    assert not victims & set(flowprep.open_store(path).video_ids)
    report = flowprep.extract([make_dataset()], path, format="hdf5", **BASE_OPTS)
    assert sorted(report.published) == sorted(victims)


def test_verify_reports_a_shard_without_index_part(tmp_path):
    path = copy_store(make_store("hdf5")[0], tmp_path / "s")
    part = sorted(os.listdir(h5.index_dir(path)))[0]
    os.unlink(os.path.join(h5.index_dir(path), part))
    problems = verify_store(path)
    assert any("no index part names this shard" in p.message for p in problems)


def test_verify_jpeg_names_a_missing_and_a_corrupt_file(tmp_path):
    path = copy_store(make_store("jpeg")[0], tmp_path / "s")
    os.unlink(os.path.join(path, "MoveRight", "a", "flow_y_00003.jpg"))
    with open(os.path.join(path, "MoveUpLeft", "b", "img_00002.jpg"), "wb") as fh:
        fh.write(b"garbage")
    got = {(p.video_id, p.where, p.message) for p in verify_store(path)}
    assert ("MoveRight/a", "flow 2 y", "file missing") in got
    assert ("MoveUpLeft/b", "frame 1", "not a decodable JPEG") in got


# --------------------------------------------------------------------------------------
# kill -9 and resume; concurrent writers


def _kill_dataset():
    root = os.path.join(os.path.dirname(make_dataset()), "kill")
    if not os.path.isdir(root):
        os.makedirs(root)
        for k in range(5):
            write_video(os.path.join(root, f"v{k}.mkv"), translated_frames(8, H, W, 1.0, 0.5, seed=k))
    return root


def _cli(args, **kw):
    env = dict(os.environ, HDF5_USE_FILE_LOCKING="FALSE", **kw.pop("env", {}))
    return subprocess.Popen(FLOWPREP + args, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, start_new_session=True, **kw)


def test_kill_9_while_a_shard_is_open_then_resume(tmp_path):
    data = _kill_dataset()
    ref = str(tmp_path / "ref")
    flowprep.extract([data], ref, format="hdf5", shard_size=1, **BASE_OPTS)
    sizes = [p["shard_bytes"] for p in h5.read_index_parts(ref)[0]]
    out = str(tmp_path / "out")
    # two videos per shard: v0+v1 sealed, v2's shard open while v3 sleeps
    args = [data, "-o", out, "--format", "hdf5", "--algo", "farneback", "--short-side", "0",
            "--bound", str(BOUND), "--jobs", "1", "--shard-size", str(int(1.5 * max(sizes)))]
    proc = _cli(["extract"] + args, env={"FLOWPREP_TEST_HOOK": "sleep:v3"})
    open_shard = None
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            tmp = os.path.join(out, ".flowprep", "tmp")
            open_now = [os.path.join(d, f) for d, _, fs in os.walk(tmp) for f in fs
                        if f.endswith(".h5.tmp")]
            if open_now and os.path.isdir(h5.index_dir(out)) and os.listdir(h5.index_dir(out)):
                open_shard = open_now[0]
                os.killpg(proc.pid, signal.SIGKILL)
                break
            time.sleep(0.02)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert open_shard is not None, proc.stdout.read().decode()
    assert proc.returncode == -signal.SIGKILL
    indexed = set(h5.published_keys(out))
    assert indexed and len(indexed) < 5  # some sealed, the open shard's videos not
    assert os.path.exists(open_shard)  # the partial shard was left behind, unindexed
    report = flowprep.extract([data], out, format="hdf5", **BASE_OPTS)
    assert set(report.skipped) == indexed
    assert set(report.published) == {f"v{k}" for k in range(5)} - indexed
    assert not os.path.exists(open_shard)  # the dead run's staging area was removed
    assert verify_store(out) == []
    assert signature(flowprep.open_store(out)) == signature(flowprep.open_store(ref))


def test_concurrent_shard_runs_publish_into_one_store(tmp_path):
    data = _kill_dataset()
    out = str(tmp_path / "out")
    args = [data, "-o", out, "--format", "hdf5", "--algo", "farneback", "--short-side", "0",
            "--bound", str(BOUND), "--jobs", "1"]
    procs = [_cli(["extract"] + args + ["--shard", f"{i}/2"]) for i in range(2)]
    outs = [p.communicate(timeout=120)[0].decode() for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    store = flowprep.open_store(out)
    assert store.video_ids == [f"v{k}" for k in range(5)]
    writers = {p["writer"] for p in h5.read_index_parts(out)[0]}
    assert len(writers) == 2  # each run wrote its own shards and index parts
    assert verify_store(out) == []


# --------------------------------------------------------------------------------------
# readers in other processes


@pytest.mark.parametrize("method", ["fork", "spawn", "forkserver"])
def test_reading_from_other_processes_matches_a_serial_read(method):
    path, _ = make_store("hdf5")
    store = flowprep.open_store(path)
    ids = store.video_ids
    serial = _read_some(store, ids)  # opens the shard handles in this process first
    try:
        with mp.get_context(method).Pool(2) as pool:
            got = pool.starmap(_read_some, [(store, [vid]) for vid in ids] * 2)
    finally:
        if method == "forkserver":  # not left running for later tests (test_startup's)
            from multiprocessing import forkserver
            getattr(forkserver._forkserver, "_stop", lambda: None)()
    assert [x for part in got for x in part] == serial * 2


class FlowItems:
    """A map-style dataset over every (video, flow) of a store (torch DataLoader test)."""

    def __init__(self, store):
        self.store = store
        self.items = [(v, i) for v in store.video_ids for i in range(store[v].num_flows)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, k):
        vid, i = self.items[k]
        return self.store[vid].flow_quantized(i)


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_torch_dataloader_workers_read_correct_data(method):
    torch = pytest.importorskip("torch")
    store = flowprep.open_store(make_store("hdf5")[0])
    ds = FlowItems(store)
    serial = np.stack([ds[k] for k in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=2,
                                         multiprocessing_context=method)
    got = np.concatenate([b.numpy() for b in loader])
    assert np.array_equal(got, serial)


# --------------------------------------------------------------------------------------
# the raw payload


def _quantized_flows_of(path):
    """The uint8 flows extract computes for ``path`` (decode, farneback, fixed quantization)."""
    from flowprep.decode import Resize, VideoReader, rgb_to_grey
    from flowprep.flow import make_backend, merge_params, resolve
    backend = make_backend(resolve("farneback", "cpu", "opencv"), merge_params("farneback"), "cpu")
    greys = [rgb_to_grey(f) for f in VideoReader(path, Resize(0))]
    return [qz.quantize_fixed(backend.compute(a, b), BOUND) for a, b in zip(greys, greys[1:])]


def test_raw_payload_stores_exactly_the_quantized_flow():
    raw = flowprep.open_store(make_store("hdf5", "raw", payload="raw")[0])
    jpg = flowprep.open_store(make_store("jpeg")[0])
    assert raw.config["payload"] == "raw"
    assert raw.info["config_key"] != jpg.info["config_key"]
    for vid in MOTION:
        want = _quantized_flows_of(os.path.join(make_dataset(), vid + ".mkv"))
        v = raw[vid]
        assert v.payload == "raw" and v.num_flows == len(want)
        for i, q in enumerate(want):
            got = v.flow_quantized(i)
            assert got.dtype == np.uint8 and np.array_equal(got, q)  # lossless
            x, y = v.flow_payload(i)
            assert np.array_equal(x, q[..., 0]) and np.array_equal(y, q[..., 1])
            # the JPEG payload of the same flow is within JPEG's error of it
            assert np.abs(jpg[vid].flow_quantized(i).astype(int) - q.astype(int)).max() <= 3
        assert v.rgb_bytes(0) == jpg[vid].rgb_bytes(0)  # RGB stays JPEG, same bytes
    assert verify_store(raw.root) == []


def test_raw_payload_verify_catches_corruption(tmp_path):
    path = copy_store(make_store("hdf5", "raw", payload="raw")[0], tmp_path / "s")
    store = flowprep.open_store(path)
    v = store["MoveUpLeft/b"]
    ds = v._dataset("flow")
    info = ds.id.get_chunk_info_by_coord((2, 0, 0, 0))
    shard = os.path.join(h5.shard_dir(path), v.shard)
    store.close()
    with open(shard, "r+b") as fh:  # damage the gzip stream of flow 2
        fh.seek(info.byte_offset + info.size // 2)
        fh.write(b"\x00\xff" * 8)
    problems = verify_store(path)
    assert [(p.video_id, p.where) for p in problems] == [("MoveUpLeft/b", "flow 2")]


def test_frames_are_appended_not_held_in_memory(tmp_path):
    w = h5.Hdf5StoreWriter(str(tmp_path / "s"), str(tmp_path / "tmp"), "w")
    vw = w.begin("long")
    rng = np.random.default_rng(0)
    n = 0
    while vw.blob_len < 3 * h5.FLUSH_BYTES:  # noise JPEGs: ~30 kB each
        vw.add_rgb(rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
        n += 1
        assert vw.buf_len < h5.FLUSH_BYTES  # at most 1 MiB waits in memory
    assert vw.blob.shape[0] == vw.blob_len  # the rest is in the file already
    vw.add_flow(np.zeros((96, 128, 2), np.uint8))
    for _ in range(n - 2):
        vw.add_flow(np.full((96, 128, 2), 128, np.uint8))
    meta = _meta("long", n)
    meta.update(width=128, height=96)
    vw.commit(meta)
    w.close()
    shards = h5.shard_dir(str(tmp_path / "s"))
    f = h5.open_h5(os.path.join(shards, os.listdir(shards)[0]))
    assert f["videos/0/rgb"].shape == (n, 3) and f["videos/0/flow_x"].shape == (n - 1, 3)
    f.close()
