# Neural style transfer for GIMP 3 (nst-gimp): the dialogs. MIT licence.
#
# Installed by `nst gimp-install` next to nst-gimp.py, which imports it for interactive runs only.
# gi and the standard library only; every Gimp/GimpUi call happens on GIMP's main thread.
"""The procedures' dialogs, generated from the argument spec (nst-gimp-args.json).

Arguments are grouped in frames; an argument's ``show_if`` ({argument: [values]}) hides it (and a
frame whose arguments are all hidden) unless the config matches, and a line under Method states
how long the iterative method will take on this computer (`nst_bridge.timing`, from the step
cost `nst gimp-install` measured), updated as Method, Size and Steps change.
"""
import json
import os
import sys

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("GimpUi", "3.0")
gi.require_version("Gtk", "3.0")
from gi.repository import GimpUi, GLib, GObject, Gtk  # noqa: E402

from nst_bridge.state import BridgeError  # noqa: E402  (copied next to the plug-in by `nst gimp-install`)

try:
    from nst_bridge import timing  # copied next to the plug-in by `nst gimp-install`
except ImportError:  # pragma: no cover - an older installation: no estimate line
    timing = None

PROC_STYLIZE = "plug-in-nst-stylize"
PROC_TEXTURE = "plug-in-nst-texture"
PROC_FRAMES = "plug-in-nst-frames"
PLUGIN_BINARY = "nst-gimp"
HERE = os.path.dirname(os.path.realpath(__file__))
STATE_FILE = os.path.join(HERE, "nst-gimp-dialog.json")  # the dialog has been used (see _first_use)

MAX_REGIONS = 4  # region1-… to region4-… (nst_engine/bridge/arguments.py)
REGION_PARTS = (("channel", "Region %d"), ("style-layer", "style"), ("style-file", "or file"),
                ("weight", "weight"))  # one row each
REGION_ARGUMENTS = ["regions"] + ["region%d-%s" % (k, what) for k in range(1, MAX_REGIONS + 1)
                                  for what, _ in REGION_PARTS] + ["regions-rest"]
# (key, frame title, arguments) in dialog order; arguments a spec lacks are left out.
GROUPS = {
    PROC_STYLIZE: [("style", "Style", ["style-layer", "style-file"]),
                   ("regions", "Regions (Iterative)", REGION_ARGUMENTS),
                   ("model", "Model", ["model", "model-file", "model-size"]),
                   ("engine", "Optimizer", ["steps", "size", "style-weight", "style-scale"]),
                   ("result", "Result", ["preserve-colors", "composite", "layer-mode", "opacity"])],
    PROC_TEXTURE: [("style", "Style", ["style-layer", "style-file"]),
                   ("engine", "Engine", ["steps", "size", "style-scale", "seed"]),
                   ("result", "Result", ["layer-mode", "opacity"])],
    PROC_FRAMES: [("model", "Model", ["model", "model-file", "model-size"]),
                  ("style", "Style", ["style-layer", "style-file"]),
                  ("engine", "Optimizer", ["steps", "next-steps", "size", "style-weight", "style-scale"]),
                  ("temporal", "Between frames", ["consistency", "blend", "refine-steps"]),
                  ("result", "Result", ["preserve-colors"])],
}
TOP = {PROC_STYLIZE: ["method"], PROC_TEXTURE: [], PROC_FRAMES: ["method"]}  # above the frames, after the intro
TITLES = {PROC_STYLIZE: "Neural Style Transfer", PROC_TEXTURE: "Neural Texture",
          PROC_FRAMES: "Neural Style Transfer (frames)"}

INTRO = {
    PROC_STYLIZE: "Repaints each selected layer on a new layer above it (only the selection, if there is "
                  "one): in the style of a style image (Iterative), or of a trained model's painting (Model). "
                  "Your layers are not changed.",
    PROC_TEXTURE: "Fills a new layer, the size of the canvas or the selection, with a texture in the style "
                  "of the style image.",
    PROC_FRAMES: "Stylizes every layer of this animation (each layer is a frame, the bottom one first) into a "
                 "new image, keeping the frames' names and timings; this image is not changed. Temporal "
                 "consistency keeps the brush strokes steady from frame to frame.",
}


# Cosmetic touches (wrapping, slider ranges, a thumbnail) that this GTK or GIMP binding may lack:
# the dialog works without them, so such a failure is reported on stderr and the dialog goes on.
COSMETIC_ERRORS = (AttributeError, TypeError, GLib.Error)


def _cosmetic_failed(what: str, error: BaseException) -> None:
    print("[nst-gimp] dialog: %s skipped (%s: %s)" % (what, type(error).__name__, error), file=sys.stderr)


