"""Object storage: inputs and HDF5 stores at s3:// URLs, against a real S3 API server.

The server is moto's standalone server (``moto[server]``), a subprocess on
127.0.0.1 that the tests start themselves (tests/s3server.py); flowprep talks to
it through s3fs and botocore over HTTP, unmocked, with AWS_ENDPOINT_URL pointing
at it. Network failures go through a TCP relay in front of it (FaultyLink).
"""
from __future__ import annotations

import json
import os
import pickle
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pytest

import flowprep
from flowprep.errors import ConfigError, LockedError
from flowprep.remote import Remote, parse_storage_options, redact, scrub
from flowprep.store import remote as rs
from s3server import FaultyLink, S3Server
from synth import translated_video, translated_frames

OPTS = dict(algo="farneback", short_side=0, bound=20.0, jobs=1, format="hdf5")
KEY_ID = "AKIDflowprepTEST0001"
SECRET = "flowprepSECRETvalue-9f3a1c77"


@pytest.fixture(scope="module")
def s3():
    srv = S3Server()
    yield srv
    srv.stop()


@pytest.fixture()
def env(s3, monkeypatch):
    """AWS_* as a user sets them: credentials and the endpoint of the loopback server."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", KEY_ID)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3.endpoint)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("FLOWPREP_UPLOAD_BACKOFF", "0.2")
    return s3


@pytest.fixture()
def bucket(env):
    return env.make_bucket("b" + uuid.uuid4().hex[:12])


def make_videos(root):
    """A UCF-like tree: two classes of tiny lossless videos with known motion, and a
    frame folder (the JPEG frames of a translated texture)."""
    import cv2
    os.makedirs(os.path.join(root, "Left"))
    os.makedirs(os.path.join(root, "Right"))
    translated_video(os.path.join(root, "Left", "v_l1.mkv"), n=5, dx=-1.5, dy=0.5, seed=1)
    translated_video(os.path.join(root, "Left", "v_l2.mkv"), n=4, dx=-2.0, dy=0.0, seed=2)
    translated_video(os.path.join(root, "Right", "v_r1.mkv"), n=6, dx=1.5, dy=-1.0, seed=3)
    frames = os.path.join(root, "Right", "frames_r2")
    os.makedirs(frames)
    for i, f in enumerate(translated_frames(5, 96, 128, 1.0, 1.0, seed=4)):
        cv2.imwrite(os.path.join(frames, f"img_{i + 1:05d}.png"), f[..., ::-1])
    return root


def upload_tree(s3, bucket, local, prefix):
    c = s3.client()
    for dirpath, _, files in os.walk(local):
        for f in files:
            full = os.path.join(dirpath, f)
            c.upload_file(full, bucket, prefix + "/" + os.path.relpath(full, local))


def assert_same_store(a, b, meta_skip=("source",)):
    """Equal video ids, labels, metadata (but the source path) and every stored plane."""
    assert a.video_ids == b.video_ids
    assert a.info["classes"] == b.info["classes"]
    assert a.info["config_key"] == b.info["config_key"]
    for vid in a.video_ids:
        va, vb = a[vid], b[vid]
        ma = {k: v for k, v in va.meta.items() if k not in meta_skip}
        mb = {k: v for k, v in vb.meta.items() if k not in meta_skip}
        assert ma == mb, vid
        for i in range(va.num_frames):
            assert va.rgb_bytes(i) == vb.rgb_bytes(i), (vid, i)
        for i in range(va.num_flows):
            assert np.array_equal(va.flow_quantized(i), vb.flow_quantized(i)), (vid, i)


def objects_visible_invariant(remote, ext=".h5"):
    """What a reader can see at this moment: every index part names a shard that is
    there whole (its sealed size). Returns the number of parts checked."""
    parts, errors, shards = rs.read_index(remote, ext)
    assert not errors, errors
    if any(p["shard"] not in shards for p in parts):
        # read_index lists the shards before it reads the parts, so a shard and its part
        # published between the two listings show as a part without its shard: the shard
        # must be there now, listed after the part was read (uploads are shard first)
        shards = {n: b for n, b in remote.listdir(rs.SHARD_DIR).items() if n.endswith(ext)}
    for p in parts:
        # a part is uploaded after its shard: the shard must be there, complete
        assert p["shard"] in shards, f"index part {p['_part']} visible before its shard"
        assert shards[p["shard"]] == p["shard_bytes"], f"partial shard {p['shard']}"
    return len(parts)


# --------------------------------------------------------------------------------------
# the format-independent layer


def test_storage_options_parse_and_credentials_are_scrubbed():
    assert parse_storage_options(["endpoint_url=http://127.0.0.1:9", "anon=true", "n=3",
                                  "client_kwargs.region_name=eu-west-1"]) == {
        "endpoint_url": "http://127.0.0.1:9", "anon": True, "n": 3,
        "client_kwargs": {"region_name": "eu-west-1"}}
    with pytest.raises(ConfigError, match="KEY=VALUE"):
        parse_storage_options(["novalue"])
    assert redact("s3://user:pw@bucket/x") == "s3://bucket/x"
    text = scrub(f"failed with key {SECRET} at s3://u:p@b/k", {"secret": SECRET})
    assert SECRET not in text and "u:p@" not in text and "***" in text


def test_a_protocol_without_its_package_names_the_extra(tmp_path):
    import fsspec
    fsspec.register_implementation("zzfs", "flowprep_no_such_package.ZzFileSystem",
                                   clobber=True)
    with pytest.raises(ConfigError, match=r"flowprep\[cloud\]"):
        flowprep.extract([str(tmp_path)], "zzfs://bucket/store", **OPTS)
    with pytest.raises(ConfigError, match=r"flowprep\[cloud\]"):
        flowprep.open_store("zzfs://bucket/store")


def test_range_reads_with_a_bounded_cache(bucket, env):
    data = os.urandom(5 << 20)
    env.client().put_object(Bucket=bucket, Key="blob", Body=data)
    r = Remote(f"s3://{bucket}/blob")
    with r.open_read("", block=1 << 16, blocks=4) as f:
        f.seek(3 << 20)
        assert f.read(100) == data[3 << 20:(3 << 20) + 100]
        f.seek(10)
        assert f.read(10) == data[10:20]
        cache = f.cache
        assert cache.blocksize == 1 << 16 and cache.maxblocks == 4
        # bytes fetched: a few blocks, not the object
        assert cache.total_requested_bytes <= 4 * (1 << 16)


# --------------------------------------------------------------------------------------
# extract: s3 -> s3 equals the same run on local copies


def test_extract_from_s3_into_s3_equals_local_copies(bucket, env, tmp_path):
    local = make_videos(str(tmp_path / "videos"))
    upload_tree(env, bucket, local, "data/videos")
    url = f"s3://{bucket}/stores/flow"
    report = flowprep.extract([f"s3://{bucket}/data/videos/"], url, **OPTS)
    assert report.ok and len(report.published) == 4, report
    assert report.root == url
    ref = flowprep.extract([local], str(tmp_path / "ref"), **OPTS)
    assert ref.ok
    remote_store = flowprep.open_store(url)
    local_store = flowprep.open_store(str(tmp_path / "ref"))
    assert remote_store.video_ids == ["Left/v_l1", "Left/v_l2", "Right/frames_r2", "Right/v_r1"]
    assert_same_store(remote_store, local_store)
    assert remote_store["Left/v_l1"].meta["source"] == f"s3://{bucket}/data/videos/Left/v_l1.mkv"
    keys = env.keys(bucket)
    assert "stores/flow/flowprep.json" in keys
    for name in ("rgb_list.txt", "flow_list.txt", "classes.txt"):
        got = env.client().get_object(Bucket=bucket, Key=f"stores/flow/{name}")["Body"].read()
        assert got == (tmp_path / "ref" / name).read_bytes(), name
    assert not any("/.flowprep/locks/" in k for k in keys)  # released
    objects_visible_invariant(Remote(url))
    # a rerun publishes nothing new
    again = flowprep.extract([f"s3://{bucket}/data/videos"], url, **OPTS)
    assert again.published == [] and len(again.skipped) == 4
    # the store object crosses processes (DataLoader workers) and reads there
    s2 = pickle.loads(pickle.dumps(remote_store))
    assert np.array_equal(s2["Left/v_l2"].flow_quantized(1),
                          local_store["Left/v_l2"].flow_quantized(1))


def test_a_list_at_a_url_with_relative_paths_and_bad_remote_inputs(bucket, env, tmp_path,
                                                                    samples):
    """Truncated object, not a video, zero-byte object, an object the list names that
    does not exist: each fails with its reason, as locally; the good ones publish."""
    c = env.client()
    good = translated_video(str(tmp_path / "good.mkv"), n=5)
    c.upload_file(good, bucket, "in/cls/good.mkv")
    pristine = [s for s in samples if s.endswith("carphone_pristine.mp4")][0]
    data = open(pristine, "rb").read()
    c.put_object(Bucket=bucket, Key="in/cls/truncated.mp4", Body=data[: len(data) // 3])
    c.put_object(Bucket=bucket, Key="in/cls/notavideo.mp4", Body=b"hello, I am text\n" * 50)
    c.put_object(Bucket=bucket, Key="in/cls/empty.mp4", Body=b"")
    c.put_object(Bucket=bucket, Key="in/list.txt", Body=(
        "cls/good.mkv 3\ncls/truncated.mp4 1\ncls/notavideo.mp4 1\ncls/empty.mp4 1\n"
        "cls/missing.mp4 2\n").encode())
    url = f"s3://{bucket}/out"
    report = flowprep.extract([f"s3://{bucket}/in/list.txt"], url, **OPTS)
    assert report.published == ["cls/good"]
    failed = {k.rsplit("/", 1)[-1]: v for k, v in report.failed.items()}
    assert set(failed) == {"truncated.mp4", "notavideo.mp4", "empty.mp4", "missing.mp4"}
    assert "truncated" in failed["truncated.mp4"] or "cut short" in failed["truncated.mp4"]
    assert "not a video" in failed["notavideo.mp4"] or "text file" in failed["notavideo.mp4"]
    assert "empty object (0 bytes)" in failed["empty.mp4"]
    assert "no such object" in failed["missing.mp4"]
    for k, v in report.failed.items():
        assert k.startswith(f"s3://{bucket}/in/cls/") and v.startswith(k), (k, v)
    store = flowprep.open_store(url)
    assert store.video_ids == ["cls/good"]
    assert store["cls/good"].label == 3  # the list's label
    assert set(store.failures) == set(report.failed)
    assert store.failures == report.failed


# --------------------------------------------------------------------------------------
# refusals before anything is written


def test_a_jpeg_store_at_a_url_is_refused_before_anything_is_written(bucket, env, tmp_path):
    local = translated_video(str(tmp_path / "v.mkv"), n=4)
    with pytest.raises(ConfigError, match="--format hdf5"):
        flowprep.extract([local], f"s3://{bucket}/jpeg", **dict(OPTS, format="jpeg"))
    assert env.keys(bucket) == []


def test_cli_refuses_jpeg_to_a_url_with_exit_2(bucket, env, tmp_path):
    from click.testing import CliRunner
    from flowprep.cli.main import cli
    local = translated_video(str(tmp_path / "v.mkv"), n=4)
    res = CliRunner().invoke(cli, ["extract", local, "-o", f"s3://{bucket}/j"])
    assert res.exit_code == 2 and "--format hdf5" in res.output
    assert env.keys(bucket) == []


# --------------------------------------------------------------------------------------
# locks


def test_locks_refuse_overlapping_runs_allow_disjoint_parts_and_expire(bucket, env, tmp_path):
    local = str(tmp_path / "v")
    os.makedirs(local)
    translated_video(os.path.join(local, "a.mkv"), n=4, seed=1)
    translated_video(os.path.join(local, "b.mkv"), n=4, seed=2)
    url = f"s3://{bucket}/s"
    remote = Remote(url)
    held = rs.RemoteRunLock(remote, "otherhost-1-abcdef", 0, 2, ttl=60)
    try:
        with pytest.raises(LockedError, match="otherhost|another flowprep extract"):
            flowprep.extract([local], url, **OPTS)  # a whole run overlaps every part
        with pytest.raises(LockedError):
            flowprep.extract([local], url, shard="0/2", **OPTS)  # the same part
        with pytest.raises(LockedError):
            flowprep.extract([local], url, shard="1/3", **OPTS)  # another split
        r = flowprep.extract([local], url, shard="1/2", **OPTS)  # disjoint: runs
        assert r.ok
    finally:
        held.release()
    # a crashed run: its lock object stays, with an expiry in the past
    rec = {"flowprep_lock": 1, "token": "deadhost-9-000000", "owner": "deadhost:9",
           "part": [0, 1], "created_ns": 1, "expires_at": time.time() - 1}
    remote.write_bytes(f"{rs.LOCK_DIR}/deadhost-9-000000.json", json.dumps(rec).encode())
    r = flowprep.extract([local], url, **OPTS)
    assert r.ok and len(r.published) + len(r.skipped) == 2
    assert not [k for k in env.keys(bucket) if "/locks/" in k]


# --------------------------------------------------------------------------------------
# a network error mid-upload


def _extract_in_thread(args, kwargs):
    box = {}

    def run():
        try:
            box["report"] = flowprep.extract(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001
            box["error"] = exc
    t = threading.Thread(target=run)
    t.start()
    return t, box


def _wait_for(path_glob_dir, prefix, timeout=120):
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        names = [n for n in os.listdir(path_glob_dir) if n.startswith(prefix)]
        if names:
            return names
        time.sleep(0.05)
    raise AssertionError(f"no {prefix}* marker within {timeout} s")


@pytest.mark.parametrize("outage", ["short", "long"])
def test_network_error_mid_upload_retries_or_fails_the_shard_never_half(bucket, env, tmp_path,
                                                                        monkeypatch, outage,
                                                                        samples):
    """The link to the server is torn in the middle of a shard's upload. A short outage:
    the upload is retried and the shard published whole. A long one (the server away
    for longer than the retries): the shard fails and is never visible; its videos are
    computed again into a new shard, published once the server is back."""
    link = FaultyLink(int(env.endpoint.rsplit(":", 1)[1]))
    try:
        src = [s for s in samples if s.endswith("carphone_pristine.mp4")][0]
        local = str(tmp_path / "in")
        os.makedirs(local)
        shutil.copy(src, os.path.join(local, "phone.mp4"))
        translated_video(os.path.join(local, "small.mkv"), n=4)
        marks = str(tmp_path / "marks")
        os.makedirs(marks)
        monkeypatch.setenv("FLOWPREP_TEST_MARK_DIR", marks)
        monkeypatch.setenv("FLOWPREP_TEST_PAUSE_BEFORE_SHARD", "0.5")
        monkeypatch.setenv("FLOWPREP_UPLOAD_TRIES", "3")
        monkeypatch.setenv("FLOWPREP_UPLOAD_BACKOFF", "1.0")
        # botocore's own retries off (a storage option passed through), so that the
        # outage outlasts flowprep's tries in seconds, not minutes
        so = {"endpoint_url": link.endpoint,
              "config_kwargs": {"retries": {"max_attempts": 1}}}
        url = f"s3://{bucket}/net"
        t, box = _extract_in_thread(([local], url), dict(OPTS, storage_options=so,
                                                           short_side=128))
        first = _wait_for(marks, "before_shard-")[0][len("before_shard-"):]
        link.tear_after(30_000)  # the shard upload starts, 30 kB go through, then the cut
        t0 = time.monotonic()
        while link.up and time.monotonic() - t0 < 120:
            time.sleep(0.02)
        assert not link.up, "the upload did not start"
        seen = rs.read_index(Remote(url))  # straight to the server: nothing half there
        assert seen[0] == [] and all(size > 0 for size in seen[2].values())
        if outage == "short":
            link.restore()  # the retry (after 1 s) goes through
        else:  # the tries run out: the shard fails; its videos are redone in a new one
            t0 = time.monotonic()
            while time.monotonic() - t0 < 180 and not [
                    n for n in os.listdir(marks) if n.startswith("before_shard-")
                    and not n.endswith(first)]:
                assert t.is_alive(), box
                time.sleep(0.05)
            assert f"net/shards/{first}" not in env.keys(bucket)
            assert rs.load_index(Remote(url)) == {}
            link.restore()  # the server is back
        t.join(300)
        report = box.get("report")
        assert report is not None, box
        assert report.ok and sorted(report.published) == ["phone", "small"], report
        keys = env.keys(bucket)
        objects_visible_invariant(Remote(url))
        shards = [k for k in keys if k.startswith("net/shards/")]
        assert len(shards) == 1
        assert (shards[0].endswith(first)) == (outage == "short")
        store = flowprep.open_store(url)
        assert store.video_ids == ["phone", "small"]
        assert store.failures == {}
        from flowprep.verify import verify_store
        assert verify_store(url) == [], keys
    finally:
        link.close()


# --------------------------------------------------------------------------------------
# kill -9 of the whole run during uploads, then resume


def _cli(args, extra_env=None, **kw):
    env = dict(os.environ)
    env.update(extra_env or {})
    return subprocess.Popen([sys.executable, "-m", "flowprep.cli", *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True, **kw)


def test_kill9_during_uploads_then_resume_equals_an_uninterrupted_run(bucket, env, tmp_path,
                                                                     monkeypatch):
    local = str(tmp_path / "in")
    for c in range(2):
        for k in range(4):
            os.makedirs(os.path.join(local, f"c{c}"), exist_ok=True)
            translated_video(os.path.join(local, f"c{c}", f"v{k}.mkv"), n=4 + k % 2,
                             dx=1.0 + k * 0.25, dy=-0.5 * c, seed=10 * c + k)
    upload_tree(env, bucket, local, "in")
    url = f"s3://{bucket}/store"
    remote = Remote(url)
    monkeypatch.setenv("FLOWPREP_REMOTE_LOCK_TTL", "3")
    args = ["extract", f"s3://{bucket}/in", "-o", url, "--format", "hdf5", "--algo", "farneback",
            "--short-side", "0", "--jobs", "2", "--shard-size", "1", "--no-progress"]
    violations = []
    stop = threading.Event()

    def watch():  # a reader polling the store while runs are killed (its own client)
        mine = Remote(url, {"skip_instance_cache": True})
        while not stop.is_set():
            try:
                objects_visible_invariant(mine)
                checks.append(1)
            except AssertionError as exc:
                violations.append(str(exc))
            except Exception:  # noqa: BLE001 - a listing racing a delete
                pass
            time.sleep(0.2)

    checks = []

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    rng = random.Random(19)
    marks = str(tmp_path / "marks")
    slow = {"FLOWPREP_TEST_PAUSE_BEFORE_INDEX": "0.5", "FLOWPREP_TEST_PAUSE_BEFORE_SHARD": "0.2",
            "FLOWPREP_TEST_MARK_DIR": marks}
    orphans = 0
    try:
        # kill 1: between a shard's upload and its index part's (the shard is there,
        # unindexed); kill 2: at a random moment once uploads have started
        for attempt, (window, delay) in enumerate((("before_index-", 0.1),
                                                   ("before_shard-", rng.uniform(0, 1.5)))):
            shutil.rmtree(marks, ignore_errors=True)
            os.makedirs(marks)
            p = _cli(args, slow)
            _wait_for(marks, window)
            time.sleep(delay)
            assert p.poll() is None, "the run ended before it was killed"
            os.killpg(p.pid, signal.SIGKILL)
            p.wait(30)
            objects_visible_invariant(remote)
            parts, _, shards = rs.read_index(remote)
            orphans += len(set(shards) - {q["shard"] for q in parts})
            time.sleep(3.5)  # the killed run's lock expires
        assert orphans >= 1  # kill 1 left a shard without its index part
        p = _cli(args)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()
    finally:
        stop.set()
        watcher.join(5)
    assert not violations, violations[:3]
    assert len(checks) > 10  # the reader did look, many times
    ref = flowprep.extract([local], str(tmp_path / "ref"), **dict(OPTS, jobs=2))
    assert ref.ok
    assert_same_store(flowprep.open_store(url), flowprep.open_store(str(tmp_path / "ref")))
    from flowprep.verify import verify_store
    assert verify_store(url) == []  # no orphan shard left, nothing unindexed


# --------------------------------------------------------------------------------------
# verify catches a corrupted remote shard


def test_verify_s3_catches_a_corrupted_and_a_truncated_shard(bucket, env, tmp_path):
    local = str(tmp_path / "in")
    os.makedirs(local)
    translated_video(os.path.join(local, "a.mkv"), n=5, seed=1)
    translated_video(os.path.join(local, "b.mkv"), n=5, seed=2)
    url = f"s3://{bucket}/v"
    assert flowprep.extract([local], url, shard_size=1, **OPTS).ok
    from flowprep.verify import verify_store
    assert verify_store(url) == []
    c = env.client()
    shards = sorted(k for k in env.keys(bucket) if k.startswith("v/shards/"))
    assert len(shards) == 2
    # flip bytes inside a frame's JPEG data: the size stays, a crc32 no longer matches
    store = flowprep.open_store(url)
    vid = store.video_ids[0]
    e = store.entries[vid]
    key = f"v/shards/{e['shard']}"
    data = bytearray(c.get_object(Bucket=bucket, Key=key)["Body"].read())
    f = store._file(e["shard"])
    blob = f[e["group"]]["blob"]
    pos = int(store[vid].table("rgb")[2, 0]) + 10  # inside RGB frame 2's bytes, in the blob
    chunk = blob.chunks[0]
    off = blob.id.get_chunk_info_by_coord(((pos // chunk) * chunk,)).byte_offset + pos % chunk
    data[off:off + 8] = bytes(255 - x for x in data[off:off + 8])
    c.put_object(Bucket=bucket, Key=key, Body=bytes(data))
    problems = verify_store(url)
    assert any(p.video_id == vid and "checksum" in p.message for p in problems), problems
    # the other shard cut short
    other = [k for k in shards if k != key][0]
    data = c.get_object(Bucket=bucket, Key=other)["Body"].read()
    c.put_object(Bucket=bucket, Key=other, Body=data[: len(data) // 2])
    problems = verify_store(url)
    assert any("truncated" in p.message for p in problems), problems
    from click.testing import CliRunner
    from flowprep.cli.main import cli
    res = CliRunner().invoke(cli, ["verify", url])
    assert res.exit_code == 1 and "truncated" in res.output and "checksum" in res.output


# --------------------------------------------------------------------------------------
# credentials never written


def test_credentials_never_enter_the_store_records_or_output(bucket, env, tmp_path,
                                                              monkeypatch):
    """The secret in the environment and in --storage-option values never appears in
    any object written, the staging folder, the CLI's output or the failure records."""
    local = str(tmp_path / "in")
    os.makedirs(local)
    translated_video(os.path.join(local, "ok.mkv"), n=4)
    (tmp_path / "in" / "bad.mp4").write_bytes(b"not a video at all " * 20)
    env.client().put_object(Bucket=bucket, Key="in/missing_list.txt", Body=b"nothing.mp4\n")
    staging = str(tmp_path / "staging")
    opt_secret = "OPTsecretVALUE-1234abcd"
    url = f"s3://{bucket}/cred"
    p = _cli(["extract", local, f"s3://{bucket}/in/missing_list.txt", "-o", url, "--format", "hdf5",
              "--algo", "farneback", "--short-side", "0", "--jobs", "1", "--staging", staging,
              "--storage-option", f"key={KEY_ID}", "--storage-option", f"secret={opt_secret}",
              "--storage-option", f"endpoint_url={env.endpoint}"])
    out, err = p.communicate(timeout=300)
    assert p.returncode == 1, err.decode()  # bad.mp4 and nothing.mp4 failed
    text = out.decode() + err.decode()
    assert "FAILED" in text
    blobs = list(env.objects(bucket).values())
    for dirpath, _, files in os.walk(staging):
        for f in files:
            blobs.append(open(os.path.join(dirpath, f), "rb").read())
    store = flowprep.open_store(url)
    assert len(store.failures) == 2
    blobs.append(json.dumps(store.failures).encode())
    blobs.append(json.dumps(store.info).encode())
    for vid in store.video_ids:
        blobs.append(json.dumps(store.meta(vid)).encode())
    for secret in (SECRET, opt_secret, KEY_ID):
        assert secret not in text, secret
        for b in blobs:
            assert secret.encode() not in b, secret


