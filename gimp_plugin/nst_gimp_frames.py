# Neural style transfer for GIMP 3 (nst-gimp): Filters ▸ Animation ▸ Neural Style Transfer (frames)…
# MIT licence.
#
# Installed by `nst gimp-install` next to nst-gimp.py, which registers the procedure and runs it
# through its error handling. gi and the standard library only; every Gimp call happens on
# GIMP's main thread.
"""An animation (an image whose layers are its frames: GIF, WebP, APNG open that way) stylized
frame by frame with temporal consistency into a NEW image; the original is not touched.

Frames are the image's top-level layers in GIMP's playback order (bottom layer first). All of them
go to the engine in one ``frames`` job (`nst_engine.bridge.frames`); the new image is built only
once every frame is back, so a cancelled or failed run leaves nothing behind (an image that fails
half-built is deleted). Each new layer keeps its frame's name (timings such as ``(100ms)`` and
``(combine)``/``(replace)`` tags), size, offsets, opacity, mode, visibility and layer mask.
Frames of different sizes are each stylized at their own size (temporal consistency then links
only consecutive frames of the same size; a message says where).
"""
from __future__ import annotations

import time
from typing import Any

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gimp, GObject  # noqa: E402

from nst_gimp_engine import Progress, check_floats, engine_params, log_timing, model_choice  # noqa: E402
from nst_gimp_layers import (  # noqa: E402  (next to this file)
    MASK, UserError, new_layer, offsets, read_pixels, style_input, write_pixels)
from nst_gimp_spec import INSTALL_HINT  # noqa: E402  (next to this file; no gi)

try:
    from nst_bridge import protocol  # copied next to the plug-in by `nst gimp-install`
except ImportError:  # pragma: no cover - a broken installation: nst-gimp.py says so before any run
    protocol = None

PROC_FRAMES = "plug-in-nst-frames"
MIN_FRAMES = 2  # = nst_engine.bridge.frames.MIN_FRAMES

FRAMES_HELP = """\
Neural style transfer of an animation: every top-level layer of the image is a frame, in GIMP's
playback order (the bottom layer first), as GIF, WebP and APNG animations open. The result is a
new image with one stylized layer per frame, each keeping its frame's name (so frame timings
such as "(100ms)" and "(combine)"/"(replace)" survive an export as an animation), size, offsets
and layer mask; the original image is not changed, and the selection is ignored. An indexed
image (a GIF) gives an RGB result.

method "model" (the default) paints each frame with a trained model: model is a shipped model's
name (e.g. "starry-night") or "file" with model-file an .onnx made by `nst train`. method
"iterative" optimises each frame towards style-layer or style-file (minutes per frame on a CPU):
the first frame takes steps, each later frame starts from the previous result warped along the
optical flow and takes next-steps (0: half of steps). consistency "temporal" (the default)
blends each frame with the previous stylized frame, warped along the motion, where the scene
was visible (weight blend): no flicker; "none" stylizes frame by frame. Frames of different
sizes are each stylized at their own size. Returns the new image.

Example (Python-Fu): proc = Gimp.get_pdb().lookup_procedure("plug-in-nst-frames");
cfg = proc.create_config(); cfg.set_property("image", image); cfg.set_property("model",
"starry-night"); result = proc.run(cfg); new_image = result.index(1).
"""


def describe(proc: Any) -> None:
    """The procedure's menu entry, documentation and return value (nst-gimp.py adds the
    arguments from the spec)."""
    proc.set_menu_label("Neural Style Transfer (_frames)...")
    proc.add_menu_path("<Image>/Filters/Animation")
    proc.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE | Gimp.ProcedureSensitivityMask.DRAWABLES
                              | Gimp.ProcedureSensitivityMask.NO_DRAWABLES)
    proc.set_documentation("Stylize every frame (layer) of an animation into a new image, without flicker",
                           FRAMES_HELP, PROC_FRAMES)
    proc.add_image_return_value("new-image", "New image", "The stylized animation (a new image)", False,
                                GObject.ParamFlags.READWRITE)


