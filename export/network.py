"""Feed-forward style networks (Johnson, Alahi, Fei-Fei 2016), with the usual later fixes.

Both variants map an RGB image in 0..1, shape (N, 3, H, W), to a stylized RGB image in 0..1 of
the *same* shape, for any H, W ≥ 8 (no multiple-of-4 rule: the decoder upsamples to the sizes of
the encoder's maps — exactly ×2 for even sizes). Inside:

- reflection padding everywhere (no frame along the borders: a CPU-trained ``light`` net with the
  convs' zero padding below full resolution showed one);
- instance normalisation (Ulyanov et al. 2016) instead of batch norm;
- nearest-neighbour upsampling followed by a convolution instead of transposed convolutions
  (Odena et al. 2016: no checkerboard artefacts);
- the output is ``sigmoid(conv(x))``: always inside 0..1 without a clamp (Johnson et al.'s
  scaled tanh is the same function up to scale and offset).

``standard``: Johnson et al.'s net — 9×9 conv 32, two stride-2 convs 64 and 128, five residual
blocks of two 3×3 convs at 128 channels, two upsample+conv stages 64 and 32, 9×9 conv to RGB.

``light``: the same shape for CPU speed: 16-32-128 channels, the residual blocks made of
depthwise-separable convolutions (3×3 depthwise + 1×1 pointwise), depthwise-separable
upsampling convs and a 3×3 last conv. 8× fewer multiply-adds; about 3× faster with
onnxruntime on 2 CPU cores (``bench/bench_feedforward.py speed``).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, cast

import torch
from torch import nn
from torch.nn import functional as F

from nst_engine.errors import InputError

from .config import VARIANTS



@dataclass(frozen=True)
class NetSpec:
    """Everything needed to rebuild a network (stored in checkpoints and ONNX metadata)."""

    variant: str = "standard"
    channels: tuple[int, int, int] = (32, 64, 128)
    residual_blocks: int = 5
    separable: bool = False  # depthwise-separable residual and upsampling convs
    out_kernel: int = 9  # the last conv (to RGB)
    inner_reflect: bool = True  # reflection padding below full resolution (else the conv's zero padding)

    @classmethod
    def of(cls, variant: str) -> NetSpec:
        if variant == "standard":
            return cls("standard", (32, 64, 128), 5, False, 9)
        if variant == "light":
            return cls("light", (16, 32, 128), 5, True, 3, True)
        raise InputError("variant", variant, f"unknown network variant; use one of {', '.join(VARIANTS)}")

    def to_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["channels"] = list(self.channels)
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetSpec:
        """From `to_dict`'s output, as read back from a checkpoint (untyped values)."""
        channels = tuple(int(c) for c in d.get("channels", (32, 64, 128)))
        return cls(
            variant=str(d.get("variant", "standard")),
            channels=cast("tuple[int, int, int]", channels),  # three in any spec `to_dict` wrote
            residual_blocks=int(d.get("residual_blocks", 5)),
            separable=bool(d.get("separable", False)),
            out_kernel=int(d.get("out_kernel", 9)),
            inner_reflect=bool(d.get("inner_reflect", True)),
        )


class StatsNorm(nn.Module):
    """Instance normalisation (affine; the parameters of ``nn.InstanceNorm2d(affine=True)``).

    Plain instance norm in training. Wrapped in `TilingNet` (the exported graph) it also
    *reports* its per-image statistics, and can use *given* ones instead: every tile of a large
    image can then be normalised with the statistics of the whole image, so tiles agree.
    """

    def __init__(self, channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.channels = channels
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels))
        self.bias = nn.Parameter(torch.zeros(channels))
        # Set by TilingNet for one forward: (given mean (C,), given var (C,), mix scalar), and a list
        # the layer appends its own (mean, var), each (N, C), to.
        self.given: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None
        self.report: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.given is None:
            return F.instance_norm(x, weight=self.weight, bias=self.bias, eps=self.eps)
        # The exported path: var = E[x²] - mean², with E[x²] from a 2-norm (one ReduceL2 in ONNX)
        # rather than var_mean's subtract-square-mean, which writes two more full-size tensors:
        # memory-bound on a CPU, it made the light net ~10 % slower at 1024×768.
        n = x.shape[2] * x.shape[3]
        mean = x.mean(dim=(2, 3), keepdim=True)
        var = (torch.linalg.vector_norm(x, 2, dim=(2, 3), keepdim=True).square() / n - mean.square()).clamp(min=0.0)
        if self.report is not None:
            self.report.append((mean.flatten(1), var.flatten(1)))
        g_mean, g_var, mix = self.given
        mean = mean + mix * (g_mean.view(1, -1, 1, 1) - mean)
        var = var + mix * (g_var.view(1, -1, 1, 1) - var)
        scale = self.weight.view(1, -1, 1, 1) * torch.rsqrt(var + self.eps)
        return x * scale + (self.bias.view(1, -1, 1, 1) - mean * scale)


class ConvIN(nn.Module):
    """Reflection pad → conv (optionally depthwise-separable) → instance norm → ReLU (optional)."""

    def __init__(self, c_in: int, c_out: int, k: int, stride: int = 1, relu: bool = True,
                 separable: bool = False, reflect: bool = True) -> None:
        super().__init__()
        self.pad = k // 2 if reflect else 0
        zpad = 0 if reflect else k // 2
        if separable:
            self.conv: nn.Module = nn.Sequential(
                nn.Conv2d(c_in, c_in, k, stride, padding=zpad, groups=c_in, bias=False),
                nn.Conv2d(c_in, c_out, 1),
            )
        else:
            self.conv = nn.Conv2d(c_in, c_out, k, stride, padding=zpad)
        self.norm = StatsNorm(c_out)
        self.relu = relu

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.pad:
            x = F.pad(x, (self.pad,) * 4, mode="reflect")
        x = self.norm(self.conv(x))
        return F.relu(x) if self.relu else x


