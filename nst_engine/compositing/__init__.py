"""Compositing: Poisson blending (Pérez et al. 2003) and the stylize-a-selection workflow.

Pure numpy/scipy functions, arrays in and arrays out; bad input raises
:class:`nst_engine.errors.InputError`.
"""
from __future__ import annotations

from .poisson import BlendReport, NoBoundaryWarning, poisson_blend, poisson_blend_report
from .region import RegionResult, crop_box, stylize_region

__all__ = [
    "BlendReport",
    "NoBoundaryWarning",
    "RegionResult",
    "crop_box",
    "poisson_blend",
    "poisson_blend_report",
    "stylize_region",
]
