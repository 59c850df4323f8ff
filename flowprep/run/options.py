"""The options of ``flowprep extract``, in one place: names, defaults, help, choices, checks.

``OPTIONS`` is the one source. From it come

- :class:`ExtractOptions`, the frozen dataclass of a run's options (its fields are the
  keyword arguments of ``flowprep.extract``);
- :func:`validate`, which every entry point runs (flowprep.extract, the CLI);
- the click options of ``flowprep extract`` (flowprep/cli/extract_cmd.py generates them:
  flag, type, default, choices, help and the parsing of the option's text);
- the presets (:mod:`flowprep.run.presets`) and their resolution: a preset's values
  replace the defaults, explicit options replace a preset's values.

Adding an option is adding one ``Option`` here (and using it in the stages).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple

from .. import quantize as qz
from ..decode import DECODERS, Resize, parse_size
from ..decode.folder import check_input_fps
from ..decode.select import check_selection
from ..errors import ConfigError
from ..flow import ALGOS, BACKENDS, parse_device, parse_param_items
from ..flow.warp import settings_from
from ..inputs import parse_shard
from ..remote import parse_storage_options
from ..store import FORMATS
from .presets import PRESETS, apply_preset

#: --task: what a store holds
TASKS = ("both", "rgb", "flow")
#: --payload: what an HDF5 store holds per frame
PAYLOADS = ("jpeg", "raw")


def parse_bytes(text: str) -> int:
    """'1GiB', '500MiB', '1000000' -> bytes (KiB/MiB/GiB, kB/MB/GB, K/M/G, B)."""
    t = str(text).strip()
    units = {"kib": 1 << 10, "mib": 1 << 20, "gib": 1 << 30, "kb": 10 ** 3, "mb": 10 ** 6,
             "gb": 10 ** 9, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "b": 1}
    low = t.lower()
    for u in sorted(units, key=len, reverse=True):
        if low.endswith(u):
            num = low[: -len(u)].strip()
            break
    else:
        u, num = "b", low
    try:
        value = int(float(num) * units[u])
    except ValueError:
        raise ConfigError(f"size must be bytes or a number with KiB/MiB/GiB, got {text!r}") from None
    if value <= 0:
        raise ConfigError(f"size must be positive, got {text!r}")
    return value


@dataclass(frozen=True)
class Option:
    """One option of a run.

    Attributes:
        name: the ExtractOptions field and flowprep.extract keyword.
        default: its value when not given (``factory`` for mutable defaults).
        help: one line for --help and the docs.
        type: str, int, float or bool (bool options are CLI flags).
        choices: the allowed values, or None.
        min, max: bounds of a number (inclusive), or None.
        check: raises ConfigError for a bad value (after choices and bounds).
        flag: the CLI flag ("--" + name with dashes by default); None: API only.
        cli_default: the CLI's default when its text differs (``--shard-size 1GiB``).
        parse: CLI text -> value (``--size 340x256``, ``--shard-size 1GiB``).
        metavar: the CLI metavar; multiple: the CLI option repeats (``--param``).
        secret: the value may hold credentials (left out of repr).
    """

    name: str
    default: Any = None
    help: str = ""
    type: type = str
    choices: Optional[Tuple[str, ...]] = None
    min: Optional[float] = None
    max: Optional[float] = None
    check: Optional[Callable[[Any], Any]] = None
    flag: Optional[str] = ""
    cli_default: Any = None
    parse: Optional[Callable[[Any], Any]] = None
    metavar: Optional[str] = None
    multiple: bool = False
    factory: Optional[Callable[[], Any]] = None
    #: credentials may be in it: left out of the options' repr (nothing records options)
    secret: bool = False

    @property
    def cli_flag(self) -> Optional[str]:
        if self.flag is None:
            return None
        return self.flag or "--" + self.name.replace("_", "-")

    def default_value(self) -> Any:
        return self.factory() if self.factory is not None else self.default

    def validate(self, value: Any) -> None:
        if value is None and (self.default is None or self.type is bool):
            return
        if self.choices is not None and value not in self.choices:
            raise ConfigError(f"{self.name.replace('_', ' ')} must be one of "
                              f"{', '.join(self.choices)}, got {value!r}")
        if self.min is not None or self.max is not None:
            try:
                v = float(value)
            except (TypeError, ValueError):
                raise ConfigError(f"{self.cli_flag or self.name} must be a number, "
                                  f"got {value!r}") from None
            lo = "" if self.min is None else f"at least {self.min:g}"
            hi = "" if self.max is None else f"at most {self.max:g}"
            if (self.min is not None and v < self.min) or (self.max is not None and v > self.max):
                raise ConfigError(f"{self.name.replace('_', ' ')} must be "
                                  f"{' and '.join(x for x in (lo, hi) if x)}, got {value}")
        if self.check is not None:
            self.check(value)


def _check_shard(value: Any) -> None:
    parse_shard(value)


def _check_timeout(value: Any) -> None:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not value > 0:
        raise ConfigError(f"timeout must be a positive number of seconds, got {value!r}")


OPTIONS: Tuple[Option, ...] = (
    Option("algo", "tvl1", "Flow algorithm.", choices=ALGOS),
    Option("device", "auto", "auto, cpu, cuda, cuda:N or cuda:N,M (auto: CUDA when available).",
           check=parse_device),
    Option("backend", "auto", "Who computes the flow (native: flowprep's compiled TV-L1, auto's "
           "choice on the CPU; opencv: OpenCV's; torch: TV-L1 on any PyTorch device).",
           choices=BACKENDS),
    Option("params", None, "Algorithm parameter, repeatable (e.g. --param warps=3).",
           type=dict, flag="--param", metavar="KEY=VALUE", multiple=True,
           parse=parse_param_items, factory=dict),
    Option("format", "jpeg", "Store format: jpeg (a folder per video), hdf5 (shards), wds "
           "(webdataset tar shards, one sample per video).", choices=FORMATS),
    Option("short_side", 256, "Resize so the short side has N pixels; 0 keeps the size.",
           type=int, min=0),
    Option("size", None, "Resize to exactly W x H pixels.", type=tuple, parse=parse_size,
           metavar="WxH"),
    Option("bound", qz.DEFAULT_BOUND, "Quantization bound B in pixels (fixed scheme).",
           type=float, check=qz.check_bound),
    Option("quant", "fixed", "Quantization scheme.", choices=qz.SCHEMES),
    Option("step", 1, "Flow from frame t to t+K.", type=int, min=1),
    Option("backward", False, "Also store the backward flow t+K -> t.", type=bool),
    Option("warped", False, "Also store TSN's warped flow (camera homography removed; "
           "docs/warped.md).", type=bool),
    Option("jpeg_quality", 95, "JPEG quality of the stored frames.", type=int, min=1, max=100),
    Option("jobs", None, "Parallel videos (default: number of cores).", type=int, min=1),
    Option("shard", None, "Process part I of N (0-based); default from SLURM_ARRAY_TASK_*.",
           check=_check_shard, metavar="I/N"),
    Option("scheduler", None, "Run videos on this dask.distributed scheduler.",
           metavar="ADDRESS"),
    Option("force", False, "Recompute videos that are already published.", type=bool),
    Option("timeout", 300.0, "Per-video time limit in seconds, plus --timeout-per-frame per "
           "decoded frame.", type=float, check=_check_timeout),
    Option("timeout_per_frame", 10.0, "Seconds added to the time limit per decoded frame.",
           type=float, min=0),
    Option("batch_size", None, "Frame pairs per flow call (torch backend).", type=int, min=1),
    Option("shard_size", 1 << 30, "Shard size limit of hdf5 and wds (bytes, or with "
           "KiB/MiB/GiB).",
           type=int, cli_default="1GiB", parse=parse_bytes, min=1),
    Option("payload", "jpeg", "HDF5 frame payload: the JPEG store's bytes, or lossless uint8 "
           "flow.", choices=PAYLOADS),
    Option("progress", False, "Progress line on stderr (default: when stderr is a terminal).",
           type=bool, flag="--progress/--no-progress"),
    Option("task", "both", "Store RGB frames and flow, or only one of them.", choices=TASKS),
    Option("decoder", "auto", "Video decoder (auto: PyAV, whose FFmpeg reads AV1/HEVC/VP9; "
           "OpenCV when PyAV is not installed).", choices=DECODERS),
    Option("fps", None, "Resample to F frames/s by presentation time, as FFmpeg's fps filter "
           "does.", type=float, metavar="F"),
    Option("start", None, "Keep the frames shown at S <= t (seconds).", type=float, metavar="S"),
    Option("end", None, "Keep the frames shown at t < E (seconds).", type=float, metavar="E"),
    Option("input_fps", None, "Frames/s of frame-folder inputs (default 25).", type=float,
           metavar="F", check=check_input_fps),
    Option("preset", None, "A published setup (docs/presets.md): its options replace the "
           "defaults; options given explicitly replace its.", choices=tuple(PRESETS)),
    # object storage (flowprep/remote.py): how to reach URLs, never part of a store's record
    Option("storage_options", None, "Passed to fsspec for s3://, gs://... URLs (e.g. "
           "endpoint_url=http://host:9000, anon=true); repeatable. Credentials come from the "
           "usual AWS_*/GOOGLE_* variables and profiles; never written anywhere.",
           type=dict, flag="--storage-option", metavar="KEY=VALUE", multiple=True,
           parse=parse_storage_options, factory=dict, secret=True),
    Option("staging", None, "With an -o URL: local folder where shards are built before "
           "upload (default: a temporary folder; needs about --jobs x --shard-size).",
           metavar="DIR"),
)

BY_NAME: Dict[str, Option] = {o.name: o for o in OPTIONS}


def _annotation(o: Option) -> Any:
    return Any


def _resize(self) -> Resize:
    return Resize(int(self.short_side), tuple(self.size) if self.size else None)


def _validate_method(self) -> None:
    validate(self)


ExtractOptions = dataclasses.make_dataclass(
    "ExtractOptions",
    [(o.name, _annotation(o), dataclasses.field(default_factory=o.factory, repr=not o.secret)
      if o.factory else dataclasses.field(default=o.default, repr=not o.secret))
     for o in OPTIONS],
    frozen=True,
    namespace={"resize": property(_resize), "validate": _validate_method,
               "__doc__": "Every option of ``flowprep extract`` (fields: flowprep.run.options."
                          "OPTIONS, where each has its default, help and checks).\n\n"
               + "\n".join(f"    {o.name}: {o.help}" for o in OPTIONS)})
ExtractOptions.__module__ = __name__  # pickled by reference (worker processes, dask)


def validate(opts: Any) -> None:
    """Check every option of ``opts`` (ExtractOptions), then the combinations.

    Raises:
        ConfigError naming the option, the bad value and what is allowed.
    """
    for o in OPTIONS:
        if o.name in ("warped", "params"):
            continue
        o.validate(getattr(opts, o.name))
    check_selection(opts.fps, opts.start, opts.end)
    Resize(opts.short_side, opts.size)
    if opts.warped:
        settings_from(opts.warped)
        if opts.task == "rgb":
            raise ConfigError("--warped computes flow, but --task rgb stores none; "
                              "use --task both or --task flow with --warped")


def make_options(options: Mapping[str, Any]) -> Any:
    """ExtractOptions from keyword arguments (flowprep.extract's): unknown names refused,
    a preset resolved (its values under the explicit ones), every value validated."""
    unknown = set(options) - set(BY_NAME)
    if unknown:
        raise ConfigError(f"unknown extract option(s): {', '.join(sorted(unknown))}")
    values = dict(options)
    if values.get("preset") is not None:
        BY_NAME["preset"].validate(values["preset"])
        values = apply_preset(values["preset"], values)
    opts = ExtractOptions(**values)
    validate(opts)
    return opts


def changed(opts: Any, names: Optional[Iterable[str]] = None) -> Dict[str, Any]:
    """The options of ``opts`` that differ from their defaults (what a store records)."""
    out = {}
    for o in OPTIONS:
        if names is not None and o.name not in names:
            continue
        v = getattr(opts, o.name)
        if v != o.default_value():
            out[o.name] = list(v) if isinstance(v, tuple) else v
    return out


def option_names() -> Sequence[str]:
    return tuple(BY_NAME)
