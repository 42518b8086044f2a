"""Feed-forward style models (ONNX) run with onnxruntime: one pass, no optimisation.

    from nst_engine.models import stylize_model, list_models
    out = stylize_model(content, "starry-night", strength=0.8)     # HxWx3 float32 0..1

A model is a shipped name (``nst_engine/data/models/NAME.onnx``, see `list_models`) or a path to
an ``.onnx`` file made by ``nst train`` (`export.train`). Only our own files are accepted: the
file's ``metadata_props`` must carry ``nst_gimp_model=1`` and its one input must be float32
(N, 3, H, W) RGB in 0..1, its one output the same.

Large images run in overlapping tiles, blended with raised-cosine weights, so memory stays
bounded (one tile's activations, plus the input and output arrays). Instance normalisation
makes a network's output depend on the statistics of the whole input, so tiles normalised each
with their own statistics disagree (a different tone or texture per tile). Our models report
their statistics and accept given ones (see ``export.network.TilingNet``): a first pass over
the tiles pools their statistics into an estimate of the whole image's, and the second pass
normalises every tile with that one estimate, so all tiles agree and no seam shows. The
estimate is not exact (each tile's deeper statistics were measured under its own
normalisation), so a tiled result still differs slightly and smoothly from an untiled one;
``bench/bench_feedforward.py seam`` measures by how much. Images whose sides both fit in one
tile run whole, in one pass.

Sessions are cached per (file, size, mtime, device); CUDA (``onnxruntime-gpu``, the ``gpu``
extra) is used when its provider is available, else the CPU.
"""
from __future__ import annotations

import json
import math
import os
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from .catalog import PAINTINGS, ModelEntry, model_catalog  # noqa: F401 (re-exported)
from .errors import Cancelled, EngineRuntimeError, InputError
from .image import check_array
from .progress import Progress, ProgressCallback, StopFlag
from .system import onnx_threads

__all__ = [
    "MARKER", "INPUT_NAME", "OUTPUT_NAME", "STATS_NAME", "STATS_IN_NAME", "MIX_NAME", "ModelInfo", "ModelEntry", "PAINTINGS",
    "list_models", "model_catalog", "resolve_model", "load_model", "stylize_model", "clear_cache", "DEFAULT_TILE",
    "DEFAULT_OVERLAP",
]

MARKER = "nst_gimp_model"  # metadata key that marks a file as one of ours (value "1")
INPUT_NAME = "image"
OUTPUT_NAME = "stylized"
# Optional, for tiling with the whole image's instance-norm statistics (see export.network.TilingNet):
STATS_NAME = "stats"  # output (N, S): the per-image statistics of every instance-norm layer
STATS_IN_NAME = "stats_in"  # overridable initializer (S,): statistics to use instead…
MIX_NAME = "stats_mix"  # overridable initializer (): …by this much (0 = the tile's own)
DEFAULT_TILE = 0  # px, tile side (overlap included); 0: the largest that fits TILE_BUDGET (`auto_tile`)
TILE_BUDGET = 2 * 1024**3  # bytes of onnxruntime working memory one tile may take by default
# Peak memory growth per pixel of a tile, measured with onnxruntime on the CPU (a 2048x1536 light
# net: 0.77 GiB; a 2048x2048 standard net: 5.2 GiB). Larger tiles pool better statistics: on a
# 4000x3000 photo, light net, tiled vs whole differed by 7.8/255 with 1024 px tiles and 2.1/255
# with the automatic 2816 px ones. (Tiles shrunk to the least overlap were 3x faster but 4.6/255;
# statistics from the whole image downscaled 2x were 10/255.)
BYTES_PER_PIXEL = {"light": 260, "standard": 1300}
DEFAULT_OVERLAP = 128  # px shared by neighbouring tiles
MIN_SIDE = 16  # smaller inputs are reflect-padded up to this
PRESERVE_COLORS = ("none", "luminance", "histogram", "linear")
# Default long side a model paints at (`nst stylize --model-size`, GIMP's Model size): see README.
DEFAULT_MODEL_SIZE = 1024


