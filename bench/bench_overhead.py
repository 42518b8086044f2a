"""Where an optimizer step's time goes: the bare VGG pass against the whole step.

    .venv/bin/python bench/bench_overhead.py [--size 256] [--steps 30] [--precision auto] [--profile]

Runs the engine (`nst_engine.stylize`, L-BFGS, one loss+gradient evaluation a step) on
kodak_23 with starry_night (scikit-image's astronaut and the shipped swirls style without
../shared) and times every step from the progress callback. Beside it, the floor: a bare
forward+backward of the same VGG-19 to the deepest loss layer in the same precision (input
gradient only, frozen weights, no losses). Prints per-step medians and the overhead (losses,
Grams, L-BFGS, callback, bookkeeping) as the difference. ``--profile`` adds torch.profiler's
top operators by self CPU time over the timed steps.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig, stylize  # noqa: E402
from nst_engine.encoders.vgg import deepest, precision, resolve_precision  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.progress import Progress  # noqa: E402
from nst_engine.samples import load  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"


def _inputs(size: int) -> tuple[np.ndarray, np.ndarray]:
    from skimage.transform import resize

    content_file, style_file = SHARED / "content" / "kodak_23.png", SHARED / "styles" / "starry_night.jpg"
    content = load(str(content_file) if content_file.is_file() else "sample:astronaut", "content")[..., :3]
    style = load(str(style_file) if style_file.is_file() else "style:swirls", "style")[..., :3]
    h, w = content.shape[:2]
    s = size / max(h, w)
    return resize(content, (round(h * s), round(w * s)), anti_aliasing=True).astype(np.float32), style


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--profile", action="store_true")
    args = ap.parse_args(argv)
    content, style = _inputs(args.size)
    cfg = StyleConfig(size=args.size, steps=args.steps, precision=args.precision, device="cpu")
    stamps: list[float] = []
    stylize(content, [style], StyleConfig(size=64, steps=3, device="cpu"))  # warm the caches

    def tick(p: Progress) -> None:
        stamps.append(time.perf_counter())

    prof = None
    if args.profile:
        from torch.profiler import ProfilerActivity, profile

        prof = profile(activities=[ProfilerActivity.CPU])
        prof.__enter__()
    stylize(content, [style], cfg, callback=tick)
    if prof is not None:
        prof.__exit__(None, None, None)
    steps = np.diff(stamps)[5:]  # past the fp32 warm-up steps of the hybrid
    mode = resolve_precision(args.precision, torch.device("cpu"))

    enc = get_encoder("caffe", deepest([*cfg.content_layers, *cfg.style_layers]), "max", torch.device("cpu"))
    layers = [*cfg.content_layers, *cfg.style_layers]
    h, w = content.shape[:2]
    x = torch.rand(1, 3, h, w) * 255

    def bare() -> float:
        t = time.perf_counter()
        xx = x.detach().requires_grad_()
        feats = enc(xx, layers)
        sum((f.float() ** 2).mean() for f in feats.values()).backward()
        return time.perf_counter() - t

    with precision(mode, torch.device("cpu")):
        floors = [bare() for _ in range(3 + 8)][3:]
    step, floor = statistics.median(steps), statistics.median(floors)
    print(f"{w}x{h}, {args.steps} steps, precision {mode}, {torch.get_num_threads()} threads")
    print(f"  whole step      {1000 * step:7.1f} ms (median of {len(steps)})")
    print(f"  bare VGG f+b    {1000 * floor:7.1f} ms (to {deepest(layers)}, median of {len(floors)})")
    print(f"  overhead        {1000 * (step - floor):7.1f} ms ({100 * (step - floor) / step:.0f} % of a step)")
    if prof is not None:
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=18))
    return 0


if __name__ == "__main__":
    sys.exit(main())
