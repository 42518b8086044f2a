"""Exact tiled evaluation (#6): the same loss and gradient as one pass, in bounded memory."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.encoders.weights import get_encoder
from nst_engine.errors import InputError
from nst_engine.losses import Objective, content_terms, style_terms
from nst_engine.plan import GiB, estimate_bytes, make_plan
from nst_engine.tiling import TiledObjective, halo, receptive_field, tiles

CPU = torch.device("cpu")


def _objective(shape: tuple[int, int], style_layers: list[str], content_layer: str) -> tuple[Objective, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    last = max([*style_layers, content_layer], key=lambda n: (n[4], n))
    enc = get_encoder("caffe", last, "max", CPU, False)
    content = torch.rand((1, 3, *shape), generator=g) * 255
    style = torch.rand((1, 3, 64, 64), generator=g) * 255
    obj = Objective(enc, content=content_terms(enc, content, [content_layer], (), 1.0),
                    style=style_terms(enc, [style], (), style_layers, (), 1.0), tv_weight=0.5)
    return obj, torch.rand((1, 3, *shape), generator=g) * 255


def test_receptive_field_and_halo() -> None:
    # 3x3 convs add 2·stride, 2x2 pools add stride then double it.
    assert receptive_field("conv1_1") == 3
    assert receptive_field("relu3_1") == 24
    assert receptive_field("relu5_1") == 156
    assert halo("relu5_1") >= 156 // 2 and halo("relu5_1") % 16 == 0


def test_tiles_cover_the_image_once() -> None:
    cover = tiles((101, 130), 32, "relu3_1")
    seen = np.zeros((101, 130), int)
    for t in cover:
        y0, y1, x0, x1 = t.core
        assert y0 % 4 == 0 and x0 % 4 == 0  # on relu3_1's pooling grid
        seen[y0:y1, x0:x1] += 1
        py0, py1, px0, px1 = t.padded
        assert py0 <= y0 and py1 >= y1 and px0 <= x0 and px1 >= x1
    assert (seen == 1).all()


@pytest.mark.parametrize(
    ("shape", "style_layers", "content_layer", "core"),
    [
        ((101, 127), ["relu1_1", "relu2_1", "relu3_1"], "relu2_2", 24),  # halo smaller than the image
        ((96, 128), ["relu1_1", "relu2_1", "relu3_1", "relu4_1", "relu5_1"], "relu4_2", 48),  # default layers
    ],
)
def test_tiled_loss_and_gradient_equal_one_pass(shape: tuple[int, int], style_layers: list[str],
                                                content_layer: str, core: int) -> None:
    obj, x = _objective(shape, style_layers, content_layer)
    assert len(tiles(shape, core, max(style_layers))) > 4
    total, parts, grad = obj.value_and_grad(x)
    t_total, t_parts, t_grad = TiledObjective(obj, core).value_and_grad(x)
    assert grad is not None and t_grad is not None
    for k in parts:
        assert float(t_parts[k]) == pytest.approx(float(parts[k]), rel=1e-5), k
    assert float(t_total) == pytest.approx(float(total), rel=1e-5)
    assert float((t_grad - grad).abs().max()) <= 1e-4 * float(grad.abs().max())


def test_plan_tiles_4k_into_8_gib_and_refuses_below_what_tiles_need() -> None:
    plan = make_plan((2160, 3840), 3840, 500, "relu5_1", CPU, max_memory_gib=8)
    fine = plan[-1]
    assert fine.shape == (2160, 3840) and fine.tile >= 128 and fine.bytes <= 8 * GiB
    assert estimate_bytes(fine.shape, "relu5_1", fine.history) > 8 * GiB  # it did need the tiles
    assert plan[0].tile == 0  # the coarse scale runs whole
    with pytest.raises(InputError, match=r"--size (\d+) fits"):
        make_plan((2160, 3840), 3840, 500, "relu5_1", CPU, max_memory_gib=1.0)
    with pytest.raises(InputError, match="tile=64.*histogram"):
        make_plan((96, 96), 96, 5, "relu5_1", CPU, tile=64, tileable=False)


def test_stylize_in_tiles_matches_one_pass(content96: np.ndarray, style96: np.ndarray) -> None:
    cfg = StyleConfig(size=96, steps=6, optimizer="adam", lr=4.0, precision="fp32",
                      style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu2_2",))
    stages: list[str] = []
    whole = stylize(content96, [style96], cfg)
    tiled = stylize(content96, [style96], cfg.replace(tile=32), callback=lambda p: stages.append(p.stage))
    assert "tiles" in stages[0]
    assert np.allclose(whole.history, tiled.history, rtol=1e-4)
    # Adam normalises each pixel's gradient, so where it is ~0 rounding can flip a step: compare on average.
    assert np.abs(whole.image - tiled.image).mean() < 5e-4


def test_targets_from_tiles_equal_one_pass() -> None:
    from nst_engine.losses import gram
    from nst_engine.tiling import tiled_features, tiled_grams

    enc = get_encoder("caffe", "relu3_1", "max", CPU, False)
    img = torch.rand((1, 3, 90, 117), generator=torch.Generator().manual_seed(3)) * 255
    layers = ["relu1_1", "relu2_2", "relu3_1"]
    whole = enc(img, layers)
    feats = tiled_features(enc, img, layers, 24)
    grams = tiled_grams(enc, img, layers, 24)
    for n in layers:
        assert feats[n].shape == whole[n].shape
        assert torch.allclose(feats[n], whole[n], rtol=1e-4, atol=1e-3 * float(whole[n].abs().max()))
        assert torch.allclose(grams[n], gram(whole[n]), rtol=1e-4, atol=1e-6 * float(gram(whole[n]).abs().max()))


def test_out_of_memory_retries_the_scale_in_tiles(content96: np.ndarray, style96: np.ndarray,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """If the estimate was short and the device runs out anyway, the scale reruns in smaller tiles."""
    import nst_engine.api as api
    from nst_engine.tiling import TiledObjective

    real = api.optimize
    calls: list[object] = []

    def flaky(x0: torch.Tensor, objective: object, **kw: object):  # noqa: ANN202
        calls.append(objective)
        if len(calls) == 1:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(x0, objective, **kw)  # type: ignore[arg-type]

    monkeypatch.setattr(api, "optimize", flaky)
    r = stylize(content96, [style96], StyleConfig(size=96, steps=2, style_layers=("relu1_1", "relu2_1")))
    assert r.steps == 2 and not isinstance(calls[0], TiledObjective) and isinstance(calls[1], TiledObjective)
    calls.clear()

    def always(x0: torch.Tensor, objective: object, **kw: object):  # noqa: ANN202
        calls.append(objective)
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(api, "optimize", always)
    with pytest.raises(torch.OutOfMemoryError):
        stylize(content96, [style96], StyleConfig(size=96, steps=2))
    assert len(calls) == 1 + api.OOM_RETRIES
