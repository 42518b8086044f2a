"""The stylize-a-selection workflow (crop, stylize, composite back).

A pure unit test of the workflow: the "stylizer" is a fake (an inversion or a colour shift, no
network), so only cropping, resizing, compositing, the alpha channel and the errors are tested.
"""
from __future__ import annotations

import numpy as np
import pytest

from nst_engine.compositing import crop_box, stylize_region
from nst_engine.errors import InputError

H, W = 72, 96


def _image(channels: int = 4) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    rgb = np.stack([0.3 + 0.4 * xx / W, 0.3 + 0.4 * yy / H, 0.5 + 0.1 * np.sin(xx / 5)], -1)
    alpha = np.linspace(0.2, 1.0, H * W).reshape(H, W, 1)
    return np.concatenate([rgb, alpha], -1)[:, :, :channels].astype(np.float32)


def _selection(soft: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.hypot(yy - 36, xx - 40)
    return np.clip((22 - r) / 4, 0, 1).astype(np.float32) if soft else (r < 20).astype(np.float32)


def invert(crop: np.ndarray) -> np.ndarray:
    return 1.0 - crop


@pytest.mark.parametrize("composite", ["poisson", "feather", "none"])
@pytest.mark.parametrize("soft", [False, True])
def test_outside_the_selection_and_alpha_are_the_original(composite, soft):
    image, mask = _image(), _selection(soft)
    res = stylize_region(image, mask, invert, composite=composite, margin=8)
    assert res.image.shape == image.shape and res.image.dtype == image.dtype
    assert np.array_equal(res.image[mask == 0], image[mask == 0])
    assert np.array_equal(res.image[:, :, 3], image[:, :, 3])
    assert res.layer_mask.shape == (H, W) and res.layer_mask[mask == 0].max() == 0
    assert res.image.min() >= 0 and res.image.max() <= 1
    assert not np.array_equal(res.image[mask == 1], image[mask == 1])


@pytest.mark.parametrize("composite", ["poisson", "feather"])
def test_a_poisson_composite_loads_its_solver_while_stylize_fn_runs(monkeypatch, composite):
    from nst_engine.compositing import poisson

    calls = []
    monkeypatch.setattr(poisson, "prepare", lambda pixels: calls.append(("prepare", pixels)))
    image, mask = _image(), _selection()
    stylize_region(image, mask, lambda crop: calls.append(("stylize",)) or 1.0 - crop, composite=composite)
    expected = [("prepare", int((mask > 0).sum())), ("stylize",)] if composite == "poisson" else [("stylize",)]
    assert calls == expected  # the solver's kernels (if the region is large) load before the slow part


def test_crop_and_the_call_to_stylize_fn():
    image, mask = _image(), _selection()
    seen = []

    def fake(crop: np.ndarray) -> np.ndarray:
        seen.append(crop.copy())
        return 1.0 - crop

    res = stylize_region(image, mask, fake, margin=10, composite="none")
    assert res.bbox == crop_box(mask, 10) == (11, 7, 70, 66)  # disk r<20 at (36, 40): x 21..59, y 17..55
    (crop,) = seen
    assert crop.shape == (59, 59, 3) and crop.dtype == np.float32
    np.testing.assert_array_equal(crop, image[7:66, 11:70, :3])
    # margin clipped at the image border
    assert crop_box(mask, 100) == (0, 0, W, H)


def test_none_pastes_the_stylized_pixels_under_the_hard_mask():
    image, mask = _image(3), _selection(soft=True)
    res = stylize_region(image, mask, invert, composite="none")
    hard = mask >= 0.5
    np.testing.assert_array_equal(res.layer_mask, hard.astype(np.float32))
    np.testing.assert_allclose(res.image[hard], 1.0 - image[hard], atol=1e-7)
    assert np.array_equal(res.image[~hard], image[~hard])


def test_feather_ramps_inward_from_the_selection_edge():
    image, mask = _image(3), _selection()
    res = stylize_region(image, mask, invert, composite="feather", feather=6.0)
    yy, xx = np.mgrid[0:H, 0:W]
    r = np.hypot(yy - 36, xx - 40)
    lm = res.layer_mask
    assert lm[r < 12].min() == 1.0  # deeper than the feather: fully stylized
    edge = (mask > 0) & (r > 18)
    assert 0 < lm[edge].max() < 0.5  # first pixels inside the edge: mostly original
    inner = r < 12
    np.testing.assert_allclose(res.image[inner], 1.0 - image[inner], atol=1e-6)
    # the image border is not an edge: a selection reaching it is not feathered there
    band = np.zeros((H, W), np.float32)
    band[:, :30] = 1
    lm2 = stylize_region(image, band, invert, composite="feather", feather=6.0).layer_mask
    assert lm2[:, 0].min() == 1.0 and lm2[:, 29].max() < 0.1


def test_poisson_takes_the_gradients_and_meets_the_surroundings():
    image, mask = _image(3), _selection()
    # a constant colour shift has the original's gradients: Poisson gives back the original
    res = stylize_region(image, mask, lambda c: np.clip(c + 0.2, 0, 1), composite="poisson")
    assert np.abs(res.image - image).max() <= 1e-3
    # an inversion: the seam at the selection's edge is far smaller than a hard paste's
    pois = stylize_region(image, mask, invert, composite="poisson").image
    hard = stylize_region(image, mask, invert, composite="none").image
    inside_edge = (mask > 0) & (np.hypot(*(np.mgrid[0:H, 0:W] - np.array([36, 40])[:, None, None])) > 18.5)
    assert np.abs(pois - image)[inside_edge].mean() < 0.2 * np.abs(hard - image)[inside_edge].mean()


def test_selection_covering_everything_with_poisson_is_a_plain_paste():
    image = _image()
    res = stylize_region(image, np.ones((H, W), np.float32), invert, composite="poisson")
    assert "whole image" in res.note and res.bbox == (0, 0, W, H)
    np.testing.assert_allclose(res.image[:, :, :3], 1.0 - image[:, :, :3], atol=1e-7)
    assert np.array_equal(res.image[:, :, 3], image[:, :, 3])


def test_stylized_output_of_another_size_is_resized():
    image, mask = _image(3), _selection()
    calls = []

    def upscale(crop: np.ndarray) -> np.ndarray:  # like a network working at 2x, in uint8
        calls.append(crop.shape)
        out = np.zeros((crop.shape[0] * 2, crop.shape[1] * 2, 4), np.uint8)
        out[:, :, :3] = (64, 128, 192)
        return out

    res = stylize_region(image, mask, upscale, composite="none", margin=4)
    sel = res.image[mask == 1]
    np.testing.assert_allclose(sel, np.broadcast_to(np.array([64, 128, 192]) / 255, sel.shape), atol=1e-6)
    assert calls == [(47, 47, 3)]
    half = stylize_region(image, mask, lambda c: invert(c)[::3, ::3], composite="none")
    assert np.abs(half.image[mask == 1] - (1 - image[mask == 1])).mean() < 0.05


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"mask": np.zeros((H, W), np.float32)}, "mask"),
        ({"mask": np.ones((H, W + 1), np.float32)}, "mask"),
        ({"image": np.zeros((H, W, 3), np.uint8)}, "image"),
        ({"image": np.zeros((H, W, 2), np.float32)}, "image"),
        ({"composite": "blend"}, "composite"),
        ({"margin": -1}, "margin"),
        ({"feather": -2.0}, "feather"),
        ({"stylize_fn": lambda c: c[:, :, 0]}, "stylize_fn"),
        ({"stylize_fn": "not callable"}, "stylize_fn"),
    ],
)
def test_bad_input(kwargs, argument):
    args = {"image": _image(), "mask": _selection(), "stylize_fn": invert}
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        stylize_region(args.pop("image"), args.pop("mask"), args.pop("stylize_fn"), **args)
    assert err.value.argument == argument
