"""The GIMP plug-in's ``frames`` job: an animation's frames stylized with temporal consistency (#13).

The request carries the frames in playback order as ``frame0`` … ``frame{N-1}`` (h, w, 3|4 each,
R'G'B'(A) 0..1, as the stylize job's ``content``; each frame within the engine's image limit, all
of them within the server's bytes per job), N ≥ 2, and the parameters:

- ``method``: ``model`` (``model``, ``model_size``, ``strength``: a shipped model or an .onnx, as
  the stylize job) or ``iterative`` (``style`` array or ``style_file``, ``steps``, ``size``,
  ``style_weight``, …; each frame after the first starts from the previous result warped along the
  optical flow and runs ``next_steps`` steps, 0 = half of ``steps``, as ``nst video`` does);
- ``consistency``: ``temporal`` (each output blended with the previous output warped along the
  flow where the scene was visible, weight ``blend``: `nst_engine.temporal.stylize_frames`) or
  ``none`` (frame by frame); ``preserve_colors`` applies to both methods;
- ``refine_steps`` (model, temporal only; default 0): optimizer steps on each blended frame under
  the model's own training loss (`nst_engine.temporal_loss.refine`, as ``nst video --refine-steps``):
  less flicker without the blend's duller strokes, ~2.5 CPU-s a frame at 256×144.

Frames of different sizes (a GIF's optimised frames) are each stylized at their own size; temporal
consistency links consecutive frames of the same size only, and the reply's ``note`` says where
it could not. The reply carries ``frame0`` … (h, w, 4: the stylized RGB and each frame's own
alpha). Progress messages name the frame: ``stage`` "frame k/N" (then the optimizer's or the
model's own stage), ``frame`` k (1-based), ``frames`` N, and ``step``/``total`` of the work on
that frame.
"""
from __future__ import annotations

import re
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import Cancelled, EngineRuntimeError, InputError
from ..temporal import CONSISTENCY, DEFAULT_BLEND, DEFAULT_PRESET
from ..temporal import MAX_REFINE_STEPS as MAX_REFINE

MIN_FRAMES = 2
MAX_FRAMES = 10000
MAX_BLEND = 0.95
_FRAME = re.compile(r"frame(0|[1-9][0-9]{0,4})\Z")

Progress = Callable[[dict[str, Any]], None]
Arrays = dict[str, tuple[list[int], Any]]
# A frame's painter: (frame h×w×3, the previous (frame, output) of the same size or None) → h×w×3.
Paint = Callable[[np.ndarray, "tuple[np.ndarray, np.ndarray] | None"], np.ndarray]

__all__ = ["MAX_FRAMES", "MIN_FRAMES", "check_request", "frame_names", "frames", "prepare", "runs"]


def frame_names(names: Sequence[str]) -> list[str]:
    """``frame0`` … ``frame{N-1}`` among ``names`` (the request's arrays), checked: numbered from 0
    without a gap, N between `MIN_FRAMES` and `MAX_FRAMES`."""
    numbers = sorted(int(m.group(1)) for m in map(_FRAME.match, names) if m)
    if len(numbers) < MIN_FRAMES:
        raise InputError("frames", len(numbers), f"needs at least {MIN_FRAMES} frames (layers): an animation is an "
                                                  "image whose layers are its frames")
    if len(numbers) > MAX_FRAMES:
        raise InputError("frames", len(numbers), f"at most {MAX_FRAMES} frames per job")
    if numbers != list(range(len(numbers))):
        raise InputError("frames", numbers[:8], "must be frame0, frame1, … without a gap")
    return [f"frame{i}" for i in numbers]


def _choice(params: dict[str, Any]) -> tuple[str, float, int, int]:
    """(consistency, blend, next_steps, refine_steps), checked (errors name the plug-in's arguments)."""
    consistency = params.get("consistency") or "temporal"
    if consistency not in CONSISTENCY:
        raise InputError("consistency", consistency, f"must be one of {', '.join(CONSISTENCY)}")
    blend = params.get("blend")
    blend = DEFAULT_BLEND if blend is None else blend
    if isinstance(blend, bool) or not isinstance(blend, (int, float)) or not 0.0 <= blend <= MAX_BLEND:
        raise InputError("blend", blend, f"must be a number between 0 and {MAX_BLEND}")
    next_steps = params.get("next_steps")
    next_steps = 0 if next_steps is None else next_steps
    if isinstance(next_steps, bool) or not isinstance(next_steps, int) or not 0 <= next_steps <= 10**6:
        raise InputError("next-steps", next_steps, "must be a whole number between 0 and 1000000 (0: half of Steps)")
    refine = params.get("refine_steps")
    refine = 0 if refine is None else refine
    if isinstance(refine, bool) or not isinstance(refine, int) or not 0 <= refine <= MAX_REFINE:
        raise InputError("refine-steps", refine, f"must be a whole number between 0 and {MAX_REFINE}")
    if refine and (params.get("method") != "model" or consistency != "temporal"):
        raise InputError("refine-steps", refine, "applies to Method Model with temporal consistency (the iterative "
                                                 "method optimizes every frame anyway): set it to 0")
    return str(consistency), float(blend), next_steps, refine


