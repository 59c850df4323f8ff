"""The annotation lists' content, from any store reader (local or on object storage).

See lists.py for the files and how concurrent runs rewrite them.
"""
from __future__ import annotations

from typing import Dict, Optional

from .base import task_of


def list_texts(store, info) -> Dict[str, Optional[str]]:
    """The lists of ``store`` (its flowprep.json ``info``): file name -> text, or None for
    a list the store must not have (a --task store holds none of it)."""
    store_task = task_of(info.get("config", {}))
    rgb, flow, wflow = [], [], []
    for vid in store.video_ids:
        m = store.meta(vid)
        label = m.get("label")
        label = 0 if label is None else int(label)
        if task_of(m) != "flow":
            rgb.append(f"{vid} {int(m['num_frames'])} {label}\n")
        if task_of(m) != "rgb":
            flow.append(f"{vid} {int(m['num_flows'])} {label}\n")
            if m.get("warped"):
                wflow.append(f"{vid} {int(m['num_flows'])} {label}\n")
    out: Dict[str, Optional[str]] = {}
    for name, lines, kind in (("rgb_list.txt", rgb, "flow"), ("flow_list.txt", flow, "rgb")):
        out[name] = "".join(lines) if lines or store_task != kind else None
    # wflow_list.txt only in stores with --warped videos (kept, emptied, once it exists)
    out["wflow_list.txt"] = "".join(wflow) if wflow else (None if store_task == "rgb" else "")
    out["classes.txt"] = "".join(f"{i} {c}\n" for i, c in enumerate(info.get("classes", [])))
    return out
