"""Coarse-to-fine schedules and a memory check before any work (Gatys et al. 2017, sec. 5).

High resolution from one scale gives tiny brush strokes: the VGG receptive field stays the same
size in pixels. Coarse-to-fine optimises at a low resolution first, then upsamples the result
as the start image of the next scale, with fewer steps each time, so large structures stay large.

The memory estimate counts the activations autograd keeps for the backward pass, the largest
gradient buffers alive at once, the L-BFGS history and the weights. When the plan does not fit
the budget, L-BFGS keeps fewer (s, y) pairs; when even that is not enough the plan is refused
with the largest size that would fit.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from .encoders.vgg import LAYER_NAMES, layer_channels
from .errors import InputError
from .image import fit_long_side

AUTO_SINGLE_SCALE = 1024  # up to this long side, one scale
AUTO_COARSEST = 512  # auto schedules start at or above this long side
MIN_HISTORY = 5
GiB = 1024**3


@dataclass(frozen=True)
class Scale:
    size: int  # long side
    shape: tuple[int, int]  # (h, w)
    steps: int
    history: int  # L-BFGS pairs
    bytes: int  # estimated peak


def schedule(size: int, steps: int, scales: tuple[int, ...] = (), scale_steps: tuple[int, ...] = ()) -> list[tuple[int, int]]:
    """[(long side, steps)] from coarse to fine."""
    if scales:
        sizes = list(scales)
        if any(b <= a for a, b in zip(sizes, sizes[1:])):
            raise InputError("scales", scales, "must increase from coarse to fine")
    else:
        sizes = [size]
        if size > AUTO_SINGLE_SCALE:
            while sizes[0] // 2 >= AUTO_COARSEST:
                sizes.insert(0, sizes[0] // 2)
    if scale_steps:
        if len(scale_steps) != len(sizes):
            raise InputError("scale_steps", scale_steps, f"needs one step count per scale ({len(sizes)})")
        counts = list(scale_steps)
    else:
        counts = [max(1, steps // 2**i) if steps else 0 for i in range(len(sizes))]
    return list(zip(sizes, counts))


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


def estimate_bytes(shape: tuple[int, int], deepest: str, history: int, element_bytes: int = 4) -> int:
    h, w = shape
    px = h * w
    acts = activation_floats_per_pixel(deepest) * px * element_bytes
    image = 3 * px * 4 * (4 + 2 * history)  # x, grad, L-BFGS prev grad + step, and the history
    weights = 80 * 1024**2
    return int(acts + image + weights)


def available_bytes(device: torch.device) -> int:
    """Free memory of ``device``: CUDA free memory, or the RAM the OS reports as available."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free)
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * GiB


def make_plan(
    image_shape: tuple[int, int], size: int, steps: int, deepest: str, device: torch.device, *,
    scales: tuple[int, ...] = (), scale_steps: tuple[int, ...] = (), max_memory_gib: float = 0.0,
    history: int = 100,
) -> list[Scale]:
    """The scales to run, each with an L-BFGS history that fits the memory budget.

    Raises InputError naming the largest ``--size`` that fits when the finest scale cannot.
    """
    budget = int(max_memory_gib * GiB) if max_memory_gib > 0 else int(0.85 * available_bytes(device))
    plan = []
    for long_side, n in schedule(size, steps, scales, scale_steps):
        shape = fit_long_side(*image_shape, long_side)
        m = history
        while m > MIN_HISTORY and estimate_bytes(shape, deepest, m) > budget:
            m = max(MIN_HISTORY, m // 2)
        need = estimate_bytes(shape, deepest, m)
        if need > budget:
            fit = long_side
            while fit > 16 and estimate_bytes(fit_long_side(*image_shape, fit), deepest, MIN_HISTORY) > budget:
                fit = int(fit * 0.9)
            final = scales[-1] if scales else size
            raise InputError(
                "scales" if scales else "size", scales or size,
                f"the {shape[1]}x{shape[0]} scale needs about {need / GiB:.1f} GiB on {device.type}, "
                f"{budget / GiB:.1f} GiB available (--max-memory); --size {min(fit, final)} fits",
            )
        plan.append(Scale(long_side, shape, n, m, need))
    return plan
