"""Issue 5, part 4: full disks and write errors lose nothing and stop the run early.

- A real full filesystem: OUT on a 1 MiB tmpfs (mounted by the test; it needs
  root). Where mounting is not permitted the test falls back to injecting
  ENOSPC into every store write after the first ones (tests/faultinject.py) and
  says so in its output ("filesystem: ..." in the captured stdout, and in the
  test's user_properties).
- EIO: a one-shot I/O error injected under the C library's write (LD_PRELOAD),
  so it also reaches HDF5's own writes, which bypass flowprep's checked writes.
- fsutil's checked writes directly (short writes, ENOSPC, EIO, atomic replace).
"""
import errno
import os
import re
import subprocess

import pytest

import flowprep
from faultinject import build_shim, fault_env, mount_tmpfs, resize_tmpfs, unmount
from synth import translated_video
from test_bad_inputs import FLOWPREP, format_param
from test_crash import read_every_frame, snapshot

FORMATS = [format_param("jpeg"), format_param("hdf5"), format_param("wds")]
N = 10


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("disk") / "in"
    root.mkdir()
    for k in range(N):
        translated_video(str(root / f"v{k}.mkv"), n=20, h=96, w=128, seed=k)
    return str(root)


@pytest.fixture(scope="module")
def shim(tmp_path_factory):
    return build_shim(str(tmp_path_factory.mktemp("shim")))


def cmd(inputs, out, fmt, jobs=2):
    return [FLOWPREP, "extract", inputs, "-o", str(out), "--algo", "farneback", "--short-side", "0",
            "--jobs", str(jobs), "--format", fmt, "--no-progress"]


