"""Resizing float images with Pillow's Lanczos filter, and upscaling a stylized image with the detail of
its full-resolution original (no torch: the model path uses this).

A feed-forward model paints strokes of a fixed size in pixels, so a 6000 px photo run at full
resolution gets strokes too small to see. `nst stylize --model-size` runs the model on the photo
shrunk to that long side and brings the result back with `upscale_with_detail`: the Lanczos
upscale of the stylized image (the strokes, at their painted scale) plus the photo's own
luminance detail that the shrinking removed (photo − upscale(shrunk photo)). The detail is
added equally to R, G and B, which changes only luminance (YIQ's I and Q weights each sum to 0),
so the painting's colours stay. This is a luminance detail transfer (one band of a Laplacian
pyramid); `bench/bench_feedforward.py upscale` compares it with plain Lanczos.
"""
from __future__ import annotations

import numpy as np
from PIL import Image

LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)  # Rec. 601, as YIQ


def resize(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """HxWxC float32 → height×width×C float32, Lanczos (antialiased when shrinking), per channel."""
    if image.shape[:2] == (height, width):
        return image.astype(np.float32, copy=False)
    planes = [
        np.asarray(Image.fromarray(np.ascontiguousarray(image[..., c], dtype=np.float32), mode="F")
                   .resize((width, height), Image.Resampling.LANCZOS), dtype=np.float32)
        for c in range(image.shape[2])
    ]
    return np.stack(planes, axis=2)


def upscale_with_detail(stylized: np.ndarray, original: np.ndarray, shrunk: np.ndarray,
                        detail: float = 1.0) -> np.ndarray:
    """``stylized`` (the model's output on ``shrunk``) brought to ``original``'s size, plus ``detail`` ×
    the luminance detail ``original`` has and ``shrunk`` lost. Not clipped."""
    h, w = original.shape[:2]
    out = resize(stylized, h, w)
    if detail:
        lost = original[..., :3] @ LUMA - resize(shrunk[..., :3], h, w) @ LUMA
        out += np.float32(detail) * lost[..., None]
    return out
