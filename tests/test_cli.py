"""`nst` through main(argv): outputs, and one-line errors with the right exit codes (issue #2)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nst_engine.cli import main


@pytest.fixture()
def images(tmp_path: Path, content96: np.ndarray, style96: np.ndarray) -> tuple[Path, Path]:
    c, s = tmp_path / "content.png", tmp_path / "style.jpg"
    Image.fromarray((content96 * 255).astype(np.uint8)).save(c)
    Image.fromarray((style96 * 255).astype(np.uint8)).save(s)
    return c, s


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".part")


def test_stylize_writes_image_and_snapshots(images: tuple[Path, Path], tmp_path: Path) -> None:
    c, s = images
    out = tmp_path / "out.png"
    code = main(["stylize", str(c), str(s), "-o", str(out), "--size", "40", "--steps", "4", "--save-every", "2",
                 "--style-layers", "relu1_1:2,relu2_1", "--content-layers", "conv4_2"])
    assert code == 0
    assert Image.open(out).size == (40, 40)
    assert (tmp_path / "out.step00002.png").is_file() and (tmp_path / "out.step00004.png").is_file()
    assert _leftovers(tmp_path) == []


def test_reconstruct_and_texture_commands(images: tuple[Path, Path], tmp_path: Path) -> None:
    c, s = images
    assert main(["reconstruct", str(c), "--layer", "relu2_1", "-o", str(tmp_path / "r.png"),
                 "--size", "32", "--steps", "3"]) == 0
    assert main(["texture", str(s), "-o", str(tmp_path / "t.png"), "--size", "40", "--height", "24",
                 "--steps", "3"]) == 0
    assert Image.open(tmp_path / "t.png").size == (40, 24)


def test_samples_and_builtin_styles(tmp_path: Path) -> None:
    out = tmp_path / "demo.png"
    assert main(["stylize", "sample:chelsea", "style:mosaic", "-o", str(out), "--size", "32", "--steps", "2"]) == 0
    assert Image.open(out).size[0] == 32


def _run_err(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--size", "0"], "--size=0"),
        (["--size", "30000"], "--size=30000"),
        (["--style-layers", "relu9_9"], "relu9_9"),
        (["--content-layers", "relu4_2:x"], "relu4_2:x"),
        (["--steps", "-1"], "--steps=-1"),
        (["--init", "/nonexistent.png"], "--init="),
        (["--style-blend", "1,2"], "--style-blend="),
        (["--weights", "/nonexistent.pth"], "--weights="),
    ],
)
def test_bad_options_exit_2_with_one_line(images: tuple[Path, Path], tmp_path: Path, extra: list[str],
                                          needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    c, s = images
    out = tmp_path / "out.png"
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(out), "--steps", "1", "--size", "16", *extra], capsys)
    assert code == 2, err
    assert needle in err and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_bad_files_exit_2(images: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    c, s = images
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(c.read_bytes()[:300])
    cases = [
        ([str(tmp_path / "missing.png"), str(s)], "no such file"),
        ([str(text), str(s)], "not an image"),
        ([str(c), str(truncated)], "truncated"),
        ([str(c), str(tmp_path)], "folder"),
    ]
    for inputs, needle in cases:
        code, err = _run_err(["stylize", *inputs, "-o", str(tmp_path / "o.png"), "--steps", "1"], capsys)
        assert code == 2 and needle in err and "Traceback" not in err, (inputs, err)
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "o.xyz")], capsys)
    assert code == 2 and "unknown image type" in err
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "nodir" / "o.png")], capsys)
    assert code == 2 and "does not exist" in err
    assert not (tmp_path / "o.png").exists()


def test_weights_that_are_not_vgg19(images: tuple[Path, Path], tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    c, s = images
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv1_1.weight": torch.zeros(8, 3, 3, 3), "conv1_1.bias": torch.zeros(8)}, wrong)
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "o.png"), "--weights", str(wrong)], capsys)
    assert code == 2 and "missing conv1_2.weight: not a VGG-19" in err, err
    shallow = ["--style-layers", "relu1_1", "--content-layers", "relu1_1"]
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "o.png"), "--weights", str(wrong), *shallow],
                         capsys)
    assert code == 2 and "(8, 3, 3, 3), VGG-19 needs (64, 3, 3, 3)" in err, err
    pickled = tmp_path / "evil.pth"
    torch.save({"x": Path("/")}, pickled)  # an arbitrary object: weights_only must refuse it
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "o.png"), "--weights", str(pickled)], capsys)
    assert code == 2 and "weights-only" in err, err


def test_nan_during_optimisation_exits_1_without_output(images: tuple[Path, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine import losses

    real = losses.Objective.__call__
    calls = {"n": 0}

    def poisoned(self, image):  # type: ignore[no-untyped-def]
        calls["n"] += 1
        total, parts = real(self, image)
        return (total * float("nan") if calls["n"] >= 3 else total), parts

    monkeypatch.setattr(losses.Objective, "__call__", poisoned)
    out = tmp_path / "o.png"
    code, err = _run_err(["stylize", str(images[0]), str(images[1]), "-o", str(out),
                          "--size", "24", "--steps", "10"], capsys)
    assert code == 1 and "diverged at step" in err and "Traceback" not in err, err
    assert not out.exists() and _leftovers(tmp_path) == []


def test_help_and_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert main(["stylize"]) == 2
    assert main([]) == 2
    assert main(["stylize", "a.png", "b.png", "-o", "x.png", "--optimizer", "sgd"]) == 2
    # Every command's help renders (a "%" in a help text once broke `nst stylize --help`).
    capsys.readouterr()
    for command in ("stylize", "reconstruct", "texture", "train", "blend", "recolor"):
        assert main([command, "--help"]) == 0, command
        assert "usage: nst " + command in capsys.readouterr().out


def test_torchvision_weights_need_cache_or_permission(images: tuple[Path, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    c, s = images
    code, err = _run_err(["stylize", str(c), str(s), "-o", str(tmp_path / "o.png"), "--weights", "torchvision"], capsys)
    assert code == 2 and "--allow-download" in err, err


def test_torchvision_layout_file_loads_with_its_own_preprocessing(tmp_path: Path) -> None:
    from nst_engine.encoders.weights import EXPECTED_SHAPES, _TV_CONV_INDEX, load_weights
    from nst_engine.encoders.vgg import CONV_NAMES

    gen = torch.Generator().manual_seed(0)
    state = {}
    for name, idx in zip(CONV_NAMES, _TV_CONV_INDEX, strict=True):
        state[f"features.{idx}.weight"] = torch.randn(EXPECTED_SHAPES[f"{name}.weight"], generator=gen) * 0.01
        state[f"features.{idx}.bias"] = torch.zeros(EXPECTED_SHAPES[f"{name}.bias"])
    path = tmp_path / "tv.pth"
    torch.save(state, path)
    w = load_weights(str(path), "relu3_1")
    assert w.preprocess == "torchvision" and "conv3_1.weight" in w.state and "conv4_1.weight" not in w.state
    torch.testing.assert_close(w.state["conv2_1.weight"], state["features.5.weight"])


def test_output_gets_the_usual_file_mode(tmp_path: Path) -> None:
    import os

    from nst_engine.image import write_image

    old = os.umask(0o022)
    try:
        out = write_image(tmp_path / "x.png", np.zeros((4, 4, 3), np.float32))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o644


def test_progress_bar_omits_a_missing_loss() -> None:
    import io
    import math

    from nst_engine.cli.progress import ProgressBar
    from nst_engine.optim import Progress

    out = io.StringIO()
    bar = ProgressBar(out, enabled=True)
    bar(Progress("model", 1, 2, math.nan, {}, 0.5, 0.5))
    bar(Progress("stylize", 2, 2, 1234.5, {}, 1.0, 0.0))
    text = out.getvalue()
    assert "nan" not in text and "loss 1.234e+03" in text


def test_tiff_keeps_16_bits(tmp_path: Path) -> None:
    import tifffile

    from nst_engine.errors import InputError
    from nst_engine.image import read_image, write_image

    rng = np.random.default_rng(0)
    deep = (rng.random((12, 17, 3)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "in16.tif", deep, photometric="rgb")
    a = read_image(tmp_path / "in16.tif")
    assert np.abs(a - deep / 65535.0).max() < 1e-6  # Pillow alone would give 8-bit steps
    gray = (rng.random((9, 8)) * 65535).astype(np.uint16)
    tifffile.imwrite(tmp_path / "gray16.tif", gray)
    assert np.abs(read_image(tmp_path / "gray16.tif")[..., 1] - gray / 65535.0).max() < 1e-6
    # Written back: 16 bits per channel (alpha too), at most half a 16-bit step from the input.
    rgba = rng.random((12, 17, 4)).astype(np.float32)
    write_image(tmp_path / "out.tif", rgba)
    back = tifffile.imread(tmp_path / "out.tif")
    assert back.dtype == np.uint16 and back.shape == (12, 17, 4)
    assert np.abs(read_image(tmp_path / "out.tif") - rgba).max() <= 0.5 / 65535 + 1e-7
    (tmp_path / "broken.tif").write_bytes((tmp_path / "out.tif").read_bytes()[:60])
    with pytest.raises(InputError, match="broken.tif"):
        read_image(tmp_path / "broken.tif")


# --- settings that were silently ignored: they work, or are refused (#11) ----------------------------


def test_texture_and_reconstruct_use_their_loss_weights(style96: np.ndarray, content96: np.ndarray) -> None:
    from nst_engine import synthesis
    from nst_engine.config import StyleConfig
    from nst_engine.errors import InputError

    # one step: the losses are those of the same (seeded) start image, so the weights show exactly
    base = StyleConfig(size=32, steps=1, style_layers=("relu1_1", "relu2_1"), tv_weight=0.5)
    one, two = (synthesis.texture(style96, base.replace(style_weight=w)).losses for w in (1.0, 2.0))
    assert two["style"] == pytest.approx(2 * one["style"]) and two["tv"] == pytest.approx(one["tv"])
    assert one["tv"] > 0
    with pytest.raises(InputError, match="style_weight"):
        synthesis.texture(style96, base.replace(style_weight=0.0))
    cfg = StyleConfig(size=32, steps=1)
    plain = synthesis.reconstruct(content96, "relu2_1", cfg).losses
    smooth = synthesis.reconstruct(content96, "relu2_1", cfg.replace(tv_weight=0.5, content_weight=2.0)).losses
    assert plain["tv"] == 0 and smooth["tv"] > 0 and smooth["content"] == pytest.approx(2 * plain["content"])
    with pytest.raises(InputError, match="content_weight"):
        synthesis.reconstruct(content96, "relu2_1", cfg.replace(content_weight=0.0))


def test_commands_refuse_settings_they_do_not_use(images: tuple[Path, Path], tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    c, s = images
    out = tmp_path / "o.png"
    cases = [
        (["texture", str(s), "--content-weight", "2"], "unrecognized arguments: --content-weight"),
        (["texture", str(s), "--preserve-colors", "luminance"], "unrecognized arguments: --preserve-colors"),
        (["texture", str(s), "--init", "content"], "--init='content': a texture starts from"),
        (["reconstruct", str(c), "--style-weight", "2"], "unrecognized arguments: --style-weight"),
        (["reconstruct", str(c), "--init", "style"], "--init='style': a reconstruction starts from"),
        (["stylize", str(c), "--model", "starry-night", "--steps", "100"],
         "--steps=100: applies to the iterative method"),
        (["stylize", str(c), "--model", "starry-night", "--size", "256"], "--size=256: applies to the iterative"),
        (["stylize", str(c), "--model", "starry-night", "--device", "cuda:1"], "--device='cuda:1': the model runner"),
        (["stylize", str(c), str(s), "--strength", "0.5"], "--strength=0.5: applies to --model only"),
        (["stylize", str(c), str(s), "--model-size", "256"], "--model-size=256: applies to --model only"),
        (["stylize", str(c), str(s), "--composite", "none"], "--composite='none': applies to a selection"),
        (["stylize", str(c), "--model", "starry-night", "--margin", "4"], "--margin=4: applies to a selection"),
    ]
    for argv, needle in cases:
        code, err = _run_err([*argv, "-o", str(out)], capsys)
        assert code == 2 and needle in err and "Traceback" not in err, (argv, err)
        assert not out.exists(), argv


def test_texture_and_reconstruct_weights_from_the_command_line(images: tuple[Path, Path], tmp_path: Path) -> None:
    c, s = images
    base = ["--size", "24", "--steps", "2", "--style-layers", "relu1_1"]
    outs = []
    for weight in ("1", "1e-6"):
        outs.append(tmp_path / f"t{weight}.png")
        assert main(["texture", str(s), *base, "--tv-weight", "1", "--style-weight", weight, "-o", str(outs[-1])]) == 0
    assert not np.array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[1])))
    outs = []
    for weight in ("0", "100"):
        outs.append(tmp_path / f"r{weight}.png")
        assert main(["reconstruct", str(c), "--layer", "relu1_1", "--size", "24", "--steps", "2", "--tv-weight", weight,
                     "-o", str(outs[-1])]) == 0
    assert not np.array_equal(np.asarray(Image.open(outs[0])), np.asarray(Image.open(outs[1])))


def test_model_tile_overlap_follows_the_tile(images: tuple[Path, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli import build_parser
    from nst_engine.options import default_overlap

    c, _ = images
    args = build_parser("stylize").parse_args(["stylize", str(c), "--model", "starry-night", "-o", "x.png"])
    assert args.overlap is None  # not set by the user: the run picks it from --tile
    assert (default_overlap(0), default_overlap(512), default_overlap(64)) == (128, 128, 16)
    out = tmp_path / "tiled.png"
    assert main(["stylize", str(c), "--model", "starry-night", "--tile", "64", "-q", "-o", str(out)]) == 0
    assert Image.open(out).size == Image.open(c).size
    code, err = _run_err(["stylize", str(c), "--model", "starry-night", "--tile", "64", "--overlap", "40",
                          "-o", str(tmp_path / "bad.png")], capsys)
    assert code == 2 and "--overlap=40: must be between 0 and tile/2 (32) px" in err, err
    assert not (tmp_path / "bad.png").exists()


def test_train_device_is_kept_or_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli import build_parser
    from nst_engine.cli.train import config_from_args

    base = ["train", "style:mosaic", "--content-dir", str(tmp_path), "-o", str(tmp_path / "m.onnx")]
    assert config_from_args(build_parser("train").parse_args([*base, "--device", "cuda:1"])).device == "cuda:1"
    for device, teacher, needle in (("gpu", [], "--device='gpu': must be auto, cpu, cuda or cuda:N"),
                                    ("cuda:x", [], "--device='cuda:x'"),
                                    ("cuda:1", ["--teacher", "t.onnx"], "--device='cuda:1': an .onnx --teacher runs on "
                                                                         "the first GPU")):
        code, err = _run_err([*base, "--device", device, *teacher], capsys)
        assert code == 2 and needle in err and "Traceback" not in err, (device, err)
