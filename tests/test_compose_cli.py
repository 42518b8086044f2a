"""`nst blend`, `nst recolor`, `nst stylize --mask` and the selection API end to end (#3)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from nst_engine import StyleConfig
from nst_engine.api import stylize_selection
from nst_engine.cli import main
from nst_engine.color import split_yiq


def _save(path: Path, arr: np.ndarray) -> Path:
    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def _ellipse(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return ((((yy - h / 2) / (h / 3)) ** 2 + ((xx - w / 2) / (w / 3)) ** 2) < 1).astype(np.float32)


def test_selection_outside_mask_is_untouched(content96: np.ndarray, style96: np.ndarray) -> None:
    mask = _ellipse(*content96.shape[:2])
    for composite in ("poisson", "feather", "none"):
        r = stylize_selection(content96, mask, [style96], StyleConfig(size=48, steps=5), composite=composite,
                              margin=8)
        outside = r.layer_mask == 0
        assert outside.any() and np.array_equal(r.image[outside], content96[outside]), composite
        assert np.abs(r.image[mask > 0] - content96[mask > 0]).mean() > 0.01, composite


def test_blend_cli(tmp_path: Path, content96: np.ndarray, style96: np.ndarray,
                   capsys: pytest.CaptureFixture[str]) -> None:
    src, tgt = _save(tmp_path / "s.png", style96), _save(tmp_path / "t.png", content96)
    mask = _save(tmp_path / "m.png", np.repeat(_ellipse(96, 96)[..., None], 3, axis=2))
    out = tmp_path / "o.png"
    assert main(["blend", str(src), str(tgt), str(mask), "-o", str(out), "--mode", "mixed"]) == 0
    o = np.asarray(Image.open(out))
    t = np.asarray(Image.open(tgt))
    outside = _ellipse(96, 96) == 0
    assert np.array_equal(o[outside], t[outside]) and not np.array_equal(o, t)
    assert main(["blend", str(src), str(tgt), str(mask), "-o", str(out), "--offset", "500,500"]) == 2
    assert "offset" in capsys.readouterr().err
    small = _save(tmp_path / "small.png", np.zeros((10, 10, 3)))
    assert main(["blend", str(src), str(tgt), str(small), "-o", str(out)]) == 2


def test_recolor_cli(tmp_path: Path, content96: np.ndarray, style96: np.ndarray) -> None:
    st, ct = _save(tmp_path / "st.png", style96), _save(tmp_path / "c.png", content96)
    out = tmp_path / "r.png"
    assert main(["recolor", str(st), str(ct), "-o", str(out)]) == 0
    r = np.asarray(Image.open(out), dtype=np.float32) / 255
    _, iq_r = split_yiq(r)
    _, iq_c = split_yiq(np.asarray(Image.open(ct), dtype=np.float32) / 255)
    assert np.abs(iq_r - iq_c).mean() < 2 / 255


def test_stylize_with_mask_cli(tmp_path: Path, content96: np.ndarray, style96: np.ndarray) -> None:
    c, s = _save(tmp_path / "c.png", content96), _save(tmp_path / "s.png", style96)
    m = _save(tmp_path / "m.png", np.repeat(_ellipse(96, 96)[..., None], 3, axis=2))
    out = tmp_path / "o.png"
    assert main(["stylize", str(c), str(s), "--mask", str(m), "--size", "32", "--steps", "3",
                 "--composite", "feather", "-o", str(out)]) == 0
    o, orig = np.asarray(Image.open(out)), np.asarray(Image.open(c))
    assert o.shape == orig.shape
    far = np.ones((96, 96), bool)
    far[10:86, 10:86] = False  # well outside the ellipse and its feather
    assert np.array_equal(o[far], orig[far])
    wrong = _save(tmp_path / "w.png", np.zeros((20, 30, 3)))
    assert main(["stylize", str(c), str(s), "--mask", str(wrong), "-o", str(out)]) == 2
