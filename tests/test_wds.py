"""The wds store (issue 18): webdataset tar shards, their reader, convert, streaming, bad shards.

The contract suite (test_store_contract.py) runs over every registered format,
wds included; here is what is particular to wds: the real ``webdataset``
package reads the shards and finds the JPEG store's bytes, keys of awkward
ids, byte-for-byte conversion between all three formats, the streaming loader
over 2 ranks x 2 DataLoader workers, and damaged shards (verify names the shard
and the member; the loaders raise a StoreError naming them).
"""
from __future__ import annotations

import glob
import json
import os
import shutil
import tarfile

import numpy as np
import pytest

import flowprep
from flowprep.errors import StoreError
from flowprep.store import registry
from flowprep.store.wds import decode_key, encode_key
from flowprep.verify import verify_store
from synth import translated_frames, write_video
from test_store_contract import BASE_OPTS, MOTION, copy_store, make_dataset, make_store, signature

os.environ.setdefault("HDF5_USE_FILE_LOCKING", "FALSE")

AWKWARD = ["Café au lait/v 1.2", "dots.in.dir/a.b.c", "x/ünïcödé name", "50%/a%2Eb"]
#: the ids extract gives them: whitespace becomes "_" (flowprep/names.py; the meta keeps
#: the original spelling), dots, "%" and non-ASCII letters stay
STORED = [v.replace(" ", "_") for v in AWKWARD]


def shard_paths(root):
    return sorted(glob.glob(os.path.join(root, "shards", "*.tar")))


def jpeg_files(root):
    """{video_id: {file name: bytes}} of a JPEG store (meta.json included)."""
    store = flowprep.open_store(root)
    out = {}
    for vid in store.video_ids:
        d = os.path.join(root, vid)
        out[vid] = {n: open(os.path.join(d, n), "rb").read() for n in os.listdir(d)}
    return out


# --------------------------------------------------------------------------------------
# keys


@pytest.mark.parametrize("vid", AWKWARD + ["Biking/v_Biking_g01_c01", "/lead", "a//b", "end/"])
def test_keys_are_dot_free_reversible_and_what_webdataset_splits(vid):
    from webdataset.tariterators import base_plus_ext
    key = encode_key(vid)
    assert "." not in key and " " not in key and key.isascii()
    assert decode_key(key) == vid
    assert not key.startswith("/") and "//" not in key and not key.endswith("/")
    assert base_plus_ext(f"{key}.flow_x_00001.jpg") == (key, "flow_x_00001.jpg")
    assert base_plus_ext(f"{key}.meta.json") == (key, "meta.json")


def test_plain_ids_are_their_own_key():
    assert encode_key("Biking/v_Biking_g01_c01") == "Biking/v_Biking_g01_c01"
    assert encode_key("a.b c") == "a%2Eb%20c"


# --------------------------------------------------------------------------------------
# the real webdataset package


def test_webdataset_reads_the_shards_and_finds_the_jpeg_stores_bytes():
    import webdataset
    wds_path, _ = make_store("wds")
    jpeg_path, _ = make_store("jpeg")
    want = jpeg_files(jpeg_path)
    got = {}
    for sample in webdataset.WebDataset(shard_paths(wds_path), shardshuffle=False):
        fields = {k: v for k, v in sample.items() if not k.startswith("__")}
        meta = json.loads(fields["meta.json"])
        assert decode_key(sample["__key__"]) == meta["video_id"]
        got[meta["video_id"]] = fields
    assert sorted(got) == sorted(MOTION)
    assert got == want  # same field names as the JPEG store's files, same bytes


def test_shards_are_plain_posix_tar_with_one_sample_per_video():
    path, _ = make_store("wds")
    names = []
    for shard in shard_paths(path):
        with tarfile.open(shard) as tf:  # plain, uncompressed
            names += tf.getnames()
    keys = [n.split(".", 1)[0] for n in names]
    assert sorted(set(keys)) == sorted(encode_key(v) for v in MOTION)
    # a sample's members are consecutive, meta.json last
    for key in set(keys):
        idx = [i for i, k in enumerate(keys) if k == key]
        assert idx == list(range(idx[0], idx[-1] + 1))
        assert names[idx[-1]] == f"{key}.meta.json"


