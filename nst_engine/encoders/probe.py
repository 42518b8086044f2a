"""Does bfloat16 pay on this CPU? Measured once per machine, not assumed from the instruction set.

oneDNN reporting native bf16 (AVX512-BF16) is not enough: on a 2-core AMD EPYC with it the hybrid
precision made a step ~1.3x faster, on a 2-core Intel Xeon with AVX512-BF16 but no AMX it made
the VGG-19 forward+backward 1.1-1.4x *slower* (256 and 512 px, session 5). So ``auto`` times both
here: a forward+backward of VGG-19 to relu4_1 on a 192x144 image, fp32 against the hybrid,
interleaved, best of a few; the hybrid is chosen when it is at least ``MIN_SPEEDUP`` faster. The
verdict is kept in memory and in ``precision.json`` beside the step-cost cache (keyed by
processor, torch version and threads), so only the first run on a machine pays the ~2 s.
"""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
import torch

MIN_SPEEDUP = 1.1  # below this the hybrid's reduced precision is not worth it
PROBE_SIZE = (144, 192)  # h, w
_MEMO: dict[str, bool] = {}
_LOCK = threading.Lock()


def _cache_path() -> Path:
    from ..estimate import cache_file

    return cache_file().with_name("precision.json")


def _key() -> str:
    from ..system import cpu_name

    return json.dumps({"processor": cpu_name(), "torch": torch.__version__, "threads": torch.get_num_threads()},
                      sort_keys=True)


def measure_speedup(repeats: int = 4) -> tuple[float, float]:
    """(fp32 seconds, hybrid seconds): the best of ``repeats`` interleaved forward+backward passes each."""
    from .vgg import precision
    from .weights import get_encoder

    cpu = torch.device("cpu")
    encoder = get_encoder("caffe", "relu4_1", "max", cpu)
    x = torch.rand(1, 3, *PROBE_SIZE, generator=torch.Generator().manual_seed(0)) * 255
    layers = ["relu1_1", "relu2_1", "relu3_1", "relu4_1"]

    def once(mode: str) -> float:
        with precision(mode, cpu):
            t = time.perf_counter()
            xx = x.detach().requires_grad_()
            feats = encoder(xx, layers)
            sum((f.float() ** 2).mean() for f in feats.values()).backward()  # type: ignore[union-attr]
            return time.perf_counter() - t

    best = {"fp32": float("inf"), "hybrid": float("inf")}
    for mode in best:  # warm-up: oneDNN builds its kernels on the first pass of each
        once(mode)
    for _ in range(max(1, repeats)):
        for mode in best:
            best[mode] = min(best[mode], once(mode))
    return best["fp32"], best["hybrid"]


def bf16_pays_on_cpu() -> bool:
    """Whether the hybrid precision is measurably faster than fp32 on this CPU (cached)."""
    key = _key()
    with _LOCK:
        if key in _MEMO:
            return _MEMO[key]
        from ..estimate import _read_cache, _write_cache  # the step-cost cache's reader and atomic writer

        path = _cache_path()
        entries = _read_cache(path)
        entry = entries.get(key)
        if isinstance(entry, dict) and isinstance(entry.get("pays"), bool):
            _MEMO[key] = entry["pays"]
            return entry["pays"]
        fp32, hybrid = measure_speedup()
        pays = fp32 / hybrid >= MIN_SPEEDUP
        entries = _read_cache(path)
        entries[key] = {"pays": pays, "fp32_s": round(fp32, 4), "hybrid_s": round(hybrid, 4),
                        "measured": time.strftime("%Y-%m-%dT%H:%M:%S")}
        _write_cache(path, entries)
        _MEMO[key] = pays
        return pays
