"""What the server does for the plug-in: numpy in, engine call, numpy out.

Requests carry the plug-in's arguments in ``params`` (names as in `arguments.py`, with ``_``) and
float32 arrays: ``content`` (h, w, 4: the layer region, R'G'B'A 0..1), ``mask`` (h, w: the
selection over that region, optional) and ``style`` (h, w, 4, optional: else ``style_file``).
The parameters that are `StyleConfig` fields (``steps``, ``size``, ``preserve_colors``, ...) and
`StylizeOptions` fields (``method``, ``model``, ``model_size``, ``composite``, ``margin``, ...) are
checked by those dataclasses (an error names the argument as the plug-in spells it:
``model-size``); ``layer_long_side`` is the long side of the layer the region belongs to, so that
``size`` and ``model_size`` keep the layer's scale (`nst_engine.selection`, which runs the job).
The reply carries ``image`` (h, w, 4: stylized RGB, the content's alpha) and, with a mask (or
regions whose rest keeps the photo), ``layer_mask`` (h, w) for the new layer. Regions (a style per
saved channel: ``regionK`` masks, ``regionK_style`` or ``regionK_style_file``, ``regions_rest``)
are `nst_engine.bridge.regions`'. The ``frames`` job (an animation's frames, temporal
consistency) is `nst_engine.bridge.frames`'.
"""
from __future__ import annotations

import dataclasses
import math
import sys
import threading
from typing import Any, Callable

import numpy as np

from ..config import MAX_PIXELS, MAX_SIZE, StyleConfig
from ..errors import EngineRuntimeError, InputError
from . import frames as _frames
from . import regions as _regions
from .timing import processed_long as _processed_long  # the dialog (timing.py) counts the same pixels

MAX_MODEL_SESSIONS = 4  # onnxruntime sessions a long-lived server keeps (least recently loaded go)
# The arrays each operation takes: name -> number of dimensions ([h, w, 3|4] or [h, w]).
ARRAYS: dict[str, dict[str, int]] = {"stylize": {"content": 3, "mask": 2, "style": 3, **_regions.ARRAYS},
                                     "texture": {"style": 3}}

Progress = Callable[[dict[str, Any]], None]
Arrays = dict[str, tuple[list[int], Any]]


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------

def _array(arrays: dict[str, tuple[list[int], Any]], name: str, ndim: tuple[int, ...],
           channels: tuple[int, ...] = ()) -> np.ndarray | None:
    if name not in arrays:
        return None
    shape, data = arrays[name]
    a = np.frombuffer(data, dtype="<f4").reshape(shape)
    if a.ndim not in ndim or (channels and a.ndim == 3 and a.shape[2] not in channels):
        raise InputError(name, list(a.shape), f"unexpected array shape for {name}")
    if a.size == 0:
        raise InputError(name, list(a.shape), "empty image")
    if not np.isfinite(a).all():
        raise InputError(name, "array", "contains NaN or infinite values")
    return a.astype(np.float32, copy=False)


def resize(image: np.ndarray, shape: tuple[int, int], *, smooth: bool = True) -> np.ndarray:
    """HxWxC (or HxW) float32 → shape, antialiased bicubic (bilinear with smooth=False), clipped 0..1."""
    import torch
    from torch.nn import functional as F

    if tuple(image.shape[:2]) == tuple(shape):
        return image.astype(np.float32, copy=False)
    a = image[..., None] if image.ndim == 2 else image
    t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None]
    mode = "bicubic" if smooth else "bilinear"
    t = F.interpolate(t, size=tuple(shape), mode=mode, align_corners=False, antialias=True).clamp(0, 1)
    out = t[0].permute(1, 2, 0).numpy()
    return out[..., 0] if image.ndim == 2 else out


def _progress_adapter(progress: Progress, label: str = "") -> Callable[[Any], None]:
    def cb(p: Any) -> None:
        progress({
            "stage": f"{label}{p.stage}", "step": int(p.step), "total": int(p.total), "loss": float(p.loss),
            "elapsed": float(p.elapsed), "eta": None if p.eta is None else float(p.eta),
        })
    return cb


def _param(params: dict[str, Any], name: str, default: Any) -> Any:
    v = params.get(name, default)
    return default if v is None else v


def _int(params: dict[str, Any], name: str, default: int, lo: int, hi: int) -> int:
    """A whole-number parameter within lo..hi, or InputError naming it and its value."""
    v = _param(params, name, default)
    if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
        raise InputError(name.replace("_", "-"), v, f"must be a whole number between {lo} and {hi}")
    return v