# --------------------------------------------------------------------------------------
# convert: every pair, byte for byte


def test_convert_round_trips_through_every_format(tmp_path):
    from flowprep.convert import convert
    src, _ = make_store("jpeg", "backward", backward=True)
    before = signature(flowprep.open_store(src))
    files = jpeg_files(src)
    chain = ["wds", "hdf5", "wds", "jpeg", "hdf5", "jpeg"]
    prev = src
    for k, fmt in enumerate(chain):
        dst = str(tmp_path / f"{k}-{fmt}")
        rep = convert(prev, dst, fmt, shard_size=40_000)
        assert rep["videos"] == len(MOTION)
        store = flowprep.open_store(dst)
        assert store.format == fmt
        assert signature(store) == before, (prev, fmt)
        assert [str(p) for p in verify_store(dst)] == []
        if fmt == "jpeg":
            assert jpeg_files(dst) == files  # the very files, byte for byte
        prev = dst


def test_convert_raw_hdf5_payload_to_wds(tmp_path):
    from flowprep.convert import convert
    src, _ = make_store("hdf5", "raw", payload="raw")
    dst = str(tmp_path / "w")
    convert(src, dst, "wds")
    s, d = flowprep.open_store(src), flowprep.open_store(dst)
    assert "payload" not in d.config and d.info["config_key"] != s.info["config_key"]
    v, w = s["MoveRight/a"], d["MoveRight/a"]
    err = np.abs(v.flow_quantized(2).astype(int) - w.flow_quantized(2).astype(int))
    assert err.mean() < 1.5  # JPEG q95 of the raw planes: the one lossy step
    assert w.rgb_bytes(3) == v.rgb_bytes(3)
    assert verify_store(dst) == []


# --------------------------------------------------------------------------------------
# awkward ids


@pytest.fixture(scope="module")
def awkward_store(tmp_path_factory):
    root = tmp_path_factory.mktemp("awk")
    src = root / "in"
    for k, vid in enumerate(AWKWARD):
        p = src / (vid + ".mkv")
        p.parent.mkdir(parents=True, exist_ok=True)
        write_video(str(p), translated_frames(5, 32, 48, 1.0, 0.0, seed=k))
    out = str(root / "w")
    rep = flowprep.extract([str(src)], out, format="wds", **BASE_OPTS)
    assert sorted(rep.published) == sorted(STORED) and not rep.failed
    return out


def test_awkward_ids_read_back_and_convert(awkward_store, tmp_path):
    import webdataset
    store = flowprep.open_store(awkward_store)
    assert store.video_ids == sorted(STORED)
    ids = set()
    for sample in webdataset.WebDataset(shard_paths(awkward_store), shardshuffle=False):
        meta = json.loads(sample["meta.json"])
        assert decode_key(sample["__key__"]) == meta["video_id"]
        assert "." not in sample["__key__"]
        ids.add(meta["video_id"])
        assert sample["img_00005.jpg"] == store[meta["video_id"]].rgb_bytes(4)
    assert ids == set(STORED)
    for original, stored in zip(AWKWARD, STORED):  # either spelling finds the video
        assert original in store and store[original].video_id == stored
    assert verify_store(awkward_store) == []
    from flowprep.convert import convert
    jp = str(tmp_path / "j")
    convert(awkward_store, jp, "jpeg")
    back = str(tmp_path / "w2")
    convert(jp, back, "wds")
    assert signature(flowprep.open_store(back)) == signature(store)
    with open(os.path.join(awkward_store, "flow_list.txt"), encoding="utf-8") as fh:
        assert sorted(line.rsplit(" ", 2)[0] for line in fh) == sorted(STORED)


# --------------------------------------------------------------------------------------
# streaming


