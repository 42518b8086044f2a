"""`nst blend` (Poisson blending) and `nst recolor` (keep the content's colours) from the shell."""
from __future__ import annotations

import argparse
import sys
import warnings
from typing import Any

import numpy as np

from ..errors import InputError


def register(sub: Any) -> None:
    p = sub.add_parser("blend", help="Poisson-blend SOURCE into TARGET inside MASK (Pérez et al. 2003)",
                       description="Blend SOURCE into TARGET inside MASK, keeping SOURCE's gradients; "
                                   "outside the mask the output is TARGET unchanged.")
    p.add_argument("source", metavar="SOURCE")
    p.add_argument("target", metavar="TARGET")
    p.add_argument("mask", metavar="MASK", help="mask image over SOURCE: white = blend (alpha channel if it has one)")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--mode", choices=("seamless", "mixed"), default="seamless",
                   help="seamless: source gradients; mixed: the stronger of source and target [default: seamless]")
    p.add_argument("--offset", default="0,0", metavar="X,Y", help="SOURCE's top-left in TARGET [default: 0,0]")
    p.set_defaults(func=run_blend)

    p = sub.add_parser("recolor", help="keep STYLIZED's luminance with CONTENT's colours",
                       description="Luminance-only post-process (Gatys et al. 2016): STYLIZED's luminance, "
                                   "CONTENT's chroma. Works on any stylized image, e.g. a fast model's output.")
    p.add_argument("stylized", metavar="STYLIZED")
    p.add_argument("content", metavar="CONTENT")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--space", choices=("yiq", "lab"), default="yiq", help="colour space [default: yiq]")
    p.set_defaults(func=run_recolor)


def read_mask(spec: str, argument: str = "MASK") -> np.ndarray:
    """A mask image as HxW float32 0..1: its alpha channel if it has one, else its gray level."""
    from ..samples import load

    m = load(spec, argument)
    return (m[..., 3] if m.shape[2] == 4 else m[..., :3].mean(axis=2)).astype(np.float32)


def _offset(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError("--offset", text, "expected X,Y in whole pixels") from None
    return x, y


def run_blend(args: argparse.Namespace) -> int:
    from ..compositing.poisson import poisson_blend_report
    from ..image import check_output_path, write_image
    from ..samples import load

    check_output_path(args.output)
    offset = _offset(args.offset)
    source, target = load(args.source, "SOURCE"), load(args.target, "TARGET")
    mask = read_mask(args.mask)
    if source.shape[2] != target.shape[2]:  # RGB into RGBA or back: give both an alpha channel
        source, target = (np.dstack([a[..., :3], a[..., 3] if a.shape[2] == 4 else np.ones(a.shape[:2], np.float32)])
                          for a in (source, target))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        report = poisson_blend_report(source, target, mask, mode=args.mode, offset=offset)
    if report.note:
        print(f"nst: note: {report.note}", file=sys.stderr)
    write_image(args.output, report.image)
    return 0


def run_recolor(args: argparse.Namespace) -> int:
    from ..color import recolor
    from ..image import check_output_path, write_image
    from ..samples import load

    check_output_path(args.output)
    stylized, content = load(args.stylized, "STYLIZED"), load(args.content, "CONTENT")
    out = recolor(stylized[..., :3], content[..., :3], space=args.space)
    if stylized.shape[2] == 4:
        out = np.dstack([out, stylized[..., 3]])
    write_image(args.output, out)
    return 0
