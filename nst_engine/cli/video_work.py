"""`nst video`'s work folder (``OUTPUT.nst-frames/``: finished frames, settings, resume state) and
its progress line."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from ..progress import Progress

WORK_SUFFIX = ".nst-frames"


def stamp(path: Path) -> list[Any]:
    if path.is_dir():
        names = sorted(f"{f.name}:{f.stat().st_size}:{f.stat().st_mtime_ns}" for f in path.iterdir() if f.is_file())
        return ["folder", hashlib.sha1("\n".join(names).encode()).hexdigest()]
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def style_stamp(spec: str) -> Any:
    return spec if spec.startswith(("sample:", "style:")) or not Path(spec).is_file() else [spec, *stamp(Path(spec))]


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


class Display:
    """``video frame 3/40 [###...] step 80/250  00:12<01:40``: redrawn on a TTY, a line per frame (or chunk) otherwise."""

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
        self.frames(1)

    def frames(self, n: int, note: str = "") -> None:
        """``n`` frames finished (at once for a chunk from `nst_engine.cluster`, which ``note`` names):
        the time since the last, shared between them."""
        now = time.perf_counter()
        self.times.extend([(now - self.t_frame) / max(n, 1)] * n)
        self.t_frame, self.done, self.inner = now, self.done + n, note
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
