"""`StylizeOptions`: how a stylization runs beyond `StyleConfig`'s engine settings (no torch).

The method (a trained model instead of a style image), the model's settings, and how a selection
is blended back. Like `StyleConfig`, every field carries its help, choices and bounds in its
metadata (`nst_engine.config.option`): ``nst stylize``'s options (`nst_engine.cli.options`), the
GIMP procedure's arguments (`nst_engine.bridge.arguments`) and the bridge's checks of a request
(`nst_engine.bridge.jobs`) are all generated from these fields, and `nst_engine.selection` runs
them. The constants below are the only place their values are written down.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from .config import MAX_SIZE, check_fields, option
from .errors import InputError
from .models import DEFAULT_MODEL_SIZE, DEFAULT_OVERLAP

__all__ = [
    "COMPOSITES", "DEFAULT_FEATHER", "METHODS", "MODEL_CONFIG_FIELDS", "SELECTION_MARGIN", "StylizeOptions",
    "default_overlap",
]

METHODS = ("iterative", "model")
COMPOSITES = ("poisson", "feather", "none")
SELECTION_MARGIN = 32  # px of context stylized around a selection's bounding box
DEFAULT_FEATHER = 8.0  # px, the inward feather of composite="feather"
# The `StyleConfig` fields the model method uses (the others belong to the iterative optimizer).
MODEL_CONFIG_FIELDS = frozenset({"tile", "device", "preserve_colors"})

_MODEL = "feed-forward model (instead of STYLE)"
_SELECTION = "selection (stylize only part of CONTENT, blended back at full size)"


def default_overlap(tile: int) -> int:
    """The models' tile overlap where the user gave none: `DEFAULT_OVERLAP` where ``tile`` allows
    it (at most half a tile; 0 = automatic tiles), else a quarter of the tile."""
    return DEFAULT_OVERLAP if not tile or DEFAULT_OVERLAP <= tile // 2 else tile // 4


@dataclass
class StylizeOptions:
    """The method, the model's settings and the selection's compositing of one stylization."""

    method: str = field(default="iterative", metadata=option(
        "iterative: optimise the pixels towards the style image (any style; minutes on a CPU); model: a "
        "trained feed-forward network (seconds; its own style)", choices=METHODS,
        cli=None))  # the command line has no --method: --model chooses the model method
    model: str = field(default="", metadata=option(
        "stylize in one pass with a trained model: a shipped name (`nst models`) or an .onnx from `nst train`",
        metavar="NAME|FILE.onnx", group=_MODEL, default_text=""))
    model_size: int = field(default=DEFAULT_MODEL_SIZE, metadata=option(
        "long side the model paints at: a larger image is shrunk for the model and upscaled back with its own "
        "detail, so strokes keep a visible size (smaller = bigger strokes; 0 = full resolution; at least 64 px "
        "are painted). It is for the whole image: a selection is painted at the same scale",
        lo=0, hi=MAX_SIZE, metavar="PX", group=_MODEL))
    strength: float = field(default=1.0, metadata=option(
        "how much of the model's painting: the output is STRENGTH x painting + (1 - STRENGTH) x the photo, pixel by "
        "pixel (a cross-fade, after --preserve-colors: 0.5 lays the painting half transparent over the photo; the "
        "network itself paints as strongly as ever, with strokes of the same size); 0..1", lo=0.0, hi=1.0, group=_MODEL))
    overlap: int | None = field(default=None, metadata=option(
        "tile overlap in px of the model's tiles", lo=0, hi=MAX_SIZE, metavar="PX", group=_MODEL,
        default_text=f"{DEFAULT_OVERLAP}, or a quarter of --tile where {DEFAULT_OVERLAP} is more than half of it"))
    composite: str = field(default="poisson", metadata=option(
        "how a stylized selection meets the rest: poisson (seamless, gradient-domain), feather (soft edge) "
        "or none (hard edge)", choices=COMPOSITES, group=_SELECTION))
    margin: int = field(default=SELECTION_MARGIN, metadata=option(
        "context in px stylized around the selection's bounding box", lo=0, hi=MAX_SIZE, metavar="PX",
        group=_SELECTION))
    feather: float = field(default=DEFAULT_FEATHER, metadata=option(
        "width in px of the inward feather of --composite feather", lo=0.0, hi=1000.0, metavar="PX",
        group=_SELECTION))

    def replace(self, **changes: Any) -> "StylizeOptions":
        return dataclasses.replace(self, **changes)

    def overlap_for(self, tile: int) -> int:
        """The tile overlap to run the model with: the one given, else `default_overlap`."""
        return self.overlap if self.overlap is not None else default_overlap(tile)

    def check(self) -> None:
        """`InputError` naming the option and its value if a setting is invalid."""
        check_fields(self)
        if self.method == "model" and not self.model:
            raise InputError("model", self.model, "choose a model: a shipped name or an .onnx file")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "StylizeOptions":
        """The checked options among ``params`` (JSON from the bridge: other keys are ignored,
        ``None`` means the default)."""
        values = {f.name: params[f.name] for f in dataclasses.fields(cls) if params.get(f.name) is not None}
        options = cls(**values)
        options.check()
        return options
