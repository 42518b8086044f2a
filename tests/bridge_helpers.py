"""Helpers for the bridge tests: an in-process server, an authenticated raw connection."""
from __future__ import annotations

import json
import os
import socket
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from nst_engine.bridge import client, protocol
from nst_engine.bridge.server import Server

REPO = Path(__file__).resolve().parents[1]
POSIX = sys.platform != "win32"


def invert(params: dict[str, Any], arrays: dict[str, Any], progress: Callable[[dict[str, Any]], None],
           stop: threading.Event) -> tuple[dict[str, Any], dict[str, Any]]:
    shape, data = arrays["content"]
    out = np.ascontiguousarray(1.0 - np.frombuffer(data, "<f4").reshape(shape))
    return {}, {"image": (list(out.shape), out)}


def authenticated(srv: Server) -> socket.socket:
    """A raw connection through the mutual challenge, as the real client does it."""
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    mine = protocol.nonce()
    protocol.send(s, {"op": "hello", "nonce": mine})
    challenge, _ = protocol.recv(s)
    protocol.send(s, {"op": "auth", "proof": protocol.proof(srv.token, "client", mine, challenge["nonce"])})
    hello, _ = protocol.recv(s)
    assert hello["type"] == "hello"
    return s


def header(header: dict[str, Any]) -> bytes:
    raw = json.dumps(header).encode()
    return protocol.MAGIC + len(raw).to_bytes(4, "big") + raw


def tiny_job() -> np.ndarray:
    img = np.full((2, 3, 4), 0.25, np.float32)
    header, out = client.Engine({"engine_python": sys.executable}).call("stylize", {}, {"content": ([2, 3, 4], img)})
    return np.frombuffer(out["image"][1], "<f4").reshape(2, 3, 4)


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
