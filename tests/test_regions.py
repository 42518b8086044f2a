"""Spatial control (issue #12; Gatys et al. 2017, sec. 4): guided Grams, per-region styles.

The loss pieces run on the tiny seeded encoder; the runs through `stylize` and the CLI on the
real VGG-19 at ≤ 48 px."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tiny_encoder import TinyEncoder

from nst_engine.api import stylize
from nst_engine.cli import main
from nst_engine.cli.regions import load_regions, parse_region
from nst_engine.config import StyleConfig
from nst_engine.errors import InputError
from nst_engine.losses import ContentLoss, GramLoss, Objective, content_terms, style_terms
from nst_engine.ops import gram
from nst_engine.optim import optimize
from nst_engine.regions import (
    GuidedGramLoss,
    Region,
    guided_gram,
    guided_style_terms,
    layer_guidance,
    region_masks,
)


def _rand(*shape: int, seed: int, scale: float = 1.0) -> torch.Tensor:
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed)) * scale


def _halves(h: int, w: int, soft: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom masks; ``soft`` > 0: a linear ramp that many px wide across the middle."""
    y = np.arange(h, dtype=np.float32)[:, None] + 0.5
    top = np.clip((h / 2 - y) / soft + 0.5, 0, 1) if soft else (y < h / 2).astype(np.float32)
    top = np.broadcast_to(top, (h, w)).astype(np.float32)
    return top, (1 - top).astype(np.float32)


# --- the loss pieces (tiny encoder) -------------------------------------------------------------

def test_guided_gram_with_all_ones_guidance_is_the_plain_gram() -> None:
    f = _rand(1, 5, 7, 9, seed=0, scale=3)
    assert torch.allclose(guided_gram(f, torch.ones(1, 1, 7, 9)), gram(f), rtol=1e-6, atol=1e-6)
    # And the loss term: value and gradient equal GramLoss's.
    enc = TinyEncoder()
    style, x = _rand(1, 3, 16, 20, seed=1, scale=255), _rand(1, 3, 24, 28, seed=2, scale=255)
    plain = style_terms(enc, [style], (), ["relu1_1", "relu2_1"], (), 100.0)
    guided = guided_style_terms(enc, torch.ones(1, 1, 24, 28), (24, 28), [style], [None], (),
                                ["relu1_1", "relu2_1"], (), 100.0)
    assert all(isinstance(t, GuidedGramLoss) for t in guided) and all(isinstance(t, GramLoss) for t in plain)
    values = []
    for terms in (plain, guided):
        xx = x.clone().requires_grad_(True)
        feats = enc(xx, ["relu1_1", "relu2_1"])
        loss = sum(t(feats) for t in terms)
        assert isinstance(loss, torch.Tensor)
        loss.backward()
        values.append((loss.detach(), xx.grad))
    assert torch.allclose(values[0][0], values[1][0], rtol=1e-5)
    assert values[0][1] is not None and values[1][1] is not None
    assert torch.allclose(values[0][1], values[1][1], rtol=1e-4, atol=1e-6 * float(values[0][1].abs().max()))


def test_guided_gram_is_normalised_by_the_guidance_mass() -> None:
    # A stationary pattern: the Gram over any part of it is the Gram over all of it, whatever the
    # part's size, soft weights included (weights scale F∘T and the mass Σ T² alike).
    f = _rand(1, 4, 2, 2, seed=3).repeat(1, 1, 8, 8)  # 16×16, period 2
    whole = gram(f)
    small = torch.zeros(1, 1, 16, 16)
    small[..., 4:8, 2:6] = 1.0
    assert torch.allclose(guided_gram(f, small), whole, rtol=1e-5)
    assert torch.allclose(guided_gram(f, small * 0.25), whole, rtol=1e-5)
    # Without the mass normalisation (the map's size), the small region's Gram would be 16× smaller.
    assert not torch.allclose(gram(f * small), whole, rtol=0.5)


