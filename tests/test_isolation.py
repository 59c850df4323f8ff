"""Issue 5, part 2: a crash or a hang in one video cannot take the run down.

Decoding and flow run in supervised worker processes (flowprep/run/local.py).
FLOWPREP_TEST_HOOK=segfault:<id> kills the worker with SIGSEGV when it starts
video <id>; hang:<id> makes it sleep forever; segfault_at_close:<id> kills it
when it is told to finish, after it processed <id> (an HDF5 shard still open).
"""
import os
import signal
import subprocess
import sys
import time

import pytest

import flowprep
from synth import translated_video
from test_bad_inputs import FLOWPREP, format_param

FORMATS = [format_param("jpeg"), format_param("hdf5"), format_param("wds")]


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("iso") / "in"
    root.mkdir()
    for k in range(5):
        translated_video(str(root / f"v{k}.mkv"), n=4, h=48, w=64, seed=k)
    return str(root)


def run(inputs, out, fmt, hook, *extra, jobs=2, timeout=120):
    cmd = [FLOWPREP, "extract", inputs, "-o", str(out), "--algo", "farneback", "--short-side", "0",
           "--jobs", str(jobs), "--format", fmt, "--no-progress", *map(str, extra)]
    env = {**os.environ, "FLOWPREP_TEST_HOOK": hook} if hook else dict(os.environ)
    t0 = time.monotonic()
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    p.seconds = time.monotonic() - t0
    return p


def check_only_failed(out, failed_ids, reason):
    store = flowprep.open_store(out)
    all_ids = {f"v{k}" for k in range(5)}
    assert set(store.video_ids) == all_ids - set(failed_ids)
    fails = {os.path.splitext(os.path.basename(k))[0]: v for k, v in store.failures.items()}
    assert set(fails) == set(failed_ids)
    for vid in failed_ids:
        assert reason in fails[vid], fails[vid]
    from flowprep.verify import verify_store
    assert verify_store(out) == []
    return fails


@pytest.mark.parametrize("fmt", FORMATS)
@pytest.mark.parametrize("jobs", [1, 2])
def test_segfault_fails_only_that_video(inputs, tmp_path, fmt, jobs):
    # jobs=1: with HDF5, v0 sits committed in the crashing worker's open shard and must be redone
    p = run(inputs, tmp_path / "o", fmt, "segfault:v1", jobs=jobs)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    assert "4 published, 0 already published, 1 failed" in p.stdout
    fails = check_only_failed(tmp_path / "o", ["v1"], "crashed (SIGSEGV)")
    assert "the rest of the run continued" in fails["v1"]


@pytest.mark.parametrize("fmt", FORMATS)
def test_hang_times_out_and_the_rest_continue(inputs, tmp_path, fmt):
    p = run(inputs, tmp_path / "o", fmt, "hang:v3", "--timeout", 2, "--timeout-per-frame", 0)
    assert p.returncode == 1, p.stderr
    assert "Traceback" not in p.stdout + p.stderr
    fails = check_only_failed(tmp_path / "o", ["v3"], "timed out after")
    assert "the worker was killed" in fails["v3"]
    assert p.seconds < 60


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_video_crashing_still_ends_with_every_input_failed(inputs, tmp_path, fmt):
    p = run(inputs, tmp_path / "o", fmt, "segfault:v", jobs=2)
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "0 published, 0 already published, 5 failed" in p.stdout
    assert len(flowprep.open_store(tmp_path / "o").failures) == 5


@pytest.mark.parametrize("fmt", FORMATS)
def test_crash_while_closing_loses_no_committed_video(inputs, tmp_path, fmt):
    # the worker dies when told to finish: with HDF5 its open shard (holding the videos it
    # committed) is lost, so they are queued again and redone by a fresh worker
    p = run(inputs, tmp_path / "o", fmt, "segfault_at_close:v", jobs=2)
    assert "Traceback" not in p.stderr
    store = flowprep.open_store(tmp_path / "o")
    assert set(store.video_ids) | {os.path.splitext(os.path.basename(k))[0]
                                   for k in store.failures} == {f"v{k}" for k in range(5)}
    if fmt == "jpeg":  # published at commit: nothing lost, nothing redone
        assert p.returncode == 0 and len(store.video_ids) == 5
    else:  # lost twice (the redo crashes at close too): failed with the reason, not dropped
        assert p.returncode == 1
        for reason in store.failures.values():
            assert "twice" in reason


def test_rerun_after_failures_redoes_only_the_failed_video(inputs, tmp_path):
    out = tmp_path / "o"
    run(inputs, out, "jpeg", "segfault:v2")
    p = run(inputs, out, "jpeg", None)
    assert p.returncode == 0, p.stderr
    assert "1 published, 4 already published, 0 failed" in p.stdout
    assert flowprep.open_store(out).failures == {}


