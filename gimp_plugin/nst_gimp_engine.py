# Neural style transfer for GIMP 3 (nst-gimp): what every procedure sends the engine and checks in its reply.
# MIT licence.
#
# Installed by `nst gimp-install` next to nst-gimp.py. gi and the standard library only; every
# Gimp call happens on GIMP's main thread.
"""The procedures' arguments as engine parameters, the model to use, the GIMP progress bar across
engine calls, checking the engine's pixels, and the timing log (NST_GIMP_TIMING_LOG)."""
from __future__ import annotations

import json
import math
import os
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

from nst_gimp_layers import UserError  # noqa: E402  (next to this file)
from nst_gimp_spec import INSTALL_HINT  # noqa: E402  (next to this file; no gi)

OTHER_MODEL = "file"  # the Model choice that uses Model file (see nst_engine/bridge/arguments.py)


def check_floats(data: Any, expected_len: int, what: str) -> None:
    """The engine's reply must have the right size and finite values (sampled)."""
    if len(data) != expected_len:
        raise UserError("The NST engine returned %s of the wrong size (%d bytes, expected %d). "
                        "The engine and the plug-in may not match: %s" % (what, len(data), expected_len, INSTALL_HINT))
    view = memoryview(data).cast("B").cast("f")
    stride = max(1, len(view) // 200000)
    for v in view[::stride]:
        if v != v or v in (math.inf, -math.inf):
            raise UserError("The NST engine returned invalid pixels (NaN) for %s. Try other settings." % what)


def engine_params(config: Any, spec: dict[str, Any], proc_name: str) -> dict[str, Any]:
    """The procedure's arguments as JSON for the engine (names with '_'); files as paths."""
    params = {}
    for a in spec["procedures"][proc_name]:
        if a["type"] in ("layer", "file", "channel"):
            continue
        params[a["name"].replace("-", "_")] = config.get_property(a["name"])
    return params


def model_choice(config: Any, spec: dict[str, Any], proc_name: str) -> tuple[str, str]:
    """(model for the engine: a shipped name or an .onnx path, its name for the new layer)."""
    nick = config.get_property("model")
    if nick == OTHER_MODEL:
        gfile = config.get_property("model-file")
        path = gfile.get_path() if gfile is not None else None
        if not path:
            raise UserError("Choose the model's .onnx file (Model file), or one of the shipped models (Model).")
        if not os.path.isfile(path):
            raise UserError("The model file %s does not exist. Choose another Model file." % path)
        return path, os.path.splitext(os.path.basename(path))[0]
    arg = next((a for a in spec["procedures"][proc_name] if a["name"] == "model"), {})
    label = next((c.get("label") for c in arg.get("choices", []) if c["nick"] == nick), None) or nick
    return nick, label.split(" (")[0]


def log_timing(proc_name: str, engine: Any, extra: dict[str, Any]) -> None:
    path = os.environ.get("NST_GIMP_TIMING_LOG")
    if path:
        with open(path, "a", encoding="utf-8") as fh:
            fh.write(json.dumps(dict(procedure=proc_name, **engine.timing, **extra)) + "\n")


class Progress:
    """GIMP progress bar + text across several engine calls (``start`` each), or one call over
    ``n`` frames whose messages say which frame (``frame`` k of ``frames``)."""

    def __init__(self, title: str, n: int) -> None:
        self.n = max(1, n)
        self.i = 0
        self.label = ""
        Gimp.progress_init(title)
        Gimp.progress_set_text("%s: starting the engine..." % title)

    def start(self, i: int, label: str) -> None:
        self.i, self.label = i, label
        Gimp.progress_update(i / self.n)

    def __call__(self, msg: dict[str, Any]) -> None:
        step, total = int(msg.get("step") or 0), int(msg.get("total") or 0)
        if msg.get("frame"):  # a frames job: one call, the frame in the message
            self.i = int(msg["frame"]) - 1
        frac = (self.i + (step / total if total else 0.0)) / self.n
        stage = msg.get("stage", "")
        text = "%s: %s" % (self.label, stage) if self.label else stage
        if total:
            text += " step %d/%d" % (step, total)
        eta = msg.get("eta")
        if eta is not None and total and step < total:
            text += ", %d s left" % max(0, round(eta))
        Gimp.progress_set_text(text)
        Gimp.progress_update(min(1.0, max(0.0, frac)))