@dataclass
class ModelInfo:
    """An opened model: its file, onnxruntime session, metadata and the provider it runs on."""

    path: Path
    name: str
    session: Any = field(repr=False)
    metadata: dict[str, str]
    provider: str
    input_name: str = INPUT_NAME
    output_name: str = OUTPUT_NAME
    shares_stats: bool = False  # has the stats output/inputs: tiles can use the whole image's statistics

    @property
    def style_name(self) -> str:
        return self.metadata.get("style_name", self.name)

    @property
    def training(self) -> dict[str, Any]:
        try:
            value = json.loads(self.metadata.get("training", "{}"))
        except ValueError:
            return {}
        return value if isinstance(value, dict) else {}


def _models_folder() -> Any:
    return resources.files("nst_engine") / "data" / "models"


def list_models() -> list[str]:
    """Names of the models shipped in ``nst_engine/data/models`` (file names without ``.onnx``)."""
    folder = _models_folder()
    if not folder.is_dir():
        return []
    return sorted(p.name[: -len(".onnx")] for p in folder.iterdir() if p.name.endswith(".onnx"))


def resolve_model(model: str | os.PathLike[str]) -> Path:
    """A shipped model's name (``starry-night``) or a path to an ``.onnx`` file → the file's path."""
    text = os.fspath(model)
    if not text:
        raise InputError("model", text, "empty model name")
    if os.sep not in text and "/" not in text and not text.lower().endswith(".onnx"):
        path = _models_folder() / f"{text}.onnx"
        if path.is_file():
            with resources.as_file(path) as p:
                return Path(p)
        shipped = list_models()
        hint = f"choose from {', '.join(shipped)}" if shipped else "no models are shipped in this build"
        raise InputError("model", text, f"no such model; give a path to an .onnx file or a shipped name ({hint})")
    path = Path(os.path.expanduser(text))
    if not path.exists():
        raise InputError("model", text, "no such file")
    if path.is_dir():
        raise InputError("model", text, "is a folder, not an .onnx file")
    return path


def _providers(device: str) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if device == "cpu":
        return ["CPUExecutionProvider"]
    if device == "cuda":
        if "CUDAExecutionProvider" not in available:
            raise InputError("device", device, "onnxruntime has no CUDA provider here (pip install onnxruntime-gpu)")
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    if device != "auto":
        raise InputError("device", device, "use auto, cpu or cuda")
    return (["CUDAExecutionProvider"] if "CUDAExecutionProvider" in available else []) + ["CPUExecutionProvider"]


def _check_io(session: Any, source: str) -> tuple[str, str, bool]:
    """(input name, output name, supports shared statistics) of a model, or `InputError`."""
    ins, outs = session.get_inputs(), session.get_outputs()
    if len(ins) != 1:
        raise InputError("model", source, f"needs one image input, has {len(ins)}")
    by_name = {o.name: o for o in outs}
    out = by_name.get(OUTPUT_NAME, outs[0] if len(outs) == 1 else None)
    if out is None:
        raise InputError("model", source, f"has {len(outs)} outputs and none named {OUTPUT_NAME!r}")
    for kind, arg in (("input", ins[0]), ("output", out)):
        shape = list(arg.shape)
        if arg.type != "tensor(float)":
            raise InputError("model", source, f"{kind} {arg.name!r} is {arg.type}, needs tensor(float)")
        if len(shape) != 4 or shape[1] != 3:
            raise InputError("model", source, f"{kind} {arg.name!r} has shape {shape}, needs (N, 3, H, W)")
        if isinstance(shape[2], int) or isinstance(shape[3], int):
            raise InputError("model", source, f"{kind} {arg.name!r} has a fixed size {shape}; needs dynamic H, W")
    overridable = {i.name for i in session.get_overridable_initializers()}
    shares = STATS_NAME in by_name and {STATS_IN_NAME, MIX_NAME} <= overridable
    return ins[0].name, out.name, shares


_CACHE: dict[tuple[str, int, int, str, int], ModelInfo] = {}
_LOCK = threading.Lock()


