"""Inputs -> videos to process: discovery, video ids, labels, shards.

video_id is the input's path relative to its input root, without extension,
with '/' separators (``ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01``). Roots:
a folder argument is the root of every video under it; a single file's root
is its own directory; in a .txt list, paths are relative to the list's
directory (lines ``path [label] [start end]``, see ``parse_list_line``). Frame
folders (a folder that directly holds images and no videos, see
flowprep/decode/folder.py) are videos too: their id is the folder's path
relative to the root, extension not stripped, and their subfolders are not
searched. A list line with a time range is a segment, its own video, with the
id ``<id>@<start>-<end>`` (seconds as written by ``format_time``, e.g.
``v_abc@12.5-20``), so one untrimmed video gives as many videos as it has
lines. Ids are made safe (no '..', no leading
'.', no whitespace or control characters: each space, tab, newline, U+3000... becomes
'_', so the annotation lists "<video dir> <count> <label>" split where mmaction2 and
TSN-pytorch split them, and the id as the path spells it is kept in the video's meta as
``original_id``; a first part that is the name of a file flowprep writes at
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
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from .errors import ConfigError
from .names import has_unsafe, replace_unsafe

from .filetypes import IMAGE_EXTENSIONS, VIDEO_EXTENSIONS  # noqa: F401  (VIDEO_EXTENSIONS: importable from here, as before)


@dataclass(frozen=True)
class VideoInput:
    """One input video.

    Attributes:
        path: file path as given/discovered.
        video_id: its id in the store.
        class_name: the class folder ('' when none).
        label: integer label, or None until numbered.
        start, end: the segment [start, end) in seconds from its list line, or None.
        original_id: the id as the input's path spells it, when that holds whitespace or
            control characters (replaced by '_' in video_id); None otherwise. Recorded
            in the video's meta.
    """

    path: str
    video_id: str
    class_name: str = ""
    label: Optional[int] = None
    start: Optional[float] = None
    end: Optional[float] = None
    original_id: Optional[str] = None


#: files flowprep writes at the top of a store (compared case-insensitively)
RESERVED_NAMES = ("flowprep.json", "rgb_list.txt", "flow_list.txt", "wflow_list.txt", "classes.txt")


def _raw_id(rel: str, keep_ext: bool = False) -> str:
    rel = rel.replace(os.sep, "/")
    return rel if keep_ext else os.path.splitext(rel)[0]


def _safe_id(rel: str, keep_ext: bool = False) -> str:
    rel = rel.replace(os.sep, "/")
    stem = rel if keep_ext else os.path.splitext(rel)[0]
    parts = []
    for p in stem.split("/"):
        if p in ("", ".", ".."):
            continue
        p = replace_unsafe(p)  # whitespace, control characters (flowprep/names.py)
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
        if _is_frame_folder(filenames):
            dirnames[:] = []  # one video; what is below it is not searched
            yield dirpath
            continue
        for f in sorted(filenames):
            if f.lower().endswith(VIDEO_EXTENSIONS) and not f.startswith("._"):
                yield os.path.join(dirpath, f)


def _is_frame_folder(filenames: Sequence[str]) -> bool:
    low = [f.lower() for f in filenames if not f.startswith(".")]
    return (any(f.endswith(IMAGE_EXTENSIONS) for f in low)
            and not any(f.endswith(VIDEO_EXTENSIONS) for f in low))


def _number(tok: str) -> Optional[float]:
    try:
        v = float(tok)
    except ValueError:
        return None
    return v if v == v and abs(v) != float("inf") else None


def format_time(t: float) -> str:
    """Seconds as written in segment ids: shortest decimal form (12.5, 20, 0.04)."""
    return f"{float(t):.6f}".rstrip("0").rstrip(".") or "0"


Found = Tuple[str, str, Optional[int], Optional[float], Optional[float]]


def parse_list_line(line: str, exists: Callable[[str], bool] = os.path.exists
                    ) -> Tuple[str, Optional[int], Optional[float], Optional[float]]:
    """One line of a .txt list -> (path, label, start, end).

    Format: ``path [label] [start end]``, whitespace-separated from the right:
    after the path, one integer is a label, two numbers are a time range in
    seconds (``start end``, start < end), three are ``label start end``. A line
    naming an existing file as a whole (a path that ends in numbers) is that path.
    Raises ConfigError for a range with start >= end or a negative time.
    """
    if exists(line):
        return line, None, None, None
    toks = line.split()
    nums: List[str] = []
    while len(toks) > 1 and len(nums) < 3 and _number(toks[-1]) is not None:
        nums.insert(0, toks.pop())
    path = line
    if nums:  # the path is what precedes the numbers, inner spaces kept
        cut = len(line)
        for tok in reversed(nums):
            cut = line.rindex(tok, 0, cut)
        path = line[:cut].strip()
    label = start = end = None
    if len(nums) == 1:
        if not nums[0].lstrip("-").isdigit():
            raise ConfigError(f"list line {line!r}: one number after the path is a label "
                              f"(an integer), got {nums[0]!r}; a time range takes two: start end")
        label = int(nums[0])
    elif len(nums) >= 2:
        if len(nums) == 3:
            if not nums[0].lstrip("-").isdigit():
                raise ConfigError(f"list line {line!r}: with three numbers the first is a label "
                                  f"(an integer), got {nums[0]!r}")
            label = int(nums[0])
        start, end = float(nums[-2]), float(nums[-1])
        if start < 0 or end < 0:
            raise ConfigError(f"list line {line!r}: times must be seconds >= 0")
        if not start < end:
            raise ConfigError(f"list line {line!r}: start {nums[-2]} must be before end {nums[-1]}")
    return path, label, start, end


def _from_list(list_path: str) -> List[Found]:
    base = os.path.dirname(os.path.abspath(list_path))
    out: List[Found] = []
    with open(list_path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                path, label, start, end = parse_list_line(
                    line, lambda p: os.path.exists(p if os.path.isabs(p) else os.path.join(base, p)))
            except ConfigError as exc:
                raise ConfigError(f"{list_path}:{n}: {exc}") from None
            full = path if os.path.isabs(path) else os.path.join(base, path)
            rel = os.path.relpath(os.path.abspath(full), base)
            if rel.startswith(".."):
                rel = "/".join(os.path.abspath(full).split(os.sep)[-2:])
            out.append((full, rel, label, start, end))
    return out


def _remote_walk(remote) -> Tuple[List[str], List[str]]:
    """(video object paths, frame-folder prefixes) below a prefix, relative to it, sorted.

    The same rules as a local folder: a prefix that directly holds images and no
    videos is one video (a frame folder; "" when it is the prefix itself), and what
    is below it is not searched.
    """
    objects = sorted(remote.find(""))
    by_dir: Dict[str, List[str]] = {}
    for rel in objects:
        d, _, name = rel.rpartition("/")
        by_dir.setdefault(d, []).append(name)
    frame_dirs = [d for d, names in sorted(by_dir.items()) if _is_frame_folder(names)]
    if "" in frame_dirs:
        return [], [""]

    def inside(rel: str, d: str) -> bool:
        return rel.startswith(d + "/")

    top = [d for d in frame_dirs if not any(inside(d, o) for o in frame_dirs)]
    videos = [rel for rel in objects
              if rel.lower().endswith(VIDEO_EXTENSIONS)
              and not rel.rpartition("/")[2].startswith("._")
              and not any(inside(rel, d) for d in top)]
    return videos, top


def _remote_list(url: str, remote_cls, storage_options) -> List[Found]:
    """A .txt list on object storage: relative paths are relative to the list's URL."""
    from .remote import is_url, join, split_url
    base, _ = split_url(url)
    r = remote_cls(url, storage_options)
    try:
        text = r.read_bytes("").decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(f"input {r.display!r} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - network errors
        raise ConfigError(r.error(f"input list {r.display} cannot be read", exc)) from None

    def full_of(p: str) -> str:
        return p if is_url(p) or os.path.isabs(p) else join(base, p)

    def exists(p: str) -> bool:  # asked only for lines that end in a number
        toks = p.split()
        if len(toks) < 2 or _number(toks[-1]) is None:
            return False
        return remote_cls(full_of(p), storage_options).exists() if is_url(full_of(p)) \
            else os.path.exists(full_of(p))

    out: List[Found] = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            path, label, start, end = parse_list_line(line, exists)
        except ConfigError as exc:
            raise ConfigError(f"{r.display}:{n}: {exc}") from None
        full = full_of(path)
        rel = full[len(base) + 1:] if full.startswith(base + "/") else \
            "/".join(full.rstrip("/").split("/")[-2:])
        out.append((full, rel, label, start, end))
    return out


def _discover_remote(item: str, storage_options, frame_dirs: set) -> List[Found]:
    """Found entries of one URL input: an object, a prefix (searched), or a .txt list."""
    from .remote import Remote, join
    r = Remote(item, storage_options)
    try:
        info = r.info()
    except Exception as exc:  # noqa: BLE001 - network errors, permissions
        raise ConfigError(r.error(f"input {r.display} cannot be read", exc)) from None
    if info is not None and info.get("type") != "directory":
        if item.lower().endswith(".txt"):
            return _remote_list(item, Remote, storage_options)
        return [(item, item.rstrip("/").rsplit("/", 1)[-1], None, None, None)]
    videos, frames = _remote_walk(r)
    if info is None and not videos and not frames:
        raise ConfigError(f"input {r.display!r} does not exist (no object, nothing below it)")
    out: List[Found] = []
    for rel in videos:
        out.append((join(r.url, rel), rel, None, None, None))
    for rel in frames:
        url = join(r.url, rel) if rel else r.url
        frame_dirs.add(url)
        out.append((url, rel or r.url.rsplit("/", 1)[-1], None, None, None))
    return out


def _pick(found: Found) -> Tuple[str, str, Optional[float], Optional[float]]:
    path, rel, _label, start, end = found
    return path, rel, start, end


def discover(inputs: Sequence[str], storage_options=None) -> List[VideoInput]:
    """Expand files, folders and .txt lists into VideoInputs with unique ids and labels.

    An input may be an fsspec URL (s3://bucket/videos/, s3://bucket/list.txt, ...): a
    prefix is searched recursively as a folder is, and ``storage_options`` go to fsspec.
    Raises ConfigError naming an input that does not exist.
    """
    from .remote import is_url, local_path
    found: List[Found] = []
    frame_dirs: set = set()  # frame folders on object storage (ids keep their extension)
    for item in inputs:
        item = local_path(os.fspath(item))
        if is_url(item):
            found.extend(_discover_remote(item, storage_options, frame_dirs))
        elif os.path.isdir(item):
            root = item
            for path in _walk(root):
                rel = os.path.relpath(path, root)
                if rel == ".":  # the input is itself a frame folder
                    rel = os.path.basename(os.path.abspath(path))
                found.append((path, rel, None, None, None))
        elif os.path.isfile(item) and item.lower().endswith(".txt"):
            found.extend(_from_list(item))
        elif os.path.exists(item) or os.path.islink(item):
            found.append((item, os.path.basename(item), None, None, None))
        else:
            raise ConfigError(f"input {item!r} does not exist")
    found.sort(key=lambda t: (t[1], t[0], t[3] or 0.0, t[4] or 0.0))
    unique: List[Found] = []
    seen_paths = set()
    for path, rel, label, start, end in found:
        key = (path if is_url(path) else os.path.abspath(path), start, end)
        if key not in seen_paths:
            seen_paths.add(key)
            unique.append((path, rel, label, start, end))

    def segment(start: Optional[float], end: Optional[float]) -> str:
        return "" if start is None else f"@{format_time(start)}-{format_time(end)}"

    def base_id(path: str, rel: str, start: Optional[float], end: Optional[float]) -> str:
        folder = path in frame_dirs or (not is_url(path) and os.path.isdir(path))
        return _safe_id(rel, keep_ext=folder) + segment(start, end)

    def original_id(path: str, rel: str, start: Optional[float], end: Optional[float]):
        folder = path in frame_dirs or (not is_url(path) and os.path.isdir(path))
        raw = _raw_id(rel, keep_ext=folder)
        return raw + segment(start, end) if has_unsafe(raw) else None

    # folders the ids name (casefolded): no video may take one of these as its own id
    folders = {f.casefold() for p, rel, _, s, e in unique for f in _folders(base_id(p, rel, s, e))}
    used: Dict[str, str] = {}  # casefolded id -> path

    def free(cand: str) -> bool:
        return cand.casefold() not in used and cand.casefold() not in folders

    videos: List[Tuple[str, str, str, Optional[int], Optional[float], Optional[float],
                       Optional[str]]] = []
    # names spelled safely take their ids first: a name with whitespace never takes the id
    # of one without ("a b" -> "a_b" comes after a real "a_b", as "a_b_mkv")
    order = sorted(range(len(unique)), key=lambda i: original_id(*_pick(unique[i])) is not None)
    for i in order:
        path, rel, label, start, end = unique[i]
        vid = base_id(path, rel, start, end)
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
        videos.append((path, vid, cls, label, start, end, original_id(path, rel, start, end)))
    videos = [v for _, v in sorted(zip(order, videos))]  # back in sorted path order
    classes = sorted({v[2] for v in videos})
    index = {c: i for i, c in enumerate(classes)}
    return [VideoInput(p, v, c, lab if lab is not None else index[c], s, e, o)
            for p, v, c, lab, s, e, o in videos]


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
