"""Regions in the GIMP bridge's stylize job (#12; `nst_engine.bridge.regions`): a style per saved
channel, inside the selection; the rest keeps the photo or takes the Style. The engine is stubbed
except in the last test (VGG-19 at 48 px)."""
from __future__ import annotations

import threading

import numpy as np
import pytest

from nst_engine.bridge import jobs

def _fake_regions_api(monkeypatch, seen):
    """api.stylize stubbed: paints each region in its style's mean colour, the rest 0.5 (STYLE) or
    the content; records what it was given."""
    from nst_engine import api

    def fake(content, styles, config, callback=None, stop=None, regions=()):
        seen.append({"shape": content.shape[:2], "styles": len(styles), "size": config.size,
                     "masks": [r.mask.shape for r in regions], "arguments": [r.argument for r in regions],
                     "sources": [r.source for r in regions], "weights": [r.weight for r in regions]})
        out = np.full(content.shape, 0.5, np.float32) if styles else content.copy()
        for r in regions:
            out = np.where(r.mask[..., None] > 0, r.style.reshape(-1, 3).mean(axis=0), out)
        return api.StyleResult(out.astype(np.float32), 0.0, {}, [], config.steps, False, 0.0, "cpu")

    monkeypatch.setattr(api, "stylize", fake)


def _region_arrays(content, mask=None, **extra):
    h, w = content.shape[:2]
    arrays = {"content": ([h, w, 4], content.tobytes())}
    if mask is not None:
        arrays["mask"] = ([h, w], mask.tobytes())
    for name, a in extra.items():
        arrays[name] = (list(a.shape), np.ascontiguousarray(a, np.float32).tobytes())
    return arrays


def _regions_setup():
    rng = np.random.default_rng(5)
    content = rng.random((40, 60, 4), dtype=np.float32)
    content[..., 3] = 1.0
    left = np.zeros((40, 60), np.float32)
    left[:, :24] = 1.0
    right = np.zeros((40, 60), np.float32)
    right[:, 36:] = 1.0
    selection = np.zeros((40, 60), np.float32)
    selection[6:34, 10:54] = 1.0
    red = np.zeros((8, 8, 4), np.float32)
    red[..., 0] = red[..., 3] = 1.0
    blue = np.zeros((8, 8, 4), np.float32)
    blue[..., 2] = blue[..., 3] = 1.0
    return content, left, right, selection, red, blue


def test_stylize_job_regions_in_a_selection_keep_the_rest(monkeypatch):
    """Two channels, two styles, a selection: the engine gets the masks cut to the selection's
    crop; the new layer (and its mask) changes only inside the selection and inside a region."""
    seen = []
    _fake_regions_api(monkeypatch, seen)
    content, left, right, selection, red, blue = _regions_setup()
    arrays = _region_arrays(content, selection, region1=left, region1_style=red, region2=right, region2_style=blue)
    params = {"steps": 1, "size": 60, "layer_long_side": 60, "composite": "none", "regions": 2, "margin": 4,
              "region1_channel": "sky", "region2_channel": "sea"}
    jobs.check_request("stylize", {"params": params, "arrays": [
        {"name": n, "shape": s} for n, (s, _) in arrays.items()]}, 0)
    header, out = jobs.stylize(params, arrays, lambda m: None, threading.Event())
    img = out["image"][1].reshape(40, 60, 4)
    lm = out["layer_mask"][1]
    assert seen[-1]["shape"] == (28 + 8, 44 + 8) and seen[-1]["styles"] == 0  # crop: selection + margin
    assert seen[-1]["masks"] == [(36, 52), (36, 52)]
    assert seen[-1]["arguments"] == ["region1-channel", "region2-channel"] and seen[-1]["sources"] == ["sky", "sea"]
    inside = selection > 0
    keep = ~inside | ((left == 0) & (right == 0))
    np.testing.assert_array_equal(lm[keep], 0)
    np.testing.assert_array_equal(img[keep], content[keep])
    np.testing.assert_array_equal(lm[inside & (left > 0)], 1)
    assert np.abs(img[inside & (left > 0)][:, :3] - [1.0, 0.0, 0.0]).max() < 1e-6  # region 1's style (red)
    assert np.abs(img[inside & (right > 0)][:, :3] - [0.0, 0.0, 1.0]).max() < 1e-6
    assert header["info"]["regions"] == 2

    # the rest takes the Style: the whole selection shows (the layer mask is the selection's)
    arrays["style"] = ([8, 8, 4], np.ones((8, 8, 4), np.float32).tobytes())
    header, out = jobs.stylize(dict(params, regions_rest="style"), arrays, lambda m: None, threading.Event())
    lm = out["layer_mask"][1]
    assert seen[-1]["styles"] == 1
    np.testing.assert_array_equal(lm, selection)
    middle = inside & (left == 0) & (right == 0)
    np.testing.assert_allclose(out["image"][1].reshape(40, 60, 4)[middle][:, :3], 0.5)


