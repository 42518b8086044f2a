"""The iterative method's time estimate: the fit, the per-machine cache, the plan's scales, and the
pure-Python copy the GIMP dialog uses (nst_engine.bridge.timing)."""
from __future__ import annotations

import json

import pytest
import torch

from nst_engine import config as config_module
from nst_engine import estimate, plan
from nst_engine.bridge import timing
from nst_engine.config import StyleConfig
from nst_engine.encoders.vgg import resolve_precision
from nst_engine.errors import InputError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache" / "step-cost.json"


def _cost(a=0.1, b=1e-5):
    return estimate.StepCost(a, b, {"device": "cpu", "processor": "test"})


# --------------------------------------------------------------------------------------------
# fit
# --------------------------------------------------------------------------------------------

def test_fit_line_through_two_points():
    a, b = estimate.fit([(1000, 0.3), (3000, 0.7)])
    assert a == pytest.approx(0.1) and b == pytest.approx(2e-4)


def test_fit_least_squares_and_never_negative():
    a, b = estimate.fit([(0, 1.0), (10, 2.1), (20, 2.9)])
    assert a == pytest.approx(1.05) and b == pytest.approx(0.095)
    assert estimate.fit([(100, 0.5), (200, 0.4)]) == (pytest.approx(0.45), 0.0)  # noise: flat at the mean
    a, b = estimate.fit([(100, 0.1), (200, 0.3)])  # intercept would be -0.1: through the origin instead
    assert a == 0.0 and b == pytest.approx((100 * 0.1 + 200 * 0.3) / (100**2 + 200**2))
    assert estimate.fit([(500, 0.2)]) == (0.2, 0.0)
    with pytest.raises(ValueError):
        estimate.fit([])


# --------------------------------------------------------------------------------------------
# cache
# --------------------------------------------------------------------------------------------

def test_step_cost_is_measured_once_per_machine_key(cache, monkeypatch):
    calls = []

    def fake_measure(config=None, sizes=estimate.MEASURE_SIZES, repeats=3):
        calls.append((config.precision if config else "auto", tuple(sizes)))
        return [(1000, 0.3), (3000, 0.7)]

    monkeypatch.setattr(estimate, "measure", fake_measure)
    first = estimate.step_cost()
    assert len(calls) == 1 and cache.is_file()
    assert first.a == pytest.approx(0.1) and first.b == pytest.approx(2e-4)
    assert first.key["device"] == "cpu" and first.key["processor"] and first.key["torch"]
    again = estimate.step_cost()
    assert len(calls) == 1 and again == first  # from the cache
    bf16 = estimate.step_cost(StyleConfig(precision="bf16"))  # another key: measured again
    assert len(calls) == 2 and bf16.key["precision"] == "bf16"
    entries = json.loads(cache.read_text())["entries"]
    auto = resolve_precision("auto", torch.device("cpu"))  # hybrid where bf16 is native, else fp32
    assert len(entries) == 2 and {json.loads(k)["precision"] for k in entries} == {auto, "bf16"}
    estimate.step_cost(refresh=True)
    assert len(calls) == 3
    # a damaged cache is measured again, not an error
    cache.write_text("{not json")
    estimate.step_cost()
    assert len(calls) == 4 and json.loads(cache.read_text())["entries"]
    spec = first.to_spec()
    assert spec["single_scale_max"] == plan.AUTO_SINGLE_SCALE and spec["coarsest"] == plan.AUTO_COARSEST
    assert spec["max_scales"] == plan.AUTO_MAX_SCALES
    assert spec["a"] == first.a and spec["b"] == first.b and spec["device"] == "cpu"


def test_measure_a_real_step_on_tiny_sizes(cache):
    points = estimate.measure(sizes=(32, 64), repeats=1)
    assert [p for p, _ in points] == [24 * 32, 48 * 64]
    assert all(0 < s < 30 for _, s in points)
    cost = estimate.step_cost(sizes=(32, 64), repeats=1)
    assert cost.a >= 0 and cost.b >= 0 and cost.seconds_per_step(10**6) > 0
    assert len(json.loads(cache.read_text())["entries"]) == 1


# --------------------------------------------------------------------------------------------
# scaling: the plan's scales and steps
# --------------------------------------------------------------------------------------------

def test_estimate_single_scale():
    cost = _cost()
    s = estimate.estimate_seconds(StyleConfig(size=384, steps=300), 768, 1024, cost=cost)
    assert s == pytest.approx(300 * (0.1 + 1e-5 * 288 * 384))
    # a selection-sized image: pixels follow the aspect
    s = estimate.estimate_seconds(StyleConfig(size=384, steps=10), 1000, 500, cost=cost)
    assert s == pytest.approx(10 * (0.1 + 1e-5 * 384 * 192))


