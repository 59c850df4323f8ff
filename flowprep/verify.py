"""The store tools' library side: ``describe_store`` (flowprep inspect) and ``verify_store``.

``verify_store`` checks what a reader relies on and returns a list of
:class:`Problem` (empty when the store is sound):

- every format: every published video's metadata is sane (required keys,
  num_flows = num_frames - step, one mean vector / clipped fraction / range
  per flow, the store's config key), every frame and flow is present and
  decodes to the stored size, the annotation lists name exactly the
  published videos with their counts (flowprep/store/checks.py and here);
- then each format's own checks, dispatched through the registry
  (flowprep/store/<format>/verify.py): the JPEG store's exact file set; the
  HDF5 store's index parts, shard sizes, groups, tables and crc32s; the wds
  store's index parts, member tables, tar headers, crc32s and foreign members.
"""
from __future__ import annotations

import os
from typing import Any, Callable, Dict, Iterable, List, Optional

from .store import open_store, registry
from .store.base import META_DIR, Store, stored_rgb_frames, stored_streams, task_of
from .store.checks import (MAX_PER_VIDEO, REQUIRED_META, Collector, Problem,  # noqa: F401
                           check_homography_meta, check_meta, meta_or_empty)
from .errors import StoreError

# --------------------------------------------------------------------------------------
# verify


def verify_store(path: str, decode: bool = True,
                 progress: Optional[Callable[[str], None]] = None,
                 storage_options: Optional[Dict[str, Any]] = None) -> List[Problem]:
    """Check a store; returns every problem found (empty list: the store is sound).

    Args:
        path: the store directory, or its fsspec URL (s3://...: every shard is read by
            byte ranges; ``storage_options`` go to fsspec).
        decode: decode every frame (False: counts, files and checksums only).
        progress: called with each video id before it is checked.
    Raises:
        StoreError when ``path`` is not a readable store at all.
    """
    store = open_store(_where(path), storage_options)
    col = Collector()
    registry.get(store.format).verify(store, col, decode, progress)
    _verify_lists(store, col)
    return col.problems


def _where(path: str) -> str:
    """A URL as it is, a local path made absolute."""
    from .remote import is_url
    path = os.fspath(path)
    return path if is_url(path) else os.path.abspath(path)


def _verify_lists(store: Store, col: Collector) -> None:
    store_task = task_of(store.config)
    metas = {vid: meta_or_empty(store, vid) for vid in store.video_ids}

    def listed_in(skip: str):  # videos of another --task (an older run) are not in this list
        if store_task == "both":
            return set(metas)
        return {v for v, m in metas.items() if task_of(m) != skip}

    warped = {v for v, m in metas.items() if m.get("warped") and task_of(m) != "rgb"}
    lists = [("rgb_list.txt", "num_frames", listed_in("flow"), "flow"),
             ("flow_list.txt", "num_flows", listed_in("rgb"), "rgb")]
    texts = {name: store.top_file(name)
             for name in ("rgb_list.txt", "flow_list.txt", "wflow_list.txt")}
    if warped or texts["wflow_list.txt"] is not None:
        lists.append(("wflow_list.txt", "num_flows", warped, "rgb"))  # --warped videos only
    for list_name, key, have, skip in lists:  # skip: the task without this list
        text = texts[list_name]
        if store_task == skip:
            if text is not None:
                col.add(None, "lists", f"{list_name} exists, but the store was extracted with "
                                       f"--task {skip} (run flowprep index)", list_name)
            continue
        if text is None:
            if have:
                col.add(None, "lists", f"{list_name} missing (run flowprep index)", list_name)
            continue
        listed: Dict[str, int] = {}
        for line in text.decode("utf-8").replace("\r\n", "\n").split("\n"):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            fields = line.rsplit(" ", 2)
            try:
                listed[fields[0]] = int(fields[1])
                int(fields[2])
            except (ValueError, IndexError):
                col.add(None, "lists", f"{list_name}: unparsable line {line!r}", list_name)
        stale = sorted(set(listed) - have)
        absent = sorted(have - set(listed))
        for vid in stale[:MAX_PER_VIDEO]:
            col.add(vid, "lists", f"{list_name} lists it but it is not published", list_name)
        for vid in absent[:MAX_PER_VIDEO]:
            col.add(vid, "lists", f"published but not in {list_name} (run flowprep index)",
                    list_name)
        for vid in sorted(have & set(listed)):
            try:
                want = int(store.meta(vid)[key])
            except (StoreError, KeyError, ValueError, OSError):
                continue
            if listed[vid] != want:
                col.add(vid, "lists", f"{list_name} gives {listed[vid]}, metadata {key}={want}",
                        list_name)


