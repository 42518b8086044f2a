# Runs inside GIMP 3, executed by driver.py in its namespace (check, read, diff, new_image, add_layer, ...):
# Filters ▸ Animation ▸ Neural Style Transfer (frames) through the PDB, with the shipped model
# starry-night. tests/test_gimp.py makes the assertions. GIMP's Python: gi + stdlib only.
FRAME_W, FRAME_H, PAN = 64, 48, 3  # each frame's window moves PAN px right over a wider pattern


def pan_values(t, w=FRAME_W, h=FRAME_H):
    """Frame ``t`` of a pan over a small pattern (a checker of 6-px cells, colour ramps): frame t's
    pixel x is frame t-1's pixel x + PAN."""
    v = []
    for y in range(h):
        for x in range(w):
            gx = x + t * PAN
            on = ((gx // 6) + (y // 6)) % 2
            v += [0.15 + 0.7 * on, 0.2 + 0.6 * (gx % 37) / 36.0, 0.3 + 0.5 * (y / max(1, h - 1)), 1.0]
    return v


def animation(n=4, names=None):
    """An image whose layers are ``n`` frames of the pan, frame 1 at the bottom (GIMP's playback order)."""
    img = new_image(FRAME_W, FRAME_H)
    layers = []
    for t in range(n):
        name = names[t] if names else "Frame %d (100ms)" % (t + 1)
        layers.append(add_layer(img, name, FRAME_W, FRAME_H, values=pan_values(t)))  # each inserted on top
    return img, layers


def run_frames(img, **props):
    """plug-in-nst-frames on ``img``; its status, message, the returned image and the images it added."""
    proc = pdb.lookup_procedure("plug-in-nst-frames")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    props = dict({"method": "model", "model": "starry-night"}, **props)
    for k, v in props.items():
        cfg.set_property(k, v)
    before = {i.get_id() for i in Gimp.get_images()}
    t0 = time.monotonic()
    res = proc.run(cfg)
    took = time.monotonic() - t0
    status = res.index(0)
    ok = status == Gimp.PDBStatusType.SUCCESS
    returned = res.index(1) if ok and res.length() > 1 else None
    added = [i for i in Gimp.get_images() if i.get_id() not in before]
    return {"status": status.value_nick, "message": None if ok or res.length() < 2 else res.index(1),
            "seconds": round(took, 3), "image": returned, "added": added}


def warp_error(a, b, w=FRAME_W, h=FRAME_H):
    """Mean |a(x) - b(x + PAN)| over RGB where both are inside: frame t against frame t-1 moved by the known pan."""
    total, n = 0.0, 0
    for y in range(h):
        for x in range(w - PAN):
            i, j = (y * w + x) * 4, (y * w + x + PAN) * 4
            total += abs(a[i] - b[j]) + abs(a[i + 1] - b[j + 1]) + abs(a[i + 2] - b[j + 2])
            n += 3
    return total / n


def frames_summary(r, sources):
    out = {k: r[k] for k in ("status", "message", "seconds")}
    out["added_images"] = len(r["added"])
    img = r["image"]
    out["returned_is_added"] = img is not None and [i.get_id() for i in r["added"]] == [img.get_id()]
    if img is None:
        return out, []
    layers = list(reversed(img.get_layers()))  # playback order
    out.update(canvas=[img.get_width(), img.get_height()], base=img.get_base_type().value_nick,
               new_layers=[describe(layer) for layer in layers])
    pixels = [read(layer) for layer in layers]
    if len(pixels) == len(sources):
        out["vs_source"] = [diff(p, s)["mean"] for p, s in zip(pixels, sources, strict=True)]
    return out, pixels


def cancelled_frames():
    """GIMP's Cancel kills the plug-in: do so while the engine works on the frames (iterative, many
    steps); no image may be added, the engine stops."""
    img, layers = animation(4)
    sources = [read(layer) for layer in layers]
    mark = _log_size()
    info = {}

    def kill_plugin():
        if _wait_log(mark, "frames started", 60) is None:
            info["error"] = "the job never started"
            return
        time.sleep(1.0)
        pids = _plugin_pids()
        t_kill = time.monotonic()
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        t_stop = _wait_log(mark, "stopped (client gone)", 20)
        info.update(killed_plugin_pids=pids, engine_stop_s=None if t_stop is None else round(t_stop - t_kill, 3))

    th = threading.Thread(target=kill_plugin, daemon=True)
    th.start()
    out, _ = frames_summary(run_frames(img, method="iterative", steps=2000, size=64, **{"style-layer": STYLE}), [])
    th.join(30)
    out.update(info)
    out["source_unchanged"] = all(diff(read(layer), s)["max"] == 0.0 for layer, s in zip(layers, sources, strict=True))
    return out


@check("frames")
def _():
    names = ["Frame 1 (100ms)", "Frame 2 (100ms) (combine)", "Frame 3 (100ms)", "Frame 4 (250ms) (replace)"]
    img, layers = animation(4, names)
    sources = [read(layer) for layer in layers]
    layers_before = [describe(layer) for layer in img.get_layers()]
    out = {"source_layers": layers_before}
    temporal, pix_t = frames_summary(run_frames(img, consistency="temporal"), sources)
    none, pix_n = frames_summary(run_frames(img, consistency="none"), sources)
    out.update(temporal=temporal, none=none)
    out["source_unchanged"] = (all(diff(read(layer), s)["max"] == 0.0 for layer, s in zip(layers, sources, strict=True))
                               and [describe(layer) for layer in img.get_layers()] == layers_before)
    out["source_warp_error"] = [warp_error(sources[t], sources[t - 1]) for t in range(1, 4)]
    if len(pix_t) == 4 and len(pix_n) == 4:
        out["warp_error_temporal"] = [warp_error(pix_t[t], pix_t[t - 1]) for t in range(1, 4)]
        out["warp_error_none"] = [warp_error(pix_n[t], pix_n[t - 1]) for t in range(1, 4)]
        out["temporal_vs_none"] = [diff(a, b)["mean"] for a, b in zip(pix_t, pix_n, strict=True)]
    # Refine steps (model + temporal): the later frames change, the first does not.
    refined, pix_r = frames_summary(run_frames(img, consistency="temporal", **{"refine-steps": 2}), sources)
    out["refined"] = refined
    if len(pix_t) == 4 and len(pix_r) == 4:
        out["refined_vs_temporal"] = [diff(a, b)["mean"] for a, b in zip(pix_r, pix_t, strict=True)]
    # Frames of different sizes and offsets: each stylized at its own size, placed like its source.
    mixed = new_image(FRAME_W, FRAME_H)
    add_layer(mixed, "big 1", FRAME_W, FRAME_H, values=pan_values(0))
    add_layer(mixed, "small", 32, 24, ox=10, oy=8, values=pan_values(1, 32, 24))
    add_layer(mixed, "big 2", FRAME_W, FRAME_H, values=pan_values(2))
    out["mixed"], _ = frames_summary(run_frames(mixed), [])
    # An indexed animation (as a GIF opens): the result is RGB.
    gif, _ = animation(2)
    try:
        gif.convert_indexed(Gimp.ConvertDitherType.NONE, Gimp.ConvertPaletteType.GENERATE, 64, False, False, "")
        out["indexed"], _ = frames_summary(run_frames(gif), [])
        out["indexed"]["source_base"] = gif.get_base_type().value_nick
    except Exception:  # the conversion call of this GIMP: reported, the other checks stand
        out["indexed"] = {"exception": traceback.format_exc()}
    # Refused with a message; no image added.
    one, _ = animation(1)
    out["one_layer"], _ = frames_summary(run_frames(one), [])
    grouped, _ = animation(2)
    group = Gimp.GroupLayer.new(grouped, "a group")
    grouped.insert_layer(group, None, 0)
    out["group"], _ = frames_summary(run_frames(grouped), [])
    out["no_style"], _ = frames_summary(run_frames(animation(2)[0], method="iterative"), [])
    out["cancel"] = cancelled_frames()
    return out
