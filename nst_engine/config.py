"""The one configuration dataclass shared by the engine API, the CLI and the GIMP dialog.

Every field carries its help text and, where it has one, its choices and bounds in `metadata`
(made by `option`); the CLI builds its options from these fields (see `nst_engine.cli.options`)
and the GIMP plug-in receives the same names through the bridge. `check()` validates a config and
raises an `InputError` naming the argument and the value. The same metadata describes the other
option dataclasses (`nst_engine.options.StylizeOptions`, `export.config.TrainConfig`), and
`check_fields` validates any of them.

Metadata keys: ``help``; ``choices``; ``lo``/``hi`` (inclusive bounds); and for the command line
``cli`` (the flags, a positional's METAVAR, or ``None``: not an option), ``metavar``, ``group``
(the help section), ``required``, ``cli_default`` (the parser's default where it differs from
the field's) and ``default_text`` (the default as the help shows it).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import InputError

MAX_SIZE = 20000  # px; anything larger is almost surely a typo (and would not fit in memory)
MAX_PIXELS = 400_000_000  # px of an image read or received (a decompression bomb is refused from its header)


def option(help: str, **meta: Any) -> dict[str, Any]:
    """A dataclass field's metadata: its help text plus the keys of the module notes."""
    return {"help": help, **meta}


_opt = option


