"""Does a coarse-to-fine schedule below 1024 px reach the single-scale loss sooner?

    .venv/bin/python bench/bench_schedule.py [--size 512] [--content kodak_23] [--style starry_night]
        [--runs "512:200;256,512:300,100;256,512:200,50"] [--every 25] [--plot FILE.png]

Each run is ``SCALES:STEPS`` (as ``--scales``/``--scale-steps``). Every ``--every`` steps the
current image is upsampled to the final size and scored under the fp32 loss at that size (the
scoring time is not counted), so the runs are compared on one loss against wall-clock seconds.
Prints each run's final loss, seconds, and the seconds it took to reach the single-scale run's
final loss; ``--plot`` draws loss against seconds.

``--pastiche STEPS`` puts pastiche (PyPI; L-BFGS, one evaluation a step, content and style at the
final size as in bench_optimizer.py) first, scored the same way every ``--every`` steps: the
other runs are then measured against its final loss (issue #14: the engine's default schedule
should reach pastiche's 500-step loss in a third of pastiche's time).
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig, stylize  # noqa: E402
from nst_engine.encoders.vgg import deepest, describe_precision, precision  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, to_tensor  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402
from nst_engine.optim import evaluate  # noqa: E402
from nst_engine.progress import Progress  # noqa: E402
from nst_engine.samples import load  # noqa: E402

SHARED = ROOT.parent / "shared" / "images"


def _image(name: str, folder: str) -> np.ndarray:
    for cand in (SHARED / folder / f"{name}.png", SHARED / folder / f"{name}.jpg", Path(name)):
        if cand.is_file():
            return load(str(cand), folder)[..., :3]
    return load(name, folder)[..., :3]


def _pastiche_curve(content: np.ndarray, style: np.ndarray, shape: tuple[int, int], args: argparse.Namespace,
                    score: Callable[[np.ndarray], float]) -> list[tuple[float, float]]:
    """pastiche for ``args.pastiche`` steps: (seconds, loss) every ``args.every`` steps (scoring not timed)."""
    import tempfile

    import pastiche.pastiche as P
    from PIL import Image
    from skimage.transform import resize

    with tempfile.TemporaryDirectory() as tmp:
        files = []
        for img, size, name in ((content, shape, "content.png"),
                                (style, fit_long_side(*style.shape[:2], args.size), "style.png")):
            a = (resize(img, size, anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
            Image.fromarray(a).save(Path(tmp) / name)
            files.append(str(Path(tmp) / name))
        artist = P.PasticheArtist(files[0], [files[1]], device="cpu", size=args.size, style_size=args.size)
    mean = torch.tensor(P.VGG_MEAN).view(1, 3, 1, 1)

    def image() -> np.ndarray:
        rgb = ((artist.pastiche.detach() + mean).flip(1).clamp(0, 255) / 255)[0].permute(1, 2, 0)
        return rgb.numpy()

    points: list[tuple[float, float]] = []
    seconds = 0.0
    for step in range(1, args.pastiche + 1):
        t = time.perf_counter()
        artist.draw()
        seconds += time.perf_counter() - t
        if step % args.every == 0 or step == args.pastiche:
            points.append((seconds, score(image())))
    return points


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--content", default="kodak_23")
    ap.add_argument("--style", default="starry_night")
    ap.add_argument("--runs", default="512:200;256,512:300,100;256,512:200,50")
    ap.add_argument("--every", type=int, default=25)
    ap.add_argument("--plot", default="")
    ap.add_argument("--pastiche", type=int, default=0, help="run pastiche for this many steps first (the reference)")
    args = ap.parse_args(argv)
    dev = torch.device("cpu")
    content, style = _image(args.content, "content"), _image(args.style, "styles")
    base = StyleConfig(size=args.size, device="cpu")
    enc = get_encoder("caffe", deepest([*base.content_layers, *base.style_layers]), "max", dev)
    shape = fit_long_side(*content.shape[:2], args.size)
    c_t = to_tensor(content, shape, dev)
    s_t = to_tensor(style, fit_long_side(*style.shape[:2], args.size), dev)
    obj = Objective(enc, content_terms(enc, c_t, base.content_layers, (), base.content_weight),
                    style_terms(enc, [s_t], (), base.style_layers, (), base.style_weight))

    def score(img: np.ndarray) -> float:
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None] * 255
        if x.shape[2:] != c_t.shape[2:]:
            x = torch.nn.functional.interpolate(x, size=c_t.shape[2:], mode="bicubic", align_corners=False)
        with precision("fp32", dev):
            return float(evaluate(x.clamp(0, 255), obj)[0])

    print(f"{args.content} in the manner of {args.style}, {shape[1]}x{shape[0]}, precision "
          f"{describe_precision('auto', dev)}; loss scored in fp32 at the final size")
    curves: dict[str, list[tuple[float, float]]] = {}
    if args.pastiche:
        curves[f"pastiche {args.size}:{args.pastiche}"] = _pastiche_curve(content, style, shape, args, score)
    for spec in args.runs.split(";"):
        scales_s, steps_s = spec.split(":")
        scales = tuple(int(v) for v in scales_s.split(","))
        steps = tuple(int(v) for v in steps_s.split(","))
        cfg = base.replace(scales=scales if len(scales) > 1 else (), scale_steps=steps if len(scales) > 1 else (),
                           steps=sum(steps), save_every=args.every)
        points: list[tuple[float, float]] = []
        paused = 0.0
        t0 = time.perf_counter()

        def keep(p: Progress, points: list[tuple[float, float]] = points, t0: float = t0) -> None:
            nonlocal paused
            if p.snapshot is None:
                return
            t = time.perf_counter()
            points.append((t - t0 - paused, score(p.snapshot)))
            paused += time.perf_counter() - t

        result = stylize(content, [style], cfg, callback=keep)
        total = time.perf_counter() - t0 - paused
        points.append((total, score(result.image)))
        curves[spec] = points
    ref = curves[next(iter(curves))][-1][1]
    print(f"{'run (scales:steps)':28s} {'final loss':>11s} {'/ first':>8s} {'seconds':>8s} {'s to first run final':>21s}")
    for spec, pts in curves.items():
        reach = next((t for t, v in pts if v <= ref), None)
        reach_s = f"{reach:.0f}" if reach is not None else "not reached"
        print(f"{spec:28s} {pts[-1][1]:11.4g} {pts[-1][1] / ref:8.3f} {pts[-1][0]:8.0f} {reach_s:>21s}")
    if args.plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 4))
        for spec, pts in curves.items():
            ax.plot(*zip(*pts, strict=True), marker=".", label=spec)
        ax.set_yscale("log")
        ax.set_xlabel("seconds (scoring excluded)")
        ax.set_ylabel(f"loss at {args.size} px (fp32)")
        ax.set_title(f"{args.content} / {args.style}: single scale vs coarse-to-fine")
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.plot, dpi=100)
    return 0


if __name__ == "__main__":
    sys.exit(main())
