"""The memory planner's estimate against the measured peak (CPU: peak RSS growth of the run).

    .venv/bin/python bench/bench_memory.py --size 768 --steps 3 [--tile 256] [--max-memory GIB]

Prints the measured peak memory of one `stylize` run (after the weights are loaded) beside
`nst_engine.plan.estimate_bytes` for the scale the planner chose (L-BFGS history, tiles).
"""
from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.encoders.weights import get_encoder
from nst_engine.plan import make_plan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=3)
    ap.add_argument("--tile", type=int, default=0)
    ap.add_argument("--max-memory", type=float, default=0.0)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    content = rng.random((args.size, args.size, 3), dtype=np.float32)
    style = rng.random((256, 256, 3), dtype=np.float32)
    cfg = StyleConfig(size=args.size, steps=args.steps, style_scale=256 / args.size, tile=args.tile,
                      max_memory=args.max_memory, scales=(args.size,))
    (sc,) = make_plan((args.size, args.size), args.size, args.steps, "relu5_1", torch.device("cpu"),
                      scales=(args.size,), max_memory_gib=args.max_memory, tile=args.tile)
    get_encoder("caffe", "relu5_1", "max", torch.device("cpu"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t0 = time.perf_counter()
    r = stylize(content, [style], cfg)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(f"{args.size}x{args.size}, tile {sc.tile or 'none'}, L-BFGS history {sc.history}: measured peak growth "
          f"{(peak - base) / 2**30:.2f} GiB, estimate {sc.bytes / 2**30:.2f} GiB; "
          f"{r.seconds / max(1, r.steps):.1f} s/step, {time.perf_counter() - t0:.1f} s in all")


if __name__ == "__main__":
    main()