def check_request(header: dict[str, Any], nbytes: int) -> None:
    """Refuse a frames request before its pixels are read: unknown arrays, a gap in the frames,
    shapes over the limits, bad parameters."""
    from . import jobs

    descr = {d["name"]: d["shape"] for d in header.get("arrays", [])}  # well-formed: `protocol.recv` checked them
    for name, shape in descr.items():
        if name != "style" and not _FRAME.match(name):
            raise InputError("arrays", name, "frames takes frame0, frame1, … and style")
        if len(shape) != 3 or shape[2] not in (3, 4):
            raise InputError(name, shape, "must be [height, width, 3 or 4]")
        jobs.check_shape(name, shape[0], shape[1])
    frame_names(list(descr))
    params = header.get("params") or {}
    _choice(params)
    jobs._options(params)  # a bad method, model size, … is refused before the pixels are read


def _long_side(arrays: Arrays) -> int:
    return max((max(shape[:2]) for name, (shape, _) in arrays.items() if _FRAME.match(name)), default=1)


def prepare(params: dict[str, Any], arrays: Arrays) -> tuple[dict[str, Any], Arrays]:
    """Read ``style_file`` before the job takes the engine (the server calls this outside its lock)."""
    from . import jobs

    if params.get("method") == "model" or "style" in arrays or not params.get("style_file"):
        return params, arrays
    return params, jobs._with_style(params, arrays, _long_side(arrays), "style")


def runs(shapes: Sequence[tuple[int, ...]]) -> list[range]:
    """Consecutive frames of the same size, as ranges of frame indices."""
    out: list[range] = []
    start = 0
    for i in range(1, len(shapes) + 1):
        if i == len(shapes) or shapes[i][:2] != shapes[start][:2]:
            out.append(range(start, i))
            start = i
    return out


def _config(params: dict[str, Any]) -> Any:
    """The request's `StyleConfig` (``size``: the long side each frame is processed at)."""
    from ..config import MAX_SIZE, StyleConfig
    from . import jobs

    return jobs._config(params, jobs._int(params, "size", StyleConfig.size, 1, MAX_SIZE))


class _Painter:
    """The `stylize_frames` model for one run of same-size frames: announces each frame, paints it
    with ``paint`` given the previous frame and its (blended) output."""

    def __init__(self, paint: Paint, announce: Callable[[], None]) -> None:
        self.paint, self.announce = paint, announce
        self.prev: tuple[np.ndarray, np.ndarray] | None = None
        self.last: np.ndarray | None = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        self.announce()
        self.last = frame
        return self.paint(frame, self.prev)

    def remember(self, out: np.ndarray) -> None:
        assert self.last is not None
        self.prev = (self.last, out)