def load_model(model: str | os.PathLike[str], device: str = "auto") -> ModelInfo:
    """Open (cached) and validate a model; `InputError` if it is not a readable model of ours."""
    path = resolve_model(model)
    try:
        st = path.stat()
    except OSError as e:
        raise InputError("model", str(model), f"cannot be read ({e.strerror})") from None
    providers = _providers(device)
    threads = onnx_threads()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns, providers[0], threads)
    with _LOCK:
        info = _CACHE.get(key)
        if info is not None:
            return info
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3  # no warnings on stderr (e.g. unused providers)
        # No memory pattern: it is planned for one input size, and with it the *second* run at
        # 1024×768 took 1.0-1.4 s against 0.6 s (a fresh block for the planned pattern); tiles
        # and a long-lived server run many sizes anyway.
        options.enable_mem_pattern = False
        options.intra_op_num_threads = threads
        try:
            session = ort.InferenceSession(str(path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own Fail/InvalidProtobuf/InvalidGraph
            reason = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
            raise InputError("model", str(model), f"not a readable ONNX model ({reason})") from None
        meta = dict(session.get_modelmeta().custom_metadata_map)
        if meta.get(MARKER) != "1":
            raise InputError("model", str(model),
                             f"not an nst-gimp style model (no {MARKER}=1 in its metadata); make one with `nst train`")
        in_name, out_name, shares = _check_io(session, str(model))
        name = path.name[: -len(".onnx")] if path.name.endswith(".onnx") else path.name
        info = ModelInfo(path, name, session, meta, session.get_providers()[0], in_name, out_name, shares)
        _CACHE[key] = info
    return info


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()


def _run(info: ModelInfo, x: np.ndarray, stats: np.ndarray | None = None,
         want_stats: bool = False) -> tuple[np.ndarray, np.ndarray | None]:
    """HxWx3 float32 0..1 → (the model's HxWx3 output, its statistics if ``want_stats``).

    ``stats``: normalise with these instead of the input's own (models with ``shares_stats``).
    Inputs under 16 px are reflect-padded.
    """
    h, w = x.shape[:2]
    ph, pw = max(0, MIN_SIDE - h), max(0, MIN_SIDE - w)
    if ph or pw:
        x = np.pad(x, ((0, ph), (0, pw), (0, 0)), mode="reflect" if min(h, w) > 1 else "edge")
    batch = np.ascontiguousarray(x.transpose(2, 0, 1)[None], dtype=np.float32)
    feed: dict[str, np.ndarray] = {info.input_name: batch}
    if stats is not None:
        feed[STATS_IN_NAME] = stats
        feed[MIX_NAME] = np.array(1.0, np.float32)
    names = [info.output_name] + ([STATS_NAME] if want_stats else [])
    try:
        result = info.session.run(names, feed)
    except Exception as e:
        msg = str(e).strip().splitlines()[0][:300] if str(e).strip() else type(e).__name__
        if "alloc" in msg.lower() or "memory" in msg.lower():
            raise EngineRuntimeError(f"out of memory running the model on a {w}x{h} tile; use a smaller tile") from e
        raise EngineRuntimeError(f"the model failed on a {x.shape[1]}x{x.shape[0]} input: {msg}") from e
    out = result[0]
    if out.ndim != 4 or out.shape[1] != 3 or out.shape[2:] != batch.shape[2:]:
        raise EngineRuntimeError(f"the model returned shape {tuple(out.shape)} for input {tuple(batch.shape)}")
    return out[0].transpose(1, 2, 0)[:h, :w], (result[1][0] if want_stats else None)


def _starts(length: int, tile: int, overlap: int) -> list[int]:
    """Tile origins covering 0..length with tiles of ``tile`` px overlapping by ≥ ``overlap``."""
    if length <= tile:
        return [0]
    n = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (n - 1)) for i in range(n)]


