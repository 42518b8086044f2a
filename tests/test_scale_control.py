"""Scale control (issue #12; Gatys et al. 2017, sec. 6) and mixed transfer with two models.

The runs use the real VGG-19 at 32-64 px with the shipped styles (mosaic: warm multicoloured
strokes; swirls: blue), and the shipped feed-forward models at 64 px."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import small
from PIL import Image
from skimage.transform import resize

from nst_engine.api import stylize
from nst_engine.cli import main
from nst_engine.config import StyleConfig
from nst_engine.encoders.weights import get_encoder
from nst_engine.errors import InputError
from nst_engine.image import to_tensor
from nst_engine.losses import Objective, style_terms
from nst_engine.model_mix import parse_mix, stylize_mixed
from nst_engine.models import stylize_model
from nst_engine.options import StylizeOptions
from nst_engine.scale_control import style_targets

# Two scales, the coarse one at half size; enough steps for each scale to take its style's look.
CFG = StyleConfig(scales=(32, 64), scale_steps=(20, 10), style_weight=5.0, device="cpu")


@pytest.fixture(scope="module")
def pictures() -> dict[str, np.ndarray]:
    return {"content": small("sample:astronaut", 64), "A": small("style:mosaic", 64), "B": small("style:swirls", 64)}


@pytest.fixture(scope="module")
def runs(pictures: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    c, a, b = pictures["content"], pictures["A"], pictures["B"]
    return {"mix": stylize(c, [], CFG, scale_styles=[a, b]).image,  # A coarse, B fine
            "A": stylize(c, [a], CFG).image, "B": stylize(c, [b], CFG).image}


def _gram_loss(image: np.ndarray, style: np.ndarray, side: int = 64) -> float:
    """The plain Gram loss of ``image`` against the square ``style`` at ``side`` px."""
    cpu = torch.device("cpu")
    encoder = get_encoder("caffe", "relu5_1", "max", cpu)
    terms = style_terms(encoder, [to_tensor(style, (side, side), cpu)], (), CFG.style_layers, (), 1.0)
    with torch.no_grad():
        return float(Objective(encoder, style=terms)(to_tensor(image, image.shape[:2], cpu))[0])


def _low(image: np.ndarray) -> np.ndarray:
    """The picture's large structure: its colours at 4x4 px."""
    return resize(image, (4, 4), anti_aliasing=True)


def test_the_last_scale_takes_style_b(runs: dict[str, np.ndarray], pictures: dict[str, np.ndarray]) -> None:
    # Fine texture: against B, A coarse + B fine is far closer than A at every scale.
    mix, only_a = _gram_loss(runs["mix"], pictures["B"]), _gram_loss(runs["A"], pictures["B"])
    assert mix < 0.5 * only_a, (mix, only_a)


def test_the_coarse_scale_keeps_style_a_large_structure(runs: dict[str, np.ndarray]) -> None:
    # Large structure (4x4 px colours): nearer the run with A everywhere than the one with B.
    to_a = float(np.abs(_low(runs["mix"]) - _low(runs["A"])).mean())
    to_b = float(np.abs(_low(runs["mix"]) - _low(runs["B"])).mean())
    assert to_a < 0.5 * to_b, (to_a, to_b)
    # ... and the result is neither single-style run.
    for name in ("A", "B"):
        assert float(np.abs(runs["mix"] - runs[name]).mean()) > 0.02, name


def test_each_scale_uses_its_own_style(pictures: dict[str, np.ndarray]) -> None:
    c, a, b = pictures["content"], pictures["A"], pictures["B"]
    coarse_only = CFG.replace(scale_steps=(4, 0))  # the result is the coarse scale's, upsampled
    assert np.array_equal(stylize(c, [], coarse_only, scale_styles=[a, b]).image,
                          stylize(c, [a], coarse_only).image)
    assert np.array_equal(stylize(c, [], coarse_only, scale_styles=[b, a]).image,
                          stylize(c, [b], coarse_only).image)


