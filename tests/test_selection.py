"""The one selection workflow (`nst_engine.selection`, #11): the API, `nst stylize --mask` and the bridge's
job give the same result, with the same size rule (the whole image's scale)."""
from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nst_engine import api, selection
from nst_engine.bridge import jobs
from nst_engine.cli import main
from nst_engine.config import StyleConfig
from nst_engine.errors import Cancelled, InputError
from nst_engine.image import fit_long_side
from nst_engine.options import StylizeOptions

FAST = {"content_layers": ("relu2_1",), "style_layers": ("relu1_1", "relu2_1")}  # a shallow network: fast


def _png(path: Path, a: np.ndarray) -> Path:
    Image.fromarray((np.clip(a, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255.0


def _ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return (((yy - h / 2) / (h / 4)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2 < 1).astype(np.float32)


@pytest.fixture()
def files(tmp_path: Path, content96: np.ndarray, style96: np.ndarray) -> dict[str, Any]:
    """The content, a 48 px style and an elliptic mask as 8-bit PNGs, and their pixels as read back."""
    paths = {"content": _png(tmp_path / "c.png", content96), "style": _png(tmp_path / "s.png", style96[::2, ::2]),
             "mask": _png(tmp_path / "m.png", _ellipse(*content96.shape[:2]))}
    return {"paths": paths, **{k: _read(p) for k, p in paths.items()}}


def test_model_selection_is_the_same_through_api_cli_and_bridge(files: dict[str, Any], tmp_path: Path) -> None:
    content, mask = files["content"], files["mask"]
    options = StylizeOptions(method="model", model="starry-night")
    ref = selection.stylize_selection(content, mask, (), StyleConfig(), options)
    outside = mask == 0
    assert np.array_equal(ref.image[outside], content[outside]) and ref.info["method"] == "model"
    assert np.abs(ref.image - content)[mask == 1].mean() > 0.02
    # the layer through its mask over the original is the composite
    shown = ref.layer_mask[..., None] * ref.layer + (1 - ref.layer_mask[..., None]) * content
    np.testing.assert_allclose(shown, ref.image, atol=1e-5)

    out = tmp_path / "cli.png"
    assert main(["stylize", str(files["paths"]["content"]), "--model", "starry-night", "--mask",
                 str(files["paths"]["mask"]), "-q", "-o", str(out)]) == 0
    np.testing.assert_allclose(_read(out), ref.image, atol=0.5 / 255 + 1e-6)

    rgba = np.concatenate([content, np.ones(content.shape[:2] + (1,), np.float32)], axis=2)
    arrays = {"content": (list(rgba.shape), rgba.tobytes()), "mask": (list(mask.shape), mask.tobytes())}
    header, got = jobs.stylize({"method": "model", "model": "starry-night", "layer_long_side": 96}, arrays,
                               lambda m: None, threading.Event())
    layer = got["image"][1].reshape(rgba.shape)[..., :3]
    lm = got["layer_mask"][1].reshape(mask.shape)[..., None]
    np.testing.assert_allclose(lm * layer + (1 - lm) * content, ref.image, atol=1e-5)


def test_iterative_selection_is_the_same_through_api_and_cli(files: dict[str, Any], tmp_path: Path) -> None:
    content, mask, style = files["content"], files["mask"], files["style"]
    cfg = StyleConfig(size=96, steps=3, **FAST)  # type: ignore[arg-type]
    ref = api.stylize_selection(content, mask, [style], cfg, composite="feather", margin=8)
    assert ref.info["steps"] == 3 and np.abs(ref.image - content)[mask == 1].mean() > 0.01
    out = tmp_path / "cli.png"
    paths = files["paths"]
    assert main(["stylize", str(paths["content"]), str(paths["style"]), "--mask", str(paths["mask"]),
                 "--size", "96", "--steps", "3", "--content-layers", "relu2_1", "--style-layers", "relu1_1,relu2_1",
                 "--composite", "feather", "--margin", "8", "-q", "-o", str(out)]) == 0
    np.testing.assert_allclose(_read(out), ref.image, atol=0.5 / 255 + 1e-6)


def _fake_stylize(monkeypatch: pytest.MonkeyPatch, stopped: bool = False) -> list[StyleConfig]:
    seen: list[StyleConfig] = []

    def fake(content: np.ndarray, styles: Any, config: StyleConfig, callback: Any = None,
             stop: Any = None) -> api.StyleResult:
        seen.append(config)
        h, w = fit_long_side(*content.shape[:2], config.size)
        return api.StyleResult(np.full((h, w, 3), 0.25, np.float32), 0.0, {}, [], config.steps, stopped, 0.0, "cpu")

    monkeypatch.setattr(api, "stylize", fake)
    return seen


def test_a_selection_is_processed_at_the_whole_images_scale(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = _fake_stylize(monkeypatch)
    image = np.random.default_rng(0).random((200, 300, 3), dtype=np.float32)
    mask = np.zeros((200, 300), np.float32)
    mask[50:150, 100:260] = 1.0  # 160 x 100 px
    style = [np.zeros((16, 16, 3), np.float32)]
    run = selection.stylize_selection
    r = run(image, mask, style, StyleConfig(size=150), StylizeOptions(margin=0, composite="none"))
    assert seen[-1].size == 80 and r.info["processed"] == [50, 80]  # 160 px at 150/300: 80 px, not 150
    assert r.image.shape == image.shape and np.all(r.image[mask == 1] == 0.25)
    run(image, mask, style, StyleConfig(size=150), StylizeOptions(margin=0), reference_long=600)
    assert seen[-1].size == 64  # 40 px at the layer's scale; at least 64 px are processed
    run(image, mask, style, StyleConfig(scales=(150, 300)), StylizeOptions(margin=0))
    assert (seen[-1].size, seen[-1].scales) == (160, (80, 160))  # the schedule scaled alike
    run(image, None, style, StyleConfig(size=150))
    assert seen[-1].size == 150  # no selection: the whole image at --size
    # a 96 px photo at --size 48: an 80 px crop would be 40 px; at least 64 are processed
    assert selection.crop_config(StyleConfig(size=48), 80, 96).size == 64


def test_crop_schedules_keep_their_steps() -> None:
    cfg = StyleConfig(scales=(64, 128, 256), scale_steps=(10, 20, 30))
    c = selection.crop_config(cfg, 128, 256)
    assert (c.size, c.scales, c.scale_steps) == (128, (32, 64, 128), (10, 20, 30))
    c = selection.crop_config(StyleConfig(scales=(255, 256), scale_steps=(5, 7)), 10, 256)
    assert (c.size, c.scales, c.scale_steps) == (40, (40,), (7,))  # a scale no coarser than the next is left out
    # one step count per scale, or a clear error (a crop used to drop the unmatched scales silently)
    with pytest.raises(InputError, match="scale_steps"):
        StyleConfig(scales=(64, 128, 256), scale_steps=(10, 20)).check()


def test_stop_cancels_the_iterative_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_stylize(monkeypatch, stopped=True)
    image = np.zeros((40, 40, 3), np.float32)
    mask = np.zeros((40, 40), np.float32)
    mask[10:20, 10:20] = 1
    with pytest.raises(Cancelled):
        selection.stylize_selection(image, mask, [image], StyleConfig(size=40))


def test_no_selection_with_a_model_is_the_plain_model_run(content96: np.ndarray) -> None:
    from nst_engine.models import stylize_model

    rgba = np.concatenate([content96, np.full(content96.shape[:2] + (1,), 0.5, np.float32)], axis=2)
    r = selection.stylize_selection(rgba, None, (), StyleConfig(device="cpu"),
                                    StylizeOptions(method="model", model="starry-night", strength=0.5))
    plain = stylize_model(content96, "starry-night", device="cpu", strength=0.5)
    np.testing.assert_array_equal(r.layer, plain)
    assert r.image.shape == rgba.shape and np.array_equal(r.image[..., 3], rgba[..., 3])
    assert r.bbox == (0, 0, 96, 96) and np.all(r.layer_mask == 1)
