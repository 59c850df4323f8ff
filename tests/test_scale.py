"""Scale-out: concurrent --shard jobs into one store, Slurm arrays, a dask cluster, several GPUs.

Every run here is compared with one plain local run of the same inputs: same
videos, same bytes of every stored frame (Video API, and every file of a JPEG
store), same metadata and annotation lists.
"""
import contextlib
import hashlib
import json
import multiprocessing
import os
import re
import signal
import subprocess
import sys
import threading
import time

import pytest

import flowprep
from flowprep.errors import BackendUnavailable, ConfigError, LockedError
from flowprep.flow import FlowChoice, resolve
from flowprep.inputs import discover, parse_shard, select_shard, shard_of
from synth import translated_video

FAST = ["--algo", "farneback", "--short-side", "64"]
SLOW = "v_slow"  # FLOWPREP_TEST_HOOK=sleep:v_slow makes this video's task sleep 2 s (dask workers)
TIMING = {"seconds", "elapsed", "created", "created_at", "timing"}


def _hdf5_reason():
    try:
        import flowprep.store.hdf5  # noqa: F401
    except ImportError as exc:
        return f"the HDF5 store is not importable yet ({exc})"
    return None


FORMATS = ["jpeg", pytest.param("hdf5", marks=pytest.mark.skipif(
    _hdf5_reason() is not None, reason=str(_hdf5_reason()))), "wds"]


def flowprep_cmd(*args):
    return [sys.executable, "-c", "from flowprep.cli.main import main; main()",
            *[str(a) for a in args]]


def run_flowprep(*args, env=None, timeout=120):
    return subprocess.run(flowprep_cmd(*args), capture_output=True, text=True, env=env,
                          timeout=timeout)


def counts(stdout):
    """(published, already published, failed) from extract's summary line."""
    m = re.search(r"(\d+) published, (\d+) already published, (\d+) failed", stdout)
    assert m, stdout
    return tuple(int(g) for g in m.groups())


def _sha(data):
    if not isinstance(data, (bytes, bytearray, memoryview)):
        data = data.tobytes()
    return hashlib.sha1(bytes(data)).hexdigest()


def digest(out):
    """Everything a reader sees, timing fields aside; for JPEG also every file's bytes."""
    store = flowprep.open_store(str(out))
    videos = {}
    for vid in store.video_ids:
        v = store[vid]
        meta = {k: val for k, val in v.meta.items() if k not in TIMING}
        frames = [_sha(v.rgb_bytes(i)) for i in range(v.num_frames)]
        flows = [[_sha(p) for p in v.flow_payload(i)] for i in range(v.num_flows)]
        videos[vid] = {"meta": meta, "frames": frames, "flows": flows}
    lists = {name: (out / name).read_text()
             for name in ("rgb_list.txt", "flow_list.txt", "classes.txt")}
    info = json.loads((out / "flowprep.json").read_text())
    files = None
    if store.format == "jpeg":
        files = {}
        for dirpath, dirnames, filenames in os.walk(out):
            dirnames[:] = [d for d in dirnames if d != ".flowprep"]
            for f in filenames:
                p = os.path.join(dirpath, f)
                files[os.path.relpath(p, out)] = _sha(open(p, "rb").read())
    return {"videos": videos, "lists": lists, "config": info["config"],
            "classes": info["classes"], "files": files, "failures": store.failures}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """10 tiny lossless videos in 4 classes; Zoom/v_slow sorts last (submitted last)."""
    root = tmp_path_factory.mktemp("scale_in")
    names = ["A/a0", "A/a1", "A/a2", "B/b0", "B/b1", "B/b2", "C/c0", "C/c1", "Zoom/z0",
             f"Zoom/{SLOW}"]
    for k, name in enumerate(names):
        path = root / (name + ".mkv")
        path.parent.mkdir(exist_ok=True)
        translated_video(str(path), n=6, h=48, w=64, dx=1.0 + 0.25 * k, dy=-0.5, seed=k)
    return root


