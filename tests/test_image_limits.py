"""Bad and hostile image inputs: decompression bombs, thin images, 16-bit PNG, NaN TIFFs, and the
CLI options around them (issue 11; each test is a row of the table in tests/README.md)."""
from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from imagefiles import write_bomb_png, write_png16
from nst_engine.cli import main
from nst_engine.errors import InputError
from nst_engine.image import read_image

REPO = Path(__file__).resolve().parents[1]
PEAK_RSS = """
import sys
from nst_engine.image import read_image
a = read_image(sys.argv[1], "image", max_side=int(sys.argv[2]))
with open("/proc/self/status") as f:  # VmHWM: this process's peak (ru_maxrss keeps the parent's across fork)
    peak_kb = next(int(line.split()[1]) for line in f if line.startswith("VmHWM:"))
print(a.shape[0], a.shape[1], peak_kb)
"""


def _png(path: Path, array: np.ndarray) -> Path:
    Image.fromarray(array).save(path)
    return path


# --------------------------------------------------------------------------------------------
# decompression bombs
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/status")
def test_bomb_is_decoded_reduced_in_little_memory(tmp_path: Path) -> None:
    """An 8000² grey PNG of 62 KB: the old reader peaked at 1.84 GB (28.8 B/px); decoded reduced
    for a 256 px run it must stay near the 64 MB of its 8-bit pixels."""
    bomb = tmp_path / "bomb.png"
    assert write_bomb_png(bomb, 8000, 8000) < 100_000
    out = subprocess.run([sys.executable, "-c", PEAK_RSS, str(bomb), "256"], capture_output=True, text=True,
                         check=True, cwd=REPO).stdout.split()
    h, w, peak_kb = (int(v) for v in out)
    assert (h, w) == (534, 534)  # 8000 // (2 * 256) = 15: long side 534 >= 2 * 256
    assert peak_kb < 400_000, f"peak RSS {peak_kb / 1e6:.2f} GB"


@pytest.mark.parametrize(("w", "h"), [(21000, 21000), (25000, 20000), (400_001, 1000)])
def test_images_over_the_limit_are_refused_from_the_header(tmp_path: Path, w: int, h: int) -> None:
    """441 MP is between Pillow's limit and twice it, where Pillow only warns."""
    path = tmp_path / "huge.png"
    write_bomb_png(path, w, h, pixels=False)  # a header and no pixels: any decoding would fail
    with pytest.raises(InputError, match=r"image too large: .* the limit is 400 MP"):
        read_image(path, "style")


def test_server_style_file_takes_the_reduced_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nst_engine import decode
    from nst_engine.bridge import jobs

    seen: list[Any] = []
    real = decode.decode
    monkeypatch.setattr(decode, "decode", lambda path, argument, max_side=None: seen.append(max_side) or real(
        path, argument, max_side))
    style = _png(tmp_path / "style.png", np.full((600, 900, 3), 128, np.uint8))
    content = np.zeros((100, 200, 4), np.float32)
    _, arrays = jobs.prepare_style({"style_file": str(style), "size": 64, "layer_long_side": 200},
                                   {"content": ([100, 200, 4], content)})
    assert seen == [64]  # the style is used at the processed long side (64 px)
    assert arrays["style"][0][:2] == [86, 129]  # reduced 900 // (2 * 64) = 7 times; the engine resizes on
    huge = tmp_path / "huge.png"
    write_bomb_png(huge, 21000, 21000, pixels=False)
    with pytest.raises(InputError, match="style-file=.*image too large"):
        jobs.prepare_style({"style_file": str(huge)}, {"content": ([100, 200, 4], content)})


def test_reduced_decoding_keeps_the_output_size_exact(tmp_path: Path) -> None:
    from nst_engine.image import fit_long_side, read_image_at

    rng = np.random.default_rng(0)
    photo = _png(tmp_path / "p.png", rng.integers(0, 256, (1333, 2001, 3), dtype=np.uint8))
    a = read_image_at(photo, "CONTENT", 300)
    assert a.shape[:2] == fit_long_side(1333, 2001, 300)
    full = read_image(photo)
    assert np.abs(a.mean(axis=(0, 1)) - full.mean(axis=(0, 1))).max() < 0.01


