"""The feed-forward quality bar (#5): a model's output against the iterative optimizer's.

    .venv/bin/python bench/bench_quality.py MODEL.onnx --style STYLE \\
        [--images ../shared/images/content] [--size 512] [--steps 500] [--limit N] [--save DIR]

For each photo (the Kodak 24 by default, at ``--size`` px long side) it runs the model, and the
iterative optimizer for ``--steps`` steps from the photo with the loss the model was trained on
(its metadata: content/style layers and weights, style size). Both outputs are then scored under
one loss function, that same loss in fp32, split into content and style parts. The bar: the
model's style loss within 2x of the optimizer's, its content loss no worse than 1.5x. Prints one
row per photo and the medians; exit code 1 if the medians miss the bar.

On a 2-core CPU the optimizer takes ~20 min per photo at 512 px and 500 steps; use the GPU (the
`device` tool), or ``--size 256 --steps 100 --limit 4`` for a rough look.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine import StyleConfig, stylize  # noqa: E402
from nst_engine.api import select_device  # noqa: E402
from nst_engine.encoders.weights import get_encoder  # noqa: E402
from nst_engine.image import fit_long_side, read_image, to_tensor, write_image  # noqa: E402
from nst_engine.losses import Objective, content_terms, style_terms  # noqa: E402
from nst_engine.models import load_model, stylize_model  # noqa: E402
from nst_engine.optim import evaluate  # noqa: E402
from nst_engine.samples import load  # noqa: E402

STYLE_BAR, CONTENT_BAR = 2.0, 1.5


def _resize(img: np.ndarray, size: int) -> np.ndarray:
    from skimage.transform import resize

    h, w = fit_long_side(*img.shape[:2], size)
    return resize(img[..., :3], (h, w), anti_aliasing=True).astype(np.float32)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("model")
    ap.add_argument("--style", required=True, help="the style image the model was trained on")
    ap.add_argument("--images", default=str(ROOT.parent / "shared" / "images" / "content"))
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--limit", type=int, default=0, help="only the first N photos")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--save", default="", help="write both outputs of every photo here")
    args = ap.parse_args(argv)

    info = load_model(args.model, "cpu")
    t = info.training
    content_layers = tuple(t.get("content_layers", ("relu2_2",)))
    style_layers = tuple(t.get("style_layers", StyleConfig().style_layers))
    cw, sw = float(t.get("content_weight", 1000.0)), float(t.get("style_weight", 1.0))
    style_size = int(t.get("style_size", 512))
    style = load(args.style, "--style")[..., :3]
    photos = sorted(p for p in Path(args.images).iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg"))
    photos = photos[: args.limit] if args.limit else photos
    if not photos:
        print(f"no photos in {args.images}", file=sys.stderr)
        return 2
    dev = select_device(args.device)
    enc = get_encoder("caffe", "relu5_1", "max", dev)
    style_t = to_tensor(style, fit_long_side(*style.shape[:2], style_size), dev)
    style_part = style_terms(enc, [style_t], (), style_layers, (), sw)
    cfg = StyleConfig(size=args.size, steps=args.steps, content_layers=content_layers, style_layers=style_layers,
                      content_weight=cw, style_weight=sw, style_scale=style_size / args.size, device=args.device)
    if args.save:
        Path(args.save).mkdir(parents=True, exist_ok=True)

    def score(img: np.ndarray, photo: np.ndarray) -> tuple[float, float]:
        c = to_tensor(photo, photo.shape[:2], dev)
        obj = Objective(enc, content_terms(enc, c, content_layers, (), cw), style_part)
        x = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].to(dev) * 255
        _, parts = evaluate(x, obj)
        return parts["content"], parts["style"]

    print(f"{Path(args.model).name} ({info.style_name}) vs {args.steps} optimizer steps, {args.size} px, "
          f"content {','.join(content_layers)} x{cw:g}, style x{sw:g} at {style_size} px, {dev}")
    print(f"{'photo':16} {'model content':>14} {'opt content':>12} {'ratio':>6} {'model style':>12} {'opt style':>10} {'ratio':>6}")
    c_ratios, s_ratios = [], []
    for path in photos:
        photo = _resize(read_image(path, "photo"), args.size)
        y_model = stylize_model(photo, args.model, device="cpu" if dev.type == "cpu" else "auto")
        y_opt = stylize(photo, [style], cfg).image
        (mc, ms), (oc, os_) = score(y_model, photo), score(y_opt, photo)
        c_ratios.append(mc / oc)
        s_ratios.append(ms / os_)
        print(f"{path.stem:16} {mc:14.4g} {oc:12.4g} {mc / oc:6.2f} {ms:12.4g} {os_:10.4g} {ms / os_:6.2f}", flush=True)
        if args.save:
            write_image(Path(args.save) / f"{path.stem}-model.png", y_model)
            write_image(Path(args.save) / f"{path.stem}-optimizer.png", y_opt)
    mc_r, ms_r = statistics.median(c_ratios), statistics.median(s_ratios)
    ok = ms_r <= STYLE_BAR and mc_r <= CONTENT_BAR
    print(f"median ratio model/optimizer: content {mc_r:.2f} (bar {CONTENT_BAR}), style {ms_r:.2f} (bar {STYLE_BAR}); "
          f"worst: content {max(c_ratios):.2f}, style {max(s_ratios):.2f} -> {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
