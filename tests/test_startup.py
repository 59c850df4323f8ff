"""Start-up (issue 17): --device auto decides without importing torch where no GPU driver
is installed; TV-L1's parameters live in one module, checked once per run, and the native
backend does not import the torch backend. Issue 21: local workers are forked from a fork
server that imported their modules once (flowprep/run/starter.py), one per run."""
import importlib.util
import os
import pickle
import subprocess
import sys
import time

import pytest

from flowprep.errors import ConfigError
from flowprep.flow import gpu_driver_present, merge_params
from flowprep.flow.tvl1_params import TVL1_DEFAULTS, TVL1Params, tvl1_params
from synth import translated_frames, write_video


def _python(code, **env):
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       env=dict(os.environ, **env), timeout=300)
    assert p.returncode == 0, p.stderr
    return p.stdout.strip()


def test_gpu_driver_present_reads_the_driver_files(tmp_path, monkeypatch):
    node = tmp_path / "nvidiactl"
    node.write_text("")
    monkeypatch.delenv("FLOWPREP_ASSUME_GPU", raising=False)
    assert gpu_driver_present(paths=[str(node)]) is True
    monkeypatch.setenv("FLOWPREP_ASSUME_GPU", "1")
    assert gpu_driver_present(paths=[]) is True


@pytest.mark.skipif(gpu_driver_present(), reason="this machine has a GPU driver: torch decides")
def test_extract_with_device_auto_does_not_import_torch_without_a_gpu_driver(tmp_path):
    tiny = write_video(str(tmp_path / "tiny.mp4"), translated_frames(2, 32, 32, 1.0, 0.0),
                       codec="libx264", pix_fmt="yuv420p")
    code = ("import sys\nfrom flowprep.cli.main import main\n"
            f"sys.argv = ['flowprep', 'extract', {tiny!r}, '-o', {str(tmp_path / 'o')!r}]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('torch' in sys.modules)")
    out = _python(code, FLOWPREP_ASSUME_GPU="0").splitlines()
    assert out[0].startswith("1 published") and out[-1] == "False", out
    # what every run did before: torch imported to learn that there is no GPU
    pytest.importorskip("torch")
    code = "import sys\nfrom flowprep.flow import resolve\nresolve('tvl1')\nprint('torch' in sys.modules)"
    assert _python(code, FLOWPREP_ASSUME_GPU="1") == "True"
    assert _python(code, FLOWPREP_ASSUME_GPU="0") == "False"


def test_the_native_backend_does_not_import_the_torch_backend():
    code = ("import sys\nimport flowprep.flow.native_tvl1, flowprep.flow.opencv_cpu\n"
            "print('flowprep.flow.torch_tvl1' in sys.modules, 'torch' in sys.modules)")
    assert _python(code) == "False False"


def test_tvl1_params_are_checked_once_and_kept_checked():
    p = merge_params("tvl1", {"warps": "3"})  # the run's one check, in the parent
    assert isinstance(p, TVL1Params) and p == dict(TVL1_DEFAULTS, warps=3)
    assert tvl1_params(p) is p  # the backends take it as it is
    again = pickle.loads(pickle.dumps(p))  # what a worker process receives in the Job
    assert isinstance(again, TVL1Params) and tvl1_params(again) is again
    from flowprep.flow.native_tvl1 import NativeTVL1, native_available
    from flowprep.flow.opencv_cpu import OpenCVTVL1
    assert OpenCVTVL1(p).params == p
    if native_available():
        assert NativeTVL1(p).params is p
    # a plain dict given to a backend directly is checked there
    with pytest.raises(ConfigError, match="'tau' must be in"):
        OpenCVTVL1(dict(TVL1_DEFAULTS, tau=-1.0))
    with pytest.raises(ConfigError, match="unknown TV-L1 parameter 'wraps'"):
        tvl1_params({"wraps": 2})


# --- issue 21: workers forked from a fork server (flowprep/run/starter.py) -----------------