def test_guidance_is_area_pooled_to_each_layers_map() -> None:
    enc = TinyEncoder()
    top, _ = _halves(33, 35)  # odd sizes: pool1 floors 33×35 → 16×17
    feats = enc(torch.zeros(1, 3, 33, 35), ["relu1_1", "relu2_1"])
    g1 = layer_guidance(torch.from_numpy(top)[None, None], enc.geometry("relu1_1").stride, (33, 35))
    g2 = layer_guidance(torch.from_numpy(top)[None, None], enc.geometry("relu2_1").stride, (16, 17))
    assert g1.shape[-2:] == feats["relu1_1"].shape[-2:] and g2.shape[-2:] == feats["relu2_1"].shape[-2:]
    # Rows 0..15 are in, 16 is half in (y + 0.5 < 16.5), 17.. are out: at stride 2 row 8 (px 16, 17) is ½·½.
    assert torch.equal(g1, torch.from_numpy(top)[None, None])
    col = g2[0, 0, :, 0]
    assert torch.allclose(col[:8], torch.ones(8)) and float(col[8]) == pytest.approx(0.0)
    assert torch.allclose(col[9:], torch.zeros(7))


def test_uncovered_pixels_keep_the_content_exactly_beyond_the_receptive_field() -> None:
    # Only the top third has a style; pixels further than the deepest layer's receptive field from
    # it get no style gradient at all, so the optimiser leaves them at the content.
    enc = TinyEncoder()
    h, w = 48, 40
    content = _rand(1, 3, h, w, seed=4, scale=255)
    style = _rand(1, 3, 24, 24, seed=5, scale=255) ** 2 / 255
    mask = torch.zeros(1, 1, h, w)
    mask[..., :16, :] = 1.0
    layers = ["relu1_1", "relu2_1"]
    obj = Objective(enc, content=content_terms(enc, content, ["relu2_1"], (), 1.0),
                    style=guided_style_terms(enc, mask, (h, w), [style], [None], (), layers, (), 1e4))
    r = optimize(content.clone(), obj, steps=15, optimizer="lbfgs", lr=1.0)
    diff = (r.image - content).abs()
    rf = enc.geometry("relu2_1").receptive_field
    assert float(diff[..., : 16, :].mean()) > 2.0  # the styled part moved
    assert float(diff[..., 16 + rf:, :].max()) < 1e-3  # the far uncovered part did not
    # A plain (unguided) Gram loss would have moved it: the test can tell the two apart.
    plain = Objective(enc, content=[ContentLoss(t.layer, t.target, 1.0) for t in obj.content],
                      style=style_terms(enc, [style], (), layers, (), 1e4))
    r2 = optimize(content.clone(), plain, steps=15, optimizer="lbfgs", lr=1.0)
    assert float((r2.image - content).abs()[..., 16 + rf:, :].mean()) > 1.0


# --- masks and their errors ---------------------------------------------------------------------

def _region(mask: np.ndarray, style: np.ndarray | None = None, **kw: object) -> Region:
    return Region(mask, np.full((20, 20, 3), 0.5, np.float32) if style is None else style, **kw)  # type: ignore[arg-type]


def test_masks_are_resized_and_overlaps_normalised() -> None:
    a = np.ones((10, 20), np.float32)
    a[:, 10:] = 0.0
    b = np.full((30, 60), 0.8, np.float32)  # overlaps a's left half: sum 1.8 there
    masks, style_masks = region_masks([_region(a), _region(b)], (20, 40), rest_has_style=False)
    assert [m.shape for m in masks] == [(20, 40), (20, 40)] and style_masks == [None, None]
    total = masks[0] + masks[1]
    assert float(total.max()) <= 1.0 + 1e-6
    assert masks[0][5, 5] == pytest.approx(1 / 1.8) and masks[1][5, 5] == pytest.approx(0.8 / 1.8)
    assert masks[1][5, 35] == pytest.approx(0.8)  # no overlap: unchanged