# --------------------------------------------------------------------------------------
# inspect


def _tree_bytes(root: str) -> Dict[str, int]:
    """Apparent and allocated bytes of every file under root (the staging area excluded)."""
    size = alloc = files = 0
    skip = os.path.join(root, META_DIR, "tmp")
    for dirpath, dirnames, filenames in os.walk(root):
        if dirpath == skip:
            dirnames[:] = []
            continue
        for name in filenames:
            try:
                st = os.lstat(os.path.join(dirpath, name))
            except OSError:
                continue
            size += st.st_size
            alloc += getattr(st, "st_blocks", 0) * 512
            files += 1
    return {"bytes": size, "allocated": alloc, "files": files}


def describe_store(path: str, storage_options: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """What ``flowprep inspect`` reports, as a JSON-ready dict.

    Keys: path, format, payload, config, config_key, videos, frames, flows (forward),
    backward_flows (plain), warped_flows (forward and backward warped), homography_fallbacks
    (warped flows made with the identity), failures (input -> reason), warnings (video id -> warnings of
    videos published from damaged inputs), disk {bytes, allocated, files},
    payload_bytes {rgb, flow, meta}, bytes_per_rgb_frame, bytes_per_flow (x and y of one
    flow), float32_bytes_per_flow, ratio_vs_float32, stale_videos; HDF5 also shards,
    index_parts, superseded (older copies of republished videos).
    """
    store = open_store(_where(path), storage_options)
    fmt = registry.get(store.format)
    root = store.root
    out: Dict[str, Any] = {"path": root, "format": store.format,
                           "payload": store.config.get("payload", "jpeg"),
                           "config": store.config, "config_key": store.info.get("config_key"),
                           "classes": len(store.info.get("classes", []))}
    ids = store.video_ids
    frames = flows = bflows = wflows = total_flows = fallbacks = rgb_frames = 0
    float_bytes = 0
    stale = 0
    warnings: Dict[str, List[str]] = {}
    pb = {"rgb": 0, "flow": 0, "meta": 0}
    for vid in ids:
        meta = store.meta(vid)
        if meta.get("warnings"):
            warnings[vid] = list(meta["warnings"])
        n, f = int(meta["num_frames"]), int(meta["num_flows"])
        frames += n
        rgb_frames += stored_rgb_frames(meta)
        flows += f
        streams = stored_streams(meta)
        bflows += f * sum(1 for b, w in streams if b and not w)
        wflows += f * sum(1 for b, w in streams if w)
        total_flows += f * len(streams)
        fallbacks += sum(1 for x in meta.get("homography_fallback", []) if x)
        float_bytes += f * len(streams) * int(meta["height"]) * int(meta["width"]) * 8
        if meta.get("config_key") != out["config_key"]:
            stale += 1
        for k, v in fmt.video_bytes(store, vid).items():
            pb[k] += v
    out.update(videos=len(ids), frames=frames, flows=flows, backward_flows=bflows,
               warped_flows=wflows, homography_fallbacks=fallbacks,
               stale_videos=stale, payload_bytes=pb,
               disk=store.disk_usage() if hasattr(store, "disk_usage") else _tree_bytes(root),
               failures=dict(sorted(store.failures.items())), warnings=warnings)
    out["task"] = task_of(store.config)
    out["bytes_per_rgb_frame"] = pb["rgb"] / rgb_frames if rgb_frames else None
    out["bytes_per_flow"] = pb["flow"] / total_flows if total_flows else None
    out["float32_bytes_per_flow"] = float_bytes / total_flows if total_flows else None
    out["ratio_vs_float32"] = (float_bytes / pb["flow"]) if pb["flow"] else None
    out.update(fmt.describe(store))
    return out


def _input_text(c: Dict[str, Any]) -> str:
    """How the inputs were decoded and selected, from a store config (for inspect)."""
    dec = c.get("decoder") or {}
    parts = [f"decoder {dec.get('name', 'opencv')}"
             + (f" (FFmpeg {dec['ffmpeg']})" if dec.get("ffmpeg") else "")]
    parts.append(f"resampled to {c['fps']:g} frames/s" if c.get("fps") else "every decoded frame")
    if c.get("time_range"):
        s, e = c["time_range"]
        parts.append(f"frames in [{0 if s is None else s:g}, {'end' if e is None else f'{e:g}'}) s")
    if c.get("input_fps"):
        parts.append(f"frame folders at {c['input_fps']:g} frames/s")
    return ", ".join(parts)


def format_description(d: Dict[str, Any]) -> str:
    """The human-readable form of :func:`describe_store`'s dict."""
    def hb(n: Optional[float]) -> str:
        if n is None:
            return "-"
        for unit in ("B", "kB", "MB", "GB", "TB"):
            if abs(n) < 1000 or unit == "TB":
                return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
            n /= 1000.0
        return str(n)

    def n(count: int, word: str) -> str:
        return f"{count} {word}{'' if count == 1 else 's'}"

    c = d["config"]
    q = c.get("quant", {})
    qtxt = (f"fixed quantization, bound {q.get('bound'):g} px" if q.get("scheme") == "fixed"
            else "adaptive quantization (per-flow range)")
    rs = c.get("resize", {})
    rtxt = (f"size {rs['size'][0]}x{rs['size'][1]}" if rs.get("size")
            else ("original size" if not rs.get("short_side") else f"short side {rs['short_side']}"))
    fmt = registry.get(d["format"]).describe_line(d)
    lines = [
        f"store      {d['path']}",
        f"format     {fmt}",
        (f"config     RGB frames only (--task rgb), {rtxt}, JPEG quality {c.get('jpeg_quality')}"
         f"  [key {d['config_key']}]" if d.get("task") == "rgb" else
         f"config     {c.get('algo')} ({c.get('implementation')}), {qtxt}, {rtxt}, step "
         f"{c.get('step')}{', backward' if c.get('backward') else ''}"
         f"{', warped (' + c['warped'].get('features', '') + ' homography)' if c.get('warped') else ''}"
         f", JPEG quality {c.get('jpeg_quality')}"
         + (", flow only (--task flow)" if d.get("task") == "flow" else "")
         + f"  [key {d['config_key']}]"),
        f"input      {_input_text(c)}",
    ] + ([f"preset     {c['preset'].get('name')} ({c['preset'].get('source', '')})"]
         if isinstance(c.get("preset"), dict) else []) + [
        f"videos     {d['videos']} published, {len(d['failures'])} failed"
        + (f", {d['stale_videos']} made with another configuration" if d["stale_videos"] else ""),
        f"frames     {n(d['frames'], 'frame')}"
        + (" decoded (RGB not stored)" if d.get("task") == "flow" else "")
        + f", {n(d['flows'], 'flow')}"
        + (f" + {d['backward_flows']} backward" if d["backward_flows"] else "")
        + (f" (+ {d['warped_flows']} warped" + (f", {d['homography_fallbacks']} with the "
           f"identity homography (fallback)" if d.get("homography_fallbacks") else "") + ")"
           if d.get("warped_flows") else ""),
        f"disk       {hb(d['disk']['bytes'])} in {n(d['disk']['files'], 'file')} "
        f"({hb(d['disk']['allocated'])} allocated)",
        f"per frame  RGB {hb(d['bytes_per_rgb_frame'])}, flow {hb(d['bytes_per_flow'])} (x + y); "
        f"float32 flow would be {hb(d['float32_bytes_per_flow'])}"
        + (f" ({d['ratio_vs_float32']:.0f}x larger)" if d["ratio_vs_float32"] else ""),
    ]
    if d["failures"]:
        lines.append("failures")
        for inp, reason in d["failures"].items():
            lines.append(f"  {inp}: {reason}")
    else:
        lines.append("failures   none")
    if d.get("warnings"):
        lines.append(f"warnings   {n(len(d['warnings']), 'published video')} from damaged inputs")
        for vid, ws in d["warnings"].items():
            lines.append(f"  {vid}: {'; '.join(ws)}")
    return "\n".join(lines)


def iter_problem_lines(problems: Iterable[Problem]) -> Iterable[str]:
    for p in problems:
        yield str(p)
