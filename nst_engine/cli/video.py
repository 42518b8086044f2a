"""`nst video INPUT -o OUTPUT (STYLE… | --model NAME)`: stylize a video, an animation or a folder of frames.

Frames go through `nst_engine.temporal.stylize_frames` (each output blended with the previous one
warped along the optical flow, ``--consistency temporal``). With ``--model`` each frame is painted by
the model; with STYLE images by the iterative optimizer, each frame after the first starting from
the previous result warped along the flow (``--next-steps``, default half of ``--steps``).

Finished frames are kept in ``OUTPUT.nst-frames/`` (PNG, a ``manifest.json`` of the settings, the
last output in float for the temporal blend); the output is written from them, atomically, at the
end, and the folder removed. Ctrl-C or SIGTERM stops the run with the frames kept; ``--resume``
continues it (refused if the settings differ).
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..progress import Progress
from ..temporal import CONSISTENCY, DEFAULT_BLEND, DEFAULT_PRESET, PRESETS
from ..temporal import DEFAULT_TEMPORAL_WEIGHT as TEMPORAL_WEIGHT

WORK_SUFFIX = ".nst-frames"
_SELECTION_FIELDS = ("composite", "margin", "feather")  # `StylizeOptions` a whole frame does not use


def register(sub: Any) -> None:
    from ..options import StylizeOptions
    from .fields import add_field_options
    from .options import add_config_options

    p = sub.add_parser(
        "video", help="stylize a video, animation or folder of frames (temporal consistency)",
        description="Stylize every frame of INPUT with STYLE images (iterative) or --model, each frame blended "
                    "with the previous one warped along the optical flow. Ctrl-C keeps the finished frames "
                    "in OUTPUT.nst-frames/; --resume continues.")
    p.add_argument("input", metavar="INPUT", help="a video file (mp4, mov, mkv, webm, …), an animated GIF, WebP or "
                                                 "APNG, or a folder of numbered images")
    p.add_argument("styles", metavar="STYLE", nargs="*", help="style image(s) for the iterative method; none with --model")
    p.add_argument("-o", "--output", required=True, help="a video (.mp4, .m4v, .mov, .mkv, .webm), an animation "
                                                         "(.gif, .webp, .png/.apng) or a folder (PNG frames)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress")
    g = p.add_argument_group("video")
    g.add_argument("--consistency", choices=CONSISTENCY, default="temporal",
                   help="temporal: blend each frame with the previous output warped along the optical flow; "
                        "none: frame by frame [default: temporal]")
    g.add_argument("--blend", type=float, default=DEFAULT_BLEND,
                   help=f"weight of the warped previous output, 0 ≤ a < 1 [default: {DEFAULT_BLEND}]")
    g.add_argument("--flow-preset", dest="preset", choices=PRESETS, default=DEFAULT_PRESET,
                   help=f"DIS optical flow preset [default: {DEFAULT_PRESET}]")
    g.add_argument("--frames", metavar="A:B", help="only frames A to B-1 (counted from 0; A: or :B for open ends)")
    g.add_argument("--fps", type=float, help="output frame rate [default: the input's; 25 for a folder]")
    g.add_argument("--next-steps", type=int, metavar="N",
                   help="iterative: optimizer steps for each frame after the first, which starts from the previous "
                        "result warped along the flow (--consistency temporal) [default: half of --steps]")
    g.add_argument("--temporal-weight", type=float, metavar="W",
                   help="iterative: weight of Ruder et al.'s temporal loss, which holds the pixels visible in the "
                        "previous frame near its warped result (0: none; --consistency temporal) "
                        f"[default: {TEMPORAL_WEIGHT}]")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.nst-frames/")
    g.add_argument("--keep-frames", action="store_true", help="keep OUTPUT.nst-frames/ after writing the output")
    add_field_options(p, StylizeOptions, skip=_SELECTION_FIELDS)
    add_config_options(p, skip=frozenset({"save_every"}))
    p.set_defaults(func=run_video)


def frame_range(text: str | None, count: int) -> tuple[int, int]:
    """``--frames A:B`` → (A, B) within ``count`` frames (Python slice bounds, no negatives)."""
    if text is None:
        return 0, count
    a, sep, b = text.partition(":")
    try:
        start, stop = int(a) if a.strip() else 0, int(b) if b.strip() else count
    except ValueError:
        start = stop = -1
    if not sep or not 0 <= start < stop <= count:
        raise InputError("--frames", text, f"expected A:B with 0 ≤ A < B ≤ {count} (the input has {count} frames)")
    return start, stop


def _stamp(path: Path) -> list[Any]:
    if path.is_dir():
        names = sorted(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in path.iterdir() if f.is_file())
        return ["folder", hashlib.sha1("\n".join(names).encode()).hexdigest()]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _style_stamp(spec: str) -> Any:
    return spec if spec.startswith(("sample:", "style:")) or not Path(spec).is_file() else [spec, *_stamp(Path(spec))]


class WorkFolder:
    """``OUTPUT.nst-frames/``: ``manifest.json``, ``NNNNNN.png`` per finished frame, ``state.npz``."""

    def __init__(self, output: Path) -> None:
        self.path = output.with_name(output.name + WORK_SUFFIX)
        self.manifest = self.path / "manifest.json"
        self.state_file = self.path / "state.npz"

    def exists(self) -> bool:
        return self.manifest.is_file()

    def start(self, settings: dict[str, Any]) -> None:
        self.path.mkdir(exist_ok=True)
        self._atomic(self.manifest, json.dumps(settings, indent=1).encode())

    def differences(self, settings: dict[str, Any]) -> list[str]:
        try:
            old = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            return ["manifest.json unreadable"]
        return [f"{k} {json.dumps(old.get(k))} (now {json.dumps(settings.get(k))})"
                for k in sorted(set(old) | set(settings)) if old.get(k) != settings.get(k)]

    def frame(self, i: int) -> Path:
        return self.path / f"{i:06d}.png"

    def state(self) -> tuple[int, np.ndarray] | None:
        """(index, float output) of the last finished frame; None before the first."""
        try:
            with np.load(self.state_file) as z:
                return int(z["index"]), np.asarray(z["out"], np.float32)
        except (OSError, ValueError, KeyError):
            return None

    def save(self, i: int, out: np.ndarray) -> None:
        """Frame ``i``'s PNG, then the state (a crash between the two redoes frame ``i``)."""
        import io

        from ..image import write_image

        write_image(self.frame(i), out)
        buf = io.BytesIO()
        np.savez(buf, index=np.int64(i), out=out.astype(np.float32))
        self._atomic(self.state_file, buf.getvalue())

    def _atomic(self, path: Path, data: bytes) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.part")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        from PIL import Image

        for i in range(start, stop):
            with Image.open(self.frame(i)) as im:
                yield np.asarray(im.convert("RGB"))

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)


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


