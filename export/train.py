"""Training a feed-forward style network (Johnson, Alahi, Fei-Fei 2016) with the engine's losses.

    from export.train import TrainConfig, train
    result = train(TrainConfig(style="starry_night.jpg", content_dir="photos/", output="starry.onnx"))

The network (`export.network.TransformerNet`) sees random crops of a folder of photos (rescaled,
flipped) and is trained with Adam to minimise the engine's perceptual loss on its output: the
content loss (`nst_engine.losses.ContentLoss`, relu2_2 by default) against the input crop, the
Gram style loss (`GramLoss`, relu1_1 … relu5_1) against one style image, and total variation —
the same modules, scales and VGG-19 weights as the iterative optimizer, on a batch of crops.
With a ``teacher`` (a trained model, ``.onnx`` or a checkpoint) a pixel loss towards the
teacher's output, ``distill_weight × content_weight × mse`` in 0..255 units, is added
(distillation of the standard net into the light one).

Checkpoints are plain state dicts (network, Adam, RNG states, settings as JSON), readable with
``torch.load(weights_only=True)``; ``resume`` continues one bit for bit on the same device. At
the end the network is exported to ONNX (`export.onnx_export.export_onnx`, verified against
torch).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from nst_engine.encoders.vgg import deepest, resolve_layer
from nst_engine.encoders.weights import get_encoder
from nst_engine.errors import Cancelled, EngineRuntimeError, InputError
from nst_engine.image import fit_long_side, to_tensor, write_image
from nst_engine.losses import FeatureLoss, GramLoss, Objective, content_terms, style_terms
from nst_engine.optim import Progress, ProgressCallback, StopFlag

from .network import VARIANTS, NetSpec, TransformerNet

CHECKPOINT_FORMAT = "nst-gimp-train/1"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


@dataclass
class TrainConfig:
    """Settings of one training run (also stored, as JSON, in the checkpoints and the model file)."""

    style: str  # style image: a path, style:NAME or sample:NAME
    content_dir: str  # folder of photos
    output: str  # the .onnx file to write
    variant: str = "light"  # light | standard
    steps: int = 2000  # Adam steps (batches)
    batch_size: int = 4
    crop: int = 256  # px, square training crops
    style_size: int = 512  # px, long side of the style image for its Gram targets
    content_layers: tuple[str, ...] = ("relu2_2",)
    style_layers: tuple[str, ...] = ("relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1")
    # Only the ratio matters (Adam is invariant to the loss scale). With the engine's scales and
    # relu2_2 content, 1000:1 is where the iterative optimizer, started from noise, keeps the
    # content and paints it in the style (starry_night on kodak_23, 128 px); 100:1 loses the
    # content, 10000:1 keeps the photo's colours.
    content_weight: float = 1000.0
    style_weight: float = 1.0
    tv_weight: float = 0.0
    lr: float = 1e-3
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

    def check(self) -> None:
        if self.variant not in VARIANTS:
            raise InputError("variant", self.variant, f"use one of {', '.join(VARIANTS)}")
        for name, lo, hi in (("steps", 1, 10**7), ("batch_size", 1, 1024), ("crop", 32, 4096),
                             ("style_size", 16, 8192), ("checkpoint_every", 0, 10**7),
                             ("preview_every", 0, 10**7), ("preview_size", 16, 8192)):
            v = getattr(self, name)
            if not isinstance(v, int) or not lo <= v <= hi:
                raise InputError(name, v, f"must be a whole number between {lo} and {hi}")
        for name in ("content_weight", "style_weight", "tv_weight", "distill_weight"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise InputError(name, v, "must be a number ≥ 0")
        if not (isinstance(self.lr, (int, float)) and 0 < self.lr <= 1):
            raise InputError("lr", self.lr, "must be in (0, 1]")
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

    @property
    def checkpoint_path(self) -> Path:
        if self.checkpoint:
            return Path(self.checkpoint)
        out = Path(self.output)
        return out.with_name(out.stem + ".ckpt.pt")


@dataclass
class TrainResult:
    model: Path  # the .onnx written
    checkpoint: Path  # the last checkpoint
    steps: int  # total steps done (with the resumed ones)
    history: list[float] = field(default_factory=list)  # total loss per step
    parts: dict[str, float] = field(default_factory=dict)  # the last step's loss parts
    seconds: float = 0.0  # in this run's loop
    device: str = "cpu"
    metadata: dict[str, str] = field(default_factory=dict)  # as written into the model


# --- data ----------------------------------------------------------------------------------------


class PhotoCrops:
    """Random square crops of a folder of photos: random rescale, position and horizontal flip.

    The photos are decoded once and kept (as 8-bit PIL images) in memory; each is first shrunk
    so that its short side is at most ``2 * crop``. Randomness comes from a `torch.Generator`,
    so a checkpoint can store and restore it.
    """

    def __init__(self, folder: str | os.PathLike[str], crop: int) -> None:
        self.crop = crop
        self.images: list[Image.Image] = []
        self.files: list[Path] = []
        root = Path(folder)
        skipped = 0
        for path in sorted(root.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES or not path.is_file():
                continue
            try:
                with Image.open(path) as im:
                    im = ImageOps.exif_transpose(im).convert("RGB")
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
                skipped += 1
                continue
            short = min(im.size)
            if short > 2 * crop:
                s = 2 * crop / short
                im = im.resize((max(1, round(im.width * s)), max(1, round(im.height * s))), Image.Resampling.LANCZOS)
            self.images.append(im)
            self.files.append(path)
        if not self.images:
            extra = f" ({skipped} unreadable)" if skipped else ""
            raise InputError("content_dir", str(folder), f"no readable photos ({', '.join(IMAGE_SUFFIXES)}) here{extra}")
        self.skipped = skipped

    def __len__(self) -> int:
        return len(self.images)

    def _one(self, gen: torch.Generator) -> np.ndarray:
        def rand() -> float:
            return float(torch.rand((), generator=gen))

        im = self.images[int(torch.randint(len(self.images), (), generator=gen))]
        short = min(im.size)
        # Short side after rescaling: uniform in [crop, max(crop, short)] (upscales small photos).
        target = self.crop + rand() * max(0, short - self.crop)
        s = target / short
        size = (max(self.crop, round(im.width * s)), max(self.crop, round(im.height * s)))
        if size != im.size:
            im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        x0 = int(rand() * (size[0] - self.crop + 1))
        y0 = int(rand() * (size[1] - self.crop + 1))
        a = np.asarray(im.crop((x0, y0, x0 + self.crop, y0 + self.crop)), dtype=np.uint8)
        if rand() < 0.5:
            a = a[:, ::-1]
        return a

    def batch(self, n: int, gen: torch.Generator) -> torch.Tensor:
        """(n, 3, crop, crop) float32 RGB in 0..1."""
        a = np.stack([self._one(gen) for _ in range(n)])
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)


# --- losses --------------------------------------------------------------------------------------


class BatchGramLoss(FeatureLoss):
    """The engine's `GramLoss` averaged over a batch (its ``gram`` works on one image)."""

    def __init__(self, term: GramLoss) -> None:
        super().__init__()
        self.term = term
        self.layer = term.layer

    def forward(self, feats: dict[str, torch.Tensor]) -> torch.Tensor:  # type: ignore[override]
        f = feats[self.layer]
        return sum((self.term({self.layer: f[i : i + 1]}) for i in range(f.shape[0])), f.new_zeros(())) / f.shape[0]