# --------------------------------------------------------------------------------------------
# thin images
# --------------------------------------------------------------------------------------------

def test_thin_images_run_in_the_api(style96: np.ndarray) -> None:
    from nst_engine import api, synthesis
    from nst_engine.config import StyleConfig
    from nst_engine.image import fit_long_side

    cfg = StyleConfig(size=64, steps=1)
    strip = np.random.default_rng(1).random((3, 128, 3), dtype=np.float32)
    assert api.stylize(strip, [style96], cfg).image.shape == (2, 64, 3)  # mirrored out, cropped back
    assert synthesis.texture(style96, cfg, shape=(5, 64)).image.shape == (5, 64, 3)
    assert api.stylize(style96, [strip], cfg).image.shape[:2] == fit_long_side(*style96.shape[:2], 64)  # thin style


def test_thin_images_run_in_the_cli(tmp_path: Path, style96: np.ndarray) -> None:
    strip = np.random.default_rng(1).random((3, 128, 3), dtype=np.float32)
    style = _png(tmp_path / "s.png", (style96 * 255).astype(np.uint8))
    thin = _png(tmp_path / "thin.png", (strip * 255).astype(np.uint8))
    assert main(["texture", str(style), "--height", "8", "--size", "64", "--steps", "1", "-o",
                 str(tmp_path / "t.png")]) == 0
    assert Image.open(tmp_path / "t.png").size == (64, 8)
    assert main(["stylize", str(thin), str(style), "--size", "64", "--steps", "1", "-o", str(tmp_path / "o.png")]) == 0
    assert Image.open(tmp_path / "o.png").size == (64, 2)


def test_thin_images_run_in_the_bridge(style96: np.ndarray) -> None:
    from nst_engine.bridge import jobs

    content = np.random.default_rng(2).random((4, 60, 4), dtype=np.float32)  # a thin layer in GIMP
    arrays = {"content": ([4, 60, 4], content), "style": (list(style96.shape), style96)}
    _, out = jobs.stylize({"steps": 1, "size": 64}, arrays, lambda m: None, threading.Event())
    assert out["image"][0] == [4, 60, 4]
    _, out = jobs.texture({"steps": 1, "size": 64, "shape": [3, 90]}, {"style": (list(style96.shape), style96)},
                          lambda m: None, threading.Event())
    assert out["image"][0] == [3, 90, 4]


