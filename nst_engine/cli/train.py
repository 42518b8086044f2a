"""`nst train`: train a feed-forward style network and export it to ONNX; and `--model` for `nst stylize`.

    nst train STYLE --content-dir PHOTOS/ -o MODEL.onnx [--variant light|standard] [--steps N] …

The training code is `export.train` (needs the ``onnx`` package for the export: the ``train``
extra). `add_model_options` / `run_model_stylize` are the pieces `nst stylize --model` uses.
"""
from __future__ import annotations

import argparse
import sys
from typing import Any

from ..errors import InputError
from .progress import ProgressBar

INPUT_HELP = "an image file, style:NAME (shipped style) or sample:NAME (scikit-image photo)"


def _layers(text: str) -> tuple[str, ...]:
    return tuple(t.strip() for t in text.split(",") if t.strip())


def register(sub: Any) -> None:
    from export.config import TrainConfig

    d = TrainConfig(style="", content_dir="", output="")
    p = sub.add_parser(
        "train", help="train a fast feed-forward style model (ONNX)",
        description="Train a feed-forward network (Johnson et al. 2016) to paint any photo in the style of STYLE, "
                    "on random crops of the photos in --content-dir, and write it as an ONNX model for "
                    "`nst stylize --model`. Checkpoints let a run be stopped (Ctrl-C) and resumed.",
    )
    p.add_argument("style", metavar="STYLE", help=INPUT_HELP)
    p.add_argument("--content-dir", required=True, metavar="DIR", help="folder of training photos (.jpg, .png, …)")
    p.add_argument("-o", "--output", required=True, metavar="MODEL.onnx", help="the model file to write")
    p.add_argument("--variant", choices=("light", "standard"), default=None,
                   help="network: light (fast on a CPU) or standard (Johnson et al.) [default: light, "
                        "or the --resume checkpoint's]")
    p.add_argument("--name", default=None, help="style name stored in the model [default: the style file's name]")
    p.add_argument("--painting", default=None, metavar="TITLE",
                   help="the painting's title as `nst models` and GIMP show it [default: --name]")
    g = p.add_argument_group("training")
    g.add_argument("--steps", type=int, default=d.steps, help=f"Adam steps (batches) in all [default: {d.steps}]")
    g.add_argument("--batch-size", type=int, default=d.batch_size, help=f"crops per step [default: {d.batch_size}]")
    g.add_argument("--crop", type=int, default=d.crop, help=f"crop side in px [default: {d.crop}]")
    g.add_argument("--fine-steps", type=int, default=d.fine_steps,
                   help=f"the last N steps run on --fine-crop crops [default: {d.fine_steps}]")
    g.add_argument("--fine-crop", type=int, default=d.fine_crop, help=f"crop side of the fine steps [default: {d.fine_crop}]")
    g.add_argument("--fine-batch-size", type=int, default=d.fine_batch_size,
                   help=f"crops per fine step [default: {d.fine_batch_size}]")
    g.add_argument("--style-size", type=int, default=d.style_size,
                   help=f"long side of the style image in px (sets the brush-stroke scale) [default: {d.style_size}]")
    g.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate [default: {d.lr}]")
    g.add_argument("--lr-final", type=float, default=d.lr_final,
                   help=f"learning rate at the end (geometric decay from --decay-from) [default: {d.lr_final}]")
    g.add_argument("--decay-from", type=float, default=d.decay_from,
                   help=f"fraction of the steps after which the learning rate decays [default: {d.decay_from}]")
    g.add_argument("--init", default=None, metavar="CKPT.pt",
                   help="start from a trained network's checkpoint (another style): converges faster")
    g.add_argument("--precision", choices=("auto", "fp32", "hybrid", "bf16"), default=d.precision,
                   help="loss network arithmetic: hybrid = bf16 from conv3_1 on [default: auto = hybrid where "
                        "the processor has native bf16, else fp32]")
    g.add_argument("--no-channels-last", dest="channels_last", action="store_false",
                   help="keep the NCHW memory layout (channels_last is ~12%% faster on CPUs)")
    g.add_argument("--seed", type=int, default=d.seed, help=f"random seed [default: {d.seed}]")
    g.add_argument("--device", default=d.device, help="auto, cpu or cuda[:N] [default: auto]")
    g.add_argument("--threads", type=int, default=None, help="CPU threads for torch [default: torch's choice]")
    g = p.add_argument_group("loss")
    g.add_argument("--content-weight", type=float, default=d.content_weight, help=f"[default: {d.content_weight}]")
    g.add_argument("--style-weight", type=float, default=d.style_weight, help=f"[default: {d.style_weight}]")
    g.add_argument("--tv-weight", type=float, default=d.tv_weight, help=f"[default: {d.tv_weight}]")
    g.add_argument("--content-layers", type=_layers, default=d.content_layers, metavar="NAME,…",
                   help=f"VGG-19 layers [default: {','.join(d.content_layers)}]")
    g.add_argument("--style-layers", type=_layers, default=d.style_layers, metavar="NAME,…",
                   help=f"VGG-19 layers [default: {','.join(d.style_layers)}]")
    g.add_argument("--weights", default=d.weights, help="VGG-19 weights: caffe, torchvision or a file [default: caffe]")
    g.add_argument("--teacher", default=None, metavar="MODEL",
                   help="distil a trained model (.onnx of ours, or a training checkpoint .pt) into this one")
    g.add_argument("--distill-weight", type=float, default=d.distill_weight,
                   help="weight of the pixel loss towards the teacher, relative to --content-weight "
                        f"[default: {d.distill_weight}]")
    g = p.add_argument_group("files")
    g.add_argument("--checkpoint", default=None, metavar="CKPT.pt", help="checkpoint file [default: MODEL.ckpt.pt]")
    g.add_argument("--checkpoint-every", type=int, default=d.checkpoint_every,
                   help=f"write the checkpoint every N steps (and at the end) [default: {d.checkpoint_every}]")
    g.add_argument("--resume", default=None, metavar="CKPT.pt", help="continue from a checkpoint up to --steps")
    g.add_argument("--preview-every", type=int, default=d.preview_every,
                   help="write MODEL.previewNNNNNN.png beside the checkpoint every N steps [default: 0 = never]")
    g.add_argument("--preview", default=None, metavar="IMAGE",
                   help="image for the previews [default: the first photo in --content-dir]")
    g.add_argument("--preview-size", type=int, default=d.preview_size, help=f"[default: {d.preview_size}]")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    p = sub.add_parser("models", help="list the shipped fast style models",
                       description="The feed-forward models that ship with nst-gimp, for `nst stylize PHOTO --model NAME`.")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run_models)