def run(c, env=None):
    return subprocess.run(c, capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.fixture(scope="module")
def reference(inputs, tmp_path_factory):
    """An uninterrupted run per format on an ordinary filesystem."""
    out = {}

    def get(fmt):
        if fmt not in out:
            d = tmp_path_factory.mktemp(f"ref-{fmt}") / "store"
            p = run(cmd(inputs, d, fmt))
            assert p.returncode == 0, p.stderr
            out[fmt] = snapshot(str(d))
        return out[fmt]
    return get




@pytest.mark.parametrize("fmt", FORMATS)
def test_full_disk_stops_early_keeps_what_is_published_and_a_rerun_completes(
        inputs, tmp_path, fmt, shim, reference, request):
    mnt = str(tmp_path / "mnt")
    real = mount_tmpfs(mnt, "1m")
    env = {}
    if real:
        mode = "a real 1 MiB tmpfs filesystem"
    else:
        if shim is None:
            pytest.skip("neither a tmpfs mount (needs root) nor a C compiler for the fault shim")
        mode = "ENOSPC injected into every store write after the first 150 (mount not permitted)"
        os.makedirs(mnt, exist_ok=True)
        env = fault_env(shim, errno.ENOSPC, "/mnt/o", skip=150, count=10 ** 9)
    request.node.user_properties.append(("filesystem", mode))
    print(f"filesystem: {mode}")
    out = os.path.join(mnt, "o")
    try:
        p = run(cmd(inputs, out, fmt), env)
        err = p.stderr
        assert p.returncode == 1, (p.stdout, err)
        assert "Traceback" not in p.stdout + err
        assert re.search(r"^Stopped early: no space left on the store's filesystem", err, re.M), err
        assert "free some space and rerun the same command" in err
        failed = [ln for ln in err.splitlines() if ln.startswith("FAILED ")]
        hit = [ln for ln in failed if "not stored" in ln and "no space left" in ln]
        skipped = [ln for ln in failed if "not processed: the run stopped early" in ln]
        # at most one video per worker hits the full disk; the rest are not even tried
        assert 1 <= len(hit) <= 2, failed
        assert len(hit) + len(skipped) == len(failed)
        assert skipped, "the run went on trying every video on a full disk"
        # what is published is whole, and nothing partial is visible
        published = read_every_frame(out)
        assert len(published) + len(failed) <= N
        if fmt == "jpeg":
            assert {e for e in os.listdir(out) if not e.endswith((".txt", ".json"))} \
                == published | {".flowprep"}
        # space is freed: the same command completes, redoing only what is missing
        if real:
            resize_tmpfs(mnt, "64m")
        p = run(cmd(inputs, out, fmt))
        assert p.returncode == 0, p.stderr
        assert f"{N - len(published)} published, {len(published)} already published, 0 failed" \
            in p.stdout
        assert snapshot(out) == reference(fmt)
        from flowprep.verify import verify_store
        assert [str(x) for x in verify_store(out)] == []
        assert not os.listdir(os.path.join(out, ".flowprep", "tmp"))
        assert flowprep.open_store(out).failures == {}
    finally:
        if real:
            unmount(mnt)


def test_a_disk_full_before_the_run_starts_is_a_clear_error(inputs, tmp_path):
    mnt = str(tmp_path / "mnt")
    if not mount_tmpfs(mnt, "1m"):
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        filler = os.path.join(mnt, "filler")
        with open(filler, "wb") as fh:  # leave nothing
            try:
                while True:
                    fh.write(b"\0" * 65536)
                    fh.flush()
            except OSError:
                pass
        p = run(cmd(inputs, os.path.join(mnt, "o"), "jpeg"))
        assert p.returncode in (1, 2) and "Traceback" not in p.stderr
        assert "no space left" in p.stderr
        os.unlink(filler)
        resize_tmpfs(mnt, "64m")
        p = run(cmd(inputs, os.path.join(mnt, "o"), "jpeg"))
        assert p.returncode == 0, p.stderr
        assert len(flowprep.open_store(os.path.join(mnt, "o")).video_ids) == N
    finally:
        unmount(mnt)


@pytest.mark.parametrize("skip", [3, 40])
@pytest.mark.parametrize("fmt", FORMATS)
def test_an_io_error_fails_one_video_cleanly_and_a_rerun_completes(inputs, tmp_path, fmt, skip,
                                                                   shim, reference):
    if shim is None:
        pytest.skip("no C compiler for the LD_PRELOAD fault shim")
    out = tmp_path / "o"
    # one EIO, in the middle of the run, on a frame or shard write (not the store's own files)
    pattern = {"jpeg": ".jpg", "hdf5": ".h5", "wds": ".tar"}[fmt]
    if fmt == "wds":  # the wds writer buffers a video's members: one write a video, per worker
        skip = {3: 1, 40: 4}[skip]
    env = fault_env(shim, errno.EIO, pattern, skip=skip, count=1, once=str(tmp_path / "fired"))
    p = run(cmd(inputs, out, fmt), env)
    assert os.path.exists(tmp_path / "fired"), "the fault was not injected"
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert "Traceback" not in p.stdout + p.stderr
    failed = [ln for ln in p.stderr.splitlines() if ln.startswith("FAILED ")]
    assert len(failed) == 1, failed
    # JPEG: the checked write fails. HDF5: h5py raises, or libhdf5 itself crashes a moment
    # later (it segfaults in H5Fflush after a failed pwrite): the supervised worker dies,
    # that video fails with the signal and the videos in its unsealed shard are redone
    assert re.search(r"writing the store failed: .*Input/output error|crashed \(SIGSEGV\)",
                     failed[0]), failed[0]
    assert "Stopped early" not in p.stderr  # an I/O error is not a full disk: the run goes on
    published = read_every_frame(str(out))
    assert len(published) == N - 1
    from flowprep.verify import verify_store
    assert [str(x) for x in verify_store(str(out))] == []  # nothing half-written got published
    p = run(cmd(inputs, out, fmt))
    assert p.returncode == 0 and "1 published, 9 already published, 0 failed" in p.stdout
    assert snapshot(str(out)) == reference(fmt)


# --- fsutil: the checked writes every JPEG byte goes through ----------------------------

def test_write_bytes_completes_short_writes(tmp_path, monkeypatch):
    from flowprep import fsutil
    real = os.write
    monkeypatch.setattr(fsutil.os, "write", lambda fd, b: real(fd, bytes(b)[:7]))
    data = bytes(range(256)) * 10
    fsutil.write_bytes(str(tmp_path / "f"), data)
    assert (tmp_path / "f").read_bytes() == data


@pytest.mark.parametrize("code,cls,text", [
    (errno.ENOSPC, "DiskFullError", "no space left"),
    (errno.EDQUOT, "DiskFullError", "no space left"),
    (errno.EIO, "WriteError", "write failed (Input/output error)"),
])
def test_write_errors_become_project_errors_naming_the_file(tmp_path, monkeypatch, code, cls, text):
    from flowprep import errors, fsutil

    def failing(fd, b):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(fsutil.os, "write", failing)
    path = str(tmp_path / "f.jpg")
    with pytest.raises(errors.WriteError) as ei:
        fsutil.write_bytes(path, b"x" * 100)
    assert type(ei.value).__name__ == cls and text in str(ei.value) and path in str(ei.value)


def test_a_write_that_makes_no_progress_is_an_error(tmp_path, monkeypatch):
    from flowprep import errors, fsutil
    monkeypatch.setattr(fsutil.os, "write", lambda fd, b: 0)
    with pytest.raises(errors.WriteError, match="short write"):
        fsutil.write_bytes(str(tmp_path / "f"), b"abc")


def test_atomic_write_failure_keeps_the_old_file_and_leaves_no_temporary(tmp_path, monkeypatch):
    from flowprep import errors, fsutil
    target = tmp_path / "meta.json"
    target.write_bytes(b"old")

    def failing(fd, b):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(fsutil.os, "write", failing)
    with pytest.raises(errors.DiskFullError):
        fsutil.atomic_write_bytes(str(target), b"new")
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["meta.json"]


def test_every_write_in_the_package_goes_through_checked_writes_or_h5py():
    """No module writes files behind fsutil's back (HDF5 shards are h5py's, checked there)."""
    import flowprep as pkg
    root = os.path.dirname(pkg.__file__)
    raw = re.compile(r"open\([^)]*['\"][wax]b?\+?['\"]|imwrite\(|\.tofile\(|np\.save|"
                     r"json\.dump\(|pickle\.dump\(|shutil\.copy")
    allowed = {
        "fsutil.py": "the checked writes themselves",
        "convert.py": "shutil.copyfile of small user files (failure records, notes); raises on error",
    }
    offenders = []
    for d, _, files in os.walk(root):
        for f in files:
            if not f.endswith(".py") or f in allowed:
                continue
            text = open(os.path.join(d, f), encoding="utf-8").read()
            for m in raw.finditer(text):
                offenders.append(f"{os.path.relpath(os.path.join(d, f), root)}: {m.group(0)}")
    assert offenders == []


@pytest.mark.parametrize("fmt,inodes", [("jpeg", 3), ("jpeg", 12), ("jpeg", 300),
                                        ("hdf5", 3), ("hdf5", 12)])
def test_running_out_of_inodes_anywhere_is_a_clear_message(inputs, tmp_path, fmt, inodes):
    """A tmpfs with few inodes fails mkdir/creat with ENOSPC at every stage in turn: the
    store directory, the lock and staging files, flowprep.json, frames, lists."""
    mnt = str(tmp_path / "mnt")
    os.makedirs(mnt)
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size=64m,nr_inodes={inodes}", "tmpfs", mnt],
                       capture_output=True)
    if p.returncode != 0:
        pytest.skip("mounting a tmpfs is not permitted here")
    try:
        out = os.path.join(mnt, "o")
        p = run(cmd(inputs, out, fmt))
        assert "Traceback" not in p.stdout + p.stderr
        assert p.returncode in (1, 2), p.stdout + p.stderr
        assert "no space left" in p.stderr
        if os.path.exists(os.path.join(out, "flowprep.json")):
            read_every_frame(out)  # whatever is published is whole
        subprocess.run(["mount", "-o", "remount,nr_inodes=100000", mnt], check=True)
        p = run(cmd(inputs, out, fmt))
        assert p.returncode == 0, p.stderr
        assert len(read_every_frame(out)) == N
    finally:
        unmount(mnt)
