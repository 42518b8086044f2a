"""The GIMP bridge without GIMP: wire format, server/client, jobs (the spec and gimp-install: test_gimp_install.py)."""
from __future__ import annotations

import json
import os
import socket
import stat
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from nst_engine.bridge import client, jobs, protocol
from nst_engine.bridge.server import Server

REPO = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# protocol
# --------------------------------------------------------------------------------------------

def test_protocol_roundtrip_and_garbage():
    a, b = socket.socketpair()
    with a, b:
        img = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
        protocol.send(a, {"op": "x", "n": 1}, {"img": (list(img.shape), img), "empty": ([0], b"")})
        header, arrays = protocol.recv(b)
        assert header["op"] == "x" and header["n"] == 1
        shape, data = arrays["img"]
        assert shape == [2, 3, 4]
        np.testing.assert_array_equal(np.frombuffer(data, "<f4").reshape(shape), img)
        assert arrays["empty"] == ([0], bytearray())
        # wrong magic
        a.sendall(b"XXXX\x00\x00\x00\x02{}")
        with pytest.raises(protocol.ProtocolError, match="magic"):
            protocol.recv(b)
    # truncated payload, then clean close
    a, b = socket.socketpair()
    with b:
        chunks = protocol.pack({"op": "y"}, {"img": ([4], np.zeros(4, np.float32))})
        a.sendall(chunks[0] + bytes(chunks[1])[:7])
        a.close()
        with pytest.raises(protocol.ProtocolError, match="mid-message"):
            protocol.recv(b)
    a, b = socket.socketpair()
    with b:
        a.close()
        with pytest.raises(protocol.ConnectionClosed):
            protocol.recv(b)
    with pytest.raises(protocol.ProtocolError, match="do not match"):
        protocol.pack({}, {"x": ([3], b"\x00" * 8)})


def test_protocol_rejects_bad_descriptions():
    for header in ({"arrays": [{"name": "a", "shape": [-1], "dtype": "<f4"}]},
                   {"arrays": [{"name": "a", "shape": [2], "dtype": "<f8"}]},
                   {"arrays": "nope"}):
        a, b = socket.socketpair()
        with a, b:
            raw = json.dumps(header).encode()
            a.sendall(protocol.MAGIC + len(raw).to_bytes(4, "big") + raw)
            with pytest.raises(protocol.ProtocolError):
                protocol.recv(b)


# --------------------------------------------------------------------------------------------
# server + client with trivial handlers (no engine)
# --------------------------------------------------------------------------------------------

def _invert(params, arrays, progress, stop):
    shape, data = arrays["content"]
    img = np.frombuffer(data, "<f4").reshape(shape)
    for step in range(1, 4):
        progress({"stage": "invert", "step": step, "total": 3, "loss": float("nan")})
    out = np.ascontiguousarray(1.0 - img)
    return {"note": params.get("note", "")}, {"image": (list(out.shape), out)}


def _endless(params, arrays, progress, stop):
    step = 0
    while not stop.is_set():
        step += 1
        progress({"stage": "loop", "step": step, "total": 0})
        time.sleep(0.02)
    _endless.stopped_at = time.monotonic()  # type: ignore[attr-defined]
    raise RuntimeError("stopped")


def _fails(params, arrays, progress, stop):
    from nst_engine.errors import InputError

    raise InputError("style-weight", -1, "must be >= 0")


@pytest.fixture
def fake_server(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "state"))
    srv = Server(tmp_path / "state", {"stylize": _invert, "endless": _endless, "fails": _fails}, idle_timeout=60)
    srv.bind()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    yield srv
    srv.stop()
    t.join(5)


