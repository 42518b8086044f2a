"""High resolution and speed, one run, one table (#6): this engine and pastiche side by side.

    .venv/bin/python bench/bench_highres.py --device cpu --sizes 512 --steps 50 --pastiche \\
        --4k --4k-steps 40,10,4 --max-memory 6.5

Every row runs in a fresh process (so "end to end" includes Python, torch and the weights, and
the peak memory is that run's alone) and prints: device, size, steps, seconds in the loop, seconds
end to end, peak memory (CPU: peak RSS of the process; CUDA: peak allocated by torch), and the
final loss of the output evaluated under one loss function (this engine's fp32 objective at the
output size, in exact tiles, with the default layers and weights). The content is
scikit-image's coffee photo cropped to 4:3 (16:9 for the 4K row); the style is the shipped
`style:swirls`. The 4K row runs coarse to fine (960, 1920, 3840 px) under ``--max-memory``.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _content(aspect: float):  # noqa: ANN202 - numpy imported lazily in the child
    from nst_engine.samples import load

    img = load("sample:coffee", "content")[..., :3]
    h, w = img.shape[:2]
    ch = min(h, int(w / aspect))
    top = (h - ch) // 2
    return img[top: top + ch, : int(ch * aspect)]


def _peak(device: str) -> float:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / 2**30
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def _final_loss(image, content, style, size: int, device: str) -> float:  # noqa: ANN001
    """The output under one loss function: fp32, default layers and weights, exact tiles of 512."""
    import torch

    from nst_engine.api import select_device
    from nst_engine.encoders.weights import get_encoder
    from nst_engine.image import fit_long_side, to_tensor
    from nst_engine.losses import Objective, content_terms, style_terms
    from nst_engine.tiling import TiledObjective
    from nst_engine import StyleConfig

    cfg = StyleConfig()
    dev = select_device(device)
    enc = get_encoder("caffe", "relu5_1", "max", dev)
    shape = image.shape[:2]
    c = to_tensor(content, shape, dev)
    s = to_tensor(style, fit_long_side(*style.shape[:2], size), dev)
    obj = Objective(enc, content_terms(enc, c, cfg.content_layers, (), 1.0, tile=512),
                    style_terms(enc, [s], (), cfg.style_layers, (), 1.0, tile=512))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].to(dev) * 255.0
    total, _ = TiledObjective(obj, 512)(x)
    return float(total)


def child(spec: dict) -> None:
    """One run in this process; prints a JSON line."""
    t0 = time.perf_counter()
    import numpy as np

    from nst_engine.samples import load

    content = _content(spec["aspect"])
    style = load("style:swirls", "style")[..., :3]
    if spec["tool"] == "nst":
        from nst_engine import StyleConfig, stylize

        cfg = StyleConfig(size=spec["size"], steps=spec["steps"], device=spec["device"],
                          scales=tuple(spec["scales"]), scale_steps=tuple(spec["scale_steps"]),
                          max_memory=spec["max_memory"])
        r = stylize(content, [style], cfg)
        out, loop = r.image, r.seconds
    else:
        from PIL import Image
        import pastiche.pastiche as P
        import torch

        from nst_engine.image import fit_long_side
        from skimage.transform import resize

        with tempfile.TemporaryDirectory() as tmp:
            h, w = fit_long_side(*content.shape[:2], spec["size"])
            for img, name in ((content, "c.png"), (style, "s.png")):
                hh, ww = (h, w) if name == "c.png" else fit_long_side(*img.shape[:2], spec["size"])
                Image.fromarray((resize(img, (hh, ww), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)).save(
                    Path(tmp) / name)
            artist = P.PasticheArtist(str(Path(tmp) / "c.png"), [str(Path(tmp) / "s.png")], device=spec["device"],
                                      size=spec["size"], style_size=spec["size"])
            sync = torch.cuda.synchronize if spec["device"].startswith("cuda") else (lambda: None)
            sync()
            t = time.perf_counter()
            for _ in range(spec["steps"]):
                artist.draw()
            sync()
            loop = time.perf_counter() - t
            mean = torch.tensor(P.VGG_MEAN, device=spec["device"]).view(1, 3, 1, 1)
            rgb = (artist.pastiche.detach() + mean).flip(1).clamp(0, 255) / 255.0
            out = rgb[0].permute(1, 2, 0).float().cpu().numpy()
    end_to_end = time.perf_counter() - t0  # the loop and set-up, before the bench's own evaluation
    peak = _peak(spec["device"])
    if spec.get("save"):
        from nst_engine.image import write_image

        h, w = out.shape[:2]
        write_image(Path(spec["save"]) / f"{spec['tool']}-{w}x{h}.png", np.ascontiguousarray(out))
    loss = _final_loss(np.ascontiguousarray(out), content, style, max(out.shape[:2]), spec["device"])
    print(json.dumps({"loop_s": loop, "in_process_s": end_to_end, "peak_gib": peak, "loss": loss,
                      "shape": list(out.shape[:2])}))


def run_row(spec: dict) -> dict:
    t = time.perf_counter()
    p = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)], capture_output=True, text=True,
                       cwd=ROOT, env={**os.environ, "PYTHONWARNINGS": "ignore"})
    if p.returncode != 0:
        raise SystemExit(f"{spec['tool']} {spec['size']} failed:\n{p.stderr[-3000:]}")
    row = json.loads(p.stdout.strip().splitlines()[-1])
    row["wall_s"] = time.perf_counter() - t  # cold process to exit, including the bench's loss evaluation
    return row


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--child")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", default="512,1024", help="comma-separated long sides for the side-by-side rows")
    ap.add_argument("--steps", type=int, default=500)
    ap.add_argument("--pastiche", action="store_true", help="add pastiche rows at the same sizes")
    ap.add_argument("--4k", dest="uhd", action="store_true", help="add the 3840x2160 row (this engine)")
    ap.add_argument("--4k-steps", dest="uhd_steps", default="500,250,125", help="steps at 960, 1920, 3840 px")
    ap.add_argument("--max-memory", type=float, default=0.0, help="GiB for the 4K row (0: 85%% of free)")
    ap.add_argument("--save", default="", help="write every row's output image into this folder")
    args = ap.parse_args()
    if args.child:
        child(json.loads(args.child))
        return
    rows = []
    for size in [int(s) for s in args.sizes.split(",") if s]:
        for tool in ("nst", "pastiche") if args.pastiche else ("nst",):
            spec = {"tool": tool, "size": size, "steps": args.steps, "device": args.device, "aspect": 4 / 3,
                    "scales": [size], "scale_steps": [args.steps], "max_memory": 0.0, "save": args.save}
            rows.append((tool, f"{args.steps}", run_row(spec)))
    if args.uhd:
        steps = [int(s) for s in args.uhd_steps.split(",")]
        spec = {"tool": "nst", "size": 3840, "steps": steps[0], "device": args.device, "aspect": 16 / 9,
                "scales": [960, 1920, 3840], "scale_steps": steps, "max_memory": args.max_memory, "save": args.save}
        rows.append(("nst", "+".join(map(str, steps)), run_row(spec)))
    print(f"device={args.device} threads={os.cpu_count()} 4K --max-memory={args.max_memory or 'auto'}")
    print(f"{'tool':9} {'size':>10} {'steps':>12} {'loop s':>9} {'end-to-end s':>13} {'peak GiB':>9} {'final loss':>11}")
    for tool, steps, r in rows:
        h, w = r["shape"]
        print(f"{tool:9} {f'{w}x{h}':>10} {steps:>12} {r['loop_s']:9.2f} {r['in_process_s']:13.2f} "
              f"{r['peak_gib']:9.2f} {r['loss']:11.4e}")


if __name__ == "__main__":
    main()
