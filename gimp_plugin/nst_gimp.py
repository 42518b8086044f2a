#!/usr/bin/env python3
# Neural style transfer for GIMP 3 (nst-gimp). MIT licence.
#
# Installed by `nst gimp-install` as plug-ins/nst-gimp/nst-gimp.py. It imports only gi and the
# standard library (GIMP's Python has no numpy or torch): pixels go as raw float32 to the engine
# server, a separate process in the engine's own Python environment (see nst_bridge/client.py).
"""Filters ▸ Artistic ▸ Neural Style Transfer…, Filters ▸ Render ▸ Neural Texture… and
Filters ▸ Animation ▸ Neural Style Transfer (frames)… (nst_gimp_frames.py)"""
import os
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gimp  # noqa: E402

gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, GLib, GObject  # noqa: E402

HERE = os.path.dirname(os.path.realpath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)
from nst_gimp_layers import (  # noqa: E402  (next to this file)
    MARGIN, MASK, UserError, chosen_regions, layer_mode, new_layer, offsets, read_channel, read_pixels,
    selected_layers, style_input, targets, write_pixels)
from nst_gimp_spec import (  # noqa: E402  (next to this file; no gi)
    INSTALL_HINT, STYLIZE_HELP, load_spec, missing_arguments, not_installed_message, spec_mismatch_message,
    unexpected_error_message)
from nst_gimp_engine import Progress, check_floats, engine_params, log_timing, model_choice  # noqa: E402
import nst_gimp_frames  # noqa: E402  (next to this file)

try:
    from nst_bridge import client as bridge  # copied next to this file by `nst gimp-install`
    _BRIDGE_ERROR = None
except ImportError as e:  # pragma: no cover - a broken installation
    bridge = None
    _BRIDGE_ERROR = str(e)

PROC_STYLIZE = "plug-in-nst-stylize"
PROC_TEXTURE = "plug-in-nst-texture"
PROC_FRAMES = nst_gimp_frames.PROC_FRAMES
SPEC_FILE = os.path.join(HERE, "nst-gimp-args.json")


# ---------------------------------------------------------------------------------------------
# registration
# ---------------------------------------------------------------------------------------------

def add_argument(proc, a):
    flags = GObject.ParamFlags.READWRITE
    name, nick, blurb, kind = a["name"], a.get("nick", a["name"]), a.get("blurb", ""), a["type"]
    if kind == "int":
        proc.add_int_argument(name, nick, blurb, int(a["min"]), int(a["max"]), int(a["default"]), flags)
    elif kind == "double":
        proc.add_double_argument(name, nick, blurb, float(a["min"]), float(a["max"]), float(a["default"]), flags)
    elif kind == "choice":
        choice = Gimp.Choice.new()
        for i, c in enumerate(a["choices"]):
            choice.add(c["nick"], i, c.get("label", c["nick"]), c.get("help", ""))
        proc.add_choice_argument(name, nick, blurb, choice, a["default"], flags)
    elif kind == "string":
        proc.add_string_argument(name, nick, blurb, a.get("default", ""), flags)
    elif kind == "boolean":
        proc.add_boolean_argument(name, nick, blurb, bool(a.get("default")), flags)
    elif kind == "layer":
        proc.add_layer_argument(name, nick, blurb, True, flags)
    elif kind == "channel":
        proc.add_channel_argument(name, nick, blurb, True, flags)
    elif kind == "file":
        proc.add_file_argument(name, nick, blurb, Gimp.FileChooserAction.OPEN, True, None, flags)
    else:
        raise ValueError("unknown argument type %r" % kind)


