"""Mixed transfer with the feed-forward models: the outputs of two models blended.

Interpolating two models' *parameters* is valid only for models that share all their weights but
the instance-norm scales and shifts: the styles of one conditional-instance-norm network (Dumoulin,
Shlens, Kudlur 2017), whose convolutions were trained for every style at once. Our models are
separate networks, each trained (or fine-tuned) alone, so their convolution weights do not
correspond channel for channel, and a mean of two of them is a network nobody trained (it paints
mush, or nothing). What is offered is output blending: both models paint the photo, and the two
paintings are mixed pixel by pixel, ``(1 - weight) × A + weight × B``, before ``strength`` mixes
the result with the photo. The result looks like two translucent paintings laid over each other,
not like a painter between the two.
"""
from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING

import numpy as np

from .errors import InputError

if TYPE_CHECKING:
    from .config import StyleConfig
    from .options import StylizeOptions
    from .progress import ProgressCallback, StopFlag
    from .selection import SelectionResult

DEFAULT_WEIGHT = 0.5


def parse_mix(text: str, argument: str = "model_mix") -> tuple[str, float]:
    """``NAME|FILE.onnx[:WEIGHT]`` → (model, weight of that model, 0..1; default 0.5). A trailing
    ``:WEIGHT`` is taken only when it is a number (so ``C:\\models\\x.onnx`` stays a path)."""
    head, colon, tail = text.rpartition(":")
    model, weight = text, DEFAULT_WEIGHT
    if colon:
        try:
            weight = float(tail)
        except ValueError:
            pass
        else:
            model = head
            if not (math.isfinite(weight) and 0.0 <= weight <= 1.0):
                raise InputError(argument, text, f"the weight after ':' must be between 0 and 1, got {tail!r}")
    if not model.strip():
        raise InputError(argument, text, "expected NAME|FILE.onnx[:WEIGHT], e.g. great-wave:0.3")
    from .models import resolve_model

    try:
        resolve_model(model.strip())
    except InputError as e:
        raise InputError(argument, text, e.reason) from None
    return model.strip(), weight


def stylize_mixed(
    image: np.ndarray,
    mask: np.ndarray | None,
    config: "StyleConfig",
    options: "StylizeOptions",
    other: str,
    weight: float,
    *,
    callback: "ProgressCallback | None" = None,
    stop: "StopFlag | None" = None,
) -> "SelectionResult":
    """`nst_engine.selection.stylize_selection` with ``options.model`` and with ``other``, the
    two results mixed ``(1 - weight) × first + weight × other``. Every step after the networks
    (model size, colours, ``strength``, a selection's compositing) is linear or applied alike, so
    this equals compositing the mixed painting."""
    from .selection import stylize_selection

    if options.method != "model":
        raise InputError("model_mix", other, "mixes two models: needs a model (--model)")
    if not (isinstance(weight, (int, float)) and math.isfinite(weight) and 0.0 <= weight <= 1.0):
        raise InputError("model_mix", weight, "the weight must be between 0 and 1")
    first = stylize_selection(image, mask, (), config, options, callback=callback, stop=stop)
    second = stylize_selection(image, mask, (), config, options.replace(model=other), callback=callback, stop=stop)
    w = np.float32(weight)

    def mix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.clip(a * (np.float32(1.0) - w) + b * w, 0.0, 1.0).astype(np.float32)

    return dataclasses.replace(first, image=mix(first.image, second.image), layer=mix(first.layer, second.layer),
                               info={**first.info, "mix": {"model": other, "weight": float(weight)}})
