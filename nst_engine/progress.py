"""Progress reports and stop flags shared by every engine path (no torch: the model path imports it)."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

__all__ = ["Progress", "ProgressCallback", "StopFlag"]


class StopFlag(Protocol):
    def is_set(self) -> bool: ...


@dataclass
class Progress:
    """What the callback receives after each step."""

    stage: str
    step: int
    total: int
    loss: float
    losses: dict[str, float]
    elapsed: float
    eta: float | None
    snapshot: np.ndarray | None = None  # HxWx3 float32 0..1, every ``save_every`` steps


ProgressCallback = Callable[[Progress], None]


