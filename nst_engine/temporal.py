"""Video with temporal consistency for the feed-forward model path (Ruder, Dosovitskiy, Brox 2016).

    from nst_engine.temporal import stylize_frames
    for out in stylize_frames(frames, "starry-night"):      # frames: HxWx3 float32 0..1 each
        ...

Each frame is stylized by the model, then, where the scene was visible in the previous frame,
blended with the previous *output* warped along the optical flow:

    out_t = m * ((1 - a) * model(frame_t) + a * warp(out_{t-1})) + (1 - m) * model(frame_t)

``m`` is 1 where frame t's pixel was visible in frame t-1 and 0 where it was not (disocclusions,
motion boundaries, pixels that came from outside the frame), with slightly softened edges; ``a``
is the blend weight. No training is needed. Occlusions follow the paper (sec. 3.1): with the
backward flow ŵ (frame t → t-1) and the forward flow w (t-1 → t) warped to frame t, w̃, a pixel is
occluded where |w̃ + ŵ|² > 0.01 (|w̃|² + |ŵ|²) + 0.5, and on a motion boundary where
|∇û|² + |∇v̂|² > 0.01 |ŵ|² + 0.002.

Optical flow is OpenCV's DIS (Kroeger et al. 2016) on the frames' luminance, from
``opencv-python-headless`` (the ``video`` extra: ``pip install -e '.[video]'``), imported lazily.
A flow ``f`` between images A and B (`optical_flow(A, B)`) says where each pixel of A is in B:
A(x) ≈ B(x + f(x)); `warp(B, f)` resamples B at x + f(x), so it looks like A.
"""
from __future__ import annotations

import math
import os
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from .errors import Cancelled, InputError
from .image import check_array
from .progress import Progress, ProgressCallback, StopFlag

__all__ = ["PRESETS", "CONSISTENCY", "DEFAULT_BLEND", "DEFAULT_TEMPORAL_WEIGHT",
           "DEFAULT_PRESET", "optical_flow", "warp", "occlusion_mask",
           "soft_mask", "temporal_blend", "TemporalStylizer", "stylize_frames"]

PRESETS = ("ultrafast", "fast", "medium")
CONSISTENCY = ("temporal", "none")
DEFAULT_BLEND = 0.5
MAX_REFINE_STEPS = 1000  # refine_steps: `nst video --refine-steps`, the GIMP frames job's Refine steps
# The iterative path's temporal loss weight (`temporal_loss`; here so that the CLI need not import torch).
DEFAULT_TEMPORAL_WEIGHT = 1.0
DEFAULT_PRESET = "medium"
DEFAULT_FLOW_SIDE = 1024  # flow is computed on frames shrunk to this long side (0: full size)

# A model name, an .onnx path, or any function frame -> stylized frame (HxWx3 float 0..1).
ModelSpec = Union[str, "os.PathLike[str]", Callable[[np.ndarray], np.ndarray]]

def _cv2() -> Any:
    try:
        import cv2
    except ImportError:
        raise InputError("consistency", "temporal",
                         "optical flow needs OpenCV: pip install -e '.[video]' (opencv-python-headless)") from None
    return cv2


