"""Generate the style images the project ships (no download, no third-party artwork).

    python scripts/make_builtin_styles.py

Writes nst_engine/data/styles/{swirls,mosaic}.png deterministically (fixed seeds): procedural
paintings made of thousands of curved, textured brush strokes, so the engine has a real,
stroke-rich style to demonstrate with on a fresh machine.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

OUT = Path(__file__).resolve().parents[1] / "nst_engine" / "data" / "styles"

PALETTES = {
    # night sky blues and ochre swirls
    "swirls": [(18, 36, 92), (34, 72, 150), (62, 110, 190), (120, 160, 210), (230, 200, 80), (240, 225, 140), (20, 24, 40)],
    # warm stained-glass mosaic
    "mosaic": [(180, 40, 30), (230, 140, 40), (240, 200, 90), (40, 110, 90), (30, 60, 120), (240, 235, 220), (25, 20, 20)],
}


def _stroke(draw: ImageDraw.ImageDraw, rng: np.random.Generator, size: int, color: tuple[int, int, int],
            flow: float) -> None:
    x, y = rng.uniform(0, size, 2)
    angle = rng.uniform(0, 2 * math.pi)
    width = int(rng.integers(4, 14))
    length = int(rng.integers(8, 30))
    jitter = np.array(color) + rng.normal(0, 14, 3)
    c = tuple(int(v) for v in np.clip(jitter, 0, 255))
    pts = []
    for _ in range(length):
        pts.append((x, y))
        # the stroke follows a swirling flow field
        angle += flow * math.sin(x / 37.0) * math.cos(y / 41.0) + rng.normal(0, 0.08)
        x += 3.0 * math.cos(angle)
        y += 3.0 * math.sin(angle)
    draw.line(pts, fill=c, width=width, joint="curve")


def paint(name: str, size: int = 512, strokes: int = 9000, seed: int = 7) -> Image.Image:
    rng = np.random.default_rng(seed)
    palette = PALETTES[name]
    img = Image.new("RGB", (size, size), palette[0])
    draw = ImageDraw.Draw(img)
    flow = 0.35 if name == "swirls" else 0.05
    for i in range(strokes):
        weights = np.array([3, 3, 2, 2, 1, 1, 1], dtype=float) if name == "swirls" else np.ones(len(palette))
        color = palette[int(rng.choice(len(palette), p=weights / weights.sum()))]
        _stroke(draw, rng, size, color, flow)
        if name == "mosaic" and i % 700 == 0:
            img = img.filter(ImageFilter.ModeFilter(5))
            draw = ImageDraw.Draw(img)
    if name == "mosaic":
        # dark leading between the tiles
        edges = img.convert("L").filter(ImageFilter.FIND_EDGES).point(lambda v: 255 if v > 40 else 0)
        img.paste((25, 20, 20), mask=edges)
    # canvas grain
    grain = rng.normal(0, 6, (size, size, 1))
    arr = np.clip(np.asarray(img, dtype=np.float32) + grain, 0, 255).astype(np.uint8)
    return Image.fromarray(arr)


if __name__ == "__main__":
    OUT.mkdir(parents=True, exist_ok=True)
    for name in PALETTES:
        paint(name).save(OUT / f"{name}.png", optimize=True)
        print(OUT / f"{name}.png")