@pytest.fixture(scope="module")
def many_store(tmp_path_factory):
    """7 videos in 7 shards (a shard size below one video): more units than 2 x 2 readers,
    not a multiple of them."""
    root = tmp_path_factory.mktemp("many")
    src = root / "in"
    for k in range(7):
        p = src / f"c{k % 3}" / f"v{k}.mkv"
        p.parent.mkdir(parents=True, exist_ok=True)
        write_video(str(p), translated_frames(6 + k % 3, 48, 64, 1.0 + k / 4, -0.5, seed=k))
    out = str(root / "w")
    flowprep.extract([str(src)], out, format="wds", shard_size=1000, **BASE_OPTS)
    assert len(shard_paths(out)) == 7
    return out


OPTS = dict(modality="two-stream", length=3, num_segments=2, crop_size=32, seed=11)


def _read_rank(path, rank, epoch, sequential=True):
    import torch.utils.data as tud
    from flowprep.loader import StreamingTwoStreamDataset
    ds = StreamingTwoStreamDataset(path, rank=rank, world_size=2, shuffle_buffer=3,
                                   sequential=sequential, **OPTS)
    ds.set_epoch(epoch)
    loader = tud.DataLoader(ds, batch_size=None, num_workers=2,
                            multiprocessing_context="fork")
    return list(loader)


@pytest.mark.parametrize("epoch,sequential", [(0, True), (1, True), (1, False)])
def test_streaming_2_ranks_x_2_workers_every_video_once_equal_to_map_style(many_store, epoch,
                                                                          sequential):
    from flowprep.loader import StreamingTwoStreamDataset, TwoStreamDataset
    ref = TwoStreamDataset(many_store, **OPTS)
    samples = (_read_rank(many_store, 0, epoch, sequential)
               + _read_rank(many_store, 1, epoch, sequential))
    got = sorted(s["video_id"] for s in samples)
    assert got == sorted(ref.video_ids)  # every video exactly once over the ranks and workers
    for s in samples:
        want = ref[s["index"], epoch]
        assert s["video_id"] == want["video_id"] and s["label"] == want["label"]
        for k, v in want.items():
            if isinstance(v, np.ndarray):
                assert np.array_equal(np.asarray(s[k]), v), (s["video_id"], k)
    ds = StreamingTwoStreamDataset(many_store, rank=0, world_size=2, **OPTS)
    assert sum(ds.samples_per_rank(num_workers=2, epoch=epoch)) == 7


def test_streaming_order_changes_with_the_epoch_not_the_data(many_store):
    from flowprep.loader import StreamingTwoStreamDataset
    ds = StreamingTwoStreamDataset(many_store, **OPTS)
    a = [s["video_id"] for s in ds]
    ds.set_epoch(1)
    b = [s["video_id"] for s in ds]
    assert sorted(a) == sorted(b) == ds.video_ids and a != b
    ds.set_epoch(0)
    assert [s["video_id"] for s in ds] == a  # deterministic per (seed, epoch)


def test_streaming_by_members_reads_only_what_samples_use_in_shard_order(many_store,
                                                                         monkeypatch):
    """sequential=False: the same samples in the same order, each video read by byte
    range (its members the sample uses and meta.json), never the shard front to back."""
    from flowprep.loader import StreamingTwoStreamDataset
    from flowprep.store.wds.store import WdsStore
    whole = [(s["video_id"], s["flow"].tobytes()) for s in StreamingTwoStreamDataset(
        many_store, **OPTS)]
    read, opened = [], []
    pread = WdsStore.read_range
    monkeypatch.setattr(WdsStore, "read_range",
                        lambda self, shard, off, size, member: read.append(member)
                        or pread(self, shard, off, size, member))
    monkeypatch.setattr(WdsStore, "open_shard_stream", lambda self, shard: opened.append(shard))
    ds = StreamingTwoStreamDataset(many_store, sequential=False, **OPTS)
    assert [(s["video_id"], s["flow"].tobytes()) for s in ds] == whole and not opened
    table = flowprep.open_store(many_store)
    members = sum(len(v["members"]) for u, _ in table.stream_units()
                  for v in table.members_of(u)["videos"].values())
    assert 0 < len(read) < members / 2  # a sample's members, not every member
    with pytest.raises(flowprep.errors.ConfigError, match="sequential"):
        StreamingTwoStreamDataset(many_store, sequential="no", **OPTS)


