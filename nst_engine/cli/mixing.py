"""``nst stylize --scale-styles A,B`` (scale control, `nst_engine.scale_control`) and ``--model A
--model-mix B[:WEIGHT]`` (two models' outputs blended, `nst_engine.model_mix`). No torch here."""
from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from ..errors import InputError
from .fields import list_of

if TYPE_CHECKING:
    from ..config import StyleConfig
    from ..options import StylizeOptions

SCALE_STYLES_HELP = (
    "scale control: one style image per --scales entry, coarse to fine, instead of STYLE; e.g. --scales 256,512 "
    "--scale-styles A.jpg,B.jpg paints A's large-scale structure (the coarse scale) with B's fine texture (the "
    "last scale). Comma-separated (a path must not contain a comma); not with --region, --mask or --model")
MODEL_MIX_HELP = (
    "mixed transfer: also run this second model and blend the two paintings pixel by pixel, (1 - WEIGHT) x "
    "--model + WEIGHT x this one (WEIGHT 0..1, default 0.5), before --strength. Output blending only: the "
    "models are separate networks, so mixing their parameters is not offered (README)")


def add_mixing_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scale-styles", type=list_of(str, "style images"), default=(), metavar="STYLE,STYLE,…",
                        help=SCALE_STYLES_HELP)
    parser.add_argument("--model-mix", default="", metavar="NAME|FILE.onnx[:WEIGHT]", help=MODEL_MIX_HELP)


def check_scale_styles(args: argparse.Namespace, cfg: "StyleConfig") -> None:
    """`InputError` naming ``--scale-styles`` where it does not fit the other options (before any
    image is read)."""
    specs = tuple(args.scale_styles)
    if not specs:
        return
    if args.mask:
        raise InputError("--scale-styles", specs, "not with --mask: scale control runs on the whole photo")
    from ..scale_control import check_scale_styles as check

    check(specs, len(specs), len(args.styles), cfg, bool(args.region))


def refuse_scale_styles_for_model(args: argparse.Namespace) -> None:
    if args.scale_styles:
        raise InputError("--scale-styles", tuple(args.scale_styles), "applies to the iterative method (style "
                                                                     "images), not --model")


def refuse_model_mix(args: argparse.Namespace) -> None:
    if args.model_mix:
        raise InputError("--model-mix", args.model_mix, "needs --model: it mixes a second model into the first")


def run_model_mix(args: argparse.Namespace, options: "StylizeOptions") -> int:
    """`nst stylize CONTENT --model A --model-mix B[:W] -o OUT [--mask MASK]`, like
    `nst_engine.cli.train.run_model_stylize` with the two models' outputs blended."""
    import dataclasses

    from ..config import StyleConfig
    from ..image import check_output_path
    from ..model_mix import parse_mix, stylize_mixed
    from ..options import MODEL_CONFIG_FIELDS
    from ..samples import load
    from .progress import paint_and_write

    other, weight = parse_mix(args.model_mix, "--model-mix")
    out = check_output_path(args.output)
    cfg = StyleConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StyleConfig)
                         if f.name in MODEL_CONFIG_FIELDS and hasattr(args, f.name)})
    content = load(args.content, "CONTENT")
    mask = None
    if args.mask:
        from .compose import selection_mask

        mask = selection_mask(args.mask, content)
    return paint_and_write(out, lambda bar: stylize_mixed(content, mask, cfg, options, other, weight, callback=bar),
                           args.quiet, f"model {args.model} mixed with {other} at {weight:g}")
