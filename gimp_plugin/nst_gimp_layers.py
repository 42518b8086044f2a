# Neural style transfer for GIMP 3 (nst-gimp): layers, selections and pixels. MIT licence.
#
# Installed by `nst gimp-install` next to nst-gimp.py. gi and the standard library only; every
# call happens on GIMP's main thread.
"""Reading and writing GIMP pixels as float32, the part of each layer to process, new layers,
the style images and the regions' channels."""
import os

import gi

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
from gi.repository import Gegl, Gimp  # noqa: E402

RGBA = "R'G'B'A float"  # perceptual (sRGB-encoded) float: keeps 16/32-bit precision
MASK = "Y float"  # selections and layer masks are linear coverage
MARGIN = 32  # px of context around a selection; the engine's figure comes in the spec (selection_margin)


class UserError(Exception):
    """A problem to show to the user as it is (EXECUTION_ERROR with this message)."""


def _rect(x, y, w, h):
    return Gegl.Rectangle.new(int(x), int(y), int(w), int(h))


def read_pixels(drawable, x, y, w, h, fmt=RGBA, abyss=None):
    buf = drawable.get_buffer()
    data = buf.get(_rect(x, y, w, h), 1.0, fmt, abyss if abyss is not None else Gegl.AbyssPolicy.CLAMP)
    return bytes(data)


def write_pixels(drawable, x, y, w, h, data, fmt=RGBA):
    buf = drawable.get_buffer()
    buf.set(_rect(x, y, w, h), fmt, bytes(data))
    buf.flush()
    drawable.update(int(x), int(y), int(w), int(h))


def offsets(layer):
    r = layer.get_offsets()
    return (r[1], r[2]) if len(r) == 3 else (r[0], r[1])


def new_layer(image, name, w, h, opacity, mode):
    kind = Gimp.ImageType.GRAYA_IMAGE if image.get_base_type() == Gimp.ImageBaseType.GRAY else Gimp.ImageType.RGBA_IMAGE
    return Gimp.Layer.new(image, name, int(w), int(h), kind, float(opacity), mode)


def layer_mode(spec, nick):
    member = spec.get("layer_modes", {}).get(nick, "NORMAL")
    return getattr(Gimp.LayerMode, member, Gimp.LayerMode.NORMAL)


def selected_layers(drawables):
    layers = []
    for d in drawables:
        if not d.is_layer() or d.is_layer_mask():
            raise UserError("Neural Style Transfer works on layers: select layers, not channels or masks.")
        if d.is_group_layer():
            raise UserError("Layer group %r cannot be stylized: select the layers inside it, or merge the group." % d.get_name())
        layers.append(d)
    if not layers:
        raise UserError("Select at least one layer to stylize.")
    return layers


def targets(image, layers, margin=MARGIN):
    """[(layer, (x0, y0, w, h))]: the part of each layer to process (the selection plus ``margin``
    px of context, or the whole layer); layers the selection does not touch are left out."""
    has_selection = not Gimp.Selection.is_empty(image)
    out = []
    for layer in layers:
        w, h = layer.get_width(), layer.get_height()
        if not has_selection:
            out.append((layer, (0, 0, w, h)))
            continue
        ok, sx, sy, sw, sh = layer.mask_intersect()
        if not ok or sw <= 0 or sh <= 0:
            continue  # the selection does not touch this layer
        x0, y0 = max(0, sx - margin), max(0, sy - margin)
        x1, y1 = min(w, sx + sw + margin), min(h, sy + sh + margin)
        out.append((layer, (x0, y0, x1 - x0, y1 - y0)))
    return out


# ---------------------------------------------------------------------------------------------
# styles and regions (arguments style-layer/-file, regionK-channel/-style-layer/-style-file)
# ---------------------------------------------------------------------------------------------

def style_input(config, prefix=""):
    """(name, params, arrays) of the style in ``<prefix>style-layer`` (its pixels as the array
    ``<key>``) or else ``<prefix>style-file`` (its path as the parameter ``<key>_file``); the key
    is ``style``, or ``regionK_style`` for the prefix ``regionK-``."""
    key = prefix.replace("-", "_") + "style"
    title = "Region %s style" % prefix[len("region"):-1] if prefix else "Style"
    layer = config.get_property(prefix + "style-layer")
    if layer is not None:
        if not layer.is_valid():
            raise UserError("The %s layer no longer exists. Choose another %s layer." % (title.lower(), title))
        w, h = layer.get_width(), layer.get_height()
        return layer.get_name(), {}, {key: ([h, w, 4], read_pixels(layer, 0, 0, w, h))}
    gfile = config.get_property(prefix + "style-file")
    path = gfile.get_path() if gfile is not None else None
    if not path:
        first = "Choose a style:" if not prefix else "%s has no style. Choose" % title[:-len(" style")]
        raise UserError("%s a layer of an open image (%s layer) or an image file (%s file)." % (first, title, title))
    if not os.path.isfile(path):
        raise UserError("The style file %s does not exist. Choose another %s file." % (path, title))
    return os.path.splitext(os.path.basename(path))[0], {key + "_file": path}, {}


def chosen_regions(image, config):
    """[(k, channel)] of regions 1..Regions (the ``regions`` argument; none where the procedure
    lacks it), each channel checked: set, still there, of this image (a layer mask will do)."""
    n = int(config.get_property("regions")) if config.find_property("regions") is not None else 0
    out = []
    for k in range(1, n + 1):
        channel = config.get_property("region%d-channel" % k)
        if channel is None:
            raise UserError("Region %d has no channel: choose one in Region %d channel (Select ▸ Save to Channel "
                            "keeps a selection as one), or set Regions to %d." % (k, k, k - 1))
        if not channel.is_valid():
            raise UserError("The channel of region %d no longer exists. Choose another Region %d channel." % (k, k))
        owner = channel.get_image()
        if owner is None or owner.get_id() != image.get_id():
            raise UserError("The channel %r of region %d belongs to another image: choose a channel of this image "
                            "(Region %d channel)." % (channel.get_name(), k, k))
        out.append((k, channel))
    return out


def read_channel(channel, layer, x, y, w, h):
    """The coverage (Y float, 0..1) of ``channel`` over the rectangle x, y, w, h of ``layer`` (in
    the layer's coordinates): channels span the canvas, a layer mask its layer; 0 beyond it."""
    lx, ly = offsets(layer)
    cx, cy = offsets(channel)
    return read_pixels(channel, x + lx - cx, y + ly - cy, w, h, MASK, Gegl.AbyssPolicy.NONE)
