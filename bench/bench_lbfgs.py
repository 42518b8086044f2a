"""The engine's L-BFGS (first step ``lbfgs.FIRST_STEP``, steps capped at ``lbfgs.MAX_STEP``) vs
torch's (first step min(1, 1/‖g‖₁), no cap), A/B.

    .venv/bin/python bench/bench_lbfgs.py --size 256 --steps 40 \
        --content ../shared/images/content/kodak_01.png ../shared/images/content/kodak_07.png \
        --style ../shared/images/styles/starry_night.jpg ../shared/images/styles/great_wave.jpg

For every content × style × start (the content photo, and seeded noise as ``--init noise`` draws
it), runs the engine's stepper (`optim.PixelOptimizer`, one loss+gradient evaluation per step, no
line search) from the same start once per variant: ``torch`` (neither departure), ``engine``
(both), ``cap`` (the cap only), ``first`` (the first step only). Prints each final loss over
torch's (below 1: better) and each run's spike: the highest loss of steps 2-6 over the starting
loss (a blow-up shows as ≫ 1). Defaults use the embedded samples and styles, so it runs
without ../shared.
"""
from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig  # noqa: E402
from nst_engine.api import _noise  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, to_tensor  # noqa: E402
from nst_engine.lbfgs import FIRST_STEP, MAX_STEP  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402
from nst_engine.optim import PixelOptimizer  # noqa: E402
from nst_engine.samples import load  # noqa: E402


VARIANTS = {"torch": (None, None), "engine": (MAX_STEP, FIRST_STEP), "cap": (MAX_STEP, None),
            "first": (None, FIRST_STEP)}


def run(x0: torch.Tensor, obj: Objective, steps: int, variant: str) -> list[float]:
    opt = PixelOptimizer(x0, obj, "lbfgs", 1.0)
    assert opt.lbfgs is not None
    opt.lbfgs.max_step, opt.lbfgs.first_step = VARIANTS[variant]
    losses = []
    for _ in range(steps):
        total, _ = opt.step()
        losses.append(float(total))
    return losses


def name(spec: str) -> str:
    return Path(spec.split(":")[-1]).stem[:16]


def spike(losses: list[float]) -> float:
    return max(losses[1:6]) / losses[0]  # losses[0]: at the start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=40)
    ap.add_argument("--content", nargs="+", default=["sample:astronaut", "sample:chelsea"])
    ap.add_argument("--style", nargs="+", default=["style:swirls", "style:mosaic"])
    ap.add_argument("--init", nargs="+", default=["content", "noise"], choices=["content", "noise"])
    ap.add_argument("--variants", nargs="+", default=["engine"], choices=[v for v in VARIANTS if v != "torch"])
    args = ap.parse_args()
    torch.manual_seed(0)
    dev = torch.device("cpu")
    cfg = StyleConfig(size=args.size, steps=args.steps, device="cpu")
    enc = get_encoder(cfg.weights, "relu5_1", cfg.pooling, dev)
    print(f"size={args.size} steps={args.steps} cap={MAX_STEP} first={FIRST_STEP} threads={torch.get_num_threads()}")
    print(f"{'content':>14} {'style':>16} {'init':>7} {'torch':>10} "
          + " ".join(f"{v + '/torch':>12}" for v in args.variants)
          + " spikes " + " ".join(["torch", *args.variants]))
    ratios: dict[str, list[float]] = {v: [] for v in args.variants}
    for cspec in args.content:
        img = load(cspec, "content", max_side=args.size)[..., :3]
        c_t = to_tensor(img, fit_long_side(*img.shape[:2], args.size), dev)
        for sspec in args.style:
            s_img = load(sspec, "style", max_side=args.size)[..., :3]
            s_t = to_tensor(s_img, fit_long_side(*s_img.shape[:2], args.size), dev)
            obj = Objective(enc, content_terms(enc, c_t, cfg.content_layers, (), 1.0),
                            style_terms(enc, [s_t], (), cfg.style_layers, (), 1.0))
            for init in args.init:
                gen = torch.Generator().manual_seed(cfg.seed)
                x0 = c_t if init == "content" else _noise(tuple(c_t.shape[2:]), cfg, gen, dev)  # type: ignore[arg-type]
                ref = run(x0, obj, args.steps, "torch")
                runs = {v: run(x0, obj, args.steps, v) for v in args.variants}
                for v, losses in runs.items():
                    ratios[v].append(losses[-1] / ref[-1] if math.isfinite(ref[-1]) else 0.0)
                print(f"{name(cspec):>14} {name(sspec):>16} {init:>7} {ref[-1]:10.3e} "
                      + " ".join(f"{ratios[v][-1]:12.3f}" for v in args.variants) + " "
                      + " ".join(f"{spike(r):.3g}" for r in (ref, *runs.values())))
    for v, r in ratios.items():
        print(f"final loss {v}/torch: median {statistics.median(r):.3f}, range {min(r):.3f}-{max(r):.3f} "
              f"over {len(r)} runs")


if __name__ == "__main__":
    main()
