"""Issue 5, part 6: outputs never leave OUT, whatever the input names; ids stay unique.

Every test snapshots the whole scratch directory (inputs included) before and
after the run: nothing outside OUT may appear or change.
"""
import os
import subprocess

import pytest

import flowprep
from flowprep.inputs import discover
from synth import translated_video
from test_bad_inputs import FLOWPREP, format_param

FORMATS = [format_param("jpeg"), format_param("hdf5"), format_param("wds")]


def tree(root, skip):
    """{relative path: (size, mtime_ns)} of everything under root except ``skip``."""
    out = {}
    for d, dirs, files in os.walk(root):
        dirs[:] = [x for x in dirs if os.path.join(d, x) != skip]
        for f in files + [x for x in dirs if os.path.islink(os.path.join(d, x))]:
            p = os.path.join(d, f)
            st = os.lstat(p)
            out[os.path.relpath(p, root)] = (st.st_size, st.st_mtime_ns)
    return out


def extract(inputs, out, fmt, *extra):
    return subprocess.run([FLOWPREP, "extract", *map(str, inputs), "-o", str(out), "--algo",
                           "farneback", "--short-side", "0", "--jobs", "2", "--format", fmt,
                           "--no-progress", *extra], capture_output=True, text=True, timeout=300)


def video(path, seed=0):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    return translated_video(str(path), n=3, h=32, w=48, seed=seed)


def check_contained(scratch, out, run):
    before = tree(scratch, str(out))
    p = run()
    assert "Traceback" not in p.stdout + p.stderr
    assert tree(scratch, str(out)) == before, "something outside OUT appeared or changed"
    return p


@pytest.mark.parametrize("fmt", FORMATS)
def test_hostile_names_in_a_list_stay_inside_out(tmp_path, fmt):
    scratch = tmp_path
    elsewhere = tmp_path / "elsewhere"
    video(elsewhere / "escape.mkv", 1)
    video(tmp_path / "lists" / "sub" / "v.mkv", 2)
    video(tmp_path / "abs" / "Cls" / "absolute.mkv", 3)
    lst = tmp_path / "lists" / "videos.txt"
    lst.write_text("../elsewhere/escape.mkv 0\n"
                   "sub/../sub/v.mkv\n"
                   f"{tmp_path / 'abs' / 'Cls' / 'absolute.mkv'} 2\n"
                   "missing/not_there.mkv\n")
    out = tmp_path / "out"
    p = check_contained(scratch, out, lambda: extract([lst], out, fmt))
    assert p.returncode == 1  # the missing one
    store = flowprep.open_store(out)
    assert sorted(store.video_ids) == ["Cls/absolute", "elsewhere/escape", "sub/v"]
    assert store["Cls/absolute"].label == 2 and store["elsewhere/escape"].label == 0
    (reason,) = store.failures.values()
    assert "no such file" in reason


@pytest.mark.parametrize("fmt", FORMATS)
def test_symlinks_in_the_input_tree(tmp_path, fmt):
    inp = tmp_path / "in"
    outside = video(tmp_path / "outside" / "target.mkv", 4)
    video(inp / "Real" / "r.mkv", 5)
    os.symlink(outside, inp / "Real" / "link_to_outside.mkv")
    os.symlink(tmp_path / "nowhere.mkv", inp / "Real" / "dangling.mkv")
    os.symlink(inp, inp / "Real" / "loop")            # a directory loop
    os.symlink(inp / "Real", inp / "Alias")           # the same folder twice
    fifo = inp / "Real" / "pipe.mkv"
    os.mkfifo(fifo)
    out = tmp_path / "out"
    p = check_contained(tmp_path, out, lambda: extract([inp], out, fmt))
    assert p.returncode == 1
    store = flowprep.open_store(out)
    # each real file once, under the first path found; the loop and the alias add nothing
    ids = sorted(store.video_ids)
    assert len(ids) == 2 and {i.rsplit("/", 1)[1] for i in ids} == {"r", "link_to_outside"}
    fails = {os.path.basename(k): v for k, v in store.failures.items()}
    assert set(fails) == {"dangling.mkv", "pipe.mkv"}
    assert "broken symbolic link" in fails["dangling.mkv"]
    assert "not a regular file" in fails["pipe.mkv"]
    assert os.path.islink(inp / "Real" / "link_to_outside.mkv")  # inputs untouched


@pytest.mark.parametrize("fmt", FORMATS)
def test_names_that_collide_with_the_store_or_each_other(tmp_path, fmt):
    inp = tmp_path / "in"
    names = ["flowprep.json.mkv", "classes.txt.mkv", "RGB_LIST.TXT.mkv", "flow_list.txt/x.mkv",
             "a.mkv", "a/b.mkv", "x.avi", "x.mkv", "Case.mkv", "case.mkv", "new\nline.mkv",
             ".hidden.mkv", ".flowprep/inside.mkv", "-dash.mkv"]
    for k, n in enumerate(names):
        video(inp / n, k)
    out = tmp_path / "out"
    p = check_contained(tmp_path, out, lambda: extract([inp], out, fmt))
    assert p.returncode == 0, p.stderr
    store = flowprep.open_store(out)
    ids = store.video_ids
    assert len(ids) == len(names) == len({i.casefold() for i in ids})
    assert "a/b" in ids and "a_mkv" in ids and "a" not in ids
    assert {"x", "x_mkv", "flowprep.json_", "classes.txt_", "RGB_LIST.TXT_",
            "flow_list.txt_/x", "new_line", "_hidden", "_flowprep/inside", "-dash"} <= set(ids)
    # the store's own files are intact and the lists parse
    assert store.info["format"] == fmt
    from flowprep.verify import verify_store
    assert [str(x) for x in verify_store(str(out))] == []
    lines = (out / "rgb_list.txt").read_text().splitlines()
    assert len(lines) == len(names)


def test_same_relative_path_under_two_roots_gets_two_ids(tmp_path):
    for r in ("root1", "root2"):
        video(tmp_path / r / "Cls" / "v.mkv")
    vids = discover([str(tmp_path / "root1"), str(tmp_path / "root2")])
    assert [v.video_id for v in vids] == ["Cls/v", "Cls/v_mkv"]
    assert vids[0].label == vids[1].label
    # and stable: the same inputs give the same ids in every run (and every shard)
    assert [v.video_id for v in discover([str(tmp_path / "root1"), str(tmp_path / "root2")])] \
        == ["Cls/v", "Cls/v_mkv"]


def test_a_symlinked_class_folder_pointing_out_of_out_is_refused(tmp_path):
    """A JPEG store whose class folder was replaced by a symlink to elsewhere: videos are
    not written through it (safe_join checks the real path)."""
    inp = tmp_path / "in"
    video(inp / "Cls" / "v.mkv")
    out = tmp_path / "out"
    assert extract([inp], out, "jpeg").returncode == 0
    import shutil
    shutil.rmtree(out / "Cls")
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", out / "Cls")
    p = extract([inp], out, "jpeg")
    assert p.returncode == 1 and "Traceback" not in p.stderr
    assert "resolves outside the store" in p.stderr
    assert os.listdir(tmp_path / "elsewhere") == []