def test_stylize_job_regions_without_a_selection(monkeypatch, tmp_path):
    """The whole layer: a layer mask only where the rest keeps the photo; a region's style from a file."""
    from PIL import Image

    seen = []
    _fake_regions_api(monkeypatch, seen)
    content, left, right, _, red, _ = _regions_setup()
    Image.new("RGB", (8, 8), (0, 255, 0)).save(tmp_path / "green.png")
    params = {"steps": 1, "size": 60, "region2_style_file": str(tmp_path / "green.png")}
    arrays = _region_arrays(content, region1=left, region1_style=red, region2=right)
    _, prepared = jobs.prepare_style(params, arrays)
    assert prepared["region2_style"][0] == [8, 8, 3]
    header, out = jobs.stylize(params, prepared, lambda m: None, threading.Event())
    lm = out["layer_mask"][1]
    np.testing.assert_array_equal(lm, np.clip(left + right, 0, 1))
    img = out["image"][1].reshape(40, 60, 4)
    assert np.abs(img[right > 0][:, :3] - [0.0, 1.0, 0.0]).max() < 1e-6  # green, from the file
    np.testing.assert_array_equal(img[lm == 0], content[lm == 0])
    assert seen[-1]["shape"] == (40, 60)
    header, out = jobs.stylize(dict(params, regions_rest="style"), dict(arrays, style=([8, 8, 4], red.tobytes())),
                               lambda m: None, threading.Event())
    assert "layer_mask" not in out  # the whole layer shows


def test_stylize_job_region_errors_name_the_argument(monkeypatch, tmp_path):
    from nst_engine.errors import InputError

    seen = []
    _fake_regions_api(monkeypatch, seen)
    content, left, right, selection, red, blue = _regions_setup()
    params = {"steps": 1, "size": 60, "region1_channel": "sky", "region2_channel": "sea"}
    outside = np.zeros((40, 60), np.float32)
    outside[:3, :] = 1.0  # above the selection
    cases = [
        ({}, dict(region1=left, region1_style=red, region2=right), "region2-style-layer", "region 2 has no style"),
        ({}, dict(region1=np.zeros((40, 60), np.float32), region1_style=red), "region1-channel", "selects no pixel"),
        ({}, dict(region1=outside, region1_style=red, mask=selection), "region1-channel", "inside the selection"),
        ({"method": "model", "model": "x"}, dict(region1=left, region1_style=red), "regions", "iterative method only"),
        ({"regions_rest": "style"}, dict(region1=left, region1_style=red), "regions-rest", "none is chosen"),
        ({"regions_rest": "sky"}, dict(region1=left, region1_style=red), "regions-rest", "must be one of"),
        ({"region1_style_file": str(tmp_path / "no.png")}, dict(region1=left), "region1-style-file", "no such file"),
        ({"region1_weight": -0.5}, dict(region1=left, region1_style=red), "region1-weight", "between 0 and 100"),
        ({"region1_weight": "2"}, dict(region1=left, region1_style=red), "region1-weight", "between 0 and 100"),
    ]
    for extra, arrs, argument, words in cases:
        mask = arrs.pop("mask", None)
        with pytest.raises(InputError) as e:
            jobs.stylize(dict(params, **extra), _region_arrays(content, mask, **arrs), lambda m: None,
                         threading.Event())
        assert e.value.argument == argument and words in str(e.value), (argument, str(e.value))
    assert not seen  # all refused before the engine ran
    # before the pixels are read: shapes
    for arrs, words in (({"region1": [40, 59], "content": [40, 60, 4]}, "must cover the image"),
                        ({"region3_style": [8, 8, 4], "content": [40, 60, 4]}, "has a style but no channel")):
        with pytest.raises(InputError, match=words):
            jobs.check_request("stylize", {"params": {}, "arrays": [{"name": n, "shape": s} for n, s in arrs.items()]}, 0)


def test_stylize_job_regions_on_the_real_engine():
    """VGG-19 at 48 px, 2 steps: two regions inside a selection change only there; regions that
    leave the rest no pixel while it takes the Style are refused in the plug-in's terms."""
    from nst_engine.errors import InputError

    content, left, right, selection, red, blue = _regions_setup()
    params = {"steps": 2, "size": 48, "layer_long_side": 60, "composite": "feather", "seed": 0,
              "region1_channel": "sky", "region2_channel": "sea"}
    arrays = _region_arrays(content, selection, region1=left, region1_style=red, region2=right, region2_style=blue)
    header, out = jobs.stylize(params, arrays, lambda m: None, threading.Event())
    img = out["image"][1].reshape(40, 60, 4)
    lm = out["layer_mask"][1]
    keep = (selection == 0) | ((left == 0) & (right == 0))
    np.testing.assert_array_equal(img[keep], content[keep])
    np.testing.assert_array_equal(lm[keep], 0)
    deep = np.zeros_like(selection, bool)
    deep[14:26, 18:22] = True  # well inside the selection and region 1 (past the feather)
    assert np.abs(img[deep][:, :3] - content[deep][:, :3]).mean() > 0.01
    assert header["info"]["method"] == "iterative" and header["info"]["regions"] == 2
    half = np.zeros((40, 60), np.float32)
    half[:, :30] = 1.0
    with pytest.raises(InputError, match="regions-rest.*cover the whole selection"):
        jobs.stylize(dict(params, regions_rest="style"),
                     _region_arrays(content, selection, region1=half, region1_style=red, region2=1 - half,
                                    region2_style=blue, style=blue),
                     lambda m: None, threading.Event())


def test_stylize_job_region_weights_reach_the_engine(monkeypatch):
    """regionK-weight (spec 5) becomes that region's `Region.weight`; unset, 1."""
    seen = []
    _fake_regions_api(monkeypatch, seen)
    content, left, right, selection, red, blue = _regions_setup()
    arrays = _region_arrays(content, selection, region1=left, region1_style=red, region2=right, region2_style=blue)
    jobs.stylize({"steps": 1, "size": 60, "region2_weight": 2.5}, arrays, lambda m: None, threading.Event())
    jobs.stylize({"steps": 1, "size": 60, "region1_weight": 0, "region2_weight": 100}, arrays, lambda m: None,
                 threading.Event())
    assert [s["weights"] for s in seen] == [[1.0, 2.5], [0.0, 100.0]]
