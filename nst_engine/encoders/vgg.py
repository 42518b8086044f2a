"""VGG-19 (Simonyan & Zisserman 2014) as a feature encoder with named layers.

Layers are named as in the style transfer literature: ``conv1_1``, ``relu1_1``, ``pool1`` …
``relu5_4``. Only the layers up to the deepest one asked for are built, and the weights are frozen
(no weight gradients: that halves the cost of a step).

The network's input is an RGB image in 0..255 (the optimizer's pixel space); the weight set's own
convention (Caffe: BGR minus the mean pixel; torchvision: RGB 0..1 normalised by ImageNet std) is
applied by a preprocessing layer inside the encoder, so the optimizer never sees it.
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Literal

import torch
from torch import nn

from ..errors import InputError
from .base import LayerGeometry
from .layers import _BLOCKS, CONV_NAMES, GEOMETRY, LAYER_NAMES, layer_channels, resolve_layer  # noqa: F401

Preprocess = Literal["caffe", "torchvision"]
PRECISIONS = ("auto", "fp32", "tf32", "bf16", "hybrid")
# "hybrid": bf16 only from this layer on. Blocks 1-2 see the raw pixels and carry the fine
# detail of the pixel gradient: in bf16 the gradient's cosine to fp32 fell to 0.77 (style) /
# 0.61 (content), with blocks 1-2 in fp32 it stayed at 0.9975 / 1.0000 (Starry Night on a Kodak
# photo), for ~1.4x speed on a CPU with bfloat16 instructions.
HYBRID_FROM = "conv3_1"
# L-BFGS steps evaluated in fp32 before the hybrid takes over (and again after a restart): see
# `nst_engine.optim.PixelOptimizer.step`.
HYBRID_WARMUP = 5


def bf16_supported(device: torch.device) -> bool:
    """Whether bfloat16 convolutions run natively (not emulated) on ``device``."""
    if device.type == "cuda":
        return bool(torch.cuda.is_available() and torch.cuda.is_bf16_supported())
    if device.type != "cpu":
        return False
    try:  # oneDNN's own test: AVX512-BF16 / AMX on x86, bf16 on ARM
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False
_PRECISION: ContextVar[str] = ContextVar("nst_precision", default="fp32")


def resolve_precision(name: str, device: torch.device) -> str:
    """``auto``: TF32 convolutions on CUDA; on a CPU the hybrid where bf16 is native and measured
    faster (`bf16_pays`), else fp32.

    The hybrid (bf16 from ``HYBRID_FROM`` on, with fp32 warm-up steps) is ~1.3x faster per step
    than fp32 at 256 px and its final loss stays within the trajectory noise of fp32's
    (bench/bench_precision.py). Not all-bf16: with blocks 1-2 in bf16 the pixel gradient's cosine
    to fp32 fell to 0.77/0.61, and L-BFGS runs on small images blew up (a 64 px run reached a
    loss of 2e14 at step 3). Emulated bf16 (no native instructions) is slower than fp32.
    """
    if name not in PRECISIONS:
        raise InputError("precision", name, f"must be one of {', '.join(PRECISIONS)}")
    if name == "auto":
        if device.type == "cuda":
            return "tf32"
        return "hybrid" if bf16_pays(device) else "fp32"
    return name


def bf16_pays(device: torch.device) -> bool:
    """Native bf16 *and* measurably faster here (`nst_engine.encoders.probe`: timed once per machine)."""
    if not bf16_supported(device):
        return False
    if device.type != "cpu":
        return True
    from .probe import bf16_pays_on_cpu

    return bf16_pays_on_cpu()


def describe_precision(name: str, device: torch.device) -> str:
    """Which precision ``name`` runs as on ``device``, and why, for the user (``--verbose``/progress)."""
    mode = resolve_precision(name, device)
    what = {"fp32": "fp32", "tf32": "TF32 convolutions", "bf16": "bf16 (all layers)",
            "hybrid": f"hybrid: bf16 from {HYBRID_FROM}, the first {HYBRID_WARMUP} steps fp32"}[mode]
    if name != "auto":
        return f"{what} (--precision {name})"
    if device.type == "cuda":
        return f"{what} (auto on CUDA)"
    native = ("bf16 measured faster on this CPU" if mode == "hybrid" else
              "bf16 is native here but measured no faster than fp32" if bf16_supported(device) else
              "no native bf16 on this CPU")
    return f"{what} (auto: {native})"


@contextmanager
def fp32_under_hybrid(active: bool = True) -> Iterator[None]:
    """fp32 inside this block when ``active`` and the current precision is the hybrid."""
    if not active or _PRECISION.get() != "hybrid":
        yield
        return
    token = _PRECISION.set("fp32")
    try:
        yield
    finally:
        _PRECISION.reset(token)


@contextmanager
def precision(name: str, device: torch.device) -> Iterator[str]:
    """The encoder's arithmetic inside this block.

    fp32; tf32 (cuDNN convolutions with TF32 inputs, fp32 accumulation; CUDA only, else fp32);
    bf16 (autocast: convolutions in bfloat16); hybrid (bf16 from ``HYBRID_FROM`` on). The losses always cast
    features to fp32 before Grams and sums, so only the network runs in reduced precision.
    """
    name = resolve_precision(name, device)
    token = _PRECISION.set(name)
    old_tf32, old_benchmark = torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark
    if device.type == "cuda":
        torch.backends.cudnn.allow_tf32 = name != "fp32"
        torch.backends.cudnn.benchmark = True  # fixed sizes for hundreds of steps: autotuning pays
    try:
        yield name
    finally:
        _PRECISION.reset(token)
        torch.backends.cudnn.allow_tf32, torch.backends.cudnn.benchmark = old_tf32, old_benchmark


class _Normalize(nn.Module):
    """RGB 0..255 to the weight set's input convention."""

    mean: torch.Tensor
    scale: torch.Tensor

    def __init__(self, kind: Preprocess) -> None:
        super().__init__()
        self.kind = kind
        if kind == "caffe":
            # Caffe VGG: BGR, 0..255, minus the mean pixel (B, G, R) = (103.939, 116.779, 123.68).
            mean = torch.tensor([123.68, 116.779, 103.939])  # in RGB order; flipped in forward
            scale = torch.ones(3)
        else:
            mean = torch.tensor([0.485, 0.456, 0.406]) * 255.0
            scale = 1.0 / (torch.tensor([0.229, 0.224, 0.225]) * 255.0)
        self.register_buffer("mean", mean.view(1, 3, 1, 1), persistent=False)
        self.register_buffer("scale", scale.view(1, 3, 1, 1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) * self.scale
        if self.kind == "caffe":
            x = x.flip(1)
        return x


class VGG19Encoder(nn.Module):
    """VGG-19 conv stack up to ``last_layer``; ``forward`` returns the asked-for activations.

    Satisfies `nst_engine.encoders.base.Encoder`.
    """

    def __init__(
        self,
        state: dict[str, torch.Tensor],
        last_layer: str = "relu5_4",
        pooling: Literal["max", "avg"] = "max",
        preprocess: Preprocess = "caffe",
    ) -> None:
        super().__init__()
        last = LAYER_NAMES.index(resolve_layer(last_layer))
        self.normalize = _Normalize(preprocess)
        self.names: list[str] = []
        layers: list[nn.Module] = []
        for name in LAYER_NAMES[: last + 1]:
            if name.startswith("conv"):
                w, b = state[f"{name}.weight"], state[f"{name}.bias"]
                # Built on the meta device: no wasted random init, the weights are assigned.
                conv = nn.Conv2d(w.shape[1], w.shape[0], 3, padding=1, device="meta")
                conv.weight = nn.Parameter(w.float(), requires_grad=False)
                conv.bias = nn.Parameter(b.float(), requires_grad=False)
                layers.append(conv)
            elif name.startswith("relu"):
                # Not in-place: the pre-activation conv output is also an observable layer.
                layers.append(nn.ReLU(inplace=False))
            else:
                # Gatys et al. found average pooling gives slightly smoother results; default is max.
                layers.append(nn.MaxPool2d(2, 2) if pooling == "max" else nn.AvgPool2d(2, 2))
            self.names.append(name)
        self.layers = nn.ModuleList(layers)
        self.requires_grad_(False)
        self.eval()

    @property
    def last_layer(self) -> str:
        return self.names[-1]

    def resolve_layer(self, name: str) -> str:
        """Canonical VGG-19 name (``block4_conv2`` → ``conv4_2``); any VGG-19 layer, built or not
        (``forward`` says which are not built)."""
        return resolve_layer(name)

    def geometry(self, layer: str) -> LayerGeometry:
        return GEOMETRY[resolve_layer(layer)]

    def forward(self, image: torch.Tensor, layers: Iterable[str]) -> dict[str, torch.Tensor]:
        wanted = {resolve_layer(n) for n in layers}
        if not wanted:
            return {}
        missing = wanted - set(self.names)
        if missing:
            raise InputError("layers", min(missing), f"not built (encoder stops at {self.last_layer})")
        deepest = max(self.names.index(n) for n in wanted)
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(image)
        if x.is_cuda:
            x = x.contiguous(memory_format=torch.channels_last)  # cuDNN's fast layout (weights too)
        mode = _PRECISION.get()
        # bf16 from this layer on (one autocast region each: an inner autocast would override an outer one).
        split = 0 if mode == "bf16" else self.names.index(HYBRID_FROM) if mode == "hybrid" and HYBRID_FROM in self.names \
            else len(self.names)
        names = self.names[: deepest + 1]
        prev = ""
        for lo, hi, bf16 in ((0, split, False), (split, len(names), True)):
            if lo >= min(hi, len(names)):
                continue
            with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
                # not strict: `names` stops at the deepest layer wanted, the layers go on
                for name, layer in zip(names[lo:hi], self.layers[lo:hi], strict=False):
                    if isinstance(layer, nn.ReLU) and prev not in wanted:
                        x = torch.relu_(x)  # in place: saves a pass over memory; conv's backward needs not its output
                    else:
                        x = layer(x)
                    if name in wanted:
                        out[name] = x
                    prev = name
        return out


def deepest(layers: Sequence[str]) -> str:
    """The deepest of ``layers`` in network order."""
    return max((resolve_layer(n) for n in layers), key=LAYER_NAMES.index)