def _gray8(image: np.ndarray) -> np.ndarray:
    a = np.asarray(image, dtype=np.float32)
    y = a if a.ndim == 2 else a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)
    return (np.clip(y, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


_LOCAL = threading.local()  # one DIS object per preset and thread (they keep buffers between calls)


def optical_flow(a: np.ndarray, b: np.ndarray, preset: str = DEFAULT_PRESET) -> np.ndarray:
    """DIS optical flow from RGB (or gray) frame ``a`` to frame ``b``: HxWx2 float32 (dx, dy) px,
    with a(x) ≈ b(x + flow(x))."""
    if preset not in PRESETS:
        raise InputError("preset", preset, f"must be one of {', '.join(PRESETS)}")
    if a.shape[:2] != b.shape[:2]:
        raise InputError("frames", (a.shape, b.shape), "frames differ in size")
    cv2 = _cv2()
    cache: dict[str, Any] = _LOCAL.__dict__.setdefault("dis", {})
    dis = cache.get(preset)
    if dis is None:
        dis = cache[preset] = cv2.DISOpticalFlow_create(
            {"ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST, "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
             "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM}[preset])
    flow: np.ndarray = dis.calc(_gray8(a), _gray8(b), None)
    return flow.astype(np.float32, copy=False)


def _maps(flow: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    h, w = flow.shape[:2]
    xs = np.arange(w, dtype=np.float32)[None, :] + flow[..., 0]
    ys = np.arange(h, dtype=np.float32)[:, None] + flow[..., 1]
    return xs, ys


def warp(image: np.ndarray, flow: np.ndarray) -> np.ndarray:
    """Backward warping: ``image`` resampled (bilinear) at x + flow(x); outside it, the border is repeated."""
    if image.shape[:2] != flow.shape[:2] or flow.ndim != 3 or flow.shape[2] != 2:
        raise InputError("flow", flow.shape, f"must be HxWx2 with the image's size {image.shape[:2]}")
    cv2 = _cv2()
    xs, ys = _maps(flow)
    out: np.ndarray = cv2.remap(np.ascontiguousarray(image, dtype=np.float32), xs, ys, cv2.INTER_LINEAR,
                                borderMode=cv2.BORDER_REPLICATE)
    return out.reshape(image.shape)


def occlusion_mask(backward: np.ndarray, forward: np.ndarray) -> np.ndarray:
    """HxW bool, True where frame t's pixel was *not* visible in frame t-1.

    ``backward``: flow frame t → t-1 (ŵ); ``forward``: flow t-1 → t (w). Marks the paper's
    forward-backward inconsistencies and motion boundaries, and pixels whose x + ŵ(x) falls
    outside frame t-1 (the band a pan uncovers).
    """
    h, w = backward.shape[:2]
    fw = warp(forward, backward)  # w̃(x) = w(x + ŵ(x))
    s = fw + backward
    occluded = (s * s).sum(2) > 0.01 * ((fw * fw).sum(2) + (backward * backward).sum(2)) + 0.5
    grad = np.zeros((h, w), np.float32)
    for c in range(2):
        comp = backward[..., c]
        if h > 1:
            grad += np.gradient(comp, axis=0) ** 2
        if w > 1:
            grad += np.gradient(comp, axis=1) ** 2
    occluded |= grad > 0.01 * (backward * backward).sum(2) + 0.002
    xs, ys = _maps(backward)
    occluded |= (xs < -0.5) | (xs > w - 0.5) | (ys < -0.5) | (ys > h - 0.5)
    return occluded


def soft_mask(occluded: np.ndarray, grow: int = 1, sigma: float = 1.0) -> np.ndarray:
    """Non-occlusion weight m (HxW float32 0..1): occlusions grown by ``grow`` px, then edges blurred
    (Gaussian ``sigma`` px); occluded pixels stay 0."""
    cv2 = _cv2()
    occ = occluded.astype(np.uint8)
    if grow > 0:
        occ = cv2.dilate(occ, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    m = 1.0 - occ.astype(np.float32)
    if sigma > 0:
        m = cv2.GaussianBlur(m, (0, 0), sigma, borderType=cv2.BORDER_REPLICATE).reshape(occluded.shape)
    m[occluded] = 0.0  # the occluded pixels themselves take nothing from the previous frame
    return m


def temporal_blend(stylized: np.ndarray, warped_prev: np.ndarray, mask: np.ndarray, blend: float) -> np.ndarray:
    """m · ((1 - a) · stylized + a · warped_prev) + (1 - m) · stylized = stylized + a · m · (warped_prev - stylized)."""
    weight = (np.float32(blend) * mask.astype(np.float32))[..., None]
    return stylized + weight * (warped_prev - stylized)


@dataclass
class TemporalStylizer:
    """Stylizes frames one at a time (`step`), keeping the previous frame and output.

    ``model``: a model name or .onnx path (run by `nst_engine.models.stylize_model` with
    ``model_options``) or any callable HxWx3 → HxWx3. ``timings`` adds up seconds spent in
    ``"model"``, ``"flow"`` (both flows and the mask) and ``"blend"`` (warp and blend).
    """

    model: ModelSpec
    consistency: str = "temporal"
    blend: float = DEFAULT_BLEND
    preset: str = DEFAULT_PRESET
    flow_side: int = DEFAULT_FLOW_SIDE
    model_options: dict[str, Any] = field(default_factory=dict)
    refine_steps: int = 0  # optimizer steps after the blend (`temporal_loss.refine`; imports torch)
    refine_loss: dict[str, Any] | None = None  # its loss settings (default: the model's metadata)
    timings: dict[str, float] = field(default_factory=lambda: {"model": 0.0, "flow": 0.0, "blend": 0.0,
                                                              "refine": 0.0})
    last_occluded: float = math.nan  # share of the last frame's pixels masked as occluded
    _prev_frame: np.ndarray | None = field(default=None, repr=False)
    _prev_out: np.ndarray | None = field(default=None, repr=False)
    _pool: ThreadPoolExecutor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.consistency not in CONSISTENCY:
            raise InputError("consistency", self.consistency, f"must be one of {', '.join(CONSISTENCY)}")
        if not (isinstance(self.blend, (int, float)) and 0.0 <= self.blend < 1.0):
            raise InputError("blend", self.blend, "must be at least 0 and below 1")
        if self.preset not in PRESETS:
            raise InputError("preset", self.preset, f"must be one of {', '.join(PRESETS)}")
        if not (isinstance(self.refine_steps, int) and 0 <= self.refine_steps <= 1000):
            raise InputError("refine_steps", self.refine_steps, "must be a whole number from 0 to 1000")
        if not (isinstance(self.flow_side, int) and (self.flow_side == 0 or self.flow_side >= 32)):
            raise InputError("flow_side", self.flow_side, "must be 0 (full size) or at least 32 px")
        if self.consistency == "temporal":
            _cv2()

    def _stylize(self, frame: np.ndarray) -> np.ndarray:
        if callable(self.model):
            out = check_array(np.asarray(self.model(frame)), "model output")
            if out.shape != frame.shape:
                raise InputError("model", self.model, f"returned shape {out.shape} for a frame of {frame.shape}")
            return out
        from .models import stylize_model

        return stylize_model(frame, self.model, **self.model_options)

    def flow_and_mask(self, prev: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(backward flow frame → prev at the frame's size, soft non-occlusion mask m)."""
        cv2 = _cv2()
        h, w = frame.shape[:2]
        s = self.flow_side / max(h, w) if self.flow_side and max(h, w) > self.flow_side else 1.0
        if s < 1.0:
            size = (max(1, round(w * s)), max(1, round(h * s)))
            a, b = (cv2.resize(x, size, interpolation=cv2.INTER_AREA) for x in (frame, prev))
        else:
            a, b = frame, prev
        backward = optical_flow(a, b, self.preset)
        forward = optical_flow(b, a, self.preset)
        occluded = occlusion_mask(backward, forward)
        self.last_occluded = float(occluded.mean())
        mask = soft_mask(occluded)
        if s < 1.0:
            backward = cv2.resize(backward, (w, h), interpolation=cv2.INTER_LINEAR) / np.float32(s)
            mask = np.clip(cv2.resize(mask, (w, h), interpolation=cv2.INTER_LINEAR), 0.0, 1.0)
        return backward, mask

    def step(self, frame: np.ndarray) -> np.ndarray:
        """The next frame (HxW[x3|x4], alpha dropped) → its stylized HxWx3 float32 0..1."""
        a = check_array(frame, "frame")
        if self._prev_frame is not None and a.shape != self._prev_frame.shape:
            raise InputError("frame", a.shape, f"differs in size from the previous frame {self._prev_frame.shape}")
        flows: Future[tuple[np.ndarray, np.ndarray]] | None = None
        if self.consistency == "temporal" and self._prev_frame is not None and self._prev_out is not None and self.blend > 0:
            # The flow needs only the two frames, so it runs on another thread while the model
            # paints: DIS keeps to one core, the model's onnxruntime does not fill two
            # (bench/bench_video_fps.py, 512x288 on 2 cores: 5.9-7.0 fps before, 7.6-7.9 with it).
            if self._pool is None:
                self._pool = ThreadPoolExecutor(1, thread_name_prefix="nst-flow")
            flows = self._pool.submit(self._timed_flow, self._prev_frame, a)
        t0 = time.perf_counter()
        out = self._stylize(a)
        self.timings["model"] += time.perf_counter() - t0
        if flows is not None and self._prev_out is not None:
            backward, mask = flows.result()
            t2 = time.perf_counter()
            warped = warp(self._prev_out, backward)
            own, out = out, np.clip(temporal_blend(out, warped, mask, self.blend), 0.0, 1.0)
            t3 = time.perf_counter()
            self.timings["blend"] += t3 - t2
            if self.refine_steps:
                from .temporal_loss import refine

                out = refine(a[..., :3], out, own, warped, mask, self.refine_steps, self._training())
                self.timings["refine"] += time.perf_counter() - t3
        self._prev_frame, self._prev_out = a, out
        return out

    def _training(self) -> dict[str, Any]:
        """The model's training loss (its metadata), for `refine`; {} for a callable model."""
        if self.refine_loss is not None:
            return self.refine_loss
        if callable(self.model):
            return {}
        from .models import load_model

        return load_model(self.model, str(self.model_options.get("device", "auto"))).training

    def _timed_flow(self, prev: np.ndarray, frame: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        t = time.perf_counter()
        try:
            return self.flow_and_mask(prev, frame)
        finally:
            self.timings["flow"] += time.perf_counter() - t

    def close(self) -> None:
        """Stop the flow thread (a later `step` starts another)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None


def stylize_frames(
    frames: Iterable[np.ndarray],
    model: ModelSpec,
    *,
    consistency: str = "temporal",
    blend: float = DEFAULT_BLEND,
    preset: str = DEFAULT_PRESET,
    flow_side: int = DEFAULT_FLOW_SIDE,
    refine_steps: int = 0,
    refine_loss: dict[str, Any] | None = None,
    callback: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    **model_options: Any,
) -> Iterator[np.ndarray]:
    """Stylize a sequence of same-size frames; yields each stylized frame (HxWx3 float32 0..1) in turn.

    ``model``: a shipped model name, an .onnx path (``model_options`` go to `stylize_model`:
    strength, device, model_size, preserve_colors, tile...) or a callable frame → stylized frame.
    ``consistency="temporal"`` blends each output with the previous one warped along the optical
    flow (weight ``blend``, DIS ``preset``, flow on frames shrunk to ``flow_side`` px); ``"none"``
    stylizes frame by frame. ``refine_steps`` > 0 adds that many optimizer steps after each blend
    (`temporal_loss.refine`: the model's training loss towards the frame's own painting, plus the
    temporal loss; torch, ~1.6 s a frame at 256×144 for 5 steps). ``callback`` gets a `Progress` (stage ``"video"``, ``total`` the
    number of frames when ``frames`` has a length, else 0) after each frame; ``stop.is_set()``
    is checked before each frame and raises `Cancelled`.
    """
    runner = TemporalStylizer(model, consistency, blend, preset, flow_side, dict(model_options), refine_steps,
                              refine_loss)
    total = len(frames) if isinstance(frames, Sized) else 0
    t0 = time.perf_counter()
    try:
        for i, frame in enumerate(frames):
            if stop is not None and stop.is_set():
                raise Cancelled(f"stopped after {i} frames")
            out = runner.step(frame)
            if callback is not None:
                el = time.perf_counter() - t0
                eta = el / (i + 1) * (total - i - 1) if total else None
                callback(Progress("video", i + 1, total, math.nan, {}, el, eta))
            yield out
    finally:
        runner.close()
