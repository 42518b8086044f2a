"""The README's scale-control picture (issue #12; Gatys et al. 2017, sec. 6).

    nice -n 19 .venv/bin/python scripts/scale_control_demo.py [--content sample:astronaut]
        [--a ../shared/images/styles/starry_night.jpg] [--b ../shared/images/styles/composition_vii.jpg]
        [--scales 128,256] [--scale-steps 100,50] [--out docs/scale_control.png]

Three coarse-to-fine runs over the same scales: style A at every scale, style B at every scale,
and A at the coarse scale(s) with B at the last (``stylize(..., scale_styles=[A, B])``, the CLI's
``--scale-styles A,B``). Writes a contact sheet (top: content, A, B; bottom: A everywhere, B
everywhere, A coarse + B fine) and prints, for each run, its Gram loss against B at the final
size (fine texture) and the distance of its 8 px thumbnail from A's and B's runs (large
structure). The paintings are read from ``../shared/images/styles`` at run time; only the sheet
goes into docs/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine.api import stylize  # noqa: E402
from nst_engine.config import StyleConfig  # noqa: E402
from nst_engine.image import fit_long_side  # noqa: E402
from nst_engine.resample import resize  # noqa: E402
from nst_engine.samples import load  # noqa: E402

STYLES = ROOT.parent / "shared" / "images" / "styles"


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(t) for t in text.split(","))


def _gram_loss(image: np.ndarray, style: np.ndarray, cfg: StyleConfig) -> float:
    """The plain Gram loss (``cfg.style_layers``, weight 1) of ``image`` against ``style`` at the image's size."""
    import torch

    from nst_engine.encoders.weights import get_encoder
    from nst_engine.image import to_tensor
    from nst_engine.losses import Objective, style_terms

    cpu = torch.device("cpu")
    encoder = get_encoder(cfg.weights, "relu5_1", cfg.pooling, cpu)
    side = max(image.shape[:2])
    target = to_tensor(style, fit_long_side(*style.shape[:2], round(side * cfg.style_scale)), cpu)
    terms = style_terms(encoder, [target], (), cfg.style_layers, (), 1.0)
    with torch.no_grad():
        return float(Objective(encoder, style=terms)(to_tensor(image, image.shape[:2], cpu))[0])


def _tile(image: np.ndarray, h: int, w: int, label: str) -> np.ndarray:
    """``image`` fitted into an h x w white cell, with ``label`` under it."""
    cell = Image.new("RGB", (w, h + 18), "white")
    th, tw = fit_long_side(*image.shape[:2], max(h, w))
    if th > h or tw > w:
        th, tw = (h, max(1, round(image.shape[1] * h / image.shape[0]))) if th > h else \
            (max(1, round(image.shape[0] * w / image.shape[1])), w)
    small = resize(np.clip(image[..., :3], 0, 1), th, tw)
    cell.paste(Image.fromarray((np.clip(small, 0, 1) * 255 + 0.5).astype(np.uint8)), ((w - tw) // 2, (h - th) // 2))
    ImageDraw.Draw(cell).text((4, h + 2), label, fill=(0, 0, 0), font=ImageFont.load_default(size=13))
    return np.asarray(cell)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--content", default="sample:astronaut")
    ap.add_argument("--a", default=str(STYLES / "starry_night.jpg"), help="style of the coarse scale(s)")
    ap.add_argument("--b", default=str(STYLES / "composition_vii.jpg"), help="style of the last scale")
    ap.add_argument("--scales", type=_ints, default=(128, 256))
    ap.add_argument("--scale-steps", type=_ints, default=(100, 50))
    ap.add_argument("--style-weight", type=float, default=1.0)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default=str(ROOT / "docs" / "scale_control.png"))
    args = ap.parse_args(argv)
    final = args.scales[-1]
    content = load(args.content, "--content", max_side=final, exact=True)[..., :3]
    a, b = (load(p, "style", max_side=final)[..., :3] for p in (args.a, args.b))
    cfg = StyleConfig(scales=args.scales, scale_steps=args.scale_steps, style_weight=args.style_weight,
                      device=args.device)
    n = len(args.scales)
    runs: dict[str, np.ndarray] = {}
    for name, styles, per_scale in (("A", [a], []), ("B", [b], []), ("mix", [], [a] * (n - 1) + [b])):
        t = time.perf_counter()
        runs[name] = stylize(content, styles, cfg, scale_styles=per_scale).image
        print(f"{name}: {time.perf_counter() - t:.0f} s", flush=True)
    h, w = runs["A"].shape[:2]
    thumb = {k: resize(v, 8, 8) for k, v in runs.items()}
    for name, image in runs.items():
        print(f"{name}: Gram loss vs B {_gram_loss(image, b, cfg):.3g}; 8x8 px thumbnail off A's run by "
              f"{np.abs(thumb[name] - thumb['A']).mean() * 255:.1f}/255, off B's by "
              f"{np.abs(thumb[name] - thumb['B']).mean() * 255:.1f}/255")
    sizes = ",".join(map(str, args.scales))
    top = [_tile(content, h, w, "content"), _tile(a, h, w, "style A"), _tile(b, h, w, "style B")]
    bottom = [_tile(runs["A"], h, w, f"A at {sizes}"), _tile(runs["B"], h, w, f"B at {sizes}"),
              _tile(runs["mix"], h, w, f"A coarse, B at {final} px")]
    gap = np.full((top[0].shape[0], 6, 3), 255, np.uint8)

    def row(cells: list[np.ndarray]) -> np.ndarray:
        return np.concatenate([cells[0], gap, cells[1], gap, cells[2]], axis=1)

    sheet = np.concatenate([row(top), row(bottom)], axis=0)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(sheet).save(args.out, optimize=True)
    print(f"wrote {args.out} ({sheet.shape[1]}x{sheet.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
