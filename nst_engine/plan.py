"""Coarse-to-fine schedules and a memory check before any work (Gatys et al. 2017, sec. 5).

High resolution from one scale gives tiny brush strokes: the VGG receptive field stays the same
size in pixels. Coarse-to-fine optimises at a low resolution first, then upsamples the result
as the start image of the next scale, with fewer steps each time, so large structures stay large.

The memory estimate counts the activations autograd keeps for the backward pass, the largest
gradient buffers alive at once, the L-BFGS history and the weights. When a scale does not fit
the budget, L-BFGS first keeps fewer (s, y) pairs (down to ``TILE_BELOW_HISTORY``); then the
scale is evaluated in exact tiles (`nst_engine.tiling`), whose activations are one tile's, with
the largest tile that fits; when even the smallest tile does not fit, the plan is refused with
the largest size that would.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch

from .encoders.vgg import LAYER_NAMES, layer_channels
from .errors import InputError
from .system import available_ram
from .image import fit_long_side

# Automatic coarse-to-fine (no --scales): up to AUTO_SINGLE_SCALE one scale; above it the run
# starts at half, quarter… size (at most AUTO_MAX_SCALES scales, none below AUTO_COARSEST) with
# the most steps at the coarsest. Measured (bench/bench_schedule.py, 512 px): 256 then 512 px
# reached the single-scale run's final loss in a third to a half of its time.
AUTO_SINGLE_SCALE = 384
AUTO_COARSEST = 256
AUTO_MAX_SCALES = 3
MIN_HISTORY = 5
TILE_BELOW_HISTORY = 10  # shrink the L-BFGS memory to this before tiling
MIN_TILE = 128  # smallest tile core worth running (px)
GiB = 1024**3


@dataclass(frozen=True)
class Scale:
    size: int  # long side
    shape: tuple[int, int]  # (h, w)
    steps: int
    history: int  # L-BFGS pairs
    bytes: int  # estimated peak
    tile: int = 0  # tile core in px; 0: the whole image in one pass


def schedule(size: int, steps: int, scales: tuple[int, ...] = (), scale_steps: tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """[(long side, steps)] from coarse to fine."""
    if scales:
        sizes = list(scales)
        if any(b <= a for a, b in itertools.pairwise(sizes)):
            raise InputError("scales", scales, "must increase from coarse to fine")
    else:
        sizes = [size]
        if size > AUTO_SINGLE_SCALE:
            while sizes[0] // 2 >= AUTO_COARSEST and len(sizes) < AUTO_MAX_SCALES:
                sizes.insert(0, sizes[0] // 2)
    if scale_steps:
        if len(scale_steps) != len(sizes):
            raise InputError("scale_steps", scale_steps, f"needs one step count per scale ({len(sizes)})")
        counts = list(scale_steps)
    else:
        counts = [max(1, steps // 2**i) if steps else 0 for i in range(len(sizes))]
    return list(zip(sizes, counts, strict=True))


def activation_floats_per_pixel(deepest: str) -> float:
    """Floats kept for backward per input pixel, for the network up to ``deepest``."""
    total = 0.0
    biggest = 0.0
    for name in LAYER_NAMES[: LAYER_NAMES.index(deepest) + 1]:
        block = int(name[4]) if not name.startswith("pool") else int(name[-1])
        area = 1.0 / 4 ** (block - 1)
        c = layer_channels(name)
        if name.startswith("conv"):
            total += c * area  # conv output (its ReLU runs in place and shares it)
            biggest = max(biggest, c * area)
        elif name.startswith("pool"):
            total += 3 * c * area / 4  # output + int64 indices
    # Backward: the incoming gradient and the one being produced at the widest layer, plus the
    # Gram losses' fp32 copies of their features (bounded by the same width).
    return total + 3 * biggest


def estimate_bytes(shape: tuple[int, int], deepest: str, history: int, element_bytes: int = 4, tile: int = 0) -> int:
    """Peak bytes of one scale: activations (of the whole image, or of one padded tile), the
    image-sized buffers of the optimizer and its L-BFGS history, the content targets, weights."""
    h, w = shape
    px = h * w
    if tile:
        from .tiling import halo

        side = tile + 2 * halo(deepest)
        act_px = min(h, side) * min(w, side)
        extra = 3 * act_px * 4 * 2 + 3 * px * 4  # the tile, its gradient; the TV pass's copy
    else:
        act_px, extra = px, 0
    acts = activation_floats_per_pixel(deepest) * act_px * element_bytes
    image = 3 * px * 4 * (4 + 2 * history)  # x, grad, L-BFGS prev grad + step, and the history
    targets = 8 * px * 4  # content target at relu4_2 (512 channels at 1/64 of the pixels)
    weights = 80 * 1024**2
    return int(acts + image + targets + weights + extra)


def _largest_tile(shape: tuple[int, int], deepest: str, history: int, budget: int) -> int:
    """The largest tile core (a multiple of 16 px, ≥ MIN_TILE) that fits ``budget``, or 0."""
    lo, hi = MIN_TILE, max(MIN_TILE, max(shape))
    if estimate_bytes(shape, deepest, history, tile=lo) > budget:
        return 0
    while hi - lo > 16:
        mid = (lo + hi) // 2 // 16 * 16
        if estimate_bytes(shape, deepest, history, tile=mid) <= budget:
            lo = mid
        else:
            hi = mid
    return lo


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA free memory, or the RAM the OS reports as available."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    return available_ram()


def make_plan(
    image_shape: tuple[int, int], size: int, steps: int, deepest: str, device: torch.device, *,
    scales: tuple[int, ...] = (), scale_steps: tuple[int, ...] = (), max_memory_gib: float = 0.0,
    history: int = 100, tile: int = 0, tileable: bool = True,
) -> list[Scale]:
    """The scales to run, each with an L-BFGS history (and, where needed, a tile size) that fits
    the memory budget. ``tile`` > 0 forces tiles of that core size wherever the image is larger;
    ``tileable=False`` (the histogram loss) never tiles.

    Raises InputError naming the largest ``--size`` that fits when the finest scale cannot.
    """
    if tile and not tileable:
        raise InputError("tile", tile, "the histogram loss (--histogram-weight > 0) cannot run in tiles")
    budget = int(max_memory_gib * GiB) if max_memory_gib > 0 else int(0.85 * available_bytes(device))
    plan = []
    for long_side, n in schedule(size, steps, scales, scale_steps):
        shape = fit_long_side(*image_shape, long_side)
        m, t = max(1, min(history, n)), tile if tile and tile < max(shape) else 0  # n steps store ≤ n pairs
        floor = TILE_BELOW_HISTORY if tileable and not t else MIN_HISTORY
        while m > floor and estimate_bytes(shape, deepest, m, tile=t) > budget:
            m = max(floor, m // 2)
        if estimate_bytes(shape, deepest, m, tile=t) > budget and tileable and not t:
            # Tiles: the largest that fits, with the L-BFGS memory shrunk further only if needed.
            m = min(m, TILE_BELOW_HISTORY)
            while m > MIN_HISTORY and not _largest_tile(shape, deepest, m, budget):
                m = max(MIN_HISTORY, m // 2)
            t = _largest_tile(shape, deepest, m, budget)
        need = estimate_bytes(shape, deepest, m, tile=t)
        if need > budget or (tileable and t == 0 and estimate_bytes(shape, deepest, m) > budget):
            smallest = MIN_TILE if tileable else 0
            fit = long_side
            while fit > 16 and estimate_bytes(fit_long_side(*image_shape, fit), deepest, MIN_HISTORY,
                                              tile=smallest if fit > smallest else 0) > budget:
                fit = int(fit * 0.9)
            final = scales[-1] if scales else size
            raise InputError(
                "scales" if scales else "size", scales or size,
                f"the {shape[1]}x{shape[0]} scale needs about {need / GiB:.1f} GiB on {device.type}, "
                f"{budget / GiB:.1f} GiB available (--max-memory); --size {min(fit, final)} fits",
            )
        plan.append(Scale(long_side, shape, n, m, need, t))
    return plan