def test_a_size_below_what_vgg_needs_names_the_size(tmp_path: Path, style96: np.ndarray,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    style = _png(tmp_path / "s.png", (style96 * 255).astype(np.uint8))
    assert main(["stylize", str(style), str(style), "--size", "8", "--steps", "1", "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "--size=8" in err and "16 px" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# formats
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("channels", [2, 3, 4])
def test_16_bit_png_keeps_16_bits(tmp_path: Path, channels: int) -> None:
    rng = np.random.default_rng(channels)
    deep = rng.integers(0, 65536, (9, 13, channels), dtype=np.uint16)
    write_png16(tmp_path / "deep.png", deep)  # rows use all five PNG filters
    a = read_image(tmp_path / "deep.png")
    ref = deep / 65535.0
    if channels == 2:  # grey + alpha
        ref = np.dstack([ref[..., 0]] * 3 + [ref[..., 1]])
    assert a.shape == ref.shape
    assert np.abs(a - ref).max() < 1e-7  # Pillow alone gives 8-bit steps (up to 255/65535)
    small = read_image(tmp_path / "deep.png", max_side=2)  # reduced 3x: the mean of 3x3 blocks
    assert small.shape[:2] == (3, 5) and abs(small[0, 0, 0] - ref[:3, :3, 0].mean()) < 1e-6


def test_nan_in_a_float_tiff_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import tifffile

    a = np.full((8, 8, 3), 0.5, np.float32)
    a[2, 3, 1] = np.nan
    tifffile.imwrite(tmp_path / "nan.tif", a, photometric="rgb")
    with pytest.raises(InputError, match="NaN or infinite") as e:
        read_image(tmp_path / "nan.tif", "CONTENT")
    assert "corrupt" not in str(e.value)
    assert main(["recolor", str(tmp_path / "nan.tif"), str(tmp_path / "nan.tif"), "-o", str(tmp_path / "o.png")]) == 2
    assert "NaN" in capsys.readouterr().err


def test_png_is_written_fast_and_read_back_exactly(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from nst_engine import pngwrite
    from nst_engine.image import write_image

    monkeypatch.setattr(pngwrite, "SLICE_BYTES", 1000)  # many slices compressed in parallel
    rng = np.random.default_rng(4)
    for shape in ((1, 1, 3), (37, 91, 3), (40, 50, 4)):
        img = rng.integers(0, 256, shape, dtype=np.uint8)
        write_image(tmp_path / "w.png", img)
        data = (tmp_path / "w.png").read_bytes()
        assert data[data.index(b"IDAT") + 4:][:2] == b"\x78\x01"  # zlib level 1 (fastest)
        np.testing.assert_array_equal(np.asarray(Image.open(tmp_path / "w.png")), img)


# --------------------------------------------------------------------------------------------
# CLI options
# --------------------------------------------------------------------------------------------

def test_max_memory_takes_units(tmp_path: Path, style96: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli.options import memory_gib

    assert memory_gib("2GB") == pytest.approx(2e9 / 2**30) and memory_gib("512MB") == pytest.approx(512e6 / 2**30)
    assert memory_gib("1.5GiB") == 1.5 and memory_gib("6") == 6.0
    style = _png(tmp_path / "s.png", (style96 * 255).astype(np.uint8))
    base = ["stylize", str(style), str(style), "--size", "32", "--steps", "1", "-o", str(tmp_path / "o.png")]
    assert main([*base, "--max-memory", "2GB"]) == 0
    assert main([*base, "--max-memory", "2XB"]) == 2
    assert "--max-memory" in capsys.readouterr().err


def test_model_tile_without_overlap_works(tmp_path: Path, style96: np.ndarray, capsys: pytest.CaptureFixture[str]) -> None:
    """`--model M --tile 64` with the --overlap the user never set: the tile and overlap pass
    stylize_model's checks (which run before the model is opened)."""
    photo = _png(tmp_path / "p.png", (style96 * 255).astype(np.uint8))
    code = main(["stylize", str(photo), "--model", str(tmp_path / "none.onnx"), "--tile", "64", "-o",
                 str(tmp_path / "o.png")])
    err = capsys.readouterr().err
    assert code == 2 and "overlap" not in err and "none.onnx" in err, err


def test_blend_errors_name_its_own_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    img = _png(tmp_path / "i.png", np.zeros((20, 30, 3), np.uint8))
    small = _png(tmp_path / "m.png", np.zeros((10, 10), np.uint8))
    assert main(["blend", str(img), str(img), str(small), "-o", str(tmp_path / "o.png")]) == 2
    err = capsys.readouterr().err
    assert "MASK=" in err and "--mask" not in err, err


def test_ctrl_c_with_snapshots_says_they_are_kept(tmp_path: Path, style96: np.ndarray, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli import optimizer

    class InterruptAtStep3(optimizer.ProgressBar):
        def __call__(self, p: Any) -> None:
            if p.step == 3:
                raise KeyboardInterrupt

    monkeypatch.setattr(optimizer, "ProgressBar", InterruptAtStep3)
    style = _png(tmp_path / "s.png", (style96 * 255).astype(np.uint8))
    out = tmp_path / "out.png"
    base = ["stylize", str(style), str(style), "--size", "32", "--steps", "4", "-o", str(out),
            "--content-layers", "relu1_1", "--style-layers", "relu1_1"]  # a one-layer network: fast
    assert main([*base, "--save-every", "1"]) == 130
    err = capsys.readouterr().err
    assert "nothing written" not in err and "2 snapshot(s) kept" in err and "out.step00002.png" in err, err
    assert not out.exists() and (tmp_path / "out.step00002.png").is_file()
    assert main(base) == 130
    assert "nothing written" in capsys.readouterr().err
