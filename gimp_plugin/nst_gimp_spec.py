# Neural style transfer for GIMP 3 (nst-gimp): the argument spec and the plug-in's messages. MIT licence.
#
# Installed by `nst gimp-install` next to nst-gimp.py. Standard library only, no gi: the tests
# import it outside GIMP.
"""Reading the argument spec (nst-gimp-args.json), checking it against what GIMP registered, and
the texts the plug-in shows when it cannot run."""
from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

INSTALL_HINT = "Run `nst gimp-install` from the Python environment where nst-gimp is installed, then restart GIMP."

STYLIZE_HELP = """\
Neural style transfer: for every selected layer, a new layer just above it holds the layer
repainted. With a selection, only the selection (plus context) is processed and blended back,
and the new layer gets the selection as its mask. The originals are not modified.

method "iterative" (Gatys et al.; the default for scripts) optimises the pixels towards the style
of style-layer (a layer of any open image) or, when that is unset, style-file; steps, size and
style-weight apply. It takes minutes on a CPU. method "model" runs a trained feed-forward
network in one pass, in the style it was trained on (no style image): model is the name of a
shipped model (the model argument's choices, e.g. "starry-night"), or "file" with model-file an
.onnx file made by `nst train`; model-size is the long side the layer is painted at (0: full
resolution). preserve-colors, composite, layer-mode and opacity apply to both methods.

Regions (iterative only; Gatys et al. 2017 spatial control): regions = N paints region k = 1..N,
the part of the image that channel regionK-channel selects (a saved selection or a layer mask;
white = inside, soft edges blend), in the style of regionK-style-layer or, when unset,
regionK-style-file. regions-rest: "photo" (the part no region covers stays the photo: the new
layer's mask is the regions, times the selection if any) or "style" (it takes style-layer /
style-file). A selection still limits everything.

Example (Python-Fu): proc = Gimp.get_pdb().lookup_procedure("plug-in-nst-stylize");
cfg = proc.create_config(); set image and drawables; cfg.set_property("method", "model");
cfg.set_property("model", "starry-night") (or "file", and model-file to
Gio.File.new_for_path("/path/my.onnx")); proc.run(cfg). Regions: cfg.set_property("regions", 2);
cfg.set_property("region1-channel", image.get_channel_by_name("sky")); cfg.set_property(
"region1-style-layer", layer) (or "region1-style-file"); the same for region 2.
"""


def load_spec(path: str) -> dict[str, Any] | None:
    """The argument spec, or None when the file is missing, unreadable or not a spec."""
    try:
        with open(path, encoding="utf-8") as fh:
            spec = json.load(fh)
    except (OSError, ValueError):
        return None
    if not isinstance(spec, dict) or not isinstance(spec.get("procedures"), dict):
        return None
    return spec


def missing_arguments(spec: dict[str, Any], proc_name: str, has_property: Callable[[str], bool]) -> list[str]:
    """The spec's arguments of ``proc_name`` that the procedure's config lacks (GIMP registered
    the procedure from an older or newer spec), in spec order; all of them if the spec does not
    know the procedure at all."""
    args = spec.get("procedures", {}).get(proc_name)
    if not isinstance(args, list):
        return ["(no arguments for %s in the spec)" % proc_name]
    return [a["name"] for a in args if not has_property(a["name"])]


def not_installed_message(why: str) -> str:
    return "The NST plug-in is not installed completely (%s). %s" % (why, INSTALL_HINT)


def spec_mismatch_message(spec_file: str, missing: list[str]) -> str:
    """A spec whose arguments GIMP does not have: GIMP still runs the procedures it registered
    before `nst gimp-install` changed them."""
    return ("The NST plug-in's arguments (%s) do not match the ones GIMP registered: GIMP lacks %s. "
            "Restart GIMP so that it registers the plug-in again; if this persists, %s"
            % (spec_file, ", ".join(missing), INSTALL_HINT[0].lower() + INSTALL_HINT[1:]))


def unexpected_error_message(error: BaseException) -> str:
    """A bug in the plug-in: still a message, not "plug-in crashed"."""
    return ("Unexpected error in the NST plug-in (%s: %s). The image was not changed unless new layers appear; "
            "please report this." % (type(error).__name__, error))