def test_streaming_needs_a_seed_with_several_ranks(many_store):
    from flowprep.loader import StreamingTwoStreamDataset
    ds = StreamingTwoStreamDataset(many_store, rank=0, world_size=2, modality="flow")
    with pytest.raises(flowprep.errors.ConfigError, match="seed"):
        next(iter(ds))


def test_streaming_reads_every_format_alike():
    from flowprep.loader import StreamingTwoStreamDataset
    runs = {}
    for fmt in registry.names():
        path, _ = make_store(fmt)
        ds = StreamingTwoStreamDataset(path, mode="val", **{k: v for k, v in OPTS.items()})
        runs[fmt] = {s["video_id"]: s["flow"].tobytes() + s["rgb"].tobytes() for s in ds}
    assert runs["jpeg"] == runs["hdf5"] == runs["wds"]


def test_streaming_module_does_not_import_torch():
    import subprocess
    import sys
    code = ("import sys, flowprep.loader, flowprep.loader.streaming; "
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# --------------------------------------------------------------------------------------
# damaged shards: verify names shard and member, the loaders raise a StoreError


def _damaged(tmp_path, name="s"):
    src, _ = make_store("wds")
    return copy_store(src, tmp_path / name)


def _member(root, vid, field):
    store = flowprep.open_store(root)
    e = store.entries[vid]
    _, key, members = store._video_members(vid)
    return os.path.join(root, "shards", e["shard"]), f"{key}.{field}", members[field]


def test_corrupt_member(tmp_path):
    from flowprep.loader import StreamingTwoStreamDataset
    root = _damaged(tmp_path)
    shard, member, (off, size, _) = _member(root, "MoveRight/a", "flow_x_00003.jpg")
    with open(shard, "r+b") as fh:
        fh.seek(off + size // 2)
        b = fh.read(1)
        fh.seek(off + size // 2)
        fh.write(bytes([b[0] ^ 0xFF]))
    problems = [str(p) for p in verify_store(root)]
    assert any(member in p and "checksum mismatch" in p and os.path.basename(shard) in p
               for p in problems), problems
    v = flowprep.open_store(root)["MoveRight/a"]
    with pytest.raises(StoreError, match=f"{os.path.basename(shard)}: member "
                                         f"{member.replace('/', '.')}: checksum"):
        v.flow(2)
    v.flow(1)  # the others read fine
    with pytest.raises(StoreError, match=f"{os.path.basename(shard)}: member "
                                         f"{member}: checksum mismatch"):
        # a stack of 7 flows holds every flow of MoveRight/a (the streaming reader checks
        # the members a sample reads)
        list(StreamingTwoStreamDataset(root, modality="flow", length=7, seed=0))


def test_truncated_member(tmp_path):
    from flowprep.loader import StreamingTwoStreamDataset, TwoStreamDataset
    root = _damaged(tmp_path)
    shard, member, (off, size, _) = _member(root, "MoveRight/a", "img_00004.jpg")
    with open(shard, "r+b") as fh:
        fh.truncate(off + size // 2)
    problems = [str(p) for p in verify_store(root)]
    assert any("truncated" in p and os.path.basename(shard) in p for p in problems), problems
    assert any(member in p and "truncated" in p for p in problems), problems
    store = flowprep.open_store(root)
    with pytest.raises(StoreError, match=rf"{os.path.basename(shard)}: member MoveRight/a\.\S+: "
                                         rf"truncated"):
        store["MoveRight/a"].rgb(3)  # its meta.json, written last, is cut off too
    with pytest.raises(StoreError, match=os.path.basename(shard)):
        list(StreamingTwoStreamDataset(root, modality="rgb", seed=0))
    ds = TwoStreamDataset(root, modality="rgb", seed=0)
    with pytest.raises(StoreError):
        [ds[i] for i in range(len(ds)) for _ in range(20)]  # some sample reaches frame 3+


def test_shard_without_index_part_and_index_part_without_shard(tmp_path):
    root = _damaged(tmp_path)
    parts = sorted(glob.glob(os.path.join(root, "index", "*.json")))
    part = json.load(open(parts[0]))
    os.unlink(parts[0])  # the shard stays, unnamed: its videos are not published
    problems = [str(p) for p in verify_store(root)]
    assert any(part["shard"] in p and "no index part names this shard" in p
               for p in problems), problems
    store = flowprep.open_store(root)
    assert not set(part["videos"]) & set(store.video_ids)

    root2 = _damaged(tmp_path, "t")
    shard = shard_paths(root2)[0]
    os.unlink(shard)  # its index part stays
    problems = [str(p) for p in verify_store(root2)]
    assert any(os.path.basename(shard) in p and "missing" in p for p in problems), problems
    from flowprep.loader import StreamingTwoStreamDataset, TwoStreamDataset
    for loader in (TwoStreamDataset, StreamingTwoStreamDataset):
        with pytest.raises(StoreError, match=f"names shard shards/{os.path.basename(shard)}, "
                                             f"which is missing"):
            loader(root2, modality="flow", seed=0)
    # the rerun redoes the lost videos; the store is whole again
    rep = flowprep.extract([make_dataset()], root2, format="wds", **BASE_OPTS)
    assert sorted(rep.published) == sorted(MOTION)
    assert len(TwoStreamDataset(root2, modality="flow", seed=0)) == len(MOTION)


def test_foreign_members(tmp_path):
    from flowprep.loader import StreamingTwoStreamDataset
    root = _damaged(tmp_path)
    shard = shard_paths(root)[0]
    # another tool appends a member: it replaces the end-of-archive blocks
    size = os.path.getsize(shard)
    with open(shard, "r+b") as fh:
        fh.truncate(size - 1024)
        fh.seek(0, 2)
        info = tarfile.TarInfo("README.txt")
        data = b"written by hand\n"
        info.size = len(data)
        fh.write(info.tobuf(tarfile.PAX_FORMAT) + data + b"\0" * (-len(data) % 512) + b"\0" * 1024)
    problems = [str(p) for p in verify_store(root)]
    assert any("README.txt" in p and "foreign" in p and os.path.basename(shard) in p
               for p in problems), problems
    with pytest.raises(StoreError, match="member README.txt: foreign"):
        list(StreamingTwoStreamDataset(root, modality="flow", length=2, seed=0))
    # a whole tar written by another tool, with no index part
    with tarfile.open(os.path.join(root, "shards", "other.tar"), "w") as tf:
        tf.add(__file__, arcname="x.py")
    problems = [str(p) for p in verify_store(root)]
    assert any("other.tar" in p and "no index part" in p for p in problems), problems


# --------------------------------------------------------------------------------------
# writing: resume after a crash mid-shard, abort cuts the video off


def test_aborted_video_is_cut_off_the_shard(tmp_path):
    from flowprep.store.wds import WdsStoreWriter
    src = flowprep.open_store(make_store("jpeg")[0])
    out = str(tmp_path / "w")
    shutil.copytree(make_store("wds")[0], out, ignore=shutil.ignore_patterns("shards", "index"))
    w = WdsStoreWriter(out, str(tmp_path / "tmp"), "t", shard_size=1 << 30)
    from flowprep.store.copy import copy_video
    a, b = src["MoveRight/a"], src["MoveUpLeft/b"]
    vw = w.begin(b.video_id)
    vw.add_rgb_bytes(b.rgb_bytes(0))
    vw.abort()
    copy_video(a, a.meta, w, 95)
    w.close()
    assert w.drain_published() == ["MoveRight/a"]
    with tarfile.open(shard_paths(out)[0]) as tf:
        assert not any(n.startswith("MoveUpLeft") for n in tf.getnames())
    store = flowprep.open_store(out)
    assert store.video_ids == ["MoveRight/a"]
    assert store["MoveRight/a"].rgb_bytes(2) == a.rgb_bytes(2)


def test_resume_with_the_unsealed_shard_left_behind(tmp_path):
    """A run killed while a shard was being written leaves a .tar.tmp in its staging area
    and nothing published from it; the rerun redoes exactly those videos."""
    path, _ = make_store("wds")
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    for part in glob.glob(os.path.join(out, "index", "*.json")):
        os.unlink(part)
    for shard in shard_paths(out):  # as if killed before the rename: staged, never sealed
        stage = os.path.join(out, ".flowprep", "tmp", "deadhost-1-abcdef")
        os.makedirs(stage, exist_ok=True)
        os.rename(shard, os.path.join(stage, os.path.basename(shard) + ".tmp"))
    os.makedirs(os.path.join(out, ".flowprep", "locks"), exist_ok=True)
    open(os.path.join(out, ".flowprep", "locks", "run-deadhost-1-abcdef.lock"), "w").close()
    assert flowprep.open_store(out).video_ids == []
    rep = flowprep.extract([make_dataset()], out, format="wds", **BASE_OPTS)
    assert sorted(rep.published) == sorted(MOTION)
    assert signature(flowprep.open_store(out)) == before
    assert not os.listdir(os.path.join(out, ".flowprep", "tmp"))
    assert verify_store(out) == []


def test_the_next_run_removes_an_unindexed_shard_and_its_member_table(tmp_path):
    """Killed between the member table and the index part: the shard (its writer is gone)
    and its table are deleted by the next run, which redoes the shard's videos."""
    path, _ = make_store("wds")
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    (part,) = glob.glob(os.path.join(out, "index", "*.json"))
    shard = json.load(open(part))["shard"]
    os.unlink(part)
    table = os.path.join(out, "index", "members", shard[:-4] + ".json")
    assert os.path.exists(table)
    rep = flowprep.extract([make_dataset()], out, format="wds", **BASE_OPTS)
    assert sorted(rep.published) == sorted(MOTION)
    assert not os.path.exists(os.path.join(out, "shards", shard)) and not os.path.exists(table)
    assert signature(flowprep.open_store(out)) == before
    assert verify_store(out) == []


@pytest.mark.parametrize("fmt", [tarfile.PAX_FORMAT, tarfile.GNU_FORMAT, tarfile.USTAR_FORMAT])
def test_the_streaming_tar_reader_reads_what_tarfile_writes(fmt, tmp_path):
    """flowprep's sequential tar reader against Python's tarfile: long and non-ASCII names
    (pax records, GNU long names, ustar prefixes), empty members, a directory."""
    import io
    from flowprep.store.wds.tar import iter_members
    names = ["a" * 90 + "/" + "b" * 60 + ".jpg", "short", "empty", "dir/"]
    if fmt != tarfile.USTAR_FORMAT:
        names += ["é/ü name.txt", "c" * 300]
    path = str(tmp_path / "t.tar")
    with tarfile.open(path, "w", format=fmt) as tf:
        for k, name in enumerate(names):
            info = tarfile.TarInfo(name)
            if name.endswith("/"):
                info.type = tarfile.DIRTYPE
                tf.addfile(info)
                continue
            data = bytes(range(256)) * k * 3
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    with tarfile.open(path) as tf:
        want = [(m.name, tf.extractfile(m).read() if m.isreg() else None) for m in tf]
        last = [m for m in tf.getmembers() if m.isreg() and m.size][-1]
    with open(path, "rb") as fh:
        got = [(n.rstrip("/"), None if d is None else bytes(d))  # tarfile drops a dir's "/"
               for n, d in iter_members(fh, path)]
    assert got == want
    with open(path, "r+b") as fh:  # cut inside the last regular member's data
        fh.truncate(last.offset_data + last.size // 2)
    with open(path, "rb") as fh, pytest.raises(StoreError, match=f"t.tar: member {last.name}: "
                                                                 f"truncated"):
        list(iter_members(fh, path))


def test_a_video_written_twice_by_one_writer_goes_to_a_new_shard(tmp_path):
    from flowprep.store.copy import copy_video
    from flowprep.store.wds import WdsStoreWriter
    src = flowprep.open_store(make_store("jpeg")[0])
    out = str(tmp_path / "w")
    shutil.copytree(make_store("wds")[0], out, ignore=shutil.ignore_patterns("shards", "index"))
    a = src["MoveRight/a"]
    with WdsStoreWriter(out, str(tmp_path / "tmp"), "t") as w:
        copy_video(a, a.meta, w, 95)
        copy_video(a, a.meta, w, 95)
    assert len(shard_paths(out)) == 2
    from flowprep.store.lists import write_lists
    write_lists(out)
    assert verify_store(out) == []  # no member of the first copy is foreign anywhere
    from flowprep.loader import StreamingTwoStreamDataset
    assert [s["video_id"] for s in StreamingTwoStreamDataset(out, modality="flow", seed=0)] \
        == ["MoveRight/a"]


def test_index_parts_merge_newest_wins_and_convert_drops_superseded(tmp_path):
    from flowprep.convert import convert
    from flowprep.verify import describe_store
    path, _ = make_store("wds")
    out = copy_store(path, tmp_path / "s")
    before = signature(flowprep.open_store(out))
    old_shards = set(os.listdir(os.path.join(out, "shards")))
    flowprep.extract([make_dataset()], out, format="wds", force=True, **BASE_OPTS)
    store = flowprep.open_store(out)
    assert all(store.entries[v]["shard"] not in old_shards for v in store.video_ids)
    assert signature(store) == before
    d = describe_store(out)
    assert d["superseded"] == len(MOTION) and d["index_parts"] == 2 * len(old_shards)
    dst = str(tmp_path / "c")
    convert(out, dst, "wds")
    assert describe_store(dst)["superseded"] == 0
    assert signature(flowprep.open_store(dst)) == before


def test_ids_with_spaces_from_older_stores_keep_them(tmp_path):
    """Stores made before ids lost their whitespace hold such ids; wds keys escape them."""
    import webdataset
    from flowprep.store.copy import copy_video
    from flowprep.store.lists import write_lists
    from flowprep.store.wds import WdsStoreWriter
    src = flowprep.open_store(make_store("jpeg")[0])
    out = str(tmp_path / "w")
    shutil.copytree(make_store("wds")[0], out, ignore=shutil.ignore_patterns("shards", "index"))
    v = src["MoveRight/a"]
    v.video_id = "old style/v 1.avi copy"
    with WdsStoreWriter(out, str(tmp_path / "tmp"), "t") as w:
        copy_video(v, dict(v.meta, video_id=v.video_id), w, 95)
    write_lists(out)
    store = flowprep.open_store(out)
    assert store.video_ids == ["old style/v 1.avi copy"]
    (sample,) = list(webdataset.WebDataset(shard_paths(out), shardshuffle=False))
    assert sample["__key__"] == "old%20style/v%201%2Eavi%20copy"
    assert sample["flow_y_00003.jpg"] == store["old style/v 1.avi copy"].flow_payload(2)[1]
    from flowprep.loader import StreamingTwoStreamDataset
    assert [s["video_id"] for s in StreamingTwoStreamDataset(out, modality="flow", seed=0)] \
        == ["old style/v 1.avi copy"]


def _ddp_reader(rank, world, port, path, queue):
    import torch.distributed as dist
    from flowprep.loader import StreamingTwoStreamDataset
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        ds = StreamingTwoStreamDataset(path, **OPTS)  # rank and world size from torch.distributed
        got = [s["video_id"] for s in ds]
        everyone = [None] * world
        dist.all_gather_object(everyone, got)
        queue.put((rank, ds.ranks(), everyone))
    finally:
        dist.destroy_process_group()


def test_streaming_takes_rank_and_world_size_from_torch_distributed(many_store):
    import multiprocessing as mp
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_ddp_reader, args=(r, 2, port, many_store, queue))
             for r in range(2)]
    for p in procs:
        p.start()
    results = sorted(queue.get(timeout=120) for _ in procs)
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert [r[1] for r in results] == [(0, 2), (1, 2)]
    everyone = results[0][2]
    assert sorted(everyone[0] + everyone[1]) == flowprep.open_store(many_store).video_ids
    assert not set(everyone[0]) & set(everyone[1])
