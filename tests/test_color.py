"""Colour preservation helpers (Gatys, Bethge, Hertzmann & Shechtman 2016): YIQ split/merge,
luminance matching, recolouring a stylized image, and colour transfer onto the style image."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import color as skcolor

from nst_engine import color
from nst_engine.errors import InputError


def _content(h: int = 64, w: int = 80) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w] / np.array([h, w])[:, None, None]
    return np.stack([0.35 + 0.3 * xx, 0.45 + 0.2 * yy, 0.6 - 0.25 * xx * yy], -1).astype(np.float32)


def _stylized(h: int = 64, w: int = 80, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grey = 0.3 + 0.4 * rng.random((h, w, 1))
    tint = np.array([0.05, -0.04, 0.02])  # a mild colour cast, kept inside the RGB gamut
    return np.clip(grey + tint + 0.03 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def test_luminance_and_yiq_round_trip():
    rgb = _stylized()
    np.testing.assert_allclose(color.luminance(rgb), skcolor.rgb2yiq(rgb)[:, :, 0], atol=1e-6)
    y, iq = color.split_yiq(rgb)
    np.testing.assert_allclose(iq, skcolor.rgb2yiq(rgb)[:, :, 1:], atol=1e-6)
    np.testing.assert_allclose(color.merge_yiq(y, iq), rgb, atol=1e-6)
    assert color.luminance((rgb * 255).round().astype(np.uint8)).dtype == np.float32


def test_recolor_yiq_keeps_stylized_luminance_and_content_chroma():
    stylized, content = _stylized(), _content()
    out = color.recolor(stylized, content)
    assert out.shape == stylized.shape and out.dtype == np.float32
    y_out, iq_out = color.split_yiq(out)
    y_sty, _ = color.split_yiq(stylized)
    y_con, iq_con = color.split_yiq(content)
    assert np.abs(iq_out - iq_con).mean() <= 1 / 255
    assert np.abs(y_out - y_sty).mean() <= 1 / 255
    assert np.abs(y_out - y_con).mean() > 0.05  # the luminance is the stylized one, not the content's


def test_recolor_resizes_content_to_the_stylized_size():
    stylized, content = _stylized(64, 80), _content(128, 160)
    out = color.recolor(stylized, content)
    assert out.shape == (64, 80, 3)
    _, iq_out = color.split_yiq(out)
    _, iq_small = color.split_yiq(_content(64, 80))
    assert np.abs(iq_out - iq_small).mean() <= 2 / 255  # a smooth content resizes to itself


def test_recolor_lab_keeps_lightness_and_takes_ab():
    stylized, content = _stylized(), _content()
    out = color.recolor(stylized, content, space="lab")
    lab_out, lab_sty, lab_con = (skcolor.rgb2lab(a) for a in (out, stylized, content))
    assert np.abs(lab_out[:, :, 0] - lab_sty[:, :, 0]).mean() <= 0.5  # L* in 0..100
    assert np.abs(lab_out[:, :, 1:] - lab_con[:, :, 1:]).mean() <= 0.5


def test_match_luminance_matches_mean_and_std():
    style, content = _stylized(48, 40, seed=3), _content()
    lum = color.match_luminance(style, content)
    lc = color.luminance(content)
    assert lum.shape == style.shape[:2] and lum.dtype == np.float32
    assert abs(lum.mean() - lc.mean()) <= 1e-5 and abs(lum.std() - lc.std()) <= 1e-5
    # the shape of the style's luminance is kept (an affine map of it)
    assert np.corrcoef(lum.ravel(), color.luminance(style).ravel())[0, 1] > 0.9999


def test_match_luminance_histogram():
    style, content = _stylized(seed=4), _content()
    lum = color.match_luminance(style, content, histogram=True)
    q = np.linspace(0.05, 0.95, 10)
    np.testing.assert_allclose(np.quantile(lum, q), np.quantile(color.luminance(content), q), atol=0.01)


@pytest.mark.parametrize("method", ["eigh", "cholesky"])
def test_linear_color_transfer_matches_mean_and_covariance(method):
    style, content = _stylized(seed=5), _content()
    out = color.linear_color_transfer(style, content, method=method, clip=False)
    xo, xc = out.reshape(-1, 3).astype(np.float64), content.reshape(-1, 3).astype(np.float64)
    np.testing.assert_allclose(xo.mean(0), xc.mean(0), atol=1e-5)
    np.testing.assert_allclose(np.cov(xo, rowvar=False, bias=True), np.cov(xc, rowvar=False, bias=True), atol=1e-5)
    clipped = color.linear_color_transfer(style, content, method=method)
    assert clipped.min() >= 0 and clipped.max() <= 1 and clipped.shape == style.shape


def test_linear_color_transfer_of_a_flat_style_does_not_blow_up():
    flat = np.full((16, 16, 3), 0.5, np.float32)
    out = color.linear_color_transfer(flat, _content())
    assert np.isfinite(out).all()
    np.testing.assert_allclose(out.reshape(-1, 3).mean(0), _content().reshape(-1, 3).mean(0), atol=1e-4)


def test_match_histogram_colors():
    style, content = _stylized(seed=6), _content()
    out = color.match_histogram_colors(style, content)
    assert out.shape == style.shape and out.dtype == np.float32
    q = np.linspace(0.05, 0.95, 10)
    for c in range(3):
        np.testing.assert_allclose(np.quantile(out[:, :, c], q), np.quantile(content[:, :, c], q), atol=0.01)


@pytest.mark.parametrize(
    "call, argument",
    [
        (lambda: color.luminance(np.zeros((4, 4))), "rgb"),
        (lambda: color.recolor(np.zeros((4, 4, 4)), _content()), "stylized"),
        (lambda: color.recolor(_stylized(), _content(), space="hsv"), "space"),
        (lambda: color.recolor(_stylized(), np.full((4, 4, 3), np.nan)), "content"),
        (lambda: color.linear_color_transfer(_stylized(), _content(), method="svd"), "method"),
        (lambda: color.match_histogram_colors(np.zeros((4, 4, 3), np.int32), _content()), "style"),
        (lambda: color.merge_yiq(np.zeros((4, 4)), np.zeros((4, 5, 2))), "iq"),
    ],
)
def test_bad_input(call, argument):
    with pytest.raises(InputError) as err:
        call()
    assert err.value.argument == argument
