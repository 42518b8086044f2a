"""How long the iterative method will take, from a machine's measured step cost (standard library only).

`nst_engine.estimate` measures one optimizer step on this machine and fits
``seconds_per_step = a + b * pixels``; ``nst gimp-install`` writes those figures into the
plug-in's argument spec (``"estimate"``) and copies this file next to the plug-in as
``nst_bridge/timing.py``. GIMP's Python has no torch, so the dialog computes its
"about 4 min on this computer" here, with the same coarse-to-fine schedule as
`nst_engine.plan.schedule` and the same processed size as the engine's jobs (`processed_long`,
which `nst_engine.bridge.jobs` uses itself), so the dialog and the engine count the same pixels.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

MIN_PROCESSED = 64  # px: the long side below which VGG-19's deep layers see next to nothing
MAX_SIZE = 20000  # = nst_engine.config.MAX_SIZE
AUTO_SINGLE_SCALE = 384  # = nst_engine.plan.AUTO_SINGLE_SCALE: up to this long side, one scale
AUTO_COARSEST = 256  # = nst_engine.plan.AUTO_COARSEST: automatic schedules start at or above this
AUTO_MAX_SCALES = 3  # = nst_engine.plan.AUTO_MAX_SCALES
REASONABLE_SECONDS = 600.0  # the dialog's Size default: the largest size done in about this long
SIZE_LADDER = (256, 384, 512, 640, 768, 1024, 1280, 1536, 2048, 2560, 3072, 4096)


def processed_long(long_side: int, scale: float) -> int:
    """The long side a region of ``long_side`` px is processed at, for a layer processed at
    ``scale`` (the Size over the layer's long side): never below 64 px (or 4x the region)."""
    return int(min(MAX_SIZE, max(min(MIN_PROCESSED, long_side * 4), round(long_side * scale))))


def fit_long_side(h: int, w: int, size: int) -> tuple[int, int]:
    """(h, w) scaled so that the long side is ``size`` (each side at least 1), as the engine does."""
    s = size / max(h, w)
    return max(1, round(h * s)), max(1, round(w * s))


def schedule(size: int, steps: int, single_scale_max: int = AUTO_SINGLE_SCALE,
             coarsest: int = AUTO_COARSEST, max_scales: int = AUTO_MAX_SCALES) -> list[tuple[int, int]]:
    """[(long side, steps)] from coarse to fine: above ``single_scale_max`` the run starts at
    half, quarter... size (not below ``coarsest``, at most ``max_scales`` scales) with half the
    steps at each finer scale."""
    sizes = [size]
    if size > single_scale_max:
        while sizes[0] // 2 >= coarsest and len(sizes) < max_scales:
            sizes.insert(0, sizes[0] // 2)
    return [(s, max(1, steps // 2**i) if steps else 0) for i, s in enumerate(sizes)]


def run_seconds(cost: Mapping[str, Any], shape: tuple[int, int], size: int, steps: int) -> float:
    """Seconds of an iterative run of ``steps`` at long side ``size`` on an image of ``shape``
    (h, w), with ``cost`` = {"a": s, "b": s per px} (and optionally the schedule's
    "single_scale_max" and "coarsest"). Exact tiles (only for scales too large for memory) are
    not counted."""
    a, b = float(cost["a"]), float(cost["b"])
    plan = schedule(int(size), int(steps), int(cost.get("single_scale_max", AUTO_SINGLE_SCALE)),
                    int(cost.get("coarsest", AUTO_COARSEST)), int(cost.get("max_scales", AUTO_MAX_SCALES)))
    total = 0.0
    for long_side, n in plan:
        h, w = fit_long_side(shape[0], shape[1], long_side)
        total += n * (a + b * h * w)
    return total


def describe(seconds: float) -> str:
    """``about 40 s``, ``about 4 min``, ``about 1 h 20 min``: rounded as a person would say it."""
    if seconds < 1:
        return "under a second"
    if seconds < 55:
        return "about %d s" % max(1, int(round(seconds / 5.0) * 5 if seconds >= 10 else round(seconds)))
    minutes = seconds / 60.0
    if minutes < 59.5:
        return "about %d min" % max(1, int(round(minutes)))
    hours, rest = divmod(int(round(minutes)), 60)
    return "about %d h" % hours if rest == 0 else "about %d h %d min" % (hours, rest)


def regions_seconds(cost: Mapping[str, Any], regions: Sequence[tuple[int, int, int]], size: int, steps: int) -> float:
    """Seconds for the plug-in's regions, each (layer long side, region h, region w): a region is
    processed at the layer's scale, Size over the layer's long side, as the engine's jobs do."""
    total = 0.0
    for layer_long, h, w in regions:
        long_side = processed_long(max(h, w), size / max(1, layer_long))
        total += run_seconds(cost, (h, w), long_side, steps)
    return total


def estimate_text(cost: Mapping[str, Any] | None, method: str, regions: Sequence[tuple[int, int, int]],
                  size: int, steps: int) -> str:
    """The dialog's line: "Iterative: about 4 min on this computer at 512 px, 300 steps" ("" without figures)."""
    if not cost or not regions:
        return ""
    when = "%s on this computer at %d px, %d steps" % (describe(regions_seconds(cost, regions, size, steps)), size, steps)
    if len(regions) > 1:
        when += " (%d layers)" % len(regions)
    if method == "iterative":
        return "Iterative: " + when
    return "Model: one quick pass. Iterative would take " + when + "."


def suggested_size(cost: Mapping[str, Any] | None, regions: Sequence[tuple[int, int, int]], steps: int,
                   budget: float = REASONABLE_SECONDS, floor: int = 256) -> int | None:
    """The dialog's Size default: the layer's own long side when this machine does it within
    ``budget`` seconds at ``steps``, else the largest size of `SIZE_LADDER` that it does (at
    least ``floor``). None without figures (the dialog then keeps its default)."""
    if not cost or not regions:
        return None
    largest = max(layer_long for layer_long, _, _ in regions)
    candidates = [s for s in SIZE_LADDER if s < largest] + [largest]
    best = min(floor, largest)
    for size in candidates:
        if regions_seconds(cost, regions, size, steps) <= budget:
            best = max(best, size)
    return int(best)
