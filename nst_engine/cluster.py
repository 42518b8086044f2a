"""`nst video --ray ADDRESS`: paint a long clip in chunks on the workers of a Ray cluster.

    pip install -e '.[cluster]'          # ray; the same install on every node of the cluster
    nst video in.mp4 --model starry-night -o out.mp4 --ray auto                # the cluster of `ray start`
    nst video in.mp4 --model starry-night -o out.mp4 --ray local --chunk-frames 24

The frames ``first:stop`` are cut into chunks of ``size`` frames (`plan`). With temporal consistency
each output is blended with the previous output warped along the optical flow, so a chunk cannot
simply start cold: each chunk but the run's first also paints the ``overlap`` frames before it
(re-read from the input) and drops their outputs, which only warm up its temporal state. The blend
forgets geometrically (weight ``blend`` per frame, 0.5 by default, less where the flow masks
pixels out), so the chunk's first kept frame differs from a run through the whole clip by about
``blend ** overlap`` of what a cold start makes. Measured on a 64x48 pan (tests/test_cluster.py),
mean |difference| at a join, /255: overlap 0: 6.5 (max 51; the temporal warping error at the join
13.9 against 7 within a chunk, frame by frame's 15), 2: 1.4 (max 13; warping error 6.9, as within a
chunk), 4: 0.3 (max 3), 6: 0.05 (max 1); each frame after the join halves it again. Frame by frame
(``--consistency none``) needs no overlap: the chunks equal the local run exactly.

The iterative method (STYLE images) starts each frame from the previous *result*, which it never
forgets, so a chunk started on its own does not join the one before it (warping error 17.7/255 at
the join against 5 within a chunk, 40/20 steps, overlap 2): `nst video` allows it with ``--ray``
only frame by frame.

The driver (this process) reads the frames, sends each chunk's frames through Ray's object store
(uint8 when they are 8-bit, else float32), and a Ray task (`_paint_chunk`, one CPU, or one GPU
with ``--device cuda``) paints them with the same `FramesJob` as a local run and returns uint8
frames; the driver hands the chunks back in order (``done``), which `nst video` writes into its
work folder, so ``--resume`` continues after the last whole chunk. Only a few more chunks than the
cluster has task slots are in flight at once, so memory stays bounded for a clip of any length.

Workers import this package: install it (``pip install -e '.[cluster]'``, same versions) on every
node, or pass a ``runtime_env`` yourself by connecting with `ray.init` before calling. Settings
that name files (``--init``, model paths) must name them at the same path on every node; the frames
and STYLE images travel with the job.

This is the only module that imports ``ray``, and only inside functions: Ray is optional.
"""
from __future__ import annotations

import contextlib
import logging
import re
import signal
import tempfile
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EngineRuntimeError, InputError

__all__ = ["DEFAULT_CHUNK_FRAMES", "DEFAULT_CHUNK_OVERLAP", "Chunk", "plan", "check_address", "connect", "run_chunks"]

DEFAULT_CHUNK_FRAMES = 48
DEFAULT_CHUNK_OVERLAP = 4
_LOCAL = re.compile(r"local(?::(\d+))?")


@dataclass(frozen=True)
class Chunk:
    """Frames ``lead:stop`` are painted, ``start:stop`` kept (``lead:start``: the warm-up overlap)."""

    lead: int
    start: int
    stop: int


def plan(first: int, stop: int, size: int, overlap: int, floor: int | None = None) -> list[Chunk]:
    """Frames ``first:stop`` in chunks of ``size``, each starting ``overlap`` frames early but never
    before ``floor`` (the run's first frame, which starts cold in any run; default ``first``)."""
    if size < 1 or overlap < 0:
        raise InputError("chunk", (size, overlap), "needs at least 1 frame a chunk and an overlap ≥ 0")
    floor = first if floor is None else floor
    return [Chunk(max(floor, s - overlap), s, min(stop, s + size)) for s in range(first, stop, size)]


def _import_ray(address: str) -> Any:
    try:
        import ray
    except ImportError:
        raise InputError("--ray", address, "needs Ray: pip install -e '.[cluster]' (on every node)") from None
    return ray


def check_address(address: str) -> None:
    """``auto``, ``local``, ``local:N``, ``HOST:PORT`` or ``ray://HOST:PORT``; Ray must be installed."""
    m = _LOCAL.fullmatch(address)
    if not address.strip() or (m is not None and m.group(1) is not None and not 1 <= int(m.group(1)) <= 4096):
        raise InputError("--ray", address, "expected auto, local, local:N (N CPUs), HOST:PORT or ray://HOST:PORT")
    _import_ray(address)