# --------------------------------------------------------------------------------------
# wds on object storage, convert both ways, the store tools and the loaders


def test_wds_store_at_a_url_convert_both_ways_tools_and_loaders(bucket, env, tmp_path):
    """extract --format wds into s3://; convert s3 wds -> local hdf5 -> s3 hdf5 -> local
    jpeg, byte for byte; inspect/show/verify on URLs; the map-style and the streaming
    loader over s3:// give the local store's samples."""
    from click.testing import CliRunner
    from flowprep.cli.main import cli
    from flowprep.loader import StreamingTwoStreamDataset, TwoStreamDataset
    local = make_videos(str(tmp_path / "videos"))
    wds_url = f"s3://{bucket}/wds"
    rep = flowprep.extract([local], wds_url, shard_size=1, **dict(OPTS, format="wds"))
    assert rep.ok and len(rep.published) == 4
    ref_path = str(tmp_path / "ref_wds")
    assert flowprep.extract([local], ref_path, shard_size=1, **dict(OPTS, format="wds")).ok
    remote_wds, ref = flowprep.open_store(wds_url), flowprep.open_store(ref_path)
    assert remote_wds.format == "wds"
    assert_same_store(remote_wds, ref)
    keys = env.keys(bucket)
    tars = [k for k in keys if k.startswith("wds/shards/") and k.endswith(".tar")]
    assert len(tars) == 4 and len([k for k in keys if k.startswith("wds/index/members/")]) == 4
    assert objects_visible_invariant(Remote(wds_url), ".tar") == 4

    from flowprep.convert import convert
    h5_local = str(tmp_path / "h5")
    convert(wds_url, h5_local, "hdf5")
    h5_url = f"s3://{bucket}/h5"
    convert(h5_local, h5_url, "hdf5")
    jpeg_local = str(tmp_path / "jpeg")
    convert(h5_url, jpeg_local, "jpeg")
    for path in (h5_local, h5_url, jpeg_local):
        assert_same_store(flowprep.open_store(path), ref, meta_skip=())
    with pytest.raises(ConfigError, match="--format hdf5"):
        convert(h5_local, f"s3://{bucket}/j", "jpeg")

    runner = CliRunner()
    res = runner.invoke(cli, ["inspect", wds_url, "--json"])
    assert res.exit_code == 0, res.output
    d = json.loads(res.output)
    assert d["videos"] == 4 and d["format"] == "wds" and d["shards"] == 4
    assert d["disk"]["bytes"] > d["payload_bytes"]["rgb"]
    res = runner.invoke(cli, ["verify", h5_url])
    assert res.exit_code == 0 and "OK: 4 videos" in res.output, res.output
    before = env.client().get_object(Bucket=bucket, Key="h5/flow_list.txt")["Body"].read()
    env.client().delete_object(Bucket=bucket, Key="h5/flow_list.txt")
    res = runner.invoke(cli, ["index", h5_url])
    assert res.exit_code == 0 and "4 videos listed" in res.output, res.output
    assert env.client().get_object(Bucket=bucket, Key="h5/flow_list.txt")["Body"].read() == before
    png = str(tmp_path / "s.png")
    res = runner.invoke(cli, ["show", wds_url, "Left/v_l1", "--frame", "1", "-o", png])
    assert res.exit_code == 0 and os.path.getsize(png) > 0, res.output
    html = str(tmp_path / "report.html")  # the report of a store at a URL is the local copy's
    res = runner.invoke(cli, ["report", wds_url, "-o", html, "--sample", "2",
                              "--storage-option", f"endpoint_url={env.endpoint}"])
    assert res.exit_code == 0 and "4 videos, 0 failed" in res.output, res.output
    from flowprep.report.page import build_report
    got, want = build_report(wds_url, sample=2).content, build_report(ref_path, sample=2).content
    for c in (got, want):
        for k in ("path", "text", "disk_bytes"):  # where it is; lock and run files differ
            c["summary"].pop(k)
    assert got["summary"]["videos"] == 4 and got["counts"] == want["counts"]
    assert got["summary"] == want["summary"] and got["tables"] == want["tables"]
    assert [x["video_id"] for x in got["samples"]] == [x["video_id"] for x in want["samples"]]

    opts = dict(modality="flow", length=2, crop_size=64, seed=3)
    a, b = TwoStreamDataset(wds_url, **opts), TwoStreamDataset(ref_path, **opts)
    a2 = pickle.loads(pickle.dumps(a))  # what DataLoader workers get
    for i in range(len(b)):
        sa, sb, s2 = a[i], b[i], a2[i]
        assert sa["video_id"] == sb["video_id"]
        assert np.array_equal(sa["flow"], sb["flow"]) and np.array_equal(s2["flow"], sb["flow"])
    for sequential in (True, False):  # whole shards, or each sample's members by range
        stream = StreamingTwoStreamDataset(wds_url, rank=0, world_size=1, shuffle_buffer=1,
                                           sequential=sequential, **opts)
        got = {s["video_id"]: s for s in stream}
        assert sorted(got) == ref.video_ids
        for i, vid in enumerate(b.video_ids):
            assert np.array_equal(got[vid]["flow"], b[i]["flow"])
