"""The loader reproduces, bit for bit, the outputs the single-module loader gave before the split.

tests/data/loader_ref/ holds three small committed stores (real clips, --algo dis; JPEG, HDF5,
adaptive quantization with step 2) and what flowprep/loader.py (commit b2ad0aa) returned for
every case of tests/make_loader_ref.py: each array's dtype, shape and sha256, every scalar, and
a few samples whole. See that script for how they were made.
"""
from __future__ import annotations

import json
import os

import numpy as np
import pytest

import make_loader_ref as ref
from flowprep.store import codec

with open(os.path.join(ref.REF, "expected.json")) as _fh:
    EXPECTED = json.load(_fh)


def test_reference_covers_the_cases():
    assert sorted(EXPECTED) == sorted(name for name, _, _, _ in ref.CASES)
    # the recorded train samples really vary with the epoch (crops, flips, snippets)
    s = EXPECTED["flow-train-multiscale[jpeg]"]
    assert len({s[k]["flow"]["sha256"] for k in ("0,0", "0,1", "0,2")}) == 3
    assert len({json.dumps(s[k]["crop_box"]) for k in ("0,0", "0,1", "0,2")}) >= 2


@pytest.mark.parametrize("crop_decoding", [True, False], ids=["crop-decode", "whole-decode"])
def test_split_loader_reproduces_the_saved_outputs(crop_decoding, monkeypatch):
    if not crop_decoding:
        monkeypatch.setattr(codec, "CROP_DECODER", None)
    elif codec.CROP_DECODER is None:
        pytest.skip("flowprep._jpegcrop not built")
    bad = []
    n = 0
    for name, (index, epoch), sample in ref.run_cases():
        want = EXPECTED[name][f"{index},{epoch}"]
        got = ref.sample_digest(sample)
        n += 1
        if got != want:
            keys = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            bad.append(f"{name} ({index}, {epoch}): {keys}")
    assert n == sum(len(items) for _, _, _, items in ref.CASES)
    assert not bad, "\n".join(bad[:20])


def test_split_loader_reproduces_the_saved_whole_arrays():
    arrays = np.load(os.path.join(ref.REF, "arrays.npz"))
    names = {k.split("|")[0] for k in arrays.files}
    assert names == set(ref.FULL)
    seen = 0
    for name, item, sample in ref.run_cases():
        if name in names and item == ref.CASES_ITEMS[name][0]:
            for k, v in sample.items():
                if isinstance(v, np.ndarray):
                    np.testing.assert_array_equal(v, arrays[f"{name}|{k}"], err_msg=f"{name} {k}")
                    assert v.dtype == arrays[f"{name}|{k}"].dtype
                    seen += 1
    assert seen == len(arrays.files)
