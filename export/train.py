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

import copy
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.nn import functional as F

from nst_engine.encoders.vgg import bf16_pays, deepest, precision
from nst_engine.encoders.weights import get_encoder
from nst_engine.errors import Cancelled, EngineRuntimeError, InputError
from nst_engine.image import fit_long_side, to_tensor, write_image
from nst_engine.losses import FeatureLoss, Objective, content_terms, style_terms
from nst_engine.system import cpu_name
from nst_engine.progress import Progress, ProgressCallback, StopFlag

from .config import TRAIN_PRECISIONS, VARIANTS, TrainConfig  # noqa: F401 (re-exported)
from .network import NetSpec, TransformerNet

CHECKPOINT_FORMAT = "nst-gimp-train/1"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


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
    so that its short side is at most ``2 * crop`` (``crop``: the largest crop asked for).
    Randomness comes from a `torch.Generator`, so a checkpoint can store and restore it.
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
                with Image.open(path) as f:
                    im = ImageOps.exif_transpose(f).convert("RGB")
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

    def _one(self, gen: torch.Generator, crop: int) -> np.ndarray:
        def rand() -> float:
            return float(torch.rand((), generator=gen))

        im = self.images[int(torch.randint(len(self.images), (), generator=gen))]
        short = min(im.size)
        # Short side after rescaling: uniform in [crop, max(crop, short)] (upscales small photos).
        target = crop + rand() * max(0, short - crop)
        s = target / short
        size = (max(crop, round(im.width * s)), max(crop, round(im.height * s)))
        if size != im.size:
            im = im.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
        x0 = int(rand() * (size[0] - crop + 1))
        y0 = int(rand() * (size[1] - crop + 1))
        a = np.asarray(im.crop((x0, y0, x0 + crop, y0 + crop)), dtype=np.uint8)
        if rand() < 0.5:
            a = a[:, ::-1]
        return a

    def batch(self, n: int, gen: torch.Generator, crop: int | None = None) -> torch.Tensor:
        """(n, 3, crop, crop) float32 RGB in 0..1 (``crop`` at most the one given at construction)."""
        crop = self.crop if crop is None else min(crop, self.crop)
        a = np.stack([self._one(gen, crop) for _ in range(n)])
        return torch.from_numpy(a).permute(0, 3, 1, 2).float().div_(255.0)


# --- losses --------------------------------------------------------------------------------------


class BatchGramLoss(FeatureLoss):
    """The engine's `GramLoss` averaged over a batch (its ``gram`` works on one image).

    ``term`` is typed as the `FeatureLoss` that `style_terms` returns; any one-image loss works."""

    def __init__(self, term: FeatureLoss) -> None:
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


def net_from_model(model: str, argument: str = "init") -> TransformerNet:
    """The network inside one of our exported models (a shipped name or an ``.onnx`` file).

    Its weights are the ONNX initializers (``net.<parameter>``, as `export_onnx` names them) and
    its shape the ``network`` metadata: a shipped model can start another style's training.
    """
    from nst_engine.models import resolve_model

    from .onnx_export import _import_onnx

    onnx = _import_onnx()
    path = resolve_model(model)
    try:
        proto = onnx.load(str(path))
        meta = {p.key: p.value for p in proto.metadata_props}
        net = TransformerNet(NetSpec.from_dict(json.loads(meta["network"])))
        weights = {i.name.removeprefix("net."): torch.from_numpy(onnx.numpy_helper.to_array(i).copy())
                   for i in proto.graph.initializer}
        net.load_state_dict({k: weights[k] for k in net.state_dict()})
    except Exception as e:  # onnx raises protobuf's DecodeError, torch RuntimeError, json ValueError, …
        raise InputError(argument, model, f"not a model exported by nst train ({type(e).__name__}: {e})") from None
    return net


