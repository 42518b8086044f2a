"""Coarse-to-fine schedules and the memory check (#6, the parts that run on a CPU)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.errors import InputError
from nst_engine.plan import estimate_bytes, make_plan, schedule


def test_auto_schedule_and_explicit_scales() -> None:
    assert schedule(384, 500) == [(384, 500)]
    assert schedule(512, 500) == [(256, 500), (512, 250)]
    assert schedule(1024, 300) == [(256, 300), (512, 150), (1024, 75)]
    assert schedule(3840, 500) == [(960, 500), (1920, 250), (3840, 125)]  # at most 3 scales
    assert schedule(1000, 10, (250, 500, 1000), (8, 4, 2)) == [(250, 8), (500, 4), (1000, 2)]
    with pytest.raises(InputError, match="increase"):
        schedule(100, 10, (64, 32))
    with pytest.raises(InputError, match="one step count per scale"):
        schedule(100, 10, (32, 64), (5,))


def test_plan_shrinks_history_then_tiles_then_refuses_naming_a_size_that_fits() -> None:
    cpu = torch.device("cpu")
    full = make_plan((2160, 3840), 3840, 500, "relu5_1", cpu, max_memory_gib=64)
    assert [s.size for s in full] == [960, 1920, 3840] and full[-1].history == 100 and full[-1].tile == 0
    tight = make_plan((2160, 3840), 3840, 500, "relu5_1", cpu, max_memory_gib=24)
    assert tight[-1].history < 100 and tight[-1].bytes <= 24 * 1024**3 and tight[-1].tile == 0
    with pytest.raises(InputError, match=r"3840x2160 scale needs about .* --size (\d+) fits") as e:
        make_plan((2160, 3840), 3840, 500, "relu5_1", cpu, max_memory_gib=1.5)
    fit = int(str(e.value).rsplit("--size ", 1)[1].split()[0])
    assert estimate_bytes((round(fit * 9 / 16), fit), "relu5_1", 5, tile=128) <= 1.5 * 1024**3
    assert make_plan((2160, 3840), fit, 500, "relu5_1", cpu, max_memory_gib=1.5)
    # The histogram loss cannot be tiled: the same budget refuses at a smaller --size.
    with pytest.raises(InputError, match=r"--size (\d+) fits") as e2:
        make_plan((2160, 3840), 3840, 500, "relu5_1", cpu, max_memory_gib=8, tileable=False)
    assert int(str(e2.value).rsplit("--size ", 1)[1].split()[0]) < 3840


def test_coarse_to_fine_runs_each_scale(content96: np.ndarray, style96: np.ndarray) -> None:
    stages: list[str] = []
    r = stylize(content96, [style96], StyleConfig(scales=(24, 48), scale_steps=(6, 3)),
                callback=lambda p: stages.append(p.stage))
    assert r.image.shape == (48, 48, 3) and r.steps == 9 and len(r.history) == 9
    assert stages[0].startswith("stylize 24x24 (1/2)") and stages[-1].startswith("stylize 48x48 (2/2)")
    with pytest.raises(InputError, match="--size"):
        stylize(content96, [style96], StyleConfig(size=4000, steps=1, max_memory=0.5))


def test_texture_and_reconstruct_check_memory_before_work(style96: np.ndarray) -> None:
    from nst_engine import reconstruct, texture

    with pytest.raises(InputError, match=r"size=8000.*--size \d+ fits"):
        texture(style96, StyleConfig(size=8000, steps=1, max_memory=1))
    with pytest.raises(InputError, match="size=8000"):
        reconstruct(style96, "relu2_1", StyleConfig(size=8000, steps=1, max_memory=1))
