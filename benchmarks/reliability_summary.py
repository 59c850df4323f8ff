"""Reliability summary (issue 5): bad inputs, kills, crashes, hangs, full disks, I/O errors.

Runs, for each store format, the scenarios of tests/test_bad_inputs.py,
test_crash.py, test_isolation.py and test_disk.py as real `flowprep extract`
subprocesses and prints one table:

    inputs tried, published, failed with a reason, kills survived, faults injected,
    data lost

"Data lost" counts, after every scenario's rerun, the videos that are missing
from the store or differ from an uninterrupted run (frame bytes or metadata),
plus inputs that ended neither published nor failed with a reason, plus
videos that were published before a fault and changed or vanished after it.

    .venv/bin/python benchmarks/reliability_summary.py [--formats jpeg,hdf5] [--kills 8]

Needs root for the tmpfs full-disk scenario (falls back to ENOSPC injection)
and a C compiler for the EIO shim (the scenario is skipped without one).
"""
from __future__ import annotations

import argparse
import errno
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))

import flowprep  # noqa: E402
from faultinject import build_shim, fault_env, mount_tmpfs, resize_tmpfs, unmount  # noqa: E402
from reliability_corpus import build, ffmpeg_decode, video_id  # noqa: E402
from synth import translated_video  # noqa: E402

FLOWPREP = os.path.join(os.path.dirname(sys.executable), "flowprep")


class Row:
    def __init__(self, scenario: str, fmt: str) -> None:
        self.scenario, self.fmt = scenario, fmt
        self.inputs = self.published = self.failed = self.kills = self.faults = self.lost = 0
        self.notes: List[str] = []
        self.seconds = 0.0


def extract(inputs, out, fmt, *extra, env=None, algo="farneback"):
    cmd = [FLOWPREP, "extract", *map(str, inputs), "-o", str(out), "--algo", algo,
           "--short-side", "0", "--jobs", "2", "--format", fmt, "--no-progress", *map(str, extra)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          env={**os.environ, **(env or {})})


def snapshot(out) -> Dict[str, tuple]:
    """video id -> (metadata JSON, every stored payload), as test_crash.snapshot."""
    import json
    store = flowprep.open_store(out)
    snap = {}
    for vid in store.video_ids:
        v = store[vid]
        blobs = [v.rgb_bytes(i) for i in range(v.num_frames)]
        for i in range(v.num_flows):
            blobs.extend(bytes(x) if not hasattr(x, "tobytes") else x.tobytes()
                         for x in v.flow_payload(i))
        snap[vid] = (json.dumps(v.meta, sort_keys=True), blobs)
    return snap


def outcome(row: Row, out, n_inputs: int, reference=None, before=None) -> None:
    """Fill published / failed / lost from the store at ``out``."""
    from flowprep.verify import verify_store
    store = flowprep.open_store(out)
    ids, failures = set(store.video_ids), store.failures
    row.inputs += n_inputs
    row.published += len(ids)
    row.failed += sum(1 for r in failures.values() if r.strip())
    row.lost += max(0, n_inputs - len(ids) - len(failures))  # neither published nor failed
    problems = verify_store(str(out))
    if problems:
        row.lost += len({p.video_id for p in problems})
        row.notes.append(f"verify: {problems[0]}")
    snap = snapshot(out)
    if reference is not None:
        row.lost += sum(1 for vid, v in reference.items() if snap.get(vid) != v)
    if before is not None:  # published before the fault: still there, unchanged
        row.lost += sum(1 for vid, v in before.items() if snap.get(vid) != v)


def group_alive(pgid: int) -> bool:
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as fh:
                    f = fh.read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(f[2]) == pgid and f[0] != "Z":
                return True
    return False


def count_published(out) -> int:
    try:
        return len(flowprep.open_store(out).video_ids)
    except flowprep.FlowprepError:
        return 0


# --------------------------------------------------------------------------------------

def corpus_scenario(fmt: str, work: str, root: str, cases) -> Row:
    row = Row(f"bad-input corpus ({len(cases)} files)", fmt)
    out = os.path.join(work, f"corpus-{fmt}")
    p = extract([root], out, fmt, algo="dis")
    if "Traceback" in p.stdout + p.stderr:
        row.notes.append("a traceback was shown")
    store = flowprep.open_store(out)
    failures = {os.path.relpath(k, root): v for k, v in store.failures.items()}
    for c in cases:
        if c.expect == "published":
            vid = video_id(c.rel)
            if vid not in store.video_ids:
                row.lost += 1
                row.notes.append(f"{c.rel} not published")
            elif store[vid].num_frames != ffmpeg_decode(os.path.join(root, c.rel))[0]:
                row.lost += 1
                row.notes.append(f"{c.rel}: frame count differs from ffmpeg's")
        elif c.rel not in failures:
            row.notes.append(f"{c.rel} did not fail")
    outcome(row, out, len(cases))
    warned = sum(1 for v in store.video_ids if store.meta(v).get("warnings"))
    row.notes.append(f"exit {p.returncode}; {warned} damaged inputs published with warnings")
    return row


