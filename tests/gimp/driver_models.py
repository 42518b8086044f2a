# Runs inside GIMP 3, executed by driver.py in its namespace (check, stylize, read, pattern, ...):
# the model method through the PDB. tests/test_gimp.py makes the assertions.
# NST_TEST_MODEL names the first shipped model; $NST_TEST_OUT/my-model.onnx is a copy of it.
# GIMP's Python: gi + stdlib only.


@check("model_method")
def _():  # Model "file" without a Model file: a clear message, nothing changed
    img = new_image(32, 32)
    layer = add_layer(img, "photo", 32, 32, values=pattern(32, 32))
    return summary(stylize(img, [layer], method="model", model="file"))


MODEL = os.environ.get("NST_TEST_MODEL", "")  # the first shipped model (tests/test_gimp.py)


@check("model_choices")
def _():
    proc = pdb.lookup_procedure("plug-in-nst-stylize")
    spec = proc.find_argument("model")
    out = {"nicks": list(Gimp.param_spec_choice_get_choice(spec).list_nicks()),
           "default": Gimp.param_spec_choice_get_default(spec)}
    size = proc.find_argument("model-size")
    out["model_size"] = [size.minimum, size.maximum, size.default_value]
    return out


@check("model_u16_selection")
def _():
    if not MODEL:
        return {"error": "no shipped model (NST_TEST_MODEL is empty)"}
    img = new_image(64, 48, precision=Gimp.Precision.U16_NON_LINEAR)
    add_layer(img, "background", 64, 48, alpha=False, values=stripes(64, 48))
    layer = add_layer(img, "photo", 64, 48, values=pattern(64, 48))
    img.select_rectangle(Gimp.ChannelOps.REPLACE, 14, 10, 30, 22)
    sel = read(img.get_selection(), 0, 0, 64, 48, "Y float")
    source0 = read(layer)
    flat0 = read(img.duplicate().flatten())
    r = stylize(img, [layer], method="model", model=MODEL, **{"model-size": 1024, "composite": "none"})
    out = summary(r, img)
    out["precision"] = img.get_precision().value_nick
    inside = [i for i, v in enumerate(sel) if v == 1.0]
    outside = [i for i, v in enumerate(sel) if v == 0.0]
    out["n_inside"], out["n_outside"] = len(inside), len(outside)
    if r["new"]:
        new = r["new"][0]
        px = read(new)
        out["above_source"] = img.get_item_position(new) + 1 == img.get_item_position(layer)
        out["new_outside_max_diff"] = max(abs(px[i * 4 + c] - source0[i * 4 + c]) for i in outside for c in range(4))
        out["new_inside_mean_diff"] = sum(abs(px[i * 4 + c] - source0[i * 4 + c])
                                          for i in inside for c in range(3)) / (3 * len(inside))
        mask = read(new.get_mask(), 0, 0, 64, 48, "Y float") if new.get_mask() is not None else None
        out["mask_outside_max"] = None if mask is None else max(mask[i] for i in outside)
        out["mask_inside_min"] = None if mask is None else min(mask[i] for i in inside)
        off = [px[i * 4 + c] for i in inside for c in range(3) if abs(px[i * 4 + c] * 255 - round(px[i * 4 + c] * 255)) > 0.02]
        out["inside_off_8bit_grid_fraction"] = len(off) / (3.0 * len(inside))
    flat1 = read(img.duplicate().flatten())
    out["shown_outside_max_diff"] = max(abs(flat1[i * 4 + c] - flat0[i * 4 + c]) for i in outside for c in range(3))
    out["shown_inside_mean_diff"] = sum(abs(flat1[i * 4 + c] - flat0[i * 4 + c])
                                        for i in inside for c in range(3)) / (3 * len(inside))
    out["source_unchanged"] = diff(read(layer), source0, channels=(0, 1, 2, 3))["max"] == 0.0
    return out


@check("model_file")
def _():  # an .onnx file instead of a shipped name, with preserve-colors
    img = new_image(40, 32)
    layer = add_layer(img, "photo", 40, 32, values=pattern(40, 32))
    before = read(layer)
    r = stylize(img, [layer], method="model", model="file", **{
        "model-file": Gio.File.new_for_path(os.path.join(OUT, "my-model.onnx")), "preserve-colors": "luminance",
        "model-size": 0})
    out = summary(r)
    if r["new"]:
        out["diff_new_vs_source"] = diff(read(r["new"][0]), before)
    out["source_unchanged"] = diff(read(layer), before)["max"] == 0.0
    return out