def _model_paint(options: Any, cfg: Any) -> Callable[..., np.ndarray]:
    from .. import models
    from ..selection import model_device

    kw = dict(strength=options.strength, tile=cfg.tile, overlap=options.overlap_for(cfg.tile),
              device=model_device(cfg.device), model_size=options.model_size, preserve_colors=cfg.preserve_colors)
    return lambda frame, prev: models.stylize_model(frame, options.model, **kw)


def _iterative_paint(args: argparse.Namespace, cfg: Any, work: WorkFolder, progress: "_Display",
                     next_steps: int) -> Callable[..., np.ndarray]:
    from ..samples import load
    from ..temporal import TemporalStylizer, warp
    from ..temporal_loss import TemporalTarget

    temporal_weight = TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight

    final = int(cfg.scales[-1]) if cfg.scales else int(cfg.size)
    styles = [load(s, "STYLE", max_side=max(1, math.ceil(final * cfg.style_scale))) for s in args.styles]
    flows = TemporalStylizer(lambda f: f, "temporal", args.blend, args.preset) if args.consistency == "temporal" else None

    def paint(frame: np.ndarray, prev: tuple[np.ndarray, np.ndarray] | None) -> np.ndarray:
        from ..api import stylize
        from ..image import write_image

        run, temporal = cfg, None
        if prev is not None and flows is not None:  # start from the previous result, warped
            backward, mask = flows.flow_and_mask(prev[0], frame)
            m = mask[..., None]
            warped = warp(prev[1], backward)
            init = write_image(work.path / "init.tif", m * warped + (1 - m) * frame)
            run = cfg.replace(init=str(init), steps=next_steps, scales=(max(frame.shape[:2]),), scale_steps=())
            if temporal_weight > 0:
                temporal = TemporalTarget(warped, mask, temporal_weight)
        image = stylize(frame, styles, run, callback=progress.step, temporal=temporal).image
        if image.shape != frame.shape:
            from ..resample import resize

            image = np.clip(resize(image, *frame.shape[:2]), 0.0, 1.0).astype(np.float32)
        return image

    return paint


