"""nst_engine: neural style transfer (Gatys et al. iterative optimizer; ONNX feed-forward models).

A pure library: arrays in, arrays out, no printing. The heavy modules (torch) are imported lazily,
so ``import nst_engine`` and ``nst_engine.config`` stay cheap.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["Region", "StyleConfig", "stylize", "reconstruct", "texture", "Progress", "StyleResult", "__version__"]


def __getattr__(name: str) -> Any:
    if name == "StyleConfig":
        from .config import StyleConfig

        return StyleConfig
    if name in ("reconstruct", "texture"):
        from . import synthesis

        return getattr(synthesis, name)
    if name in ("stylize", "Progress", "StyleResult", "Region"):
        from . import api

        return getattr(api, name)
    raise AttributeError(name)
