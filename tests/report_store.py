"""A store with known content for the report tests: a static video, a texture panned
beyond the bound, a normal real clip, a corrupt input (fails with a reason)."""
from __future__ import annotations

import os
import shutil
from typing import Dict

import numpy as np

from synth import sample_videos, texture, translated_frames, write_video

BOUND = 4.0           #: --bound of the store: the pan below moves (6, 5) px a frame
PAN = (6.0, 5.0)
H, W = 72, 96


def make_inputs(root: str) -> Dict[str, str]:
    """Input videos under ``root`` in class folders; returns role -> video id."""
    os.makedirs(os.path.join(root, "Still"), exist_ok=True)
    os.makedirs(os.path.join(root, "Pan"), exist_ok=True)
    os.makedirs(os.path.join(root, "Bike"), exist_ok=True)
    os.makedirs(os.path.join(root, "Broken"), exist_ok=True)
    still = np.repeat(np.clip(np.rint(texture(H, W, seed=3)), 0, 255).astype(np.uint8)[..., None],
                      3, axis=2)
    write_video(os.path.join(root, "Still", "v_still.mkv"), [still] * 8)
    write_video(os.path.join(root, "Pan", "v_pan.mkv"), translated_frames(8, H, W, *PAN, seed=5))
    bikes = [p for p in sample_videos() if os.path.basename(p) == "bikes.mp4"][0]
    shutil.copy(bikes, os.path.join(root, "Bike", "v_bike.mp4"))
    with open(os.path.join(root, "Broken", "v_broken.mp4"), "wb") as f:
        f.write(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    return {"static": "Still/v_still", "panned": "Pan/v_pan", "real": "Bike/v_bike",
            "corrupt": "Broken/v_broken"}


def make_store(inputs: str, out: str, fmt: str = "jpeg") -> None:
    """Extract ``inputs`` into ``out``: small frames, 10 frames of the real clip at most."""
    import flowprep
    flowprep.extract([inputs], out, algo="farneback", bound=BOUND, short_side=0,
                     size=(W, H), end=0.4, jobs=1, format=fmt)