class _Display:
    """``video frame 3/40 [###...] step 80/250  00:12<01:40``: redrawn on a TTY, a line per frame otherwise."""

    def __init__(self, total: int, quiet: bool) -> None:
        self.total, self.quiet, self.tty = total, quiet, sys.stderr.isatty()
        self.times: list[float] = []
        self.t0 = self.t_frame = time.perf_counter()
        self.done = 0
        self.inner = ""
        self._open = False
        self._width = 0

    def eta(self) -> float | None:
        later = self.times[1:] or self.times  # the first frame (more steps) counts only alone
        return sum(later) / len(later) * (self.total - self.done) if later else None

    def step(self, p: Progress) -> None:
        self.inner = f" step {p.step}/{p.total}"
        self._draw(force=False)

    def frame(self) -> None:
        now = time.perf_counter()
        self.times.append(now - self.t_frame)
        self.t_frame, self.done, self.inner = now, self.done + 1, ""
        self._draw(force=True)

    def _draw(self, force: bool) -> None:
        from .progress import _clock

        if self.quiet or (not self.tty and not force):
            return
        filled = 30 * self.done // max(self.total, 1)
        line = (f"video frame {self.done}/{self.total} [{'#' * filled}{'.' * (30 - filled)}]{self.inner}  "
                f"{_clock(time.perf_counter() - self.t0)}<{_clock(self.eta())}")
        width, self._width = self._width, len(line)  # a shorter line blanks the longer one's end
        sys.stderr.write(f"\r{line:<{width}}" if self.tty else f"nst: {line}\n")
        sys.stderr.flush()
        self._open = self.tty

    def close(self) -> None:
        if self._open:
            sys.stderr.write("\n")
            sys.stderr.flush()
            self._open = False


def _settings(args: argparse.Namespace, clip: Any, span: tuple[int, int], method: str, options: Any, cfg: Any,
              next_steps: int) -> dict[str, Any]:
    s: dict[str, Any] = {
        "input": [str(clip.path.resolve()), clip.count, list(clip.size), _stamp(clip.path)], "frames": list(span),
        "method": method, "consistency": args.consistency, "blend": args.blend, "preset": args.preset,
    }
    if method == "model":
        s["model"] = {k: getattr(options, k) for k in ("model", "model_size", "strength", "overlap")}
        s["model"].update(tile=cfg.tile, device=cfg.device, preserve_colors=cfg.preserve_colors)
    else:
        s.update(styles=[_style_stamp(x) for x in args.styles], config=cfg.to_dict(), next_steps=next_steps,
                 temporal_weight=TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight)
    normal: dict[str, Any] = json.loads(json.dumps(s))
    return normal