class NeuralStyle(Gimp.PlugIn):
    def do_query_procedures(self):
        return [PROC_STYLIZE, PROC_TEXTURE, PROC_FRAMES]

    def do_set_i18n(self, name):
        return False

    def do_create_procedure(self, name):
        spec = load_spec(SPEC_FILE)
        if name == PROC_STYLIZE:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_stylize, None)
            proc.set_menu_label("_Neural Style Transfer...")
            proc.add_menu_path("<Image>/Filters/Artistic")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES)
            proc.set_documentation("Paint the selected layers in the style of another image or of a trained model",
                                   STYLIZE_HELP, name)
        elif name == PROC_FRAMES:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_frames, None)
            nst_gimp_frames.describe(proc)
        else:
            proc = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run_texture, None)
            proc.set_menu_label("Neural _Texture...")
            proc.add_menu_path("<Image>/Filters/Render")
            proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
                                      | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)
            proc.set_documentation(
                "Render a texture in the style of an image",
                "Texture synthesis (Gatys et al.): a new layer, the size of the canvas (or of the selection, "
                "masked by it), filled with a texture that has the style image's statistics.",
                name)
        proc.set_image_types("*" if name == PROC_FRAMES else "RGB*, GRAY*")  # frames: GIFs open indexed
        proc.set_attribution("nst-gimp authors", "nst-gimp authors (MIT)", "2025")
        if spec is not None:
            for a in spec["procedures"][name]:
                add_argument(proc, a)
        return proc


# ---------------------------------------------------------------------------------------------
# runs
# ---------------------------------------------------------------------------------------------

def error_values(procedure, message):
    return procedure.new_return_values(Gimp.PDBStatusType.EXECUTION_ERROR, GLib.Error(message))


def _run(procedure, run_mode, image, drawables, config, body):
    """Every failure ends as EXECUTION_ERROR with a message (never "plug-in crashed")."""
    spec = load_spec(SPEC_FILE)
    if bridge is None or spec is None:
        why = _BRIDGE_ERROR or ("%s is missing or unreadable" % SPEC_FILE)
        return error_values(procedure, not_installed_message(why))
    result = None  # what the body made: a new image (frames), shown and returned
    try:
        missing = missing_arguments(spec, procedure.get_name(), lambda name: config.find_property(name) is not None)
        if missing:
            raise UserError(spec_mismatch_message(SPEC_FILE, missing))
        if image.get_base_type() == Gimp.ImageBaseType.INDEXED and procedure.get_name() != PROC_FRAMES:
            raise UserError("Neural Style Transfer does not work on indexed images. "
                            "Convert the image first: Image ▸ Mode ▸ RGB (or Grayscale).")
        engine = bridge.Engine(bridge.load_config())  # BridgeError: a broken config, said before the dialog
        if run_mode == Gimp.RunMode.INTERACTIVE:
            try:
                import nst_gimp_dialog  # next to this file; GimpUi is needed for dialogs only
            except ImportError as e:
                raise UserError(not_installed_message(str(e))) from None
            if not nst_gimp_dialog.show_dialog(procedure, config, spec, engine,
                                               _dialog_regions(procedure, image, drawables)):
                return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, GLib.Error())
        result = body(procedure, image, list(drawables or []), config, spec, engine)
        if result is not None and run_mode == Gimp.RunMode.INTERACTIVE:  # a new image (frames)
            Gimp.Display.new(result)
            Gimp.displays_flush()
    except (UserError, bridge.BridgeError) as e:
        return error_values(procedure, str(e))
    except Exception as e:  # a bug: still a message, not a "plug-in crashed"
        import traceback

        traceback.print_exc()
        return error_values(procedure, unexpected_error_message(e))
    finally:
        _end_progress()
    values = procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, GLib.Error())
    if result is not None:  # the procedure's return value "new-image"
        values.remove(1)
        values.insert(1, GObject.Value(Gimp.Image, result))
    return values


def _end_progress() -> None:
    try:
        Gimp.progress_end()
    except Exception as e:  # cleanup in `finally` must never replace the run's own result or message
        print("[nst-gimp] ending the progress bar failed: %s" % e, file=sys.stderr)


def run_stylize(procedure, run_mode, image, drawables, config, data):
    return _run(procedure, run_mode, image, drawables, config, stylize)


