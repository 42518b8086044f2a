#!/usr/bin/env python3
"""Screenshot the plug-in's dialog in a real GIMP 3 (GUI under Xvfb, in the trixie chroot).

    sudo .venv/bin/python scripts/gimp_screenshot.py            # → docs/gimp-dialog.png
    sudo .venv/bin/python scripts/gimp_screenshot.py --method iterative  # → docs/gimp-dialog-iterative.png
    sudo .venv/bin/python scripts/gimp_screenshot.py --texture  # → docs/gimp-texture-dialog.png
    sudo .venv/bin/python scripts/gimp_screenshot.py --frames   # → docs/gimp-frames-dialog.png

Builds the chroot if needed (tests/gimp/gimpchroot.py), installs the plug-in into a throw-away
GIMP profile, opens a photo and a style image, starts Filters ▸ Artistic ▸ Neural Style
Transfer… interactively with the style image's layer chosen, and captures the dialog window.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gimp"))
sys.path.insert(0, str(REPO))
import gimpchroot  # noqa: E402

INSIDE = "/nst-out"

GIMP_SIDE = r'''
import os
from gi.repository import Gimp, Gio
out = "/nst-out"
def load(name):
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path(os.path.join(out, name)))
    Gimp.Display.new(img)
    return img
style_img = load("style.png")
img = load("photo.png")
if PROC == "plug-in-nst-frames":  # a 4-frame animation: the photo and three shifted copies
    base = img.get_layers()[0]
    base.set_name("Frame 1 (100ms)")
    for k in range(2, 5):
        layer = base.copy()
        img.insert_layer(layer, None, 0)
        layer.set_name("Frame %d (100ms)" % k)
        layer.set_offsets(6 * (k - 1), 0)
proc = Gimp.get_pdb().lookup_procedure(PROC)
cfg = proc.create_config()
cfg.set_property("run-mode", Gimp.RunMode.INTERACTIVE)
cfg.set_property("image", img)
cfg.set_core_object_array("drawables", img.get_selected_layers())
if PROC != "plug-in-nst-frames" or METHOD == "iterative":
    cfg.set_property("style-layer", style_img.get_layers()[0])
if METHOD:
    cfg.set_property("method", METHOD)
if REGIONS:
    cfg.set_property("regions", REGIONS)
if MODE == "progress":  # run it (no dialog) and let the shell side capture the progress bar
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("steps", 200)
    cfg.set_property("size", 160)
proc.run(cfg)
'''

SHELL_SIDE = r'''
set -u
export HOME=/nst-out/home XDG_CONFIG_HOME=/nst-out/config NST_BRIDGE_STATE_DIR=/nst-out/state
export DISPLAY=:77 LANG=C.UTF-8 NO_AT_BRIDGE=1 NST_GIMP_DEBUG=1
Xvfb :77 -screen 0 1400x1000x24 -nolisten tcp >/nst-out/xvfb.log 2>&1 &
XVFB=$!
sleep 1
gimp-3.0 -n -d -f -s --batch-interpreter=python-fu-eval -b "exec(open('/nst-out/gimp_side.py').read())" \
    >/nst-out/gimp.log 2>&1 &
GIMP=$!
if [ MODE = progress ]; then
    for i in $(seq 1 480); do
        grep -q "stylize started" /nst-out/state/server.log 2>/dev/null && break
        sleep 0.5
    done
    sleep 20
    import -window root /nst-out/dialog.png   # cropped to the window on the host side
    kill $GIMP 2>/dev/null; sleep 1; kill -9 $GIMP 2>/dev/null
    kill $XVFB
    exit 0
fi
id=""
for i in $(seq 1 240); do
    id=$(xdotool search --name "^TITLE$" 2>/dev/null | tail -1)
    [ -n "$id" ] && break
    sleep 0.5
done
if [ -z "$id" ]; then
    echo "the dialog did not appear" >&2
    import -window root /nst-out/screen.png
    kill $GIMP $XVFB; exit 1
fi
sleep 8   # let previews and the layer chooser's thumbnail render
xdotool windowactivate "$id" 2>/dev/null || true
import -window "$id" /nst-out/dialog.png
import -window root /nst-out/screen.png
kill $GIMP 2>/dev/null; sleep 1; kill -9 $GIMP 2>/dev/null
kill $XVFB
exit 0
'''


def _stop_server(state: Path) -> None:
    """Stop the engine server the plug-in started (the dialog pre-starts one)."""
    import json
    import signal
    import time

    for _ in range(20):  # it may still be coming up
        try:
            os.kill(json.loads((state / "server.json").read_text())["pid"], signal.SIGTERM)
            return
        except (OSError, ValueError, KeyError):
            time.sleep(0.5)


def demo_images(out: Path) -> None:
    from PIL import Image
    import skimage

    data = Path(skimage.__file__).parent / "data"
    Image.open(data / "coffee.png").convert("RGB").resize((400, 267)).save(out / "photo.png")
    # A vivid swirl as the style image (no painting ships with the test data).
    import numpy as np

    y, x = np.mgrid[-1:1:300j, -1:1:300j]
    r, a = np.hypot(x, y), np.arctan2(y, x)
    t = a + 6 * r + 0.6 * np.sin(9 * r)
    rgb = np.stack([0.5 + 0.5 * np.sin(t + k) for k in (0.0, 2.1, 4.2)], axis=2) * (0.55 + 0.45 * np.cos(20 * r) ** 2)[..., None]
    Image.fromarray((rgb.clip(0, 1) * 255).astype(np.uint8)).save(out / "style.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texture", action="store_true", help="the Neural Texture dialog instead")
    ap.add_argument("--frames", action="store_true", help="the animation (frames) dialog instead")
    ap.add_argument("--progress", action="store_true",
                    help="GIMP's window while a run is in progress (docs/gimp-progress.png)")
    ap.add_argument("--method", choices=("iterative", "model"),
                    help="open the stylize dialog on this method, as after its first use (default: what a first "
                         "use shows: Model without CUDA, else Iterative)")
    ap.add_argument("--regions", type=int, default=0, help="show this many region rows (with --method iterative)")
    ap.add_argument("--output", type=Path, help="PNG to write (default: docs/gimp-dialog.png)")
    ap.add_argument("--keep-style", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    proc, title = ("plug-in-nst-texture", "Neural Texture") if args.texture else \
        ("plug-in-nst-frames", r"Neural Style Transfer \(frames\)") if args.frames else \
        ("plug-in-nst-stylize", "Neural Style Transfer")
    mode = "progress" if args.progress else "dialog"
    default = "gimp-progress.png" if args.progress else "gimp-texture-dialog.png" if args.texture else \
        "gimp-frames-dialog.png" if args.frames else \
        "gimp-dialog-iterative.png" if args.method == "iterative" else "gimp-dialog.png"
    output = args.output or REPO / "docs" / default
    from nst_engine import gimp_install

    root = gimpchroot.build()
    with tempfile.TemporaryDirectory(prefix="nst-shot-") as tmp:
        out = Path(tmp)
        os.chmod(out, 0o755)
        demo_images(out)
        gimp_install.install(out / "config" / "GIMP" / "3.0", sys.executable)
        if args.method:  # the dialog has been confirmed before: it shows the method it is given
            (out / "config" / "GIMP" / "3.0" / "plug-ins" / "nst-gimp" / "nst-gimp-dialog.json").write_text(
                '{"confirmed": true}\n')
        # a roomy main window, so the status bar has space for the progress text
        (out / "config" / "GIMP" / "3.0" / "sessionrc").write_text(
            '(session-info "toplevel"\n    (factory-entry "gimp-single-image-window")\n'
            '    (position 0 0)\n    (size 1280 820))\n')
        (out / "gimp_side.py").write_text(f"PROC = {proc!r}\nMODE = {mode!r}\nMETHOD = {args.method!r}\n"
                                          f"REGIONS = {args.regions}\n" + GIMP_SIDE)
        (out / "shot.sh").write_text(SHELL_SIDE.replace("TITLE", title).replace("MODE", mode))
        try:
            r = gimpchroot.run(["sh", f"{INSIDE}/shot.sh"], root=root, extra_binds=[(str(out), INSIDE, False)],
                               timeout=300)
        finally:
            _stop_server(out / "state")
        if args.keep_style:
            shutil.copy(out / "style.png", args.keep_style)
        if os.environ.get("NST_SHOT_DEBUG"):
            print((out / "gimp.log").read_text(errors="replace")[-5000:], file=sys.stderr)
        if r.returncode != 0 or not (out / "dialog.png").exists():
            print((out / "gimp.log").read_text(errors="replace")[-3000:] if (out / "gimp.log").exists() else "",
                  file=sys.stderr)
            if (out / "screen.png").exists():
                shutil.copy(out / "screen.png", output.with_name("gimp-screenshot-failed.png"))
            print("screenshot failed", file=sys.stderr)
            return 1
        output.parent.mkdir(parents=True, exist_ok=True)
        if mode == "progress":  # no window manager: crop the screen to what GIMP drew
            from PIL import Image

            with Image.open(out / "dialog.png") as im:
                im.convert("RGB").crop(im.convert("L").point(lambda v: 255 if v > 8 else 0).getbbox()).save(output)
        else:
            shutil.copy(out / "dialog.png", output)
    print(output)
    return 0


if __name__ == "__main__":
    sys.exit(main())
