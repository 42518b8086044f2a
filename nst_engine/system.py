"""Facts about this machine that need no torch (the model path runs without it)."""
from __future__ import annotations

import os

GiB = 1024**3


def available_ram() -> int:
    """Bytes of RAM the OS reports as available (MemAvailable), or a guess of 8 GiB."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 8 * GiB