@pytest.fixture(scope="module")
def reference(tmp_path_factory, dataset):
    """One plain local run per format (made on first use)."""
    made = {}

    def get(fmt):
        if fmt not in made:
            out = tmp_path_factory.mktemp(f"ref_{fmt}") / "out"
            r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--jobs", "2", *FAST)
            assert r.returncode == 0, r.stderr
            assert counts(r.stdout) == (10, 0, 0)
            made[fmt] = digest(out)
        return made[fmt]
    return get


# --------------------------------------------------------------------------- shards

def test_shards_partition_the_inputs_stably(dataset):
    videos = discover([str(dataset)])
    parts = [select_shard(videos, i, 3) for i in range(3)]
    ids = [v.video_id for part in parts for v in part]
    assert sorted(ids) == sorted(v.video_id for v in videos)  # every video in exactly one part
    assert len(ids) == len(set(ids))
    # by a hash of the id, not by list position: other inputs do not move a video
    fewer = [v for v in videos if v.video_id != "A/a0"]
    for i in range(3):
        assert [v.video_id for v in select_shard(fewer, i, 3)] == \
            [v.video_id for v in parts[i] if v.video_id != "A/a0"]
    assert shard_of("A/a0", 3) == int(hashlib.sha1(b"A/a0").hexdigest()[:12], 16) % 3


def test_slurm_array_variables_pick_the_same_shard_as_the_flag():
    for i in range(4):
        env = {"SLURM_ARRAY_TASK_ID": str(i), "SLURM_ARRAY_TASK_COUNT": "4",
               "SLURM_ARRAY_TASK_MIN": "0"}
        assert parse_shard(None, env) == parse_shard(f"{i}/4") == (i, 4)
        # --array=1-4 and --array=10-40:10 number their tasks alike
        one = dict(env, SLURM_ARRAY_TASK_ID=str(i + 1), SLURM_ARRAY_TASK_MIN="1")
        assert parse_shard(None, one) == (i, 4)
        stepped = dict(env, SLURM_ARRAY_TASK_ID=str(10 + 10 * i), SLURM_ARRAY_TASK_MIN="10",
                       SLURM_ARRAY_TASK_STEP="10")
        assert parse_shard(None, stepped) == (i, 4)
    assert parse_shard(None, {}) == (0, 1)
    # an explicit --shard wins over the environment
    assert parse_shard("1/2", {"SLURM_ARRAY_TASK_ID": "0", "SLURM_ARRAY_TASK_COUNT": "4"}) == (1, 2)
    with pytest.raises(ConfigError, match="--array=0-3"):
        parse_shard(None, {"SLURM_ARRAY_TASK_ID": "7", "SLURM_ARRAY_TASK_COUNT": "4",
                           "SLURM_ARRAY_TASK_MIN": "0"})
    with pytest.raises(ConfigError, match="not integers"):
        parse_shard(None, {"SLURM_ARRAY_TASK_ID": "x", "SLURM_ARRAY_TASK_COUNT": "4"})


def test_a_slurm_array_task_extracts_its_shard(tmp_path, dataset):
    out = tmp_path / "out"
    env = dict(os.environ, SLURM_ARRAY_TASK_ID="2", SLURM_ARRAY_TASK_COUNT="3",
               SLURM_ARRAY_TASK_MIN="1")  # --array=1-3, second task: shard 1/3
    r = run_flowprep("extract", dataset, "-o", out, "--jobs", "1", *FAST, env=env)
    assert r.returncode == 0, r.stderr
    want = sorted(v.video_id for v in select_shard(discover([str(dataset)]), 1, 3))
    assert flowprep.open_store(out).video_ids == want
    assert counts(r.stdout) == (len(want), 0, 0)
    assert f"({10 - len(want)} inputs belong to other shards)" in r.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_three_concurrent_shard_jobs_equal_one_run(tmp_path, dataset, reference, fmt):
    out = tmp_path / "out"
    procs = [subprocess.Popen(flowprep_cmd("extract", dataset, "-o", out, "--format", fmt,
                                           "--shard", f"{i}/3", "--jobs", "1", *FAST),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(3)]
    outs = [p.communicate(timeout=120) for p in procs]
    for p, (so, se) in zip(procs, outs):
        assert p.returncode == 0, se
    published = [counts(so)[0] for so, _ in outs]
    videos = discover([str(dataset)])
    assert published == [len(select_shard(videos, i, 3)) for i in range(3)]
    # the lists written by whichever part finished last hold every video
    assert digest(out) == reference(fmt)
    # reruns (a part, then the whole job) publish nothing
    r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--shard", "1/3",
                     "--jobs", "1", *FAST)
    assert r.returncode == 0 and counts(r.stdout) == (0, published[1], 0), r.stderr
    r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--jobs", "1", *FAST)
    assert r.returncode == 0 and counts(r.stdout) == (0, 10, 0), r.stderr
    assert digest(out) == reference(fmt)


