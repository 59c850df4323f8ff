"""Inputs -> videos to process: discovery, video ids, labels, shards.

video_id is the input's path relative to its input root, without extension,
with '/' separators (``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01``). Roots:
a folder argument is the root of every video under it; a single file's root
is its own directory; in a .txt list, paths are relative to the list's
directory (lines ``path [label]``). Ids are made safe (no '..', no leading
'.', no control characters such as a newline, which would break the
annotation lists; a first part that is the name of a file flowprep writes at
the top of a store, e.g. ``flowprep.json``, gets a '_' appended) and unique:
when two inputs map to one id, the later (in sorted path order) gets its
extension appended (``x_mp4``), then a counter. Ids are also kept apart when
they differ only in case (a store on a case-insensitive filesystem) and when
one would be a folder of another (``a`` and ``a/b``: the video ``a`` becomes
``a_mp4``), since a JPEG store keeps each video in the folder its id names.

Labels are numbered from the sorted class folder names (the id's directory
part) over all inputs, before sharding, so every shard numbers them alike;
a label given in a .txt list wins.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import ConfigError

VIDEO_EXTENSIONS = (".avi", ".mp4", ".mkv", ".webm", ".mov", ".m4v", ".mpg", ".mpeg", ".flv",
                    ".wmv", ".3gp", ".ogv", ".ts", ".mts")


@dataclass(frozen=True)
class VideoInput:
    """One input video.

    Attributes:
        path: file path as given/discovered.
        video_id: its id in the store.
        class_name: the class folder ('' when none).
        label: integer label, or None until numbered.
    """

    path: str
    video_id: str
    class_name: str = ""
    label: Optional[int] = None


#: files flowprep writes at the top of a store (compared case-insensitively)
RESERVED_NAMES = ("flowprep.json", "rgb_list.txt", "flow_list.txt", "wflow_list.txt", "classes.txt")


def _safe_id(rel: str) -> str:
    rel = rel.replace(os.sep, "/")
    stem, _ = os.path.splitext(rel)
    parts = []
    for p in stem.split("/"):
        if p in ("", ".", ".."):
            continue
        p = "".join("_" if ord(c) < 32 or ord(c) == 127 else c for c in p)
        if p.startswith("."):
            p = "_" + p[1:] if len(p) > 1 else "_"
        if not parts and p.casefold() in RESERVED_NAMES:
            p += "_"
        parts.append(p)
    return "/".join(parts) or "_"


def _folders(vid: str) -> List[str]:
    parts = vid.split("/")
    return ["/".join(parts[:k]) for k in range(1, len(parts))]


def _walk(root: str) -> Iterable[str]:
    seen = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen:  # symlink loop
            dirnames[:] = []
            continue
        seen.add(real)
        dirnames.sort()
        for f in sorted(filenames):
            if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith("._"):
                yield os.path.join(dirpath, f)


def _from_list(list_path: str) -> List[Tuple[str, str, Optional[int]]]:
    base = os.path.dirname(os.path.abspath(list_path))
    out = []
    with open(list_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            label: Optional[int] = None
            path = line
            head, _, tail = line.rpartition(" ")
            if head and tail.lstrip("-").isdigit() and not os.path.exists(os.path.join(base, line)):
                path, label = head.strip(), int(tail)
            full = path if os.path.isabs(path) else os.path.join(base, path)
            rel = os.path.relpath(os.path.abspath(full), base)
            if rel.startswith(".."):
                rel = "/".join(os.path.abspath(full).split(os.sep)[-2:])
            out.append((full, rel, label))
    return out


def discover(inputs: Sequence[str]) -> List[VideoInput]:
    """Expand files, folders and .txt lists into VideoInputs with unique ids and labels.

    Raises ConfigError naming an input that does not exist.
    """
    found: List[Tuple[str, str, Optional[int]]] = []
    for item in inputs:
        item = os.fspath(item)
        if os.path.isdir(item):
            root = item
            for path in _walk(root):
                found.append((path, os.path.relpath(path, root), None))
        elif os.path.isfile(item) and item.lower().endswith(".txt"):
            found.extend(_from_list(item))
        elif os.path.exists(item) or os.path.islink(item):
            found.append((item, os.path.basename(item), None))
        else:
            raise ConfigError(f"input {item!r} does not exist")
    found.sort(key=lambda t: (t[1], t[0]))
    unique: List[Tuple[str, str, Optional[int]]] = []
    seen_paths = set()
    for path, rel, label in found:
        key = os.path.abspath(path)
        if key not in seen_paths:
            seen_paths.add(key)
            unique.append((path, rel, label))
    # folders the ids name (casefolded): no video may take one of these as its own id
    folders = {f.casefold() for _, rel, _ in unique for f in _folders(_safe_id(rel))}
    used: Dict[str, str] = {}  # casefolded id -> path

    def free(cand: str) -> bool:
        return cand.casefold() not in used and cand.casefold() not in folders

    videos: List[Tuple[str, str, str, Optional[int]]] = []
    for path, rel, label in unique:
        vid = _safe_id(rel)
        if not free(vid):
            ext = os.path.splitext(rel)[1].lstrip(".").lower()
            ext = "".join(c if c.isalnum() else "_" for c in ext)
            cand = f"{vid}_{ext}" if ext else f"{vid}_2"
            k = 2
            while not free(cand):
                k += 1
                cand = f"{vid}_{k}"
            vid = cand
        used[vid.casefold()] = path
        cls = vid.rsplit("/", 1)[0] if "/" in vid else ""
        videos.append((path, vid, cls, label))
    classes = sorted({cls for _, _, cls, _ in videos})
    index = {c: i for i, c in enumerate(classes)}
    return [VideoInput(p, v, c, lab if lab is not None else index[c]) for p, v, c, lab in videos]


def class_names(videos: Sequence[VideoInput]) -> List[str]:
    """Sorted class folder names (index = label)."""
    return sorted({v.class_name for v in videos})


def shard_of(video_id: str, count: int) -> int:
    """Stable shard index in [0, count) of a video id (sha1, not list order)."""
    return int(hashlib.sha1(video_id.encode("utf-8")).hexdigest()[:12], 16) % count


def parse_shard(text: Optional[str], environ: Optional[Dict[str, str]] = None) -> Tuple[int, int]:
    """'I/N' (0-based I) -> (I, N); None -> from SLURM_ARRAY_TASK_* or (0, 1).

    With Slurm arrays, I = (SLURM_ARRAY_TASK_ID - SLURM_ARRAY_TASK_MIN) /
    SLURM_ARRAY_TASK_STEP (STEP 1 when unset) and N = SLURM_ARRAY_TASK_COUNT, so
    ``--array=0-9``, ``--array=1-10``, ``--array=0-9%4`` and ``--array=0-18:2``
    all number their tasks 0..N-1.
    """
    env = os.environ if environ is None else environ
    if text is None:
        if "SLURM_ARRAY_TASK_ID" in env and "SLURM_ARRAY_TASK_COUNT" in env:
            try:
                off = int(env["SLURM_ARRAY_TASK_ID"]) - int(env.get("SLURM_ARRAY_TASK_MIN", "0"))
                step = int(env.get("SLURM_ARRAY_TASK_STEP", "1") or "1")
                n = int(env["SLURM_ARRAY_TASK_COUNT"])
            except ValueError:
                raise ConfigError(
                    "SLURM_ARRAY_TASK_ID/COUNT/MIN/STEP are not integers") from None
            i = off // step if step > 0 and off % step == 0 else -1
            if not 0 <= i < n:
                raise ConfigError(
                    f"SLURM array task {env['SLURM_ARRAY_TASK_ID']} is not one of {n} evenly "
                    f"spaced tasks from SLURM_ARRAY_TASK_MIN; use a range such as "
                    f"--array=0-{n - 1}, or pass --shard I/N explicitly")
            return i, n
        return 0, 1
    try:
        i_s, n_s = text.split("/")
        i, n = int(i_s), int(n_s)
    except ValueError:
        raise ConfigError(f"--shard takes I/N (0-based I), e.g. 0/4, got {text!r}") from None
    if n < 1 or not 0 <= i < n:
        raise ConfigError(f"--shard {text}: need N >= 1 and 0 <= I < N")
    return i, n


def select_shard(videos: Sequence[VideoInput], index: int, count: int) -> List[VideoInput]:
    """The videos of shard ``index`` of ``count``."""
    if count == 1:
        return list(videos)
    return [v for v in videos if shard_of(v.video_id, count) == index]