def test_server_state_file_is_private(fake_server, tmp_path):
    path = tmp_path / "state" / client.STATE_NAME
    st = json.loads(path.read_text())
    assert st["pid"] == os.getpid() and st["port"] == fake_server.port and len(st["token"]) >= 32
    if sys.platform != "win32":
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def test_client_runs_job_and_streams_progress(fake_server):
    eng = client.Engine({"engine_python": sys.executable})
    img = np.random.default_rng(0).random((5, 7, 4), dtype=np.float32)
    seen = []
    header, out = eng.call("stylize", {"note": "hi"}, {"content": (list(img.shape), img)}, seen.append)
    assert header["type"] == "result" and header["note"] == "hi"
    np.testing.assert_allclose(np.frombuffer(out["image"][1], "<f4").reshape(5, 7, 4), 1 - img)
    assert [m["step"] for m in seen] == [1, 2, 3]
    assert seen[0]["loss"] is None  # NaN is sent as null (strict JSON)
    assert eng.timing["spawned"] is False  # found the running server, started nothing


def test_client_error_reply(fake_server):
    eng = client.Engine({"engine_python": sys.executable})
    with pytest.raises(client.BridgeError, match="style-weight=-1: must be >= 0"):
        eng.call("fails", {})
    with pytest.raises(client.BridgeError, match="unknown operation"):
        eng.call("nope", {})


def test_client_disconnect_stops_the_job(fake_server):
    eng = client.Engine({"engine_python": sys.executable})

    def cancel_after_three(msg):
        if msg["step"] >= 3:
            raise client.Cancelled("user")

    t0 = time.monotonic()
    with pytest.raises(client.Cancelled):
        eng.call("endless", {}, None, cancel_after_three)
    deadline = time.monotonic() + 5
    while not hasattr(_endless, "stopped_at") and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hasattr(_endless, "stopped_at"), "the server did not notice that the client went away"
    assert _endless.stopped_at - t0 < 2.0
    # and the server still serves
    img = np.zeros((2, 2, 4), np.float32)
    eng.call("stylize", {}, {"content": ([2, 2, 4], img)})


def test_garbage_from_server_is_a_bridge_error(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path))
    lsock = socket.create_server(("127.0.0.1", 0))
    (tmp_path / client.STATE_NAME).write_text(json.dumps(
        {"pid": os.getpid(), "port": lsock.getsockname()[1], "token": "t"}))

    def serve():  # a server that knows the token, then sends garbage
        conn, _ = lsock.accept()
        with conn:
            hello, _ = protocol.recv(conn)
            mine = protocol.nonce()
            protocol.send(conn, {"type": "challenge", "nonce": mine,
                                 "proof": protocol.proof("t", "server", hello["nonce"], mine)})
            protocol.recv(conn)
            protocol.send(conn, {"type": "hello", "protocol": protocol.PROTOCOL_VERSION, "python": sys.executable})
            protocol.recv(conn)
            conn.sendall(b"\x00garbage-garbage-garbage")

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    with pytest.raises(client.BridgeError, match="stopped unexpectedly|garbage"):
        client.Engine({"engine_python": sys.executable}).call("stylize", {})
    t.join(5)
    lsock.close()


def test_idle_timeout_exits_and_removes_state(tmp_path):
    srv = Server(tmp_path, {}, idle_timeout=0.3)
    srv.bind()
    assert (tmp_path / client.STATE_NAME).exists()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive()
    assert not (tmp_path / client.STATE_NAME).exists()


def test_missing_engine_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path))
    with pytest.raises(client.BridgeError, match="gimp-install"):
        client.Engine({"engine_python": str(tmp_path / "no-python")}).call("stylize", {})
    monkeypatch.setenv("NST_GIMP_CONFIG", str(tmp_path / "missing.json"))
    with pytest.raises(client.BridgeError, match="gimp-install"):
        client.load_config()


def test_engine_that_dies_at_start_is_reported(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "st"))
    fake = tmp_path / "python"
    fake.write_text("#!/bin/sh\necho 'No module named nst_engine' >&2\nexit 3\n")
    fake.chmod(0o755)
    with pytest.raises(client.BridgeError, match="(?s)exit code 3.*No module named nst_engine"):
        client.Engine({"engine_python": str(fake)}).call("stylize", {})


# --------------------------------------------------------------------------------------------
# the real server process, real engine (tiny)
# --------------------------------------------------------------------------------------------