def test_the_example_sbatch_script_as_a_three_task_array(tmp_path, dataset, reference):
    """examples/slurm_extract.sbatch, run as tasks 0..2 of `--array=0-2` at the same time."""
    script = os.path.join(os.path.dirname(__file__), "..", "examples", "slurm_extract.sbatch")
    out = tmp_path / "out"
    env = dict(os.environ, INPUT=str(dataset), OUT=str(out), ALGO="farneback",
               EXTRA="--short-side 64", SLURM_ARRAY_TASK_COUNT="3", SLURM_ARRAY_TASK_MIN="0",
               SLURM_CPUS_PER_TASK="1",
               PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    procs = [subprocess.Popen(["bash", script], env=dict(env, SLURM_ARRAY_TASK_ID=str(t)),
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for t in range(3)]
    logs = [p.communicate(timeout=120)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0, 0], logs
    assert sum(counts(log)[0] for log in logs) == 10
    assert digest(out) == reference("jpeg")
    # resubmitting task 1 alone (`sbatch --array=1` reports COUNT=1, MIN=1) with PARTS=3
    r = subprocess.run(["bash", script], env=dict(env, SLURM_ARRAY_TASK_ID="1",
                       SLURM_ARRAY_TASK_COUNT="1", SLURM_ARRAY_TASK_MIN="1", PARTS="3"),
                       capture_output=True, text=True, timeout=120)
    part = select_shard(discover([str(dataset)]), 1, 3)
    assert r.returncode == 0 and counts(r.stdout) == (0, len(part), 0), r.stdout + r.stderr


def test_a_part_of_another_split_or_config_is_refused_while_parts_run(tmp_path):
    from flowprep.run.extract import _write_store_info
    from flowprep.lock import RunLock
    root = str(tmp_path)
    with RunLock(root, 0, 3) as lock:
        _write_store_info(root, "jpeg", {"a": 1}, "key1", ["A"], lock)
        with RunLock(root, 1, 3) as other:  # a part of the same split runs beside it
            _write_store_info(root, "jpeg", {"a": 1}, "key1", ["A"], other)
            with pytest.raises(LockedError, match="another configuration"):
                _write_store_info(root, "jpeg", {"a": 2}, "key2", ["A"], other)
            with pytest.raises(LockedError, match="classes"):
                _write_store_info(root, "jpeg", {"a": 1}, "key1", ["A", "B"], other)
        with pytest.raises(LockedError, match="split into 3 parts"):
            RunLock(root, 0, 4)  # its parts would overlap those of the I/3 split
        with pytest.raises(LockedError, match="shard 0/3"):
            RunLock(root, 0, 3)
        with pytest.raises(LockedError):
            RunLock(root)  # a whole run waits for the parts
    assert json.load(open(tmp_path / "flowprep.json"))["config_key"] == "key1"
    with RunLock(root, 0, 4) as lock:  # alone now: a new split, a new configuration
        _write_store_info(root, "jpeg", {"a": 2}, "key2", ["A"], lock)
    assert json.load(open(tmp_path / "flowprep.json"))["config_key"] == "key2"


def test_a_run_refused_by_the_lock_leaves_the_store_file_alone(tmp_path, dataset):
    from flowprep.lock import RunLock
    out = tmp_path / "out"
    r = run_flowprep("extract", dataset / "A", "-o", out, "--jobs", "1", *FAST)
    assert r.returncode == 0, r.stderr
    before = (out / "flowprep.json").read_bytes()
    with RunLock(str(out), 0, 2):
        for shard in ("0/2", None):  # the same part, and a whole run
            with pytest.raises(LockedError):
                flowprep.extract([str(dataset / "A")], str(out), algo="dis", short_side=32,
                                 shard=shard, jobs=1)
    assert (out / "flowprep.json").read_bytes() == before


def test_lists_written_last_hold_every_published_video(tmp_path, dataset, monkeypatch):
    """Part A scans, part B publishes and rewrites the lists, then A writes: B's video stays."""
    import shutil
    from flowprep.store import lists
    out = tmp_path / "out"
    r = run_flowprep("extract", dataset / "A", "-o", out, "--jobs", "1", *FAST)
    assert r.returncode == 0, r.stderr
    real_write = lists.atomic_write_bytes
    scanned = threading.Event()

    def slow_write(path, data, *a, **k):
        if threading.current_thread().name == "part-A" and path.endswith("rgb_list.txt"):
            scanned.set()  # A has scanned the store ...
            time.sleep(0.5)  # ... and writes a while later
        return real_write(path, data, *a, **k)

    monkeypatch.setattr(lists, "atomic_write_bytes", slow_write)
    a = threading.Thread(target=lists.write_lists, args=(str(out),), name="part-A")
    a.start()
    assert scanned.wait(10)
    shutil.copytree(out / "a0", out / "a9")  # part B publishes a video ...
    meta = json.loads((out / "a9" / "meta.json").read_text())
    (out / "a9" / "meta.json").write_text(json.dumps(dict(meta, video_id="a9")))
    assert lists.write_lists(str(out)) == 4  # ... and rewrites the lists once A is done
    a.join()
    assert [ln.split()[0] for ln in (out / "rgb_list.txt").read_text().splitlines()] == \
        ["a0", "a1", "a2", "a9"]


def test_a_lists_rewrite_is_skipped_when_a_later_scan_covered_it(tmp_path, dataset, monkeypatch):
    from flowprep.store import lists
    out = tmp_path / "out"
    r = run_flowprep("extract", dataset / "B", "-o", out, "--jobs", "1", *FAST)
    assert r.returncode == 0, r.stderr
    calls = []
    real = lists._write_lists
    monkeypatch.setattr(lists, "_write_lists", lambda root: calls.append(root) or real(root))
    gen = lists._read_gen(str(out))
    real_read = lists._read_gen
    reads = iter([gen, gen + 2])  # two scans finished while this call waited for the lock
    monkeypatch.setattr(lists, "_read_gen", lambda root: next(reads, None) or real_read(root))
    assert lists.write_lists(str(out)) == 3
    assert calls == []
    monkeypatch.setattr(lists, "_read_gen", real_read)
    assert lists.write_lists(str(out)) == 3 and len(calls) == 1
    assert lists._read_gen(str(out)) == gen + 1


# --------------------------------------------------------------------------- GPUs

def test_workers_are_spread_round_robin_over_the_gpus():
    four = resolve("farneback", "cuda", "opencv", opencv_gpus=4)
    assert (four.implementation, four.gpus) == ("opencv-cuda", (0, 1, 2, 3))
    assert [four.device_for_worker(i) for i in range(6)] == \
        ["cuda:0", "cuda:1", "cuda:2", "cuda:3", "cuda:0", "cuda:1"]
    chosen = resolve("tvl1", "cuda:1,3", "opencv", opencv_gpus=4)
    assert [chosen.device_for_worker(i) for i in range(3)] == ["cuda:1", "cuda:3", "cuda:1"]
    th = resolve("tvl1", "cuda", "torch", torch_gpus=2)
    assert (th.implementation, [th.device_for_worker(i) for i in range(3)]) == \
        ("torch", ["cuda:0", "cuda:1", "cuda:0"])
    assert resolve("tvl1", "cuda:2", "torch", torch_gpus=4).device_for_worker(5) == "cuda:2"
    assert resolve("farneback", "cpu").device_for_worker(3) == "cpu"
    with pytest.raises(BackendUnavailable, match="cuda:4"):
        resolve("tvl1", "cuda:0,4", "opencv", opencv_gpus=4)


def _job(root, choice):
    from flowprep.run.extract import ExtractOptions, Job, build_config
    from flowprep.flow import merge_params
    from flowprep.store.base import config_key
    opts = ExtractOptions(algo="farneback", short_side=64)
    params = merge_params("farneback")
    config = build_config(opts, choice, params)
    tmp_root = os.path.join(root, ".flowprep", "tmp", "test-run")
    os.makedirs(tmp_root, exist_ok=True)
    return Job(opts, choice, params, config, config_key(config), str(root), tmp_root, 1)


def _cpu_standing_in_for_gpus(monkeypatch, seen):
    import flowprep.flow as flow_mod
    real = flow_mod.make_backend

    def fake(choice, params, device="cpu", batch_size=None, threads=None):
        seen.append(device)
        return real(FlowChoice(choice.algo, "opencv-cpu", "cpu"), params, "cpu", batch_size, threads)
    monkeypatch.setattr(flow_mod, "make_backend", fake)


def test_each_local_worker_computes_on_its_own_gpu(tmp_path, dataset, monkeypatch):
    """parallel's worker i builds its backend on choice.device_for_worker(i) (run in-process)."""
    from flowprep.run import local as parallel
    seen = []
    _cpu_standing_in_for_gpus(monkeypatch, seen)
    job = _job(tmp_path / "out", resolve("farneback", "cuda", "opencv", opencv_gpus=2))
    vin = discover([str(dataset / "A" / "a0.mkv")])[0]
    old = signal.getsignal(signal.SIGINT)
    for index in range(3):
        parent, child = multiprocessing.Pipe()
        parent.send(("task", vin))
        parent.send(("stop",))
        try:
            parallel._worker_main(child, index, job)
        finally:
            signal.signal(signal.SIGINT, old)
        msgs = []
        while parent.poll():
            msgs.append(parent.recv())
        done = [m[1] for m in msgs if m[0] == "done"]
        assert done and done[0]["status"] == "published", msgs
    assert seen == ["cuda:0", "cuda:1", "cuda:0"]


def test_dask_worker_threads_take_host_slots_and_their_gpus(tmp_path, dataset, monkeypatch):
    from flowprep.run import dask as fd
    monkeypatch.setattr(fd, "slot_dir", lambda: str(tmp_path / "slots"))
    seen = []
    _cpu_standing_in_for_gpus(monkeypatch, seen)
    job = _job(tmp_path / "out", resolve("farneback", "cuda", "opencv", opencv_gpus=2))
    job_path = os.path.join(job.tmp_root, fd.JOB_FILE)
    with pytest.raises(BackendUnavailable, match="does not see the store"):
        fd._load_job(job_path)  # the client's job file is missing: no shared filesystem
    import pickle
    with open(job_path, "wb") as fh:
        pickle.dump(job, fh)
    assert fd._load_job(job_path).key == job.key
    states = [fd._WorkerState(job, "test-run") for _ in range(3)]
    assert [s.slot for s in states] == [0, 1, 2]
    assert [s.device for s in states] == seen == ["cuda:0", "cuda:1", "cuda:0"]
    assert len({s.tag for s in states}) == 3
    states[1].close()  # a worker that goes away frees its slot for its replacement
    again = fd._WorkerState(job, "test-run")
    assert (again.slot, again.device) == (1, "cuda:1")
    for s in states[::2] + [again]:
        s.close()


# --------------------------------------------------------------------------- dask

def test_scheduler_without_dask_names_the_extra(tmp_path, dataset, monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import distributed -> ImportError
    with pytest.raises(BackendUnavailable, match=r"pip install 'flowprep\[dask\]'"):
        flowprep.extract([str(dataset)], str(tmp_path / "out"), scheduler="tcp://127.0.0.1:1",
                         algo="farneback")
    assert not (tmp_path / "out").exists()


def test_an_unreachable_scheduler_is_a_config_error(monkeypatch):
    pytest.importorskip("distributed")
    from flowprep.run import dask as fd
    monkeypatch.setattr(fd, "CONNECT_TIMEOUT_S", 1)
    with pytest.raises(ConfigError, match="no dask scheduler answered"):
        fd.connect("tcp://127.0.0.1:9")


@contextlib.contextmanager
def dask_cluster(d, workers=2, **env_vars):
    """A `dask scheduler` and `dask worker` processes (with nannies) on 127.0.0.1; a Client."""
    distributed = pytest.importorskip("distributed")
    sf = str(d / "scheduler.json")
    env = dict(os.environ, **env_vars)  # reaches the worker processes (and the scheduler)
    log = open(d / "cluster.log", "w")
    common = dict(cwd=str(d), stdout=log, stderr=subprocess.STDOUT, env=env)
    procs = [subprocess.Popen([sys.executable, "-m", "dask", "scheduler", "--host", "127.0.0.1",
                               "--port", "0", "--no-dashboard", "--scheduler-file", sf], **common)]
    try:
        deadline = time.time() + 60
        while not os.path.exists(sf) and time.time() < deadline:
            time.sleep(0.1)
        assert os.path.exists(sf), "the dask scheduler did not start"
        for i in range(workers):
            procs.append(subprocess.Popen(
                [sys.executable, "-m", "dask", "worker", "--scheduler-file", sf, "--nthreads", "1",
                 "--no-dashboard", "--host", "127.0.0.1", "--name", f"w{i}",
                 "--memory-limit", "0"], **common))
        client = distributed.Client(scheduler_file=sf, timeout=30)
        client.wait_for_workers(workers, timeout=60)
        try:
            yield client
        finally:
            client.close()
    finally:
        for p in reversed(procs):
            p.send_signal(signal.SIGTERM)
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """Two workers; the task of the video v_slow sleeps 2 s on them."""
    with dask_cluster(tmp_path_factory.mktemp("dask"), FLOWPREP_TEST_HOOK=f"sleep:{SLOW}") as c:
        yield c


@pytest.mark.parametrize("fmt", FORMATS)
def test_dask_cluster_run_equals_a_local_run(tmp_path, dataset, reference, cluster, fmt):
    cluster.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    addr = cluster.scheduler.address
    r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--scheduler", addr,
                     "--progress", *FAST)
    assert r.returncode == 0, r.stderr
    assert counts(r.stdout) == (10, 0, 0)
    assert "10/10 videos, 0 failed" in r.stderr  # the progress line, as in a local run
    assert digest(out) == reference(fmt)
    if fmt in ("hdf5", "wds"):  # every shard was written by a dask worker process and sealed
        shards = os.listdir(out / "shards")
        assert shards and all("-dask-" in s for s in shards)
    r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--scheduler", addr, *FAST)
    assert r.returncode == 0 and counts(r.stdout) == (0, 10, 0), r.stderr
    assert not os.listdir(out / ".flowprep" / "tmp")


@pytest.mark.parametrize("fmt", FORMATS)
def test_killing_a_dask_worker_mid_run_still_gives_the_full_store(tmp_path, dataset, reference,
                                                                  cluster, fmt):
    cluster.wait_for_workers(2, timeout=60)
    out = tmp_path / "out"
    addr = cluster.scheduler.address
    p = subprocess.Popen(flowprep_cmd("extract", dataset, "-o", out, "--format", fmt,
                                      "--scheduler", addr, *FAST),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 60
    while killed is None and p.poll() is None and time.time() < deadline:
        for worker, keys in cluster.processing().items():
            if any(SLOW in str(k) for k in keys):  # the slow video's task sleeps 2 s there
                killed = cluster.run(os.getpid, workers=[worker])[worker]
                os.kill(killed, signal.SIGKILL)
                break
        time.sleep(0.02)
    so, se = p.communicate(timeout=180)
    assert killed is not None, "never saw the slow task running"
    assert p.returncode == 0, se
    assert counts(so) == (10, 0, 0), so + se
    assert digest(out) == reference(fmt)
    if fmt in ("hdf5", "wds"):  # what the killed process had committed was never sealed: it was redone
        assert not [s for s in os.listdir(out / "shards") if f"-{killed}-" in s]
    cluster.wait_for_workers(2, timeout=60)  # the nanny restarted the killed worker
    r = run_flowprep("extract", dataset, "-o", out, "--format", fmt, "--scheduler", addr, *FAST)
    assert r.returncode == 0 and counts(r.stdout) == (0, 10, 0), r.stderr
    assert digest(out) == reference(fmt)


def test_a_bad_input_on_a_dask_worker_fails_with_its_reason(tmp_path, dataset, cluster):
    cluster.wait_for_workers(2, timeout=60)
    inp = tmp_path / "in"
    inp.mkdir()
    (inp / "broken.mp4").write_bytes(b"not a video at all")
    import shutil
    shutil.copy(dataset / "A" / "a0.mkv", inp / "good.mkv")
    out = tmp_path / "out"
    r = run_flowprep("extract", inp, "-o", out, "--scheduler", cluster.scheduler.address, *FAST)
    assert r.returncode == 1, r.stderr
    assert counts(r.stdout) == (1, 0, 1)
    assert "FAILED" in r.stderr and "broken.mp4" in r.stderr
    store = flowprep.open_store(out)
    assert store.video_ids == ["good"]
    assert list(store.failures) == [str(inp / "broken.mp4")]


def test_a_video_that_keeps_killing_dask_workers_fails_with_the_reason(tmp_path, dataset):
    """Every worker that runs `crash` dies (SIGSEGV); dask gives up after allowed-failures.

    (The crashing video runs alone: dask also blames tasks that were in flight on a
    dying worker, so a neighbour could fail with it; see docs/cluster.md.)
    """
    import shutil
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a0", "a1"):
        shutil.copy(dataset / "A" / f"{name}.mkv", inp / f"{name}.mkv")
    out = tmp_path / "out"
    with dask_cluster(tmp_path, workers=1, FLOWPREP_TEST_HOOK="segfault:crash",
                      DASK_DISTRIBUTED__SCHEDULER__ALLOWED_FAILURES="1") as client:
        addr = client.scheduler.address
        r = run_flowprep("extract", inp, "-o", out, "--scheduler", addr, *FAST)
        assert r.returncode == 0 and counts(r.stdout) == (2, 0, 0), r.stdout + r.stderr
        shutil.copy(dataset / "B" / "b0.mkv", inp / "crash.mkv")
        r = run_flowprep("extract", inp, "-o", out, "--scheduler", addr, *FAST)
    assert r.returncode == 1, r.stdout + r.stderr
    assert counts(r.stdout) == (0, 2, 1), r.stdout + r.stderr
    store = flowprep.open_store(out)
    assert store.video_ids == ["a0", "a1"]
    (reason,) = store.failures.values()
    assert "every dask worker that processed it died" in reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_a_hung_video_on_a_dask_worker_times_out_and_the_run_completes(tmp_path, dataset, fmt):
    """`hung` sleeps forever in its task: the worker's watchdog kills the worker process
    after --timeout, the nanny starts a new one, the retried task reports the timeout,
    and the other videos are published (the store verifies clean)."""
    import shutil
    from flowprep.verify import verify_store
    inp = tmp_path / "in"
    inp.mkdir()
    for name in ("a0", "a1"):
        shutil.copy(dataset / "A" / f"{name}.mkv", inp / f"{name}.mkv")
    shutil.copy(dataset / "B" / "b0.mkv", inp / "hung.mkv")
    out = tmp_path / "out"
    with dask_cluster(tmp_path, workers=1, FLOWPREP_TEST_HOOK="hang:hung") as client:
        t0 = time.monotonic()
        r = run_flowprep("extract", inp, "-o", out, "--scheduler", client.scheduler.address,
                         "--format", fmt, "--timeout", "3", "--timeout-per-frame", "0", *FAST)
        took = time.monotonic() - t0
        client.wait_for_workers(1, timeout=60)  # the nanny replaced the killed process
    assert r.returncode == 1, r.stdout + r.stderr
    assert counts(r.stdout) == (2, 0, 1), r.stdout + r.stderr
    assert took < 120
    store = flowprep.open_store(out)
    assert store.video_ids == ["a0", "a1"]
    (reason,) = store.failures.values()
    assert re.search(r"hung\.mkv: timed out after [3-9] s with 0 frames decoded "
                     r"\(limit 3 s \+ 0 s per frame\); the worker was killed", reason), reason
    assert [str(p) for p in verify_store(str(out))] == []