def _children(pid):
    out = []
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(d))
    return out


def _alive(pid):
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _descendants(pid):
    """The pids of every process below ``pid``."""
    out, todo = [], [pid]
    while todo:
        kids = _children(todo.pop())
        out += kids
        todo += kids
    return out


@pytest.mark.parametrize("method", ["forkserver", "spawn"])
def test_workers_die_with_a_killed_parent(inputs, tmp_path, method):
    # kill -9 of the parent alone (the OOM killer's choice, say) must not leave workers
    # running on: they would keep writing into a store another run may now own. Forked
    # workers are the fork server's children (flowprep/run/starter.py): they die with it,
    # and it with the run's process.
    cmd = [FLOWPREP, "extract", inputs, "-o", str(tmp_path / "o"), "--algo", "farneback",
           "--short-side", "0", "--jobs", "2", "--no-progress"]
    p = subprocess.Popen(cmd, env={**os.environ, "FLOWPREP_TEST_HOOK": "hang:v",
                                   "FLOWPREP_START_METHOD": method},
                         stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 60
        kids, workers = [], []
        while time.monotonic() < deadline and len(workers) < 2:
            time.sleep(0.2)
            kids = _descendants(p.pid)
            # spawned: "spawn_main" in the command line; forked: the fork server's children
            workers = [k for k in kids if _alive(k) and (
                "spawn_main" in open(f"/proc/{k}/cmdline").read()
                or any(k in _children(s) for s in _children(p.pid)))]
        assert len(workers) >= 2, f"no worker processes started ({kids})"
        time.sleep(1.0)  # workers are in the hang hook now
        os.kill(p.pid, signal.SIGKILL)
        p.wait(10)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(k) for k in kids):
            time.sleep(0.1)
        assert not any(_alive(k) for k in kids), "workers outlived their parent"
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def test_a_killed_fork_server_fails_the_videos_of_its_workers_and_the_run_goes_on(inputs, tmp_path):
    """Forked workers die with their fork server (flowprep/run/starter.py): the videos they
    were on fail as crashed, the others are published by workers of a fresh server."""
    cmd = [FLOWPREP, "extract", inputs, "-o", str(tmp_path / "o"), "--algo", "farneback",
           "--short-side", "0", "--jobs", "2", "--no-progress"]
    p = subprocess.Popen(cmd, env={**os.environ, "FLOWPREP_TEST_HOOK": "sleep:v",
                                   "FLOWPREP_START_METHOD": "forkserver"},
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         start_new_session=True)
    try:
        server, deadline = None, time.monotonic() + 60
        while server is None and time.monotonic() < deadline:
            time.sleep(0.1)
            for k in _children(p.pid):  # the server: the workers' parent
                if len([w for w in _children(k) if _alive(w)]) >= 2:
                    server = k
        assert server, "no fork server with two workers"
        time.sleep(0.5)  # both workers sleep in the hook (2 s), three videos wait
        os.kill(server, signal.SIGKILL)
        out, err = p.communicate(timeout=120)
    finally:
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    assert p.returncode == 1 and "Traceback" not in out + err, err
    store = flowprep.open_store(tmp_path / "o")
    fails = {os.path.splitext(os.path.basename(k))[0]: v for k, v in store.failures.items()}
    # the exit status the fork server can no longer report: 255 (multiprocessing's word)
    assert 1 <= len(fails) <= 2 and all("crashed (exit code 255)" in r for r in fails.values()), fails
    # the other three: by workers of a fresh server (none sent to the dead one's pid)
    assert set(store.video_ids) | set(fails) == {f"v{k}" for k in range(5)}
    from flowprep.verify import verify_store
    assert verify_store(tmp_path / "o") == []


def test_what_is_reported_published_is_in_the_store_when_workers_die_closing(tmp_path):
    """Regression: the run ended as soon as no worker was alive, before a worker that had
    just died at close was accounted for, so its unsealed HDF5 videos were reported
    published and were in no shard. Timing-dependent: several runs, 12 videos, 2 workers."""
    import re
    root = tmp_path / "in"
    for k in range(12):
        d = root / f"class{k % 2}"
        d.mkdir(parents=True, exist_ok=True)
        translated_video(str(d / f"v{k:02d}.mkv"), n=20 + 2 * k, h=96, w=128, seed=k)
    for attempt in range(4):
        out = tmp_path / f"o{attempt}"
        p = run(str(root), out, "hdf5", "segfault_at_close:v", jobs=2)
        m = re.search(r"(\d+) published, 0 already published, (\d+) failed", p.stdout)
        assert m, p.stdout + p.stderr
        store = flowprep.open_store(out)
        assert int(m.group(1)) == len(store.video_ids), (attempt, p.stdout)
        assert len(store.video_ids) + len(store.failures) == 12