def test_estimate_coarse_to_fine_and_tiles():
    cost = _cost()
    cfg = StyleConfig(size=2048, steps=400, max_memory=1000.0)
    s = estimate.estimate_seconds(cfg, 1536, 2048, cost=cost)
    # 512 px: 400 steps, 1024: 200, 2048: 100 (coarse to fine, half the steps each finer scale)
    expected = sum(n * (0.1 + 1e-5 * (long * 3 // 4) * long) for long, n in [(512, 400), (1024, 200), (2048, 100)])
    assert s == pytest.approx(expected)
    assert s == pytest.approx(timing.run_seconds(cost.to_spec(), (1536, 2048), 2048, 400))
    explicit = estimate.estimate_seconds(cfg.replace(scales=(256, 512), scale_steps=(7, 3)), 1536, 2048, cost=cost)
    assert explicit == pytest.approx(7 * (0.1 + 1e-5 * 192 * 256) + 3 * (0.1 + 1e-5 * 384 * 512))
    tiled = estimate.estimate_seconds(StyleConfig(size=384, steps=10, tile=128), 288, 384, cost=cost)
    assert tiled == pytest.approx(estimate.TILE_FACTOR * 10 * (0.1 + 1e-5 * 288 * 384))
    with pytest.raises(InputError, match="--size"):
        estimate.estimate_seconds(StyleConfig(size=20000, steps=10, max_memory=0.01, tile=0), 15000, 20000, cost=cost)


# --------------------------------------------------------------------------------------------
# the dialog's pure-Python copy agrees with the engine
# --------------------------------------------------------------------------------------------

def test_timing_matches_the_engine():
    assert timing.MAX_SIZE == config_module.MAX_SIZE
    assert (timing.AUTO_SINGLE_SCALE, timing.AUTO_COARSEST, timing.AUTO_MAX_SCALES) == \
        (plan.AUTO_SINGLE_SCALE, plan.AUTO_COARSEST, plan.AUTO_MAX_SCALES)
    for size in (1, 64, 384, 385, 512, 1024, 1025, 2048, 3000, 4096, 20000):
        for steps in (0, 1, 3, 300, 500):
            assert timing.schedule(size, steps) == plan.schedule(size, steps), (size, steps)
    from nst_engine.image import fit_long_side

    for shape in ((1, 1), (3, 1000), (768, 1024), (1001, 333)):
        for size in (1, 17, 512, 4000):
            assert timing.fit_long_side(*shape, size) == fit_long_side(*shape, size)
    cost = _cost(0.05, 3e-6)
    for size, steps in ((300, 100), (1024, 500), (1500, 300), (4000, 40)):
        cfg = StyleConfig(size=size, steps=steps, max_memory=1000.0)
        assert timing.run_seconds(cost.to_spec(), (900, 1200), size, steps) == pytest.approx(
            estimate.estimate_seconds(cfg, 900, 1200, cost=cost)), (size, steps)


def test_describe():
    assert timing.describe(0.2) == "under a second"
    assert timing.describe(4.4) == "about 4 s"
    assert timing.describe(38) == "about 40 s"
    assert timing.describe(80) == "about 1 min"
    assert timing.describe(4 * 60 + 20) == "about 4 min"
    assert timing.describe(3600) == "about 1 h"
    assert timing.describe(2 * 3600 + 10 * 60) == "about 2 h 10 min"


def test_suggested_size_follows_the_layer_up_to_what_the_machine_does_in_time():
    cost = {"a": 0.05, "b": 2e-6}  # s a step: 0.05 + 2e-6 per pixel (~0.6 s at 512x384)
    small = [(400, 300, 400)]  # a 400 px layer, no selection
    assert timing.suggested_size(cost, small, 300) == 400  # the layer's own size: no upscaling
    big = [(4000, 3000, 4000)]
    size = timing.suggested_size(cost, big, 300)
    assert size in timing.SIZE_LADDER and size < 4000
    assert timing.regions_seconds(cost, big, size, 300) <= timing.REASONABLE_SECONDS
    bigger = timing.SIZE_LADDER[timing.SIZE_LADDER.index(size) + 1]
    assert timing.regions_seconds(cost, big, bigger, 300) > timing.REASONABLE_SECONDS
    # fewer steps: a larger size fits the same time; a very slow machine still gets the floor
    assert timing.suggested_size(cost, big, 50) > size
    assert timing.suggested_size({"a": 100.0, "b": 0.0}, big, 300) == 256
    assert timing.suggested_size(None, big, 300) is None and timing.suggested_size(cost, [], 300) is None