def test_real_server_second_call_is_warm(tmp_path, monkeypatch):
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "st"))
    cfg = {"engine_python": sys.executable, "engine_pythonpath": str(REPO), "idle_timeout": 60}
    eng = client.Engine(cfg)
    rng = np.random.default_rng(1)
    content = rng.random((24, 40, 4), dtype=np.float32)
    content[..., 3] = 0.5
    style = rng.random((32, 32, 4), dtype=np.float32)
    params = {"steps": 2, "size": 32, "style_weight": 1.0, "method": "iterative", "layer_long_side": 40}
    arrays = {"content": (list(content.shape), content), "style": (list(style.shape), style)}
    try:
        assert eng.prestart()  # as the dialog does: spawn, do not wait
        assert not client.Engine(cfg).prestart()  # another plug-in process sees it coming up
        header, out = eng.call("stylize", params, arrays)
        first = dict(eng.timing)
        assert first.get("prestarted") and first["spawned"]
        img = np.frombuffer(out["image"][1], "<f4").reshape(out["image"][0])
        assert img.shape == (24, 40, 4)
        np.testing.assert_array_equal(img[..., 3], 0.5)  # alpha kept
        assert not np.allclose(img[..., :3], content[..., :3], atol=1e-3)
        header, out = eng.call("stylize", params, arrays)
        second = dict(eng.timing)
        print("first call:", first, "\nsecond call:", second)
        assert first["spawned"] and not second["spawned"]
        assert second["connect_s"] < 0.5
        assert second["server_pid"] == first["server_pid"]
        # an engine error comes back as a message
        with pytest.raises(client.BridgeError, match="no such model"):
            eng.call("stylize", dict(params, method="model", model="no-such-model"), arrays)
    finally:
        assert eng.shutdown()


# --------------------------------------------------------------------------------------------
# jobs (engine stubbed)
# --------------------------------------------------------------------------------------------

def _fake_api(monkeypatch, value=0.25):
    from nst_engine import api

    def fake_stylize(content, styles, config, callback=None, stop=None):
        h, w = __import__("nst_engine.image", fromlist=["x"]).fit_long_side(*content.shape[:2], config.size)
        img = np.full((h, w, 3), value, np.float32)
        return api.StyleResult(img, 0.0, {}, [], config.steps, False, 0.0, "cpu")

    monkeypatch.setattr(api, "stylize", fake_stylize)


def test_stylize_job_with_selection_keeps_outside(monkeypatch):
    from scipy.ndimage import gaussian_filter

    from nst_engine.compositing.region import stylize_region

    _fake_api(monkeypatch)
    rng = np.random.default_rng(2)
    content = rng.random((40, 50, 4), dtype=np.float32)
    yy, xx = np.mgrid[0:40, 0:50]
    hard = (((yy - 20) / 11.0) ** 2 + ((xx - 26) / 14.0) ** 2 <= 1).astype(np.float32)
    mask = np.where(hard > 0, gaussian_filter(hard, 1.5), 0).astype(np.float32)  # soft inside, 0 outside
    arrays = {"content": ([40, 50, 4], content.tobytes()), "mask": ([40, 50], mask.tobytes()),
              "style": ([8, 8, 4], np.ones((8, 8, 4), np.float32).tobytes())}
    for composite in ("none", "feather", "poisson"):
        header, out = jobs.stylize({"steps": 1, "size": 64, "composite": composite, "layer_long_side": 50},
                                   arrays, lambda m: None, threading.Event())
        img = out["image"][1].reshape(40, 50, 4)
        lm = out["layer_mask"][1]
        assert lm.shape == (40, 50)
        outside = mask == 0
        np.testing.assert_array_equal(lm[outside], 0)
        np.testing.assert_array_equal(img[outside], content[outside])
        np.testing.assert_array_equal(img[..., 3], content[..., 3])  # alpha kept
        # what GIMP shows (layer through its mask over the original) is the region composite
        shown = lm[..., None] * img[..., :3] + (1 - lm[..., None]) * content[..., :3]
        ref = stylize_region(content[..., :3].copy(), mask, lambda c: np.full(c.shape, 0.25, np.float32),
                             margin=32, composite=composite)
        np.testing.assert_allclose(shown, ref.image, atol=2e-3, err_msg=composite)
        assert np.abs(shown - content[..., :3])[hard > 0].mean() > 0.05


