"""Shared fixtures: small real images (scikit-image's photos, the shipped styles), real VGG-19 weights."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from nst_engine.samples import load

torch.set_num_threads(2)


def small(spec: str, size: int) -> np.ndarray:
    from skimage.transform import resize

    img = load(spec, "test")[..., :3]
    h, w = img.shape[:2]
    s = size / max(h, w)
    return resize(img, (round(h * s), round(w * s)), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="session")
def content96() -> np.ndarray:
    return small("sample:astronaut", 96)


@pytest.fixture(scope="session")
def style96() -> np.ndarray:
    return small("style:swirls", 96)
