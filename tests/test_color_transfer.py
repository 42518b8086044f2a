"""Colour control inside the optimizer: luminance-only transfer, recoloured styles, histogram loss (#3)."""
from __future__ import annotations

import numpy as np
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.color import split_yiq
from nst_engine.encoders.weights import get_encoder
from nst_engine.image import fit_long_side, to_tensor
from nst_engine.losses import histogram_terms


def test_luminance_only_keeps_content_chroma(content96: np.ndarray, style96: np.ndarray) -> None:
    from skimage.transform import resize

    r = stylize(content96, [style96], StyleConfig(size=64, steps=30, preserve_colors="luminance"))
    small = resize(content96, r.image.shape, order=1, anti_aliasing=True).astype(np.float32)
    y_out, iq_out = split_yiq(r.image)
    y_c, iq_c = split_yiq(small)
    assert np.abs(iq_out - iq_c).mean() <= 1 / 255
    assert np.abs(y_out - y_c).mean() > 0.02  # the luminance was stylized


def test_recoloured_style_keeps_palette(content96: np.ndarray, style96: np.ndarray) -> None:
    plain = stylize(content96, [style96], StyleConfig(size=48, steps=20))
    for mode in ("histogram", "linear"):
        r = stylize(content96, [style96], StyleConfig(size=48, steps=20, preserve_colors=mode))
        # The swirls style is blue; recoloured to the astronaut's palette, the output's mean colour
        # is closer to the content's than the plain transfer's is.
        target = content96.reshape(-1, 3).mean(0)
        assert np.abs(r.image.reshape(-1, 3).mean(0) - target).sum() < np.abs(
            plain.image.reshape(-1, 3).mean(0) - target).sum(), mode


def _hist_distance(image: np.ndarray, style: np.ndarray, size: int) -> float:
    dev = torch.device("cpu")
    enc = get_encoder("caffe", "relu4_1", "max", dev)
    layers = ("relu1_1", "relu4_1")
    terms = histogram_terms(enc, to_tensor(style, fit_long_side(*style.shape[:2], size), dev), layers, 1.0)
    feats = enc(to_tensor(image, None, dev), layers)
    return float(sum(t(feats) for t in terms))


def test_histogram_loss_moves_activations_towards_style(content96: np.ndarray, style96: np.ndarray) -> None:
    cfg = StyleConfig(size=48, steps=40, seed=0)
    without = stylize(content96, [style96], cfg)
    with_h = stylize(content96, [style96], cfg.replace(histogram_weight=1.0))
    d0 = _hist_distance(without.image, style96, 48)
    d1 = _hist_distance(with_h.image, style96, 48)
    assert d1 < 0.9 * d0, (d0, d1)


def test_histogram_remap_is_exact_histogram_matching() -> None:
    from nst_engine.losses import HistogramLoss

    style = torch.rand(1, 2, 10, 10) * 5
    loss = HistogramLoss("relu1_1", style)
    o = torch.randn(1, 2, 10, 10)
    r = loss.remap(o)
    # Same sorted values as the style, same ranks as o.
    torch.testing.assert_close(r.reshape(2, -1).sort(1).values, style.reshape(2, -1).sort(1).values)
    assert torch.equal(r.reshape(2, -1).argsort(1), o.reshape(2, -1).argsort(1))