def test_style_at_two_sizes(pictures: dict[str, np.ndarray]) -> None:
    c, a = pictures["content"], pictures["A"]
    cfg = StyleConfig(size=32, steps=4, style_weight=5.0, device="cpu")
    # The targets: each image at each size, image by image, weighted per size.
    tensors, blend, first = style_targets([a, a[:32]], 40, cfg.replace(style_scales=(0.5, 2.0), style_blend=(1.0, 3.0)),
                                          torch.device("cpu"))
    assert [tuple(t.shape[2:]) for t in tensors] == [(20, 20), (80, 80), (10, 20), (40, 80)]
    assert blend == (1.0, 3.0, 1.0, 3.0) and first == 20
    one = stylize(c, [a], cfg).image
    assert np.array_equal(stylize(c, [a], cfg.replace(style_scales=(1.0,))).image, one)  # one size: as before
    # Both sizes act: against the style at 16 px, the mix is nearer than the run with the style at
    # 64 px alone, and against 64 px nearer than the run with 16 px alone.
    cfg = cfg.replace(steps=12)
    small_only, large_only, both = (stylize(c, [a], cfg.replace(style_scales=f)).image
                                    for f in ((0.5,), (2.0,), (0.5, 2.0)))
    assert _gram_loss(both, a, 16) < 0.6 * _gram_loss(large_only, a, 16)
    assert _gram_loss(both, a, 64) < 0.6 * _gram_loss(small_only, a, 64)


def test_api_refuses_what_does_not_fit(pictures: dict[str, np.ndarray]) -> None:
    c, a, b = pictures["content"], pictures["A"], pictures["B"]
    cases = [
        (dict(styles=[a], scale_styles=[a, b]), CFG, "scale_styles", "one or the other"),
        (dict(styles=[], scale_styles=[a]), CFG, "scale_styles", "one style image per scale: 2 scales"),
        (dict(styles=[], scale_styles=[a, b]), StyleConfig(size=64), "scale_styles", "explicit scales"),
        (dict(styles=[], scale_styles=[a, b]), CFG.replace(style_blend=(1.0, 2.0)), "style_blend", "nothing to blend"),
        (dict(styles=[a]), CFG.replace(style_scales=(0.1, 1.0)), "style_scales", "VGG-19 needs at least"),
    ]
    for kw, cfg, argument, reason in cases:
        with pytest.raises(InputError, match=reason) as e:
            stylize(c, kw["styles"], cfg, scale_styles=kw.get("scale_styles", ()))
        assert e.value.argument == argument
    with pytest.raises(InputError, match="not both") as e:
        StyleConfig(style_scale=2.0, style_scales=(0.5, 2.0)).check()
    assert e.value.argument == "style_scales"


def test_cli_scale_styles_runs(tmp_path: Path, pictures: dict[str, np.ndarray]) -> None:
    paths = []
    for name in ("content", "A", "B"):
        paths.append(tmp_path / f"{name}.png")
        Image.fromarray((pictures[name] * 255).round().astype(np.uint8)).save(paths[-1])
    out = tmp_path / "out.png"
    assert main(["stylize", str(paths[0]), "--scales", "32,48", "--scale-steps", "2,1", "--scale-styles",
                 f"{paths[1]},{paths[2]}", "-q", "-o", str(out)]) == 0
    assert Image.open(out).size == (48, 48)
    assert main(["stylize", str(paths[0]), str(paths[1]), "--size", "32", "--steps", "2", "--style-scales", "0.5,2",
                 "--style-blend", "1,3", "-q", "-o", str(out)]) == 0