def _init_net(spec: str) -> TransformerNet:
    """``--init``: a training checkpoint (.pt) or an exported model (.onnx file or shipped name)."""
    if spec.lower().endswith(".pt"):
        return net_from_checkpoint(load_checkpoint(spec, "init"))
    return net_from_model(spec)


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
    x = to_tensor(image, fit_long_side(image.shape[0], image.shape[1], size), device) / 255.0
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
    if ckpt is None and cfg.init:
        init = _init_net(cfg.init)
        if init.spec != spec:
            raise InputError("init", cfg.init, f"holds a {init.spec.variant!r} network of another shape than {spec.variant!r}")
        net.load_state_dict(init.state_dict())
    start = 0
    before = (0.0, 0.0)  # wall and CPU seconds of the runs this one resumes
    history: list[float] = []
    gen = torch.Generator().manual_seed(cfg.seed)
    if ckpt is not None:
        net.load_state_dict(ckpt["net"])
        start = int(ckpt["step"])
        history = [float(v) for v in ckpt["history"].tolist()]
        before = (float(ckpt.get("seconds", 0.0)), float(ckpt.get("cpu_seconds", 0.0)))
        gen.set_state(ckpt["rng"])
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    # torch's stubs for Module.to lack its memory_format keyword
    net.to(device, memory_format=memory_format).train()  # type: ignore[call-overload]
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    if ckpt is not None:
        opt.load_state_dict(ckpt["optimizer"])
    mode = resolve_train_precision(cfg.precision, device)

    # Data, the loss network and the fixed style targets.
    data = PhotoCrops(cfg.content_dir, max(cfg.crop, cfg.fine_crop if cfg.fine_steps else 0))
    style_img = load(cfg.style, "style")
    style_t = to_tensor(style_img, fit_long_side(style_img.shape[0], style_img.shape[1], cfg.style_size), device)
    layers = [*cfg.content_layers, *cfg.style_layers]
    encoder = get_encoder(cfg.weights, deepest(layers), "max", device)
    if cfg.channels_last:  # a private copy: the cached encoder is shared with the rest of the process
        encoder = copy.deepcopy(encoder).to(memory_format=torch.channels_last)  # type: ignore[call-overload]  # as above
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
            "seconds": before[0] + time.perf_counter() - t0,
            "cpu_seconds": before[1] + time.process_time() - cpu0,
            "config": json.dumps(cfg.to_json()),
        }
        _atomic_save(state, ckpt_path)

    t0, cpu0 = time.perf_counter(), time.process_time()
    parts_f: dict[str, float] = {}
    step = start  # the last step done
    try:
        for _ in range(start + 1, cfg.steps + 1):
            if stop is not None and stop.is_set():
                save(step)
                raise Cancelled(f"training stopped at step {step}; resume with --resume {ckpt_path}")
            n, crop = cfg.batch_at(step + 1)
            x = data.batch(n, gen, crop).to(device, memory_format=memory_format)
            for group in opt.param_groups:
                group["lr"] = cfg.lr_at(step + 1)
            y = net(x)
            x255, y255 = x * 255.0, y * 255.0
            with precision(mode, device):
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
                write_image(ckpt_path.with_name(f"{out.stem}.preview{step:06d}.png"), snapshot)  # beside the checkpoint
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
    cpu_seconds = time.process_time() - cpu0
    save(step)

    net.eval()
    settings = cfg.to_json()
    for k in ("output", "checkpoint", "resume", "preview", "teacher", "init", "content_dir", "style"):
        if settings.get(k):  # file names only: no local paths in a shipped file
            settings[k] = Path(str(settings[k])).name
    # How it was trained, for `nst models` (minutes summed over resumed runs).
    settings.update(steps_done=len(history), device=str(device), torch_version=torch.__version__,
                    photos=len(data), precision_used=mode, threads=torch.get_num_threads(),
                    processor=processor_name(device), train_minutes=round((before[0] + seconds) / 60, 1),
                    cpu_minutes=round((before[1] + cpu_seconds) / 60, 1))
    given = {"style_name": _style_name(cfg), "painting": cfg.painting or _style_name(cfg), "training": settings}
    meta = export_onnx(net, out, given) if export else {}
    return TrainResult(out, ckpt_path, len(history), history, parts_f, seconds, str(device), meta)


def resolve_train_precision(name: str, device: torch.device) -> str:
    """``auto``: the hybrid (bf16 from conv3_1) where bf16 is native and measured faster, else fp32
    (emulated bf16 is slower, and native bf16 without AMX was slower on an Intel Xeon)."""
    if name == "auto":
        return "hybrid" if bf16_pays(device) else "fp32"
    return name


def processor_name(device: torch.device) -> str:
    """The CPU's (or GPU's) model name, e.g. "AMD EPYC (2 cores)"."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{cpu_name()} ({os.cpu_count()} cores)"