@pytest.mark.parametrize(("regions", "argument", "words"), [
    ([_region(np.zeros((20, 40), np.float32))], "regions[0]", "empty"),
    ([_region(np.ones((20, 40), np.float32)), _region(_halves(20, 40)[0])], "regions[0]", "whole image"),
    ([_region(_halves(40, 81)[0]), _region(_halves(20, 44)[0])], "regions[1]", "aspect"),  # 1.25 % ok, 10 % not
    ([_region(_halves(20, 40)[0], weight=-1.0)], "regions[0]", "weight"),
    ([_region(_halves(20, 40)[0], style_mask=np.zeros((20, 20), np.float32))], "regions[0]", "style mask is empty"),
    ([_region(_halves(20, 40)[0], style_mask=np.ones((10, 20), np.float32))], "regions[0]", "aspect"),
    ([_region(np.full((20, 40), np.nan, np.float32))], "regions[0]", "NaN"),
    ([_region(np.ones((20, 40, 3), np.float32))], "regions[0]", "HxW"),
])
def test_bad_masks_are_refused_naming_the_region(regions: list[Region], argument: str, words: str) -> None:
    with pytest.raises(InputError, match=words) as e:
        region_masks(regions, (20, 40), rest_has_style=False)
    assert e.value.argument == argument


def test_a_full_mask_alone_is_fine_but_not_with_a_style_for_the_rest() -> None:
    full = np.ones((20, 40), np.float32)
    region_masks([_region(full)], (20, 40), rest_has_style=False)
    with pytest.raises(InputError, match="whole image"):
        region_masks([_region(full)], (20, 40), rest_has_style=True)


def test_cli_region_specs_and_unreadable_files(tmp_path: Path) -> None:
    s = parse_region("sky.png=style:swirls#sm.png:2.5")
    assert (s.mask, s.style, s.style_mask, s.weight) == ("sky.png", "style:swirls", "sm.png", 2.5)
    s = parse_region("a=b:0")
    assert (s.style, s.weight) == ("b", 0.0)
    assert parse_region("m.png=style:mosaic").style == "style:mosaic"
    for bad in ("nomask", "=x.png", "m.png=", "m.png=s.png:-1", "m.png=#sm.png"):
        with pytest.raises(InputError) as e:
            parse_region(bad)
        assert e.value.argument == "--region"
    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not a png")
    with pytest.raises(InputError, match="not an image") as e:
        load_regions([f"{junk}=style:swirls"], 48, 48)
    assert e.value.argument == "--region" and e.value.value == str(junk)
    with pytest.raises(InputError) as e:
        load_regions([f"{tmp_path / 'missing.png'}=style:swirls"], 48, 48)
    assert e.value.argument == "--region"


# --- whole runs (VGG-19, ≤ 48 px) ---------------------------------------------------------------