def config_from_args(args: argparse.Namespace) -> Any:
    from export.config import TrainConfig

    variant = args.variant
    if variant is None:
        variant = "light"
        if args.resume:
            from export.train import load_checkpoint

            variant = str(load_checkpoint(args.resume)["spec"].get("variant", "light"))
    return TrainConfig(
        style=args.style, content_dir=args.content_dir, output=args.output, variant=variant, steps=args.steps,
        batch_size=args.batch_size, crop=args.crop, fine_steps=args.fine_steps, fine_crop=args.fine_crop,
        fine_batch_size=args.fine_batch_size, lr_final=args.lr_final, decay_from=args.decay_from, init=args.init,
        precision=args.precision, channels_last=args.channels_last, style_size=args.style_size, content_layers=args.content_layers,
        style_layers=args.style_layers, content_weight=args.content_weight, style_weight=args.style_weight,
        tv_weight=args.tv_weight, lr=args.lr, seed=args.seed, device=args.device, weights=args.weights,
        checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every, resume=args.resume,
        preview_every=args.preview_every, preview=args.preview, preview_size=args.preview_size,
        teacher=args.teacher, distill_weight=args.distill_weight, name=args.name, painting=args.painting,
    )


def run_models(args: argparse.Namespace) -> int:
    import json

    from ..models import model_catalog

    entries = model_catalog()
    if args.json:
        for e in entries:
            print(json.dumps(e.to_json()))
        return 0
    if not entries:
        print("no models are shipped in this build; train one with `nst train`", file=sys.stderr)
        return 0
    width = max(len(e.name) for e in entries)
    for e in entries:
        print(f"{e.name:<{width}}  {e.painting}\n{'':<{width}}  {e.variant}, {e.bytes / 1e6:.2f} MB; {e.trained}")
    return 0


