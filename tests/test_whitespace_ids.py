"""Video ids whose input names hold whitespace (issue 17): every annotation list line splits
into "<video dir> <count> <label>" as mmaction2 (line.split()) and TSN-pytorch
(line.strip().split(' ')) split it, in every store format; the path's own spelling is kept
in the meta (original_id); names without whitespace keep their ids."""
import os
import subprocess
import sys

import pytest

import flowprep
from flowprep.inputs import discover
from flowprep.store import FORMATS
from synth import translated_video

NAMES = {  # input path under the root -> the id it gets
    "class A/ünïcødé 視頻.mkv": "class_A/ünïcødé_視頻",
    "cls/with space.mkv": "cls/with_space_mkv",  # the real "with_space" keeps its id
    "cls/with_space.mkv": "cls/with_space",
    "cls/tab\there\u3000wide.mkv": "cls/tab_here_wide",
    "cls/plain.mkv": "cls/plain",
}


def make_inputs(root):
    for k, name in enumerate(NAMES):
        path = os.path.join(root, name)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        translated_video(path, n=3, h=32, w=48, seed=k)
    return root


def test_discover_replaces_whitespace_and_keeps_the_spelling(tmp_path):
    vids = {v.video_id: v for v in discover([make_inputs(str(tmp_path / "in"))])}
    assert set(vids) == set(NAMES.values())
    assert vids["class_A/ünïcødé_視頻"].original_id == "class A/ünïcødé 視頻"
    assert vids["class_A/ünïcødé_視頻"].class_name == "class_A"
    assert vids["cls/with_space_mkv"].original_id == "cls/with space"
    assert vids["cls/with_space"].original_id is None and vids["cls/plain"].original_id is None
    # a list line with a segment: the suffix is kept after the replaced name
    lst = tmp_path / "in" / "list.txt"
    lst.write_text("cls/with space.mkv 1.0 2.0\n")
    (seg,) = discover([str(lst)])
    assert (seg.video_id, seg.original_id) == ("cls/with_space@1-2", "cls/with space@1-2")


@pytest.mark.parametrize("fmt", FORMATS)
def test_lists_split_into_three_fields_in_every_format(tmp_path, fmt):
    inp = make_inputs(str(tmp_path / "in"))
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "-c", "from flowprep.cli.main import main; main()",
                        "extract", inp, "-o", str(out), "--algo", "farneback", "--short-side", "0",
                        "--jobs", "2", "--format", fmt, "--no-progress"],
                       capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr
    store = flowprep.open_store(str(out))
    assert set(store.video_ids) == set(NAMES.values())
    for name in ("rgb_list.txt", "flow_list.txt"):
        lines = (out / name).read_text(encoding="utf-8").splitlines()
        assert len(lines) == len(NAMES)
        for line in lines:
            mm = line.split()  # mmaction2's RawframeDataset
            tsn = line.strip().split(" ")  # TSN-pytorch's VideoRecord
            assert len(mm) == 3 and tsn == mm, line
            vid, count, label = mm
            video = store[vid]
            assert int(count) == (video.num_frames if name == "rgb_list.txt" else video.num_flows)
            assert int(label) == video.meta["label"]
            if fmt == "jpeg":  # the folder a rawframe loader opens
                assert os.path.isfile(out / vid / "img_00001.jpg")
    assert store["class_A/ünïcødé_視頻"].meta["original_id"] == "class A/ünïcødé 視頻"
    assert store["cls/tab_here_wide"].meta["original_id"] == "cls/tab\there\u3000wide"
    assert "original_id" not in store["cls/plain"].meta  # unchanged meta for plain names
    # a name is found by its own spelling too (the video whose original_id it is)
    assert store["cls/with space"].video_id == "cls/with_space_mkv"
    assert store["cls/with_space"].video_id == "cls/with_space"
    assert "class A/ünïcødé 視頻" in store and "cls/no such" not in store
    with pytest.raises(KeyError):
        store["cls/no such"]
    classes = (out / "classes.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert all(len(c.split()) == 2 for c in classes), classes
