"""Compositing: Poisson blending (Pérez et al. 2003) and the stylize-a-selection workflow.

Pure numpy/scipy functions, arrays in and arrays out; bad input raises
:class:`nst_engine.errors.InputError`.
"""
from __future__ import annotations

from typing import Any

from .poisson import BlendReport, NoBoundaryWarning, poisson_blend, poisson_blend_report

_REGION = ("RegionResult", "crop_box", "stylize_region")


def __getattr__(name: str) -> Any:
    """The selection workflow (`region`, which imports scikit-image) loads on first use, so
    `nst blend` does not pay for it."""
    if name in _REGION:
        from . import region

        return getattr(region, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BlendReport",
    "NoBoundaryWarning",
    "RegionResult",
    "crop_box",
    "poisson_blend",
    "poisson_blend_report",
    "stylize_region",
]