def run_texture(procedure, run_mode, image, drawables, config, data):
    return _run(procedure, run_mode, image, drawables, config, texture)


def run_frames(procedure, run_mode, image, drawables, config, data):
    return _run(procedure, run_mode, image, drawables, config, nst_gimp_frames.frames)


def _margin():
    """The context the engine stylizes around a selection (its generated spec says how much)."""
    spec = load_spec(SPEC_FILE) or {}
    return int(spec.get("selection_margin", MARGIN))


def _dialog_regions(procedure, image, drawables):
    """(layer long side, region height, region width) per layer to process, for the dialog's estimate."""
    if procedure.get_name() != PROC_STYLIZE:
        return []
    try:
        return [(max(layer.get_width(), layer.get_height()), rh, rw)
                for layer, (_, _, rw, rh) in targets(image, selected_layers(list(drawables or [])), _margin())]
    except UserError:  # no layers, a group, a channel: the run says so after the dialog
        return []


def _regions(image, config, params):
    """(regions [(k, channel)], their style names, params and arrays to add) of the Regions arguments."""
    if params.get("regions") and params.get("method", "iterative") != "iterative":
        raise UserError("Regions work with the Iterative method only: set Regions to 0, or choose Method Iterative.")
    regions = chosen_regions(image, config)
    names, extra, arrays = [], {}, {}
    for k, channel in regions:
        name, style_params, style_arrays = style_input(config, "region%d-" % k)
        names.append(name)
        extra.update(style_params, **{"region%d_channel" % k: channel.get_name()})
        arrays.update(style_arrays)
    return regions, names, extra, arrays


def stylize(procedure, image, drawables, config, spec, engine):
    layers = selected_layers(drawables)
    params = engine_params(config, spec, PROC_STYLIZE)
    method = params.get("method", "iterative")
    regions, region_names, region_params, style_arrays = _regions(image, config, params)
    params.update(region_params)
    if method == "model":
        params["model"], label = model_choice(config, spec, PROC_STYLIZE)
        label = "%s (model)" % label
    elif regions and params.get("regions_rest", "photo") == "photo":
        label = "%s (%s)" % (" + ".join(region_names), method)  # the Style is not used
    else:
        style_name, style_params, main_arrays = style_input(config)
        params.update(style_params)
        style_arrays.update(main_arrays)
        label = "%s (%s)" % (" + ".join([style_name] + region_names), method)
    has_selection = not Gimp.Selection.is_empty(image)
    selection = image.get_selection()
    todo = targets(image, layers, _margin())
    if not todo:
        raise UserError("The selection does not overlap the selected layer(s): nothing to stylize.")
    progress = Progress("Neural Style Transfer", len(todo))
    results = []
    for i, (layer, (x0, y0, rw, rh)) in enumerate(todo):
        w, h = layer.get_width(), layer.get_height()
        ox, oy = offsets(layer)
        arrays = dict(style_arrays)
        arrays["content"] = ([rh, rw, 4], read_pixels(layer, x0, y0, rw, rh))
        if has_selection:
            arrays["mask"] = ([rh, rw], read_pixels(selection, x0 + ox, y0 + oy, rw, rh, MASK, Gegl.AbyssPolicy.NONE))
        for k, channel in regions:
            arrays["region%d" % k] = ([rh, rw], read_channel(channel, layer, x0, y0, rw, rh))
        progress.start(i, layer.get_name())
        call_params = dict(params, layer_long_side=max(w, h))
        t0 = time.monotonic()
        header, out = engine.call("stylize", call_params, arrays, progress)
        log_timing(PROC_STYLIZE, engine, {"layer": layer.get_name(), "wall_s": time.monotonic() - t0})
        image_px = out.get("image")
        if image_px is None or list(image_px[0]) != [rh, rw, 4]:
            raise UserError("The NST engine returned an image of the wrong shape %r (expected %r). %s"
                            % (image_px and image_px[0], [rh, rw, 4], INSTALL_HINT))
        check_floats(bridge.protocol.to_native(image_px[1]), rh * rw * 16, "the image")
        mask_px = out.get("layer_mask")  # with a selection, or regions that keep the photo around them
        if mask_px is not None or has_selection:
            if mask_px is None or list(mask_px[0]) != [rh, rw]:
                raise UserError("The NST engine returned no valid layer mask. %s" % INSTALL_HINT)
            check_floats(bridge.protocol.to_native(mask_px[1]), rh * rw * 4, "the layer mask")
        if header.get("note"):
            Gimp.message(header["note"])
        results.append((layer, (x0, y0, rw, rh), image_px[1], mask_px[1] if mask_px is not None else None))

    # Everything computed: now change the image, as one undo step.
    mode = layer_mode(spec, params.get("layer_mode", "normal"))
    opacity = params.get("opacity", 100.0)
    Gimp.progress_set_text("Adding the new layers...")
    image.undo_group_start()
    try:
        for layer, (x0, y0, rw, rh), pixels, mask in results:
            w, h = layer.get_width(), layer.get_height()
            ox, oy = offsets(layer)
            new = new_layer(image, label, w, h, opacity, mode)
            image.insert_layer(new, layer.get_parent(), image.get_item_position(layer))
            new.set_offsets(ox, oy)
            if (x0, y0, rw, rh) != (0, 0, w, h):
                write_pixels(new, 0, 0, w, h, read_pixels(layer, 0, 0, w, h))
            write_pixels(new, x0, y0, rw, rh, pixels)
            if mask is not None:
                lm = new.create_mask(Gimp.AddMaskType.BLACK)
                new.add_mask(lm)
                write_pixels(lm, x0, y0, rw, rh, mask, MASK)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