@pytest.mark.parametrize("extra, message", [
    (["--scale-styles", "{A},{B}"], "--scale-styles=('{A}', '{B}'): needs explicit scales"),
    (["--scales", "32,64", "--scale-styles", "{A}"], "needs one style image per scale: 2 scales (32,64), 1 style"),
    (["{A}", "--scales", "32,64", "--scale-styles", "{A},{B}"], "--scale-styles=('{A}', '{B}'): the per-scale styles"),
    (["--region", "{A}={B}", "--scales", "32,64", "--scale-styles", "{A},{B}"], "--scale-styles=('{A}', '{B}'): not with "
                                                                                "spatial control"),
    (["--mask", "{A}", "--scales", "32,64", "--scale-styles", "{A},{B}"], "--scale-styles=('{A}', '{B}'): not with --mask"),
    (["--model", "starry-night", "--scale-styles", "{A},{B}"], "--scale-styles=('{A}', '{B}'): applies to the iterative"),
    (["--scales", "32,64", "--scale-styles", "{A},{B}", "--style-blend", "1,2"], "--style-blend=(1.0, 2.0): one style "
                                                                                 "image per scale"),
    (["{A}", "--style-scales", "0.5,2", "--style-scale", "2"], "--style-scales=(0.5, 2.0): give style_scale or"),
    (["{A}", "--style-scales", "0.5,2", "--style-blend", "1,2,3"], "--style-blend=(1.0, 2.0, 3.0): with style_scales"),
    (["{A}", "--style-scales", "0.001"], "--style-scales=(0.001,): each must be between 0.01 and 16"),
    (["{A}", "--model-mix", "great-wave"], "--model-mix='great-wave': needs --model"),
    (["--model", "starry-night", "--model-mix", "no-such-model"], "--model-mix='no-such-model': no such model"),
    (["--model", "starry-night", "--model-mix", "great-wave:1.5"], "--model-mix='great-wave:1.5': the weight after"),
])
def test_cli_bad_inputs_exit_2_naming_the_argument(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   extra: list[str], message: str) -> None:
    names = {"A": str(tmp_path / "a.png"), "B": str(tmp_path / "b.png")}
    for path in names.values():
        Image.new("RGB", (32, 32), (200, 40, 40)).save(path)
    content = tmp_path / "c.png"
    Image.new("RGB", (32, 32), (40, 40, 200)).save(content)
    out = tmp_path / "out.png"
    argv = ["stylize", str(content), *[e.format(**names) for e in extra], "-q", "-o", str(out)]
    assert main(argv) == 2
    assert message.format(**names) in capsys.readouterr().err
    assert not out.exists()


def test_texture_refuses_style_scales(tmp_path: Path) -> None:
    path = tmp_path / "s.png"
    Image.new("RGB", (32, 32), (200, 40, 40)).save(path)
    assert main(["texture", str(path), "--style-scales", "0.5,2", "-o", str(tmp_path / "t.png")]) == 2


# --- mixed transfer: two models' outputs blended ---------------------------------------------------

def test_model_mix_blends_the_two_paintings(pictures: dict[str, np.ndarray], tmp_path: Path) -> None:
    c = pictures["content"]
    opts = StylizeOptions(method="model", model="starry-night", strength=0.6)
    cfg = StyleConfig(device="cpu")
    # Each model's painting at --strength 0.6 (its cross-fade with the photo), then the two mixed:
    # the same as the mixed painting cross-faded with the photo.
    a, b = (stylize_model(c, m, device="cpu", strength=0.6) for m in ("starry-night", "great-wave"))
    mixed = stylize_mixed(c, None, cfg, opts, "great-wave", 0.25).image
    np.testing.assert_allclose(mixed, 0.75 * a + 0.25 * b, atol=2e-6)
    assert float(np.abs(mixed - a).mean()) > 0.01  # the second model counts
    assert parse_mix("great-wave") == ("great-wave", 0.5) and parse_mix("great-wave:0") == ("great-wave", 0.0)
    # The command line writes the same picture (8-bit).
    src, out = tmp_path / "c.png", tmp_path / "m.png"
    Image.fromarray((c * 255).round().astype(np.uint8)).save(src)
    assert main(["stylize", str(src), "--model", "starry-night", "--model-mix", "great-wave:0.25", "--strength", "0.6",
                 "--device", "cpu", "-q", "-o", str(out)]) == 0
    written = np.asarray(Image.open(out), dtype=np.float32) / 255
    c8 = np.asarray(Image.open(src), dtype=np.float32) / 255
    a8, b8 = (stylize_model(c8, m, device="cpu", strength=0.6) for m in ("starry-night", "great-wave"))
    assert np.abs(written - (0.75 * a8 + 0.25 * b8)).max() <= 1 / 255 + 1e-6


def test_model_mix_in_a_selection(pictures: dict[str, np.ndarray], tmp_path: Path) -> None:
    src, mask, out = tmp_path / "c.png", tmp_path / "m.png", tmp_path / "o.png"
    Image.fromarray((pictures["content"] * 255).round().astype(np.uint8)).save(src)
    m = np.zeros((64, 64), np.uint8)
    m[16:48, 16:48] = 255
    Image.fromarray(m).save(mask)
    assert main(["stylize", str(src), "--model", "starry-night", "--model-mix", "great-wave", "--mask", str(mask),
                 "--composite", "none", "--device", "cpu", "-q", "-o", str(out)]) == 0
    written, original = np.asarray(Image.open(out)), np.asarray(Image.open(src))
    assert np.array_equal(written[m == 0], original[m == 0])  # outside the selection: the photo
    assert np.abs(written[m > 0].astype(int) - original[m > 0]).mean() > 10  # inside: painted
