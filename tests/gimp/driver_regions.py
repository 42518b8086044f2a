# Runs inside GIMP 3, executed by driver.py in its namespace (check, stylize, read, pattern, ...):
# regions (a style per saved channel or layer mask) through the PDB. tests/test_gimp.py makes the
# assertions. $NST_TEST_OUT/dots.png is a style file unlike the Stripes style layer.
# GIMP's Python: gi + stdlib only.


def checks(w, h):
    v = []
    for y in range(h):
        for x in range(w):
            on = ((x // 3) + (y // 3)) % 2
            v += [0.1 + 0.8 * on, 0.8, 0.1, 1.0]
    return v


CHECKS = add_layer(STYLE_IMG, "Checks", 32, 32, values=checks(32, 32))


def mask_values(w, h, x0, y0, x1, y1):
    return [1.0 if x0 <= x < x1 and y0 <= y < y1 else 0.0 for y in range(h) for x in range(w)]


def write_mask(drawable, values):
    w, h = drawable.get_width(), drawable.get_height()
    buf = drawable.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, w, h), "Y float", array.array("f", values).tobytes())
    buf.flush()
    drawable.update(0, 0, w, h)


def regions_image():
    """64x48: the photo; region 1 a saved channel (x 4..28), region 2 the layer mask of a hidden
    layer at offset (32, 0) (x 36..60 on the canvas); the selection x 12..52, y 8..40."""
    img = new_image(64, 48)
    layer = add_layer(img, "photo", 64, 48, values=pattern(64, 48))
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 4, 4, 24, 40)
    left = Gimp.Selection.save(img)
    left.set_name("left")
    matte = add_layer(img, "matte", 32, 48, ox=32, oy=0, values=pattern(32, 48))
    matte.set_visible(False)
    lm = matte.create_mask(Gimp.AddMaskType.BLACK)
    matte.add_mask(lm)
    write_mask(lm, mask_values(32, 48, 4, 4, 28, 44))
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 12, 8, 40, 32)
    return img, layer, left, lm


@check("regions")
def _():
    img, layer, left, right = regions_image()
    run = {"regions": 2, "region1-channel": left, "region1-style-layer": CHECKS, "region2-channel": right,
           "region2-style-file": Gio.File.new_for_path(os.path.join(OUT, "dots.png")), "steps": 4}
    sel = read(img.get_selection(), 0, 0, 64, 48, "Y float")
    chan_l = read(left, 0, 0, 64, 48, "Y float")
    chan_r = [0.0] * (64 * 48)
    values_r = read(right, 0, 0, 32, 48, "Y float")
    for y in range(48):
        for x in range(32, 64):
            chan_r[y * 64 + x] = values_r[y * 32 + x - 32]
    source0 = read(layer)
    flat0 = read(img.duplicate().flatten())
    r = stylize(img, [layer], **run)
    out = summary(r, img)
    if r["status"] != "success" or len(r["new"]) != 1:
        return out
    new = r["new"][0]
    flat1 = read(img.duplicate().flatten())
    pixels = read(new)
    mask = read(new.get_mask(), 0, 0, 64, 48, "Y float")
    single = stylize(img, [layer], steps=run["steps"])  # the Stripes layer everywhere, same selection
    out["single_status"] = single["status"]
    if single["status"] != "success" or len(single["new"]) != 1:
        out["single_message"] = single["message"]
        return out
    single_px = read(single["new"][0])
    n = 64 * 48
    untouched = [i for i in range(n) if sel[i] == 0.0 or (chan_l[i] == 0.0 and chan_r[i] == 0.0)]
    in_left = [i for i in range(n) if sel[i] == 1.0 and chan_l[i] == 1.0]
    in_right = [i for i in range(n) if sel[i] == 1.0 and chan_r[i] == 1.0]
    between = [i for i in range(n) if sel[i] == 1.0 and chan_l[i] == 0.0 and chan_r[i] == 0.0]

    def mean_diff(a, b, idx):
        return sum(abs(a[i * 4 + c] - b[i * 4 + c]) for i in idx for c in range(3)) / max(1, 3 * len(idx))

    out.update(
        n_untouched=len(untouched), n_left=len(in_left), n_right=len(in_right), n_between=len(between),
        shown_untouched_max_diff=max(abs(flat1[i * 4 + c] - flat0[i * 4 + c]) for i in untouched for c in range(3)),
        new_untouched_max_diff=max(abs(pixels[i * 4 + c] - source0[i * 4 + c]) for i in untouched for c in range(4)),
        mask_untouched_max=max(mask[i] for i in untouched),
        mask_left_min=min(mask[i] for i in in_left), mask_right_min=min(mask[i] for i in in_right),
        left_vs_source=mean_diff(pixels, source0, in_left), right_vs_source=mean_diff(pixels, source0, in_right),
        left_vs_single=mean_diff(pixels, single_px, in_left), right_vs_single=mean_diff(pixels, single_px, in_right),
        single_vs_source=mean_diff(single_px, source0, in_left + in_right),
        source_unchanged=diff(read(layer), source0)["max"] == 0.0,
        channels_after=[c.get_name() for c in img.get_channels()],
    )
    # Region 1 at weight 0 keeps (nearly) the photo: the PDB's region1-weight reaches the engine
    weighted = stylize(img, [layer], **dict(run, **{"region1-weight": 0.0}))
    out["weighted_status"] = weighted["status"]
    if weighted["status"] == "success" and len(weighted["new"]) == 1:
        out["weighted_left_vs_source"] = mean_diff(read(weighted["new"][0]), source0, in_left)
    return out


@check("regions_errors")
def _():
    """Refused with a message naming what to fix; nothing changes."""
    out = {}
    for name, props in (
            ("no_style", {"regions": 1}),
            ("no_channel", {"regions": 2, "region1-style-layer": CHECKS}),
            ("model", {"regions": 1, "method": "model", "model": "file"}),
            ("other_image", {"regions": 1, "region1-style-layer": CHECKS})):
        img, layer, left, right = regions_image()
        props = dict(props)
        if name == "other_image":
            props["region1-channel"] = regions_image()[2]
        elif name != "model":
            props["region1-channel"] = left
        before = read(layer)
        r = summary(stylize(img, [layer], **props))
        r["source_unchanged"] = diff(read(layer), before)["max"] == 0.0
        out[name] = r
    return out