def _wrapped(label):
    """A dialog label that wraps at ~48 characters, left-aligned."""
    try:
        label.set_line_wrap(True)
        label.set_max_width_chars(48)
        label.set_xalign(0.0)
    except COSMETIC_ERRORS as e:  # the text shows unwrapped
        _cosmetic_failed("wrapping a label", e)
    return label


def _first_use(config, args):
    """The first time the dialog opens, start from each argument's ``dialog_default`` (e.g. the
    model method on a computer without CUDA) where the config still holds the PDB default;
    once the user has confirmed the dialog, GIMP's remembered values rule."""
    if os.path.exists(STATE_FILE):
        return
    for a in args.values():
        if "dialog_default" in a and a["dialog_default"] != a.get("default"):
            if config.get_property(a["name"]) == a.get("default"):
                config.set_property(a["name"], a["dialog_default"])


def _size_default(config, args, spec, regions):
    """Size follows the layer up to what this machine does in about ten minutes at the dialog's
    steps (`timing.suggested_size`, from the measured step cost), while Size still holds the PDB
    default: a photo smaller than that is processed at its own size instead of upscaled, a big
    one no larger than this computer finishes in reasonable time. A Size the user changed stays."""
    arg = args.get("size")
    if timing is None or arg is None or not regions or config.get_property("size") != arg.get("default"):
        return
    size = timing.suggested_size(spec.get("estimate"), regions, int(config.get_property("steps")))
    if size:
        config.set_property("size", int(size))


def _remember_use():
    try:
        with open(STATE_FILE, "w", encoding="utf-8") as fh:
            json.dump({"confirmed": True}, fh)
    except OSError:
        pass  # a read-only plug-in folder: the first-use defaults simply apply again


def _refresh_layer_previews(dialog, config, args):
    """GIMP 3.0's layer chooser draws no thumbnail for a value set before it was laid out:
    set the value again once the dialog is on screen (each layer and channel argument)."""
    for a in args.values():
        if a["type"] in ("layer", "channel") and config.get_property(a["name"]) is not None:
            _refresh_preview(dialog, a["name"], config.get_property(a["name"]))


def _refresh_preview(dialog, name, drawable):
    try:
        chooser = dialog.get_widget(name, GObject.TYPE_NONE)
        if chooser is None:
            raise TypeError("the dialog has no %s widget" % name)
    except COSMETIC_ERRORS as e:  # the chooser still works, without the first thumbnail
        _cosmetic_failed("the thumbnail of %s" % name, e)
        return

    def again(*_):
        try:
            chooser.set_drawable(drawable)
        except COSMETIC_ERRORS as e:  # as above
            _cosmetic_failed("the thumbnail of %s" % name, e)
        return False

    chooser.connect("size-allocate", lambda *a: GLib.idle_add(again))


def _soft_ranges(dialog, args):
    """Sliders over a useful range; typing still allows the full range."""
    for a in args.values():
        if a["type"] in ("int", "double") and a.get("soft"):
            try:
                w = dialog.get_widget(a["name"], GimpUi.SpinScale)
                w.set_scale_limits(a["soft"][0], a["soft"][1])
                if "digits" in a:
                    w.set_digits(a["digits"])
            except COSMETIC_ERRORS as e:  # the slider spans the full range
                _cosmetic_failed("the slider range of %s" % a["name"], e)


def _short_label(widget, text):
    """A chooser's label (the argument's nick) shortened for a row of the Regions frame."""
    if hasattr(widget, "set_label"):  # GimpFileChooser
        widget.set_label(text)
    else:  # GimpDrawableChooser: its label widget
        widget.get_label().set_text(text)


def _region_rows(dialog, names, frames):
    """``names`` of the Regions frame with each region's channel, style layer and style file on
    one row ("Region 1 [channel] style [layer] or file [file]"), so four regions keep the dialog
    short; each row is hidden with its arguments (appended to ``frames``)."""
    rows = []
    for k in range(1, MAX_REGIONS + 1):
        row = ["region%d-%s" % (k, what) for what, _ in REGION_PARTS]
        if not all(n in names for n in row):
            continue
        box = dialog.fill_box("region%d-row" % k, row)
        try:
            box.set_orientation(Gtk.Orientation.HORIZONTAL)
            box.set_spacing(12)
            for n, (what, text) in zip(row, REGION_PARTS, strict=True):
                widget = dialog.get_widget(n, GObject.TYPE_NONE)
                _short_label(widget, text % k if "%d" in text else text)
                if what == "weight":  # the slider takes the rest of the row, wide enough for its label
                    widget.set_hexpand(True)
                    widget.set_size_request(150, -1)
        except COSMETIC_ERRORS as e:  # the region's choosers stack up, with their full labels
            _cosmetic_failed("the row of region %d" % k, e)
        frames.append((box, row))
        rows.append("region%d-row" % k)
    return [n for n in names if n == "regions"] + rows + [n for n in names if n == "regions-rest"]


