"""Facts about this machine that need no torch (the model path runs without it)."""
from __future__ import annotations

import os
import platform

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


def total_ram() -> int:
    """Bytes of physical RAM, or a guess of 16 GiB."""
    try:
        return int(os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return 16 * GiB


def cpu_name() -> str:
    """The processor's model name ("AMD EPYC"), from /proc/cpuinfo where there is one."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return name


def onnx_threads() -> int:
    """onnxruntime's intra-op threads: OMP_NUM_THREADS where it is set to a positive whole number
    (Ray sets it to a task's CPUs, and torch obeys it too), else 0 (onnxruntime's own default:
    one per physical core, which oversubscribes a machine that runs several Ray tasks)."""
    text = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(text) if text.isdigit() and int(text) > 0 else 0
