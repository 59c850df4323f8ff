"""``flowprep report``: one self-contained HTML page about a whole store.

    store ──rows (stats.py, metadata only)──▶ summary, plots, outlier tables
          ──planes of the drawn videos only──▶ thumbnail strips, sampled videos
          ──▶ content (a JSON-ready dict) ──▶ HTML (images inline as data: URIs)

Bounded work: the statistics come from each video's metadata; planes are read
only for the rows of the outlier tables (at most ``top`` a table) and the
``sample`` sampled videos, so the cost grows with the number of videos only
through metadata reads (see README, "Report", for the figures measured).

The page holds no script and no reference outside itself: it opens from disk,
offline. A video whose planes cannot be read is listed as unreadable and the
page goes on. The content depends on the stored data only, not on the format:
a JPEG store and its HDF5 copy give the same content apart from the summary
(format, path, bytes).
"""
from __future__ import annotations

import base64
import html
import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence

import cv2
import numpy as np

from .. import visualize as vis
from ..errors import ConfigError
from ..fsutil import atomic_write_bytes
from . import plots
from .stats import APPROX_FLOWS, flow_series, json_ready, store_rows

#: a video whose motion (mean |d|) is below this is listed as near-static, pixels
STATIC_MOTION = 0.2
#: the clip sentence: the share of videos clipping more than this fraction of their flow
CLIP_FRACTION = 0.05
#: rows of each outlier table
TOP = 8
#: flows shown in a thumbnail strip, and its frame height in pixels
STRIP_FLOWS, STRIP_HEIGHT = 4, 56
#: flows shown for a sampled video (in rows of SAMPLE_COLUMNS), and its frame height in pixels
SAMPLE_FLOWS, SAMPLE_COLUMNS, SAMPLE_HEIGHT = 6, 3, 112
#: failure records and decode warnings listed on the page (all are in inspect --videos)
LIST_LIMIT = 200
#: flows read from planes for a sampled video's motion-over-time plot (pre-statistics stores)
SAMPLE_APPROX_FLOWS = 48
JPEG_QUALITY = 82


@dataclass
class Report:
    """The page and what it shows.

    Attributes:
        html: the page, UTF-8 text.
        content: JSON-ready dict: "summary" (format, path, config, counts, bytes, text),
            "failures", "warnings", "notes", "plots", "tables", "samples", "unreadable";
            images as data: URIs.
        seconds: wall time of building it.
    """

    html: str
    content: Dict[str, Any]
    seconds: float


