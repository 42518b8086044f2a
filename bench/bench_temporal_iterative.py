"""Video with temporal consistency (issue #13), iterative path: flicker against style, per frame.

    nice -n 5 .venv/bin/python bench/bench_temporal_iterative.py [--size 256x144] [--frames 8]
        [--steps 150] [--next-steps 75] [--weights 1,10] [--style ../shared/images/styles/starry_night.jpg]

The clip is `bench_temporal.py`'s synthetic pan (a photo panned 4 px right and 1 px down per frame,
a textured square moving over it: known flow and occlusions). Runs:

- ``none``: every frame painted from the photo with ``--steps`` steps (frame by frame);
- ``init``: frames after the first start from the previous result warped along DIS's flow
  (disocclusions from the frame itself), ``--next-steps`` steps, at one scale — what
  ``nst video --consistency temporal`` did before the temporal loss;
- ``loss W``: ``init`` plus Ruder et al.'s short-term temporal loss with weight W
  (`nst_engine.temporal_loss`), the mask from DIS's occlusion check.

Columns: the temporal warping error (Lai et al. 2018, mean |O_t − warp(O_{t−1})| over pixels
visible in both frames, known flow, /255, t ≥ 1) and its ratio to ``none`` (the issue's target
≤ 0.5); the style loss of each frame t ≥ 1 (the run's final Gram loss, the same style terms in
every run) as a ratio to ``none``'s, the median over frames (target ≤ 1.2); seconds per frame
(wall, this machine, t ≥ 1).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_temporal import Clip, load_photo, warp_error  # noqa: E402

from nst_engine.api import stylize  # noqa: E402
from nst_engine.config import StyleConfig  # noqa: E402
from nst_engine.image import write_image  # noqa: E402
from nst_engine.samples import load  # noqa: E402
from nst_engine.temporal import TemporalStylizer, warp  # noqa: E402
from nst_engine.temporal_loss import TemporalTarget  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"
INIT = Path(tempfile.gettempdir()) / f"nst-bench-init-{os.getpid()}.tif"


def paint_clip(clip: Clip, style: np.ndarray, steps: int, next_steps: int, mode: str, weight: float
               ) -> tuple[list[np.ndarray], list[float], float]:
    """(outputs, style loss per frame, wall s per frame t ≥ 1) of one run."""
    side = max(clip.w, clip.h)
    cfg = StyleConfig(size=side, steps=steps, scales=(side,), seed=0)
    flows = TemporalStylizer(lambda f: f, "temporal", 0.0, "medium")
    outs: list[np.ndarray] = []
    style_losses: list[float] = []
    t0 = 0.0
    for t, frame in enumerate(clip.frames):
        if t == 1:
            t0 = time.perf_counter()
        run, temporal = cfg, None
        if t and mode != "none":
            backward, mask = flows.flow_and_mask(clip.frames[t - 1], frame)
            warped = warp(outs[-1], backward)
            m = mask[..., None]
            init = np.clip(m * warped + (1 - m) * frame, 0.0, 1.0).astype(np.float32)
            write_image(INIT, init)
            run = cfg.replace(init=str(INIT), steps=next_steps)
            if mode == "loss":
                temporal = TemporalTarget(warped, mask, weight)
            result = stylize(frame, [style], run, temporal=temporal)
        else:
            result = stylize(frame, [style], run)
        outs.append(np.clip(result.image, 0.0, 1.0))
        style_losses.append(float(result.losses["style"]))
    return outs, style_losses, (time.perf_counter() - t0) / max(1, clip.n - 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="256x144")
    ap.add_argument("--frames", type=int, default=8)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--next-steps", type=int, default=75)
    ap.add_argument("--weights", default="1,10")
    ap.add_argument("--style", default=str(SHARED / "styles" / "starry_night.jpg"))
    ap.add_argument("--photo", default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    photo, name = load_photo(args.photo)
    clip = Clip(photo, w, h, args.frames, 1.0)
    style = load(args.style, "style", max_side=max(w, h))
    print(f"pan clip from {name}, {w}x{h}, {args.frames} frames; style {Path(args.style).stem}; "
          f"{args.steps} steps, then {args.next_steps}")
    runs = [("none", "none", 0.0), ("init", "init", 0.0)] + [
        (f"loss {v}", "loss", float(v)) for v in args.weights.split(",")]
    base_err = base_style = None
    print("| run | warp err /255 | × none | style loss / none's (median, t≥1) | s per frame |")
    print("|---|---|---|---|---|")
    for label, mode, weight in runs:
        steps_next = args.steps if mode == "none" else args.next_steps
        outs, styles, spf = paint_clip(clip, style, args.steps, steps_next, mode, weight)
        err = warp_error(outs, clip)
        base_err = base_err if base_err is not None else err
        base_style = base_style if base_style is not None else styles
        ratio = float(np.median([s / b for s, b in zip(styles[1:], base_style[1:], strict=True)]))
        print(f"| {label} | {err:.2f} | {err / base_err:.2f} | {ratio:.2f} | {spf:.1f} |", flush=True)


if __name__ == "__main__":
    main()
