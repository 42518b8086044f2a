"""The losses, the objective and the tiling on a tiny seeded encoder (no weights; each test well
under a second): values and gradients against hand-written formulas and finite differences,
channel counts that are not VGG's, and tiled evaluation equal to one pass."""
from __future__ import annotations

import pytest
import torch
from tiny_encoder import NAMES, TinyEncoder

from nst_engine.encoders.base import Encoder, LayerGeometry, cover_geometry, sequential_geometry
from nst_engine.encoders.layers import LAYER_NAMES
from nst_engine.errors import InputError
from nst_engine.losses import (
    CONTENT_SCALE,
    STYLE_SCALE,
    ContentLoss,
    GramLoss,
    Objective,
    content_terms,
    histogram_terms,
    style_terms,
)
from nst_engine.optim import optimize
from nst_engine.tiling import TiledObjective, tiled_features, tiled_grams, tiles


def _rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _objective(enc: TinyEncoder, shape: tuple[int, int], content: float = 500.0, style: float = 1000.0,
               tv: float = 0.02) -> tuple[Objective, torch.Tensor]:
    """Weights that put each part near 1 on this encoder (its features are O(1), VGG's O(100))."""
    c, s = _rand(1, 3, *shape, seed=1, scale=255), _rand(1, 3, 10, 11, seed=2, scale=255)
    x = _rand(1, 3, *shape, seed=3, scale=255)
    obj = Objective(enc, content=content_terms(enc, c, ["relu2_1", "pool1"], (), content) if content else [],
                    style=style_terms(enc, [s], (), ["relu1_1", "pool1", "relu2_1"], (), style) if style else [],
                    tv_weight=tv)
    return obj, x


def test_encoders_satisfy_the_protocol_and_declare_their_geometry() -> None:
    from nst_engine.encoders.vgg import VGG19Encoder

    assert isinstance(TinyEncoder(), Encoder)
    assert issubclass(VGG19Encoder, Encoder)
    geo = TinyEncoder().geometry
    # conv 3 px; pool +1 px and stride 2; the next conv adds 2·2 px.
    assert [(geo(n).receptive_field, geo(n).stride) for n in NAMES] == [(3, 1), (3, 1), (4, 2), (8, 2), (8, 2)]
    assert geo("relu2_1").halo == 6  # ceil((8 // 2 + 1) / 2) · 2
    assert cover_geometry([geo("relu1_1"), geo("pool1")]) == LayerGeometry(4, 2)
    vgg = sequential_geometry(LAYER_NAMES)
    assert (vgg["relu5_1"].receptive_field, vgg["relu5_1"].stride, vgg["pool5"].stride) == (156, 16, 32)
    with pytest.raises(ValueError, match="bn1"):
        sequential_geometry(["conv1", "bn1"])


