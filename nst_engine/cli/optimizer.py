"""`nst stylize` (a style image, or ``--model``; ``--mask``: a selection), `nst reconstruct`, `nst texture`."""
from __future__ import annotations

import argparse
import dataclasses
import functools
import math
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..config import MAX_SIZE, StyleConfig
from ..errors import InputError
from .options import add_config_options, config_from_args
from .mixing import add_mixing_options
from .progress import ProgressBar
from .regions import REGION_HELP, load_regions

INPUT_HELP = "an image file, sample:NAME (scikit-image photo, e.g. sample:astronaut) or style:NAME (shipped style)"

# StyleConfig fields a command cannot use: it does not offer them (argparse then refuses them).
RECONSTRUCT_SKIP = frozenset({
    "style_scale", "style_scales", "scales", "scale_steps", "content_layers", "content_layer_weights", "style_layers",
    "style_layer_weights", "style_weight", "histogram_weight", "histogram_layers", "preserve_colors", "style_blend",
})
TEXTURE_SKIP = frozenset({"style_scales", "scales", "scale_steps", "content_layers", "content_layer_weights", "content_weight",
                          "preserve_colors"})


def register(sub: Any) -> None:
    from .options import add_stylize_options

    p = sub.add_parser("stylize", help="style transfer (Gatys et al.)", description="Paint CONTENT in the style of STYLE.")
    p.add_argument("content", metavar="CONTENT", help=INPUT_HELP)
    p.add_argument("styles", metavar="STYLE", nargs="*",
                   help=INPUT_HELP + "; several are blended (--style-blend); none with --model or --scale-styles; "
                        "with --region optional (then only for the part no region covers)")
    p.add_argument("--mask", help="stylize only this selection, blended back at full size: a mask image the "
                                  "size of CONTENT, white = stylize (its alpha channel if it has one)")
    p.add_argument("--region", action="append", default=[], metavar="MASK=STYLE[#STYLEMASK][:WEIGHT]",
                   help=REGION_HELP)
    add_stylize_options(p)  # --model …, --composite, --margin, --feather: from StylizeOptions
    add_mixing_options(p)  # --scale-styles, --model-mix
    _common(p)
    p.set_defaults(func=run_stylize)

    p = sub.add_parser("reconstruct", help="content reconstruction from noise at one layer",
                       description="Reconstruct IMAGE from noise, matching its features at --layer.")
    p.add_argument("image", metavar="IMAGE", help=INPUT_HELP)
    p.add_argument("--layer", default="relu3_1", help="VGG-19 layer to match (relu1_1 … relu5_4) [default: relu3_1]")
    _common(p, defaults={"init": "noise"}, skip=RECONSTRUCT_SKIP)
    p.set_defaults(func=run_reconstruct)

    p = sub.add_parser("texture", help="texture synthesis from noise",
                       description="Synthesise a texture with the Gram statistics of STYLE.")
    p.add_argument("styles", metavar="STYLE", nargs="+", help=INPUT_HELP)
    p.add_argument("--height", type=int, default=None, help="output height in px [default: the style's aspect]")
    _common(p, defaults={"init": "noise"}, skip=TEXTURE_SKIP)
    p.set_defaults(func=run_texture)


def _common(p: argparse.ArgumentParser, defaults: dict[str, Any] | None = None,
            skip: frozenset[str] = frozenset()) -> None:
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .tif, .webp)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p, skip=skip, defaults=defaults)


