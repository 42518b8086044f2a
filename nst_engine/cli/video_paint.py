"""How `nst video` paints its frames (`FramesJob`): the model or the iterative optimizer, each frame
after the first with the previous one's output (temporal blend; the iterative path also starts from
it, warped, with Ruder et al.'s temporal loss). A job pickles, so `nst_engine.cluster` runs it on
Ray workers as well as here."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress
from ..temporal import DEFAULT_TEMPORAL_WEIGHT as TEMPORAL_WEIGHT


class _Painter:
    """The `stylize_frames` model: replays a saved output once (to resume), else paints the frame."""

    def __init__(self, paint: Callable[[np.ndarray, tuple[np.ndarray, np.ndarray] | None], np.ndarray]) -> None:
        self.paint = paint
        self.replay: np.ndarray | None = None
        self.prev: tuple[np.ndarray, np.ndarray] | None = None
        self._last: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self._last = frame
        if self.replay is not None:
            out, self.replay = self.replay, None
            return out
        return self.paint(frame, self.prev)

    def remember(self, out: np.ndarray) -> None:
        assert self._last is not None
        self.prev = (self._last, out)


@dataclasses.dataclass
class FramesJob:
    """How the frames are painted: the settings and the style images (loaded), all of it picklable,
    so that `nst_engine.cluster` can send it to Ray workers."""

    method: str  # "model" or "iterative"
    consistency: str
    blend: float
    preset: str
    options: Any  # StylizeOptions
    cfg: Any  # StyleConfig
    styles: tuple[np.ndarray, ...] = ()
    next_steps: int = 0
    temporal_weight: float = TEMPORAL_WEIGHT
    refine_steps: int = 0  # the model path: optimizer steps after each blend (`temporal_loss.refine`)

    def paint(self, scratch: Path, step: Callable[[Progress], None] | None = None) -> Callable[..., np.ndarray]:
        """paint(frame, (previous frame, its output) | None) → the frame painted; ``scratch``: a folder
        for the iterative path's start images."""
        return _model_paint(self) if self.method == "model" else _iterative_paint(self, scratch, step)

    def run(self, frames: Iterable[np.ndarray], scratch: Path, step: Callable[[Progress], None] | None = None,
            replay: np.ndarray | None = None) -> Iterator[np.ndarray]:
        """The stylized ``frames`` in turn. With ``replay`` (a resumed temporal run), the first frame is
        the last one finished and ``replay`` its output: it only primes the temporal blend."""
        from ..temporal import stylize_frames

        painter = _Painter(self.paint(scratch, step))
        painter.replay = replay
        refine = self.refine_steps if self.method == "model" else 0
        loss = None
        if refine:  # the model's own training loss, from its metadata
            from ..models import load_model

            loss = load_model(self.options.model, "cpu").training
        outs = stylize_frames(frames, painter, consistency=self.consistency, blend=self.blend, preset=self.preset,
                              refine_steps=refine, refine_loss=loss)
        for k, out in enumerate(outs):
            painter.remember(out)
            if k or replay is None:
                yield out


def _model_paint(job: FramesJob) -> Callable[..., np.ndarray]:
    from .. import models
    from ..selection import model_device

    options, cfg = job.options, job.cfg
    kw = dict(strength=options.strength, tile=cfg.tile, overlap=options.overlap_for(cfg.tile),
              device=model_device(cfg.device), model_size=options.model_size, preserve_colors=cfg.preserve_colors)
    return lambda frame, prev: models.stylize_model(frame, options.model, **kw)


def _iterative_paint(job: FramesJob, scratch: Path, step: Callable[[Progress], None] | None) -> Callable[..., np.ndarray]:
    from ..temporal import TemporalStylizer
    from ..temporal_loss import warm_start

    cfg = job.cfg
    flows = TemporalStylizer(lambda f: f, "temporal", job.blend, job.preset) if job.consistency == "temporal" else None

    def paint(frame: np.ndarray, prev: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        from ..api import stylize

        run, temporal = cfg, None
        if prev is not None and flows is not None:  # start from the previous result, warped
            init, temporal = warm_start(flows, prev, frame, scratch, job.temporal_weight)
            run = cfg.replace(init=str(init), steps=job.next_steps, scales=(max(frame.shape[:2]),), scale_steps=())
        image = stylize(frame, list(job.styles), run, callback=step, temporal=temporal).image
        if image.shape != frame.shape:
            from ..resample import resize

            image = np.clip(resize(image, *frame.shape[:2]), 0.0, 1.0).astype(np.float32)
        return image

    return paint