def _ramp(size: int, start: int, prev_end: int | None, next_start: int | None) -> np.ndarray:
    """1-D blend weight of a tile: raised-cosine ramps across the overlaps with its neighbours, 1 elsewhere.

    The ramp of one tile rises exactly where its neighbour's falls (over the shared span), so the
    weights sum to 1 in every overlap; we still divide by the sum for safety.
    """
    w = np.ones(size, dtype=np.float32)
    pos = np.arange(start, start + size, dtype=np.float64)
    if prev_end is not None and prev_end > start:  # rises across [start, prev_end)
        t = np.clip((pos - start + 0.5) / (prev_end - start), 0.0, 1.0)
        w *= (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    if next_start is not None and next_start < start + size:  # falls across [next_start, start+size)
        t = np.clip((start + size - pos - 0.5) / (start + size - next_start), 0.0, 1.0)
        w *= (0.5 - 0.5 * np.cos(np.pi * t)).astype(np.float32)
    return w


def _weights_1d(length: int, tile: int, starts: list[int]) -> list[np.ndarray]:
    size = min(tile, length)
    out = []
    for i, s in enumerate(starts):
        prev_end = starts[i - 1] + size if i > 0 else None
        next_start = starts[i + 1] if i + 1 < len(starts) else None
        out.append(_ramp(size, s, prev_end, next_start))
    return out


def auto_tile(info: ModelInfo, budget: int = TILE_BUDGET) -> int:
    """The largest tile side (a multiple of 64 px, 512..8192) whose working memory fits ``budget``
    and a quarter of the free RAM."""
    from .system import available_ram

    bpp = BYTES_PER_PIXEL.get(info.metadata.get("variant", ""), max(BYTES_PER_PIXEL.values()))
    room = min(budget, available_ram() // 4)
    return max(512, min(8192, int(math.sqrt(room / bpp)) // 64 * 64))


def stylize_model(
    content: np.ndarray,
    model: str | os.PathLike[str],
    *,
    strength: float = 1.0,
    tile: int = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str = "auto",
    callback: ProgressCallback | None = None,
    stop: StopFlag | None = None,
    model_size: int = 0,
    preserve_colors: str = "none",
) -> np.ndarray:
    """Stylize ``content`` (HxW[x3|x4] float 0..1 / uint8 / uint16; alpha dropped) with a model.

    Returns HxWx3 float32 in 0..1 at the input's size. ``model_size`` > 0: a larger image is
    shrunk to that long side for the model (bigger strokes) and the result upscaled back with the
    photo's detail (`nst_engine.resample.upscale_with_detail`); 0 runs at full resolution.
    ``preserve_colors``: ``luminance`` keeps the output's luminance with the content's chroma
    (`color.recolor`); ``histogram`` / ``linear`` recolour the output to the content's palette
    (per-channel histograms / mean and covariance). A model was trained on one painting's palette,
    so unlike the iterative path (which recolours the *style image*) these act on the output.
    ``strength`` 0..1 blends with the content
    (0 = the content unchanged). Images with a side over ``tile`` px run in ``tile``-px tiles
    overlapping by ``overlap`` px; ``tile=0`` picks the largest tile that fits `TILE_BUDGET`
    (`auto_tile`), so most photos run whole. ``callback`` gets a `Progress` after each tile (stage
    ``"model"``, ``loss`` NaN); ``stop.is_set()`` is checked between tiles and raises `Cancelled`.
    """
    a = check_array(content, "content")
    if not (isinstance(strength, (int, float)) and 0.0 <= strength <= 1.0):
        raise InputError("strength", strength, "must be between 0 and 1")
    if not (isinstance(tile, int) and (tile == 0 or 64 <= tile <= 16384)):
        raise InputError("tile", tile, "must be 0 (automatic) or a whole number of px between 64 and 16384")
    if not (isinstance(overlap, int) and 0 <= overlap <= (tile or 512) // 2):
        raise InputError("overlap", overlap, f"must be between 0 and tile/2 ({(tile or 512) // 2}) px")
    if not (isinstance(model_size, int) and not isinstance(model_size, bool) and (model_size == 0 or 64 <= model_size <= 65536)):
        raise InputError("model_size", model_size, "must be 0 (full resolution) or a whole number of px ≥ 64")
    if preserve_colors not in PRESERVE_COLORS:
        raise InputError("preserve_colors", preserve_colors, f"must be one of {', '.join(PRESERVE_COLORS)}")
    info = load_model(model, device)
    tile = tile or auto_tile(info)
    full = a
    if model_size and max(a.shape[:2]) > model_size:
        from .image import fit_long_side
        from .resample import resize

        a = resize(full, *fit_long_side(full.shape[0], full.shape[1], model_size))
    out = _run_tiled(info, a, tile, overlap, callback, stop)
    if a is not full:
        from .resample import upscale_with_detail

        out = upscale_with_detail(out, full, a)
        a = full
    if preserve_colors != "none":
        from . import color

        out = np.clip(out, 0.0, 1.0)
        if preserve_colors == "luminance":
            out = color.recolor(out, a)
        elif preserve_colors == "histogram":
            out = color.match_histogram_colors(out, a)
        else:
            out = color.linear_color_transfer(out, a)
    if strength < 1.0:
        out = out * np.float32(strength) + a * np.float32(1.0 - strength)
    return np.clip(out, 0.0, 1.0, out=out)


def _run_tiled(info: ModelInfo, a: np.ndarray, tile: int, overlap: int, callback: ProgressCallback | None,
               stop: StopFlag | None) -> np.ndarray:
    """The model on HxWx3 ``a``, whole or in tiles that share pooled instance-norm statistics."""
    h, w = a.shape[:2]
    ys, xs = _starts(h, tile, overlap), _starts(w, tile, overlap)
    total = len(ys) * len(xs)
    t0 = time.perf_counter()
    done = 0

    def report() -> None:
        if callback is not None:
            el = time.perf_counter() - t0
            callback(Progress("model", done, total, math.nan, {}, el, el / done * (total - done) if done else None))

    if total == 1:
        if stop is not None and stop.is_set():
            raise Cancelled("stopped before the model ran")
        out = _run(info, a)[0]
        done = 1
        report()
    else:
        th, tw = min(tile, h), min(tile, w)
        wy, wx = _weights_1d(h, tile, ys), _weights_1d(w, tile, xs)
        grid = [(i, j) for i in range(len(ys)) for j in range(len(xs))]
        shared: np.ndarray | None = None
        if info.shares_stats:
            # Pass 1: every tile's instance-norm statistics, pooled (weighted by the tile's share
            # of the blend) into the whole image's; pass 2 normalises every tile with those.
            total *= 2
            sums: np.ndarray | None = None
            wsum = 0.0
            for i, j in grid:
                if stop is not None and stop.is_set():
                    raise Cancelled(f"stopped after {done} of {total} tile passes")
                st = _run(info, a[ys[i] : ys[i] + th, xs[j] : xs[j] + tw], want_stats=True)[1]
                assert st is not None
                half = st.shape[0] // 2
                mean, var = st[:half].astype(np.float64), st[half:].astype(np.float64)
                weight = float(wy[i].sum()) * float(wx[j].sum())
                part = np.concatenate([mean, var + mean * mean]) * weight
                sums = part if sums is None else sums + part
                wsum += weight
                done += 1
                report()
            assert sums is not None
            pooled = sums / wsum
            half = pooled.shape[0] // 2
            mean = pooled[:half]
            shared = np.concatenate([mean, np.maximum(pooled[half:] - mean * mean, 0.0)]).astype(np.float32)
        out = np.zeros_like(a)
        norm = np.zeros((h, w, 1), dtype=np.float32)
        for i, j in grid:
            if stop is not None and stop.is_set():
                raise Cancelled(f"stopped after {done} of {total} tile passes")
            y, x = ys[i], xs[j]
            piece = _run(info, a[y : y + th, x : x + tw], shared)[0]
            weight = (wy[i][:, None] * wx[j][None, :])[..., None]
            out[y : y + th, x : x + tw] += piece * weight
            norm[y : y + th, x : x + tw] += weight
            done += 1
            report()
        out /= np.maximum(norm, 1e-8)
        del norm
    if not np.isfinite(out).all():
        raise EngineRuntimeError("the model produced NaN or infinite values")
    return out