def run_train(args: argparse.Namespace) -> int:
    from export.train import train

    if args.threads is not None:
        if not 1 <= args.threads <= 1024:
            raise InputError("--threads", args.threads, "must be between 1 and 1024")
        import torch

        torch.set_num_threads(args.threads)
    bar = ProgressBar(enabled=False if args.quiet else None)
    cfg = None
    try:
        cfg = config_from_args(args)
        result = train(cfg, callback=bar)
    except InputError as e:  # name the option as typed: content_dir -> --content-dir
        from export.config import config_fields

        if e.argument in config_fields():
            flag = "STYLE" if e.argument == "style" else "--" + e.argument.replace("_", "-")
            raise InputError(flag, e.value, e.reason) from None
        raise
    except KeyboardInterrupt:
        bar.close()
        if cfg is None or not cfg.checkpoint_path.is_file():
            raise
        print(f"nst: interrupted; no model written; continue with --resume {cfg.checkpoint_path}", file=sys.stderr)
        return 130
    finally:
        bar.close()
    if not args.quiet:
        print(f"wrote {result.model} ({result.steps} steps, {result.seconds:.0f} s on {result.device}, "
              f"last loss {result.history[-1]:.4g}); checkpoint {result.checkpoint}", file=sys.stderr)
    return 0


# --- `nst stylize CONTENT --model NAME_OR_PATH` --------------------------------------------------


def add_model_options(p: argparse.ArgumentParser) -> None:
    """The options `nst stylize` needs for feed-forward models (STYLE is then not given)."""
    from ..models import DEFAULT_MODEL_SIZE, DEFAULT_OVERLAP

    # --tile and --preserve-colors come from StyleConfig (one option for both methods).
    g = p.add_argument_group("feed-forward model (instead of STYLE)")
    g.add_argument("--model", default=None, metavar="NAME|FILE.onnx",
                   help="stylize in one pass with a trained model: a shipped name or an .onnx from `nst train`")
    g.add_argument("--strength", type=float, default=1.0, help="blend with the content, 0..1 [default: 1]")
    g.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"tile overlap in px [default: {DEFAULT_OVERLAP}]")
    g.add_argument("--model-size", type=int, default=DEFAULT_MODEL_SIZE, metavar="PX",
                   help="long side the model paints at: a larger photo is shrunk for the model and upscaled back "
                        "with its own detail, so strokes keep a visible size (smaller = bigger strokes; 0 = full "
                        f"resolution) [default: {DEFAULT_MODEL_SIZE}]")


def run_model_stylize(args: argparse.Namespace) -> int:
    """`nst stylize CONTENT --model M -o OUT`, at the content's full resolution.

    Reads ``args.content``, ``model``, ``strength``, ``tile``, ``overlap``, ``output`` and, when
    present, ``quiet``, ``model_size``, ``preserve_colors`` and ``device`` (auto, cpu, cuda[:N]). An alpha channel is kept.
    """
    import numpy as np

    from ..image import check_output_path, write_image
    from ..models import stylize_model
    from ..samples import load

    out = check_output_path(args.output)
    content = load(args.content, "CONTENT")
    device = str(getattr(args, "device", "auto") or "auto")
    device = "cuda" if device.startswith("cuda") else device
    bar = ProgressBar(enabled=False if getattr(args, "quiet", False) else None)
    try:
        result = stylize_model(content, args.model, strength=args.strength, tile=getattr(args, "tile", 0),
                               overlap=args.overlap, device=device, callback=bar, model_size=getattr(args, "model_size", 0),
                               preserve_colors=getattr(args, "preserve_colors", "none"))
    finally:
        bar.close()
    if content.shape[2] == 4:
        result = np.concatenate([result, content[..., 3:4]], axis=2)
    write_image(out, result)
    if bar.enabled:
        h, w = result.shape[:2]
        print(f"wrote {out} ({w}x{h}, model {args.model})", file=sys.stderr)
    return 0
