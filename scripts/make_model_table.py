"""The README's table of shipped models: each model's output on one Kodak photo beside a thumbnail of its painting.

    .venv/bin/python scripts/make_model_table.py [--photo ../shared/images/content/kodak_23.png] [--out docs/models]

Writes ``OUT/NAME.jpg`` (painting thumbnail | the model's output at ``--size`` px) for every shipped
model, and prints the Markdown table for the README. The paintings are read from
``../shared/images/styles`` at run time; only these small composites go into docs/.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from nst_engine.image import fit_long_side  # noqa: E402
from nst_engine.models import model_catalog, stylize_model  # noqa: E402
from nst_engine.resample import resize  # noqa: E402
from nst_engine.samples import load  # noqa: E402

SHARED = ROOT.parent / "shared"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", default=str(SHARED / "images" / "content" / "kodak_23.png"))
    ap.add_argument("--size", type=int, default=512, help="long side of the output shown [default: 512]")
    ap.add_argument("--out", default=str(ROOT / "docs" / "models"))
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    photo = load(args.photo, "--photo")[..., :3]
    photo = resize(photo, *fit_long_side(*photo.shape[:2], args.size))
    h = photo.shape[0]
    rows = ["| model | painting | painting (thumbnail) and `nst stylize PHOTO --model NAME` | seconds |", "|---|---|---|---|"]
    for entry in model_catalog():
        stem = entry.name.replace("-", "_")
        painting = load(str(SHARED / "images" / "styles" / f"{stem}.jpg"), "painting")[..., :3]
        thumb = resize(painting, *fit_long_side(*painting.shape[:2], h // 2))
        t = time.perf_counter()
        styled = stylize_model(photo, entry.name, device="cpu", model_size=0)
        seconds = time.perf_counter() - t
        column = np.ones((h, thumb.shape[1] + 8, 3), np.float32)
        column[: thumb.shape[0], : thumb.shape[1]] = thumb
        sheet = np.concatenate([column, styled], axis=1)
        path = out / f"{entry.name}.jpg"
        Image.fromarray((np.clip(sheet, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path, quality=88)
        rows.append(f"| `{entry.name}` | {entry.painting} | ![]({path.relative_to(ROOT).as_posix()}) | {seconds:.2f} |")
    print("\n".join(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
