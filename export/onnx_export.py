"""Export a trained `TransformerNet` to ONNX with our metadata, and check it against torch.

    export_onnx(net, "starry-night.onnx", metadata={"style_name": "starry-night", ...})

The file has one input ``image`` and one output ``stylized``, both float32 (N, 3, H, W) RGB in
0..1, with N, H and W dynamic (any H, W ≥ 8). It is written with the public ``torch.onnx.export``
(the TorchScript-based exporter, ``dynamo=False``: it needs only the ``onnx`` package and gives
plain fixed-opset graphs; torch ≥ 2.9 warns that it is deprecated, and where a future torch has
dropped it we fall back to the ``dynamo=True`` exporter, which needs ``onnxscript``).

``metadata_props`` always carry :data:`nst_engine.models.MARKER` = ``"1"`` (the runner refuses
files without it), ``input_range``/``output_range`` = ``"0..1"``, the layout, the network spec
and whatever the caller adds (style name, training settings as JSON).

Needs the ``onnx`` package (the ``train`` extra: ``pip install -e .[train]``).
"""
from __future__ import annotations

import inspect
import json
import os
import tempfile
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from nst_engine.errors import EngineRuntimeError, InputError
from nst_engine.models import INPUT_NAME, MARKER, MIX_NAME, OUTPUT_NAME, STATS_IN_NAME, STATS_NAME

from .network import TilingNet, TransformerNet

OPSET = 17  # ONNX opset of the exported graph (onnxruntime ≥ 1.14 runs it; InstanceNormalization, Resize, Pad reflect)
VERIFY_TOLERANCE = 1e-3  # max abs difference, torch vs onnxruntime, on 0..1 outputs
VERIFY_SHAPES = ((1, 3, 64, 96), (2, 3, 37, 53))  # even and odd sizes, batch 1 and 2


def _import_onnx():  # noqa: ANN202 - the module
    try:
        import onnx
    except ImportError:
        raise EngineRuntimeError("exporting to ONNX needs the 'onnx' package: pip install onnx "
                                 "(or pip install -e '.[train]')") from None
    return onnx


def _torch_export(net: TransformerNet, path: Path, opset: int) -> int:
    """Write the bare graph of ``TilingNet(net)``; returns the opset it was written with."""
    tiling = TilingNet(net).eval()
    example = (torch.rand(1, 3, 64, 64), torch.zeros(tiling.stats_size), torch.tensor(0.0))
    names = {"input_names": [INPUT_NAME, STATS_IN_NAME, MIX_NAME], "output_names": [OUTPUT_NAME, STATS_NAME]}
    has_dynamo_flag = "dynamo" in inspect.signature(torch.onnx.export).parameters
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation and tracer notes
            kw = {"dynamo": False} if has_dynamo_flag else {}
            torch.onnx.export(
                # No constant folding: with it, torch 2.13's exporter de-duplicates equal folded
                # constants (e.g. untrained norm weights, all ones) and leaves dangling names.
                # onnxruntime folds the constants itself when it loads the model.
                tiling, example, str(path), opset_version=opset, do_constant_folding=False,
                dynamic_axes={INPUT_NAME: {0: "batch", 2: "height", 3: "width"},
                              OUTPUT_NAME: {0: "batch", 2: "height", 3: "width"}, STATS_NAME: {0: "batch"}},
                **names, **kw,  # type: ignore[arg-type]
            )
        return opset
    except Exception as first:  # a torch without the TorchScript exporter: try the dynamo one
        if not has_dynamo_flag:
            raise EngineRuntimeError(f"torch.onnx.export failed: {first}") from first
        error = first
    try:
        h, w = torch.export.Dim("height", min=8), torch.export.Dim("width", min=8)
        program = torch.onnx.export(
            tiling, example, dynamo=True, dynamic_shapes=({0: torch.export.Dim("batch"), 2: h, 3: w}, None, None),
            opset_version=max(opset, 18), **names,  # type: ignore[arg-type]
        )
        program.save(str(path))  # type: ignore[union-attr]
        return max(opset, 18)
    except Exception as e:
        raise EngineRuntimeError(f"torch.onnx.export failed: {error}; with dynamo=True: {e}") from e