@contextlib.contextmanager
def connect(address: str, quiet: bool = False) -> Iterator[str]:
    """Start (``local``, ``local:N``) or join (anything else) a Ray cluster for the ``with`` block;
    yields a line that describes it. Ray already initialized in this process is used as it is, and
    left so."""
    ray = _import_ray(address)
    if ray.is_initialized():
        yield _describe(ray, "the Ray this process is connected to")
        return
    main = threading.current_thread() is threading.main_thread()
    sigterm = signal.getsignal(signal.SIGTERM) if main else None
    kw: dict[str, Any] = dict(logging_level=logging.ERROR if quiet else logging.WARNING, log_to_driver=not quiet)
    m = _LOCAL.fullmatch(address)
    try:
        if m is not None:
            ray.init(num_cpus=int(m.group(1)) if m.group(1) else None, include_dashboard=False, **kw)
        else:
            ray.init(address=address, **kw)
    except Exception as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise InputError("--ray", address, f"cannot start or reach Ray: {reason}") from None
    finally:
        if main:  # ray.init makes SIGTERM exit at once; `nst video` stops cleanly on it instead
            signal.signal(signal.SIGTERM, sigterm)
    try:
        yield _describe(ray, "a local Ray" if m is not None else address)
    finally:
        ray.shutdown()


def _describe(ray: Any, name: str) -> str:
    res = ray.cluster_resources()
    gpus = f", {res['GPU']:g} GPUs" if res.get("GPU") else ""
    nodes = len([n for n in ray.nodes() if n.get("Alive")])
    return f"{name}, {res.get('CPU', 0):g} CPUs{gpus} on {nodes} node{'s' if nodes != 1 else ''}"


def _pack(frames: Sequence[np.ndarray]) -> np.ndarray:
    """The frames as one array to send: uint8 when that is exact (8-bit input), else float32."""
    a = np.stack(frames).astype(np.float32, copy=False)
    q = (np.clip(a, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    return q if np.array_equal(q.astype(np.float32) / np.float32(255.0), a) else a


def _unpack(frames: np.ndarray) -> Iterator[np.ndarray]:
    for f in frames:
        yield f.astype(np.float32) / np.float32(255.0) if f.dtype == np.uint8 else np.array(f, np.float32)


def _u8(image: np.ndarray) -> np.ndarray:
    """As the work folder's PNG has it (`nst_engine.image.write_image`)."""
    return (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def _paint_chunk(job: Any, frames: np.ndarray, skip: int) -> np.ndarray:
    """On a worker: paint ``frames`` with ``job`` (a `FramesJob`) in turn; the outputs after the first
    ``skip`` (the overlap) as uint8 NxHxWx3."""
    with tempfile.TemporaryDirectory(prefix="nst-chunk-") as scratch:
        outs = [_u8(out) for k, out in enumerate(job.run(_unpack(frames), Path(scratch))) if k >= skip]
    return np.stack(outs)


def _chunk_frames(frames: Iterable[np.ndarray], chunks: Sequence[Chunk]) -> Iterator[np.ndarray]:
    """Each chunk's frames ``lead:stop``, packed, from one pass over ``frames`` (from ``chunks[0].lead``)."""
    source = iter(frames)
    held: list[np.ndarray] = []  # frames pos - len(held) … pos - 1
    pos = chunks[0].lead if chunks else 0
    for c in chunks:
        if c.lead < pos - len(held) or c.lead > pos:
            raise EngineRuntimeError(f"chunks out of order: {c} after frame {pos}")
        del held[: len(held) - (pos - c.lead)]
        while pos < c.stop:
            frame = next(source, None)
            if frame is None:
                raise EngineRuntimeError(f"the frames ended at {pos}, before the end of the chunk {c}")
            held.append(frame)
            pos += 1
        yield _pack(held)


def run_chunks(job: Any, frames: Callable[[int, int], Iterable[np.ndarray]], chunks: Sequence[Chunk],
               done: Callable[[int, np.ndarray], None], *, cpus: float = 1, gpus: float = 0) -> None:
    """Paint ``chunks`` on the connected Ray cluster (`connect`); ``done(k, frames)`` gets chunk k's
    kept frames (uint8 NxHxWx3) in order, k = 0, 1, …, as soon as it and those before it are back.

    ``job.run(frames, scratch)`` paints frames in turn (a picklable `FramesJob`); ``frames(a, b)``
    reads frames ``a:b`` once, in order. Each task asks for ``cpus`` CPUs and ``gpus`` GPUs.
    """
    import ray

    if not chunks:
        return
    res = ray.cluster_resources()
    slots = max(1, int(res.get("CPU", 1) // cpus))
    if gpus:
        slots = max(1, min(slots, int(res.get("GPU", 0) // gpus)))
    window = slots + 1  # one more than can run, so that a slot never waits for the driver's reading
    task = ray.remote(_paint_chunk).options(num_cpus=cpus, num_gpus=gpus)
    job_ref = ray.put(job)
    source = _chunk_frames(frames(chunks[0].lead, chunks[-1].stop), chunks)
    pending: dict[Any, int] = {}
    finished: dict[int, np.ndarray] = {}
    submitted = written = 0
    try:
        while written < len(chunks):
            while submitted < len(chunks) and len(pending) + len(finished) < window:
                c = chunks[submitted]
                pending[task.remote(job_ref, next(source), c.start - c.lead)] = submitted
                submitted += 1
            ready, _ = ray.wait(list(pending), num_returns=1)
            for ref in ready:
                finished[pending.pop(ref)] = _get(ray, ref)
            while written in finished:
                done(written, finished.pop(written))
                written += 1
    except BaseException:
        for ref in pending:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        raise


def _get(ray: Any, ref: Any) -> np.ndarray:
    """A task's result; a task's own error (an `InputError`, …) is raised as itself."""
    try:
        out: np.ndarray = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise
    return out
