"""Wall-clock frames per second of the model path of `nst video` (issue #13), flow included.

    .venv/bin/python bench/bench_video_fps.py [--model starry-night] [--size 512x288] [--frames 16] [--repeat 2]
        [--refine K]

`bench_temporal.py`'s synthetic pan rendered from scikit-image's ``coffee``; the model's session is
warmed first; then, ``--repeat`` times: every frame through the model alone (frame by frame), and
`nst_engine.temporal.stylize_frames` (DIS MEDIUM flow both ways, occlusion mask, warp, blend).
Frame decoding and encoding are not included. Run it with the machine otherwise idle.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_temporal import Clip  # noqa: E402

from nst_engine.models import stylize_model  # noqa: E402
from nst_engine.temporal import stylize_frames  # noqa: E402


def main() -> None:
    from skimage import data

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="starry-night")
    ap.add_argument("--size", default="512x288")
    ap.add_argument("--frames", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--refine", type=int, default=0, help="also time --blend 0.7 --refine-steps K (the model path's "
                                                         "optimizer refine, `temporal_loss.refine`)")
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    clip = Clip(data.coffee().astype(np.float32) / 255.0, w, h, args.frames, 1.0)
    stylize_model(clip.frames[0], args.model)
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for frame in clip.frames:
            stylize_model(frame, args.model)
        t1 = time.perf_counter()
        for _out in stylize_frames(clip.frames, args.model):
            pass
        t2 = time.perf_counter()
        n = clip.n
        print(f"{w}x{h}, {n} frames, {args.model}: frame by frame {n / (t1 - t0):.1f} fps, "
              f"temporal {n / (t2 - t1):.1f} fps (flow, mask, warp and blend: {1 - (t1 - t0) / (t2 - t1):.0%} of its time)")
        if args.refine:
            from nst_engine.models import load_model

            loss = load_model(args.model, "cpu").training
            t3 = time.perf_counter()
            for _out in stylize_frames(clip.frames, args.model, blend=0.7, refine_steps=args.refine, refine_loss=loss):
                pass
            print(f"  blend 0.7 + refine {args.refine}: {(time.perf_counter() - t3) / n:.2f} s a frame", flush=True)


if __name__ == "__main__":
    main()
