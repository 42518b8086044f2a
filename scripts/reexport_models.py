"""Re-export models with the current graph code, keeping their weights and metadata.

    .venv/bin/python scripts/reexport_models.py [MODEL ...]   (default: every shipped model)

For a change in how a trained network is written to ONNX (not in what it computes): the
weights are read back from each file (`export.train.net_from_model`), the graph is exported
again by `export.onnx_export.export_onnx` (checked against torch), and the old and new outputs
on a photo are compared before the file is replaced. No retraining.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from export.onnx_export import export_onnx  # noqa: E402
from export.train import net_from_model  # noqa: E402
from nst_engine.models import clear_cache, list_models, load_model, resolve_model, stylize_model  # noqa: E402
from nst_engine.samples import load  # noqa: E402

KEEP_FROM_EXPORT = ("nst_gimp_model", "format_version", "input_range", "output_range", "layout", "variant",
                    "network", "torch_version", "opset")
MAX_CHANGE = 0.5 / 255  # the largest output change accepted (half an 8-bit level)


def reexport(model: str) -> float:
    path = resolve_model(model)
    meta = {k: v for k, v in load_model(path, "cpu").metadata.items() if k not in KEEP_FROM_EXPORT}
    photo = load("sample:astronaut", "photo")[::2, ::2, :3]
    before = stylize_model(photo, path, device="cpu")
    tmp = path.with_name(path.stem + ".new.onnx")
    export_onnx(net_from_model(str(path)), tmp, meta)
    clear_cache()
    after = stylize_model(np.asarray(photo), tmp, device="cpu")
    change = float(np.abs(after - before).max())
    if change > MAX_CHANGE:
        tmp.unlink()
        raise SystemExit(f"{path.name}: output changed by {change * 255:.2f}/255; not replaced")
    tmp.replace(path)
    return change


def main(argv: list[str]) -> int:
    for model in argv or list_models():
        print(f"{model}: re-exported, output changed by at most {reexport(model) * 255:.3f}/255", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
