"""The engine server against clients that misbehave (floods, slow or lying clients), and the client
against a server that is not ours (issue 11; each test is a row of the table in tests/README.md)."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge_helpers import POSIX, REPO, authenticated, header, invert, rss, tiny_job
from nst_engine.bridge import client, jobs, protocol, server
from nst_engine.bridge.server import Server


# --------------------------------------------------------------------------------------------
# connection floods, slow clients
# --------------------------------------------------------------------------------------------

class _FailingAccept:
    """The listening socket, with accept() failing like a process out of file descriptors."""

    def __init__(self, sock: socket.socket, failures: int) -> None:
        self.sock, self.failures = sock, failures

    def accept(self) -> tuple[socket.socket, Any]:
        if self.failures > 0:
            self.failures -= 1
            time.sleep(0.01)
            raise OSError(errno.EMFILE, "Too many open files")
        return self.sock.accept()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.sock, name)


def test_accept_failing_with_emfile_is_survived(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "state"))
    srv = Server(tmp_path / "state", {"stylize": invert}, idle_timeout=60)
    srv.bind()
    srv.sock = _FailingAccept(srv.sock, 5)  # type: ignore[assignment]
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    try:
        assert tiny_job()[0, 0, 0] == pytest.approx(0.75)  # served once accept() works again
        assert t.is_alive() and (tmp_path / "state" / client.STATE_NAME).exists()
    finally:
        srv.stop()
        t.join(10)
    assert not (tmp_path / "state" / client.STATE_NAME).exists()


@pytest.mark.skipif(not POSIX, reason="RLIMIT_NOFILE")
def test_connection_flood_under_fd_limit_real_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The issue's repro: the server under `prlimit --nofile=64`, 100 connections at once."""
    import resource

    state = tmp_path / "st"
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(state))
    env = dict(os.environ, PYTHONPATH=str(REPO))
    proc = subprocess.Popen(
        [sys.executable, "-m", "nst_engine.bridge.server", "--state-dir", str(state), "--no-preload"],
        env=env, stderr=subprocess.PIPE, text=True,
        preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64)))
    try:
        deadline = time.monotonic() + 30
        while client.read_state(state) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        st = client.read_state(state)
        assert st is not None
        flood = []
        for _ in range(100):
            try:
                flood.append(socket.create_connection(("127.0.0.1", st["port"]), timeout=2))
            except OSError:
                pass
        time.sleep(0.5)
        assert proc.poll() is None, "the server died of the flood"
        for s in flood:
            s.close()
        eng = client.Engine({"engine_python": sys.executable})
        found = eng.connect()  # serves again once the flood is gone
        found[0].close()
        assert eng.timing["spawned"] is False
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert not (state / client.STATE_NAME).exists()


def test_trickling_client_is_cut_off_and_idle_exit_happens(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One byte every 0.2 s: the deadline is for the whole message, not each recv."""
    monkeypatch.setattr(server, "HANDSHAKE_DEADLINE", 1.0)
    srv = Server(tmp_path / "st", {}, idle_timeout=0.5)
    srv.bind()
    t = threading.Thread(target=srv.serve_forever, daemon=True)
    t.start()
    s = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    t0 = time.monotonic()
    closed_after = None
    try:
        for byte in header({"op": "hello", "nonce": "0" * 64}):
            s.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        closed_after = time.monotonic() - t0
    finally:
        s.close()
    assert closed_after is not None and closed_after < 3.0, "a trickling client held its connection"
    t.join(5)
    assert not t.is_alive(), "the idle exit did not happen"
    assert not (tmp_path / "st" / client.STATE_NAME).exists()


def test_unauthenticated_connections_are_capped(bridge_server: Callable[..., Server], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(server, "MAX_UNAUTHENTICATED", 4)
    srv = bridge_server()
    idle = [socket.create_connection(("127.0.0.1", srv.port), timeout=5) for _ in range(4)]
    time.sleep(0.3)
    extra = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
    try:
        assert extra.recv(1) == b"", "a 5th unauthenticated connection was kept open"
    except ConnectionResetError:
        pass  # closed, too
    extra.close()
    assert srv.unauthenticated == 4
    for s in idle:
        s.close()
    time.sleep(0.3)
    assert tiny_job()[0, 0, 0] == pytest.approx(0.75)


# --------------------------------------------------------------------------------------------
# the client checks that it talks to the real server
# --------------------------------------------------------------------------------------------

def test_client_sends_nothing_to_an_impostor_on_the_port(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The server died; another local process took its port and answers like a server."""
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path))
    token = "5" * 64
    lsock = socket.create_server(("127.0.0.1", 0))
    (tmp_path / client.STATE_NAME).write_text(json.dumps({"pid": 1, "port": lsock.getsockname()[1], "token": token}))
    received = bytearray()

    done = threading.Event()

    def impostor() -> None:
        lsock.settimeout(0.1)
        while not done.is_set():
            try:
                conn, _ = lsock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(2)
                try:
                    hello, _ = protocol.recv(conn)
                    received.extend(json.dumps(hello).encode())
                    protocol.send(conn, {"type": "challenge", "nonce": protocol.nonce(), "proof": "0" * 64})
                    while chunk := conn.recv(1 << 16):
                        received.extend(chunk)
                except (OSError, protocol.ProtocolError):
                    pass

    t = threading.Thread(target=impostor, daemon=True)
    t.start()
    pixels = np.full((4, 4, 4), 0.123, np.float32)
    eng = client.Engine({"engine_python": str(tmp_path / "no-python")})
    with pytest.raises(client.BridgeError, match="not found"):  # it went on to start its own server
        eng.call("stylize", {"secret": "params"}, {"content": ([4, 4, 4], pixels)})
    done.set()
    t.join(5)
    lsock.close()
    assert eng.impostor_seen
    assert token.encode() not in received and b"secret" not in received and pixels.tobytes()[:16] not in received


