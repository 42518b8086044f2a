"""The plug-in in a real GIMP 3 (Debian trixie chroot, gimp-console), driven through the PDB.

One GIMP process runs every check (tests/gimp/driver.py) against the plug-in installed by
``nst_engine.gimp_install`` and the real engine; the tests below assert on what it recorded.
The chroot is built on first use (root and network needed, ~2 minutes, ~950 MB in
``.gimp-chroot/``). Without Linux or root these tests skip, saying why; in CI (``CI=true``, which
CI runners set) a skip would hide a broken plug-in, so there a missing prerequisite is a failure
(`gimpchroot.gimp_tests_verdict`). NST_SKIP_GIMP=1 skips them anywhere.

    sudo .venv/bin/python -m pytest -m gimp tests/test_gimp.py
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "gimp"))
import gimpchroot  # noqa: E402

pytestmark = pytest.mark.gimp
GIMP_TIMEOUT = 300
# NST_GIMP_ONLY=regions,regions_errors: the driver runs only these checks (a quicker session while
# working on one feature); the tests of the others skip.
ONLY = os.environ.get("NST_GIMP_ONLY", "")
OUT_INSIDE = "/nst-out"
PLUGIN_INSIDE = f"{OUT_INSIDE}/config/GIMP/3.0/plug-ins/nst-gimp"


def _prerequisites() -> None:
    """Skip (with the reason) where GIMP cannot run; in CI (CI=true) fail instead."""
    verdict = gimpchroot.gimp_tests_verdict(os.environ, sys.platform, getattr(os, "geteuid", lambda: None)(),
                                            shutil.which("unshare"))
    if verdict is not None:
        action, why = verdict
        if action == "fail":
            pytest.fail(why)
        pytest.skip(why)


def _stop_server(state_dir: Path) -> None:
    try:
        pid = json.loads((state_dir / "server.json").read_text())["pid"]
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError, KeyError):
        pass


@pytest.fixture(scope="session")
def gimp(tmp_path_factory):
    """Run the driver in GIMP once; returns its results (dict of check name → what it saw)."""
    _prerequisites()
    from PIL import Image

    from nst_engine import gimp_install

    t0 = time.monotonic()
    root = gimpchroot.build()
    build_s = time.monotonic() - t0
    out = tmp_path_factory.mktemp("gimp")
    os.chmod(out, 0o755)
    # A style image file for style-file (diagonal stripes).
    px = [((200, 40, 40) if ((x + y) // 4) % 2 else (30, 30, 200)) for y in range(32) for x in range(32)]
    im = Image.new("RGB", (32, 32))
    im.putdata(px)
    im.save(out / "style.png")
    # A second style file, unlike the stripes (big yellow dots on violet), for a region.
    dots = [((240, 220, 40) if (x % 12 - 6) ** 2 + (y % 12 - 6) ** 2 < 16 else (90, 30, 120))
            for y in range(36) for x in range(36)]
    im = Image.new("RGB", (36, 36))
    im.putdata(dots)
    im.save(out / "dots.png")
    from nst_engine.models import model_catalog

    models = [e.name for e in model_catalog()]
    if models:  # the first shipped model, also as a file of its own for Model "file"
        shutil.copy(model_catalog()[0].path, out / "my-model.onnx")
    saved_cache = os.environ.get("NST_CACHE_DIR")
    os.environ["NST_CACHE_DIR"] = str(out / "cache")  # the step is timed afresh, not into the user's cache
    try:
        gimp_install.install(out / "config" / "GIMP" / "3.0", sys.executable)
    finally:
        if saved_cache is None:
            os.environ.pop("NST_CACHE_DIR", None)
        else:
            os.environ["NST_CACHE_DIR"] = saved_cache
    env = {
        "NST_TEST_MODEL": models[0] if models else "",
        "HOME": f"{OUT_INSIDE}/home", "XDG_CONFIG_HOME": f"{OUT_INSIDE}/config",
        "NST_BRIDGE_STATE_DIR": f"{OUT_INSIDE}/state", "NST_GIMP_TIMING_LOG": f"{OUT_INSIDE}/timing.jsonl",
        "NST_TEST_OUT": OUT_INSIDE, "NST_TEST_PLUGIN_DIR": PLUGIN_INSIDE, "LANG": "C.UTF-8",
        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin",
        "NST_GIMP_ONLY": ONLY,
    }
    driver = HERE / "gimp" / "driver.py"
    cmd = ["env", "-i", *(f"{k}={v}" for k, v in env.items()), "gimp-console-3.0", "-i", "-d", "-f", "--quit",
           "--batch-interpreter=python-fu-eval", "-b",
           f"DRIVER_DIR = {str(driver.parent)!r}; exec(open({str(driver)!r}).read())"]
    t1 = time.monotonic()
    try:
        proc = gimpchroot.run(cmd, root=root, extra_binds=[(str(out), OUT_INSIDE, False)],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=GIMP_TIMEOUT)
        log = proc.stdout.decode("utf-8", "replace")
    except subprocess.TimeoutExpired as e:
        log = (e.stdout or b"").decode("utf-8", "replace") + f"\n[test] GIMP timed out after {GIMP_TIMEOUT} s"
    finally:
        _stop_server(out / "state")
    gimp_s = time.monotonic() - t1
    (out / "gimp.log").write_text(log)
    try:
        results = json.loads((out / "results.json").read_text())
    except (OSError, ValueError):
        pytest.fail(f"the GIMP driver wrote no results; GIMP output:\n{log[-4000:]}")
    results["_meta"] = {"build_s": build_s, "gimp_s": gimp_s, "out": str(out), "log_tail": log[-3000:],
                        "models": models, "spec": json.loads((out / "config" / "GIMP" / "3.0" / "plug-ins" / "nst-gimp"
                                                               / "nst-gimp-args.json").read_text())}
    server_log = out / "state" / "server.log"
    results["_meta"]["server_log"] = server_log.read_text() if server_log.exists() else ""
    print(f"\n[gimp] chroot ready in {build_s:.1f} s; GIMP session with all checks {gimp_s:.1f} s; output in {out}")
    for name, r in results.items():
        if isinstance(r, dict) and "check_s" in r:
            print(f"[gimp]   {name}: {r['check_s']:.2f} s")
    return results


def _check(gimp, name):
    if ONLY and name not in ONLY.split(","):
        pytest.skip(f"NST_GIMP_ONLY={ONLY}")
    r = gimp.get(name)
    assert r is not None, f"check {name} did not run; GIMP output:\n{gimp['_meta']['log_tail']}"
    assert "exception" not in r, r["exception"]
    return r


def _ok_one_layer(r, size, offsets):
    assert r["status"] == "success", r.get("message")
    assert len(r["new_layers"]) == 1, r
    new = r["new_layers"][0]
    assert new["size"] == list(size) and new["offsets"] == list(offsets)
    assert new["name"] == "Stripes (iterative)"
    assert r["source_unchanged"]
    return new


def test_whole_layer(gimp):
    r = _check(gimp, "whole_layer_cold")
    new = _ok_one_layer(r, (64, 48), (0, 0))
    assert r["above_source"]
    assert r["diff_new_vs_source"]["mean"] > 0.01  # it did something
    assert new["mode"] == "overlay" and abs(new["opacity"] - 80.0) < 1e-6
    assert not new["has_mask"]  # no selection, no mask


def test_second_call_is_warm(gimp):
    cold = _check(gimp, "whole_layer_cold")["timing"][0]
    warm = _check(gimp, "whole_layer_warm")["timing"][0]
    print(f"\n[gimp] first call: {cold['wall_s']:.2f} s (server started: {cold['spawned']}, "
          f"connect {cold['connect_s']:.2f} s, waited for engine load {cold['server']['wait_s']:.2f} s, "
          f"engine {cold['server']['engine_s']:.2f} s)")
    print(f"[gimp] second call: {warm['wall_s']:.2f} s (server started: {warm['spawned']}, "
          f"connect {warm['connect_s']:.3f} s, waited {warm['server']['wait_s']:.3f} s, "
          f"engine {warm['server']['engine_s']:.2f} s)")
    assert cold["spawned"] and not warm["spawned"]
    assert warm["server_pid"] == cold["server_pid"]
    # start-up = finding/starting the server + waiting for it to load the engine
    cold_startup = cold["connect_s"] + cold["server"]["wait_s"]
    warm_startup = warm["connect_s"] + warm["server"]["wait_s"]
    print(f"[gimp] start-up cost: first call {cold_startup:.2f} s, second call {warm_startup:.3f} s")
    assert warm_startup < 0.5 and warm_startup < cold_startup


def test_selection_only_changes_inside(gimp):
    r = _check(gimp, "selection")
    assert r["status"] == "success", r.get("message")
    assert len(r["new_layers"]) == 1 and r["new_layers"][0]["has_mask"]
    assert r["n_outside"] > 500 and r["n_inside"] > 300
    assert r["outside_max_diff"] == 0.0  # pixels outside the selection equal the original
    assert r["inside_mean_diff"] > 0.01
    assert r["mask_outside_max"] == 0.0 and r["mask_inside_min"] > 0.0
    assert r["source_unchanged"]


def test_grayscale_image(gimp):
    r = _check(gimp, "grayscale")
    new = _ok_one_layer(r, (48, 40), (0, 0))
    assert r["image_is_gray"] and new["is_gray"]
    assert r["diff_new_vs_source"]["mean"] > 0.005


def test_high_bit_depth(gimp):
    r = _check(gimp, "high_bit_depth")
    _ok_one_layer(r, (48, 40), (0, 0))
    assert r["precision"] == "u16-non-linear"
    assert r["off_8bit_grid_fraction"] > 0.5  # written at 16 bit, not through 8 bit


def test_offsets_and_alpha(gimp):
    r = _check(gimp, "offsets_alpha")
    new = _ok_one_layer(r, (40, 30), (-10, 12))
    assert new["has_alpha"] and r["above_source"]
    assert r["alpha_max_diff"] < 1e-3  # the source's alpha is kept
    assert r["diff_new_vs_source"]["mean"] > 0.01


def test_layer_larger_than_canvas(gimp):
    r = _check(gimp, "larger_than_canvas")
    _ok_one_layer(r, (80, 60), (-16, -10))
    assert r["diff_new_vs_source"]["mean"] > 0.01


def test_style_file_and_two_layers(gimp):
    r = _check(gimp, "style_file_two_layers")
    assert r["status"] == "success", r.get("message")
    assert [layer["name"] for layer in r["new_layers"]] == ["style (iterative)", "style (iterative) #1"] or \
        len(r["new_layers"]) == 2
    # each new layer sits right above its source: b' b a' a
    assert [n.split(" #")[0] for n in r["position"]] == ["style (iterative)", "b", "style (iterative)", "a"]
    assert sorted(tuple(layer["offsets"]) for layer in r["new_layers"]) == [(0, 0), (4, 2)]


def test_texture(gimp):
    r = _check(gimp, "texture")
    assert r["status"] == "success", r.get("message")
    assert len(r["new_layers"]) == 1 and r["new_layers"][0]["size"] == [56, 40]
    assert r["scaled_status"] == "success" and r["scaled_vs_plain"] > 1e-3, r  # Stroke scale 2


def test_texture_in_selection(gimp):
    r = _check(gimp, "texture_selection")
    assert r["status"] == "success", r.get("message")
    x1, y1, x2, y2 = r["bounds"]
    new = r["new_layers"][0]
    assert new["size"] == [x2 - x1, y2 - y1] and new["offsets"] == [x1, y1] and new["has_mask"]
    assert new["name"] == "Texture: style"


def test_indexed_image_is_refused_clearly(gimp):
    r = _check(gimp, "indexed")
    assert r["status"] == "execution-error" and "indexed" in r["message"] and not r["new_layers"]


def test_model_file_missing_is_a_clear_message(gimp):
    r = _check(gimp, "model_method")
    assert r["status"] == "execution-error" and "Model file" in r["message"] and not r["new_layers"]


def _first_model(gimp):
    models = gimp["_meta"]["models"]
    assert models, ("no model ships in nst_engine/data/models (nst_engine.models.model_catalog() is empty): "
                    "the model method cannot be tested")
    return models[0]


def test_shipped_models_are_choices(gimp):
    _first_model(gimp)
    r = _check(gimp, "model_choices")
    assert r["nicks"] == gimp["_meta"]["models"] + ["file"]
    assert r["default"] == ("starry-night" if "starry-night" in r["nicks"] else r["nicks"][0])
    assert r["model_size"] == [0, 20000, 1024]


def test_shipped_model_on_16_bit_selection(gimp):
    from nst_engine.models import model_catalog

    name = _first_model(gimp)
    r = _check(gimp, "model_u16_selection")
    assert r["status"] == "success", r.get("message")
    assert r["precision"] == "u16-non-linear"
    assert len(r["new_layers"]) == 1 and r["above_source"], r
    painting = model_catalog()[0].painting
    assert r["new_layers"][0]["name"] == painting.split(" (")[0] + " (model)", (name, r["new_layers"])
    assert r["new_layers"][0]["has_mask"] and r["n_inside"] == 30 * 22 and r["n_outside"] == 64 * 48 - 30 * 22
    assert r["new_outside_max_diff"] == 0.0  # the new layer outside the selection is the original, bit for bit
    assert r["mask_outside_max"] == 0.0 and r["mask_inside_min"] == 1.0
    assert r["new_inside_mean_diff"] > 0.01 and r["shown_inside_mean_diff"] > 0.01  # the model painted inside
    assert r["shown_outside_max_diff"] == 0.0  # what GIMP shows outside the selection is unchanged
    assert r["inside_off_8bit_grid_fraction"] > 0.5  # written at 16 bit, not through 8 bit
    assert r["source_unchanged"]


def test_model_from_onnx_file(gimp):
    _first_model(gimp)
    r = _check(gimp, "model_file")
    assert r["status"] == "success", r.get("message")
    assert [layer["name"] for layer in r["new_layers"]] == ["my-model (model)"]
    assert r["diff_new_vs_source"]["mean"] > 0.01 and r["source_unchanged"]


def test_cancel_stops_engine_and_leaves_image(gimp):
    r = _check(gimp, "cancel")
    assert r.get("killed_plugin_pids"), r
    assert r["status"] != "success" and not r["new_layers"]
    assert r["source_unchanged"] and r["layers_unchanged"]
    assert r["engine_stop_s"] is not None and r["engine_stop_s"] < 5.0, r
    print(f"\n[gimp] engine stopped {r['engine_stop_s']:.2f} s after the plug-in was killed")


def test_engine_killed_mid_run(gimp):
    r = _check(gimp, "engine_killed")
    assert r.get("killed_engine_pid"), r
    assert r["status"] == "execution-error" and "stopped unexpectedly" in r["message"], r
    assert not r["new_layers"] and r["source_unchanged"] and r["layers_unchanged"]


@pytest.mark.parametrize("name,text", [("config_missing", "gimp-install"), ("engine_python_missing", "not found")])
def test_broken_engine_config(gimp, name, text):
    r = _check(gimp, name)
    assert r["status"] == "execution-error" and text in r["message"], r
    assert "gimp-install" in r["message"]
    assert not r["new_layers"] and r["source_unchanged"]


def test_flatpak_without_a_server_names_the_command(gimp):
    """As installed for GIMP from Flatpak, the plug-in never starts the engine: with none running it
    says which command to run outside GIMP."""
    r = _check(gimp, "flatpak_no_server")
    assert r["status"] == "execution-error" and not r["new_layers"] and r["source_unchanged"], r
    assert "Flatpak" in r["message"] and "outside GIMP" in r["message"], r["message"]
    assert r["command"] == f"{Path(sys.executable).parent / 'nst'} serve --state-dir {OUT_INSIDE}/state", r["message"]
    assert not r["server_started"]


def test_flatpak_uses_the_server_started_by_that_command(gimp):
    """The command from that message, run outside the plug-in, serves the next call; SIGTERM ends it cleanly."""
    r = _check(gimp, "flatpak_served")
    assert r["state_pid"] == r["command_pid"] and r["exit_before_call"] is None, r
    assert r["status"] == "success", r.get("message")
    assert len(r["new_layers"]) == 1 and r["source_unchanged"]
    assert r["timing"] and r["timing"][0]["server_pid"] == r["command_pid"] and not r["timing"][0]["spawned"], r
    assert r["state_pid_after"] == r["command_pid"]
    assert r["exit_code"] == 0 and not r["state_left"], r  # the state file goes with the server


def test_install_timed_an_optimizer_step(gimp):
    """The dialog's estimate: nst gimp-install measured a step here and wrote its cost into the spec."""
    import torch

    spec = gimp["_meta"]["spec"]
    est = spec["estimate"]
    assert est and est["a"] >= 0 and est["b"] > 0 and est["device"] == ("cuda" if torch.cuda.is_available() else "cpu")
    method = {a["name"]: a for a in spec["procedures"]["plug-in-nst-stylize"]}["method"]
    assert method["default"] == "iterative"
    assert method["dialog_default"] == ("iterative" if torch.cuda.is_available() else "model")


