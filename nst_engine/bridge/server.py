"""The engine server the GIMP plug-in talks to: ``python -m nst_engine.bridge.server``.

Listens on 127.0.0.1 (a free port), writes ``server.json`` (pid, port, token) with mode 0600 into
the per-user state folder, keeps the engine (torch, the VGG encoder) loaded between calls and
exits after ``--idle-timeout`` seconds without a connection. One job runs at a time; others wait.

Each job runs in its own thread while a watcher reads the connection: when the plug-in goes away
(GIMP's Cancel kills the plug-in process) the read returns, the job's stop event is set and the
engine stops at its next step.
"""
from __future__ import annotations

import argparse
import hmac
import json
import logging
import math
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any, Callable

from . import protocol
from .client import STARTING_NAME, STATE_NAME

log = logging.getLogger("nst_engine.bridge.server")

Handler = Callable[[dict[str, Any], dict[str, Any], Callable[[dict[str, Any]], None], threading.Event], tuple[dict[str, Any], dict[str, tuple[list[int], Any]]]]


def _clean(value: Any) -> Any:
    """JSON-safe: non-finite floats → None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    return value


class Server:
    def __init__(
        self,
        state_dir: Path,
        handlers: dict[str, Handler],
        *,
        idle_timeout: float = 900.0,
        token: str | None = None,
        preload: Callable[[], None] | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.handlers = handlers
        self.idle_timeout = idle_timeout
        self.token = token or secrets.token_hex(32)
        self.preload = preload
        self.sock: socket.socket | None = None
        self.port = 0
        self.engine_lock = threading.Lock()
        self.active = 0
        self.active_lock = threading.Lock()
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()
        self.jobs = 0
        self.started = time.time()

    # --- state file --------------------------------------------------------------------------
    def _write_state(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.chmod(self.state_dir, 0o700)
        except OSError:
            pass
        state = {
            "pid": os.getpid(), "port": self.port, "token": self.token, "protocol": protocol.PROTOCOL_VERSION,
            "python": sys.executable, "started": self.started,
        }
        tmp = self.state_dir / f".{STATE_NAME}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        os.replace(tmp, self.state_dir / STATE_NAME)
        try:  # the client's "a server is starting" marker has done its job
            starting = self.state_dir / STARTING_NAME
            if json.loads(starting.read_text(encoding="utf-8")).get("pid") == os.getpid():
                starting.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def _remove_state(self) -> None:
        path = self.state_dir / STATE_NAME
        try:
            if json.loads(path.read_text(encoding="utf-8")).get("pid") == os.getpid():
                path.unlink()
        except (OSError, ValueError):
            pass

    # --- main loop ---------------------------------------------------------------------------
    def bind(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self._write_state()
        log.info("listening on 127.0.0.1:%d (pid %d, idle timeout %.0f s)", self.port, os.getpid(), self.idle_timeout)

    def serve_forever(self) -> None:
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        if self.preload is not None:
            threading.Thread(target=self._preload, name="preload", daemon=True).start()
        self.sock.settimeout(0.25)
        try:
            while not self.stopping.is_set():
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    with self.active_lock:
                        idle = self.active == 0 and time.monotonic() - self.last_activity > self.idle_timeout
                    if idle:
                        log.info("idle for %.0f s: exiting", self.idle_timeout)
                        break
                    continue
                with self.active_lock:
                    self.active += 1
                    self.last_activity = time.monotonic()
                threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()
        finally:
            self._remove_state()
            self.sock.close()
        # Asked to stop: no new connections; let running jobs finish and reply (up to an hour).
        deadline = time.monotonic() + 3600
        while time.monotonic() < deadline:
            with self.active_lock:
                if self.active == 0:
                    break
            time.sleep(0.1)

    def _preload(self) -> None:
        t0 = time.monotonic()
        try:
            with self.engine_lock:
                self.preload()  # type: ignore[misc]
            log.info("engine loaded in %.2f s", time.monotonic() - t0)
        except Exception:  # the first job reports the real error
            log.warning("preload failed:\n%s", traceback.format_exc())

    def stop(self) -> None:
        self.stopping.set()

    # --- one connection ----------------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        try:
            conn.settimeout(30.0)
            self._handle(conn)
        except (OSError, protocol.ProtocolError) as e:
            log.info("connection dropped: %s", e)
        except Exception:
            log.error("unexpected error:\n%s", traceback.format_exc())
        finally:
            try:
                conn.shutdown(socket.SHUT_RDWR)  # wakes the watcher thread blocked in recv
            except OSError:
                pass
            conn.close()
            with self.active_lock:
                self.active -= 1
                self.last_activity = time.monotonic()

    def _handle(self, conn: socket.socket) -> None:
        hello, _ = protocol.recv(conn, max_array_bytes=0)
        if hello.get("op") != "hello" or not hmac.compare_digest(str(hello.get("token", "")), self.token):
            protocol.send(conn, protocol.error_header("bad token: read it from the state file", "auth"))
            return
        protocol.send(conn, {
            "type": "hello", "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
            "python": sys.executable, "jobs": self.jobs, "uptime": time.time() - self.started,
        })
        try:
            request, arrays = protocol.recv(conn)
        except protocol.ConnectionClosed:
            return  # a probe (hello only)
        op = request.get("op")
        if op == "ping":
            protocol.send(conn, {"type": "result", "op": "ping"})
            return
        if op == "shutdown":
            protocol.send(conn, {"type": "result", "op": "shutdown"})
            log.info("shutdown requested")
            self.stop()
            return
        handler = self.handlers.get(str(op))
        if handler is None:
            protocol.send(conn, protocol.error_header(f"unknown operation {op!r}"))
            return
        self._run_job(conn, str(op), handler, request.get("params") or {}, arrays)

    def _run_job(self, conn: socket.socket, op: str, handler: Handler, params: dict[str, Any],
                 arrays: dict[str, tuple[list[int], bytearray]]) -> None:
        stop = threading.Event()
        send_lock = threading.Lock()
        conn.settimeout(None)

        def watch() -> None:  # any data or EOF from the client means: stop
            try:
                conn.recv(1)
            except OSError:
                pass
            if not done.is_set():
                log.info("client went away: stopping %s", op)
            stop.set()

        def progress(info: dict[str, Any]) -> None:
            if stop.is_set():
                return
            try:
                with send_lock:
                    protocol.send(conn, _clean({"type": "progress", **info}))
            except OSError:
                stop.set()

        done = threading.Event()
        threading.Thread(target=watch, name="watch", daemon=True).start()
        t0 = time.monotonic()
        self.jobs += 1
        job = self.jobs
        if self.engine_lock.locked():
            progress({"stage": "waiting for the engine", "step": 0, "total": 0})
        with self.engine_lock:
            wait_s = time.monotonic() - t0
            log.info("job %d: %s started", job, op)
            try:
                header, out = handler(params, arrays, progress, stop)
            except Exception as e:
                done.set()
                if stop.is_set():
                    log.info("job %d: stopped (client gone)", job)
                    return
                message = _message(e)
                log.info("job %d: error: %s", job, message)
                if not getattr(e, "exit_code", None):
                    log.info("%s", traceback.format_exc())
                with send_lock:
                    protocol.send(conn, protocol.error_header(message, type(e).__name__))
                return
        done.set()
        if stop.is_set():
            log.info("job %d: stopped (client gone) after %.2f s", job, time.monotonic() - t0)
            return
        header = _clean({"type": "result", "op": op, **header})
        header.setdefault("timing", {}).update(wait_s=wait_s, total_s=time.monotonic() - t0, job=job)
        with send_lock:
            protocol.send(conn, header, out)
        log.info("job %d: done in %.2f s", job, time.monotonic() - t0)


def _message(e: BaseException) -> str:
    from ..errors import NSTError

    if isinstance(e, NSTError):
        return str(e)
    if isinstance(e, MemoryError):
        return "The engine ran out of memory: use a smaller Size or a smaller selection."
    return f"Engine error ({type(e).__name__}): {e}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nst_engine.bridge.server", description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", required=True, help="per-user folder for server.json and the log")
    ap.add_argument("--idle-timeout", type=float, default=900.0, help="exit after this many seconds without work")
    ap.add_argument("--no-preload", action="store_true", help="load the engine on the first job, not at start")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s nst-server[{os.getpid()}] %(message)s")
    from . import jobs

    server = Server(Path(args.state_dir), jobs.HANDLERS, idle_timeout=args.idle_timeout,
                    preload=None if args.no_preload else jobs.preload)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.bind()
    server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