def test_bad_token_is_refused(bridge_server: Callable[..., Server], tmp_path: Path) -> None:
    srv = bridge_server()
    st = json.loads((tmp_path / "state" / client.STATE_NAME).read_text())
    with socket.create_connection(("127.0.0.1", st["port"]), timeout=5) as s:
        mine = protocol.nonce()
        protocol.send(s, {"op": "hello", "nonce": mine})
        challenge, _ = protocol.recv(s)
        assert protocol.proof_ok(challenge["proof"], st["token"], "server", mine, challenge["nonce"])
        protocol.send(s, {"op": "auth", "proof": protocol.proof("0" * 64, "client", mine, challenge["nonce"])})
        reply, _ = protocol.recv(s)
    assert reply["type"] == "error" and "token" in reply["message"]
    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:  # protocol 1 sent the token itself
        protocol.send(s, {"op": "hello", "token": st["token"]})
        reply, _ = protocol.recv(s)
    assert reply["type"] == "error" and "gimp-install" in reply["message"]


def test_non_ascii_proof_and_nonce_are_refused_without_a_traceback(bridge_server: Callable[..., Server],
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    srv = bridge_server(token="é" * 32)  # even a non-ASCII token
    for hello, auth in (({"op": "hello", "nonce": "é" * 64}, None),
                        ({"op": "hello", "nonce": protocol.nonce()}, {"op": "auth", "proof": "é" * 64}),
                        ({"op": "hello", "nonce": protocol.nonce()}, {"op": "auth", "proof": ["x"]})):
        with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
            protocol.send(s, hello)
            reply, _ = protocol.recv(s)
            if auth is not None:
                protocol.send(s, auth)
                reply, _ = protocol.recv(s)
            assert reply["type"] == "error"
    assert "Traceback" not in caplog.text


# --------------------------------------------------------------------------------------------
# memory before data, limits before reading
# --------------------------------------------------------------------------------------------

@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/self/statm")
def test_memory_follows_the_bytes_received(bridge_server: Callable[..., Server]) -> None:
    srv = bridge_server(max_job_bytes=2 << 30, check=jobs.check_request)
    s = authenticated(srv)
    before = rss()
    s.sendall(header({"op": "stylize", "params": {}, "arrays": [
        {"name": "content", "shape": [8192, 8192, 4], "dtype": "<f4"}]}))  # declares 1 GiB
    s.sendall(bytes(1 << 20))  # sends 1 MiB
    time.sleep(0.5)
    grown = rss() - before
    s.close()
    assert grown < 256 << 20, f"RSS grew by {grown >> 20} MiB for 1 MiB received"


@pytest.mark.parametrize(("declared", "budget", "needle"), [
    ([1 << 28], 16 << 30, "must be [height, width, 3 or 4]"),  # the shape:[1<<28]
    ([30000, 30000, 4], 16 << 30, "400 MP"),  # over the image limit
    ([3000, 3000, 4], 64 << 20, "limit of 0.06 GiB per job"),  # over the job budget
])
def test_declared_sizes_are_refused_before_reading(bridge_server: Callable[..., Server], declared: list[int], budget: int,
                                                   needle: str) -> None:
    srv = bridge_server(max_job_bytes=budget, check=jobs.check_request)
    s = authenticated(srv)
    s.sendall(header({"op": "stylize", "arrays": [{"name": "content", "shape": declared, "dtype": "<f4"}]}))
    t0 = time.monotonic()
    reply, _ = protocol.recv(s)  # answered at once, with nothing of the payload sent
    s.close()
    assert time.monotonic() - t0 < 2.0
    assert reply["type"] == "error" and needle in reply["message"], reply