@dataclass
class StyleConfig:
    """Settings of one run of the iterative optimizer (Gatys et al. 2016)."""

    # --- image sizes -------------------------------------------------------------------------
    size: int = field(default=512, metadata=_opt("long side of the processed image in px", lo=1, hi=MAX_SIZE))
    style_scale: float = field(
        default=1.0, metadata=_opt("style image long side relative to --size", lo=0.01, hi=16.0)
    )
    style_scales: tuple[float, ...] = field(
        default=(), metadata=_opt("scale control: the style image(s) at several long sides relative to --size, their "
                                  "Gram statistics blended, so one painting gives its large and its fine structure at "
                                  "once (e.g. 0.5,2); instead of --style-scale; --style-blend then weights these sizes")
    )
    scales: tuple[int, ...] = field(
        default=(), metadata=_opt("coarse-to-fine long sides, e.g. 512,1024,2048 (the last is the output); "
                                  "default: automatic above 384 px, at most 3 scales from ≥ 256 px")
    )
    scale_steps: tuple[int, ...] = field(default=(), metadata=_opt("steps at each scale (default: --steps, then halving)"))
    max_memory: float = field(
        default=0.0, metadata=_opt("memory budget in GiB on the device that runs (0: 85% of what is free)", lo=0.0, hi=1e6)
    )
    tile: int = field(
        default=0, metadata=_opt("tile side in px. The optimizer evaluates in exact tiles of this size "
                                 "(0: only scales that do not fit --max-memory); --model runs in tiles of this "
                                 "side (0: the largest that fits 2 GiB)", lo=0, hi=MAX_SIZE)
    )
    # --- optimizer ---------------------------------------------------------------------------
    steps: int = field(default=500, metadata=_opt("optimizer steps (one loss+gradient evaluation each)", lo=0, hi=10**6))
    optimizer: str = field(default="lbfgs", metadata=_opt("optimizer", choices=("lbfgs", "adam")))
    lr: float = field(
        default=1.0, metadata=_opt("learning rate (pixel units 0..255 for adam; step scale for lbfgs)", lo=1e-6, hi=1e4)
    )
    # --- initial image -----------------------------------------------------------------------
    init: str = field(default="content", metadata=_opt("start image: content, noise, style or an image FILE"))
    init_blur: float = field(default=0.0, metadata=_opt("Gaussian blur sigma (px) applied to the start image", lo=0.0, hi=1000.0))
    noise_mean: float = field(default=0.5, metadata=_opt("mean of the noise start image (0..1)", lo=-10.0, hi=10.0))
    noise_std: float = field(default=0.1, metadata=_opt("std of the noise start image (0..1)", lo=0.0, hi=10.0))
    # --- loss --------------------------------------------------------------------------------
    content_layers: tuple[str, ...] = field(default=("relu4_2",), metadata=_opt("VGG-19 layers for the content loss"))
    content_layer_weights: tuple[float, ...] = field(default=(), metadata=_opt("per content layer weights (default 1 each)"))
    style_layers: tuple[str, ...] = field(
        default=("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"),
        metadata=_opt("VGG-19 layers for the style (Gram) loss"),
    )
    style_layer_weights: tuple[float, ...] = field(default=(), metadata=_opt("per style layer weights (default 1 each)"))
    content_weight: float = field(default=1.0, metadata=_opt("content loss weight", lo=0.0, hi=1e12))
    style_weight: float = field(default=1.0, metadata=_opt("style loss weight", lo=0.0, hi=1e12))
    tv_weight: float = field(default=0.0, metadata=_opt("total-variation (smoothness) weight", lo=0.0, hi=1e12))
    histogram_weight: float = field(
        default=0.0, metadata=_opt("histogram loss weight (Risser et al. 2017; try 1)", lo=0.0, hi=1e12)
    )
    histogram_layers: tuple[str, ...] = field(
        default=("relu1_1", "relu4_1"), metadata=_opt("VGG-19 layers for the histogram loss")
    )
    preserve_colors: str = field(
        default="none",
        metadata=_opt("keep the content's colours: luminance-only transfer, or the style recoloured first "
                      "(histogram matching, or linear = mean/covariance)",
                      choices=("none", "luminance", "histogram", "linear")),
    )
    style_blend: tuple[float, ...] = field(default=(), metadata=_opt("weights of several style images (default equal)"))
    # --- network -----------------------------------------------------------------------------
    pooling: str = field(default="max", metadata=_opt("VGG pooling", choices=("max", "avg")))
    weights: str = field(
        default="caffe", metadata=_opt("VGG-19 weights: caffe (shipped), torchvision, or a .pth/.safetensors FILE")
    )
    allow_download: bool = field(default=False, metadata=_opt("let --weights torchvision download into the torch cache"))
    device: str = field(default="auto", metadata=_opt("compute device: auto, cpu, cuda or cuda:N"))
    precision: str = field(
        default="auto",
        metadata=_opt("network arithmetic: fp32; tf32 (CUDA convolutions); bf16 (autocast, all layers; Grams and "
                      "losses stay fp32); hybrid (bf16 from conv3_1 after 5 fp32 steps: ~1.3x faster per step than "
                      "fp32 on an AMD EPYC with native bf16, same final loss); auto: tf32 on CUDA, hybrid on a CPU "
                      "where native bf16 is measured faster (timed once per machine), else fp32",
                      choices=("auto", "fp32", "tf32", "bf16", "hybrid")),
    )
    # --- run ---------------------------------------------------------------------------------
    seed: int | None = field(default=0, metadata=_opt("random seed (same seed, same CPU output bit for bit)"))
    save_every: int = field(default=0, metadata=_opt("hand a snapshot to the callback every N steps (0: never)", lo=0, hi=10**6))

    def replace(self, **changes: Any) -> "StyleConfig":
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "StyleConfig":
        """Build a config from plain JSON-like data (the bridge, saved settings), checked."""
        names = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(names))
        if unknown:
            raise InputError("config", unknown[0], f"unknown setting; known: {', '.join(sorted(names))}")
        values = {}
        for key, value in data.items():
            if isinstance(names[key].default, tuple) and isinstance(value, (list, tuple)):
                value = tuple(value)
            values[key] = value
        cfg = cls(**values)
        cfg.check()
        return cfg

    def check(self) -> None:
        """Raise `InputError` (naming the option and its value) if any setting is invalid."""
        from .encoders.layers import resolve_layer  # no torch: config stays cheap to import

        check_fields(self)
        if self.size <= 0:
            raise InputError("size", self.size, "must be > 0")
        if any((not isinstance(v, int)) or not 1 <= v <= MAX_SIZE for v in self.scales):
            raise InputError("scales", self.scales, f"each must be a whole number of px, 1..{MAX_SIZE}")
        if any((not isinstance(v, int)) or v < 0 for v in self.scale_steps):
            raise InputError("scale_steps", self.scale_steps, "each must be a whole number >= 0")
        if any(not 0.01 <= v <= 16.0 for v in self.style_scales):
            raise InputError("style_scales", self.style_scales, "each must be between 0.01 and 16")
        if self.style_scales and self.style_scale != 1.0:
            raise InputError("style_scales", self.style_scales, "give style_scale or style_scales, not both")
        if self.style_scales and self.style_blend and len(self.style_blend) != len(self.style_scales):
            raise InputError("style_blend", self.style_blend,
                             f"with style_scales it weights the sizes: one weight per size ({len(self.style_scales)})")
        if self.scales and self.scale_steps and len(self.scale_steps) != len(self.scales):
            raise InputError("scale_steps", self.scale_steps, f"needs one step count per scale ({len(self.scales)})")
        for name in ("content_layers", "style_layers", "histogram_layers"):
            for layer in getattr(self, name):
                resolve_layer(layer, argument=name)
        for layers, weights, name in (
            (self.content_layers, self.content_layer_weights, "content_layer_weights"),
            (self.style_layers, self.style_layer_weights, "style_layer_weights"),
        ):
            if weights and len(weights) != len(layers):
                raise InputError(name, weights, f"needs one weight per layer ({len(layers)})")
            if any((not math.isfinite(w)) or w < 0 for w in weights):
                raise InputError(name, weights, "weights must be finite and >= 0")
        if any((not math.isfinite(w)) or w < 0 for w in self.style_blend) or (
            self.style_blend and sum(self.style_blend) <= 0
        ):
            raise InputError("style_blend", self.style_blend, "weights must be >= 0 with a positive sum")
        if self.init not in ("content", "noise", "style") and not Path(self.init).is_file():
            raise InputError("init", self.init, "not content, noise, style, or an existing image file")
        if self.device != "auto" and not (self.device == "cpu" or self.device.startswith("cuda")):
            raise InputError("device", self.device, "must be auto, cpu, cuda or cuda:N")
        if self.seed is not None and not isinstance(self.seed, int):
            raise InputError("seed", self.seed, "must be a whole number")


