"""Is native bf16 faster than fp32 for VGG-sized 3x3 convolutions on this CPU (issue #14)?

    .venv/bin/python bench/bench_conv_bf16.py [--threads 2] [--repeat 10]

One 3x3 convolution (stride 1, padding 1, no bias) forward plus the gradient with respect to its
input — what one L-BFGS step asks of each VGG-19 layer with frozen weights — at the shapes of VGG's
blocks for a 256 px image (64 ch at 256², 128 at 128², 256 at 64², 512 at 32²), in fp32 and in
pure bf16 (bf16 tensors and weights, no autocast and so no casts inside the timing), each in
NCHW and channels_last. Milliseconds, best of ``--repeat`` after 3 warm-up runs. Where bf16 is not
clearly faster here even without any cast, no hybrid or autocast scheme can make a step 2x faster.
"""
from __future__ import annotations

import argparse
import time

import torch


def bench(dtype: torch.dtype, channels_last: bool, c: int, side: int, repeat: int) -> float:
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(1, c, side, side, dtype=dtype).to(memory_format=fmt).requires_grad_()
    w = (torch.randn(c, c, 3, 3, dtype=dtype) * 0.05).to(memory_format=fmt)
    best = float("inf")
    for i in range(repeat + 3):
        t0 = time.perf_counter()
        y = torch.nn.functional.conv2d(x, w, padding=1)
        (g,) = torch.autograd.grad(y.sum(), x)
        if i >= 3:
            best = min(best, time.perf_counter() - t0)
    return best * 1e3


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads; ms for conv forward + input gradient")
    print("| channels x side | fp32 | fp32 channels_last | bf16 | bf16 channels_last | best bf16 / best fp32 |")
    print("|---|---|---|---|---|---|")
    for c, side in ((64, 256), (128, 128), (256, 64), (512, 32)):
        t = [bench(dt, cl, c, side, args.repeat) for dt in (torch.float32, torch.bfloat16) for cl in (False, True)]
        print(f"| {c} x {side}² | {t[0]:.1f} | {t[1]:.1f} | {t[2]:.1f} | {t[3]:.1f} | {min(t[2:]) / min(t[:2]):.2f} |")


if __name__ == "__main__":
    main()
