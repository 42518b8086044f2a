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


def selection_mask(spec: str, content: np.ndarray) -> np.ndarray:
    """``nst stylize --mask``: `read_mask`, which must have CONTENT's size."""
    mask = read_mask(spec, "--mask")
    if mask.shape != content.shape[:2]:
        raise InputError("--mask", spec, f"is {mask.shape[1]}x{mask.shape[0]}, CONTENT is "
                                         f"{content.shape[1]}x{content.shape[0]}")
    return mask


def _mask_8bit(m: np.ndarray) -> np.ndarray:
    """`read_mask` of an 8-bit file's pixels (`decode.read_8bit`): uint8, or float32 for RGB's mean."""
    if m.ndim == 2:
        return m
    if m.shape[2] in (2, 4):
        return np.ascontiguousarray(m[..., -1])
    mean: np.ndarray = m[..., :3].mean(axis=2, dtype=np.float32) / np.float32(255.0)
    return mean


def _rgb_8bit(a: np.ndarray) -> np.ndarray:
    """An 8-bit file's pixels as RGB or RGBA uint8 (grey repeated), as `load` makes floats."""
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] == 2:
        return np.dstack([a[..., 0], a[..., 0], a[..., 0], a[..., 1]])
    return a


def _offset(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise InputError("--offset", text, "expected X,Y in whole pixels") from None
    return x, y


def _read_blend_inputs(args: argparse.Namespace, eight_bit_out: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SOURCE, TARGET, MASK decoded once each, in parallel threads (the decoders release the GIL).
    8-bit files stay uint8 when the output is 8-bit (no float copies, and the solver stops at the
    tolerance an 8-bit result needs); anything else is read as float 0..1."""
    from concurrent.futures import ThreadPoolExecutor

    from ..decode import read_8bit
    from ..samples import load

    specs = [(args.source, "SOURCE"), (args.target, "TARGET"), (args.mask, "MASK")]
    files = eight_bit_out and not any(spec.startswith(("sample:", "style:")) for spec, _ in specs)
    with ThreadPoolExecutor(3) as pool:
        raw = list(pool.map(lambda sa: read_8bit(*sa) if files else None, specs))
        if raw[0] is None or raw[1] is None:
            source, target = pool.map(lambda sa: load(*sa), specs[:2])
        else:
            source, target = _rgb_8bit(raw[0]), _rgb_8bit(raw[1])
    mask = _mask_8bit(raw[2]) if raw[2] is not None else read_mask(args.mask)
    return source, target, mask


def _import_quietly(name: str) -> None:
    """Import ``name`` ahead of its use (a failure is reported where it is imported for real)."""
    import importlib

    try:
        importlib.import_module(name)
    except Exception:  # noqa: BLE001
        pass


def run_blend(args: argparse.Namespace) -> int:
    import threading

    from ..image import WRITABLE, check_output_path, write_image

    out = check_output_path(args.output)
    offset = _offset(args.offset)
    eight_bit_out = WRITABLE[out.suffix.lower()] != "TIFF"  # TIFF output keeps 16 bits
    # The solver's imports (SciPy: ~0.5 s) run while the decoders, which release the GIL, work.
    solver = threading.Thread(target=_import_quietly, args=("nst_engine.compositing.poisson",), daemon=True)
    solver.start()
    source, target, mask = _read_blend_inputs(args, eight_bit_out)
    solver.join()
    from ..compositing.poisson import poisson_blend_report, prepare

    # A large blend's compiled kernels load in the background during the setup, which leaves one
    # core idle (started during decoding, which keeps both busy, this was ~0.9 s slower in all)
    prepare(int(np.count_nonzero(mask)))
    if source.shape[2] != target.shape[2]:  # RGB into RGBA or back: give both an alpha channel
        opaque = np.uint8(255) if source.dtype == np.uint8 else np.float32(1.0)
        source, target = (np.dstack([a[..., :3], a[..., 3] if a.shape[2] == 4 else np.full(a.shape[:2], opaque)])
                          for a in (source, target))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # An 8-bit result needs a relative residual of 3e-4, floats 1e-6: on bench_poisson's 4 MP
        # blend, 3e-4 (7 CG iterations) and 1e-4 (8) were equally far from the exact solution
        # (mean 0.123 of a level, the same pixels off by more than one level); 1e-3 (6) let
        # 40x more pixels slip by a level.
        report = poisson_blend_report(source, target, mask, mode=args.mode, offset=offset,
                                      rtol=3e-4 if eight_bit_out else None)
    if report.note:
        print(f"nst: note: {report.note}", file=sys.stderr)
    write_image(out, report.image)
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
