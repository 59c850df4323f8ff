"""How tests/data/loader_ref/ was made: small committed stores and the loader's outputs on them.

The loader was split into a package (issue 14) after these outputs were recorded from the
single-module loader (flowprep/loader.py at commit b2ad0aa). tests/test_loader_ref.py reads
the committed stores and checks that today's loader gives the same arrays, bit for bit.

The stores are committed (not re-extracted by the test), so later changes to the flow
algorithms, decoders or extraction do not move the reference.

    python tests/make_loader_ref.py stores    # once: extract the stores (needs the sample clips)
    python tests/make_loader_ref.py outputs   # record expected.json + arrays.npz from the loader

stores: the first frames of two real sample clips (data/samples), resized to 80x60 and
written losslessly (FFV1), extracted with --algo dis --size 80x60 into
  jpeg/      JPEG store, fixed quantization (B = 20), --backward
  hdf5/      HDF5 store (JPEG payload), the same
  adaptive/  JPEG store, adaptive quantization, --step 2
Each holds Biking/v_Biking_g01_c01 (16 frames) and Talking/v_Talking_g01_c01 (7 frames: short
enough that L = 10 windows pad).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import tempfile
from typing import Any, Dict, List, Tuple

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
REF = os.path.join(HERE, "data", "loader_ref")
SAMPLES = os.path.join(HERE, "..", "data", "samples")
CLIPS = {"Biking/v_Biking_g01_c01": 16, "Talking/v_Talking_g01_c01": 7}
STORES = {
    "jpeg": dict(format="jpeg", backward=True),
    "hdf5": dict(format="hdf5", backward=True),
    "adaptive": dict(format="jpeg", quant="adaptive", step=2),
}

# (name, store, TwoStreamDataset keyword arguments, [(index, epoch), ...]); seeds vary per case
_TRAIN = [(0, 0), (0, 1), (0, 2), (1, 0), (1, 3)]
_EVAL = [(0, 0), (1, 0)]
CASES: List[Tuple[str, str, Dict[str, Any], List[Tuple[int, int]]]] = []


def _add(name, stores, kw, items):
    for st in stores:
        CASES.append((f"{name}[{st}]", st, kw, items))


_add("flow-train-multiscale", ("jpeg", "hdf5"),
     dict(modality="flow", length=5, num_segments=3, crop_size=40, seed=0), _TRAIN)
_add("flow-train-multiscale-seed7", ("jpeg",),
     dict(modality="flow", length=5, num_segments=3, crop_size=40, seed=7), _TRAIN)
_add("flow-train-random-mean", ("jpeg", "hdf5"),
     dict(modality="flow", length=4, num_segments=2, crop_size=48, crop="random",
          mean_subtract=True, seed=1), _TRAIN)
_add("flow-train-center-noflip", ("jpeg",),
     dict(modality="flow", length=3, crop_size=40, crop="center", flip=False, seed=2), _TRAIN)
_add("flow-train-uint8", ("jpeg", "hdf5"),
     dict(modality="flow", length=5, num_segments=2, crop_size=40, dtype="uint8", seed=3), _TRAIN)
_add("flow-train-wholeframe", ("jpeg",),
     dict(modality="flow", length=4, crop_size=None, seed=4), _TRAIN)
_add("flow-val", ("jpeg", "hdf5"),
     dict(modality="flow", length=5, num_segments=3, mode="val", crop_size=40), _EVAL)
_add("flow-test", ("jpeg",),
     dict(modality="flow", length=5, mode="test", test_snippets=4, crop_size=40), _EVAL)
_add("flow-test-tencrop", ("jpeg", "hdf5"),
     dict(modality="flow", length=3, mode="test", test_snippets=3, test_crops=10, crop_size=48), _EVAL)
_add("flow-test-tencrop-uint8", ("jpeg",),
     dict(modality="flow", length=3, mode="test", test_snippets=3, test_crops=10, crop_size=48,
          dtype="uint8"), _EVAL)
_add("flow-pad-repeat", ("jpeg",),
     dict(modality="flow", length=10, num_segments=2, crop_size=40, seed=5), _TRAIN)
_add("flow-pad-loop", ("jpeg",),
     dict(modality="flow", length=10, num_segments=2, crop_size=40, pad="loop", seed=5), _TRAIN)
_add("flow-bidirectional", ("jpeg", "hdf5"),
     dict(modality="flow", length=4, num_segments=2, crop_size=40, bidirectional=True,
          mean_subtract=True, seed=6), _TRAIN)
_add("flow-bidirectional-uint8-test", ("jpeg",),
     dict(modality="flow", length=6, bidirectional=True, mode="test", test_snippets=3,
          crop_size=40, dtype="uint8"), _EVAL)
_add("flow-trajectory", ("jpeg", "hdf5"),
     dict(modality="flow", length=4, num_segments=2, crop_size=40, stacking="trajectory",
          mean_subtract=True, seed=8), _TRAIN)
_add("flow-trajectory-uint8", ("jpeg",),
     dict(modality="flow", length=4, crop_size=40, stacking="trajectory", dtype="uint8", seed=9),
     _TRAIN)
_add("flow-trajectory-bidirectional-tencrop", ("jpeg",),
     dict(modality="flow", length=4, stacking="trajectory", bidirectional=True, mode="test",
          test_snippets=2, test_crops=10, crop_size=48), _EVAL)
_add("rgb-train", ("jpeg", "hdf5"),
     dict(modality="rgb", num_segments=3, crop_size=40, seed=10), _TRAIN)
_add("rgb-train-meanstd", ("jpeg",),
     dict(modality="rgb", num_segments=2, crop_size=40, rgb_mean=(0.485, 0.456, 0.406),
          rgb_std=(0.229, 0.224, 0.225), seed=11), _TRAIN)
_add("rgb-test-tencrop-uint8", ("jpeg", "hdf5"),
     dict(modality="rgb", mode="test", test_snippets=5, test_crops=10, crop_size=48,
          dtype="uint8"), _EVAL)
_add("rgbdiff-train", ("jpeg", "hdf5"),
     dict(modality="rgbdiff", length=5, num_segments=2, crop_size=40, seed=12), _TRAIN)
_add("rgbdiff-val-uint8", ("jpeg",),
     dict(modality="rgbdiff", length=4, mode="val", crop_size=40, dtype="uint8"), _EVAL)
_add("two-stream-train", ("jpeg", "hdf5"),
     dict(modality="two-stream", length=5, num_segments=3, crop_size=40, mean_subtract=True,
          seed=13), _TRAIN)
_add("two-stream-train-uint8", ("jpeg",),
     dict(modality="two-stream", length=4, num_segments=2, crop_size=40, dtype="uint8", seed=14),
     _TRAIN)
_add("two-stream-test-tencrop", ("jpeg",),
     dict(modality="two-stream", length=3, mode="test", test_snippets=3, test_crops=10,
          crop_size=48), _EVAL)
_add("adaptive-flow-train", ("adaptive",),
     dict(modality="flow", length=3, num_segments=2, crop_size=40, seed=15), _TRAIN)
_add("adaptive-flow-train-uint8", ("adaptive",),
     dict(modality="flow", length=3, num_segments=2, crop_size=40, dtype="uint8", seed=16), _TRAIN)
_add("adaptive-two-stream-mean", ("adaptive",),
     dict(modality="two-stream", length=3, crop_size=None, mean_subtract=True, seed=17), _TRAIN)
_add("adaptive-trajectory", ("adaptive",),
     dict(modality="flow", length=3, crop_size=40, stacking="trajectory", seed=18), _TRAIN)

# cases whose first sample is also saved whole in arrays.npz (small ones)
FULL = ("flow-train-multiscale[jpeg]", "flow-bidirectional[hdf5]", "rgb-train[jpeg]",
        "adaptive-flow-train[adaptive]")


def digest(value: Any) -> Any:
    """A JSON-able record of one sample value: arrays by dtype, shape and sha256 of their bytes."""
    if isinstance(value, np.ndarray):
        return {"dtype": str(value.dtype), "shape": list(value.shape),
                "sha256": hashlib.sha256(np.ascontiguousarray(value).tobytes()).hexdigest()}
    if isinstance(value, np.generic):
        return digest(np.asarray(value))
    return value


def sample_digest(sample: Dict[str, Any]) -> Dict[str, Any]:
    return {k: digest(v) for k, v in sorted(sample.items())}


def store_path(name: str) -> str:
    return os.path.join(REF, name)


def run_cases(dataset_cls=None):
    """Yield (case name, (index, epoch), sample) for every recorded case."""
    if dataset_cls is None:
        from flowprep.loader import TwoStreamDataset as dataset_cls
    for name, st, kw, items in CASES:
        ds = dataset_cls(store_path(st), **kw)
        for index, epoch in items:
            yield name, (index, epoch), ds[(index, epoch)]


def make_stores() -> None:
    import cv2
    import flowprep
    sys.path.insert(0, HERE)
    from synth import write_video
    work = tempfile.mkdtemp(prefix="loader-ref-")
    try:
        src = os.path.join(work, "videos")
        for vid, n in CLIPS.items():
            cap = cv2.VideoCapture(os.path.join(SAMPLES, vid + ".mp4"))
            frames = []
            while len(frames) < n:
                ok, bgr = cap.read()
                assert ok, vid
                frames.append(cv2.resize(bgr, (80, 60), interpolation=cv2.INTER_AREA)[..., ::-1])
            cap.release()
            os.makedirs(os.path.dirname(os.path.join(src, vid)), exist_ok=True)
            write_video(os.path.join(src, vid + ".mkv"), frames)
        for name, opts in STORES.items():
            out = store_path(name)
            shutil.rmtree(out, ignore_errors=True)
            rep = flowprep.extract([src], out, algo="dis", device="cpu", size=(80, 60), jobs=1,
                                   **opts)
            assert rep.ok, rep.failed
            shutil.rmtree(os.path.join(out, ".flowprep"), ignore_errors=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def record_outputs() -> None:
    expected: Dict[str, Any] = {}
    full: Dict[str, np.ndarray] = {}
    for name, (index, epoch), s in run_cases():
        expected.setdefault(name, {})[f"{index},{epoch}"] = sample_digest(s)
        if name in FULL and (index, epoch) == CASES_ITEMS[name][0]:
            for k, v in s.items():
                if isinstance(v, np.ndarray):
                    full[f"{name}|{k}"] = v
    with open(os.path.join(REF, "expected.json"), "w") as fh:
        json.dump(expected, fh, indent=0, sort_keys=True)
    np.savez_compressed(os.path.join(REF, "arrays.npz"), **full)


CASES_ITEMS = {name: items for name, _, _, items in CASES}

if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else ""
    if what == "stores":
        make_stores()
    elif what == "outputs":
        record_outputs()
    else:
        sys.exit(__doc__)