def data_uri(img: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """uint8 (H, W, 3) RGB as a JPEG data: URI."""
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:  # pragma: no cover (OpenCV always encodes a uint8 image)
        raise ValueError("JPEG encoding failed")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


def png_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _fmt(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    if isinstance(v, float):
        return f"{v:.{digits}f}"
    return str(v)


def _pct(v: Optional[float]) -> str:
    """A fraction as a percentage: 1 decimal, or 2 significant digits below 1 %."""
    if v is None:
        return "–"
    return f"{100 * v:.1f} %" if v == 0 or v >= 0.01 else f"{100 * v:.2g} %"


def _published(rows: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
    return [r for r in rows if r["status"] == "published"]


def _with(rows: List[Dict[str, Any]], key: str) -> List[Dict[str, Any]]:
    return [r for r in rows if r.get(key) is not None and math.isfinite(r[key])]


def count_mismatch(row: Dict[str, Any]) -> Optional[str]:
    """Why a published row's RGB and flow counts disagree (num_flows should be
    num_frames - step for a video holding flow), or None."""
    if row["task"] == "rgb" or row["num_frames"] is None:
        return None
    want = max(0, int(row["num_frames"]) - int(row["step"] or 1))
    if int(row["num_flows"]) != want:
        return (f"{row['num_flows']} flows for {row['num_frames']} frames "
                f"(step {row['step']}: {want} expected)")
    return None


def outlier_tables(rows: List[Dict[str, Any]], top: int = TOP,
                   static_motion: float = STATIC_MOTION) -> List[Dict[str, Any]]:
    """The outlier tables from the rows (no planes read): key, title, caption, rows
    (each {"video_id", "why"}), and how many videos qualified in all."""
    pub = _published(rows)
    moving = _with(pub, "motion")
    out = []

    def table(key: str, title: str, caption: str, picked: List[Dict[str, Any]],
              why: Callable[[Dict[str, Any]], str]) -> None:
        out.append({"key": key, "title": title, "caption": caption, "total": len(picked),
                    "rows": [{"video_id": r["video_id"], "why": why(r)} for r in picked[:top]]})

    static = sorted([r for r in moving if r["motion"] < static_motion],
                    key=lambda r: (r["motion"], r["video_id"]))
    table("static", "Near-static videos",
          f"mean |d| below {static_motion:g} px: frozen or duplicated frames, a still "
          f"image, or a still camera on a still scene", static,
          lambda r: f"motion {r['motion']:.3f} px, p95 {_fmt(r['motion_p95'], 3)} px")
    clipped = sorted([r for r in _with(pub, "clipped_fraction") if r["clipped_fraction"] > 0],
                     key=lambda r: (-r["clipped_fraction"], r["video_id"]))
    table("clipped", "Most clipped",
          "share of flow components beyond the quantization bound (stored as the bound)",
          clipped, lambda r: f"{_pct(r['clipped_fraction'])} clipped, motion "
                             f"{_fmt(r['motion'])} px, p95 {_fmt(r['motion_p95'])} px")
    camera = sorted([r for r in _with(pub, "camera_motion") if r["camera_motion"] > 0],
                    key=lambda r: (-r["camera_motion"], r["video_id"]))
    table("camera", "Largest camera motion",
          "mean length of the per-flow mean vector: pans, shakes, zooms off-centre", camera,
          lambda r: f"{r['camera_motion']:.2f} px a flow, mean vector "
                    f"({r['camera_dx']:+.2f}, {r['camera_dy']:+.2f}) px")
    warned = sorted([r for r in pub if r["warnings"]], key=lambda r: (-r["warnings"], r["video_id"]))
    table("warnings", "Decode warnings", "published from damaged inputs (the warnings are "
          "listed under Store)", warned,
          lambda r: f"{r['warnings']} warning{'s' if r['warnings'] != 1 else ''}")
    shortest = sorted(pub, key=lambda r: (r["num_frames"], r["video_id"]))
    table("shortest", "Shortest videos", "fewest stored frames", shortest,
          lambda r: f"{r['num_frames']} frames, {r['num_flows']} flows"
                    + (f", {r['num_frames'] / r['fps']:.2f} s" if r["fps"] else ""))
    mism = sorted([r for r in pub if count_mismatch(r)], key=lambda r: r["video_id"])
    table("mismatch", "RGB/flow count mismatches",
          "num_flows is not num_frames − step (the n vs n−1 mix-up between tools)", mism,
          lambda r: count_mismatch(r) or "")
    return out


def choose_samples(rows: List[Dict[str, Any]], tables: List[Dict[str, Any]], n: int,
                   seed: int = 0) -> List[Dict[str, str]]:
    """``n`` video ids to show large: outliers first (the first row of each table, then
    the second, ...), then published videos drawn at random with ``seed``.

    Returns:
        [{"video_id", "why"}], why naming the table or "random".
    """
    chosen: List[Dict[str, str]] = []
    seen = set()
    depth = max([len(t["rows"]) for t in tables] + [0])
    for k in range(depth):
        for t in tables:
            if len(chosen) >= n:
                break
            if k < len(t["rows"]) and t["rows"][k]["video_id"] not in seen:
                vid = t["rows"][k]["video_id"]
                seen.add(vid)
                chosen.append({"video_id": vid, "why": t["title"].lower()})
    rest = sorted(r["video_id"] for r in _published(rows) if r["video_id"] not in seen)
    if len(chosen) < n and rest:
        rng = np.random.default_rng(seed)
        pick = rng.choice(len(rest), size=min(n - len(chosen), len(rest)), replace=False)
        chosen += [{"video_id": rest[int(i)], "why": "random"} for i in sorted(pick)]
    return chosen[:n]


def clip_sentence(rows: List[Dict[str, Any]], bound: Optional[float],
                  fraction: float = CLIP_FRACTION) -> Optional[str]:
    """"12 % of videos clip more than 5 % of their flow at ±20 px" (None without flow
    or without a fixed bound)."""
    vals = [r["clipped_fraction"] for r in _with(_published(rows), "clipped_fraction")]
    if not vals or bound is None:
        return None
    share = sum(1 for v in vals if v > fraction) / len(vals)
    return (f"{100 * share:.0f} % of videos clip more than {100 * fraction:.0f} % of their "
            f"flow at ±{bound:g} px")


def _class_of(r: Dict[str, Any]) -> str:
    if r.get("class"):
        return str(r["class"])
    vid = r["video_id"]
    return vid.rsplit("/", 1)[0] if "/" in vid else "(none)"


def build_report(path: str, sample: int = 6, seed: int = 0, top: int = TOP,
                 static_motion: float = STATIC_MOTION, clip_fraction: float = CLIP_FRACTION,
                 approx_flows: Optional[int] = APPROX_FLOWS,
                 progress: Optional[Callable[[str], None]] = None,
                 storage_options: Optional[Dict[str, Any]] = None) -> Report:
    """Build the report of the store at ``path`` (any format, local path or URL).

    Args:
        sample: videos shown large (outliers first, then random with ``seed``).
        top: rows of each outlier table.
        static_motion: pixels; videos moving less are near-static.
        clip_fraction: the per-video clipped share the clip sentence counts.
        approx_flows: planes read a video for stores made before the statistics.
        storage_options: fsspec options for a URL ``path`` (endpoint_url, anon...).
    Raises:
        ConfigError for a bad argument; StoreError when ``path`` is not a store.
    """
    if sample < 0 or top < 0:
        raise ConfigError(f"sample and top must be >= 0, got {sample} and {top}")
    from ..store import open_store
    from ..verify import describe_store, format_description
    t0 = time.perf_counter()
    say = progress or (lambda _m: None)
    store = open_store(path, storage_options)
    say("reading metadata")
    desc = describe_store(path, storage_options)
    rows = store_rows(store, approx_flows=approx_flows)
    pub = _published(rows)
    quant = store.config.get("quant") or {}
    bound = float(quant["bound"]) if quant.get("scheme") == "fixed" else None
    unreadable: Dict[str, str] = {r["video_id"]: r["reason"] for r in rows
                                  if r["status"] == "unreadable"}
    failures = [{"input": r["input"], "video_id": r["video_id"], "reason": r["reason"]}
                for r in rows if r["status"] == "failed"]
    text = format_description(dict(desc, failures={}, warnings={}))  # those get tables below
    text = "\n".join(line for line in text.splitlines() if not line.startswith("failures"))
    warnings = [{"video_id": k, "warnings": v} for k, v in sorted(desc["warnings"].items())]
    content: Dict[str, Any] = {
        "summary": {"path": desc["path"], "format": desc["format"], "config": desc["config"],
                    "videos": desc["videos"], "failed": len(failures), "frames": desc["frames"],
                    "flows": desc["flows"], "disk_bytes": desc["disk"]["bytes"],
                    "payload_bytes": desc["payload_bytes"], "text": text},
        "counts": {"published": len(pub), "failed": len(failures),
                   "unreadable": len(unreadable), "warned": len(warnings),
                   "approximate": sum(1 for r in rows if r["stats"] == "approximate")},
        "failures": failures[:LIST_LIMIT],
        "warnings": warnings[:LIST_LIMIT],
        "notes": [], "plots": [], "tables": [], "samples": [], "unreadable": [],
    }
    notes = content["notes"]
    if not pub:
        notes.append("No published video in this store"
                     + (f"; {len(failures)} input{'s' if len(failures) != 1 else ''} failed "
                        f"(reasons below)." if failures else "."))
    sentence = clip_sentence(rows, bound, clip_fraction)
    if sentence and not sentence.startswith("0 %"):  # a share of the videos clips: say so
        notes.append(sentence + ".")
    if content["counts"]["approximate"]:
        notes.append(f"{content['counts']['approximate']} videos were stored before flowprep "
                     f"recorded motion statistics: their motion is computed from up to "
                     f"{approx_flows} stored (quantized) flows each, so it is approximate.")

    # --- plots (metadata only) ---------------------------------------------------------
    say("plots")
    if pub:
        mv = [r["motion"] for r in pub]
        content["plots"] = [
            {"key": "motion", "title": "Motion per video",
             "caption": "mean |d| over each video's flows, pixels",
             "img": png_uri(plots.histogram(mv, "motion: mean |d| (px)",
                                            [(static_motion, f"{static_motion:g} px")]))},
            {"key": "clipped", "title": "Clipped fraction per video",
             "caption": (sentence or "no fixed bound: adaptive quantization clips nothing"),
             "img": png_uri(plots.histogram(
                 [None if r["clipped_fraction"] is None else 100 * r["clipped_fraction"]
                  for r in pub], "clipped flow components (%)"
                 + (f" at bound ±{bound:g} px" if bound else ""),
                 [(100 * clip_fraction, f"{100 * clip_fraction:g} %")],
                 log_y=len(pub) > 50))},
            {"key": "frames", "title": "Frames per video", "caption": "stored frames",
             "img": png_uri(plots.histogram([float(r["num_frames"]) for r in pub],
                                            "frames"))},
            {"key": "camera", "title": "Camera motion",
             "caption": "each video's mean flow vector (dx, dy), pixels a flow",
             "img": png_uri(plots.scatter([r["camera_dx"] for r in pub],
                                          [r["camera_dy"] for r in pub],
                                          "mean dx (px)", "mean dy (px, down)"))},
        ]
        groups: Dict[str, List[float]] = {}
        for r in pub:
            groups.setdefault(_class_of(r), []).append(r["motion"])
        content["plots"].append(
            {"key": "classes", "title": "Motion per class",
             "caption": f"mean |d| per video, by class ({len(groups)} classes"
                        + ("; the 30 largest drawn" if len(groups) > 30 else "") + ")",
             "img": png_uri(plots.boxplot(groups, "motion (px)"))})

    # --- outlier tables and samples (planes of these videos only) ----------------------
    tables = outlier_tables(rows, top, static_motion)
    by_id = {r["video_id"]: r for r in rows}
    strips: Dict[str, Optional[str]] = {}

    def strip(vid: str) -> Optional[str]:
        if vid not in strips:
            strips[vid] = None
            if vid not in unreadable:
                try:
                    strips[vid] = data_uri(vis.render_strip(store[vid], STRIP_FLOWS,
                                                            STRIP_HEIGHT))
                except Exception as exc:  # listed, and the page goes on
                    unreadable[vid] = _reason(vid, exc)
        return strips[vid]

    say("outlier tables")
    for t in tables:
        for row in t["rows"]:
            row["img"] = strip(row["video_id"])
    content["tables"] = tables
    say("sampled videos")
    for s in choose_samples(rows, tables, sample, seed):
        vid = s["video_id"]
        if vid in unreadable:
            continue
        r = by_id[vid]
        item = {"video_id": vid, "why": s["why"], "class": _class_of(r),
                "numbers": {k: json_ready(r)[k] for k in
                            ("num_frames", "num_flows", "fps", "width", "height", "motion",
                             "motion_p95", "clipped_fraction", "camera_motion", "warnings")}}
        try:
            video = store[vid]
            item["sheet"] = data_uri(vis.render_strip(video, SAMPLE_FLOWS, SAMPLE_HEIGHT,
                                                      SAMPLE_COLUMNS))
            if r["task"] != "rgb" and r["num_flows"]:
                ser = flow_series(video.meta, lambda: video, SAMPLE_APPROX_FLOWS)
                ts = video.timestamps
                t = [float(ts[i]) if i < len(ts) else float(i) for i in ser["index"]]
                item["plot"] = png_uri(plots.motion_over_time(t, ser["motion"], ser["motion_p95"],
                                                              ser["clipped_fraction"]))
        except Exception as exc:
            unreadable[vid] = _reason(vid, exc)
            continue
        content["samples"].append(item)
    content["unreadable"] = [{"video_id": k, "reason": v} for k, v in sorted(unreadable.items())]
    content["counts"]["unreadable"] = len(unreadable)
    page = render_html(content)
    return Report(page, content, time.perf_counter() - t0)


def _reason(vid: str, exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if vid in text else f"{type(exc).__name__}: {text}"


def write_report(path: str, output: str, **options: Any) -> Report:
    """Build the report of ``path`` and write it to the file ``output`` (atomically)."""
    rep = build_report(path, **options)
    atomic_write_bytes(output, rep.html.encode("utf-8"), fsync=False)
    return rep


# --- HTML ------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{font-size:22px;margin:0 0 4px} h2{font-size:18px;margin:28px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:15px;margin:18px 0 4px} .cap{color:#666;font-size:13px;margin:0 0 6px}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow-x:auto;white-space:pre-wrap}
table{border-collapse:collapse;font-size:13px} td,th{border-bottom:1px solid #eee;padding:3px 8px;
text-align:left;vertical-align:top} th{background:#fafafa}
.note{background:#fff6e0;border-left:4px solid #e0a000;padding:6px 10px;margin:6px 0}
.plots{display:flex;flex-wrap:wrap;gap:12px} .plot{margin:0} .plot figcaption{font-size:12px;
color:#555;max-width:380px} .bad{color:#b03020} code{font-size:12px}
.sample{border:1px solid #ddd;padding:8px;margin:10px 0} .empty{color:#888;font-style:italic}
img{max-width:100%;height:auto}
"""


def _e(v: Any) -> str:
    return html.escape("" if v is None else str(v))


def _img(uri: Optional[str], alt: str) -> str:
    if not uri:
        return '<span class="bad">unreadable</span>'
    return f'<img src="{uri}" alt="{_e(alt)}">'


def render_html(c: Dict[str, Any]) -> str:
    """The page for a content dict of :func:`build_report` (no script, no external link)."""
    s = c["summary"]
    out: List[str] = []
    w = out.append
    w("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">")
    w(f"<title>flowprep report: {_e(s['path'])}</title><style>{_CSS}</style></head><body>")
    w(f"<h1>flowprep report</h1><p class=\"cap\">{_e(s['path'])} · {_e(s['format'])} store · "
      f"{c['counts']['published']} published, {c['counts']['failed']} failed, "
      f"{c['counts']['unreadable']} unreadable</p>")
    for n in c["notes"]:
        w(f'<p class="note">{_e(n)}</p>')
    w("<h2 id=\"store\">Store</h2>")
    w(f"<pre>{_e(s['text'])}</pre>")
    _table(w, "failures", "Failed inputs", ["input", "video id", "reason"],
           [[f["input"], f["video_id"], f["reason"]] for f in c["failures"]], "none")
    _more(w, c["counts"]["failed"], len(c["failures"]))
    _table(w, "decode-warnings", "Decode warnings", ["video id", "warnings"],
           [[x["video_id"], "; ".join(x["warnings"])] for x in c["warnings"]], "none")
    _more(w, c["counts"]["warned"], len(c["warnings"]))
    _table(w, "unreadable", "Unreadable videos", ["video id", "reason"],
           [[u["video_id"], u["reason"]] for u in c["unreadable"]],
           "none (of the videos drawn here: the others' planes were not read)")
    if c["plots"]:
        w('<h2 id="plots">Distributions</h2><div class="plots">')
        for p in c["plots"]:
            w(f'<figure class="plot" id="plot-{_e(p["key"])}"><h3>{_e(p["title"])}</h3>'
              f'{_img(p["img"], p["title"])}<figcaption>{_e(p["caption"])}</figcaption></figure>')
        w("</div>")
    if c["tables"]:
        w('<h2 id="outliers">Outliers</h2>')
    for t in c["tables"]:
        w(f'<section id="table-{_e(t["key"])}"><h3>{_e(t["title"])} '
          f'<small>({t["total"]} video{"s" if t["total"] != 1 else ""}'
          f'{", first " + str(len(t["rows"])) + " shown" if t["total"] > len(t["rows"]) else ""})'
          f'</small></h3><p class="cap">{_e(t["caption"])}</p>')
        if not t["rows"]:
            w('<p class="empty">none</p>')
        else:
            w("<table><tr><th>video id</th><th>why</th><th>frames and flow</th></tr>")
            for r in t["rows"]:
                w(f"<tr><td><code>{_e(r['video_id'])}</code></td><td>{_e(r['why'])}</td>"
                  f"<td>{_img(r.get('img'), r['video_id'])}</td></tr>")
            w("</table>")
        w("</section>")
    if c["samples"]:
        w('<h2 id="samples">Sampled videos</h2><p class="cap">outliers first, then drawn at '
          'random (fixed seed). Flow colours: the Middlebury wheel (hue = direction, '
          'saturation = |d|, the rim = the bound), as <code>flowprep show</code>.</p>')
    for sm in c["samples"]:
        nums = sm["numbers"]
        w(f'<div class="sample"><h3><code>{_e(sm["video_id"])}</code> '
          f'<small>({_e(sm["why"])}; class {_e(sm["class"])})</small></h3>')
        w(f'<p class="cap">{nums["num_frames"]} frames, {nums["num_flows"]} flows, '
          f'{_fmt(nums["fps"])} fps, {nums["width"]}x{nums["height"]}; motion '
          f'{_fmt(nums["motion"])} px (p95 {_fmt(nums["motion_p95"])} px), clipped '
          f'{_pct(nums["clipped_fraction"])}, camera {_fmt(nums["camera_motion"])} px, '
          f'{nums["warnings"]} warnings</p>')
        w(_img(sm.get("sheet"), sm["video_id"]))
        if sm.get("plot"):
            w("<br>" + _img(sm["plot"], "motion over time"))
        w("</div>")
    w("</body></html>\n")
    return "\n".join(out)


def _more(w: Callable[[str], None], total: int, shown: int) -> None:
    if total > shown:
        w(f'<p class="cap">… and {total - shown} more: <code>flowprep inspect OUT --videos</code> '
          f'lists them all</p>')


def _table(w: Callable[[str], None], anchor: str, title: str, head: Sequence[str],
           rows: Sequence[Sequence[Any]], empty: str) -> None:
    """A titled table; one line "title: empty" when there are no rows."""
    if not rows:
        w(f'<p id="{anchor}"><b>{_e(title)}:</b> <span class="empty">{_e(empty)}</span></p>')
        return
    w(f'<h3 id="{anchor}">{_e(title)}</h3>')
    w("<table><tr>" + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr>")
    for r in rows:
        w("<tr>" + "".join(f"<td>{_e(x)}</td>" for x in r) + "</tr>")
    w("</table>")
