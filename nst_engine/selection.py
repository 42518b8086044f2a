"""Stylize a selection of an image (or the whole image) with either method, and blend it back.

The one selection workflow: `nst_engine.api.stylize_selection`, ``nst stylize --mask`` (with a
style image or ``--model``) and the GIMP bridge's stylize job all call `stylize_selection`.
`nst_engine.compositing.region.stylize_region` crops around the selection (plus
``options.margin`` px of context), runs the stylizer on the crop and composites the result back
(``options.composite``); outside the selection the image is the original's, bit for bit.

Size rule (the same everywhere): ``config.size`` (or the last of ``config.scales``) is the long
side the *whole image* is processed at, and ``options.model_size`` the long side the model paints
the whole image at. A selection is processed at the same scale, px per px, so its brush strokes
have the size they would have in the whole image and a small selection costs little; at least
64 px are processed (`nst_engine.bridge.timing.processed_long`, which the GIMP dialog's time
estimate uses too). ``reference_long`` is the whole image's long side where ``image`` is only
the region around the selection (the GIMP plug-in sends that region; the layer is larger).

No torch on the model path: the optimizer (`nst_engine.api`) is imported only for the iterative
method.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .arrays import to_unit_float
from .bridge.timing import processed_long
from .config import StyleConfig
from .errors import Cancelled, EngineRuntimeError, InputError
from .options import StylizeOptions
from .progress import ProgressCallback, StopFlag

if TYPE_CHECKING:
    from .regions import Region

__all__ = ["SelectionResult", "crop_config", "model_device", "model_size_for", "processed_long", "stylize_selection"]


@dataclass(frozen=True)
class SelectionResult:
    """What `stylize_selection` returns."""

    image: np.ndarray  # the composite: the input's shape (its alpha kept), float32 0..1
    layer: np.ndarray  # HxWx3 float32: the pixels of a layer that, shown through layer_mask over the
    #                    original, gives `image` (the stylized pixels, unblended; the original outside)
    layer_mask: np.ndarray  # HxW float32 0..1: the weight of the stylized pixels (0 outside the selection)
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 (exclusive) of the crop that was stylized
    note: str  # "" or a remark for the user
    info: dict[str, Any] = field(default_factory=dict)  # method, steps, seconds, device, processed size …


def crop_config(config: StyleConfig, crop_long: int, reference_long: int) -> StyleConfig:
    """``config`` for a crop of long side ``crop_long`` of an image whose long side is
    ``reference_long``: processed at the whole image's scale (``scales`` scaled alike; coarse
    scales that would not be coarser than the next are left out)."""
    final = int(config.scales[-1]) if config.scales else int(config.size)
    size = processed_long(crop_long, final / max(1, reference_long))
    if not config.scales:
        return config.replace(size=size)
    factor = size / final
    steps: Sequence[int | None] = config.scale_steps or [None] * len(config.scales)
    sizes: list[int] = []
    counts: list[int | None] = []
    # Strict: StyleConfig.check refuses scale_steps of another length than scales.
    for s, n in reversed(list(zip(config.scales, steps, strict=True))):
        px = size if not sizes else max(1, round(s * factor))
        if sizes and px >= sizes[-1]:
            continue
        sizes.append(px)
        counts.append(n)
    scale_steps = tuple(int(n) for n in reversed(counts) if n is not None)
    return config.replace(size=size, scales=tuple(reversed(sizes)), scale_steps=scale_steps)


def model_size_for(model_size: int, reference_long: int, crop_long: int) -> int:
    """The long side the model paints a crop of ``crop_long`` px at, for ``model_size`` meant for
    the whole image (long side ``reference_long``); 0 (full resolution) where that would not
    shrink the crop."""
    if model_size == 0 or model_size >= reference_long:
        return 0
    long_side = processed_long(crop_long, model_size / max(1, reference_long))
    return 0 if long_side >= crop_long else long_side


def model_device(device: str) -> str:
    """``StyleConfig.device`` as the model runner (onnxruntime) takes it: auto, cpu or cuda."""
    if device in ("auto", "cpu", "cuda"):
        return device
    if device == "cuda:0":
        return "cuda"
    if device.startswith("cuda:"):
        raise InputError("device", device, "the model runner (onnxruntime) uses the first CUDA device only: "
                                           "use cuda, and CUDA_VISIBLE_DEVICES to choose which GPU that is")
    raise InputError("device", device, "must be auto, cpu, cuda or cuda:N")


def _image(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    if a.ndim != 3 or a.shape[2] not in (3, 4) or min(a.shape[:2]) < 1:
        raise InputError("image", f"array {a.shape}", "expected an HxW, HxWx3 or HxWx4 image")
    return to_unit_float(a, "image")


def stylize_selection(
    image: np.ndarray,
    mask: np.ndarray | None,
    styles: Sequence[np.ndarray] | np.ndarray = (),
    config: StyleConfig | None = None,
    options: StylizeOptions | None = None,
    *,
    reference_long: int | None = None,
    regions: Sequence[Region] = (),
    callback: ProgressCallback | None = None,
    stop: StopFlag | None = None,
) -> SelectionResult:
    """Stylize the part of ``image`` that ``mask`` selects (``None``, or a mask selecting every
    pixel fully: the whole image, nothing blended) and blend it back.

    ``options.method`` ``iterative`` paints in the style of ``styles`` with ``config``; ``model``
    runs ``options.model`` (``config.tile``, ``device`` and ``preserve_colors`` apply). Sizes
    follow the module's size rule. A ``stop`` set during the iterative run raises `Cancelled`.
    ``regions`` (iterative only; masks over the whole ``image``) are cut to the crop and passed to
    `nst_engine.api.stylize`: a style per region, ``styles`` for the part none covers.
    """
    cfg = config or StyleConfig()
    opts = options or StylizeOptions()
    cfg.check()
    opts.check()
    img = _image(image)
    h, w = img.shape[:2]
    ref = max(h, w) if reference_long is None else reference_long
    if isinstance(ref, bool) or not isinstance(ref, (int, np.integer)) or ref < 1:
        raise InputError("reference_long", ref, "must be a whole number of px >= 1")
    style_list = [styles] if isinstance(styles, np.ndarray) else list(styles)
    model = opts.method == "model"
    device = model_device(cfg.device) if model else cfg.device
    if model and style_list:
        raise InputError("styles", f"{len(style_list)} image(s)", "the model method takes no style image")
    if model and regions:
        raise InputError("regions", f"{len(regions)} region(s)", "regions need the iterative method")
    rgb = np.ascontiguousarray(img[..., :3])
    whole = mask is None or (np.shape(mask) == (h, w) and bool((np.asarray(mask) >= _full(mask)).all()))
    if regions:  # the crop that `stylize_region` will hand to run(), to cut the region masks alike
        from .compositing.region import crop_box

        x0, y0, x1, y1 = (0, 0, w, h) if whole or mask is None else crop_box(mask, opts.margin)
    info: dict[str, Any] = {}
    stylized: list[np.ndarray] = []

    def run(crop: np.ndarray) -> np.ndarray:
        ch, cw = crop.shape[:2]
        if model:  # feed-forward (Johnson et al.): one pass
            from . import models

            size = model_size_for(opts.model_size, int(ref), max(ch, cw))
            out = models.stylize_model(crop, opts.model, strength=opts.strength, tile=cfg.tile,
                                       overlap=opts.overlap_for(cfg.tile), device=device, model_size=size,
                                       preserve_colors=cfg.preserve_colors, callback=callback, stop=stop)
            info.update(method="model", model=opts.model, model_size=size)
        else:
            from . import api
            from .resample import resize

            extra: dict[str, Any] = {}
            if regions:
                from dataclasses import replace

                if (ch, cw) != (y1 - y0, x1 - x0):
                    raise EngineRuntimeError(f"the selection's crop is {cw}x{ch}, the regions were cut for "
                                             f"{x1 - x0}x{y1 - y0}")
                extra["regions"] = [replace(g, mask=np.asarray(g.mask)[y0:y1, x0:x1]) for g in regions]
            r = api.stylize(crop, style_list, crop_config(cfg, max(ch, cw), int(ref)), callback=callback, stop=stop,
                            **extra)
            info.update(method="iterative", steps=r.steps, seconds=r.seconds, device=r.device, loss=r.loss,
                        processed=list(r.image.shape[:2]))
            if r.stopped or (stop is not None and stop.is_set()):
                raise Cancelled("stopped")
            out = np.clip(resize(r.image, ch, cw), 0.0, 1.0)
        stylized.append(out)
        return out

    if whole:
        out = run(rgb)
        composite = out if img.shape[2] == 3 else np.concatenate([out, img[..., 3:]], axis=2)
        return SelectionResult(composite, out, np.ones((h, w), np.float32), (0, 0, w, h), "", info)
    from .compositing.region import stylize_region

    r = stylize_region(img, mask, run, margin=opts.margin, composite=opts.composite,  # type: ignore[arg-type]
                       feather=opts.feather)  # composite: checked by opts.check()
    return SelectionResult(r.image, _unblended(rgb, r.image, r.layer_mask, r.bbox, stylized[-1], opts.composite),
                           r.layer_mask, r.bbox, r.note, info)


def _full(mask: np.ndarray) -> float:
    """The value of a fully selected pixel in ``mask``'s dtype."""
    kind = np.asarray(mask).dtype
    return {np.dtype(np.uint8): 255.0, np.dtype(np.uint16): 65535.0}.get(kind, 1.0)


def _unblended(rgb: np.ndarray, composite: np.ndarray, weights: np.ndarray, bbox: tuple[int, int, int, int],
               stylized: np.ndarray, mode: str) -> np.ndarray:
    """The layer that, shown through ``weights`` over ``rgb``, gives ``composite``: the stylized
    crop where ``weights > 0`` (for Poisson the solution, recovered from the composite), the
    original elsewhere. So a layer mask made of ``weights`` stays editable and nothing outside
    the selection changes, whatever the layer mode."""
    x0, y0, x1, y1 = bbox
    sel = weights > 0
    if mode != "poisson" and stylized.shape[:2] == (y1 - y0, x1 - x0):
        full = rgb.copy()
        full[y0:y1, x0:x1] = stylized
    else:
        ww = np.where(sel, weights, 1.0)[..., None]
        full = (composite[..., :3] - (1.0 - ww) * rgb) / ww
    layer = rgb.copy()
    layer[sel] = np.clip(full[sel], 0.0, 1.0)
    return layer