def check_shape(name: str, h: int, w: int, max_side: int | None = None) -> None:
    """The engine's image limit (`MAX_PIXELS`, as for files), and ``max_side`` where one applies."""
    if h < 1 or w < 1 or h * w > MAX_PIXELS or (max_side is not None and max(h, w) > max_side):
        sides = f"1..{max_side} px a side and " if max_side else ""
        raise InputError(name, f"{w}x{h}", f"images must be {sides}at most {MAX_PIXELS // 10**6} MP: "
                                           "use a smaller layer or selection")


def check_request(op: str, header: dict[str, Any], nbytes: int) -> None:
    """Refuse a request before its pixels are read: unknown arrays, wrong shapes, over the limits."""
    if op == "frames":  # frame0 … frame{N-1}: `nst_engine.bridge.frames`
        return _frames.check_request(header, nbytes)
    allowed = ARRAYS.get(op, {})
    shapes: dict[str, list[int]] = {}
    for d in header.get("arrays", []):
        name, shape = d["name"], d["shape"]  # well-formed: `protocol.recv` checked them
        if name not in allowed:
            raise InputError("arrays", name, f"{op} takes {', '.join(allowed) or 'no arrays'}")
        if len(shape) != allowed[name] or (len(shape) == 3 and shape[2] not in (3, 4)):
            raise InputError(name, shape, "must be [height, width, 3 or 4]" if allowed[name] == 3 else "must be [height, width]")
        check_shape(name, shape[0], shape[1])
        shapes[name] = shape
    if "mask" in shapes and shapes["mask"] != shapes.get("content", [])[:2]:
        raise InputError("mask", shapes["mask"], f"must match the image {shapes.get('content', [])[:2]}")
    params = header.get("params") or {}
    if op == "texture":
        _texture_shape(params)
    if op == "stylize":
        _options(params)  # a bad composite, model size, … is refused before the pixels are read
        _regions.check_shapes(shapes)
        _regions.rest_choice(params)


def _texture_shape(params: dict[str, Any]) -> tuple[int, int]:
    shape = params.get("shape")
    if not (isinstance(shape, list) and len(shape) == 2 and all(isinstance(s, int) and not isinstance(s, bool)
                                                               for s in shape)):
        raise InputError("shape", shape, f"must be [height, width], each 1..{MAX_SIZE}")
    check_shape("shape", shape[0], shape[1], MAX_SIZE)
    return shape[0], shape[1]


def _style_long_side(params: dict[str, Any], region_long: int) -> int:
    """The longest side the style image is used at for a region of ``region_long`` px: a style
    file larger than that is decoded reduced."""
    style_scale = _param(params, "style_scale", StyleConfig.style_scale)
    if isinstance(style_scale, bool) or not isinstance(style_scale, (int, float)) or not 0 < style_scale <= 16:
        raise InputError("style-scale", style_scale, "must be a number between 0.01 and 16")
    return math.ceil(_processed_long(region_long, _scale(params, region_long)) * style_scale)


def _style(params: dict[str, Any], arrays: dict[str, tuple[list[int], Any]], region_long: int,
           name: str = "style") -> np.ndarray:
    """The style image ``name`` (``style``, or ``regionK_style`` of a region): sent, or read from
    ``<name>_file``."""
    style = _array(arrays, name, (3,), (3, 4))
    if style is not None:
        return style[..., :3]
    path = params.get(f"{name}_file")
    argument = name.replace("_", "-")
    if not path:
        raise InputError("style", None, "choose a style: a layer of an open image (Style layer) or an image file (Style file)")
    if not isinstance(path, str):
        raise InputError(f"{argument}-file", path, "must be a file name")
    from ..image import read_image

    return read_image(path, f"{argument}-file", max_side=_style_long_side(params, region_long))[..., :3]


def _with_style(params: dict[str, Any], arrays: Arrays, region_long: int, name: str) -> Arrays:
    style = np.ascontiguousarray(_style(params, arrays, region_long, name), dtype=np.float32)
    return {**arrays, name: (list(style.shape), style)}