class Residual(nn.Module):
    """x + IN(conv(ReLU(IN(conv(x))))) — Johnson's block without the crop (we pad instead)."""

    def __init__(self, c: int, separable: bool, reflect: bool = True) -> None:
        super().__init__()
        self.a = ConvIN(c, c, 3, separable=separable, reflect=reflect)
        self.b = ConvIN(c, c, 3, relu=False, separable=separable, reflect=reflect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x))


class Up(nn.Module):
    """Nearest-neighbour upsampling to the size of the matching encoder map, then a conv.

    Separable: the 1×1 pointwise conv runs *before* the upsampling (it commutes with nearest
    upsampling), then the 3×3 depthwise conv at the new size: the full-resolution maps have the
    smaller channel count, which is what costs on a CPU.
    """

    def __init__(self, c_in: int, c_out: int, separable: bool) -> None:
        super().__init__()
        self.separable = separable
        if separable:
            self.point = nn.Conv2d(c_in, c_out, 1, bias=False)
            self.depth = nn.Conv2d(c_out, c_out, 3, groups=c_out)
            self.norm = StatsNorm(c_out)
        else:
            self.conv = ConvIN(c_in, c_out, 3)

    def forward(self, x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        # Exactly ×2 for even sizes; for odd ones the size of ``like`` (nearest, slightly uneven).
        size = (like.shape[2], like.shape[3])
        if not self.separable:
            return self.conv(F.interpolate(x, size=size, mode="nearest"))
        x = F.interpolate(self.point(x), size=size, mode="nearest")
        x = self.depth(F.pad(x, (1, 1, 1, 1), mode="reflect"))
        return F.relu(self.norm(x))


class TransformerNet(nn.Module):
    """Image transformation network: (N,3,H,W) RGB 0..1 → (N,3,H,W) RGB 0..1."""

    def __init__(self, spec: NetSpec | str = "standard") -> None:
        super().__init__()
        self.spec = NetSpec.of(spec) if isinstance(spec, str) else spec
        c1, c2, c3 = self.spec.channels
        sep = self.spec.separable
        self.enc1 = ConvIN(3, c1, 9)
        r = self.spec.inner_reflect
        self.enc2 = ConvIN(c1, c2, 3, stride=2, reflect=r)
        self.enc3 = ConvIN(c2, c3, 3, stride=2, reflect=r)
        self.res = nn.Sequential(*(Residual(c3, sep, r) for _ in range(self.spec.residual_blocks)))
        self.up1 = Up(c3, c2, sep)
        self.up2 = Up(c2, c1, sep)
        self.out = nn.Conv2d(c1, 3, self.spec.out_kernel)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Centre the input: the first conv sees -1..1 (instance norm follows, but the bias matters).
        a = self.enc1(x * 2.0 - 1.0)
        b = self.enc2(a)
        y = self.res(self.enc3(b))
        y = self.up2(self.up1(y, b), a)
        p = self.spec.out_kernel // 2
        y = self.out(F.pad(y, (p, p, p, p), mode="reflect"))
        return torch.sigmoid(y)


class TilingNet(nn.Module):
    """The exported graph: ``(image, stats_in, stats_mix) -> (stylized, stats)``.

    ``stats`` (N, S) are the per-image means then variances of every instance-norm layer, in
    network order (S = 2 × the layers' channels). ``stats_in`` (S,) are used in their place,
    mixed in by ``stats_mix`` (0 = the image's own statistics: plain instance norm; 1 = only the
    given ones). The export makes ``stats_in`` (zeros) and ``stats_mix`` (0) initializers that a
    caller may override, so to a plain caller the model is ``image -> stylized``.
    """

    def __init__(self, net: TransformerNet) -> None:
        super().__init__()
        self.net = net
        self.norms = [m for m in net.modules() if isinstance(m, StatsNorm)]

    @property
    def stats_size(self) -> int:
        return 2 * sum(n.channels for n in self.norms)

    def forward(self, image: torch.Tensor, stats_in: torch.Tensor, stats_mix: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        report: list[tuple[torch.Tensor, torch.Tensor]] = []
        half = self.stats_size // 2
        offset = 0
        try:
            for norm in self.norms:
                c = norm.channels
                norm.given = (stats_in[offset : offset + c], stats_in[half + offset : half + offset + c], stats_mix)
                norm.report = report
                offset += c
            y = self.net(image)
        finally:
            for norm in self.norms:
                norm.given = norm.report = None
        stats = torch.cat([m for m, _ in report] + [v for _, v in report], dim=1)
        return y, stats


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())


def multiply_adds(net: TransformerNet, height: int, width: int) -> int:
    """Multiply-adds of the convolutions for one (height, width) image (from a traced run)."""
    total = 0

    def hook(m: nn.Module, _inp: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        nonlocal total
        assert isinstance(m, nn.Conv2d)
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        total += out.numel() * k

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.no_grad():
            net(torch.zeros(1, 3, height, width))
    finally:
        for h in handles:
            h.remove()
    return total
