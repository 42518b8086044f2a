"""How long an iterative run takes on this machine, before it starts.

A step (one loss and gradient through VGG-19 at the default content and style layers) costs
about ``a + b * pixels`` seconds: a fixed overhead plus the convolutions, which grow with the
pixels. `measure` times steps at two small sizes (96 and 192 px long side, a few seconds in
all), `fit` draws the line through them, and `step_cost` keeps the figures per machine in
``~/.cache/nst-gimp/step-cost.json`` (keyed by processor, torch version, device, precision and
threads; ``NST_CACHE_DIR`` moves it), so only the first call on a machine measures.
`estimate_seconds` adds up the steps of every scale of the run's plan (`nst_engine.plan`: coarse
to fine above 1024 px), a scale evaluated in exact tiles counted ``TILE_FACTOR`` times.

``nst gimp-install`` writes the figures into the plug-in's spec, and the dialog computes the same
sum in pure Python (`nst_engine.bridge.timing.run_seconds`). torch is imported only to measure.
"""
from __future__ import annotations

import json
import os
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import StyleConfig
from .system import cpu_name

__all__ = ["StepCost", "MEASURE_SIZES", "TILE_FACTOR", "cache_file", "estimate_seconds", "fit", "machine_key",
           "measure", "step_cost"]

MEASURE_SIZES = (96, 192)  # px, long side of the 4:3 images a step is timed on
TILE_FACTOR = 2.0  # an exactly tiled step costs 1.5-3x a whole one (two passes, halos)
CACHE_VERSION = 1  # bump when the measurement changes, so old figures are not reused


@dataclass(frozen=True)
class StepCost:
    """Seconds of one optimizer step on ``pixels`` pixels: ``a + b * pixels``."""

    a: float  # s
    b: float  # s per pixel
    key: dict[str, Any]  # the machine it was measured on (see `machine_key`)
    points: tuple[tuple[int, float], ...] = ()  # the measurements (pixels, s)

    def seconds_per_step(self, pixels: int) -> float:
        return self.a + self.b * pixels

    def to_spec(self) -> dict[str, Any]:
        """The figures the GIMP plug-in needs (`nst_engine.bridge.timing.run_seconds`)."""
        from .plan import AUTO_COARSEST, AUTO_MAX_SCALES, AUTO_SINGLE_SCALE

        return {"a": self.a, "b": self.b, "device": self.key.get("device"), "processor": self.key.get("processor"),
                "precision": self.key.get("precision"), "single_scale_max": AUTO_SINGLE_SCALE,
                "coarsest": AUTO_COARSEST, "max_scales": AUTO_MAX_SCALES}