class _Run:
    """Progress bar plus `--save-every` snapshots written next to the output."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..image import check_output_path

        self.out = check_output_path(args.output)
        self.bar = ProgressBar(enabled=False if args.quiet else None)
        self.last_step = 0
        self.t0 = time.perf_counter()
        self.snapshots: list[Path] = []
        self.args = args
        args.run = self  # for `_interruptible`'s message

    def __call__(self, p: Any) -> None:
        self.last_step = p.step
        self.bar(p)
        if p.snapshot is not None:
            from ..image import write_image

            path = self.out.with_name(f"{self.out.stem}.step{p.step:05d}{self.out.suffix}")
            write_image(path, p.snapshot)
            if path not in self.snapshots:
                self.snapshots.append(path)

    def _precision(self) -> str:
        """Which arithmetic the encoder ran in, and why (auto: the CPU's bf16 support)."""
        from ..api import select_device
        from ..encoders.vgg import describe_precision

        return describe_precision(getattr(self.args, "precision", "auto"), select_device(getattr(self.args, "device", "auto")))

    def finish(self, image: np.ndarray, steps: int) -> int:
        from ..image import write_image

        self.bar.close()
        write_image(self.out, image)
        if self.bar.enabled:
            h, w = image.shape[:2]
            print(f"wrote {self.out} ({w}x{h}, {steps} steps, {time.perf_counter() - self.t0:.1f} s; "
                  f"{self._precision()})", file=sys.stderr)
        return 0


def _interruptible(run: Callable[[argparse.Namespace], int]) -> Callable[[argparse.Namespace], int]:
    """Ctrl-C: say what is on disk. The output is never written, but `--save-every` snapshots
    stay (the latest is the work done so far); `nst` itself says "nothing written" otherwise."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except KeyboardInterrupt:
            state = getattr(args, "run", None)
            if not isinstance(state, _Run) or not state.snapshots:
                raise
            state.bar.close()
            shots = state.snapshots
            print(f"nst: interrupted; {state.out} not written; {len(shots)} snapshot(s) kept, the latest "
                  f"{shots[-1]}", file=sys.stderr)
            return 130

    return wrapper


def _load(spec: str, argument: str, max_side: int | None = None, exact: bool = False) -> np.ndarray:
    from ..samples import load

    return load(spec, argument, max_side=max_side, exact=exact)


def _final_size(cfg: StyleConfig) -> int:
    """The long side of the result (the last scale)."""
    return int(cfg.scales[-1]) if cfg.scales else int(cfg.size)


def _style_side(cfg: StyleConfig, long_side: int) -> int:
    """The largest long side a style image is used at (a larger file is decoded reduced)."""
    return max(1, math.ceil(long_side * float(max(cfg.style_scales or (cfg.style_scale,)))))


def _with_alpha(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Give the result the source's alpha channel (resized), so transparency survives."""
    if source.ndim != 3 or source.shape[2] != 4:
        return image
    from skimage.transform import resize

    alpha = resize(source[..., 3], image.shape[:2], order=1, anti_aliasing=True).astype(np.float32)
    return np.concatenate([image, alpha[..., None]], axis=2)


@_interruptible
def run_stylize(args: argparse.Namespace) -> int:
    from ..options import MODEL_CONFIG_FIELDS, StylizeOptions
    from .fields import refuse_changed
    from .mixing import check_scale_styles, refuse_model_mix, refuse_scale_styles_for_model, run_model_mix
    from .options import stylize_options_from_args

    options = stylize_options_from_args(args)
    if not args.mask:
        refuse_changed(args, StylizeOptions, ("composite", "margin", "feather"), "applies to a selection (--mask) only")
    if args.region and (options.method == "model" or args.mask):
        raise InputError("--region", args.region[0], "spatial control runs the iterative optimizer on the whole "
                                                     "photo: not with --model or --mask")
    if options.method == "model":
        if args.styles:
            raise InputError("--model", args.model, "give STYLE images or --model, not both")
        iterative_only = [f.name for f in dataclasses.fields(StyleConfig) if f.name not in MODEL_CONFIG_FIELDS]
        refuse_changed(args, StyleConfig, iterative_only, "applies to the iterative method (STYLE images), not --model")
        refuse_scale_styles_for_model(args)
        if args.model_mix:
            return run_model_mix(args, options)
        from .train import run_model_stylize

        return run_model_stylize(args)
    refuse_changed(args, StylizeOptions, ("model_size", "strength", "overlap"), "applies to --model only")
    refuse_model_mix(args)
    if not args.styles and not args.region and not args.scale_styles:
        raise InputError("STYLE", "", "give at least one style image, --region MASK=STYLE, --scale-styles or --model NAME")
    cfg = config_from_args(args)
    check_scale_styles(args, cfg)
    run = _Run(args)
    final = _final_size(cfg)
    # The result is at the final size: a larger photo is decoded reduced (a selection is
    # composited at full size, so then it is read whole).
    content = _load(args.content, "CONTENT", None if args.mask else final, exact=True)
    styles = [_load(s, "STYLE", _style_side(cfg, final)) for s in args.styles]
    per_scale = [_load(s, "--scale-styles", _style_side(cfg, final)) for s in args.scale_styles]
    if args.mask:
        from ..selection import stylize_selection
        from .compose import selection_mask

        region = stylize_selection(content, selection_mask(args.mask, content), styles, cfg, options, callback=run)
        if region.note:
            print(f"nst: note: {region.note}", file=sys.stderr)
        return run.finish(region.image, int(region.info.get("steps", run.last_step)))
    from ..api import stylize  # torch: only the iterative path needs it

    regions = load_regions(args.region, final, _style_side(cfg, final))
    result = stylize(content, styles, cfg, callback=run, regions=regions, scale_styles=per_scale)
    return run.finish(_with_alpha(result.image, content), result.steps)


@_interruptible
def run_reconstruct(args: argparse.Namespace) -> int:
    from ..synthesis import reconstruct

    cfg = config_from_args(args)
    if cfg.init in ("content", "style"):
        raise InputError("--init", cfg.init, "a reconstruction starts from noise or an image FILE")
    run = _Run(args)
    image = _load(args.image, "IMAGE", cfg.size, exact=True)
    result = reconstruct(image, args.layer, cfg, callback=run)
    return run.finish(result.image, result.steps)


@_interruptible
def run_texture(args: argparse.Namespace) -> int:
    from ..synthesis import texture
    from ..image import fit_long_side

    cfg = config_from_args(args)
    if cfg.init == "content":
        raise InputError("--init", cfg.init, "a texture starts from noise, the style or an image FILE")
    if args.height is not None and not 1 <= args.height <= MAX_SIZE:
        raise InputError("--height", args.height, f"must be between 1 and {MAX_SIZE}")
    run = _Run(args)
    from ..samples import load_sized

    loaded = [load_sized(s, "STYLE", max_side=_style_side(cfg, cfg.size)) for s in args.styles]
    styles = [image for image, _ in loaded]
    # no --height: the first style's aspect, from its size in the file (not a reduced decode's)
    shape = (args.height, cfg.size) if args.height is not None else fit_long_side(*loaded[0][1], cfg.size)
    result = texture(styles, cfg, shape=shape, callback=run)
    return run.finish(result.image, result.steps)