# --- checkpoints ---------------------------------------------------------------------------------


def _atomic_save(obj: Any, path: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)


def load_checkpoint(path: str | os.PathLike[str], argument: str = "resume") -> dict[str, Any]:
    """A checkpoint of ours, read with ``weights_only=True`` (no pickled code runs)."""
    p = Path(path)
    if not p.is_file():
        raise InputError(argument, str(path), "no such file")
    try:
        ckpt = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as e:
        raise InputError(argument, str(path), f"cannot read as a weights-only torch file ({type(e).__name__})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise InputError(argument, str(path), f"not a training checkpoint of ours (format {CHECKPOINT_FORMAT})")
    return ckpt


def net_from_checkpoint(ckpt: dict[str, Any]) -> TransformerNet:
    net = TransformerNet(NetSpec.from_dict(ckpt["spec"]))
    net.load_state_dict(ckpt["net"])
    return net


# --- teacher -------------------------------------------------------------------------------------


def _teacher(spec: str, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """A frozen trained model: (N,3,H,W) 0..1 → (N,3,H,W) 0..1, no gradient."""
    if spec.lower().endswith(".onnx"):
        from nst_engine.models import load_model

        info = load_model(spec, "auto" if device.type == "cuda" else "cpu")
        sess = info.session
        in_name, out_name = sess.get_inputs()[0].name, sess.get_outputs()[0].name

        def run_onnx(x: torch.Tensor) -> torch.Tensor:
            y = sess.run([out_name], {in_name: x.detach().float().cpu().numpy()})[0]
            return torch.from_numpy(y).to(device)

        return run_onnx
    net = net_from_checkpoint(load_checkpoint(spec, "teacher")).to(device).eval().requires_grad_(False)

    def run_net(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return net(x)

    return run_net


# --- the loop ------------------------------------------------------------------------------------


def _style_name(cfg: TrainConfig) -> str:
    if cfg.name:
        return cfg.name
    s = cfg.style.split(":", 1)[1] if cfg.style.startswith(("style:", "sample:")) else Path(cfg.style).stem
    return s.replace("_", "-")


def _device(name: str) -> torch.device:
    from nst_engine.api import select_device

    return select_device(name)


def _preview_image(cfg: TrainConfig, data: PhotoCrops) -> np.ndarray:
    from nst_engine.samples import load

    a = load(cfg.preview, "preview")[..., :3] if cfg.preview else np.asarray(data.images[0], np.float32) / 255.0
    return a


@torch.no_grad()
def _stylize_preview(net: TransformerNet, image: np.ndarray, size: int, device: torch.device) -> np.ndarray:
    x = to_tensor(image, fit_long_side(*image.shape[:2], size), device) / 255.0
    was_training = net.training
    net.eval()
    y = net(x)
    net.train(was_training)
    return y[0].permute(1, 2, 0).float().cpu().numpy()


def train(
    config: TrainConfig,
    *,
    callback: ProgressCallback | None = None,
    stop: StopFlag | threading.Event | None = None,
    export: bool = True,
) -> TrainResult:
    """Train, checkpoint and export one style network; see the module docstring.

    With ``export=False`` only the checkpoint is written (``TrainResult.model`` is then the
    path the model would have had); ``resume`` from it later with the same ``steps`` exports.

    ``callback`` receives a `Progress` (stage ``"train"``) after each step, with ``snapshot`` set
    to the preview image on preview steps. ``stop.is_set()`` ends the loop early: a checkpoint is
    written and `Cancelled` raised (no model is exported from an unfinished run).
    """
    from nst_engine.samples import load

    from .onnx_export import export_onnx

    cfg = config
    cfg.check()
    out = Path(cfg.output)
    ckpt_path = cfg.checkpoint_path
    for argument, path in (("output", out), ("checkpoint", ckpt_path)):
        folder = path.parent
        if not folder.is_dir():
            raise InputError(argument, str(path), f"folder {folder} does not exist")
        if not os.access(folder, os.W_OK):
            raise InputError(argument, str(path), f"folder {folder} is not writable")
    device = _device(cfg.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # fixed crop size: let cuDNN pick its fastest kernels

    # Resume: the network spec and all state come from the checkpoint.
    ckpt = load_checkpoint(cfg.resume) if cfg.resume else None
    if ckpt is not None:
        spec = NetSpec.from_dict(ckpt["spec"])
        if spec.variant != cfg.variant:
            raise InputError("variant", cfg.variant, f"the checkpoint holds a {spec.variant!r} network")
    else:
        spec = NetSpec.of(cfg.variant)
    torch.manual_seed(cfg.seed)
    net = TransformerNet(spec)
    start = 0
    history: list[float] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        start = int(ckpt["step"])
        history = [float(v) for v in ckpt["history"].tolist()]
        gen.set_state(ckpt["rng"])
    net.to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
        for group in opt.param_groups:
            group["lr"] = cfg.lr

    # Data, the loss network and the fixed style targets.
    data = PhotoCrops(cfg.content_dir, cfg.crop)
    style_img = load(cfg.style, "style")
    style_t = to_tensor(style_img, fit_long_side(*style_img.shape[:2], cfg.style_size), device)
    layers = [*cfg.content_layers, *cfg.style_layers]
    encoder = get_encoder(cfg.weights, deepest(layers), "max", device)
    style_loss = [BatchGramLoss(t) for t in style_terms(encoder, [style_t], (), cfg.style_layers, (), cfg.style_weight)] \
        if cfg.style_weight > 0 and cfg.style_layers else []
    teacher = _teacher(cfg.teacher, device) if cfg.teacher else None
    preview = _preview_image(cfg, data) if cfg.preview_every else None

    def save(step: int) -> None:
        state = {
            "format": CHECKPOINT_FORMAT,
            "step": step,
            "spec": spec.to_dict(),
            "net": {k: v.detach().cpu() for k, v in net.state_dict().items()},
            "optimizer": opt.state_dict(),
            "rng": gen.get_state(),
            "history": torch.tensor(history, dtype=torch.float64),
            "config": json.dumps(cfg.to_json()),
        }
        _atomic_save(state, ckpt_path)

    t0 = time.perf_counter()
    parts_f: dict[str, float] = {}
    step = start  # the last step done
    try:
        for _ in range(start + 1, cfg.steps + 1):
            if stop is not None and stop.is_set():
                save(step)
                raise Cancelled(f"training stopped at step {step}; resume with --resume {ckpt_path}")
            x = data.batch(cfg.batch_size, gen).to(device)
            y = net(x)
            x255, y255 = x * 255.0, y * 255.0
            content = content_terms(encoder, x255, cfg.content_layers, (), cfg.content_weight) \
                if cfg.content_weight > 0 and cfg.content_layers else []
            objective = Objective(encoder, content=content, style=style_loss, tv_weight=cfg.tv_weight)
            total, parts = objective(y255)
            if teacher is not None and cfg.distill_weight > 0:
                target = teacher(x) * 255.0
                # Scaled with the content weight so that the default 1 matters: for a student
                # 10 px RMS off its teacher it is about a tenth of the content term (measured
                # with relu2_2 content at weight 1000 on a CPU-trained light net).
                parts["distill"] = cfg.distill_weight * cfg.content_weight * F.mse_loss(y255, target)
                total = total + parts["distill"]
            opt.zero_grad(set_to_none=True)
            total.backward()
            loss = float(total.detach())
            if not math.isfinite(loss):
                save(step)
                raise EngineRuntimeError(
                    f"training diverged at step {step + 1} (loss={loss}); lower --lr or the loss weights")
            opt.step()
            step += 1
            history.append(loss)
            parts_f = {k: float(v.detach()) for k, v in parts.items()}
            snapshot = None
            if preview is not None and (step % cfg.preview_every == 0 or step == cfg.steps):
                snapshot = _stylize_preview(net, preview, cfg.preview_size, device)
                write_image(out.with_name(f"{out.stem}.preview{step:06d}.png"), snapshot)
            if cfg.checkpoint_every and step % cfg.checkpoint_every == 0 and step != cfg.steps:
                save(step)
            if callback is not None:
                el = time.perf_counter() - t0
                done = step - start
                callback(Progress("train", step, cfg.steps, loss, parts_f, el, el / done * (cfg.steps - step), snapshot))
    except KeyboardInterrupt:
        save(step)  # Ctrl-C: keep what was learnt (the step in flight is dropped)
        raise
    seconds = time.perf_counter() - t0
    save(step)

    net.eval()
    settings = cfg.to_json()
    for k in ("output", "checkpoint", "resume", "preview", "teacher", "content_dir", "style"):
        if settings.get(k):  # file names only: no local paths in a shipped file
            settings[k] = Path(str(settings[k])).name
    settings.update(steps_done=len(history), device=str(device), torch_version=torch.__version__,
                    photos=len(data))
    meta = export_onnx(net, out, {"style_name": _style_name(cfg), "training": settings}) if export else {}
    return TrainResult(out, ckpt_path, len(history), history, parts_f, seconds, str(device), meta)


def config_fields() -> Sequence[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]
