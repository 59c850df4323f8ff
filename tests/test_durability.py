"""Durable before visible: what a power loss could do to a published video.

A process kill cannot lose written data (the kernel has it), but a power loss
loses what the kernel had not yet written back. The JPEG store therefore
flushes a video's files to the disk (one syncfs(2) of the filesystem) before
the rename that publishes the folder, and fsyncs the parent folder after it;
the HDF5 store fsyncs each shard before renaming it into place. The order of
those system calls is the guarantee, so the test reads it off a real
`flowprep extract` process with strace.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys

import pytest

from flowprep import fsutil
from flowprep.errors import WriteError
from synth import translated_video

FLOWPREP = os.path.join(os.path.dirname(sys.executable), "flowprep")


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("durable") / "in" / "cls"
    root.mkdir(parents=True)
    for k in range(2):
        translated_video(str(root / f"v{k}.mkv"), n=8, h=64, w=80, dx=1.0, dy=0.5, seed=k)
    return str(root.parent)


def _trace(cmd, log):
    if shutil.which("strace") is None:
        pytest.skip("strace is not installed")
    p = subprocess.run(["strace", "-f", "-qq", "-o", str(log), "-e",
                        "trace=syncfs,fsync,rename,renameat,renameat2"] + cmd,
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    return open(log).read().splitlines()


def _calls(lines):
    """[(pid, syscall, args text)] in the order the kernel saw them (strace -f, one file)."""
    out = []
    for line in lines:
        m = re.match(r"(\d+)\s+(\w+)\((.*)", line)
        if m and "<unfinished" not in line:
            out.append((int(m.group(1)), m.group(2), m.group(3)))
        m = re.match(r"(\d+)\s+<\.\.\. (\w+) resumed>(.*)", line)
        if m:
            out.append((int(m.group(1)), m.group(2), m.group(3)))
    return out


def test_jpeg_video_reaches_the_disk_before_it_is_published(inputs, tmp_path):
    out = tmp_path / "out"
    calls = _calls(_trace([FLOWPREP, "extract", inputs, "-o", str(out), "--algo", "farneback",
                           "--short-side", "0", "--jobs", "1", "--no-progress"],
                          tmp_path / "trace"))
    published = 0
    publishes = [i for i, (_, name, args) in enumerate(calls)
                 if name.startswith("rename") and "/.flowprep/tmp/" in args
                 and re.search(rf'"{re.escape(str(out))}/cls/v\d"\)', args)]
    assert len(publishes) == 2, calls
    for n, k in enumerate(publishes):
        pid = calls[k][0]
        start = publishes[n - 1] + 1 if n else 0
        between = [name for p, name, _ in calls[start:k] if p == pid]
        after = [name for p, name, _ in calls[k + 1:] if p == pid]
        # this video's files were flushed after the previous publish and before this one
        assert "syncfs" in between, between[-10:]
        assert after[0] == "fsync", after[:3]  # the parent folder, for the rename itself
        published += 1
    assert published == 2
    assert sorted(os.listdir(out / "cls")) == ["v0", "v1"]


def test_hdf5_shard_reaches_the_disk_before_it_is_renamed_into_place(inputs, tmp_path):
    out = tmp_path / "out"
    calls = _calls(_trace([FLOWPREP, "extract", inputs, "-o", str(out), "--algo", "farneback",
                           "--short-side", "0", "--jobs", "1", "--format", "hdf5",
                           "--no-progress"], tmp_path / "trace"))
    k = next(i for i, (_, name, args) in enumerate(calls)
             if name.startswith("rename") and f'"{out}/shards/' in args)
    pid = calls[k][0]
    before = [name for p, name, _ in calls[:k] if p == pid]
    after = [name for p, name, _ in calls[k + 1:] if p == pid]
    assert before[-1] == "fsync" and after[0] == "fsync"


def test_sync_filesystem_reports_failures_as_write_errors(tmp_path):
    fd = fsutil.open_dir(str(tmp_path))
    fsutil.sync_filesystem(fd, str(tmp_path))  # a healthy filesystem: no error
    os.close(fd)
    with pytest.raises(WriteError, match=r"staged/video: write failed"):
        fsutil.sync_filesystem(fd, "staged/video")  # a closed descriptor: EBADF
