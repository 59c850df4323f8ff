"""Write faults on dask workers (--scheduler): as tests/test_disk.py for local runs.

An I/O error while a dask worker writes an HDF5 shard fails that one video with
its reason; the worker's writer is discarded without sealing its open shard, so
neither the half-written video nor the videos committed before it into that
shard are published (those are redone by a fresh writer). A full disk stops the
run early with the local run's message. Either way `flowprep verify` passes and
a rerun completes the store, equal to an uninterrupted local run.

The fault is the LD_PRELOAD shim of tests/faultinject.py under the C library's
write/pwrite, set in the environment of the dask worker processes (so it
reaches HDF5's own writes there), one-shot across processes. The cluster has one
worker process with one thread: its videos run one after another into one
writer, so the fault lands in a shard that already holds committed videos.
"""
import errno
import os
import re

import pytest

import flowprep
from faultinject import build_shim, fault_env
from flowprep.verify import verify_store
from synth import translated_video
from test_crash import read_every_frame
from test_scale import FAST, counts, dask_cluster, digest, run_flowprep

pytest.importorskip("distributed")

N = 5
#: .h5 writes the worker makes before the fault (about 15 per video here): the fault lands
#: in the second or third video, after one or two were committed into the same open shard
#: (the tests check that it did)
SKIP = 32


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("dask_faults_in")
    (root / "A").mkdir()
    for k in range(N):
        translated_video(str(root / "A" / f"v{k}.mkv"), n=6, h=48, w=64, dx=1.0 + 0.5 * k,
                         dy=-0.5, seed=k)
    return root


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    lib = build_shim(str(tmp_path_factory.mktemp("shim")))
    if lib is None:
        pytest.skip("no C compiler for the LD_PRELOAD fault shim")
    return lib


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """An uninterrupted local run of the same inputs."""
    out = tmp_path_factory.mktemp("dask_faults_ref") / "out"
    r = run_flowprep("extract", inputs, "-o", out, "--format", "hdf5", "--jobs", "1", *FAST)
    assert r.returncode == 0, r.stderr
    return digest(out)


def extract(inputs, out, addr):
    return run_flowprep("extract", inputs, "-o", out, "--format", "hdf5", "--scheduler", addr,
                        *FAST, timeout=180)


def published_whole(out):
    """Every published video reads back, and verify finds nothing wrong."""
    assert [str(p) for p in verify_store(str(out))] == []
    return read_every_frame(str(out))


def test_an_io_error_on_a_dask_worker_fails_one_video_and_publishes_nothing_damaged(
        tmp_path, inputs, shim, reference):
    fired = tmp_path / "fired"
    out = tmp_path / "out"
    env = fault_env(shim, errno.EIO, ".h5", skip=SKIP, count=1, once=str(fired))
    with dask_cluster(tmp_path, workers=1, **env) as client:
        addr = client.scheduler.address
        r = extract(inputs, out, addr)
        assert fired.exists(), "the fault was not injected"
        assert "Traceback" not in r.stdout + r.stderr
        assert "Stopped early" not in r.stderr  # an I/O error is not a full disk: the run goes on
        failed = [ln for ln in r.stderr.splitlines() if ln.startswith("FAILED ")]
        assert r.returncode == 1 and len(failed) == 1, r.stdout + r.stderr
        # the video being written fails with the error; its writer dropped the open shard
        # with the videos committed into it before, and those were redone
        assert re.search(r"writing the store failed: .*Input/output error", failed[0]), failed[0]
        assert re.search(r"dropped, unsealed, with [1-9]\d* committed videos? not published",
                         failed[0]), failed[0]
        assert counts(r.stdout) == (N - 1, 0, 1)
        assert len(published_whole(out)) == N - 1
        (reason,) = flowprep.open_store(str(out)).failures.values()
        assert "Input/output error" in reason
        # the same command completes the store
        r = extract(inputs, out, addr)
        assert r.returncode == 0 and counts(r.stdout) == (1, N - 1, 0), r.stdout + r.stderr
    assert published_whole(out) and digest(out) == reference
    assert not os.listdir(out / ".flowprep" / "tmp")


def test_a_full_disk_on_a_dask_worker_stops_the_run_early_and_a_rerun_completes(
        tmp_path, inputs, shim, reference):
    fired = tmp_path / "fired"
    out = tmp_path / "out"
    env = fault_env(shim, errno.ENOSPC, ".h5", skip=SKIP, count=1, once=str(fired))
    with dask_cluster(tmp_path, workers=1, **env) as client:
        addr = client.scheduler.address
        r = extract(inputs, out, addr)
        assert fired.exists(), "the fault was not injected"
        assert "Traceback" not in r.stdout + r.stderr
        assert r.returncode == 1, r.stdout + r.stderr
        # the local run's words (tests/test_disk.py)
        assert re.search(r"^Stopped early: no space left on the store's filesystem", r.stderr,
                         re.M), r.stderr
        assert "free some space and rerun the same command" in r.stderr
        failed = [ln for ln in r.stderr.splitlines() if ln.startswith("FAILED ")]
        hit = [ln for ln in failed if "not stored" in ln and "no space left" in ln]
        rest = [ln for ln in failed if "not processed: the run stopped early" in ln]
        assert len(hit) == 1 and len(hit) + len(rest) == len(failed), failed
        # its writer dropped the open shard with the videos committed into it before: those
        # are reported not processed, not published
        assert re.search(r"dropped, unsealed, with [1-9]\d* committed videos? not published",
                         hit[0]), hit[0]
        published = published_whole(out)
        assert len(published) + len(failed) == N  # one true result per video
        r = extract(inputs, out, addr)
        assert r.returncode == 0, r.stdout + r.stderr
        assert counts(r.stdout) == (N - len(published), len(published), 0)
    assert published_whole(out) and digest(out) == reference
    assert flowprep.open_store(str(out)).failures == {}