def _model_paint(params: dict[str, Any], inner: Callable[[Any], None], stop: threading.Event) -> Paint:
    from .. import models
    from ..selection import model_device, model_size_for
    from . import jobs

    options = jobs._options(params)
    cfg = _config(params)

    def paint(frame: np.ndarray, prev: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        long = max(frame.shape[:2])
        return models.stylize_model(frame, options.model, strength=options.strength, tile=cfg.tile,
                                    overlap=options.overlap_for(cfg.tile), device=model_device(cfg.device),
                                    model_size=model_size_for(options.model_size, long, long),
                                    preserve_colors=cfg.preserve_colors, callback=inner, stop=stop)

    return paint


def _iterative_paint(params: dict[str, Any], style: np.ndarray, next_steps: int, consistency: str, folder: Path,
                     inner: Callable[[Any], None], stop: threading.Event, info: dict[str, Any]) -> Paint:
    """As ``nst video``'s iterative path: frame 1 of a run with ``steps``, each later frame from the
    previous output warped along the flow (the frame itself where occluded) and held to it by the
    temporal loss where it was visible, ``next_steps`` steps at the final scale only."""
    from .. import api
    from ..resample import resize
    from ..selection import crop_config
    from ..temporal import DEFAULT_TEMPORAL_WEIGHT, TemporalStylizer
    from ..temporal_loss import warm_start

    cfg = _config(params)
    later = next_steps or max(1, cfg.steps // 2)
    flows = TemporalStylizer(lambda f: f, "temporal", preset=DEFAULT_PRESET) if consistency == "temporal" else None

    def paint(frame: np.ndarray, prev: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        long = max(frame.shape[:2])
        run, temporal = crop_config(cfg, long, long), None
        if prev is not None and flows is not None:
            # the warped previous output as the start, and Ruder et al.'s temporal loss, as `nst video`
            init, temporal = warm_start(flows, prev, frame, folder, DEFAULT_TEMPORAL_WEIGHT)
            final = int(run.scales[-1]) if run.scales else int(run.size)
            run = run.replace(init=str(init), steps=later, scales=(final,), scale_steps=())
        r = api.stylize(frame, [style], run, callback=inner, stop=stop, temporal=temporal)
        if r.stopped or stop.is_set():
            raise Cancelled("stopped")
        info["steps"] = info.get("steps", 0) + r.steps
        return np.clip(resize(r.image, *frame.shape[:2]), 0.0, 1.0).astype(np.float32)

    return paint


def _note(parts: Sequence[range], consistency: str) -> str:
    if consistency != "temporal" or len(parts) < 2:
        return ""
    starts = [str(r.start + 1) for r in parts[1:]]
    return (f"Frame{'s' if len(starts) > 1 else ''} {', '.join(starts[:10])}{'…' if len(starts) > 10 else ''} "
            "differ in size from the frame before: each frame was stylized at its own size, without temporal "
            "consistency with a frame of another size.")


def frames(params: dict[str, Any], arrays: Arrays, progress: Progress, stop: threading.Event
           ) -> tuple[dict[str, Any], Arrays]:
    """The job (see the module notes)."""
    from ..temporal import stylize_frames
    from . import jobs

    names = frame_names(list(arrays))
    consistency, blend, next_steps, refine = _choice(params)
    options = jobs._options(params)
    content = []
    for name in names:
        a = jobs._array(arrays, name, (3,), (3, 4))
        assert a is not None
        content.append(a)
    n = len(content)
    style = None if options.method == "model" else jobs._style(params, arrays, max(max(a.shape[:2]) for a in content))
    current = [0]

    def inner(p: Any) -> None:
        k = current[0]
        progress({"stage": f"frame {k}/{n}: {p.stage}", "frame": k, "frames": n, "step": int(p.step),
                  "total": int(p.total), "eta": None if p.eta is None else float(p.eta)})

    def announce() -> None:
        if stop.is_set():
            raise Cancelled("stopped")
        current[0] += 1
        progress({"stage": f"frame {current[0]}/{n}", "frame": current[0], "frames": n, "step": 0, "total": 0})

    t0 = time.perf_counter()
    info: dict[str, Any] = {"method": options.method, "consistency": consistency, "frames": n}
    parts = runs([a.shape for a in content])
    out: Arrays = {}
    with tempfile.TemporaryDirectory(prefix="nst-frames-") as tmp:
        try:
            refine_loss = None
            if options.method == "model":
                paint = _model_paint(params, inner, stop)
                if refine:  # the model's own training loss, from its metadata (as `nst video --refine-steps`)
                    from ..models import load_model

                    refine_loss = load_model(options.model, "cpu").training
            else:
                assert style is not None
                paint = _iterative_paint(params, style, next_steps, consistency, Path(tmp), inner, stop, info)
            for part in parts:
                painter = _Painter(paint, announce)
                rgb = [np.ascontiguousarray(content[i][..., :3]) for i in part]
                outs: Iterator[np.ndarray] = stylize_frames(rgb, painter, consistency=consistency, blend=blend,
                                                            refine_steps=refine, refine_loss=refine_loss, stop=stop)
                for i, image in zip(part, outs, strict=True):
                    painter.remember(image)
                    out[names[i]] = _with_alpha(image, content[i])
        except InputError as e:
            raise jobs._as_argument(e) from None
    if stop.is_set():
        raise Cancelled("stopped")
    info.update(seconds=time.perf_counter() - t0, runs=len(parts))
    return {"note": _note(parts, consistency), "timing": {"engine_s": info["seconds"]},
            "info": info}, out


def _with_alpha(image: np.ndarray, frame: np.ndarray) -> tuple[list[int], np.ndarray]:
    h, w = frame.shape[:2]
    if image.shape != (h, w, 3) or not np.isfinite(image).all():
        raise EngineRuntimeError(f"the engine returned an invalid frame {image.shape} for one of {w}x{h}")
    alpha = frame[..., 3:4] if frame.shape[2] == 4 else np.ones((h, w, 1), np.float32)
    a = np.ascontiguousarray(np.concatenate([np.clip(image, 0.0, 1.0), alpha], axis=2), dtype=np.float32)
    return list(a.shape), a
