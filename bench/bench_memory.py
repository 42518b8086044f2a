"""The memory planner's estimate against the measured peak (CPU: peak RSS growth of the run).

    .venv/bin/python bench/bench_memory.py --size 768 --steps 3

Prints the measured peak memory of one `stylize` run (after the weights are loaded) beside
`nst_engine.plan.estimate_bytes` for the same shape and L-BFGS history.
"""
from __future__ import annotations

import argparse
import resource

import numpy as np
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.encoders.weights import get_encoder
from nst_engine.plan import estimate_bytes


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=768)
    ap.add_argument("--steps", type=int, default=3)
    args = ap.parse_args()
    rng = np.random.default_rng(0)
    content = rng.random((args.size, args.size, 3), dtype=np.float32)
    style = rng.random((256, 256, 3), dtype=np.float32)
    get_encoder("caffe", "relu5_1", "max", torch.device("cpu"))
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    stylize(content, [style], StyleConfig(size=args.size, steps=args.steps, style_scale=256 / args.size))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    est = estimate_bytes((args.size, args.size), "relu5_1", 100)
    print(f"{args.size}x{args.size}: measured peak growth {(peak - base) / 2**30:.2f} GiB, "
          f"estimate {est / 2**30:.2f} GiB (L-BFGS history 100, preallocated)")


if __name__ == "__main__":
    main()
