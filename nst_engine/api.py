"""The engine's entry points: numpy arrays in, numpy arrays out.

    result = stylize(content, [style], StyleConfig(size=512, steps=300), callback=print)

Images are float32 HxWx3 RGB in 0..1 (uint8/uint16, gray or RGBA are accepted and converted;
alpha is ignored). The result is at the processed size (long side ``config.size``).
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np
import torch

from .config import StyleConfig
from .encoders.vgg import VGG19Encoder, deepest, precision, fp32_under_hybrid
from .encoders.weights import get_encoder
from .errors import InputError
from .image import check_array, to_tensor
from .losses import Objective, content_terms, histogram_terms, style_terms
from .optim import OptimizeResult, Progress, ProgressCallback, StopFlag, optimize, to_numpy
from .options import StylizeOptions
from . import scale_control, temporal_loss, thin
from .plan import MIN_TILE, TILE_BELOW_HISTORY, Scale, make_plan
from .regions import Region, RegionSet
from .regions import prepare as prepare_regions
from .temporal_loss import TemporalTarget

__all__ = ["stylize", "stylize_selection", "Region", "StyleResult", "Progress",
           "select_device"]

if TYPE_CHECKING:
    from .selection import SelectionResult
    from .tiling import TiledObjective


@dataclass
class StyleResult:
    image: np.ndarray  # HxWx3 float32 0..1
    loss: float  # last evaluated total loss
    losses: dict[str, float]  # its content / style / tv parts
    history: list[float]  # total loss after each step
    steps: int  # steps run
    stopped: bool  # True if ``stop`` was set before the end
    seconds: float  # in the optimisation loop
    device: str


def select_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise InputError("device", name, "CUDA is not available here (no GPU or a CPU-only torch build)")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise InputError("device", name, f"only {torch.cuda.device_count()} CUDA device(s) present")
    return dev


def _generator(seed: int | None) -> torch.Generator:
    g = torch.Generator("cpu")
    if seed is None:
        g.seed()
    else:
        g.manual_seed(seed)
    return g


def _noise(shape: tuple[int, int], cfg: StyleConfig, gen: torch.Generator, device: torch.device) -> torch.Tensor:
    # Drawn on the CPU so the same seed gives the same start on every device.
    n = torch.randn((1, 3, *shape), generator=gen) * cfg.noise_std + cfg.noise_mean
    return (n * 255.0).to(device)


def _blur(t: torch.Tensor, sigma: float) -> torch.Tensor:
    if sigma <= 0:
        return t
    from skimage.filters import gaussian

    a = gaussian(t[0].permute(1, 2, 0).cpu().numpy(), sigma=sigma, channel_axis=-1, preserve_range=True)
    return torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).permute(2, 0, 1)[None].to(t.device)


def _init_image(
    cfg: StyleConfig, shape: tuple[int, int], content: torch.Tensor | None, style: torch.Tensor | None,
    gen: torch.Generator, device: torch.device,
) -> torch.Tensor:
    if cfg.init == "content" and content is not None:
        x = content
    elif cfg.init == "style" and style is not None:
        x = torch.nn.functional.interpolate(style, size=shape, mode="bicubic", antialias=True).clamp(0, 255)
    elif cfg.init in ("noise", "content", "style"):
        x = _noise(shape, cfg, gen, device)  # texture/reconstruct: there is no content to start from
    else:
        from .image import read_image

        x = to_tensor(read_image(cfg.init, "init"), shape, device)
    return _blur(x, cfg.init_blur)


def _encoder(cfg: StyleConfig, layers: Sequence[str], device: torch.device) -> VGG19Encoder:
    return get_encoder(cfg.weights, deepest(layers), cfg.pooling, device, cfg.allow_download)


def _run(
    x0: torch.Tensor, objective: Objective, cfg: StyleConfig, device: torch.device, stage: str,
    callback: ProgressCallback | None, stop: StopFlag | None, scale: Scale,
) -> StyleResult:
    r: OptimizeResult = optimize(
        x0, _tiled(objective, scale), steps=cfg.steps, optimizer=cfg.optimizer, lr=cfg.lr, stage=stage,
        callback=callback, stop=stop, save_every=cfg.save_every, history=scale.history,
    )
    return StyleResult(to_numpy(r.image), r.loss, r.losses, r.history, r.steps, r.stopped, r.seconds, str(device))


def _single_scale(shape: tuple[int, int], layers: Sequence[str], cfg: StyleConfig, device: torch.device,
                  tileable: bool) -> Scale:
    """The planner's memory check for one scale (before any work): L-BFGS history and tiles."""
    try:
        (sc,) = make_plan(shape, max(shape), cfg.steps, deepest(layers), device, scales=(max(shape),),
                          max_memory_gib=cfg.max_memory, tile=cfg.tile, tileable=tileable)
    except InputError as e:
        raise InputError("size", cfg.size, e.reason) from None
    return sc


