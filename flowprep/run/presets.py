"""Published preprocessing setups, as bundles of extract options (``--preset NAME``).

Each preset names its source. Its options replace the defaults of
``flowprep extract``; an option given explicitly replaces the preset's (``--size`` or
``--short-side`` given replaces both of the preset's resize options: they are one
choice). The store's config records the preset (``config["preset"]``: name, source and
the options it set), which is not hashed into the config key: a store made with
``--preset tsn`` and one made with the same options spelled out are the same store.

docs/presets.md has the table and the loader settings that go with each.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Mapping, Tuple

from ..errors import ConfigError

#: options that are one choice: given explicitly, the preset's values for all are dropped
GROUPS: Tuple[Tuple[str, ...], ...] = (("size", "short_side"),)


@dataclass(frozen=True)
class Preset:
    """A published setup.

    Attributes:
        name: the --preset value.
        options: extract options it sets (names of flowprep.run.options.OPTIONS).
        source: where the setup is written down (paper, repository, file).
        loader: the TwoStreamDataset options that serve it as its authors trained.
    """

    name: str
    options: Mapping[str, Any]
    source: str
    loader: Mapping[str, Any] = field(default_factory=dict)


PRESETS: Dict[str, Preset] = {p.name: p for p in (
    Preset("tsn", {"algo": "tvl1", "size": (340, 256), "bound": 20.0, "quant": "fixed",
                   "step": 1},
           "TSN (Wang et al., ECCV 2016): yjxiong/temporal-segment-networks, "
           "scripts/extract_optical_flow.sh runs tools/build_of.py --new_width 340 "
           "--new_height 256, which runs dense_flow (TV-L1, bound 20: flow clipped to "
           "[-20, 20] px and mapped to 0..255 JPEGs)",
           {"modality": "flow", "layout": "stack", "length": 5, "num_segments": 3,
            "flow_scale": "pixels"}),
    Preset("i3d", {"algo": "tvl1", "fps": 25.0, "short_side": 256, "bound": 20.0,
                   "quant": "fixed", "step": 1},
           "I3D (Carreira & Zisserman, CVPR 2017): deepmind/kinetics-i3d README, "
           "'Data preprocessing': videos sampled at 25 frames per second, resized so the "
           "smallest side is 256 pixels, TV-L1 optical flow, values truncated to [-20, 20] "
           "and rescaled to [-1, 1]",
           {"modality": "flow", "layout": "clip", "flow_scale": "unit", "crop_size": 224}),
    Preset("denseflow", {"algo": "tvl1", "bound": 32.0, "short_side": 0, "quant": "fixed",
                         "step": 1},
           "mmaction2's extractor, open-mmlab/denseflow: the defaults of tools/denseflow.cpp "
           "(-a tvl1, -b 32, -s 1; no resize: --nw, --nh and --ns 0)",
           {"modality": "flow", "layout": "stack", "flow_scale": "pixels"}),
)}


def get_preset(name: str) -> Preset:
    """The preset ``name``; ConfigError listing the presets for an unknown one."""
    try:
        return PRESETS[name]
    except (KeyError, TypeError):
        raise ConfigError(f"unknown preset {name!r}; choose one of {', '.join(PRESETS)} "
                          f"(docs/presets.md)") from None


def apply_preset(name: str, explicit: Mapping[str, Any]) -> Dict[str, Any]:
    """``explicit`` options over preset ``name``'s: the options of the run (a new dict)."""
    preset = get_preset(name)
    out = dict(explicit)
    for key, value in preset.options.items():
        group = next((g for g in GROUPS if key in g), (key,))
        if not any(k in explicit for k in group):
            out[key] = value
    return out


def describe(name: str, opts: Any) -> Dict[str, Any]:
    """What the store config records of a preset: name, source and the values it set
    that the run kept (the options replaced explicitly are not listed)."""
    preset = get_preset(name)
    kept = {}
    for key, value in preset.options.items():
        got = getattr(opts, key)
        if got == value or (isinstance(value, tuple) and tuple(got or ()) == value):
            kept[key] = list(value) if isinstance(value, tuple) else value
    return {"name": preset.name, "source": preset.source, "options": kept}
