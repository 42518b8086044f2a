"""`nst video INPUT -o OUTPUT (STYLE… | --model NAME)`: stylize a video, an animation or a folder of frames.

Frames go through `nst_engine.temporal.stylize_frames` (each output blended with the previous one
warped along the optical flow, ``--consistency temporal``). With ``--model`` each frame is painted by
the model; with STYLE images by the iterative optimizer, each frame after the first starting from
the previous result warped along the flow (``--next-steps``, default half of ``--steps``).

Finished frames are kept in ``OUTPUT.nst-frames/`` (PNG, a ``manifest.json`` of the settings, the
last output in float for the temporal blend; `nst_engine.cli.video_work`); the output is written
from them, atomically, at the end, and the folder removed. Ctrl-C or SIGTERM stops the run with the
frames kept; ``--resume`` continues it (refused if the settings differ).

``--ray ADDRESS`` paints chunks of frames on a Ray cluster (`nst_engine.cluster`, the ``cluster``
extra), each chunk after the first starting ``--chunk-overlap`` frames early so that its temporal
blend is warmed up at the join; finished chunks go into the same work folder, in order.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from ..temporal import CONSISTENCY, DEFAULT_BLEND, DEFAULT_PRESET, MAX_REFINE_STEPS, PRESETS
from ..temporal import DEFAULT_TEMPORAL_WEIGHT as TEMPORAL_WEIGHT
from .video_paint import FramesJob
from .video_work import Display, WorkFolder, stamp, style_stamp

_SELECTION_FIELDS = ("composite", "margin", "feather")  # `StylizeOptions` a whole frame does not use


def register(sub: Any) -> None:
    from ..cluster import DEFAULT_CHUNK_FRAMES, DEFAULT_CHUNK_OVERLAP
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
    g.add_argument("--refine-steps", type=int, metavar="K", default=0,
                   help="--model: after each blend, K optimizer steps on the model's own loss towards the frame's "
                        "unblended painting plus the temporal loss (keeps the strokes crisp; needs torch, about "
                        "1.6 s a frame at 256x144 for 5) [default: 0]")
    g.add_argument("--temporal-weight", type=float, metavar="W",
                   help="iterative: weight of Ruder et al.'s temporal loss, which holds the pixels visible in the "
                        "previous frame near its warped result (0: none; --consistency temporal) "
                        f"[default: {TEMPORAL_WEIGHT}]")
    g.add_argument("--resume", action="store_true", help="continue an interrupted run from OUTPUT.nst-frames/")
    g.add_argument("--keep-frames", action="store_true", help="keep OUTPUT.nst-frames/ after writing the output")
    c = p.add_argument_group("cluster (the cluster extra: pip install -e '.[cluster]' on every node)")
    c.add_argument("--ray", metavar="ADDRESS",
                   help="paint chunks of frames on a Ray cluster: auto (the cluster this machine is part of), "
                        "local or local:N (a Ray started here, with N CPUs), HOST:PORT or ray://HOST:PORT "
                        "(Ray Client: pip install 'ray[client]') [default: no Ray, frames painted here in turn]")
    c.add_argument("--chunk-frames", type=int, metavar="N",
                   help=f"--ray: frames per chunk [default: {DEFAULT_CHUNK_FRAMES}]")
    c.add_argument("--chunk-overlap", type=int, metavar="K",
                   help="--ray: frames painted before each chunk but the first, and dropped, so that its temporal "
                        f"blend starts warm at the join (--consistency temporal) [default: {DEFAULT_CHUNK_OVERLAP}]")
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


def _make_job(args: argparse.Namespace, options: Any, cfg: Any, next_steps: int) -> FramesJob:
    job = FramesJob(options.method, args.consistency, args.blend, args.preset, options, cfg,
                    refine_steps=args.refine_steps)
    if options.method != "model":
        from ..samples import load

        final = int(cfg.scales[-1]) if cfg.scales else int(cfg.size)
        job.styles = tuple(load(s, "STYLE", max_side=max(1, math.ceil(final * cfg.style_scale))) for s in args.styles)
        job.next_steps = next_steps
        job.temporal_weight = TEMPORAL_WEIGHT if args.temporal_weight is None else args.temporal_weight
    return job


def _settings(args: argparse.Namespace, clip: Any, span: tuple[int, int], method: str, options: Any, cfg: Any,
              next_steps: int) -> dict[str, Any]:
    s: dict[str, Any] = {
        "input": [str(clip.path.resolve()), clip.count, list(clip.size), stamp(clip.path)], "frames": list(span),
        "method": method, "consistency": args.consistency, "blend": args.blend, "preset": args.preset,
    }
    if method == "model":
        s["model"] = {k: getattr(options, k) for k in ("model", "model_size", "strength", "overlap")}
        s["model"].update(tile=cfg.tile, device=cfg.device, preserve_colors=cfg.preserve_colors)
        if args.refine_steps:
            s["refine_steps"] = args.refine_steps
    else:
        s.update(styles=[style_stamp(x) for x in args.styles], config=cfg.to_dict(), next_steps=next_steps,
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
    _check_cluster_args(args)
    if options.method == "model":
        if args.styles:
            raise InputError("--model", args.model, "give STYLE images or --model, not both")
        iterative_only = [f.name for f in dataclasses.fields(StyleConfig) if f.name not in MODEL_CONFIG_FIELDS]
        refuse_changed(args, StyleConfig, iterative_only, "applies to the iterative method (STYLE images), not --model")
        if args.next_steps is not None:
            raise InputError("--next-steps", args.next_steps, "applies to the iterative method (STYLE images)")
        if args.temporal_weight is not None:
            raise InputError("--temporal-weight", args.temporal_weight, "applies to the iterative method (STYLE images)")
        if not 0 <= args.refine_steps <= MAX_REFINE_STEPS:
            raise InputError("--refine-steps", args.refine_steps, f"must be between 0 and {MAX_REFINE_STEPS}")
        cfg = StyleConfig(**{n: getattr(args, n) for n in MODEL_CONFIG_FIELDS})
        cfg.check()
        return options, cfg, 0
    refuse_changed(args, StylizeOptions, ("model_size", "strength", "overlap"), "applies to --model only")
    if args.refine_steps:
        raise InputError("--refine-steps", args.refine_steps, "applies to --model (the iterative method optimizes "
                                                              "every frame anyway: --next-steps)")
    if not args.styles:
        raise InputError("STYLE", "", "give at least one style image, or --model NAME")
    if args.ray is not None and args.consistency == "temporal":
        raise InputError("--ray", args.ray, "with STYLE images needs --consistency none: the iterative method starts "
                                            "each frame from the previous result, so a chunk painted on its own does "
                                            "not join the one before it (the model's blend does: use --model)")
    cfg = config_from_args(args)
    if args.temporal_weight is not None and not (math.isfinite(args.temporal_weight) and args.temporal_weight >= 0):
        raise InputError("--temporal-weight", args.temporal_weight, "must be a number ≥ 0")
    next_steps = max(1, cfg.steps // 2) if args.next_steps is None else args.next_steps
    if not 0 <= next_steps <= 10**6:
        raise InputError("--next-steps", next_steps, "must be between 0 and 1000000")
    return options, cfg, next_steps


def _check_cluster_args(args: argparse.Namespace) -> None:
    from ..cluster import DEFAULT_CHUNK_FRAMES, DEFAULT_CHUNK_OVERLAP, check_address

    for name, value, lo, hi in (("--chunk-frames", args.chunk_frames, 1, 10**6),
                                ("--chunk-overlap", args.chunk_overlap, 0, 10**4)):
        if value is not None and args.ray is None:
            raise InputError(name, value, "applies with --ray only")
        if value is not None and not lo <= value <= hi:
            raise InputError(name, value, f"must be between {lo} and {hi}")
    if args.ray is not None:
        check_address(args.ray)  # and that Ray is installed
    args.chunk_frames = DEFAULT_CHUNK_FRAMES if args.chunk_frames is None else args.chunk_frames
    args.chunk_overlap = DEFAULT_CHUNK_OVERLAP if args.chunk_overlap is None else args.chunk_overlap


def _open_work(args: argparse.Namespace, out: Path, settings: dict[str, Any]) -> tuple[WorkFolder, Any]:
    """The work folder, and the saved state of the run to resume (None: none)."""
    work = WorkFolder(out)
    if work.exists() and not args.resume:
        raise InputError("output", args.output, f"an interrupted run left its frames in {work.path}; add --resume "
                                                "to continue it, or delete that folder to start over")
    if work.exists():
        diff = work.differences(settings)
        if diff:
            raise InputError("--resume", str(work.path), "the interrupted run had other settings: " + "; ".join(diff))
        return work, work.state()
    if args.resume and not args.quiet:
        print(f"nst: note: nothing to resume in {work.path}; starting from the first frame", file=sys.stderr)
    return work, None


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
    work, saved = _open_work(args, out, settings)
    first = start if saved is None else saved[0] + 1
    display = Display(stop - start, args.quiet)
    display.done = first - start
    shape = clip.size
    if options.method != "model":
        from ..image import fit_long_side

        shape = fit_long_side(*clip.size, int(cfg.scales[-1]) if cfg.scales else int(cfg.size))
    job = _make_job(args, options, cfg, next_steps)
    restore = _on_sigterm()
    try:
        work.start(settings)
        if args.ray is not None:
            _run_chunks(args, clip, work, job, (start, first, stop), shape, display)
        else:
            _run_frames(args, clip, work, job, saved, (first, stop), shape, display)
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


def _clip_frames(clip: Any, a: int, b: int, shape: tuple[int, int]) -> Iterator[np.ndarray]:
    """Frames ``a:b`` of ``clip`` at ``shape`` (height, width); `InputError` if it has fewer."""
    i = a
    for frame in clip.frames(a, b):
        if frame.shape[:2] != shape:
            from ..resample import resize

            frame = np.clip(resize(frame, *shape), 0.0, 1.0).astype(np.float32)
        i += 1
        yield frame
    if i < b:
        raise InputError("INPUT", str(clip.path), f"ended after {i} frames; {clip.count} were counted")


def _run_frames(args: argparse.Namespace, clip: Any, work: WorkFolder, job: FramesJob,
                saved: tuple[int, np.ndarray] | None, span: tuple[int, int], shape: tuple[int, int],
                display: Display) -> None:
    """Stylize frames ``span`` into ``work``; a resumed temporal run replays its last saved output first."""
    first, stop = span
    primed = saved is not None and args.consistency == "temporal" and first < stop
    replay = saved[1] if primed and saved is not None else None
    frames = _clip_frames(clip, first - 1 if primed else first, stop, shape)
    for i, image in enumerate(job.run(frames, work.path, display.step, replay), first):
        work.save(i, image)
        display.frame()
    display.close()


def _run_chunks(args: argparse.Namespace, clip: Any, work: WorkFolder, job: FramesJob, span: tuple[int, int, int],
                shape: tuple[int, int], display: Display) -> None:
    """Frames ``first:stop`` into ``work`` in chunks on Ray; each chunk after the run's first frame
    ``start`` starts ``--chunk-overlap`` frames early (never before ``start``), its own temporal warm-up."""
    from ..cluster import connect, plan, run_chunks

    start, first, stop = span
    overlap = args.chunk_overlap if args.consistency == "temporal" else 0  # frame by frame: nothing to warm
    chunks = plan(first, stop, args.chunk_frames, overlap, floor=start)
    if not chunks:  # a resumed run that had finished its frames
        return

    def done(k: int, outs: np.ndarray) -> None:
        for i, image in enumerate(outs, chunks[k].start):
            work.save(i, image.astype(np.float32) / np.float32(255.0))
        display.frames(len(outs), f" chunk {k + 1}/{len(chunks)}")

    with connect(args.ray, quiet=args.quiet) as cluster:
        if not args.quiet:
            print(f"nst: Ray: {cluster}; {len(chunks)} chunks of ≤{args.chunk_frames} frames, {overlap} before "
                  "each for the join", file=sys.stderr)
        run_chunks(job, lambda a, b: _clip_frames(clip, a, b, shape), chunks, done,
                   gpus=1 if str(job.cfg.device).startswith("cuda") else 0)
    display.close()


def _on_sigterm() -> Callable[[], object]:
    """SIGTERM as Ctrl-C (KeyboardInterrupt) while the frames run (main thread only); returns the undo."""
    if threading.current_thread() is not threading.main_thread():
        return lambda: None
    old = signal.signal(signal.SIGTERM, signal.default_int_handler)
    return lambda: signal.signal(signal.SIGTERM, old)