def prepare_style(params: dict[str, Any], arrays: dict[str, tuple[list[int], Any]]
                  ) -> tuple[dict[str, Any], dict[str, tuple[list[int], Any]]]:
    """Read ``style_file`` and the regions' style files before the job takes the engine (the
    server calls this outside its lock)."""
    if _param(params, "method", "iterative") == "model":
        return params, arrays
    region = max(arrays["content"][0][:2]) if "content" in arrays else max(_texture_shape(params))
    if "style" not in arrays and params.get("style_file"):
        arrays = _with_style(params, arrays, region, "style")
    for k, _ in _regions.style_files(params, arrays):
        arrays = _with_style(params, arrays, region, f"region{k}_style")
    return params, arrays


def trim_caches() -> None:
    """Keep a long-lived server's model sessions bounded (the VGG encoders bound themselves)."""
    models = sys.modules.get("nst_engine.models")
    cache, lock = getattr(models, "_CACHE", None), getattr(models, "_LOCK", None)
    if not isinstance(cache, dict) or lock is None:
        return
    with lock:
        while len(cache) > MAX_MODEL_SESSIONS:
            cache.pop(next(iter(cache)))  # the oldest loaded


def _as_argument(e: InputError) -> InputError:
    """``e`` naming the argument as the plug-in spells it (``model_size`` → ``model-size``)."""
    return InputError(e.argument.replace("_", "-"), e.value, e.reason)


def _config(params: dict[str, Any], size: int) -> StyleConfig:
    """StyleConfig from the plug-in's parameters (only fields StyleConfig has), checked."""
    values = {name: params[name] for name in _config_fields() if params.get(name) is not None}
    values["size"] = int(size)
    seed = values.get("seed")
    if isinstance(seed, int) and not isinstance(seed, bool) and seed < 0:
        values["seed"] = None
    try:
        return StyleConfig.from_dict(values)
    except InputError as e:
        raise _as_argument(e) from None


def _options(params: dict[str, Any]) -> Any:
    """`StylizeOptions` from the plug-in's parameters, checked (errors name the plug-in's argument)."""
    from ..options import StylizeOptions

    try:
        return StylizeOptions.from_params(params)
    except InputError as e:
        raise _as_argument(e) from None


def _config_fields() -> set[str]:
    return {f.name for f in dataclasses.fields(StyleConfig)}


def _scale(params: dict[str, Any], region_long: int) -> float:
    """Processing scale: ``size`` is the long side of the *whole layer* as processed, so a
    selection is processed at the same scale as its layer would be (same brush-stroke size)."""
    size = _int(params, "size", StyleConfig.size, 1, MAX_SIZE)
    ref = _int(params, "layer_long_side", region_long, 0, 10**6) or region_long
    return size / max(1, ref)


# --------------------------------------------------------------------------------------------
# jobs
# --------------------------------------------------------------------------------------------

def stylize(params: dict[str, Any], arrays: dict[str, tuple[list[int], Any]], progress: Progress,
            stop: threading.Event) -> tuple[dict[str, Any], Arrays]:
    from ..selection import stylize_selection

    content = _array(arrays, "content", (3,), (3, 4))
    if content is None:
        raise InputError("content", None, "no image was sent")
    mask = _array(arrays, "mask", (2,))
    if mask is not None and mask.shape != content.shape[:2]:
        raise InputError("mask", list(mask.shape), f"must match the image {list(content.shape[:2])}")
    options = _options(params)
    h, w = content.shape[:2]
    reference = _int(params, "layer_long_side", max(h, w), 0, 10**6) or max(h, w)
    cfg = _config(params, _int(params, "size", StyleConfig.size, 1, MAX_SIZE))
    regions = _region_inputs(params, arrays, content, mask)
    if regions and options.method != "iterative":
        raise InputError("regions", len(regions), "regions work with the iterative method only: set Regions to 0, "
                                                  "or choose Method Iterative")
    rest = _regions.rest_choice(params)
    if regions and rest == "style" and "style" not in arrays and not params.get("style_file"):
        raise InputError("regions-rest", rest, "the rest of the image takes the style chosen under Style, but none "
                                               "is chosen: choose a Style layer or file, or keep the photo there")
    with_style = options.method == "iterative" and not (regions and rest == "photo")
    styles = [_style(params, arrays, max(h, w))] if with_style else []
    lm: np.ndarray | None
    try:
        if regions:
            out, lm, note, info = _regions.stylize_regions(content, mask, styles, regions, cfg, options, reference,
                                                           _progress_adapter(progress), stop)
            lm = lm if mask is not None or not styles else None  # no mask where the whole layer shows
        else:
            r = stylize_selection(content, mask, styles, cfg, options, reference_long=reference,
                                  callback=_progress_adapter(progress), stop=stop)
            out, lm, note, info = r.layer, (r.layer_mask if mask is not None else None), r.note, r.info
    except InputError as e:
        raise _as_argument(e) from None
    if out.shape != (h, w, 3) or not np.isfinite(out).all():
        raise EngineRuntimeError(f"the engine returned an invalid image {out.shape}")
    alpha = content[..., 3:4] if content.shape[2] == 4 else np.ones((h, w, 1), np.float32)
    image = np.ascontiguousarray(np.concatenate([out.clip(0, 1), alpha], axis=2), dtype=np.float32)
    result: Arrays = {"image": (list(image.shape), image)}
    if lm is not None:  # a selection, or regions keeping the photo around them
        lm = np.ascontiguousarray(lm, dtype=np.float32).clip(0, 1)
        if lm.shape != (h, w):
            raise EngineRuntimeError(f"region compositing returned a mask of shape {lm.shape}")
        result["layer_mask"] = (list(lm.shape), lm)
    return {"note": note, "timing": {"engine_s": info.get("seconds")}, "info": info}, result