def kill_scenario(fmt: str, work: str, inputs: str, n: int, kills: int) -> Row:
    row = Row(f"kill -9 of the whole run x{kills}, then resume", fmt)
    ref = os.path.join(work, f"kill-ref-{fmt}")
    t0 = time.monotonic()
    assert extract([inputs], ref, fmt).returncode == 0
    full = time.monotonic() - t0
    reference = snapshot(ref)
    out = os.path.join(work, f"kill-{fmt}")
    rng = random.Random(1234)
    modes = [rng.uniform(0.05, 0.3) * full for _ in range(2)] + ["publish"] * (kills - 3) + ["end"]
    cmd = [FLOWPREP, "extract", inputs, "-o", out, "--algo", "farneback", "--short-side", "0",
           "--jobs", "2", "--format", fmt, "--no-progress", "--shard-size", "200KiB"]
    published_so_far: Dict[str, tuple] = {}
    for mode in modes:
        before = count_published(out)
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)
        t = time.monotonic()
        if isinstance(mode, float):
            time.sleep(mode)
        else:
            target = before + 1 if mode == "publish" else n
            while p.poll() is None and count_published(out) < target and time.monotonic() - t < 120:
                time.sleep(0.01)
            if mode == "publish":
                time.sleep(rng.uniform(0.0, 0.15))
        try:
            os.killpg(p.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        p.wait(30)
        while group_alive(p.pid):
            time.sleep(0.02)
        if p.returncode == -signal.SIGKILL:
            row.kills += 1
        # what was published survives every later kill unchanged
        if os.path.exists(os.path.join(out, "flowprep.json")):
            snap = snapshot(out)
            row.lost += sum(1 for vid, v in published_so_far.items() if snap.get(vid) != v)
            published_so_far.update(snap)
    p = extract([inputs], out, fmt)
    row.notes.append(f"resume exit {p.returncode}")
    outcome(row, out, n, reference=reference)
    left = os.listdir(os.path.join(out, ".flowprep", "tmp"))
    if left:
        row.notes.append(f"staging leftovers: {left}")
    return row


def hook_scenario(fmt: str, work: str, inputs: str, n: int, hook: str, what: str, *extra) -> Row:
    row = Row(what, fmt)
    out = os.path.join(work, f"hook-{hook.split(':')[0]}-{fmt}")
    p = extract([inputs], out, fmt, *extra, env={"FLOWPREP_TEST_HOOK": hook})
    row.faults += 1
    if "Traceback" in p.stdout + p.stderr:
        row.notes.append("a traceback was shown")
    before = snapshot(out)
    outcome(row, out, n, before=before)
    reasons = sorted(flowprep.open_store(out).failures.values())
    first = reasons[0].split(": ", 1)[-1][:70] if reasons else "nothing failed"
    row.notes.append(f"exit {p.returncode}, {len(reasons)} failed: {first}")
    return row


def full_disk_scenario(fmt: str, work: str, inputs: str, n: int, reference, shim) -> Row:
    row = Row("full disk, then rerun after freeing space", fmt)
    mnt = os.path.join(work, f"mnt-{fmt}")
    real = mount_tmpfs(mnt, "1m")
    env = {}
    if not real:
        if shim is None:
            row.notes.append("skipped: no tmpfs mount and no C compiler")
            return row
        env = fault_env(shim, errno.ENOSPC, os.path.join(mnt, "o"), skip=150, count=10 ** 9)
        os.makedirs(mnt, exist_ok=True)
    out = os.path.join(mnt, "o")
    try:
        p = extract([inputs], out, fmt, env=env)
        row.faults += 1
        stopped = [ln for ln in p.stderr.splitlines() if ln.startswith("Stopped early")]
        if "Traceback" in p.stdout + p.stderr:
            row.notes.append("a traceback was shown")
        before = snapshot(out) if os.path.exists(os.path.join(out, "flowprep.json")) else {}
        n_fail = sum(1 for ln in p.stderr.splitlines() if ln.startswith("FAILED "))
        row.notes.append(f"{'1 MiB tmpfs' if real else 'ENOSPC injected'}: exit {p.returncode}, "
                         f"{len(before)} published, {n_fail} not stored/not tried, "
                         f"{'stopped early' if stopped else 'NOT stopped early'}")
        if real:
            resize_tmpfs(mnt, "64m")
        p2 = extract([inputs], out, fmt)
        row.notes.append(f"rerun exit {p2.returncode}")
        outcome(row, out, n, reference=reference, before=before)
    finally:
        if real:
            unmount(mnt)
    return row


def eio_scenario(fmt: str, work: str, inputs: str, n: int, reference, shim) -> Row:
    row = Row("one EIO on a store write, then rerun", fmt)
    if shim is None:
        row.notes.append("skipped: no C compiler for the fault shim")
        return row
    out = os.path.join(work, f"eio-{fmt}")
    env = fault_env(shim, errno.EIO, ".jpg" if fmt == "jpeg" else ".h5", skip=40, count=1,
                    once=os.path.join(work, f"eio-{fmt}.fired"))
    p = extract([inputs], out, fmt, env=env)
    row.faults += 1
    failed = [ln for ln in p.stderr.splitlines() if ln.startswith("FAILED ")]
    before = snapshot(out)
    row.notes.append(f"exit {p.returncode}, {len(failed)} failed: "
                     f"...{failed[0][-64:] if failed else ''}")
    p2 = extract([inputs], out, fmt)
    row.notes.append(f"rerun exit {p2.returncode}")
    outcome(row, out, n, reference=reference, before=before)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--formats", default="jpeg,hdf5")
    ap.add_argument("--kills", type=int, default=8)
    args = ap.parse_args()
    import cv2
    rows: List[Row] = []
    t_all = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="flowprep-reliability-") as work:
        corpus_root = os.path.join(work, "corpus")
        cases = build(corpus_root)
        inputs = os.path.join(work, "videos")
        n = 12
        for k in range(n):
            d = os.path.join(inputs, f"class{k % 2}")
            os.makedirs(d, exist_ok=True)
            translated_video(os.path.join(d, f"v{k:02d}.mkv"), n=20 + 2 * k, h=96, w=128,
                             dx=1.0, dy=0.5, seed=k)
        shim = build_shim(os.path.join(work, "shim"))
        for fmt in args.formats.split(","):
            ref = os.path.join(work, f"ref-{fmt}")
            assert extract([inputs], ref, fmt).returncode == 0
            reference = snapshot(ref)
            for make in (
                lambda: corpus_scenario(fmt, work, corpus_root, cases),
                lambda: kill_scenario(fmt, work, inputs, n, args.kills),
                lambda: hook_scenario(fmt, work, inputs, n, "segfault:v05",
                                      "segfault in the worker on one video"),
                lambda: hook_scenario(fmt, work, inputs, n, "hang:v07",
                                      "hang in the worker on one video", "--timeout", "2",
                                      "--timeout-per-frame", "0"),
                lambda: hook_scenario(fmt, work, inputs, n, "segfault_at_close:v",
                                      "worker crash while sealing (every close)"),
                lambda: full_disk_scenario(fmt, work, inputs, n, reference, shim),
                lambda: eio_scenario(fmt, work, inputs, n, reference, shim),
            ):
                t0 = time.monotonic()
                row = make()
                row.seconds = time.monotonic() - t0
                rows.append(row)
                print(f"  ... {row.fmt:4s} {row.scenario} ({row.seconds:.1f} s)", file=sys.stderr)

    print(f"flowprep {flowprep.__version__} reliability summary (OpenCV {cv2.__version__}, "
          f"{len(args.formats.split(','))} store formats, {time.monotonic() - t_all:.0f} s)")
    print()
    head = f"{'scenario':46s} {'format':6s} {'inputs':>6s} {'publ.':>6s} {'failed':>6s} " \
           f"{'kills':>5s} {'faults':>6s} {'lost':>4s}"
    print(head)
    print("-" * len(head))
    legend = ("publ./failed: the store at the end of the scenario (after its rerun where there "
              "is one); kills: runs SIGKILLed mid-work; lost: see the module docstring")
    for r in rows:
        print(f"{r.scenario:46s} {r.fmt:6s} {r.inputs:6d} {r.published:6d} {r.failed:6d} "
              f"{r.kills:5d} {r.faults:6d} {r.lost:4d}")
    print(legend)
    print()
    for r in rows:
        if r.notes:
            print(f"{r.fmt:4s} {r.scenario}: {'; '.join(r.notes)}")
    tot = {k: sum(getattr(r, k) for r in rows)
           for k in ("inputs", "published", "failed", "kills", "faults", "lost")}
    print()
    print(f"inputs tried: {tot['inputs']}, published: {tot['published']}, "
          f"failed with a reason: {tot['failed']}, kills survived: {tot['kills']}, "
          f"faults injected: {tot['faults']}, data lost: {tot['lost']}")
    return 1 if tot["lost"] else 0


if __name__ == "__main__":
    sys.exit(main())
