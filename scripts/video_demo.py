"""The README's video picture (issue #13): frame by frame beside temporal consistency, as a GIF.

    nice -n 5 .venv/bin/python scripts/video_demo.py [--model starry-night] [--size 256x160]
        [--frames 16] [-o docs/video_temporal.gif]

The clip is `bench/bench_temporal.py`'s synthetic camera pan (4 px right, 1 px down per frame)
with a textured square moving over it, rendered from scikit-image's ``coffee`` photo (shipped
with the package). Left: the shipped model on every frame alone (`--consistency none`); right:
`nst_engine.temporal.stylize_frames` (blend 0.5, DIS flow). The GIF plays at 8 fps, looping.
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

from bench_temporal import Clip, warp_error  # noqa: E402

from nst_engine.models import stylize_model  # noqa: E402
from nst_engine.temporal import stylize_frames  # noqa: E402


def main() -> None:
    from skimage import data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="starry-night")
    ap.add_argument("--size", default="256x160")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("-o", "--output", default=str(ROOT / "docs" / "video_temporal.gif"))
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    clip = Clip(data.coffee().astype(np.float32) / 255.0, w, h, args.frames, 1.0)
    alone = [stylize_model(f, args.model) for f in clip.frames]
    temporal = list(stylize_frames(clip.frames, args.model))
    e_alone, e_temporal = warp_error(alone, clip), warp_error(temporal, clip)
    sheets = []
    for a, b in zip(alone, temporal, strict=True):
        sheet = Image.new("RGB", (2 * w + 4, h + 16), "white")
        for x, img in ((0, a), (w + 4, b)):
            sheet.paste(Image.fromarray((np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)), (x, 16))
        draw = ImageDraw.Draw(sheet)
        draw.text((4, 2), f"frame by frame (warp error {e_alone:.1f}/255)", fill="black")
        draw.text((w + 8, 2), f"temporal (warp error {e_temporal:.1f}/255)", fill="black")
        sheets.append(sheet.quantize(colors=255, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    sheets[0].save(args.output, save_all=True, append_images=sheets[1:], duration=125, loop=0, optimize=True)
    size = Path(args.output).stat().st_size / 1e6
    print(f"wrote {args.output}: {len(sheets)} frames, {size:.2f} MB; warp error frame by frame {e_alone:.2f}, "
          f"temporal {e_temporal:.2f} (/255, known flow)")


if __name__ == "__main__":
    main()
