"""The engine server over a long life: the engine lock is never held by I/O, caches and the log stay
bounded, parameters of the wrong type are named (issue 11; rows of the table in tests/README.md)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge_helpers import POSIX, REPO, authenticated, invert, tiny_job
from nst_engine.bridge import client, jobs, protocol
from nst_engine.bridge.server import Server


# --------------------------------------------------------------------------------------------
# the engine lock is never held by I/O
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not POSIX, reason="mkfifo")
def test_fifo_style_file_is_refused_at_once(tmp_path: Path) -> None:
    from nst_engine.errors import InputError

    fifo = tmp_path / "style.png"
    os.mkfifo(fifo)
    content = np.zeros((8, 8, 4), np.float32)
    t0 = time.monotonic()
    with pytest.raises(InputError, match="not a regular file"):
        jobs.prepare_style({"style_file": str(fifo)}, {"content": ([8, 8, 4], content)})
    assert time.monotonic() - t0 < 2.0


def test_slow_input_preparation_does_not_hold_the_engine(bridge_server: Callable[..., Server]) -> None:
    release = threading.Event()

    def slow_prepare(params: dict[str, Any], arrays: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
        if params.get("slow"):
            release.wait(20)  # a style file on a hung network share
        return params, arrays

    bridge_server(prepare={"stylize": slow_prepare})
    blocked = threading.Thread(target=lambda: client.Engine({"engine_python": sys.executable}).call(
        "stylize", {"slow": True}, {"content": ([1, 1, 4], np.zeros((1, 1, 4), np.float32))}), daemon=True)
    blocked.start()
    time.sleep(0.3)
    t0 = time.monotonic()
    assert tiny_job()[0, 0, 0] == pytest.approx(0.75)
    assert time.monotonic() - t0 < 3.0
    release.set()
    blocked.join(10)


def test_progress_to_a_client_that_does_not_read_never_blocks_the_engine(bridge_server: Callable[..., Server]) -> None:
    finished = threading.Event()

    def chatty(params: dict[str, Any], arrays: dict[str, Any], progress: Callable[[dict[str, Any]], None],
               stop: threading.Event) -> tuple[dict[str, Any], dict[str, Any]]:
        for step in range(20000):  # ~20 MB of progress: far more than the socket buffers hold
            progress({"stage": "x" * 1000, "step": step, "total": 20000})
        finished.set()
        return {}, {}

    srv = bridge_server({"stylize": invert, "chatty": chatty})
    s = authenticated(srv)
    protocol.send(s, {"op": "chatty", "params": {}})  # ... and never reads a byte
    assert finished.wait(5.0), "the engine waited for a client that does not read"
    t0 = time.monotonic()
    assert tiny_job()[0, 0, 0] == pytest.approx(0.75)  # the engine lock is free for others
    assert time.monotonic() - t0 < 3.0
    s.close()


# --------------------------------------------------------------------------------------------
# a long-lived server
# --------------------------------------------------------------------------------------------

def test_encoder_and_model_caches_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    from nst_engine import models
    from nst_engine.encoders import weights

    class Fake:
        def __init__(self, *a: Any) -> None:
            pass

        def to(self, *a: Any, **k: Any) -> "Fake":
            return self

    monkeypatch.setattr(weights, "load_weights", lambda *a: type("W", (), {"state": {}, "preprocess": "caffe"})())
    monkeypatch.setattr(weights, "VGG19Encoder", Fake)
    monkeypatch.setattr(weights, "_CACHE", {})
    encs = [weights.get_encoder(f"w{i}", "relu5_1", "max", torch.device("cpu")) for i in range(6)]
    assert len(weights._CACHE) == weights.MAX_CACHED
    assert weights.get_encoder("w5", "relu3_1", "max", torch.device("cpu")) is encs[5]  # deeper serves shallower
    monkeypatch.setattr(models, "_CACHE", {("m", i, 0, "cpu"): object() for i in range(9)})
    jobs.trim_caches()
    assert list(models._CACHE) == [("m", i, 0, "cpu") for i in range(9 - jobs.MAX_MODEL_SESSIONS, 9)]


@pytest.mark.skipif(not POSIX, reason="dup2 onto the log")
def test_server_log_is_rotated(tmp_path: Path) -> None:
    state = tmp_path / "st"
    state.mkdir()
    code = ("import sys; from nst_engine.bridge import server; server.LOG_MAX_BYTES = 3000; "
            "sys.exit(server.main(sys.argv[1:]))")
    with (state / client.LOG_NAME).open("ab") as log:
        proc = subprocess.Popen([sys.executable, "-c", code, "--state-dir", str(state), "--no-preload"],
                                env=dict(os.environ, PYTHONPATH=str(REPO)), stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 30
        while client.read_state(state) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        srv = type("S", (), {"port": client.read_state(state)["port"], "token": client.read_state(state)["token"]})
        for _ in range(40):  # each refused request writes a log line
            s = authenticated(srv)  # type: ignore[arg-type]
            protocol.send(s, {"op": "no-such-op-" + "x" * 100})
            protocol.recv(s)
            s.close()
        time.sleep(0.3)
        assert (state / (client.LOG_NAME + ".1")).is_file(), "the log was not rotated"
        assert (state / client.LOG_NAME).stat().st_size < 3000 + 1000
        assert "log rotated" in (state / client.LOG_NAME).read_text()  # and the server writes on
    finally:
        proc.terminate()
        proc.wait(20)


@pytest.mark.parametrize(("params", "needle"), [
    ({"size": "big"}, "size='big': must be a whole number"),
    ({"steps": "many"}, "steps='many': must be a whole number"),
    ({"seed": "x"}, "seed='x': must be a whole number"),
    ({"style_file": 5}, "style-file=5: must be a file name"),
    ({"method": ["model"]}, "method=['model']: must be text"),
    ({"layer_long_side": 1.5}, "layer-long-side=1.5: must be a whole number"),
])
def test_wrong_typed_params_name_the_parameter(params: dict[str, Any], needle: str) -> None:
    from nst_engine.errors import InputError

    arrays = {"content": ([8, 8, 4], np.zeros((8, 8, 4), np.float32))}
    if "style_file" not in params:
        arrays["style"] = ([8, 8, 4], np.zeros((8, 8, 4), np.float32))
    with pytest.raises(InputError) as e:
        jobs.stylize({"steps": 1, **params}, arrays, lambda m: None, threading.Event())
    assert needle in str(e.value)


def test_params_that_are_not_an_object_are_refused(bridge_server: Callable[..., Server]) -> None:
    srv = bridge_server()
    s = authenticated(srv)
    protocol.send(s, {"op": "stylize", "params": ["size", 5]})
    reply, _ = protocol.recv(s)
    s.close()
    assert reply["type"] == "error" and "must be an object" in reply["message"]
