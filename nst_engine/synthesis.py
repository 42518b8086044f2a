"""Content reconstruction and texture synthesis: the optimizer's two other products (Gatys et al.).

Both run on `nst_engine.api`'s machinery (set-up, precision, plan, optimizer) with their own loss:
a content loss alone for `reconstruct`, the style's statistics alone for `texture`.
"""
from __future__ import annotations

import threading
from collections.abc import Sequence

import numpy as np

from . import thin
from .api import StyleResult, _encoder, _in_precision, _init_image, _run, _setup, _single_scale
from .config import MAX_SIZE, StyleConfig
from .encoders.vgg import fp32_under_hybrid, resolve_layer
from .errors import InputError
from .image import check_array, fit_long_side, to_tensor
from .losses import Objective, content_terms, histogram_terms, style_terms
from .optim import ProgressCallback, StopFlag

__all__ = ["reconstruct", "texture"]


@_in_precision
def reconstruct(
    image: np.ndarray,
    layer: str,
    config: StyleConfig | None = None,
    *,
    callback: ProgressCallback | None = None,
    stop: StopFlag | threading.Event | None = None,
) -> StyleResult:
    """Content reconstruction (Gatys et al. 2016, Fig. 1): an image whose ``layer`` features match.

    The loss is ``config.content_weight`` × the content loss at ``layer`` plus ``config.tv_weight``
    × total variation; the start image is noise (``init`` content or style) or ``init``'s file.
    """
    cfg, device, gen = _setup(config)
    layer = resolve_layer(layer, "layer")
    a = check_array(image, "image")
    need = thin.min_side([layer])
    thin.check_long_side(cfg.size, need, "size", cfg.size)
    a, pad = thin.pad_for(a, cfg.size, need)
    shape = fit_long_side(a.shape[0], a.shape[1], cfg.size)
    scale = _single_scale(shape, [layer], cfg, device, tileable=True)
    target = to_tensor(a, shape, device)
    if cfg.content_weight <= 0:
        raise InputError("content_weight", cfg.content_weight, "must be > 0: a reconstruction matches the content")
    encoder = _encoder(cfg, [layer], device)
    with fp32_under_hybrid():  # targets in fp32 under the hybrid
        objective = Objective(encoder, content=content_terms(encoder, target, [layer], (), cfg.content_weight,
                                                             tile=scale.tile), tv_weight=cfg.tv_weight)
    init = "noise" if cfg.init in ("content", "style") else cfg.init
    x0 = _init_image(cfg.replace(init=init), shape, None, None, gen, device)
    result = _run(x0, objective, cfg, device, f"reconstruct {layer}", callback, stop, scale)
    result.image = thin.crop(result.image, pad)
    return result


@_in_precision
def texture(
    style: np.ndarray | Sequence[np.ndarray],
    config: StyleConfig | None = None,
    *,
    shape: tuple[int, int] | None = None,
    callback: ProgressCallback | None = None,
    stop: StopFlag | threading.Event | None = None,
) -> StyleResult:
    """Texture synthesis (Gatys, Ecker, Bethge 2015): an image with the style's Gram statistics.

    ``shape`` (h, w) of the output; default: the style's aspect at long side ``config.size``.
    The style is analysed at long side ``config.size * config.style_scale``. The loss is
    ``style_weight`` × the Gram loss plus the histogram and total-variation terms; the start image
    is noise (``init`` content), the style or ``init``'s file.
    """
    cfg, device, gen = _setup(config)
    if cfg.style_scales:
        raise InputError("style_scales", cfg.style_scales, "stylize only; a texture is analysed at style_scale")
    style_list = [style] if isinstance(style, np.ndarray) else list(style)
    if not style_list:
        raise InputError("style", style_list, "at least one style image is needed")
    style_a = [check_array(s, f"style[{i}]") for i, s in enumerate(style_list)]
    if shape is not None:
        if len(shape) != 2 or min(shape) < 1 or max(shape) > MAX_SIZE:
            raise InputError("shape", shape, f"must be (height, width), each 1..{MAX_SIZE}")
        out_shape = (int(shape[0]), int(shape[1]))
    else:
        out_shape = fit_long_side(style_a[0].shape[0], style_a[0].shape[1], cfg.size)
    hist_layers = cfg.histogram_layers if cfg.histogram_weight > 0 else ()
    if cfg.style_weight <= 0 and not hist_layers:
        raise InputError("style_weight", cfg.style_weight, "must be > 0 (or histogram_weight > 0): a texture "
                                                           "matches the style's statistics")
    need = thin.min_side([*cfg.style_layers, *hist_layers])
    work = thin.work_shape(out_shape, need)  # a thin texture is made wider, then cropped
    scale = _single_scale(work, [*cfg.style_layers, *hist_layers], cfg, device, tileable=not hist_layers)
    style_size = max(1, round(cfg.size * cfg.style_scale))
    thin.check_long_side(style_size, need, "style_scale", cfg.style_scale, "style image")
    style_a = [thin.pad_for(s, style_size, need)[0] for s in style_a]
    style_t = [to_tensor(s, fit_long_side(s.shape[0], s.shape[1], style_size), device) for s in style_a]
    encoder = _encoder(cfg, [*cfg.style_layers, *hist_layers], device)
    with fp32_under_hybrid():  # targets in fp32 under the hybrid
        terms = style_terms(encoder, style_t, cfg.style_blend, cfg.style_layers, cfg.style_layer_weights,
                            cfg.style_weight, tile=scale.tile) if cfg.style_weight > 0 else []
        terms += histogram_terms(encoder, style_t[0], hist_layers, cfg.histogram_weight)
    objective = Objective(encoder, style=terms, tv_weight=cfg.tv_weight)
    init = "noise" if cfg.init == "content" else cfg.init
    x0 = _init_image(cfg.replace(init=init), work, None, style_t[0], gen, device)
    result = _run(x0, objective, cfg, device, "texture", callback, stop, scale)
    result.image = np.ascontiguousarray(result.image[:out_shape[0], :out_shape[1]])
    return result
