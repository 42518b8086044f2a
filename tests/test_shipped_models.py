"""The shipped feed-forward models, the torch-free model path, --model-size and colours on models."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import small
from nst_engine.cli import main
from nst_engine.color import split_yiq
from nst_engine.models import MARKER, PAINTINGS, list_models, load_model, model_catalog, stylize_model
from nst_engine.resample import resize, upscale_with_detail

ROOT = Path(__file__).resolve().parents[1]
REQUIRED = ("starry-night", "great-wave", "composition-vii")


def test_at_least_four_models_ship_with_the_three_named_ones() -> None:
    shipped = list_models()
    assert len(shipped) >= 4, shipped
    assert set(REQUIRED) <= set(shipped)


@pytest.mark.parametrize("name", list_models())
def test_every_shipped_model_has_metadata_and_runs(name: str) -> None:
    info = load_model(name, "cpu")
    assert info.metadata[MARKER] == "1"
    assert info.path.stat().st_size <= 2 * 1024**2  # ≤ 2 MB each
    assert info.shares_stats
    t = info.training
    for key in ("style", "steps_done", "train_minutes", "processor", "content_weight", "style_layers", "style_size"):
        assert key in t, key
    assert t["steps_done"] >= 500 and t["train_minutes"] > 0
    for k in ("output", "checkpoint", "resume", "preview", "teacher", "init", "content_dir", "style"):
        assert "/" not in str(t.get(k) or ""), (k, t[k])  # file names only: no local paths in a shipped file
    # The photo: 64 px, and the result is a stylized picture, not the photo nor a flat field.
    img = small("sample:chelsea", 64)
    out = stylize_model(img, name, device="cpu")
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.isfinite(out).all() and 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - img).mean() > 0.03
    assert out.std() > 0.03


@pytest.mark.parametrize(("env", "threads"), [("1", 1), ("3", 3), ("", 0), ("0", 0), ("two", 0)])
def test_onnxruntime_threads_follow_omp_num_threads(env: str, threads: int, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ray sets OMP_NUM_THREADS to a task's CPUs: a model session must not take every core
    monkeypatch.setenv("OMP_NUM_THREADS", env)
    info = load_model(REQUIRED[0], "cpu")
    assert info.session.get_session_options().intra_op_num_threads == threads
    img = small("sample:chelsea", 32)
    out = stylize_model(img, REQUIRED[0], device="cpu", model_size=0)
    assert out.shape[:2] == img.shape[:2] and np.isfinite(out).all()


def test_catalog_names_each_painting() -> None:
    entries = {e.name: e for e in model_catalog()}
    assert set(entries) == set(list_models())
    for name in REQUIRED:
        assert entries[name].painting == PAINTINGS[name]
        assert "steps" in entries[name].trained and " min on " in entries[name].trained


def test_nst_models_lists_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    for name in list_models():
        assert name in out
    assert PAINTINGS["great-wave"] in out
    assert main(["models", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {r["name"] for r in rows} == set(list_models())


def test_model_path_never_imports_torch(tmp_path: Path) -> None:
    """`nst stylize --model`, `nst models` and `--help` in a fresh interpreter: onnxruntime, numpy, Pillow only."""
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.fromarray((small("sample:coffee", 96) * 255).astype(np.uint8)).save(photo)
    code = (
        "import sys; from nst_engine.cli import main\n"
        "for argv in (['stylize', sys.argv[1], '--model', 'starry-night', '--model-size', '64', "
        "'--preserve-colors', 'luminance', '-q', '-o', sys.argv[2]], ['models'], ['stylize', '--help'], ['--help']):\n"
        "    try:\n        rc = main(argv)\n    except SystemExit as e:\n        rc = e.code\n"
        "    assert rc in (0, None), (argv, rc)\n"
        "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, "-c", code, str(photo), str(tmp_path / "out.png")], capture_output=True,
                       text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "NO-TORCH"
    assert (tmp_path / "out.png").is_file()


def test_detail_upscale_restores_a_gray_photo_exactly() -> None:
    """If the model changed nothing, shrinking and upscaling with the lost luminance detail gives the photo back."""
    gray = np.repeat(small("sample:astronaut", 128).mean(axis=2, keepdims=True), 3, axis=2)
    shrunk = resize(gray, 48, 48)
    back = upscale_with_detail(shrunk, gray, shrunk)
    assert np.abs(back - gray).max() < 1e-5
    plain = resize(shrunk, 128, 128)
    assert np.abs(plain - gray).mean() > 0.01  # plain Lanczos loses it


def test_model_size_paints_small_and_returns_full_size() -> None:
    img = small("sample:astronaut", 128)
    whole = stylize_model(img, "starry-night", device="cpu", model_size=0)
    shrunk = stylize_model(img, "starry-night", device="cpu", model_size=64)
    assert shrunk.shape == whole.shape == img.shape
    assert np.abs(shrunk - whole).mean() > 0.01  # painted at another scale
    # the photo's detail is back: the result's high frequencies follow the photo's
    from scipy.ndimage import gaussian_filter

    def hp(a: np.ndarray) -> np.ndarray:
        y = a.mean(axis=2)
        return (y - gaussian_filter(y, 1.5)).ravel()

    assert np.corrcoef(hp(shrunk), hp(img))[0, 1] > 0.3
    with pytest.raises(Exception, match="model_size"):
        stylize_model(img, "starry-night", model_size=10)


def test_preserve_colors_on_models() -> None:
    img = small("sample:coffee", 96)
    plain = stylize_model(img, "starry-night", device="cpu")
    lum = stylize_model(img, "starry-night", device="cpu", preserve_colors="luminance")
    _, iq_img = split_yiq(img)
    _, iq_plain = split_yiq(plain)
    _, iq_lum = split_yiq(lum)
    assert np.abs(iq_lum - iq_img).mean() < 0.25 * np.abs(iq_plain - iq_img).mean()  # the photo's chroma
    for mode in ("histogram", "linear"):
        out = stylize_model(img, "starry-night", device="cpu", preserve_colors=mode)
        # the photo's palette: channel means close to the photo's, unlike the plain model's
        shift = np.abs(out.mean((0, 1)) - img.mean((0, 1))).max()
        assert shift < 0.5 * np.abs(plain.mean((0, 1)) - img.mean((0, 1))).max() + 0.01
    with pytest.raises(Exception, match="preserve_colors"):
        stylize_model(img, "starry-night", preserve_colors="sepia")