def _check_args(args: argparse.Namespace) -> tuple[Any, Any, int]:
    from ..config import StyleConfig
    from ..options import MODEL_CONFIG_FIELDS, StylizeOptions
    from ..temporal import TemporalStylizer
    from .fields import refuse_changed
    from .options import config_from_args, stylize_options_from_args

    options = stylize_options_from_args(args)
    TemporalStylizer(lambda f: f, args.consistency, args.blend, args.preset)  # checks the video options
    if args.fps is not None and not (math.isfinite(args.fps) and 0.1 <= args.fps <= 1000):
        raise InputError("--fps", args.fps, "must be between 0.1 and 1000")
    if options.method == "model":
        if args.styles:
            raise InputError("--model", args.model, "give STYLE images or --model, not both")
        iterative_only = [f.name for f in dataclasses.fields(StyleConfig) if f.name not in MODEL_CONFIG_FIELDS]
        refuse_changed(args, StyleConfig, iterative_only, "applies to the iterative method (STYLE images), not --model")
        if args.next_steps is not None:
            raise InputError("--next-steps", args.next_steps, "applies to the iterative method (STYLE images)")
        if args.temporal_weight is not None:
            raise InputError("--temporal-weight", args.temporal_weight, "applies to the iterative method (STYLE images)")
        cfg = StyleConfig(**{n: getattr(args, n) for n in MODEL_CONFIG_FIELDS})
        cfg.check()
        return options, cfg, 0
    refuse_changed(args, StylizeOptions, ("model_size", "strength", "overlap"), "applies to --model only")
    if not args.styles:
        raise InputError("STYLE", "", "give at least one style image, or --model NAME")
    cfg = config_from_args(args)
    if args.temporal_weight is not None and not (math.isfinite(args.temporal_weight) and args.temporal_weight >= 0):
        raise InputError("--temporal-weight", args.temporal_weight, "must be a number ≥ 0")
    next_steps = max(1, cfg.steps // 2) if args.next_steps is None else args.next_steps
    if not 0 <= next_steps <= 10**6:
        raise InputError("--next-steps", next_steps, "must be between 0 and 1000000")
    return options, cfg, next_steps


def run_video(args: argparse.Namespace) -> int:
    from ..video_io import check_output, open_clip

    out = Path(args.output)
    kind = check_output(out, "output")
    options, cfg, next_steps = _check_args(args)
    clip = open_clip(args.input, "INPUT")
    if out.resolve() == clip.path.resolve():
        raise InputError("output", args.output, "is the input; give another output")
    start, stop = frame_range(args.frames, clip.count)
    settings = _settings(args, clip, (start, stop), options.method, options, cfg, next_steps)
    work = WorkFolder(out)
    saved = None
    if work.exists() and not args.resume:
        raise InputError("output", args.output, f"an interrupted run left its frames in {work.path}; add --resume "
                                                "to continue it, or delete that folder to start over")
    if work.exists():
        diff = work.differences(settings)
        if diff:
            raise InputError("--resume", str(work.path), "the interrupted run had other settings: " + "; ".join(diff))
        saved = work.state()
    elif args.resume and not args.quiet:
        print(f"nst: note: nothing to resume in {work.path}; starting from the first frame", file=sys.stderr)
    first = start if saved is None else saved[0] + 1
    display = _Display(stop - start, args.quiet)
    display.done = first - start
    shape = clip.size
    if options.method == "model":
        paint = _model_paint(options, cfg)
    else:
        from ..image import fit_long_side

        shape = fit_long_side(*clip.size, int(cfg.scales[-1]) if cfg.scales else int(cfg.size))
        paint = _iterative_paint(args, cfg, work, display, next_steps)
    restore = _on_sigterm()
    try:
        work.start(settings)
        _run_frames(args, clip, work, paint, saved, (first, stop), shape, display)
        from ..video_io import write_clip

        timing = clip.timing(start, stop, args.fps)
        audio = clip.audio_source(start, stop) if kind == "video" else None
        write_clip(out, work.frames(start, stop), timing, audio)
    except BaseException as e:
        display.close()
        state = work.state()
        kept = 0 if state is None else state[0] + 1 - start
        if not kept:
            work.remove()
            raise
        if not isinstance(e, KeyboardInterrupt):
            print(f"nst: note: {kept} of {stop - start} finished frames kept in {work.path}; the same command with "
                  "--resume continues", file=sys.stderr)
            raise
        print(f"nst: interrupted; {out} not written; {kept} of {stop - start} frames kept in {work.path}; run the "
              "same command with --resume to continue", file=sys.stderr)
        return 130
    finally:
        restore()
    if not args.keep_frames:
        work.remove()
    if not args.quiet:
        sound = ", audio copied" if audio is not None else ""
        print(f"wrote {out} ({shape[1]}x{shape[0]}, {stop - start} frames, {float(timing.fps):.4g} fps{sound}; "
              f"{time.perf_counter() - display.t0:.1f} s)", file=sys.stderr)
    return 0


def _run_frames(args: argparse.Namespace, clip: Any, work: WorkFolder, paint: Callable[..., np.ndarray],
                saved: tuple[int, np.ndarray] | None, span: tuple[int, int], shape: tuple[int, int],
                display: _Display) -> None:
    """Stylize frames ``span`` into ``work``; a resumed temporal run replays its last saved output first."""
    from ..temporal import stylize_frames

    first, stop = span
    painter = _Painter(paint)
    primed = saved is not None and args.consistency == "temporal" and first < stop

    def feed() -> Iterator[np.ndarray]:
        if primed:
            assert saved is not None
            painter.replay = saved[1]
        for frame in clip.frames(first - 1 if primed else first, stop):
            if frame.shape[:2] != shape:
                from ..resample import resize

                frame = np.clip(resize(frame, *shape), 0.0, 1.0).astype(np.float32)
            yield frame

    outs = stylize_frames(feed(), painter, consistency=args.consistency, blend=args.blend, preset=args.preset)
    if primed:
        painter.remember(next(outs))
    i = first - 1
    for i, image in enumerate(outs, first):
        painter.remember(image)
        work.save(i, image)
        display.frame()
    display.close()
    if i + 1 < stop:
        raise InputError("INPUT", str(clip.path), f"ended after {i + 1} frames; {clip.count} were counted")


def _on_sigterm() -> Callable[[], object]:
    """SIGTERM as Ctrl-C (KeyboardInterrupt) while the frames run (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    return lambda: signal.signal(signal.SIGTERM, old)
