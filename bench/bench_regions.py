"""Spatial control (issue #12): region fidelity and the cost of a step with regions.

    nice -n 19 .venv/bin/python bench/bench_regions.py --size 256 --steps 60 --photos kodak_21,kodak_22

For each Kodak photo (``../shared/images/content/kodak_NN.png``) the script makes two soft masks
(``--masks halves``: top/bottom; ``sky``: bright, bluish pixels of the upper image versus the rest,
falling back to halves when that is under 10 % or over 90 % of the image), and paints region 1 in
painting 1 and region 2 in painting 2 (default starry_night.jpg, great_wave.jpg from
``../shared/images/styles``). It prints, for each region k, the plain Gram style loss (the
engine's 10/C²·mse per layer, summed over the style layers) of the output's features under the
region's (hard) mask against painting k and against the other painting, and their ratio
(other/own: > 1 means the region looks more like its own painting). The same numbers for a
single-style run with painting 1 everywhere are the baseline. Last, seconds per step of the region
run against the single-style run at the same size: the fastest of the long run and ``--repeat``
interleaved runs of ``--time-steps`` each (target ≤ 1.3×).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from nst_engine.api import select_device, stylize  # noqa: E402
from nst_engine.config import StyleConfig  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, to_tensor  # noqa: E402
from nst_engine.losses import STYLE_SCALE  # noqa: E402
from nst_engine.ops import gram  # noqa: E402
from nst_engine.regions import Region, guided_gram, layer_guidance, resize_mask  # noqa: E402
from nst_engine.samples import load  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "images"
LAYERS = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")


def make_masks(photo: np.ndarray, kind: str, soft: float) -> tuple[np.ndarray, np.ndarray, str]:
    """Two complementary soft masks for ``photo`` (HxWx3 0..1) and what they are."""
    from scipy.ndimage import gaussian_filter

    h, w = photo.shape[:2]
    name = "halves"
    top = (np.arange(h)[:, None] < h / 2).repeat(w, axis=1).astype(np.float32)
    if kind == "sky":
        lum = photo.mean(axis=2)
        bluish = photo[..., 2] >= photo[..., 0]
        upper = (np.arange(h)[:, None] < 0.6 * h).repeat(w, axis=1)
        sky = (lum > np.percentile(lum, 40)) & bluish & upper
        if 0.1 <= sky.mean() <= 0.9:
            top, name = sky.astype(np.float32), "sky"
    first = np.clip(gaussian_filter(top, soft), 0.0, 1.0).astype(np.float32) if soft else top
    return first, (1.0 - first).astype(np.float32), name


@torch.no_grad()
def style_loss(enc: torch.nn.Module, image: np.ndarray, mask: np.ndarray | None, target: dict[str, torch.Tensor],
               device: torch.device) -> float:
    """Σ over LAYERS of 10/C²·mse(G, A): G the Gram of ``image``'s features under ``mask`` (None: all)."""
    x = to_tensor(image, None, device)
    feats = enc(x, LAYERS)
    total = 0.0
    for n in LAYERS:
        f = feats[n]
        if mask is None:
            g = gram(f)
        else:
            stride = enc.geometry(n).stride
            m = resize_mask(mask, image.shape[:2], device)
            g = guided_gram(f, layer_guidance(m, stride, (int(f.shape[-2]), int(f.shape[-1]))))
        total += float(STYLE_SCALE / g.shape[0] ** 2 * torch.nn.functional.mse_loss(g, target[n]))
    return total


@torch.no_grad()
def style_grams(enc: torch.nn.Module, style: np.ndarray, size: int, device: torch.device) -> dict[str, torch.Tensor]:
    t = to_tensor(style, fit_long_side(style.shape[0], style.shape[1], size), device)
    feats = enc(t, LAYERS)
    return {n: gram(feats[n]) for n in LAYERS}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--photos", default="kodak_21,kodak_22", help="names in ../shared/images/content")
    ap.add_argument("--styles", default="starry_night.jpg,great_wave.jpg", help="two files in ../shared/images/styles")
    ap.add_argument("--masks", choices=("halves", "sky"), default="sky")
    ap.add_argument("--soft", type=float, default=3.0, help="mask edge blur sigma in px at --size (0: hard)")
    ap.add_argument("--style-weight", type=float, default=1.0)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--precision", default="fp32")
    ap.add_argument("--time-steps", type=int, default=10, help="steps of each short timing run")
    ap.add_argument("--repeat", type=int, default=3, help="short timing runs of each kind per photo")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    device = select_device(args.device)
    s1, s2 = (load(str(SHARED / "styles" / n), "--styles", max_side=args.size) for n in args.styles.split(","))
    cfg = StyleConfig(size=args.size, steps=args.steps, device=args.device, precision=args.precision,
                      style_weight=args.style_weight)
    enc = get_encoder("caffe", "relu5_1", "max", device)
    targets = [style_grams(enc, s[..., :3], args.size, device) for s in (s1, s2)]
    print(f"size {args.size}, {args.steps} steps, styles {args.styles}, masks {args.masks} (soft {args.soft} px), "
          f"device {device}, precision {args.precision}, threads {torch.get_num_threads()}")
    print(f"{'photo':9s} {'run':7s} {'region':12s} {'L(own)':>9s} {'L(other)':>9s} {'other/own':>9s}")
    timing = []
    for name in args.photos.split(","):
        photo = load(str(SHARED / "content" / f"{name}.png"), "--photos", max_side=args.size)[..., :3]
        shape = fit_long_side(photo.shape[0], photo.shape[1], args.size)
        from skimage.transform import resize

        small = resize(photo, shape, anti_aliasing=True).astype(np.float32)
        m1, m2, what = make_masks(small, args.masks, args.soft)
        regional = stylize(photo, [], cfg, regions=[Region(m1, s1), Region(m2, s2)])
        single = stylize(photo, [s1], cfg)
        for run, result in (("regions", regional), ("single", single)):
            for k, (m, own, other) in enumerate(((m1, 0, 1), (m2, 1, 0))):
                hard = (m > 0.5).astype(np.float32)
                lo = style_loss(enc, result.image, hard, targets[own], device)
                lx = style_loss(enc, result.image, hard, targets[other], device)
                label = f"{k + 1} {what}" + (f" ({hard.mean():.0%})" if k == 0 else "")
                print(f"{name:9s} {run:7s} {label:12s} {lo:9.3g} {lx:9.3g} {lx / lo:9.2f}", flush=True)
        # Seconds per step: the fastest of the long run and --repeat short runs of each, interleaved
        # (the machine is shared: the minimum is the least disturbed).
        per_r, per_s = [regional.seconds / max(1, regional.steps)], [single.seconds / max(1, single.steps)]
        short = cfg.replace(steps=args.time_steps)
        for _ in range(args.repeat):
            r = stylize(photo, [], short, regions=[Region(m1, s1), Region(m2, s2)])
            per_r.append(r.seconds / max(1, r.steps))
            r = stylize(photo, [s1], short)
            per_s.append(r.seconds / max(1, r.steps))
        timing.append((name, min(per_r), min(per_s), float(np.median(per_r)), float(np.median(per_s))))
    print(f"{'photo':9s} {'s/step regions':>15s} {'s/step single':>14s} {'ratio':>6s}  (min; median ratio)")
    for name, rmin, smin, rmed, smed in timing:
        print(f"{name:9s} {rmin:15.3f} {smin:14.3f} {rmin / smin:6.2f}  ({rmed / smed:.2f})")


if __name__ == "__main__":
    main()