def fit(points: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(a, b) of the least-squares line ``seconds = a + b * pixels``, neither negative: noise that
    makes the slope negative gives a flat line at the mean, and a negative intercept a line
    through the origin."""
    if not points:
        raise ValueError("no measurements to fit")
    xs = [float(p) for p, _ in points]
    ys = [float(s) for _, s in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    b = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx if sxx > 0 else 0.0
    if b <= 0:
        return my, 0.0
    a = my - b * mx
    if a < 0:
        return 0.0, sum(x * y for x, y in zip(xs, ys, strict=True)) / sum(x * x for x in xs)
    return a, b


def machine_key(config: StyleConfig | None = None) -> dict[str, Any]:
    """What a step's cost depends on besides the image: processor, torch, device, precision, threads."""
    import torch

    from .api import select_device
    from .encoders.vgg import resolve_precision

    cfg = config or StyleConfig()
    device = select_device(cfg.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else cpu_name()
    return {"version": CACHE_VERSION, "processor": name, "torch": torch.__version__, "device": device.type,
            "precision": resolve_precision(cfg.precision, device), "threads": torch.get_num_threads(),
            "weights": cfg.weights, "pooling": cfg.pooling}


def measure(config: StyleConfig | None = None, sizes: Sequence[int] = MEASURE_SIZES,
            repeats: int = 3) -> list[tuple[int, float]]:
    """[(pixels, median seconds of one step)] for 4:3 images of each long side in ``sizes``."""
    import torch

    from .api import select_device
    from .encoders.vgg import deepest, precision
    from .encoders.weights import get_encoder
    from .losses import Objective, content_terms, style_terms

    cfg = config or StyleConfig()
    device = select_device(cfg.device)
    encoder = get_encoder(cfg.weights, deepest([*cfg.content_layers, *cfg.style_layers]), cfg.pooling, device,
                          cfg.allow_download)
    gen = torch.Generator().manual_seed(0)

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize(device)

    points = []
    with precision(cfg.precision, device):
        for size in sizes:
            h, w = max(1, round(size * 3 / 4)), int(size)
            content = (torch.rand((1, 3, h, w), generator=gen) * 255).to(device)
            style = (torch.rand((1, 3, h, w), generator=gen) * 255).to(device)
            objective = Objective(
                encoder, content=content_terms(encoder, content, cfg.content_layers, (), cfg.content_weight),
                style=style_terms(encoder, [style], (), cfg.style_layers, (), cfg.style_weight))
            objective.value_and_grad(content)  # the first pass pays one-time set-up costs
            times = []
            for _ in range(max(1, repeats)):
                sync()
                t0 = time.perf_counter()
                objective.value_and_grad(content)
                sync()
                times.append(time.perf_counter() - t0)
            points.append((h * w, statistics.median(times)))
    return points


def cache_file() -> Path:
    """``$NST_CACHE_DIR`` or ``$XDG_CACHE_HOME/nst-gimp`` (``~/.cache/nst-gimp``), ``step-cost.json``."""
    folder = os.environ.get("NST_CACHE_DIR")
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "nst-gimp")
    return Path(folder) / "step-cost.json"


def _key_text(key: dict[str, Any]) -> str:
    return json.dumps(key, sort_keys=True)


def _read_cache(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    entries = data.get("entries") if isinstance(data, dict) else None
    return entries if isinstance(entries, dict) else {}


def _write_cache(path: Path, entries: dict[str, Any]) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"entries": entries}, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass  # a read-only home: measure again next time


def step_cost(config: StyleConfig | None = None, *, refresh: bool = False, sizes: Sequence[int] = MEASURE_SIZES,
              repeats: int = 3) -> StepCost:
    """This machine's step cost: from the cache, else measured (and cached)."""
    key = machine_key(config)
    path = cache_file()
    entries = _read_cache(path)
    entry = entries.get(_key_text(key))
    if not refresh and isinstance(entry, dict):
        try:
            points = tuple((int(p), float(s)) for p, s in entry.get("points", []))
            return StepCost(float(entry["a"]), float(entry["b"]), key, points)
        except (KeyError, TypeError, ValueError):
            pass  # a damaged entry: measure again
    points = tuple(measure(config, sizes, repeats))
    a, b = fit(points)
    entries = _read_cache(path)  # another process may have written meanwhile
    entries[_key_text(key)] = {"a": a, "b": b, "points": [list(p) for p in points],
                               "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
    _write_cache(path, entries)
    return StepCost(a, b, key, points)


def estimate_seconds(config: StyleConfig, image_height: int, image_width: int, *,
                     cost: StepCost | None = None) -> float:
    """Seconds the optimisation loop of `nst_engine.api.stylize` will take for an image of
    ``image_height`` x ``image_width`` px under ``config``: every scale of its plan, ``steps``
    times the step cost at that scale's pixels (``TILE_FACTOR`` times for a tiled scale).
    ``cost`` defaults to this machine's (`step_cost`). Raises `InputError` when the run would
    not fit in memory, as the run itself would."""
    from .api import select_device
    from .encoders.vgg import deepest
    from .plan import make_plan

    config.check()
    hist = config.histogram_layers if config.histogram_weight > 0 else ()
    layers = [*config.content_layers, *config.style_layers, *hist]
    plan = make_plan((int(image_height), int(image_width)), config.size, config.steps, deepest(layers),
                     select_device(config.device), scales=config.scales, scale_steps=config.scale_steps,
                     max_memory_gib=config.max_memory, tile=config.tile, tileable=not hist)
    c = cost or step_cost(config)
    return sum(sc.steps * c.seconds_per_step(sc.shape[0] * sc.shape[1]) * (TILE_FACTOR if sc.tile else 1.0)
               for sc in plan)