def _tiled(objective: Objective, scale: Scale) -> "Objective | TiledObjective":
    if not scale.tile:
        return objective
    from .tiling import TiledObjective

    return TiledObjective(objective, scale.tile)


_F = TypeVar("_F", bound=Callable[..., Any])


def _in_precision(fn: _F) -> _F:
    """Run ``fn`` with the encoder arithmetic its ``config.precision`` asks for."""
    sig = inspect.signature(fn)

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        cfg = sig.bind(*args, **kwargs).arguments.get("config") or StyleConfig()
        if cfg.device != "auto" and not (cfg.device == "cpu" or cfg.device.startswith("cuda")):
            return fn(*args, **kwargs)  # let the function's own checks name the bad value
        with precision(cfg.precision, select_device(cfg.device)):
            return fn(*args, **kwargs)

    return wrapper  # type: ignore[return-value]


def _setup(config: StyleConfig | None) -> tuple[StyleConfig, torch.device, torch.Generator]:
    cfg = config or StyleConfig()
    cfg.check()
    device = select_device(cfg.device)
    if cfg.seed is not None:
        torch.manual_seed(cfg.seed)
    return cfg, device, _generator(cfg.seed)


@_in_precision
def stylize(
    content: np.ndarray,
    styles: Sequence[np.ndarray] | np.ndarray,
    config: StyleConfig | None = None,
    *,
    callback: ProgressCallback | None = None,
    stop: StopFlag | threading.Event | None = None,
    regions: Sequence[Region] = (),
    scale_styles: Sequence[np.ndarray] = (),
    temporal: TemporalTarget | None = None,
) -> StyleResult:
    """Gatys et al. style transfer of ``styles`` onto ``content``; with ``regions`` (spatial
    control, `nst_engine.regions`) each region's mask gets its own style, and ``styles`` (may be
    empty then) only the part no region covers. ``scale_styles`` (scale control,
    `nst_engine.scale_control`): one style image per scale of ``config.scales``, coarse to fine,
    instead of ``styles``. ``temporal``: the short-term temporal loss of a video frame
    (`nst_engine.temporal_loss`)."""
    # 1. Check inputs.
    cfg, device, gen = _setup(config)
    content_a = check_array(content, "content")
    style_a = scale_control.style_images(styles, scale_styles, cfg, bool(regions))
    region_a = [check_array(r.style, f"{r.argument or f'regions[{k}]'}.style") for k, r in enumerate(regions)]
    if temporal is not None and cfg.tile:
        raise InputError("tile", cfg.tile, "the temporal loss cannot run in tiles; leave --tile at 0")
    if regions and cfg.histogram_weight > 0 and not style_a:
        raise InputError("histogram_weight", cfg.histogram_weight, "needs a STYLE image; regions (--region) have "
                                                                   "Gram losses only")
    # 2. Colour: luminance-only transfer, or the style recoloured to the content's palette.
    content_in, style_in = _color_inputs(cfg.preserve_colors, content_a, style_a + region_a)
    style_in, region_in = style_in[:len(style_a)], style_in[len(style_a):]
    # 3. Plan the scales (coarse to fine) against the memory budget, before any work; images
    #    thinner than VGG-19 allows at the coarsest scale are mirrored out (cropped back at 6).
    hist_layers = cfg.histogram_layers if cfg.histogram_weight > 0 else ()
    layers = [*cfg.content_layers, *cfg.style_layers, *hist_layers]
    content_in, style_in, pad = thin.pad_inputs(content_in, style_in, scale_control.padding_config(cfg, layers), layers)
    temporal_in = None if temporal is None else \
        temporal_loss.pad_like(temporal_loss.prepare(temporal, content_a.shape[:2], cfg.preserve_colors), pad)
    region_set = prepare_regions(regions, region_in, content_a.shape[:2], pad, bool(style_a), cfg, layers) \
        if regions else None
    plan = make_plan(content_in.shape[:2], cfg.size, cfg.steps, deepest(layers), device, scales=cfg.scales,
                     scale_steps=cfg.scale_steps, max_memory_gib=cfg.max_memory, tile=cfg.tile,
                     tileable=not hist_layers and temporal is None)
    encoder = _encoder(cfg, layers, device)
    results: list[StyleResult] = []
    x: torch.Tensor | None = None
    for i, planned in enumerate(plan):
        sc = planned
        for attempt in range(OOM_RETRIES + 1):
            try:
                r = _stylize_scale(sc, i, len(plan), x, content_in, scale_control.at_scale(style_in, i, bool(scale_styles)),
                                   cfg, encoder, layers, hist_layers, gen, device, callback, stop, region_set,
                                   temporal_in)
                break
            except (torch.OutOfMemoryError, RuntimeError) as e:
                # The plan's estimate was short (another process took memory, an allocator's
                # fragmentation): retry the scale in smaller exact tiles, never die of it.
                if not _is_oom(e) or attempt == OOM_RETRIES or hist_layers or temporal_in:
                    raise
                if device.type == "cuda":
                    torch.cuda.empty_cache()
                sc = dataclasses.replace(sc, tile=max(MIN_TILE, (sc.tile or max(sc.shape)) // 2 // 16 * 16),
                                         history=min(sc.history, TILE_BELOW_HISTORY))
        x = r.image
        results.append(StyleResult(to_numpy(r.image), r.loss, r.losses, r.history, r.steps, r.stopped, r.seconds,
                                   str(device)))
        if r.stopped:
            break
    result = results[-1]
    result.history = [v for r_ in results for v in r_.history]
    result.steps = sum(r_.steps for r_ in results)
    result.seconds = sum(r_.seconds for r_ in results)
    result.image = thin.crop(result.image, pad)
    # 6. Luminance-only: the optimised luminance with the content's chroma (Gatys et al. 2016b).
    if cfg.preserve_colors == "luminance":
        from .color import recolor

        result.image = recolor(result.image, content_a)
    return result


OOM_RETRIES = 3


def _is_oom(e: BaseException) -> bool:
    return isinstance(e, torch.OutOfMemoryError) or "can't allocate memory" in str(e) or "out of memory" in str(e)


def _stylize_scale(
    sc: Scale, i: int, n: int, x: torch.Tensor | None, content_in: np.ndarray, style_in: list[np.ndarray],
    cfg: StyleConfig, encoder: VGG19Encoder, layers: list[str], hist_layers: Sequence[str],
    gen: torch.Generator, device: torch.device, callback: ProgressCallback | None, stop: StopFlag | None,
    regions: RegionSet | None = None, temporal: TemporalTarget | None = None,
) -> OptimizeResult:
    """One scale of `stylize`: its targets, its start image, its optimisation."""
    # 4. Images at this scale, and the loss targets.
    content_t = to_tensor(content_in, sc.shape, device)
    style_t, blend, style_size = scale_control.style_targets(style_in, sc.size, cfg, device)
    # The targets in fp32 under the hybrid (computed once: a hybrid target cost the hybrid's
    # final loss up to 10 % in bench/bench_precision.py).
    with fp32_under_hybrid():
        if regions is not None:  # guided Grams per region; STYLE images for the rest only
            style, first_style = regions.terms(encoder, sc.shape, style_size, style_t, cfg, device)
        else:
            style = style_terms(encoder, style_t, blend, cfg.style_layers, cfg.style_layer_weights,
                                cfg.style_weight, tile=sc.tile) if cfg.style_weight > 0 else []
            first_style = style_t[0]
        objective = Objective(
            encoder,
            content=content_terms(encoder, content_t, cfg.content_layers, cfg.content_layer_weights,
                                  cfg.content_weight, tile=sc.tile) if cfg.content_weight > 0 else [],
            style=[*style, *(histogram_terms(encoder, style_t[0], hist_layers, cfg.histogram_weight) if hist_layers else [])],
            tv_weight=cfg.tv_weight,
            pixel=[temporal_loss.term(temporal, sc.shape, device)] if temporal is not None else [],
        )
    # 5. Start image: the configured one, then the previous scale's result upsampled.
    if x is None:
        x0 = _init_image(cfg, sc.shape, content_t, style_t[0] if style_t else first_style, gen, device)
    else:
        x0 = torch.nn.functional.interpolate(x, size=sc.shape, mode="bicubic", align_corners=False).clamp(0, 255)
    del content_t, style_t
    stage = "stylize" if n == 1 else f"stylize {sc.shape[1]}x{sc.shape[0]} ({i + 1}/{n})"
    if sc.tile:
        from .tiling import tiles

        stage += f", {len(tiles(sc.shape, sc.tile, deepest(layers)))} tiles"
    return optimize(x0, _tiled(objective, sc), steps=sc.steps, optimizer=cfg.optimizer, lr=cfg.lr, stage=stage,
                    callback=callback, stop=stop, save_every=cfg.save_every, history=sc.history)


def _color_inputs(
    mode: str, content: np.ndarray, styles: list[np.ndarray]
) -> tuple[np.ndarray, list[np.ndarray]]:
    """The content and style images the optimiser sees under ``preserve_colors=mode``."""
    if mode == "none":
        return content, styles
    from . import color

    def gray(y: np.ndarray) -> np.ndarray:
        return np.repeat(np.clip(y, 0.0, 1.0)[..., None], 3, axis=2).astype(np.float32)

    if mode == "luminance":
        # Transfer on luminance alone: both as gray RGB, the style's luminance matched to the
        # content's mean and std (the paper's eq. 1) so the tonal range stays the photo's.
        return gray(color.luminance(content)), [gray(color.match_luminance(s, content)) for s in styles]
    fn = color.match_histogram_colors if mode == "histogram" else color.linear_color_transfer
    return content, [np.clip(fn(s, content), 0.0, 1.0).astype(np.float32) for s in styles]


def stylize_selection(
    image: np.ndarray,
    mask: np.ndarray | None,
    styles: Sequence[np.ndarray] | np.ndarray,
    config: StyleConfig | None = None,
    *,
    composite: str = StylizeOptions.composite,
    margin: int = StylizeOptions.margin,
    feather: float = StylizeOptions.feather,
    callback: ProgressCallback | None = None,
    stop: StopFlag | threading.Event | None = None,
) -> "SelectionResult":
    """Stylize the part of ``image`` selected by ``mask`` (plus ``margin`` px of context) in the
    style of ``styles`` and composite it back (``poisson``, ``feather`` or ``none``); outside the
    selection the image is unchanged. ``config.size`` is the long side the whole image would be
    processed at: the selection is processed at that scale (`nst_engine.selection`, which also
    runs trained models: `nst_engine.selection.stylize_selection` with `StylizeOptions`).
    """
    from .selection import stylize_selection as run

    options = StylizeOptions(composite=composite, margin=margin, feather=feather)
    return run(image, mask, styles, config, options, callback=callback, stop=stop)