@pytest.mark.parametrize("layer", ["conv1_1", "pool1", "conv2_1"])
def test_declared_receptive_field_and_stride_are_the_networks(layer: str) -> None:
    # With average pooling every input pixel in the field reaches the activation, so the
    # gradient's support is exactly the receptive field.
    enc = TinyEncoder(pooling="avg", dtype=torch.float64)
    geo = enc.geometry(layer)
    x = torch.zeros(1, 3, 33, 31, dtype=torch.float64, requires_grad=True)
    f = enc(x, [layer])[layer]
    assert tuple(f.shape[-2:]) == (33 // geo.stride, 31 // geo.stride)
    i, j = f.shape[-2] // 2, f.shape[-1] // 2
    f[0, :, i, j].sum().backward()
    assert x.grad is not None
    rows, cols = x.grad[0].abs().sum(0).nonzero(as_tuple=True)
    assert int(rows.max() - rows.min()) + 1 == geo.receptive_field
    assert int(cols.max() - cols.min()) + 1 == geo.receptive_field
    assert int(rows.min()) == i * geo.stride - (geo.receptive_field - geo.stride) // 2  # centred on its cell


def test_content_loss_value_and_gradient() -> None:
    f = _rand(1, 5, 4, 6, seed=0).requires_grad_(True)
    p = _rand(1, 5, 4, 6, seed=1)
    loss = ContentLoss("relu1_1", p, weight=2.0)({"relu1_1": f})
    n = f.numel()
    # weight·0.01·mean((F − P)²), gradient weight·0.01·2(F − P)/N
    torch.testing.assert_close(loss, 2.0 * CONTENT_SCALE * ((f - p) ** 2).sum() / n)
    loss.backward()
    assert f.grad is not None
    torch.testing.assert_close(f.grad, 2.0 * CONTENT_SCALE * 2 * (f.detach() - p) / n)


@pytest.mark.parametrize("channels", [7, 3, 64])
def test_gram_loss_value_and_gradient_with_any_channel_count(channels: int) -> None:
    f = _rand(1, channels, 5, 3, seed=0).requires_grad_(True)
    a = _rand(channels, channels, seed=1)
    term = GramLoss("relu2_1", a, weight=3.0)  # relu2_1 has 128 channels in VGG: not used here
    w = 3.0 * STYLE_SCALE / channels**2  # C from the target
    assert term.weight == pytest.approx(w)
    flat = f.detach().reshape(channels, 15)
    g = flat @ flat.t() / 15
    loss = term({"relu2_1": f})
    torch.testing.assert_close(loss, w * ((g - a) ** 2).mean())
    loss.backward()
    gbar = w * 2 * (g - a) / channels**2  # ∂L/∂G
    assert f.grad is not None
    torch.testing.assert_close(f.grad, ((gbar + gbar.t()) @ flat / 15).reshape(f.shape))


def test_terms_resolve_layers_through_the_encoder() -> None:
    enc = TinyEncoder(channels=(6, 9))
    s1, s2 = _rand(1, 3, 12, 10, seed=4, scale=255), _rand(1, 3, 8, 14, seed=5, scale=255)
    terms = style_terms(enc, [s1, s2], (1.0, 3.0), [" RELU2_1", "pool1"], (2.0, 1.0), 0.5)
    assert [t.layer for t in terms] == ["relu2_1", "pool1"]
    assert isinstance(terms[0], GramLoss) and terms[0].weight == pytest.approx(2.0 * 0.5 * STYLE_SCALE / 9**2)
    f1, f2 = enc(s1, ["relu2_1"])["relu2_1"], enc(s2, ["relu2_1"])["relu2_1"]

    def g(f: torch.Tensor) -> torch.Tensor:
        flat = f.reshape(f.shape[1], -1)
        return flat @ flat.t() / flat.shape[1]

    torch.testing.assert_close(terms[0].target, 0.25 * g(f1) + 0.75 * g(f2))  # blend normalised to sum 1
    (c,) = content_terms(enc, s1, ["Pool1"], (), 2.0)
    assert c.layer == "pool1" and c.target.shape == (1, 6, 6, 5)
    (h,) = histogram_terms(enc, s1, ["relu1_1"], 1.0)
    assert h.layer == "relu1_1"
    with pytest.raises(InputError, match="tiny encoder"):
        content_terms(enc, s1, ["relu4_2"], (), 1.0)  # a VGG layer this encoder lacks: its own message


@pytest.mark.parametrize("parts", ["content", "style", "tv", "all"])
def test_objective_gradient_matches_finite_differences(parts: str) -> None:
    weights = {"content": 500.0, "style": 1000.0, "tv": 0.02}
    on = {k: (v if parts in (k, "all") else 0.0) for k, v in weights.items()}
    obj, x = _objective(TinyEncoder(), (12, 14), on["content"], on["style"], on["tv"])
    _, got, grad = obj.value_and_grad(x)
    assert grad is not None and all(float(got[k]) > 0.05 for k in weights if on[k])
    gen = torch.Generator().manual_seed(7)
    # The steepest direction (checks the gradient's length) and random ones (its direction).
    for d in [grad, *(torch.randn(x.shape, generator=gen) for _ in range(3))]:
        d = d / d.norm()
        eps = 0.1  # in 0..255 pixel units: small next to the kinks of ReLU, max-pool and |·|
        with torch.no_grad():
            fd = (obj(x + eps * d)[0] - obj(x - eps * d)[0]) / (2 * eps)
        assert abs(float(fd - (grad * d).sum())) < 2e-3 * float(grad.norm()), parts


def test_tiled_objective_equals_one_pass_on_the_tiny_encoder() -> None:
    enc = TinyEncoder(channels=(4, 6))
    shape = (29, 37)  # odd sizes: the last row and column of pixels have no pooled feature
    obj, x = _objective(enc, shape)
    core = 8
    geo = cover_geometry(enc.geometry(n) for n in obj.layers)
    assert len(tiles(shape, core, geo)) >= 12 and geo.halo < core  # many tiles, halos overlap cores
    total, parts, grad = obj.value_and_grad(x)
    t_total, t_parts, t_grad = TiledObjective(obj, core).value_and_grad(x)
    for k in parts:
        torch.testing.assert_close(t_parts[k], parts[k], rtol=1e-5, atol=0)
    torch.testing.assert_close(t_total, total, rtol=1e-5, atol=0)
    assert grad is not None and t_grad is not None
    torch.testing.assert_close(t_grad, grad, rtol=1e-4, atol=1e-5 * float(grad.abs().max()))
    # Without the gradient: the same value.
    torch.testing.assert_close(TiledObjective(obj, core)(x)[0], total, rtol=1e-5, atol=0)


def test_tiled_targets_equal_one_pass_on_the_tiny_encoder() -> None:
    enc = TinyEncoder()
    img = _rand(1, 3, 27, 22, seed=6, scale=255)
    whole = enc(img, NAMES)
    feats = tiled_features(enc, img, list(NAMES), 6)
    grams = tiled_grams(enc, img, list(NAMES), 6)
    for n in NAMES:
        torch.testing.assert_close(feats[n], whole[n], rtol=1e-5, atol=1e-6)
        flat = whole[n].reshape(whole[n].shape[1], -1)
        torch.testing.assert_close(grams[n], flat @ flat.t() / flat.shape[1], rtol=1e-4, atol=1e-6)
    tiled_c = content_terms(enc, img, ["pool1"], (), 1.0, tile=6)[0].target
    torch.testing.assert_close(tiled_c, whole["pool1"], rtol=1e-5, atol=1e-6)
    tiled_s = style_terms(enc, [img], (), ["relu2_1"], (), 1.0, tile=6)[0].target
    torch.testing.assert_close(tiled_s, style_terms(enc, [img], (), ["relu2_1"], (), 1.0)[0].target, rtol=1e-4, atol=1e-6)


def test_optimizer_lowers_the_loss_on_the_tiny_encoder() -> None:
    obj, x = _objective(TinyEncoder(), (16, 16))
    start = float(obj(x)[0])
    result = optimize(x, obj, steps=30, optimizer="lbfgs")
    assert result.steps == 30 and result.loss < 0.3 * start, (start, result.history)
