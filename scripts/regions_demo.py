"""The README's spatial-control picture (issue #12): one photo, two regions, two paintings.

    nice -n 5 .venv/bin/python scripts/regions_demo.py [--size 256] [--steps 300] [-o docs/regions.png]

The photo is scikit-image's ``rocket`` (shipped with the package); the sky mask is made by a
colour threshold (bright, bluish pixels in the upper part, softened) exactly as
``bench/bench_regions.py --masks sky`` makes it; the paintings come from ``../shared/images/styles``
(never copied into the repository: only this picture is). The sheet shows: the photo, the sky
mask, painting 1 (sky), painting 2 (the rest), the region result, and one painting everywhere.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_regions import make_masks  # noqa: E402

from nst_engine.api import stylize  # noqa: E402
from nst_engine.config import StyleConfig  # noqa: E402
from nst_engine.regions import Region  # noqa: E402
from nst_engine.samples import load  # noqa: E402

STYLES = ROOT.parent / "shared" / "images" / "styles"


def tile(image: np.ndarray, height: int, label: str) -> Image.Image:
    a = np.clip(image, 0.0, 1.0)
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=2)
    im = Image.fromarray((a[..., :3] * 255 + 0.5).astype(np.uint8))
    im = im.resize((max(1, round(im.width * height / im.height)), height), Image.Resampling.LANCZOS)
    out = Image.new("RGB", (im.width, height + 18), "white")
    out.paste(im, (0, 18))
    ImageDraw.Draw(out).text((4, 3), label, fill="black")
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--sky", default="starry_night")
    ap.add_argument("--rest", default="composition_vii")
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "regions.png"))
    args = ap.parse_args()

    photo = load("sample:rocket", "content", max_side=args.size, exact=True)
    sky, rest, kind = make_masks(photo, "sky", soft=2.0)
    s1 = load(str(STYLES / f"{args.sky}.jpg"), "style", max_side=512)
    s2 = load(str(STYLES / f"{args.rest}.jpg"), "style", max_side=512)
    cfg = StyleConfig(size=args.size, steps=args.steps, seed=0)
    regions = [Region(sky, s1, argument="sky"), Region(rest, s2, argument="rest")]
    both = stylize(photo, [], cfg, regions=regions).image
    one = stylize(photo, [s1], cfg).image
    h = 200
    tiles = [tile(photo, h, "photo (skimage rocket)"), tile(sky, h, f"mask: {kind}"), tile(s1, h, args.sky),
             tile(s2, h, args.rest), tile(both, h, "two regions"), tile(one, h, f"{args.sky} everywhere")]
    sheet = Image.new("RGB", (sum(t.width for t in tiles) + 4 * (len(tiles) - 1), tiles[0].height), "white")
    x = 0
    for t in tiles:
        sheet.paste(t, (x, 0))
        x += t.width + 4
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheet.save(args.output, optimize=True)
    print(f"wrote {args.output} ({sheet.width}x{sheet.height}); mask {kind}: {float(sky.mean()):.0%} of the photo")


if __name__ == "__main__":
    main()
