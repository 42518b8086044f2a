"""Frame sequences in and out, for `nst video`: folders of numbered images, animations, video files.

    clip = open_clip("in.mp4")                      # or a folder, .gif, .webp, .png/.apng
    for frame in clip.frames(0, clip.count): ...    # HxWx3 float32 0..1
    write_clip("out.mp4", frames_uint8, clip.timing(0, clip.count), audio=clip.audio_source(0, clip.count))

* A folder: its images (png, jpg, tif, webp, bmp) in natural order of their names (``f2`` before
  ``f10``); all the same size. Written as ``000000.png``, ``000001.png``, … (no timing, no audio).
* Animated GIF, WebP and APNG (``.png``/``.apng``) through Pillow: each frame's duration (ms) and
  the loop count are kept.
* Video files (mp4, mov, mkv, webm, avi, … to read; mp4, m4v, mov, mkv, webm to write) through
  ffmpeg from ``imageio-ffmpeg`` (the ``video`` extra), imported lazily: frame rate, size and
  frame count are kept (H.264 / VP9; an odd width or height is written 4:4:4, since 4:2:0 needs
  even sides), and the input's audio is copied into the output (re-encoded only where the
  output's container cannot hold its codec), trimmed to the frames written.

Every write is atomic: a temporary file (or folder) next to the output, renamed over it at the end,
so an interrupted write never leaves a half-written output.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .config import MAX_PIXELS
from .errors import EngineRuntimeError, InputError
from .image import _umask

__all__ = ["ANIMATION_SUFFIXES", "VIDEO_SUFFIXES", "FRAME_SUFFIXES", "DEFAULT_FPS", "Clip", "Timing", "Audio",
           "open_clip", "output_kind", "check_output", "write_clip", "ffmpeg_exe"]

ANIMATION_SUFFIXES = {".gif": "GIF", ".webp": "WEBP", ".png": "PNG", ".apng": "PNG"}
VIDEO_SUFFIXES = {".mp4": "libx264", ".m4v": "libx264", ".mov": "libx264", ".mkv": "libx264", ".webm": "libvpx-vp9"}
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp")
DEFAULT_FPS = 25.0  # a folder of images has no frame rate
_FRAME_NAME = re.compile(r"^\d{6}\.png$")  # the frames `write_clip` puts in a folder
_VIDEO_QUALITY = {"libx264": ["-crf", "18", "-preset", "medium"], "libvpx-vp9": ["-crf", "30", "-b:v", "0"]}
_AUDIO_CODEC = {".webm": "libopus"}  # when the input's audio cannot be copied (default: aac)


def _imageio_ffmpeg(argument: str, path: object) -> Any:
    try:
        import imageio_ffmpeg
    except ImportError:
        raise InputError(argument, str(path), "video files need imageio-ffmpeg: pip install -e '.[video]'") from None
    return imageio_ffmpeg


def ffmpeg_exe(argument: str = "INPUT", path: object = "") -> str:
    """The ffmpeg that ``imageio-ffmpeg`` ships (or ``IMAGEIO_FFMPEG_EXE``)."""
    return str(_imageio_ffmpeg(argument, path).get_ffmpeg_exe())


def _natural(name: str) -> list[Any]:
    return [int(t) if t.isdigit() else t.lower() for t in re.split(r"(\d+)", name)]


def _exact_fps(fps: float) -> Fraction:
    """ffmpeg prints 29.97 for 30000/1001: NTSC rates back as fractions, others as given."""
    ntsc = round(fps * 1.001)
    if ntsc % 6 == 0 and fps != ntsc and abs(fps - ntsc / 1.001) < 0.006:
        return Fraction(ntsc * 1000, 1001)
    return Fraction(fps).limit_denominator(1001)


@dataclass(frozen=True)
class Timing:
    """How the output plays: ``fps`` for video files, ``durations`` (ms per frame) and ``loop``
    (0: forever; None: none given) for animations."""

    fps: Fraction
    durations: tuple[int, ...]
    loop: int | None = None


@dataclass(frozen=True)
class Audio:
    """The audio of ``path`` from ``start`` for ``duration`` seconds, to copy into an output."""

    path: Path
    start: float
    duration: float


@dataclass(frozen=True)
class Clip:
    """An input sequence (`open_clip`). ``size`` is (height, width); ``kind`` folder, animation or video."""

    path: Path
    kind: str
    count: int
    size: tuple[int, int]
    fps: float | None = None  # video files
    durations: tuple[int, ...] = ()  # ms per frame (animations)
    loop: int | None = None
    audio: bool = False
    files: tuple[Path, ...] = ()  # a folder's images, in order

    def timing(self, start: int, stop: int, fps: float | None = None) -> Timing:
        """The timing of frames ``start:stop`` (``fps`` overrides the input's)."""
        n = stop - start
        if fps is not None:
            rate = _exact_fps(fps)
            return Timing(rate, (max(1, round(1000 / fps)),) * n, self.loop)
        if self.durations:
            durations = self.durations[start:stop]
            total = sum(durations)
            return Timing(Fraction(1000 * n, total) if total > 0 else _exact_fps(DEFAULT_FPS), durations, self.loop)
        rate = _exact_fps(self.fps or DEFAULT_FPS)
        return Timing(rate, (max(1, round(1000 / float(rate))),) * n, self.loop)

    def audio_source(self, start: int, stop: int) -> Audio | None:
        """The audio that goes with frames ``start:stop``, if the input has any."""
        if not self.audio or not self.fps:
            return None
        return Audio(self.path, start / self.fps, (stop - start) / self.fps)

    def frames(self, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
        """Frames ``start:stop`` as HxWx3 float32 0..1 (alpha dropped)."""
        stop = self.count if stop is None else stop
        if self.kind == "folder":
            yield from self._folder_frames(start, stop)
        elif self.kind == "animation":
            yield from self._animation_frames(start, stop)
        else:
            yield from self._video_frames(start, stop)

    def _folder_frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        from .decode import decode

        for f in self.files[start:stop]:
            a = decode(f, "INPUT").image[..., :3]
            if a.shape[:2] != self.size:
                raise InputError("INPUT", str(f), f"is {a.shape[1]}x{a.shape[0]}, the first frame "
                                                  f"{self.size[1]}x{self.size[0]}: all frames must be one size")
            yield a

    def _animation_frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        from PIL import Image

        with Image.open(self.path) as im:
            for i in range(start, stop):
                im.seek(i)
                yield np.asarray(im.convert("RGB"), dtype=np.float32) / np.float32(255.0)

    def _video_frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        reader = _imageio_ffmpeg("INPUT", self.path).read_frames(str(self.path))
        try:
            meta = next(reader)
            w, h = meta["size"]
            for i, raw in enumerate(reader):
                if i >= stop:
                    break
                if i >= start:
                    yield np.frombuffer(raw, np.uint8).reshape(h, w, 3).astype(np.float32) / np.float32(255.0)
        finally:
            reader.close()


def _check_pixels(path: Path, w: int, h: int) -> None:
    if w * h > MAX_PIXELS:
        raise InputError("INPUT", str(path), f"frames of {w}x{h} exceed the limit of {MAX_PIXELS:,} px")


def open_clip(path: str | os.PathLike[str], argument: str = "INPUT") -> Clip:
    """Probe a folder of images, an animation or a video file (`Clip`); `InputError` naming
    ``argument`` for anything that is none of these."""
    p = Path(path)
    if p.is_dir():
        return _open_folder(p, argument)
    if not p.exists():
        raise InputError(argument, str(p), "no such file or folder")
    if not p.is_file():
        raise InputError(argument, str(p), "not a regular file or a folder")
    if p.suffix.lower() in ANIMATION_SUFFIXES:
        return _open_animation(p, argument)
    return _open_video(p, argument)


def _open_folder(p: Path, argument: str) -> Clip:
    files = sorted((f for f in p.iterdir() if f.suffix.lower() in FRAME_SUFFIXES and not f.name.startswith(".")
                    and f.is_file()), key=lambda f: _natural(f.name))
    if not files:
        raise InputError(argument, str(p), f"folder has no images ({', '.join(FRAME_SUFFIXES)})")
    from .decode import decode

    first = decode(files[0], argument).image
    return Clip(p, "folder", len(files), first.shape[:2], files=tuple(files))


def _open_animation(p: Path, argument: str) -> Clip:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(p) as im:
            _check_pixels(p, *im.size)
            n = int(getattr(im, "n_frames", 1))
            durations = []
            for i in range(n):
                im.seek(i)
                if im.format == "WEBP":
                    im.load()  # Pillow reads a WebP frame's duration when it decodes it
                durations.append(int(im.info.get("duration") or 0))
            loop = im.info.get("loop")
            size = (im.size[1], im.size[0])
    except UnidentifiedImageError:
        raise InputError(argument, str(p), "not an image or animation Pillow can read") from None
    except (OSError, SyntaxError, ValueError, EOFError) as e:
        raise InputError(argument, str(p), f"corrupt or truncated animation ({e})") from None
    if all(d == 0 for d in durations):
        durations = []  # a still image: the default frame rate
    else:
        durations = [d if d > 0 else 100 for d in durations]  # browsers play 0 ms frames at 100 ms
    return Clip(p, "animation", n, size, durations=tuple(durations), loop=None if loop is None else int(loop))


def _open_video(p: Path, argument: str) -> Clip:
    iio = _imageio_ffmpeg(argument, p)
    try:
        reader = iio.read_frames(str(p))
        try:
            meta = next(reader)
        finally:
            reader.close()
        count = int(iio.count_frames_and_secs(str(p))[0])
    except (OSError, RuntimeError, StopIteration, ValueError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise InputError(argument, str(p), f"not a video ffmpeg can read ({first})") from None
    w, h = (int(v) for v in meta["size"])
    _check_pixels(p, w, h)
    if count < 1:
        raise InputError(argument, str(p), "video has no frames")
    fps = float(meta.get("fps") or 0.0) or None
    return Clip(p, "video", count, (h, w), fps=fps, audio=bool(meta.get("audio_codec")))


def output_kind(path: str | os.PathLike[str], argument: str = "output") -> str:
    """``folder``, ``animation`` or ``video`` for an output path (a name without a suffix, or an
    existing folder, is a folder of PNG frames)."""
    p = Path(path)
    suffix = p.suffix.lower()
    if p.is_dir() or not suffix:
        return "folder"
    if suffix in ANIMATION_SUFFIXES:
        return "animation"
    if suffix in VIDEO_SUFFIXES:
        return "video"
    known = sorted({*ANIMATION_SUFFIXES, *VIDEO_SUFFIXES})
    raise InputError(argument, str(path), f"unknown output type; use a folder or one of {', '.join(known)}")


def check_output(path: str | os.PathLike[str], argument: str = "output") -> str:
    """Fail before any work if the output cannot be written; returns its `output_kind`."""
    p = Path(path)
    kind = output_kind(p, argument)
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise InputError(argument, str(path), f"folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise InputError(argument, str(path), f"folder {parent} is not writable")
    if kind == "folder" and p.is_dir():
        foreign = [f.name for f in p.iterdir() if not _FRAME_NAME.match(f.name)]
        if foreign:
            raise InputError(argument, str(path), f"folder holds other files ({foreign[0]}); give a new or "
                                                  "empty folder (its frames are replaced)")
    elif kind != "folder" and p.is_dir():
        raise InputError(argument, str(path), "is a folder")
    if kind == "video":
        _imageio_ffmpeg(argument, path)
    return kind


def write_clip(path: str | os.PathLike[str], frames: Iterable[np.ndarray], timing: Timing,
               audio: Audio | None = None) -> Path:
    """Write uint8 HxWx3 ``frames`` (all one size) to ``path`` atomically; audio only for video files."""
    p = Path(path)
    kind = check_output(p)
    if kind == "folder":
        return _write_folder(p, frames)
    fd, name = tempfile.mkstemp(prefix=f".{p.name}.", suffix=f".part{p.suffix}", dir=p.parent if str(p.parent) else ".")
    os.close(fd)
    tmp = Path(name)
    try:
        if kind == "animation":
            _write_animation(tmp, p.suffix.lower(), frames, timing)
        else:
            _write_video(tmp, frames, timing, audio)
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def _write_folder(p: Path, frames: Iterable[np.ndarray]) -> Path:
    from PIL import Image

    parent = p.parent if str(p.parent) else Path(".")
    tmp = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".part", dir=parent))
    old: Path | None = None
    try:
        for i, frame in enumerate(frames):
            Image.fromarray(np.ascontiguousarray(frame), "RGB").save(tmp / f"{i:06d}.png", compress_level=1)
        os.chmod(tmp, 0o777 & ~_umask())
        if p.is_dir():  # only our frames (check_output): moved aside, then removed
            old = Path(tempfile.mkdtemp(prefix=f".{p.name}.", suffix=".old", dir=parent))
            os.replace(p, old / p.name)
        os.replace(tmp, p)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        if old is not None and (old / p.name).is_dir() and not p.exists():
            os.replace(old / p.name, p)
        raise
    finally:
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return p


def _write_animation(tmp: Path, suffix: str, frames: Iterable[np.ndarray], timing: Timing) -> None:
    from PIL import Image

    images = [Image.fromarray(np.ascontiguousarray(f), "RGB") for f in frames]
    if not images:
        raise InputError("frames", 0, "nothing to write")
    options: dict[str, Any] = {"save_all": True, "append_images": images[1:], "duration": list(timing.durations)}
    if timing.loop is not None:
        options["loop"] = timing.loop
    fmt = ANIMATION_SUFFIXES[suffix]
    if fmt == "WEBP":
        options.update(lossless=False, quality=90, loop=timing.loop or 0)
    if fmt == "GIF":
        options["optimize"] = False
    images[0].save(tmp, fmt, **options)


def _write_video(tmp: Path, frames: Iterable[np.ndarray], timing: Timing, audio: Audio | None) -> None:
    iio = _imageio_ffmpeg("output", tmp)
    suffix = tmp.suffix.lower()
    codec = VIDEO_SUFFIXES[suffix]
    video = tmp.with_name(tmp.stem + ".video" + suffix) if audio is not None else tmp
    writer: Any = None
    try:
        for frame in frames:
            if writer is None:
                h, w = frame.shape[:2]
                writer = iio.write_frames(str(video), (w, h), fps=timing.fps, codec=codec, quality=None,
                                          macro_block_size=1, pix_fmt_out="yuv420p" if w % 2 == 0 and h % 2 == 0
                                          else "yuv444p", output_params=list(_VIDEO_QUALITY[codec]),
                                          ffmpeg_log_level="error")
                writer.send(None)
            writer.send(np.ascontiguousarray(frame, dtype=np.uint8))
        if writer is None:
            raise InputError("frames", 0, "nothing to write")
        writer.close()
        writer = None
        if audio is not None:
            _mux_audio(video, audio, tmp)
    except OSError as e:
        raise EngineRuntimeError(f"ffmpeg could not write {tmp.suffix} video: {str(e).strip()[:300]}") from None
    finally:
        if writer is not None:
            writer.close()
        if video != tmp:
            video.unlink(missing_ok=True)


def _mux_audio(video: Path, audio: Audio, out: Path) -> None:
    """``out`` = ``video``'s stream plus ``audio``'s (copied; re-encoded if the container refuses it)."""
    base = [ffmpeg_exe("output", out), "-y", "-v", "error", "-i", str(video), "-ss", f"{audio.start:.6f}",
            "-t", f"{audio.duration:.6f}", "-i", str(audio.path), "-map", "0:v:0", "-map", "1:a?", "-c:v", "copy"]
    err = ""
    for codec in ("copy", _AUDIO_CODEC.get(out.suffix.lower(), "aac")):
        r = subprocess.run([*base, "-c:a", codec, "-shortest", str(out)], capture_output=True, text=True)
        if r.returncode == 0:
            return
        err = r.stderr.strip()
    raise EngineRuntimeError(f"ffmpeg could not add the audio of {audio.path}: {err[-300:]}")
