"""`nst stylize`, `nst reconstruct`, `nst texture`: the iterative optimizer from the shell."""
from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np

from ..errors import InputError
from .options import add_config_options, config_from_args
from .progress import ProgressBar

INPUT_HELP = "an image file, sample:NAME (scikit-image photo, e.g. sample:astronaut) or style:NAME (shipped style)"


def register(sub: Any) -> None:
    p = sub.add_parser("stylize", help="style transfer (Gatys et al.)", description="Paint CONTENT in the style of STYLE.")
    p.add_argument("content", metavar="CONTENT", help=INPUT_HELP)
    p.add_argument("styles", metavar="STYLE", nargs="*",
                   help=INPUT_HELP + "; several are blended (--style-blend); none with --model")
    from .train import add_model_options

    add_model_options(p)
    sel = p.add_argument_group("selection (stylize only part of CONTENT, blended back at full size)")
    sel.add_argument("--mask", help="mask image the size of CONTENT: white = stylize (alpha channel if it has one)")
    sel.add_argument("--composite", choices=("poisson", "feather", "none"), default="poisson",
                     help="how the stylized region meets the rest [default: poisson]")
    sel.add_argument("--margin", type=int, default=32, help="context px around the selection [default: 32]")
    _common(p)
    p.set_defaults(func=run_stylize)

    p = sub.add_parser("reconstruct", help="content reconstruction from noise at one layer",
                       description="Reconstruct IMAGE from noise, matching its features at --layer.")
    p.add_argument("image", metavar="IMAGE", help=INPUT_HELP)
    p.add_argument("--layer", default="relu3_1", help="VGG-19 layer to match (relu1_1 … relu5_4) [default: relu3_1]")
    _common(p, defaults={"init": "noise"})
    p.set_defaults(func=run_reconstruct)

    p = sub.add_parser("texture", help="texture synthesis from noise",
                       description="Synthesise a texture with the Gram statistics of STYLE.")
    p.add_argument("styles", metavar="STYLE", nargs="+", help=INPUT_HELP)
    p.add_argument("--height", type=int, default=None, help="output height in px [default: the style's aspect]")
    _common(p, defaults={"init": "noise"})
    p.set_defaults(func=run_texture)


def _common(p: argparse.ArgumentParser, defaults: dict[str, Any] | None = None) -> None:
    p.add_argument("-o", "--output", required=True, help="output image (.png, .jpg, .tif, .webp)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_config_options(p, defaults=defaults)


class _Run:
    """Progress bar plus `--save-every` snapshots written next to the output."""

    def __init__(self, args: argparse.Namespace) -> None:
        from ..image import check_output_path

        self.out = check_output_path(args.output)
        self.bar = ProgressBar(enabled=False if args.quiet else None)
        self.last_step = 0
        self.t0 = time.perf_counter()

    def __call__(self, p: Any) -> None:
        self.last_step = p.step
        self.bar(p)
        if p.snapshot is not None:
            from ..image import write_image

            write_image(self.out.with_name(f"{self.out.stem}.step{p.step:05d}{self.out.suffix}"), p.snapshot)

    def finish(self, image: np.ndarray, steps: int) -> int:
        from ..image import write_image

        self.bar.close()
        write_image(self.out, image)
        if self.bar.enabled:
            h, w = image.shape[:2]
            print(f"wrote {self.out} ({w}x{h}, {steps} steps, {time.perf_counter() - self.t0:.1f} s)", file=sys.stderr)
        return 0


def _load(spec: str, argument: str) -> np.ndarray:
    from ..samples import load

    return load(spec, argument)


def _with_alpha(image: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Give the result the source's alpha channel (resized), so transparency survives."""
    if source.ndim != 3 or source.shape[2] != 4:
        return image
    from skimage.transform import resize

    alpha = resize(source[..., 3], image.shape[:2], order=1, anti_aliasing=True).astype(np.float32)
    return np.concatenate([image, alpha[..., None]], axis=2)


def run_stylize(args: argparse.Namespace) -> int:
    if args.model:
        if args.styles:
            raise InputError("--model", args.model, "give STYLE images or --model, not both")
        from .train import run_model_stylize

        return run_model_stylize(args)
    if not args.styles:
        raise InputError("STYLE", "", "give at least one style image, or --model NAME")
    from ..api import stylize  # torch: only the iterative path needs it

    cfg = config_from_args(args)
    run = _Run(args)
    content = _load(args.content, "CONTENT")
    styles = [_load(s, "STYLE") for s in args.styles]
    if args.mask:
        return _stylize_masked(args, cfg, run, content, styles)
    result = stylize(content, styles, cfg, callback=run)
    return run.finish(_with_alpha(result.image, content), result.steps)


def _stylize_masked(args: argparse.Namespace, cfg: Any, run: "_Run", content: np.ndarray,
                    styles: list[np.ndarray]) -> int:
    from ..api import stylize_selection
    from .compose import read_mask

    mask = read_mask(args.mask, "--mask")
    if mask.shape != content.shape[:2]:
        raise InputError("--mask", args.mask, f"is {mask.shape[1]}x{mask.shape[0]}, CONTENT is "
                                              f"{content.shape[1]}x{content.shape[0]}")
    if args.margin < 0:
        raise InputError("--margin", args.margin, "must be >= 0")
    region = stylize_selection(content, mask, styles, cfg, composite=args.composite, margin=args.margin,
                               callback=run)
    if region.note:
        print(f"nst: note: {region.note}", file=sys.stderr)
    return run.finish(region.image, run.last_step)


def run_reconstruct(args: argparse.Namespace) -> int:
    from ..api import reconstruct

    cfg = config_from_args(args)
    run = _Run(args)
    image = _load(args.image, "IMAGE")
    result = reconstruct(image, args.layer, cfg, callback=run)
    return run.finish(result.image, result.steps)


def run_texture(args: argparse.Namespace) -> int:
    from ..api import texture
    from ..image import fit_long_side

    cfg = config_from_args(args)
    run = _Run(args)
    styles = [_load(s, "STYLE") for s in args.styles]
    shape = None
    if args.height is not None:
        if not 1 <= args.height <= 20000:
            raise InputError("--height", args.height, "must be between 1 and 20000")
        shape = (args.height, cfg.size)
    else:
        shape = fit_long_side(*styles[0].shape[:2], cfg.size)
    result = texture(styles, cfg, shape=shape, callback=run)
    return run.finish(result.image, result.steps)