def test_stylize_job_errors(monkeypatch):
    _fake_api(monkeypatch)
    from nst_engine.errors import InputError

    content = {"content": ([4, 4, 4], np.zeros((4, 4, 4), np.float32).tobytes())}
    with pytest.raises(InputError, match="choose a style"):
        jobs.stylize({}, content, lambda m: None, threading.Event())
    with pytest.raises(InputError, match="no such file"):
        jobs.stylize({"style_file": "/nonexistent.png"}, content, lambda m: None, threading.Event())
    nan = np.full((4, 4, 4), np.nan, np.float32)
    with pytest.raises(InputError, match="NaN"):
        jobs.stylize({}, {"content": ([4, 4, 4], nan.tobytes())}, lambda m: None, threading.Event())


def test_model_job_passes_colors_and_size(monkeypatch):
    """The model method: preserve-colors and model-size reach stylize_model; model-size is for the
    whole layer, so a selection's crop is painted at the layer's scale."""
    from nst_engine import models

    seen = []

    def fake_stylize_model(content, model, *, model_size=0, preserve_colors="none", callback=None, stop=None, **kw):
        seen.append({"shape": content.shape[:2], "model": model, "model_size": model_size,
                     "preserve_colors": preserve_colors})
        return np.full(content.shape[:2] + (3,), 0.5, np.float32)

    monkeypatch.setattr(models, "stylize_model", fake_stylize_model)
    content = np.random.default_rng(0).random((40, 60, 4), dtype=np.float32)
    arrays = {"content": ([40, 60, 4], content.tobytes())}
    base = {"method": "model", "model": "starry-night", "layer_long_side": 600}
    for size, expected in ((300, 0), (30, 0), (0, 0)):  # crop 60 px of a 600 px layer: 30 → 64 floor ≥ 60: whole
        header, out = jobs.stylize(dict(base, model_size=size, preserve_colors="linear"), arrays,
                                   lambda m: None, threading.Event())
        assert seen[-1] == {"shape": (40, 60), "model": "starry-night", "model_size": expected,
                            "preserve_colors": "linear"}
        assert out["image"][1].reshape(40, 60, 4)[..., :3].max() == 0.5
    big = np.random.default_rng(1).random((400, 300, 4), dtype=np.float32)
    jobs.stylize(dict(base, model_size=500, layer_long_side=1000, preserve_colors="luminance"),
                 {"content": ([400, 300, 4], big.tobytes())}, lambda m: None, threading.Event())
    assert seen[-1]["model_size"] == 200 and seen[-1]["preserve_colors"] == "luminance"
    jobs.stylize(dict(base, model_size=1024, layer_long_side=400), {"content": ([400, 300, 4], big.tobytes())},
                 lambda m: None, threading.Event())
    assert seen[-1]["model_size"] == 0  # the layer is smaller than model-size: full resolution
    from nst_engine.errors import InputError

    n = len(seen)
    for bad, match in (({"model_size": -1}, "model-size"), ({"model_size": 2.5}, "model-size"),
                       ({"preserve_colors": "sepia"}, "preserve-colors"), ({"model": ""}, "choose a model")):
        with pytest.raises(InputError, match=match):
            jobs.stylize(dict(base, **bad), arrays, lambda m: None, threading.Event())
    assert len(seen) == n  # refused before any work