def _what_a_forked_worker_sees(conn):
    """Run in a process from the fork server: its parent's threads, what is imported."""
    import sys as _sys
    server = os.getppid()
    conn.send((server, len(os.listdir(f"/proc/{server}/task")),
               sorted(m for m in ("cv2", "numpy", "av", "flowprep.run.pipeline",
                                  "flowprep.store.jpeg", "torch") if m in _sys.modules),
               os.environ.get("OPENBLAS_NUM_THREADS")))
    conn.close()


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("blas", [None, "4"])
def test_the_fork_server_imports_once_starts_no_thread_and_is_stopped(monkeypatch, blas):
    from flowprep.run import starter
    if blas is None:
        monkeypatch.delenv("OPENBLAS_NUM_THREADS", raising=False)
    else:  # the run's own setting is for the run's process, not for the server
        monkeypatch.setenv("OPENBLAS_NUM_THREADS", blas)
    if starter.server_pid():
        pytest.skip("a fork server of this process is already running")
    starter.begin("forkserver", starter.preload_for("jpeg"))
    try:
        pid = starter.server_pid()
        assert pid and os.environ.get("OPENBLAS_NUM_THREADS") == blas  # set for the server only
        ctx = starter.context("forkserver")
        a, b = ctx.Pipe()
        p = ctx.Process(target=_what_a_forked_worker_sees, args=(b,))
        p.start()
        b.close()
        server, threads, imported, blas = a.recv()
        p.join(30)
        # the server imported the workers' modules before forking, from one thread
        assert server == pid and threads == 1
        assert imported == sorted(["cv2", "flowprep.run.pipeline", "flowprep.store.jpeg", "numpy"]
                                  + (["av"] if importlib.util.find_spec("av") else []))
        assert blas == "1"  # no torch, no BLAS thread pool in the server
    finally:
        starter.end()
    assert starter.server_pid() == 0 and not os.path.exists(f"/proc/{pid}/stat")
    starter.end()  # idempotent


def test_the_start_method_variable_is_checked(tmp_path):
    from flowprep.run.starter import start_method
    assert start_method("spawn") == "spawn" and start_method("") in ("forkserver", "spawn")
    with pytest.raises(ConfigError, match="FLOWPREP_START_METHOD must be"):
        start_method("fork")
    tiny = write_video(str(tmp_path / "tiny.mkv"), translated_frames(3, 32, 32, 1.0, 0.0))
    p = subprocess.run([sys.executable, "-m", "flowprep.cli.main", "extract", tiny, "-o",
                        str(tmp_path / "o"), "--no-progress"], capture_output=True, text=True,
                       env=dict(os.environ, FLOWPREP_START_METHOD="threads"), timeout=300)
    assert p.returncode == 2 and "FLOWPREP_START_METHOD" in p.stderr, p.stderr
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform")
def test_forked_and_spawned_workers_make_the_same_store_and_see_their_runs_environment(
        tmp_path, monkeypatch):
    """In one process, runs one after the other: each run's workers see the environment of
    that run (a fork server per run), and forked workers store what spawned ones do."""
    import flowprep
    from flowprep.run import starter
    before = starter.server_pid()  # another test's own fork-server pool may have left one
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        write_video(str(src / f"v{k}.mkv"), translated_frames(5, 48, 64, 1.0 + k, 0.5))
    outs = {}
    for method in ("spawn", "forkserver"):
        monkeypatch.setenv("FLOWPREP_START_METHOD", method)
        rep = flowprep.extract(str(src), str(tmp_path / method), algo="tvl1", jobs=2,
                               progress=False, short_side=0)
        assert sorted(rep.published) == ["v0", "v1", "v2"] and starter.server_pid() == before
        outs[method] = _tree(tmp_path / method)
    assert outs["spawn"] == outs["forkserver"]
    # the next run's workers see FLOWPREP_TEST_HOOK, set after the fork server's last run
    monkeypatch.setenv("FLOWPREP_TEST_HOOK", "segfault:v1")
    rep = flowprep.extract(str(src), str(tmp_path / "hook"), algo="tvl1", jobs=2,
                           progress=False, short_side=0)
    assert sorted(rep.published) == ["v0", "v2"] and "SIGSEGV" in rep.failed[str(src / "v1.mkv")]
    assert starter.server_pid() == before