def _region_inputs(params: dict[str, Any], arrays: Arrays, content: np.ndarray, mask: np.ndarray | None
                   ) -> list[_regions.RegionInput]:
    """The request's regions (`nst_engine.bridge.regions`), their arrays checked like the others."""
    masks: dict[str, np.ndarray] = {}
    styles: dict[str, np.ndarray] = {}
    for k, _ in _regions.style_files(params, arrays):  # not read yet (`prepare_style` reads them first)
        arrays = _with_style(params, arrays, max(content.shape[:2]), f"region{k}_style")
    for name, ndim in _regions.ARRAYS.items():
        a = _array(arrays, name, (ndim,), (3, 4) if ndim == 3 else ())
        if a is None:
            continue
        if ndim == 2 and a.shape != content.shape[:2]:
            raise InputError(f"{name}-channel", list(a.shape), f"must match the image {list(content.shape[:2])}")
        (masks if ndim == 2 else styles)[name] = a
    return _regions.region_inputs(params, masks, styles, mask)


def texture(params: dict[str, Any], arrays: dict[str, tuple[list[int], Any]], progress: Progress,
            stop: threading.Event) -> tuple[dict[str, Any], Arrays]:
    from .. import synthesis
    from ..errors import Cancelled
    from ..image import fit_long_side

    h, w = _texture_shape(params)
    style = _style(params, arrays, max(h, w))
    scale = _scale(params, max(h, w))
    ph, pw = fit_long_side(h, w, _processed_long(max(h, w), scale))
    cfg = _config(params, max(ph, pw))
    r = synthesis.texture(style, cfg, shape=(ph, pw), callback=_progress_adapter(progress), stop=stop)
    if r.stopped or stop.is_set():
        raise Cancelled("stopped")
    out = resize(r.image, (h, w))
    image = np.ascontiguousarray(np.concatenate([out, np.ones((h, w, 1), np.float32)], axis=2))
    info = {"steps": r.steps, "seconds": r.seconds, "device": r.device, "processed": [ph, pw]}
    return {"note": "", "timing": {"engine_s": r.seconds}, "info": info}, {"image": (list(image.shape), image)}


def preload() -> None:
    """Import torch and load the default VGG-19 encoder, so the first job does not wait for it."""
    from ..api import select_device
    from ..encoders.vgg import deepest
    from ..encoders.weights import get_encoder

    from ..api import stylize as run

    cfg = StyleConfig()
    get_encoder(cfg.weights, deepest([*cfg.content_layers, *cfg.style_layers]), cfg.pooling, select_device(cfg.device))
    # One tiny run: torch's first forward/backward pays one-time set-up costs (~1 s on a CPU).
    rng = np.random.default_rng(0)
    run(rng.random((32, 32, 3), dtype=np.float32), [rng.random((32, 32, 3), dtype=np.float32)],
        cfg.replace(size=32, steps=1))


HANDLERS = {"stylize": stylize, "texture": texture, "frames": _frames.frames}
PREPARE = {"stylize": prepare_style, "texture": prepare_style, "frames": _frames.prepare}

__all__ = ["HANDLERS", "PREPARE", "check_request", "preload", "resize", "stylize", "texture", "trim_caches"]
