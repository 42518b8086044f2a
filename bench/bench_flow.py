"""Which optical flow for video (issue #13): accuracy and speed on clips with a known flow.

    nice -n 5 .venv/bin/python bench/bench_flow.py [--size 512x288] [--frames 6] [--repeat 2]

The clips are `bench_temporal.py`'s: a photo panned (4 px right, 1 px down a frame) or panned and
zoomed (1 % a frame), with a textured square moving over it (6 px left, 3 down), so the true
backward flow (frame t → t−1) and the occlusions are known. For each method: the end-point error
(mean |estimated − true| in px over the pixels visible in both frames, away from the square's
edges), the share of those pixels off by more than 1 px, and the wall time of one flow (best of
``--repeat`` per pair, mean over pairs; the methods run one after another on the same pairs).

Methods: OpenCV's DIS (Kroeger et al. 2016; presets ultrafast, fast, medium: what
`nst_engine.temporal` uses), OpenCV's Farnebäck (polynomial expansion, its usual parameters), and
scikit-image's TV-L1 (Zach, Pock, Bischof 2007) and iterative Lucas-Kanade, each on the frames'
luminance.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_temporal import Clip, load_photo  # noqa: E402

from nst_engine.temporal import optical_flow  # noqa: E402


def _gray(a: np.ndarray) -> np.ndarray:
    return (a[..., :3] @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)


def farneback(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    import cv2

    g = [(np.clip(_gray(x), 0, 1) * 255).astype(np.uint8) for x in (a, b)]
    return cv2.calcOpticalFlowFarneback(g[0], g[1], None, 0.5, 4, 15, 3, 5, 1.2, 0)


def _skimage(fn: Callable[..., np.ndarray]) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def flow(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        # skimage's (v, u) field registers the *moving* image b onto the reference a: a(x) ≈ b(x + f)
        v, u = fn(_gray(a), _gray(b))
        return np.stack([u, v], axis=2).astype(np.float32)
    return flow


def methods() -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    from skimage.registration import optical_flow_ilk, optical_flow_tvl1

    return {
        "DIS ultrafast": lambda a, b: optical_flow(a, b, "ultrafast"),
        "DIS fast": lambda a, b: optical_flow(a, b, "fast"),
        "DIS medium (default)": lambda a, b: optical_flow(a, b, "medium"),
        "Farnebäck (OpenCV)": farneback,
        "TV-L1 (scikit-image)": _skimage(optical_flow_tvl1),
        "iterative Lucas-Kanade (scikit-image)": _skimage(optical_flow_ilk),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", default="512x288")
    ap.add_argument("--frames", type=int, default=6)
    ap.add_argument("--repeat", type=int, default=2)
    ap.add_argument("--photo", default=None)
    args = ap.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    photo, name = load_photo(args.photo)
    print(f"clips from {name}, {w}x{h}, {args.frames} frames (backward flows t → t−1)")
    print("| method | clip | end-point error px | > 1 px | ms per flow |")
    print("|---|---|---|---|---|")
    for clip_name, zoom in (("pan", 1.0), ("pan+zoom", 1.01)):
        clip = Clip(photo, w, h, args.frames, zoom)
        truths = [clip.truth(t) for t in range(1, clip.n)]
        for label, fn in methods().items():
            epe, bad, ms = [], [], []
            for t in range(1, clip.n):
                best = np.inf
                for _ in range(args.repeat):
                    t0 = time.perf_counter()
                    est = fn(clip.frames[t], clip.frames[t - 1])
                    best = min(best, time.perf_counter() - t0)
                flow, _, valid = truths[t - 1]
                err = np.linalg.norm(est - flow, axis=2)[valid]
                epe.append(float(err.mean()))
                bad.append(float((err > 1.0).mean()))
                ms.append(best * 1e3)
            print(f"| {label} | {clip_name} | {np.mean(epe):.3f} | {np.mean(bad):.1%} | {np.mean(ms):.0f} |", flush=True)


if __name__ == "__main__":
    main()
