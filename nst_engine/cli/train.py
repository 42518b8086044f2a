"""`nst train`: train a feed-forward style network and export it to ONNX; and `--model` for `nst stylize`.

    nst train STYLE --content-dir PHOTOS/ -o MODEL.onnx [--variant light|standard] [--steps N] …

The training code is `export.train` (needs the ``onnx`` package for the export: the ``train``
extra); ``nst train``'s options are generated from `export.config.TrainConfig`'s fields.
`run_model_stylize` is what `nst stylize --model` runs (`nst_engine.selection`, no torch).
"""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from ..errors import InputError
from .progress import ProgressBar, paint_and_write

if TYPE_CHECKING:
    from export.config import TrainConfig


def register(sub: Any) -> None:
    from export.config import TrainConfig as Config

    from .fields import add_field_options

    p = sub.add_parser(
        "train", help="train a fast feed-forward style model (ONNX)",
        description="Train a feed-forward network (Johnson et al. 2016) to paint any photo in the style of STYLE, "
                    "on random crops of the photos in --content-dir, and write it as an ONNX model for "
                    "`nst stylize --model`. Checkpoints let a run be stopped (Ctrl-C) and resumed.",
    )
    add_field_options(p, Config)  # every TrainConfig field, from its metadata (export/config.py)
    training = next(g for g in p._action_groups if g.title == "training")
    training.add_argument("--threads", type=int, default=None, help="CPU threads for torch [default: torch's choice]")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run_train)

    p = sub.add_parser("models", help="list the shipped fast style models",
                       description="The feed-forward models that ship with nst-gimp, for `nst stylize PHOTO --model NAME`.")
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.set_defaults(func=run_models)


def check_device(device: str, argument: str = "--device") -> str:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N``, kept as given (``cuda:1`` stays ``cuda:1``)."""
    index = device[len("cuda:"):] if device.startswith("cuda:") else "0"
    if device not in ("auto", "cpu", "cuda") and not (device.startswith("cuda:") and index.isdigit()):
        raise InputError(argument, device, "must be auto, cpu, cuda or cuda:N")
    return device


def config_from_args(args: argparse.Namespace) -> "TrainConfig":
    """The `TrainConfig` of parsed ``args`` (the variant of a ``--resume`` checkpoint where none is given)."""
    from export.config import TrainConfig as Config

    from .fields import field_values

    values = field_values(Config, args)
    if values.get("variant") is None:
        values["variant"] = "light"
        if values.get("resume"):
            from export.train import load_checkpoint

            values["variant"] = str(load_checkpoint(values["resume"])["spec"].get("variant", "light"))
    device = check_device(str(values.get("device", "auto")))
    teacher = values.get("teacher")
    if teacher and str(teacher).lower().endswith(".onnx") and device.startswith("cuda:") and device != "cuda:0":
        raise InputError("--device", device, "an .onnx --teacher runs on the first GPU (onnxruntime): use cuda:0, "
                                             "a .pt teacher, or CUDA_VISIBLE_DEVICES to choose the GPU")
    return Config(**values)


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
    try:  # errors name TrainConfig's fields: `nst` spells them as the options (content_dir -> --content-dir)
        cfg = config_from_args(args)
        result = train(cfg, callback=bar)
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


def run_model_stylize(args: argparse.Namespace) -> int:
    """`nst stylize CONTENT --model M -o OUT [--mask MASK]`, at the content's full resolution.

    Reads ``args.content``, ``model``, ``output`` and, when present, the other `StylizeOptions`
    fields (``strength``, ``overlap``, ``model_size``, ``composite``, …), ``tile``,
    ``preserve_colors``, ``device`` (auto, cpu, cuda[:N]), ``mask`` and ``quiet``; the rest have
    their defaults. An alpha channel is kept.
    """
    import dataclasses

    from ..config import StyleConfig
    from ..image import check_output_path
    from ..options import MODEL_CONFIG_FIELDS, StylizeOptions
    from ..samples import load
    from ..selection import stylize_selection

    out = check_output_path(args.output)
    options = StylizeOptions(**{f.name: getattr(args, f.name) for f in dataclasses.fields(StylizeOptions)
                                if hasattr(args, f.name)}).replace(method="model")
    cfg = StyleConfig(**{name: getattr(args, name) for name in MODEL_CONFIG_FIELDS if hasattr(args, name)})
    content = load(args.content, "CONTENT")
    mask = None
    if getattr(args, "mask", None):
        from .compose import selection_mask

        mask = selection_mask(args.mask, content)
    return paint_and_write(out, lambda bar: stylize_selection(content, mask, (), cfg, options, callback=bar),
                           getattr(args, "quiet", False), f"model {args.model}")
