"""Object storage: extraction into an S3 server on loopback against the same into a local
store, and remote against local read rates.

The S3 server is moto's standalone server (``moto[server]``, a Python process on
127.0.0.1, as in the tests): it competes with the extraction for this machine's
cores, so the overhead it shows is an upper bound on what staging and upload
cost next to a real object store.

Extraction: N copies of bikes.mp4 (250 frames each), ``--format wds`` (or
--format hdf5), in three configurations run in interleaved rounds (best of
--repeat each): local videos -> local store; local videos -> s3:// store
(staging + upload); s3:// videos -> s3:// store (range reads too).

Reading, one process, flow stacks of 10 with 224 crops: the map-style
TwoStreamDataset (byte ranges through the bounded block cache) and the
streaming StreamingTwoStreamDataset (each shard read front to back, and with
sequential=False only each sample's members, by byte range), over the local store
and over the same store at its s3:// URL, with the bytes each sample fetched from
the S3 server (s3fs's range requests, counted).

    python benchmarks/bench_remote.py [--copies 4] [--jobs 2] [--algo farneback] [--repeat 2]
"""
from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "tests"))
sys.path.insert(0, HERE)

from _machine import cpu_name  # noqa: E402 (benchmarks/_machine.py)


def extract(inp: str, out: str, algo: str, jobs: int, fmt: str) -> float:
    exe = os.path.join(os.path.dirname(sys.executable), "flowprep")
    t0 = time.perf_counter()
    subprocess.run([exe, "extract", inp, "-o", out, "--format", fmt, "--algo", algo,
                    "--jobs", str(jobs), "--no-progress"], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


LOADER = dict(modality="flow", length=10, num_segments=1, mode="train", crop_size=224, seed=0)


FETCHED = [0]  # bytes s3fs fetched by range requests (counted in main)


def read_rate(source, seconds: float = 8.0):
    """(flow stacks/s, bytes fetched a stack) of the map-style loader over ``source``."""
    from flowprep.loader import TwoStreamDataset
    ds = TwoStreamDataset(source, **LOADER)
    n, before = 0, FETCHED[0]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(n // len(ds))
        ds[n % len(ds)]
        n += 1
    return n / (time.perf_counter() - t0), (FETCHED[0] - before) / n


def stream_rate(source, seconds: float = 8.0, sequential: bool = True):
    """(flow stacks/s, bytes fetched a stack) of the streaming loader over ``source`` (one
    process, whole epochs)."""
    from flowprep.loader import StreamingTwoStreamDataset
    ds = StreamingTwoStreamDataset(source, rank=0, world_size=1, shuffle_buffer=4,
                                   sequential=sequential, **LOADER)
    n, epoch, before = 0, 0, FETCHED[0]
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        ds.set_epoch(epoch)
        for _ in ds:
            n += 1
        epoch += 1
    return n / (time.perf_counter() - t0), (FETCHED[0] - before) / n


def count_fetches() -> None:
    """Count the bytes of every range request s3fs makes (FETCHED)."""
    from s3fs.core import S3File
    fetch = S3File._fetch_range

    def counted(self, start, end):
        data = fetch(self, start, end)
        FETCHED[0] += len(data)
        return data
    S3File._fetch_range = counted


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--copies", type=int, default=4)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--algo", default="farneback")
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--format", default="wds", choices=("wds", "hdf5"))
    a = ap.parse_args()
    from s3server import S3Server
    from synth import sample_videos
    srv = S3Server()
    count_fetches()
    os.environ.update(AWS_ACCESS_KEY_ID="bench", AWS_SECRET_ACCESS_KEY="bench",
                      AWS_ENDPOINT_URL=srv.endpoint, AWS_DEFAULT_REGION="us-east-1")
    load0 = os.getloadavg()[0]
    bikes = [p for p in sample_videos() if p.endswith("bikes.mp4")][0]
    work = tempfile.mkdtemp(prefix="flowprep-bench-remote-")
    try:
        inp = os.path.join(work, "in")
        os.makedirs(inp)
        bucket = srv.make_bucket("bench" + uuid.uuid4().hex[:8])
        c = srv.client()
        for k in range(a.copies):
            shutil.copy(bikes, os.path.join(inp, f"bikes{k}.mp4"))
            c.upload_file(bikes, bucket, f"in/bikes{k}.mp4")
        frames = 250 * a.copies
        best = {}
        runs = [("local -> local", inp, lambda r: os.path.join(work, f"out{r}")),
                ("local -> s3", inp, lambda r: f"s3://{bucket}/local-in-{r}"),
                ("s3 -> s3", f"s3://{bucket}/in", lambda r: f"s3://{bucket}/s3-in-{r}")]
        for r in range(a.repeat):
            for name, src, dst in runs:
                dt = extract(src, dst(r), a.algo, a.jobs, a.format)
                best[name] = max(best.get(name, 0.0), frames / dt)
        local_store = os.path.join(work, "out0")
        remote_store = f"s3://{bucket}/local-in-0"
        rates = {}
        fetched = {}
        readers = [("map-style", read_rate)]
        if a.format == "wds":
            readers.append(("streaming", stream_rate))
            readers.append(("streaming, sequential=False",
                            lambda src: stream_rate(src, sequential=False)))
        for r in range(a.repeat):
            for reader, fn in readers:
                for name, src in (("local", local_store), ("s3", remote_store)):
                    rate, fetched[reader, name] = fn(src)
                    rates[reader, name] = max(rates.get((reader, name), 0.0), rate)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        srv.stop()
    import cv2
    print(f"Machine: {cpu_name()}, {os.cpu_count()} cores, {platform.platform()}, "
          f"Python {platform.python_version()}, OpenCV {cv2.__version__}")
    print(f"Command: python benchmarks/bench_remote.py --copies {a.copies} --jobs {a.jobs} "
          f"--algo {a.algo} --repeat {a.repeat} --format {a.format}")
    print(f"S3 server: moto (standalone, 127.0.0.1), same machine; load average before: "
          f"{load0:.2f}, after: {os.getloadavg()[0]:.2f}\n")
    print(f"| extract --format {a.format}, {a.copies} x bikes.mp4, {a.algo}, --jobs {a.jobs} "
          f"| frames/s | vs local |")
    print("|---|---|---|")
    for name, _, _ in runs:
        print(f"| {name} | {best[name]:.1f} | {best[name] / best['local -> local']:.3f} |")
    print()
    print(f"| loader over the {a.format} store, flow stacks of 10, 224 crop, 1 process "
          f"| stacks/s | vs local | MB fetched a stack |")
    print("|---|---|---|---|")
    for reader, _ in readers:
        for name in ("local", "s3"):
            v = rates[reader, name]
            mb = f"{fetched[reader, name] / 1e6:.2f}" if name == "s3" else "-"
            print(f"| {reader}, {name} | {v:.1f} | {v / rates[reader, 'local']:.3f} | {mb} |")


if __name__ == "__main__":
    main()
