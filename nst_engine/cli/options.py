"""CLI options generated from `StyleConfig`'s and `StylizeOptions`' fields, and both built back from them."""
from __future__ import annotations

import argparse
import dataclasses
from typing import TYPE_CHECKING, Any

from ..config import StyleConfig
from ..errors import InputError
from .fields import add_field_options, field_values, flag, list_of

if TYPE_CHECKING:
    from ..options import StylizeOptions

# Fields a subcommand sets itself (it fixes them, or takes them positionally).
_SKIP_DEFAULT: frozenset[str] = frozenset()


def _seed(text: str) -> int | None:
    if text.lower() in ("none", "random"):
        return None
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number or 'random', got {text!r}") from None


_UNITS = {"": 1024**3, "g": 1024**3, "gib": 1024**3, "gb": 1000**3, "m": 1024**2, "mib": 1024**2, "mb": 1000**2,
          "t": 1024**4, "tib": 1024**4, "tb": 1000**4, "k": 1024, "kib": 1024, "kb": 1000}


def memory_gib(text: str) -> float:
    """``--max-memory``: GiB as a plain number (``6``, ``0.5``), or a size as people type it:
    ``2GB``, ``512MB``, ``1.5GiB``, ``800M`` (GB/MB are powers of 1000, GiB/MiB and G/M of 1024)."""
    t = text.strip().lower().replace(" ", "")
    number = t.rstrip("abcdefghijklmnopqrstuvwxyz")
    unit = t[len(number):]
    try:
        value = float(number)
    except ValueError:
        value = float("nan")
    if unit not in _UNITS or not value == value or value < 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected GiB (e.g. 6) or a size like 2GB, 512MB, 1.5GiB; got {text!r}")
    return value * _UNITS[unit] / 1024**3


def add_config_options(parser: argparse.ArgumentParser, skip: frozenset[str] = _SKIP_DEFAULT,
                       defaults: dict[str, Any] | None = None) -> None:
    """One option per config field: ``size`` → ``--size``, tuples as comma-separated lists."""
    group = parser.add_argument_group("engine settings")
    base = StyleConfig()
    for f in dataclasses.fields(StyleConfig):
        if f.name in skip:
            continue
        default = (defaults or {}).get(f.name, getattr(base, f.name))
        kw: dict[str, Any] = {"dest": f.name, "default": default, "help": f.metadata.get("help", "")}
        if isinstance(default, bool):
            kw["action"] = argparse.BooleanOptionalAction
        elif f.name == "seed":
            kw["type"] = _seed
        elif f.name == "max_memory":
            kw["type"] = memory_gib
            kw["metavar"] = "GIB|SIZE"
            kw["help"] += "; a plain number is GiB, or give a size: 2GB, 512MB, 1.5GiB"
        elif isinstance(default, tuple):
            is_layers = f.name.endswith("_layers")
            kind = int if f.name in ("scales", "scale_steps") else float
            kw["type"] = list_of(str if is_layers else kind, "names" if is_layers else kind.__name__)
            kw["metavar"] = "NAME[:W],…" if is_layers else "F,…" if f.name == "style_scales" else "W,…"
            if is_layers:
                kw["help"] += " (comma-separated; NAME:WEIGHT sets a layer's weight)"
        else:
            kw["type"] = type(default)
            if "choices" in f.metadata:
                kw["choices"] = f.metadata["choices"]
        if "help" in kw and not isinstance(default, bool):
            shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
            kw["help"] += f" [default: {shown}]"
        if "help" in kw:
            kw["help"] = kw["help"].replace("%", "%%")  # argparse formats help with %
        group.add_argument(flag(f.name), **kw)


def _split_weights(layers: tuple[str, ...], argument: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    names, weights = [], []
    for item in layers:
        name, _, w = item.partition(":")
        names.append(name)
        if w:
            try:
                weights.append(float(w))
            except ValueError:
                raise InputError(argument, item, "layer weight after ':' must be a number") from None
        else:
            weights.append(1.0)
    return tuple(names), (tuple(weights) if any(":" in i for i in layers) else ())


def config_from_args(args: argparse.Namespace, **fixed: Any) -> StyleConfig:
    """The checked `StyleConfig` for parsed ``args`` (plus ``fixed`` values)."""
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(StyleConfig) if hasattr(args, f.name)}
    values.update(fixed)
    for kind in ("content", "style"):
        key = f"{kind}_layers"
        if key in values:
            names, weights = _split_weights(values[key], f"--{kind}-layers")
            values[key] = names
            if weights:
                if values.get(f"{kind}_layer_weights"):
                    raise InputError(f"--{kind}-layer-weights", values[f"{kind}_layer_weights"],
                                     f"give weights either here or as NAME:WEIGHT in --{kind}-layers, not both")
                values[f"{kind}_layer_weights"] = weights
    cfg = StyleConfig(**values)
    cfg.check()
    return cfg


def add_stylize_options(parser: argparse.ArgumentParser) -> None:
    """`StylizeOptions`' fields as options (``--model``, ``--model-size``, ``--composite``, …)."""
    from ..options import StylizeOptions as Options

    add_field_options(parser, Options)


def stylize_options_from_args(args: argparse.Namespace) -> "StylizeOptions":
    """The checked `StylizeOptions` for parsed ``args``: the model method where ``--model`` is given."""
    from ..options import StylizeOptions as Options

    values = field_values(Options, args)
    options = Options(**values, method="model" if values.get("model") else "iterative")
    options.check()
    return options