def _make_overridable(model: object, onnx: object, stats_size: int) -> None:
    """Give the ``stats_in``/``stats_mix`` inputs default values (initializers of the same name).

    onnxruntime then lists only ``image`` as an input (the others are "overridable
    initializers"), and a plain ``run(None, {"image": x})`` is ordinary instance norm.
    """
    from onnx import numpy_helper

    graph = model.graph  # type: ignore[attr-defined]
    defaults = {STATS_IN_NAME: np.zeros(stats_size, np.float32), MIX_NAME: np.array(0.0, np.float32)}
    names = {i.name for i in graph.input}
    for name, value in defaults.items():
        if name not in names:
            raise EngineRuntimeError(f"the exported graph has no input {name!r}")
        graph.initializer.append(numpy_helper.from_array(value, name))
    if model.ir_version < 4:  # type: ignore[attr-defined]
        model.ir_version = 4  # type: ignore[attr-defined]


def export_onnx(
    net: TransformerNet,
    path: str | os.PathLike[str],
    metadata: Mapping[str, object] | None = None,
    *,
    opset: int = OPSET,
    verify: bool = True,
) -> dict[str, str]:
    """Write ``net`` to ``path`` (atomically) as ONNX with metadata; returns the metadata written.

    With ``verify`` (default) the written file is run with onnxruntime on random inputs and
    compared with torch; a difference above :data:`VERIFY_TOLERANCE` raises
    `EngineRuntimeError` and leaves no file behind.
    """
    onnx = _import_onnx()
    out = Path(path)
    if out.suffix.lower() != ".onnx":
        raise InputError("output", str(path), "the model file name must end in .onnx")
    if not out.parent.is_dir():
        raise InputError("output", str(path), f"folder {out.parent} does not exist")
    net = net.cpu().eval()
    meta: dict[str, str] = {
        MARKER: "1",
        "format_version": "1",
        "input_range": "0..1",
        "output_range": "0..1",
        "layout": f"{INPUT_NAME}: float32 (N,3,H,W) RGB 0..1 -> {OUTPUT_NAME}: float32 (N,3,H,W) RGB 0..1",
        "variant": net.spec.variant,
        "network": json.dumps(net.spec.to_dict()),
        "torch_version": torch.__version__,
    }
    for k, v in (metadata or {}).items():
        meta[str(k)] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".part", dir=out.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        meta["opset"] = str(_torch_export(net, tmp, opset))
        model = onnx.load(str(tmp))
        _make_overridable(model, onnx, TilingNet(net).stats_size)
        del model.metadata_props[:]
        for k, v in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = k, v
        model.producer_name = "nst-gimp"
        model.doc_string = f"Feed-forward style network ({net.spec.variant}); style: {meta.get('style_name', '?')}"
        onnx.checker.check_model(model)
        onnx.save(model, str(tmp))
        if verify:
            diff = verify_onnx(net, tmp)
            if not diff <= VERIFY_TOLERANCE:
                raise EngineRuntimeError(
                    f"exported model differs from torch by {diff:.2e} (> {VERIFY_TOLERANCE:g}); not written"
                )
        from nst_engine.image import _umask

        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; a new model gets the usual mode
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return meta


@torch.no_grad()
def verify_onnx(net: TransformerNet, path: str | os.PathLike[str], seed: int = 0) -> float:
    """Max abs difference between torch and onnxruntime (CPU) on random 0..1 inputs.

    Checks the plain call (``image`` only: instance norm) against ``net``, and a call with given
    statistics (``stats_in`` from another image, ``stats_mix`` 1) against `TilingNet`.
    """
    import onnxruntime as ort

    net = net.cpu().eval()
    tiling = TilingNet(net)
    options = ort.SessionOptions()
    options.log_severity_level = 3  # not the note that stats_in/stats_mix are overridable: that is the point
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    gen = torch.Generator().manual_seed(seed)
    worst = 0.0
    for shape in VERIFY_SHAPES:
        x = torch.rand(shape, generator=gen)
        ref = net(x).numpy()
        got = session.run([OUTPUT_NAME], {INPUT_NAME: x.numpy()})[0]
        if got.shape != ref.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref).max()))
        # Statistics of another image, fed back in.
        _, stats = tiling(torch.rand(1, 3, 48, 40, generator=gen), torch.zeros(tiling.stats_size), torch.tensor(0.0))
        ref, ref_stats = tiling(x, stats[0], torch.tensor(1.0))
        got, got_stats = session.run([OUTPUT_NAME, STATS_NAME], {INPUT_NAME: x.numpy(), STATS_IN_NAME: stats[0].numpy(),
                                                                 MIX_NAME: np.array(1.0, np.float32)})
        if got.shape != ref.shape or got_stats.shape != ref_stats.shape:
            return float("inf")
        worst = max(worst, float(np.abs(got - ref.numpy()).max()))
        rel = np.abs(got_stats - ref_stats.numpy()) / (1.0 + np.abs(ref_stats.numpy()))
        worst = max(worst, float(rel.max()))
    return worst
