"""The rules both runners share (flowprep/run/ledger.py), one by one, without processes.

The runners' behaviour end to end (real crashes, kills, full disks, dask workers) is in
test_isolation.py, test_disk.py, test_dask_faults.py and test_scale.py."""
import io
from types import SimpleNamespace

from flowprep.inputs import VideoInput
from flowprep.progress import Progress
from flowprep.run.ledger import (FAILED, PUBLISHED, Ledger, VideoResult, full_disk_message,
                                 time_limit, timed_out_reason)


def vin(name):
    return VideoInput(f"/in/{name}.mp4", name)


def ok(v, frames=5):
    return VideoResult(v.video_id, v.path, PUBLISHED, frames=frames, flows=frames - 1)


def ledger(n=4):
    return Ledger("/out", Progress(n, enabled=False, stream=io.StringIO()))


def test_a_video_is_published_only_once_its_writer_says_so():
    led = ledger()
    a, b = vin("a"), vin("b")
    led.record(a, ok(a), "w0", published=[])  # committed into an open HDF5 shard
    led.record(b, ok(b), "w0", published=[])
    assert led.has_unsealed("w0")
    led.sealed("w0", ["a", "b"])  # the shard was sealed
    assert not led.has_unsealed("w0")
    assert [r.status for r in led.finish([a, b])] == [PUBLISHED, PUBLISHED]


def test_videos_of_a_lost_shard_are_redone_once_then_fail():
    led = ledger()
    a = vin("a")
    led.record(a, ok(a), "w0")
    assert led.requeue_unsealed("w0", "crashed (SIGSEGV)") == [a]
    assert "a" not in led.results and led.progress.done == 0
    led.record(a, ok(a), "w1")  # the redo, lost again
    assert led.requeue_unsealed("w1", "crashed (SIGKILL)") == []
    (res,) = led.finish([a])
    assert res.status == FAILED and "computed twice" in res.reason and "SIGKILL" in res.reason


def test_a_writer_error_retires_the_writer():
    led = ledger()
    a, b = vin("a"), vin("b")
    led.record(a, ok(a), "w0")
    bad = VideoResult("b", b.path, FAILED, reason="writing the store failed: EIO",
                      writer_error=True)
    led.record(b, bad, "w0")
    assert led.is_retired("w0") and not led.is_retired("w1")
    assert led.requeue_unsealed("w0", "was retired after a write error") == [a]


def test_after_a_stop_lost_and_unstarted_videos_are_not_processed():
    led = ledger()
    a, b, c = vin("a"), vin("b"), vin("c")
    led.record(a, ok(a), "w0")
    assert led.stop_full_disk() and not led.stop("something later")  # the first reason stays
    assert led.stopped == full_disk_message("/out")
    assert "free some space and rerun the same command" in led.stopped
    assert led.requeue_unsealed("w0", "stopped on a full disk") == []
    led.record(b, ok(b), "w1")  # still unsealed at the end: never counted published
    res = {r.video_id: r for r in led.finish([a, b, c])}
    assert all(r.status == FAILED for r in res.values())
    assert all(r.reason.startswith("not processed: the run stopped early (no space left")
               for r in res.values())


def test_an_unsealed_video_at_the_end_fails_with_how_its_worker_ended():
    led = ledger()
    a = vin("a")
    led.record(a, ok(a), "w0")
    led.unsealed_why["w0"] = "HDF5 error at close"
    (res,) = led.finish([a])
    assert res.status == FAILED and "HDF5 error at close" in res.reason


def test_the_time_limit_and_its_words():
    opts = SimpleNamespace(timeout=300.0, timeout_per_frame=10.0)
    assert time_limit(opts, 0) == 300.0 and time_limit(opts, 12) == 420.0
    reason = timed_out_reason(vin("a"), 431.2, 12, opts)
    assert reason == ("/in/a.mp4: timed out after 431 s with 12 frames decoded (limit 300 s + "
                      "10 s per frame); the worker was killed")


def test_results_travel_as_plain_dicts():
    a = vin("a")
    r = ok(a)
    r.warnings = ["2 corrupt packets skipped"]
    d = r.to_dict()
    assert d["status"] == "published" and VideoResult.from_dict(d) == r
