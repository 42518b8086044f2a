"""One training step of the light feed-forward net (forward, perceptual loss, backward, Adam), timed.

    .venv/bin/python bench/bench_train_step.py [--deepest relu4_1] [--batch 4] [--crop 128]
        [--content relu2_2] [--channels-last] [--threads 2] [--steps 6]

The figures behind `nst train`'s CPU recipe: the loss network cut at relu4_1 vs relu5_1, content
at relu2_2 vs relu3_1, channels_last, 4x128 vs 2x256 crops. Prints the median of the steps after
the first (a warm-up). Run it alone: two jobs on 2 cores slow both several times.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from export.network import NetSpec, TransformerNet  # noqa: E402
from export.train import BatchGramLoss  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402

STYLE_LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--deepest", default="relu4_1", choices=("relu4_1", "relu5_1"))
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--crop", type=int, default=128)
    ap.add_argument("--content", default="relu2_2")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=6)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dev = torch.device("cpu")
    layers = STYLE_LAYERS[: STYLE_LAYERS.index(args.deepest) + 1]
    enc = get_encoder("caffe", args.deepest, "max", dev)
    style = torch.rand(1, 3, 256, 256, generator=torch.Generator().manual_seed(0)) * 255
    style_loss = [BatchGramLoss(t) for t in style_terms(enc, [style], (), layers, (), 1.0)]
    net = TransformerNet(NetSpec.of("light"))
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    enc = enc.to(memory_format=fmt)
    opt = torch.optim.Adam(net.parameters(), 1e-3)
    times = []
    for _ in range(args.steps):
        t = time.perf_counter()
        x = torch.rand(args.batch, 3, args.crop, args.crop).contiguous(memory_format=fmt)
        y = net(x)
        content = content_terms(enc, x * 255, [args.content], (), 1000.0)
        total, _ = Objective(enc, content=content, style=style_loss)(y * 255)
        opt.zero_grad()
        total.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    print(f"light net, {args.batch}x{args.crop} px, loss to {args.deepest}, content {args.content}, "
          f"{'channels_last' if args.channels_last else 'NCHW'}, {args.threads} threads: "
          f"median {statistics.median(times[1:]):.3f} s/step ({args.steps - 1} steps)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