def check_fields(obj: Any) -> None:
    """`InputError` (naming the field and its value) unless every field of the dataclass ``obj``
    has its annotated type and lies within its metadata's ``choices`` and ``lo``..``hi``."""
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        annotation = str(f.type)
        _check_type(f.name, annotation, value)
        if value is None and annotation.endswith(" | None"):
            continue
        meta = f.metadata
        if "choices" in meta and value not in meta["choices"]:
            raise InputError(f.name, value, f"must be one of {', '.join(map(str, meta['choices']))}")
        if "lo" in meta:
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise InputError(f.name, value, "must be a number")
            if isinstance(value, float) and not math.isfinite(value):
                raise InputError(f.name, value, "must be finite")
            if annotation in ("int", "int | None") and not isinstance(value, int):
                raise InputError(f.name, value, "must be a whole number")
            if not meta["lo"] <= value <= meta["hi"]:
                raise InputError(f.name, value, f"must be between {meta['lo']} and {meta['hi']}")


_KINDS: dict[str, tuple[tuple[type, ...], str, str]] = {  # annotation: types, one, several
    "int": ((int,), "a whole number", "whole numbers"), "float": ((numbers.Real,), "a number", "numbers"),
    "str": ((str,), "text", "names"), "bool": ((bool,), "true or false", "true or false values"),
}


def _check_type(name: str, annotation: str, value: Any) -> None:
    """InputError unless ``value`` has the field's type (JSON from the bridge can carry anything)."""
    optional = annotation.endswith(" | None")
    kind = annotation[: -len(" | None")] if optional else annotation
    if optional and value is None:
        return
    if kind.startswith("tuple[") and kind.endswith(", ...]"):
        types, _, several = _KINDS[kind[len("tuple["):-len(", ...]")]]
        if not isinstance(value, tuple) or not all(_is(v, types) for v in value):
            raise InputError(name, value, f"must be a list of {several}")
        return
    if kind in _KINDS and not _is(value, _KINDS[kind][0]):
        raise InputError(name, value, f"must be {_KINDS[kind][1]}")


def _is(value: Any, types: tuple[type, ...]) -> bool:
    return isinstance(value, types) and (bool in types or not isinstance(value, bool))