def test_model_job_with_a_real_model():
    """A shipped model through the job (the first one from the catalog), with a selection."""
    from nst_engine.models import model_catalog

    catalog = model_catalog()
    assert catalog, "no model ships in nst_engine/data/models"
    rng = np.random.default_rng(3)
    content = rng.random((48, 64, 4), dtype=np.float32)
    mask = np.zeros((48, 64), np.float32)
    mask[10:30, 12:40] = 1.0
    arrays = {"content": ([48, 64, 4], content.tobytes()), "mask": ([48, 64], mask.tobytes())}
    params = {"method": "model", "model": catalog[0].name, "model_size": 1024, "layer_long_side": 64,
              "preserve_colors": "histogram", "composite": "none"}
    header, out = jobs.stylize(params, arrays, lambda m: None, threading.Event())
    img = out["image"][1].reshape(48, 64, 4)
    lm = out["layer_mask"][1]
    assert header["info"]["method"] == "model"
    np.testing.assert_array_equal(img[mask == 0], content[mask == 0])
    np.testing.assert_array_equal(lm[mask == 0], 0)
    assert np.abs(img[mask == 1][:, :3] - content[mask == 1][:, :3]).mean() > 0.01


def test_processing_scale_follows_the_layer():
    # size is the long side of the whole layer; a selection is processed at the layer's scale
    assert jobs._processed_long(1000, jobs._scale({"size": 500, "layer_long_side": 1000}, 1000)) == 500
    assert jobs._processed_long(400, jobs._scale({"size": 500, "layer_long_side": 1000}, 400)) == 200
    assert jobs._processed_long(40, jobs._scale({"size": 500, "layer_long_side": 1000}, 40)) == 64  # floor
    assert jobs._processed_long(10, jobs._scale({"size": 500, "layer_long_side": 1000}, 10)) == 40


def test_stale_starting_marker_does_not_block(tmp_path, monkeypatch):
    """A server that died while starting (or after) must not make the next call wait for it."""
    import subprocess

    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / client.STARTING_NAME).write_text(json.dumps({"pid": dead.pid, "time": time.time()}))
    t0 = time.monotonic()
    with pytest.raises(client.BridgeError, match="not found"):
        client.Engine({"engine_python": str(tmp_path / "no-python")}).call("stylize", {})
    assert time.monotonic() - t0 < 2
    # a marker for a server that has already written its state file is ignored too
    (tmp_path / client.STARTING_NAME).write_text(json.dumps({"pid": os.getpid(), "time": time.time()}))
    (tmp_path / client.STATE_NAME).write_text(json.dumps({"pid": os.getpid(), "port": 1, "token": "x"}))
    with pytest.raises(client.BridgeError, match="not found"):
        client.Engine({"engine_python": str(tmp_path / "no-python")}).call("stylize", {})


def test_texture_job_runs_the_real_optimizer():
    """The GIMP texture job (plug-in-nst-texture) end to end on real weights: canvas size back, opaque."""
    from nst_engine.errors import InputError

    rng = np.random.default_rng(4)
    style = rng.random((32, 32, 4), dtype=np.float32)
    arrays = {"style": ([32, 32, 4], style.tobytes())}
    seen: list[dict] = []
    header, out = jobs.texture({"shape": [30, 40], "steps": 2, "size": 40}, arrays, seen.append, threading.Event())
    shape, img = out["image"]
    img = np.asarray(img).reshape(shape)
    assert shape == [30, 40, 4] and header["info"]["steps"] == 2
    np.testing.assert_array_equal(img[..., 3], 1.0)
    assert np.isfinite(img).all() and img[..., :3].std() > 0.01
    with pytest.raises(InputError, match="shape"):
        jobs.texture({"shape": [0, 40], "steps": 1}, arrays, seen.append, threading.Event())


def test_stroke_scale_reaches_the_config_and_the_style_size():
    """style-scale (spec 5, 'Stroke scale' in the dialogs): StyleConfig.style_scale, and the style
    image is read at that multiple of the processed size; out of range names the argument."""
    from nst_engine.errors import InputError

    from nst_engine.bridge import arguments

    names = {p: [a["name"] for a in args] for p, args in arguments.spec()["procedures"].items()}
    assert all("style-scale" in n for n in names.values()), names
    assert jobs._config({"style_scale": 2.5}, 64).style_scale == 2.5
    assert jobs._style_long_side({"style_scale": 2.0}, 100) == 2 * jobs._style_long_side({}, 100)
    with pytest.raises(InputError) as e:
        jobs._config({"style_scale": 0.0}, 64)
    assert e.value.argument == "style-scale"