def test_regions_from_a_channel_and_a_layer_mask(gimp):
    """Two regions (a saved channel; a hidden layer's mask at an offset), two styles (a layer, a
    file), inside a selection, the rest keeping the photo: each region differs from a run with the
    one Stripes style; outside the selection and outside every region nothing changes."""
    r = _check(gimp, "regions")
    assert r["status"] == "success", r.get("message")
    assert len(r["new_layers"]) == 1 and r["new_layers"][0]["has_mask"], r
    assert r["new_layers"][0]["name"] == "Checks + dots (iterative)"  # the Stripes style layer is not used
    assert r["position"] == ["matte", "Checks + dots (iterative)", "photo"]  # right above its source
    assert r["n_left"] == 16 * 32 and r["n_right"] == 16 * 32 and r["n_between"] == 8 * 32
    assert r["shown_untouched_max_diff"] == 0.0  # what GIMP shows there is the original, bit for bit
    assert r["new_untouched_max_diff"] == 0.0 and r["mask_untouched_max"] == 0.0
    assert r["mask_left_min"] > 0.0 and r["mask_right_min"] > 0.0
    assert r["left_vs_source"] > 0.01 and r["right_vs_source"] > 0.01  # each region was painted
    assert r["single_status"] == "success" and r["single_vs_source"] > 0.01
    assert r["left_vs_single"] > 0.01 and r["right_vs_single"] > 0.01, r  # in its own style, not the Stripes
    assert r["source_unchanged"] and r["channels_after"] == ["left"]
    assert r["weighted_status"] == "success", r  # Region 1 weight 0: region 1 stays near the photo
    assert r["weighted_left_vs_source"] < 0.5 * r["left_vs_source"], r