def _tree(root):
    """{relative path: bytes} of a store, flowprep.json's run-specific fields left out."""
    import json
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            path = os.path.join(d, f)
            rel = os.path.relpath(path, root)
            if rel.startswith(".flowprep") or rel.endswith(".lock"):
                continue
            with open(path, "rb") as fh:
                data = fh.read()
            if rel == "flowprep.json":
                data = json.dumps({k: v for k, v in json.loads(data).items()
                                   if k not in ("created", "runs")}, sort_keys=True).encode()
            out[rel] = data
    return out


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform")
def test_runs_in_threads_share_the_fork_server_until_the_last_ends(tmp_path, monkeypatch):
    """flowprep.extract in two threads: the first to end leaves the server to the other."""
    import threading
    import flowprep
    from flowprep.run import starter
    before = starter.server_pid()  # another test's own fork-server pool may have left one
    monkeypatch.setenv("FLOWPREP_START_METHOD", "forkserver")
    short, long_ = tmp_path / "short", tmp_path / "long"
    for d, n, frames in ((short, 1, 3), (long_, 6, 24)):
        d.mkdir()
        for k in range(n):
            write_video(str(d / f"v{k}.mkv"), translated_frames(frames, 96, 128, 1.0, 0.5))
    reports = {}

    def run(src):
        reports[src.name] = flowprep.extract(str(src), str(tmp_path / f"out_{src.name}"),
                                             algo="tvl1", jobs=2, progress=False, short_side=0)
    threads = [threading.Thread(target=run, args=(d,)) for d in (long_, short)]
    for t in threads:
        t.start()
        time.sleep(0.5)  # the short run starts and ends while the long one runs
    for t in threads:
        t.join(300)
    assert not reports["short"].failed and len(reports["short"].published) == 1
    assert not reports["long"].failed and len(reports["long"].published) == 6, reports["long"].failed
    assert starter.server_pid() == before


def test_a_bare_import_is_light_and_still_reaches_every_subpackage():
    """`import flowprep` imports neither OpenCV nor NumPy nor the run modules (so the CLI
    can start its fork server first), yet flowprep.store, flowprep.loader, ... work after
    it as attributes, as when the package imported them all (a spawned pool worker that
    unpickles a reference through them depends on it); a missing name is an
    AttributeError."""
    code = ("import sys, flowprep\n"
            "light = not any(m in sys.modules for m in ('cv2', 'numpy', 'flowprep.run.extract'))\n"
            "names = flowprep.store.registry.names()\n"
            "ok = callable(flowprep.loader.TwoStreamDataset) and callable(flowprep.quantize.quantize_fixed)\n"
            "try:\n"
            "    flowprep.no_such_thing\n"
            "    missing = False\n"
            "except AttributeError:\n"
            "    missing = True\n"
            "print(light, sorted(names), ok, missing)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["True", "['hdf5',", "'jpeg',", "'wds']", "True", "True"], r.stdout


@pytest.mark.skipif("forkserver" not in __import__("multiprocessing").get_all_start_methods(),
                    reason="no fork server on this platform")
def test_a_fork_server_the_program_started_itself_does_not_leak_into_a_run(tmp_path):
    """A program that runs its own "forkserver" pool before calling flowprep.extract: the
    run's workers still see the environment of the run (set after that server started),
    and the program's pool works afterwards: the run spawns its workers and leaves that
    server alone. (In the full test suite an HDF5 reader test's fork-server pool had left
    a server whose workers missed test_remote's credentials.)"""
    src = tmp_path / "in"
    src.mkdir()
    for k in range(3):
        write_video(str(src / f"v{k}.mkv"), translated_frames(5, 48, 64, 1.0 + k, 0.5))
    code = ("import multiprocessing as mp, os, sys, flowprep\n"
            "if __name__ == '__main__':\n"
            "    pool = mp.get_context('forkserver').Pool(1)\n"
            "    assert pool.apply(os.getpid) > 0\n"
            "    os.environ['FLOWPREP_TEST_HOOK'] = 'segfault:v1'\n"
            "    rep = flowprep.extract(sys.argv[1], sys.argv[2], algo='farneback', jobs=2,\n"
            "                           progress=False, short_side=0)\n"
            "    assert pool.apply(os.getpid) > 0\n"
            "    pool.close(); pool.join()\n"
            "    print(sorted(rep.published), 'SIGSEGV' in rep.failed.get(os.path.join(sys.argv[1], 'v1.mkv'), ''))\n")
    script = tmp_path / "prog.py"
    script.write_text(code)
    env = {k: v for k, v in os.environ.items() if k not in ("FLOWPREP_TEST_HOOK", "FLOWPREP_START_METHOD")}
    r = subprocess.run([sys.executable, str(script), str(src), str(tmp_path / "out")], capture_output=True,
                       text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.split() == ["['v0',", "'v2']", "True"], r.stdout