class _Visibility:
    """Shows each argument (and each frame) only when its ``show_if`` matches the config."""

    def __init__(self, dialog, config, args, frames):
        self.dialog, self.config, self.args, self.frames = dialog, config, args, frames
        self.widgets = {}
        for name, a in args.items():
            if a.get("show_if"):
                try:
                    widget = dialog.get_widget(name, GObject.TYPE_NONE)
                    if widget is None:
                        raise TypeError("the dialog has no widget for %s" % name)
                    self.widgets[name] = widget
                except COSMETIC_ERRORS as e:  # the argument is then always shown
                    _cosmetic_failed("hiding %s when it does not apply" % name, e)
        self.watched = sorted({k for a in args.values() for k in (a.get("show_if") or {})})

    def shown(self, name):
        cond = self.args.get(name, {}).get("show_if") or {}
        return all(self.config.get_property(k) in values for k, values in cond.items())

    def apply(self, shrink=False):
        for name, w in self.widgets.items():
            w.set_visible(self.shown(name))
        for frame, names in self.frames:
            frame.set_visible(any(self.shown(n) for n in names))
        if shrink:
            self.dialog.resize(1, 1)  # to the natural size of what is left


def _estimate_label(dialog, config, spec, name, regions, handlers):
    """The "Iterative: about 4 min on this computer at 512 px, 300 steps" line, or None."""
    cost = spec.get("estimate")
    if name != PROC_STYLIZE or timing is None or not cost or not regions:
        return None
    label = _wrapped(dialog.get_label("estimate", "", False, False))

    def update(*_):
        try:
            text = timing.estimate_text(cost, config.get_property("method"), regions,
                                        int(config.get_property("size")), int(config.get_property("steps")))
        except Exception as e:  # never let the estimate break the dialog
            print("[nst-gimp] estimate: %s" % e, file=sys.stderr)
            text = ""
        label.set_text(text)

    update()
    for prop in ("method", "size", "steps"):
        handlers.append(config.connect("notify::" + prop, update))
    return label


def show_dialog(procedure, config, spec, engine, regions=()):
    """The dialog generated from the procedure's arguments. False if the user cancelled.

    ``regions``: (layer long side, region height, region width) of each layer the run would
    process, for the time estimate."""
    GimpUi.init(PLUGIN_BINARY)
    if engine is not None:
        try:  # warm the engine up while the user is choosing settings
            engine.prestart()
        except (BridgeError, OSError) as e:  # the run tries again and reports it with a proper message
            print("[nst-gimp] starting the engine early failed: %s" % e, file=sys.stderr)
    name = procedure.get_name()
    args = {a["name"]: a for a in spec["procedures"][name]}
    _first_use(config, args)
    _size_default(config, args, spec, regions)
    title = TITLES.get(name, "Neural Style Transfer")
    dialog = GimpUi.ProcedureDialog.new(procedure, config, title)
    if os.environ.get("NST_GIMP_DEBUG"):
        print("[nst-gimp] style-layer in dialog:", config.get_property("style-layer"), file=sys.stderr, flush=True)
    _soft_ranges(dialog, args)
    frames, frame_ids = [], []
    for key, title_text, names in GROUPS[name]:
        names = [n for n in names if n in args]
        if not names:
            continue
        dialog.get_label(key + "-title", title_text, False, False)
        dialog.fill_box(key + "-box", _region_rows(dialog, names, frames) if key == "regions" else names)
        frames.append((dialog.fill_frame(key + "-frame", key + "-title", False, key + "-box"), names))
        frame_ids.append(key + "-frame")
    _wrapped(dialog.get_label("intro", INTRO[name], False, False))
    top = [n for n in TOP[name] if n in args]
    handlers = []  # config signal handlers, disconnected with the dialog
    if _estimate_label(dialog, config, spec, name, list(regions), handlers) is not None:
        top.append("estimate")
    dialog.fill(["intro"] + top + frame_ids)
    visibility = _Visibility(dialog, config, args, frames)
    visibility.apply()
    for prop in visibility.watched:
        handlers.append(config.connect("notify::" + prop, lambda *_: visibility.apply(shrink=True)))
    _refresh_layer_previews(dialog, config, args)
    ok = dialog.run()
    for h in handlers:
        config.disconnect(h)
    dialog.destroy()
    if ok:
        _remember_use()
    return ok