@pytest.mark.parametrize("case,words", [
    ("no_style", "Region 1 has no style"), ("no_channel", "Region 2 has no channel"),
    ("model", "Iterative method only"), ("other_image", "belongs to another image")])
def test_regions_errors_are_clear_messages(gimp, case, words):
    r = _check(gimp, "regions_errors")[case]
    assert r["status"] == "execution-error" and words in r["message"], r
    assert not r["new_layers"] and r["source_unchanged"]


def test_frames_animation_into_a_new_image(gimp):
    """A 4-frame pan (64x48, names with timings) through plug-in-nst-frames with starry-night: a new
    image (returned, no other added) with the same layers, each stylized; the original untouched;
    temporal consistency changes the result and lowers the warping error along the known pan."""
    r = _check(gimp, "frames")
    assert r["source_unchanged"]
    for run in ("temporal", "none"):
        t = r[run]
        assert t["status"] == "success", t.get("message")
        assert t["added_images"] == 1 and t["returned_is_added"] and t["canvas"] == [64, 48] and t["base"] == "rgb"
        assert [(n["name"], n["size"], n["offsets"]) for n in t["new_layers"]] == \
            [(s["name"], s["size"], s["offsets"]) for s in reversed(r["source_layers"])]
        assert t["new_layers"][1]["name"] == "Frame 2 (100ms) (combine)" and min(t["vs_source"]) > 0.02, t
    assert r["temporal_vs_none"][0] < 1e-6 < min(r["temporal_vs_none"][1:]), r["temporal_vs_none"]
    assert sum(r["warp_error_temporal"]) < sum(r["warp_error_none"]), (r["warp_error_temporal"], r["warp_error_none"])
    assert r["refined"]["status"] == "success", r["refined"].get("message")  # Refine steps 2
    assert r["refined_vs_temporal"][0] < 1e-6 < min(r["refined_vs_temporal"][1:]), r["refined_vs_temporal"]
    mixed = r["mixed"]
    assert mixed["status"] == "success", mixed.get("message")
    assert [(n["size"], n["offsets"]) for n in mixed["new_layers"]] == [([64, 48], [0, 0]), ([32, 24], [10, 8]),
                                                                        ([64, 48], [0, 0])]
    assert r["indexed"].get("source_base") == "indexed" and r["indexed"]["status"] == "success", r["indexed"]
    assert r["indexed"]["base"] == "rgb" and len(r["indexed"]["new_layers"]) == 2


@pytest.mark.parametrize("case,words", [("one_layer", "needs at least 2 layers (frames)"), ("group", "Layer group"),
                                        ("no_style", "Choose a style")])
def test_frames_errors_are_clear_messages(gimp, case, words):
    r = _check(gimp, "frames")[case]
    assert r["status"] == "execution-error" and words in r["message"], r
    assert r["added_images"] == 0  # nothing half-done left open


def test_frames_cancel_leaves_no_image_and_stops_the_engine(gimp):
    r = _check(gimp, "frames")["cancel"]
    assert r.get("killed_plugin_pids") and r["status"] != "success", r
    assert r["added_images"] == 0 and r["source_unchanged"]
    assert r["engine_stop_s"] is not None and r["engine_stop_s"] < 5.0, r


def test_driver_finished(gimp):
    assert gimp.get("done"), gimp["_meta"]["log_tail"]