def frame_layers(image: Any) -> list[Any]:
    """The image's frames in playback order (bottom layer first), checked."""
    layers = list(reversed(image.get_layers()))
    for layer in layers:
        if layer.is_group_layer():
            raise UserError("Layer group %r: Neural Style Transfer (frames) takes each top-level layer as a frame. "
                            "Merge the group first (Layer ▸ Merge Layer Group)." % layer.get_name())
    if len(layers) < MIN_FRAMES:
        raise UserError("Neural Style Transfer (frames) needs at least %d layers (frames); this image has %d. "
                        "An animation is an image whose layers are its frames (open a GIF, WebP or APNG, or "
                        "add layers); for a single picture use Filters ▸ Artistic ▸ Neural Style Transfer."
                        % (MIN_FRAMES, len(layers)))
    return layers


def _method(config: Any, spec: dict[str, Any], params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """(label for messages, the style's arrays): the model or the style layer/file."""
    if params.get("method", "model") == "model":
        params["model"], label = model_choice(config, spec, PROC_FRAMES)
        return "%s (model)" % label, {}
    name, style_params, arrays = style_input(config)
    params.update(style_params)
    return "%s (iterative)" % name, arrays


def frames(procedure: Any, image: Any, drawables: list[Any], config: Any, spec: dict[str, Any],
           engine: Any) -> Any:
    """Stylize every frame; returns the new image (not displayed: nst-gimp.py shows it when interactive)."""
    layers = frame_layers(image)
    params = engine_params(config, spec, PROC_FRAMES)
    label, arrays = _method(config, spec, params)
    t0 = time.monotonic()
    sizes = [(layer.get_width(), layer.get_height()) for layer in layers]
    for i, (layer, (w, h)) in enumerate(zip(layers, sizes, strict=True)):
        arrays["frame%d" % i] = ([h, w, 4], read_pixels(layer, 0, 0, w, h))
    progress = Progress("Neural Style Transfer (frames): %s" % label, len(layers))
    t1 = time.monotonic()
    header, out = engine.call("frames", params, arrays, progress)
    t2 = time.monotonic()
    arrays.clear()
    pixels = []
    for i, (w, h) in enumerate(sizes):
        px = out.get("frame%d" % i)
        if px is None or list(px[0]) != [h, w, 4]:
            raise UserError("The NST engine returned frame %d with the wrong shape %r (expected %r). %s"
                            % (i + 1, px and px[0], [h, w, 4], INSTALL_HINT))
        data = protocol.to_native(px[1]) if protocol is not None else px[1]
        check_floats(data, h * w * 16, "frame %d" % (i + 1))
        pixels.append(data)
    if header.get("note"):
        Gimp.message(header["note"])
    Gimp.progress_set_text("Building the new image...")
    t3 = time.monotonic()
    new = build_image(image, layers, pixels)
    log_timing(PROC_FRAMES, engine, {"frames": len(layers), "wall_s": t2 - t1, "read_s": t1 - t0, "check_s": t3 - t2,
                                     "build_s": time.monotonic() - t3})
    return new


def build_image(image: Any, layers: list[Any], pixels: list[Any]) -> Any:
    """A new image of ``image``'s canvas with one layer per frame (playback order kept: the first
    frame at the bottom), each like its source layer with the stylized pixels; deleted again if
    anything fails, so no half-built image is left."""
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    base = Gimp.ImageBaseType.GRAY if gray else Gimp.ImageBaseType.RGB
    new = Gimp.Image.new_with_precision(image.get_width(), image.get_height(), base, image.get_precision())
    built = False
    try:
        new.undo_disable()
        for layer, data in zip(layers, pixels, strict=True):
            w, h = layer.get_width(), layer.get_height()
            frame = new_layer(new, layer.get_name(), w, h, layer.get_opacity(), layer.get_mode())
            new.insert_layer(frame, None, 0)  # each above the one before: the last frame on top
            ox, oy = offsets(layer)
            frame.set_offsets(ox, oy)
            frame.set_visible(layer.get_visible())
            write_pixels(frame, 0, 0, w, h, data)
            mask = layer.get_mask()
            if mask is not None:
                copy = frame.create_mask(Gimp.AddMaskType.WHITE)
                frame.add_mask(copy)
                write_pixels(copy, 0, 0, w, h, read_pixels(mask, 0, 0, w, h, MASK), MASK)
        ok, xres, yres = image.get_resolution()
        if ok:
            new.set_resolution(xres, yres)
        new.undo_enable()
        built = True
    finally:
        if not built:  # no half-built image: delete it (the error goes on to the caller)
            new.delete()
    return new
