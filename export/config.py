"""`TrainConfig`: the settings of one training run (no torch: `nst --help` builds its options from it).

Each field's metadata (`nst_engine.config.option`: help, choices, flags) is where `nst train`'s
options come from (`nst_engine.cli.train`); the defaults are the CPU recipe.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nst_engine.config import option
from nst_engine.encoders.layers import resolve_layer
from nst_engine.errors import InputError

VARIANTS = ("standard", "light")
TRAIN_PRECISIONS = ("auto", "fp32", "hybrid", "bf16")
# Help sections of `nst train`: its options are generated from the fields' metadata
# (help, choices, flags: see nst_engine.config and nst_engine.cli.fields).
_TRAINING, _LOSS, _FILES = "training", "loss", "files"


@dataclass
class TrainConfig:
    """Settings of one training run (also stored, as JSON, in the checkpoints and the model file)."""

    style: str = field(metadata=option(
        "an image file, style:NAME (shipped style) or sample:NAME (scikit-image photo)", cli="STYLE"))
    content_dir: str = field(metadata=option(
        "folder of training photos (.jpg, .png, …)", metavar="DIR", required=True))
    output: str = field(metadata=option(
        "the model file to write", cli=("-o", "--output"), metavar="MODEL.onnx", required=True))
    variant: str = field(default="light", metadata=option(
        "network: light (fast on a CPU) or standard (Johnson et al.)", choices=VARIANTS, cli_default=None,
        default_text="light, or the --resume checkpoint's"))
    # The CPU recipe (2 cores, ~40 min; see export/README.md): most steps on small crops in
    # batches of 4, the last `fine_steps` on larger crops, so the net also sees strokes at the
    # scale of a bigger image.
    steps: int = field(default=2300, metadata=option(
        "Adam steps (batches) in all, the fine ones included", group=_TRAINING))
    batch_size: int = field(default=4, metadata=option("crops per step", group=_TRAINING))
    crop: int = field(default=128, metadata=option("crop side in px (square training crops)", group=_TRAINING))
    fine_steps: int = field(default=300, metadata=option(
        "the last N steps run on --fine-crop crops", group=_TRAINING))
    fine_crop: int = field(default=256, metadata=option("crop side of the fine steps", group=_TRAINING))
    fine_batch_size: int = field(default=2, metadata=option("crops per fine step", group=_TRAINING))
    style_size: int = field(default=384, metadata=option(  # px, for its Gram targets
        "long side of the style image in px (sets the brush-stroke scale)", group=_TRAINING))
    content_layers: tuple[str, ...] = field(default=("relu2_2",), metadata=option(
        "VGG-19 layers of the content loss", group=_LOSS))
    # No relu5_1 (departing from Gatys et al.'s layers): it costs conv4_2..conv5_1 for a term that
    # barely moves a feed-forward net (Johnson's and Magenta's trainers stop at conv4 too).
    style_layers: tuple[str, ...] = field(default=("relu1_1", "relu2_1", "relu3_1", "relu4_1"), metadata=option(
        "VGG-19 layers of the style (Gram) loss", group=_LOSS))
    # Only the ratio matters (Adam is invariant to the loss scale). With the engine's scales and
    # relu2_2 content, 1000:1 is where the iterative optimizer, started from noise, keeps the
    # content and paints it in the style (starry_night on kodak_23, 128 px); 100:1 loses the
    # content, 10000:1 keeps the photo's colours.
    content_weight: float = field(default=1000.0, metadata=option("content loss weight", group=_LOSS))
    style_weight: float = field(default=1.0, metadata=option("style loss weight", group=_LOSS))
    tv_weight: float = field(default=0.0, metadata=option("total-variation (smoothness) weight", group=_LOSS))
    lr: float = field(default=1e-3, metadata=option("Adam learning rate", group=_TRAINING))
    lr_final: float = field(default=1e-4, metadata=option(  # reached over the last (1 - decay_from) of the steps
        "learning rate at the end (geometric decay from --decay-from)", group=_TRAINING))
    decay_from: float = field(default=0.7, metadata=option(
        "fraction of the steps after which the learning rate decays", group=_TRAINING))
    precision: str = field(default="auto", metadata=option(
        "loss network arithmetic: hybrid = bf16 from conv3_1 on; auto = hybrid where the processor's native "
        "bf16 is measured faster than fp32 (once per machine), else fp32", choices=TRAIN_PRECISIONS, group=_TRAINING))
    channels_last: bool = field(default=True, metadata=option(  # measured on 4x128 crops
        "channels_last memory layout (~12% faster on CPUs; --no-channels-last keeps NCHW)", group=_TRAINING))
    init: str | None = field(default=None, metadata=option(  # a checkpoint of ours
        "start from a trained network (another style): a checkpoint, an .onnx model of ours or a shipped "
        "model's name; converges faster", metavar="CKPT.pt|MODEL",
        group=_TRAINING))
    seed: int = field(default=0, metadata=option("random seed", group=_TRAINING))
    device: str = field(default="auto", metadata=option("compute device: auto, cpu, cuda or cuda:N", group=_TRAINING))
    weights: str = field(default="caffe", metadata=option(  # as the engine's --weights
        "VGG-19 weights of the loss network: caffe, torchvision or a file", group=_LOSS))
    checkpoint: str | None = field(default=None, metadata=option(
        "checkpoint file", metavar="CKPT.pt", default_text="MODEL.ckpt.pt", group=_FILES))
    checkpoint_every: int = field(default=500, metadata=option(
        "write the checkpoint every N steps (and at the end; 0: only at the end)", group=_FILES))
    resume: str | None = field(default=None, metadata=option(
        "continue from a checkpoint up to --steps", metavar="CKPT.pt", group=_FILES))
    preview_every: int = field(default=0, metadata=option(
        "write MODEL.previewNNNNNN.png beside the checkpoint every N steps (0: never)", group=_FILES))
    preview: str | None = field(default=None, metadata=option(
        "image for the previews", metavar="IMAGE", default_text="the first photo in --content-dir", group=_FILES))
    preview_size: int = field(default=384, metadata=option("long side of the previews in px", group=_FILES))
    teacher: str | None = field(default=None, metadata=option(
        "distil a trained model (.onnx of ours, or a training checkpoint .pt) into this one", metavar="MODEL",
        group=_LOSS))
    distill_weight: float = field(default=1.0, metadata=option(
        "weight of the pixel loss towards the teacher, relative to --content-weight", group=_LOSS))
    name: str | None = field(default=None, metadata=option(  # in the model's metadata
        "style name stored in the model", default_text="the style file's name"))
    painting: str | None = field(default=None, metadata=option(  # e.g. "The Starry Night (Van Gogh, 1889)"
        "the painting's title as `nst models` and GIMP show it", metavar="TITLE", default_text="--name"))

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise InputError("variant", self.variant, f"use one of {', '.join(VARIANTS)}")
        for name, lo, hi in (("steps", 1, 10**7), ("batch_size", 1, 1024), ("crop", 32, 4096),
                             ("fine_steps", 0, 10**7),
                             ("fine_batch_size", 1, 1024), ("fine_crop", 32, 4096),
                             ("style_size", 16, 8192), ("checkpoint_every", 0, 10**7),
                             ("preview_every", 0, 10**7), ("preview_size", 16, 8192)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(name, v, f"must be a whole number between {lo} and {hi}")
        for name in ("content_weight", "style_weight", "tv_weight", "distill_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(name, v, "must be a number ≥ 0")
        for name in ("lr", "lr_final"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and 0 < v <= 1):
                raise InputError(name, v, "must be in (0, 1]")
        if not (isinstance(self.decay_from, (int, float)) and 0 <= self.decay_from <= 1):
            raise InputError("decay_from", self.decay_from, "must be between 0 and 1")
        if self.precision not in TRAIN_PRECISIONS:
            raise InputError("precision", self.precision, f"use one of {', '.join(TRAIN_PRECISIONS)}")
        if not self.content_layers and not self.style_layers:
            raise InputError("style_layers", self.style_layers, "no loss layers at all")
        for layer in (*self.content_layers, *self.style_layers):
            resolve_layer(layer, "content_layers" if layer in self.content_layers else "style_layers")
        if not str(self.output).lower().endswith(".onnx"):
            raise InputError("output", self.output, "the model file name must end in .onnx")
        if not Path(self.content_dir).is_dir():
            raise InputError("content_dir", self.content_dir, "no such folder")

    def to_json(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def lr_at(self, step: int) -> float:
        """Learning rate of step ``step`` (1-based): constant, then geometric decay to ``lr_final``."""
        start = self.decay_from * self.steps
        if step <= start or self.steps <= start:
            return float(self.lr)
        t = min(1.0, (step - start) / (self.steps - start))
        return float(self.lr * (self.lr_final / self.lr) ** t)

    def batch_at(self, step: int) -> tuple[int, int]:
        """(batch size, crop) of step ``step`` (1-based); with ``fine_steps`` ≥ ``steps`` every step is fine."""
        if step > self.steps - self.fine_steps:
            return self.fine_batch_size, self.fine_crop
        return self.batch_size, self.crop

    @property
    def checkpoint_path(self) -> Path:
        if self.checkpoint:
            return Path(self.checkpoint)
        out = Path(self.output)
        return out.with_name(out.stem + ".ckpt.pt")


def config_fields() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]
