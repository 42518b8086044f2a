"""`TrainConfig`: the settings of one training run (no torch: `nst --help` builds its options from it)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nst_engine.encoders.layers import resolve_layer
from nst_engine.errors import InputError

VARIANTS = ("standard", "light")
TRAIN_PRECISIONS = ("auto", "fp32", "hybrid", "bf16")


@dataclass
class TrainConfig:
    """Settings of one training run (also stored, as JSON, in the checkpoints and the model file)."""

    style: str  # style image: a path, style:NAME or sample:NAME
    content_dir: str  # folder of photos
    output: str  # the .onnx file to write
    variant: str = "light"  # light | standard
    # The CPU recipe (2 cores, ~40 min; see export/README.md): most steps on small crops in
    # batches of 4, the last `fine_steps` on larger crops, so the net also sees strokes at the
    # scale of a bigger image.
    steps: int = 2300  # Adam steps (batches) in all, the fine ones included
    batch_size: int = 4
    crop: int = 128  # px, square training crops
    fine_steps: int = 300  # the last steps, on fine_crop crops in batches of fine_batch_size
    fine_crop: int = 256
    fine_batch_size: int = 2
    style_size: int = 384  # px, long side of the style image for its Gram targets (the stroke scale)
    content_layers: tuple[str, ...] = ("relu2_2",)
    # No relu5_1 (departing from Gatys et al.'s layers): it costs conv4_2..conv5_1 for a term that
    # barely moves a feed-forward net (Johnson's and Magenta's trainers stop at conv4 too).
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    # Only the ratio matters (Adam is invariant to the loss scale). With the engine's scales and
    # relu2_2 content, 1000:1 is where the iterative optimizer, started from noise, keeps the
    # content and paints it in the style (starry_night on kodak_23, 128 px); 100:1 loses the
    # content, 10000:1 keeps the photo's colours.
    content_weight: float = 1000.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    lr: float = 1e-3
    lr_final: float = 1e-4  # decayed geometrically to this over the last (1 - decay_from) of the steps
    decay_from: float = 0.7
    precision: str = "auto"  # auto (hybrid where bf16 is native, else fp32) | fp32 | hybrid | bf16
    channels_last: bool = True  # ~12 % faster on the CPU (measured, 4x128 crops)
    init: str | None = None  # start from a trained network (a checkpoint of ours): other styles learn faster
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda[:N]
    weights: str = "caffe"  # VGG-19 weights for the loss (as the engine's --weights)
    checkpoint: str | None = None  # default: OUTPUT with .ckpt.pt
    checkpoint_every: int = 500  # steps; 0 = only at the end
    resume: str | None = None  # a checkpoint to continue from
    preview_every: int = 0  # steps; 0 = no previews
    preview: str | None = None  # image for the previews (default: the first photo of content_dir)
    preview_size: int = 384  # px, long side of the previews
    teacher: str | None = None  # a trained model (.onnx of ours, or a checkpoint .pt) to distil
    distill_weight: float = 1.0
    name: str | None = None  # style name in the model's metadata (default: the style file's stem)
    painting: str | None = None  # what `nst models` and GIMP show, e.g. "The Starry Night (Van Gogh, 1889)"

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