def texture(procedure, image, drawables, config, spec, engine):
    params = engine_params(config, spec, PROC_TEXTURE)
    style_name, style_params, style_arrays = style_input(config)
    params.update(style_params)
    if Gimp.Selection.is_empty(image):
        x0, y0, w, h, mask = 0, 0, image.get_width(), image.get_height(), None
    else:
        _, _, x0, y0, x1, y1 = Gimp.Selection.bounds(image)
        w, h = x1 - x0, y1 - y0
        mask = read_pixels(image.get_selection(), x0, y0, w, h, MASK, Gegl.AbyssPolicy.NONE)
    progress = Progress("Neural Texture", 1)
    progress.start(0, "texture")
    t0 = time.monotonic()
    header, out = engine.call("texture", dict(params, shape=[h, w]), style_arrays, progress)
    log_timing(PROC_TEXTURE, engine, {"wall_s": time.monotonic() - t0})
    px = out.get("image")
    if px is None or list(px[0]) != [h, w, 4]:
        raise UserError("The NST engine returned a texture of the wrong shape. %s" % INSTALL_HINT)
    check_floats(bridge.protocol.to_native(px[1]), h * w * 16, "the texture")
    above = drawables[0] if drawables and drawables[0].is_layer() and not drawables[0].is_layer_mask() else None
    image.undo_group_start()
    try:
        new = new_layer(image, "Texture: %s" % style_name, w, h, params.get("opacity", 100.0),
                         layer_mode(spec, params.get("layer_mode", "normal")))
        if above is not None:
            image.insert_layer(new, above.get_parent(), image.get_item_position(above))
        else:
            image.insert_layer(new, None, 0)
        new.set_offsets(x0, y0)
        write_pixels(new, 0, 0, w, h, px[1])
        if mask is not None:
            lm = new.create_mask(Gimp.AddMaskType.BLACK)
            new.add_mask(lm)
            write_pixels(lm, 0, 0, w, h, mask, MASK)
    finally:
        image.undo_group_end()
    Gimp.displays_flush()


if __name__ == "__main__":
    Gimp.main(NeuralStyle.__gtype__, sys.argv)
