"""A terminal progress bar for the engine's `Progress` callbacks; silent when not a TTY."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from ..progress import Progress


def _clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    s = int(round(seconds))
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60:02d}:{s % 60:02d}"


class ProgressBar:
    """``stylize  120/500 [#####.....] loss 1.2e+05  00:12<00:40`` redrawn in place."""

    def __init__(self, stream: TextIO | None = None, width: int = 30, enabled: bool | None = None) -> None:
        self.stream = stream or sys.stderr
        self.width = width
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self._last = 0.0
        self._open = False

    def __call__(self, p: Progress) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if p.step != p.total and now - self._last < 0.1:
            return  # at most 10 redraws a second
        self._last = now
        filled = int(self.width * p.step / max(p.total, 1))
        bar = "#" * filled + "." * (self.width - filled)
        loss = f" loss {p.loss:.3e}" if p.loss == p.loss else ""  # models report no loss (NaN)
        line = f"\r{p.stage} {p.step:>{len(str(p.total))}}/{p.total} [{bar}]{loss}  {_clock(p.elapsed)}<{_clock(p.eta)}"
        self.stream.write(line)
        self.stream.flush()
        self._open = True

    def close(self) -> None:
        if self._open:
            self.stream.write("\n")
            self.stream.flush()
            self._open = False


def paint_and_write(out: Path, paint: Callable[[ProgressBar], Any], quiet: bool, label: str) -> int:
    """The model commands' tail: ``paint(bar)`` (a result with ``image`` and ``note``) under a
    progress bar, its note on stderr, the image written to ``out``, and a ``wrote …`` line."""
    from ..image import write_image

    bar = ProgressBar(enabled=False if quiet else None)
    try:
        result = paint(bar)
    finally:
        bar.close()
    if result.note:
        print(f"nst: note: {result.note}", file=sys.stderr)
    write_image(out, result.image)
    if bar.enabled:
        h, w = result.image.shape[:2]
        print(f"wrote {out} ({w}x{h}, {label})", file=sys.stderr)
    return 0
