"""The feed-forward quality bar: a model's output against the iterative optimizer's.

    .venv/bin/python bench/bench_quality.py MODEL.onnx|NAME --style STYLE \\
        [--images ../shared/images/content] [--size 256] [--steps 200] [--every 3] [--save DIR]

For each photo (every 3rd of the Kodak 24 by default: 8 photos, at ``--size`` px long side) it
runs the model, and the iterative optimizer (L-BFGS) for ``--steps`` steps from the photo with
the loss the model was trained on (its metadata: content/style layers and weights, style size),
recording the optimizer's total loss at every step (``--init noise``: from noise instead, the
comparison of Johnson et al. 2016). Reported per photo:

- **equivalent steps**: the first optimizer step whose total loss is below the model output's
  (under that same loss, fp32): how many L-BFGS steps the one model pass is worth. The bar:
  median ≥ 30 (goal ≥ 100); ``>N`` when the optimizer never got there in ``--steps``;
- the content and style parts of both final outputs and their ratios (model / optimizer).

Prints one row per photo and the medians; exit code 1 if the median equivalent steps miss the bar.
``--save DIR`` writes both outputs of every photo and a contact sheet (photo, model, optimizer).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import threading
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig, stylize  # noqa: E402
from nst_engine.api import select_device  # noqa: E402
from nst_engine.encoders.vgg import deepest  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, read_image, to_tensor, write_image  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402
from nst_engine.models import load_model, stylize_model  # noqa: E402
from nst_engine.optim import evaluate  # noqa: E402
from nst_engine.progress import Progress  # noqa: E402
from nst_engine.samples import load  # noqa: E402

EQUIVALENT_BAR, EQUIVALENT_GOAL = 30, 100


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = fit_long_side(*img.shape[:2], size)
    return resize(img[..., :3], (h, w), anti_aliasing=True).astype(np.float32)


def equivalent_step(history: list[float], target: float) -> int | None:
    """The first step (1-based) whose loss is below ``target``, or None."""
    return next((i + 1 for i, v in enumerate(history) if v < target), None)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--style", required=True, help="the style image the model was trained on")
    ap.add_argument("--images", default=str(ROOT.parent / "shared" / "images" / "content"))
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--every", type=int, default=3, help="every Nth photo (sorted by name) [default: 3]")
    ap.add_argument("--limit", type=int, default=0, help="only the first N of those")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", default="", help="write both outputs of every photo here")
    ap.add_argument("--init", choices=("content", "noise"), default="content",
                    help="the optimizer's start image: the photo (the bar) or noise (as Johnson et al. 2016 "
                         "compared their models with 50-100 L-BFGS iterations) [default: content]")
    ap.add_argument("--stop-at-equivalent", action="store_true",
                    help="stop each optimizer run once it is below the model (the ratios are then at that step)")
    args = ap.parse_args(argv)

    info = load_model(args.model, "cpu")
    t = info.training
    content_layers = tuple(t.get("content_layers", ("relu2_2",)))
    style_layers = tuple(t.get("style_layers", StyleConfig().style_layers))
    cw, sw = float(t.get("content_weight", 1000.0)), float(t.get("style_weight", 1.0))
    style_size = int(t.get("style_size", 512))
    style = load(args.style, "--style")[..., :3]
    photos = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    photos = photos[:: max(1, args.every)]
    photos = photos[: args.limit] if args.limit else photos
    if not photos:
        print(f"no photos in {args.images}", file=sys.stderr)
        return 2
    dev = select_device(args.device)
    enc = get_encoder("caffe", deepest([*content_layers, *style_layers]), "max", dev)
    style_t = to_tensor(style, fit_long_side(*style.shape[:2], style_size), dev)
    style_part = style_terms(enc, [style_t], (), style_layers, (), sw)
    cfg = StyleConfig(size=args.size, steps=args.steps, content_layers=content_layers, style_layers=style_layers,
                      content_weight=cw, style_weight=sw, style_scale=style_size / args.size, device=args.device,
                      init=args.init)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)

    def score(img: np.ndarray, photo: np.ndarray) -> tuple[float, float]:
        c = to_tensor(photo, photo.shape[:2], dev)
        obj = Objective(enc, content_terms(enc, c, content_layers, (), cw), style_part)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(dev) * 255
        _, parts = evaluate(x, obj)
        return parts["content"], parts["style"]

    print(f"{Path(args.model).name} ({info.style_name}) vs up to {args.steps} optimizer steps from {args.init}, "
          f"{args.size} px, "
          f"content {','.join(content_layers)} x{cw:g}, style {','.join(style_layers)} x{sw:g} at {style_size} px, {dev}")
    print(f"{'photo':10} {'equiv':>6} {'model loss':>11} {'opt loss':>10} {'model c':>10} {'opt c':>10} {'c ratio':>7} "
          f"{'model s':>10} {'opt s':>10} {'s ratio':>7} {'@30/model':>9}")
    equivalents: list[float] = []
    c_ratios, s_ratios = [], []
    sheet: list[np.ndarray] = []
    for path in photos:
        photo = _resize(read_image(path, "photo"), args.size)
        y_model = stylize_model(photo, args.model, device="cpu" if dev.type == "cpu" else "auto", model_size=0)
        mc, ms = score(y_model, photo)
        model_total = mc + ms
        stop = threading.Event()

        def below(p: Progress, target: float = model_total, flag: threading.Event = stop) -> None:
            if args.stop_at_equivalent and p.loss < target:
                flag.set()

        result = stylize(photo, [style], cfg, callback=below, stop=stop)
        y_opt = result.image
        oc, os_ = score(y_opt, photo)
        eq = equivalent_step(result.history, model_total)
        # No step of --steps reached the model: count it as --steps + 1 for the median (a lower bound).
        equivalents.append(float(eq) if eq is not None else float(args.steps + 1))
        c_ratios.append(mc / oc)
        s_ratios.append(ms / os_)
        # How far the model is from the bar: the optimizer's loss at step 30 over the model's (< 1: short).
        at30 = result.history[EQUIVALENT_BAR - 1] / model_total if len(result.history) >= EQUIVALENT_BAR else float("nan")
        eq_text = str(eq) if eq is not None else f">{args.steps}"
        print(f"{path.stem:10} {eq_text:>6} {model_total:11.4g} {oc + os_:10.4g} {mc:10.4g} {oc:10.4g} {mc / oc:7.2f} "
              f"{ms:10.4g} {os_:10.4g} {ms / os_:7.2f} {at30:9.2f}", flush=True)
        if args.save:
            write_image(Path(args.save) / f"{path.stem}-model.png", y_model)
            write_image(Path(args.save) / f"{path.stem}-optimizer.png", y_opt)
            sheet.append(np.concatenate([_pad(photo, args.size), _pad(y_model, args.size), _pad(y_opt, args.size)], 1))
    med = statistics.median(equivalents)
    ok = med >= EQUIVALENT_BAR
    when = "at the equivalent step" if args.stop_at_equivalent else f"after {args.steps} steps"
    print(f"median equivalent steps {med:g} (bar {EQUIVALENT_BAR}, goal {EQUIVALENT_GOAL}); median ratio "
          f"model/optimizer {when}: content {statistics.median(c_ratios):.2f}, "
          f"style {statistics.median(s_ratios):.2f} -> {'PASS' if ok else 'FAIL'}")
    if args.save and sheet:
        write_image(Path(args.save) / "sheet.jpg", np.concatenate(sheet, 0))
    return 0 if ok else 1


def _pad(img: np.ndarray, size: int) -> np.ndarray:
    """``img`` centred on a size×size white square (for the contact sheet)."""
    out = np.ones((size, size, 3), np.float32)
    h, w = img.shape[:2]
    y, x = (size - h) // 2, (size - w) // 2
    out[y : y + h, x : x + w] = img[..., :3]
    return out


if __name__ == "__main__":
    sys.exit(main())