def _smooth_content(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([0.3 + 0.4 * xx / w, 0.4 + 0.2 * yy / h, 0.6 - 0.3 * xx / w], -1).astype(np.float32)


def _styles() -> tuple[np.ndarray, np.ndarray]:
    from conftest import small

    return small("style:swirls", 48), small("style:mosaic", 48)


def test_a_region_with_zero_weight_stays_the_photo(content96: np.ndarray) -> None:
    swirls, mosaic = _styles()
    top, bottom = _halves(96, 96)
    cfg = StyleConfig(size=48, steps=12, style_weight=5.0)
    r = stylize(content96, [], cfg, regions=[Region(top, swirls, 0.0), Region(bottom, mosaic, 1.0)])
    from skimage.transform import resize

    photo = resize(content96, r.image.shape[:2], anti_aliasing=True)
    d = np.abs(r.image - photo).mean(axis=(1, 2))  # per row
    kept, styled = float(d[:20].mean()), float(d[28:].mean())  # 4 rows each side of the seam left out
    assert styled > 0.03 and kept < 0.35 * styled, (kept, styled)


def _texture(channel: int, rng: np.random.Generator) -> np.ndarray:
    """A 48 px noise texture dominated by one colour channel."""
    from scipy.ndimage import gaussian_filter

    n = gaussian_filter(rng.random((48, 48, 3)), (1.5, 1.5, 0))
    n = (n - n.min()) / (n.max() - n.min())
    out = 0.15 + 0.2 * n
    out[..., channel] = 0.55 + 0.4 * n[..., channel]
    return out.astype(np.float32)


def _seam(image: np.ndarray) -> float:
    """How much of the colour change between the halves happens in one row: the largest row-to-row
    change of the mean row colour in the middle band (rows 18..30) over the change from the top
    band's mean colour to the bottom band's. A seam is one big jump (near 1); a soft transition
    spreads the change over many rows (near 1/width). Textures average out along a row."""
    profile = image.mean(axis=1)
    dy = np.linalg.norm(np.diff(profile, axis=0), axis=1)
    return float(dy[18:30].max() / np.linalg.norm(profile[30:36].mean(0) - profile[12:18].mean(0)))


def test_soft_masks_leave_no_seam() -> None:
    rng = np.random.default_rng(0)
    red, blue = _texture(0, rng), _texture(2, rng)
    content = _smooth_content(48, 48)
    # Shallow style layers: at 48 px the deep ones see the whole image, and in 30 steps the halves
    # would not yet differ enough to tell a seam from a soft transition.
    cfg = StyleConfig(size=48, steps=30, content_weight=0.02, style_layers=("relu1_1", "relu2_1", "relu3_1"))
    seams = {}
    for soft in (12.0, 0.0):
        top, bottom = _halves(48, 48, soft=soft)
        r = stylize(content, [], cfg, regions=[Region(top, red), Region(bottom, blue)])
        seams[soft] = _seam(r.image)
        assert float(np.abs(r.image - content).mean()) > 0.03  # it was stylized
    # Measured 0.12 (soft) and 0.33 (hard); over two texture seeds, 30 and 60 steps, with and
    # without L-BFGS's step cap: soft 0.12-0.19, hard 1.3-2.8x the soft one.
    assert seams[12.0] < 0.25, seams
    # The measure sees a seam where there is one: a hard mask's is well above the soft one's.
    assert seams[0.0] > 1.5 * seams[12.0], seams


def test_regions_coarse_to_fine_and_thin_images(content96: np.ndarray) -> None:
    swirls, mosaic = _styles()
    top, bottom = _halves(96, 96)
    # Two scales: the masks are resized at each; the zero-weight half still keeps the photo.
    r = stylize(content96, [], StyleConfig(scales=(32, 48), scale_steps=(8, 4), style_weight=5.0),
                regions=[Region(top, swirls, 0.0), Region(bottom, mosaic)])
    assert r.image.shape == (48, 48, 3) and r.steps == 12
    from skimage.transform import resize

    d = np.abs(r.image - resize(content96, (48, 48), anti_aliasing=True)).mean(axis=(1, 2))
    assert float(d[:20].mean()) < 0.5 * float(d[28:].mean()), d
    # A strip thinner than VGG-19 takes (mirrored out for the run): its masks are mirrored alike.
    strip = np.ascontiguousarray(content96[40:46])  # 6x96
    left = np.zeros((6, 96), np.float32)
    left[:, :48] = 1.0
    r = stylize(strip, [mosaic], StyleConfig(size=64, steps=3), regions=[Region(left, swirls)])
    assert r.image.shape == (4, 64, 3)


@pytest.mark.parametrize(("shape", "core"), [((72, 96), 24), ((96, 128), 48)])
def test_guided_grams_in_tiles_equal_one_pass(shape: tuple[int, int], core: int) -> None:
    """Spatial control in exact tiles (high resolution, --max-memory): a guided Gram is a sum over
    positions like a plain one, so the tiles' shares add up to the same loss and gradient."""
    from nst_engine.encoders.weights import get_encoder
    from nst_engine.regions import resize_mask
    from nst_engine.tiling import TiledObjective, tiles

    cpu = torch.device("cpu")
    layers = ("relu1_1", "relu2_1", "relu3_1")
    enc = get_encoder("caffe", "relu3_1", "max", cpu, False)
    g = torch.Generator().manual_seed(3)
    top, bottom = _halves(*shape, soft=6.0)
    s1, s2 = (torch.rand((1, 3, 48, 48), generator=g) * 255 for _ in range(2))
    terms = [*guided_style_terms(enc, resize_mask(top, shape, cpu), shape, [s1], [None], (), layers, (), 1.0),
             *guided_style_terms(enc, resize_mask(bottom, shape, cpu), shape, [s2], [None], (), layers, (), 2.0),
             *style_terms(enc, [s1], (), ("relu2_1",), (), 0.5)]  # a plain Gram beside them
    content = torch.rand((1, 3, *shape), generator=g) * 255
    obj = Objective(enc, content=content_terms(enc, content, ["relu2_1"], (), 1.0), style=terms)
    x = torch.rand((1, 3, *shape), generator=g) * 255
    assert len(tiles(shape, core, "relu3_1")) > 2
    total, parts, grad = obj.value_and_grad(x)
    t_total, t_parts, t_grad = TiledObjective(obj, core).value_and_grad(x)
    assert grad is not None and t_grad is not None
    assert float(t_parts["style"]) == pytest.approx(float(parts["style"]), rel=1e-5)
    assert float(t_total) == pytest.approx(float(total), rel=1e-5)
    assert float((t_grad - grad).abs().max()) <= 1e-4 * float(grad.abs().max())


def test_stylize_with_regions_in_tiles_and_a_rest_style_with_no_room() -> None:
    swirls, mosaic = _styles()
    top, bottom = _halves(48, 48)
    content = _smooth_content(48, 48)
    cfg = StyleConfig(size=48, steps=3, optimizer="adam", lr=4.0, precision="fp32",
                      style_layers=("relu1_1", "relu2_1", "relu3_1"), content_layers=("relu2_2",))
    regions = [Region(top, swirls), Region(bottom, mosaic)]
    whole = stylize(content, [], cfg, regions=regions)
    stages: list[str] = []
    tiled = stylize(content, [], cfg.replace(tile=16), regions=regions, callback=lambda p: stages.append(p.stage))
    assert "tiles" in stages[0]
    assert np.allclose(whole.history, tiled.history, rtol=1e-4)
    with pytest.raises(InputError, match="cover the whole image") as e:
        stylize(content, [mosaic], StyleConfig(size=48, steps=1),
                regions=[Region(top, swirls), Region(bottom, mosaic)])
    assert e.value.argument == "styles"


def test_cli_two_regions_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    h, w = 36, 48
    top, bottom = _halves(h, w)
    photo, sky, ground = tmp_path / "photo.png", tmp_path / "sky.png", tmp_path / "ground.png"
    Image.fromarray((_smooth_content(h, w) * 255).astype(np.uint8)).save(photo)
    Image.fromarray((top * 255).astype(np.uint8)).save(sky)
    Image.fromarray((bottom * 255).astype(np.uint8)).resize((96, 72)).save(ground)  # any size, same aspect
    out = tmp_path / "out.png"
    code = main(["stylize", str(photo), "--region", f"{sky}=style:swirls", "--region", f"{ground}=style:mosaic:2",
                 "--size", "48", "--steps", "8", "--style-weight", "20", "-q", "-o", str(out)])
    assert code == 0, capsys.readouterr().err
    result = np.asarray(Image.open(out)).astype(np.float32) / 255
    assert result.shape == (h, w, 3)
    assert float(np.abs(result - _smooth_content(h, w)).mean()) > 0.01
    # Bad inputs: one line naming --region, exit code 2.
    Image.fromarray(np.zeros((h, w), np.uint8)).save(tmp_path / "empty.png")
    Image.fromarray((top * 255).astype(np.uint8)).resize((48, 48)).save(tmp_path / "square.png")
    for spec, words in ((f"{tmp_path / 'empty.png'}=style:swirls", "empty"),
                        (f"{tmp_path / 'square.png'}=style:swirls", "aspect"),
                        (f"{tmp_path / 'nope.png'}=style:swirls", "--region")):
        capsys.readouterr()
        assert main(["stylize", str(photo), "--region", spec, "--size", "48", "--steps", "1", "-o", str(out)]) == 2
        err = capsys.readouterr().err
        assert "--region" in err and words in err and err.count("\n") == 1, err
    # regions run in tiles too (exact: tests above), here through the CLI
    assert main(["stylize", str(photo), "--region", f"{sky}=style:swirls", "--tile", "32", "--size", "48",
                 "--steps", "2", "-o", str(out)]) == 0, capsys.readouterr().err
