"""The engine server the GIMP plug-in talks to: ``python -m nst_engine.bridge.server``.

Listens on 127.0.0.1 (a free port), writes ``server.json`` (pid, port, token) with mode 0600 into
the per-user state folder, keeps the engine (torch, the VGG encoder) loaded between calls and
exits after ``--idle-timeout`` seconds without a connection. One job runs at a time; others wait.

Hardened against local clients that misbehave: a connection must authenticate (`protocol`'s
mutual challenge) within `HANDSHAKE_DEADLINE` seconds in all, whatever it trickles; at most
`MAX_UNAUTHENTICATED` connections may be authenticating at once (more are closed at once);
``accept()`` failing (out of file descriptors: EMFILE) is waited out, not fatal; a request's
arrays are checked against the image limits and the per-job budget before any byte of them is
read, and memory grows with the bytes that arrive. The state file is removed on every exit.

Each job runs in its own thread while a watcher reads the connection: when the plug-in goes away
(GIMP's Cancel kills the plug-in process) the read returns, the job's stop event is set and the
engine stops at its next step (`running.py`).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import socket
import sys
import threading
import time
import traceback
from pathlib import Path
from collections.abc import Mapping
from typing import Any, Callable

from . import protocol
from .running import SEND_TIMEOUT, Handler, Prepare, run_job
from .state import LOG_MAX_BYTES, LOG_NAME, STARTING_NAME, STATE_NAME, make_private_dir, rotate_log

log = logging.getLogger("nst_engine.bridge.server")

HANDSHAKE_DEADLINE = 10.0  # s for a new connection's hello and proof, all messages together
REQUEST_DEADLINE = 30.0  # s for the request's header; its arrays get this plus bytes / MIN_RATE
MIN_RATE = 32 * 1024**2  # bytes/s a client must at least send its arrays at
MAX_UNAUTHENTICATED = 16  # connections authenticating at once; more are closed on arrival
MAX_CONNECTIONS = 64  # connections at once, all kinds
ACCEPT_BACKOFF = 0.1  # s to wait when accept() fails (no file descriptors left)

# check(op, request header, payload bytes): raise an NSTError/ValueError to refuse before reading
RequestCheck = Callable[[str, dict[str, Any], int], None]


def default_job_budget() -> int:
    """Bytes of arrays one request may carry: half the RAM, within 256 MiB..16 GiB."""
    from ..system import total_ram

    return int(min(protocol.MAX_ARRAY_BYTES, max(256 * 1024**2, total_ram() // 2)))


class Server:
    def __init__(
        self,
        state_dir: Path,
        handlers: Mapping[str, Handler],
        *,
        idle_timeout: float = 900.0,
        token: str | None = None,
        preload: Callable[[], None] | None = None,
        check: RequestCheck | None = None,
        prepare: Mapping[str, Prepare] | None = None,
        after_job: Callable[[], None] | None = None,
        max_job_bytes: int | None = None,
    ) -> None:
        self.state_dir = Path(state_dir)
        self.handlers = handlers
        self.idle_timeout = idle_timeout
        self.token = token or secrets.token_hex(32)
        self.preload = preload
        self.check = check
        self.prepare = prepare or {}
        self.after_job = after_job
        self.max_job_bytes = default_job_budget() if max_job_bytes is None else int(max_job_bytes)
        self.sock: socket.socket | None = None
        self.port = 0
        self.engine_lock = threading.Lock()
        self.active = 0  # connections being served
        self.unauthenticated = 0  # of which not yet authenticated
        self.active_lock = threading.Lock()
        self.last_activity = time.monotonic()
        self.stopping = threading.Event()
        self.jobs = 0
        self.started = time.time()
        self._state_id: tuple[int, int] | None = None
        self._warned: dict[str, tuple[float, int]] = {}

    # --- state file --------------------------------------------------------------------------
    def _write_state(self) -> None:
        make_private_dir(self.state_dir)
        state = {
            "pid": os.getpid(), "port": self.port, "token": self.token, "protocol": protocol.PROTOCOL_VERSION,
            "python": sys.executable, "started": self.started,
        }
        tmp = self.state_dir / f".{STATE_NAME}.{os.getpid()}"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(state, fh)
        st = os.stat(tmp)
        os.replace(tmp, self.state_dir / STATE_NAME)
        self._state_id = (st.st_dev, st.st_ino)  # removal needs no file descriptor (EMFILE-proof)
        try:  # the client's "a server is starting" marker has done its job
            starting = self.state_dir / STARTING_NAME
            if json.loads(starting.read_text(encoding="utf-8")).get("pid") == os.getpid():
                starting.unlink()
        except (OSError, ValueError, AttributeError):
            pass

    def _remove_state(self) -> None:
        """Remove our state file (not a newer server's): by inode, so it works without free fds."""
        path = self.state_dir / STATE_NAME
        try:
            st = os.stat(path)
            if (st.st_dev, st.st_ino) == self._state_id:
                path.unlink()
        except OSError:
            pass

    # --- logging -----------------------------------------------------------------------------
    def _warn(self, key: str, message: str, *args: Any) -> None:
        """Log ``message`` at most once per 10 s per ``key`` (a flood must not fill the log)."""
        now = time.monotonic()
        last, skipped = self._warned.get(key, (-1e9, 0))
        if now - last < 10.0:
            self._warned[key] = (last, skipped + 1)
            return
        self._warned[key] = (now, 0)
        log.warning(message + (f" ({skipped} more like it not logged)" if skipped else ""), *args)

    def rotate_log(self) -> None:
        """When our stderr is the state folder's server.log and it has grown past LOG_MAX_BYTES:
        move it to server.log.1 and carry on in a fresh server.log."""
        path = self.state_dir / LOG_NAME
        try:
            err, st = os.fstat(2), os.stat(path)
        except OSError:
            return
        if (err.st_dev, err.st_ino) != (st.st_dev, st.st_ino) or st.st_size <= LOG_MAX_BYTES:
            return
        if not rotate_log(self.state_dir, LOG_MAX_BYTES):
            return
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        except OSError:
            return
        try:
            sys.stderr.flush()
            sys.stdout.flush()
            os.dup2(fd, 1)
            os.dup2(fd, 2)
        finally:
            os.close(fd)
        log.info("log rotated (the previous one is %s.1)", LOG_NAME)

    # --- main loop ---------------------------------------------------------------------------
    def bind(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0), backlog=64)
        self.port = self.sock.getsockname()[1]
        self._write_state()
        log.info("listening on 127.0.0.1:%d (pid %d, idle timeout %.0f s)", self.port, os.getpid(), self.idle_timeout)

    def _idle(self) -> bool:
        with self.active_lock:
            return self.active == 0 and time.monotonic() - self.last_activity > self.idle_timeout

    def serve_forever(self) -> None:
        if self.sock is None:
            self.bind()
        assert self.sock is not None
        try:
            if self.preload is not None:
                threading.Thread(target=self._preload, name="preload", daemon=True).start()
            self.sock.settimeout(0.25)
            while not self.stopping.is_set():
                try:
                    conn, _ = self.sock.accept()
                except socket.timeout:
                    pass
                except OSError as e:  # EMFILE/ENFILE (a flood), ECONNABORTED, ENOBUFS: wait it out
                    self._warn("accept", "accept failed: %s; waiting", e)
                    time.sleep(ACCEPT_BACKOFF)
                else:
                    self._admit(conn)
                    continue
                if self._idle():
                    log.info("idle for %.0f s: exiting", self.idle_timeout)
                    break
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

    def _admit(self, conn: socket.socket) -> None:
        """Serve ``conn`` in its own thread, or close it at once when too many are open."""
        with self.active_lock:
            full = self.unauthenticated >= MAX_UNAUTHENTICATED or self.active >= MAX_CONNECTIONS
            if not full:
                self.active += 1
                self.unauthenticated += 1
                self.last_activity = time.monotonic()
        if full:
            self._warn("full", "too many connections (%d authenticating, %d open): closing new ones",
                       self.unauthenticated, self.active)
            conn.close()
            return
        try:
            threading.Thread(target=self._serve_connection, args=(conn,), daemon=True).start()
        except RuntimeError as e:  # can't start new thread
            self._warn("thread", "cannot serve a connection: %s", e)
            conn.close()
            with self.active_lock:
                self.active -= 1
                self.unauthenticated -= 1

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

    def next_job(self) -> int:
        with self.active_lock:
            self.jobs += 1
            return self.jobs

    # --- one connection ----------------------------------------------------------------------
    def _serve_connection(self, conn: socket.socket) -> None:
        authenticated = False
        try:
            try:
                authenticated = self._authenticate(conn)
            finally:
                with self.active_lock:
                    self.unauthenticated -= 1
            if authenticated:
                self._handle(conn)
        except (OSError, protocol.ProtocolError) as e:
            if authenticated:
                log.info("connection dropped: %s", e)
            else:  # a flood of these must not fill the log
                self._warn("dropped", "unauthenticated connection dropped: %s", e)
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
            self.rotate_log()

    def _authenticate(self, conn: socket.socket) -> bool:
        """The mutual challenge (see `protocol`), all within HANDSHAKE_DEADLINE."""
        deadline = time.monotonic() + HANDSHAKE_DEADLINE
        hello, _ = protocol.recv(conn, max_array_bytes=0, deadline=deadline)
        theirs = hello.get("nonce")
        if hello.get("op") != "hello" or not isinstance(theirs, str) or not protocol.is_nonce(theirs):
            protocol.send(conn, protocol.error_header(
                "the plug-in speaks an older bridge protocol: run `nst gimp-install` again and restart GIMP",
                "auth"), timeout=2.0)
            return False
        mine = protocol.nonce()
        protocol.send(conn, {"type": "challenge", "protocol": protocol.PROTOCOL_VERSION, "nonce": mine,
                             "proof": protocol.proof(self.token, "server", theirs, mine)}, timeout=2.0)
        auth, _ = protocol.recv(conn, max_array_bytes=0, deadline=deadline)
        if auth.get("op") != "auth" or not protocol.proof_ok(auth.get("proof"), self.token, "client", theirs, mine):
            protocol.send(conn, protocol.error_header("bad token: read it from the state file", "auth"), timeout=2.0)
            self._warn("auth", "a client failed to authenticate")
            return False
        protocol.send(conn, {
            "type": "hello", "protocol": protocol.PROTOCOL_VERSION, "pid": os.getpid(),
            "python": sys.executable, "jobs": self.jobs, "uptime": time.time() - self.started,
        }, timeout=2.0)
        return True

    def _check_request(self, header: dict[str, Any], nbytes: int) -> float:
        """Refuse a request (`protocol.Rejected`) before its arrays are read; their deadline."""
        op = header.get("op")
        if op in ("ping", "shutdown"):
            if nbytes:
                raise protocol.Rejected(f"{op} takes no arrays")
        elif not isinstance(op, str) or op not in self.handlers:
            raise protocol.Rejected(f"unknown operation {op!r}"[:200])
        if not isinstance(header.get("params", {}), (dict, type(None))):
            raise protocol.Rejected(f"params={header.get('params')!r}: must be an object"[:200])
        if self.check is not None and op in self.handlers:
            try:
                self.check(str(op), header, nbytes)
            except (ValueError, TypeError) as e:  # InputError is a ValueError
                raise protocol.Rejected(str(e)) from None
        return time.monotonic() + REQUEST_DEADLINE + nbytes / MIN_RATE

    def _refuse(self, conn: socket.socket, message: str) -> None:
        """Send ``message`` as an error, then read (and drop) what the client still sends for a
        moment, so that it gets to read the reason instead of a reset connection."""
        log.info("request refused: %s", message)
        try:
            protocol.send(conn, protocol.error_header(message, "refused"), timeout=2.0)
            conn.shutdown(socket.SHUT_WR)
            end = time.monotonic() + 2.0
            scratch = bytearray(1 << 16)
            while time.monotonic() < end:
                conn.settimeout(max(0.01, end - time.monotonic()))
                if not conn.recv_into(scratch):
                    break
        except OSError:
            pass

    def _handle(self, conn: socket.socket) -> None:
        try:
            request, arrays = protocol.recv(conn, max_array_bytes=self.max_job_bytes,
                                            deadline=time.monotonic() + REQUEST_DEADLINE, check=self._check_request)
        except protocol.ConnectionClosed:
            return  # a probe (hello only)
        except protocol.Rejected as e:
            self._refuse(conn, str(e))
            return
        op = request.get("op")
        if op == "ping":
            protocol.send(conn, {"type": "result", "op": "ping"}, timeout=SEND_TIMEOUT)
            return
        if op == "shutdown":
            protocol.send(conn, {"type": "result", "op": "shutdown"}, timeout=SEND_TIMEOUT)
            log.info("shutdown requested")
            self.stop()
            return
        run_job(self, conn, str(op), self.handlers[str(op)], request.get("params") or {}, arrays)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nst_engine.bridge.server", description=__doc__.splitlines()[0])
    ap.add_argument("--state-dir", required=True, help="per-user folder for server.json and the log")
    ap.add_argument("--idle-timeout", type=float, default=900.0, help="exit after this many seconds without work")
    ap.add_argument("--no-preload", action="store_true", help="load the engine on the first job, not at start")
    ap.add_argument("--max-job-bytes", type=int, default=None,
                    help="bytes of pixels one request may carry [default: half the RAM, 256 MiB..16 GiB]")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format=f"%(asctime)s nst-server[{os.getpid()}] %(message)s")
    from . import jobs

    server = Server(Path(args.state_dir), jobs.HANDLERS, idle_timeout=args.idle_timeout,
                    preload=None if args.no_preload else jobs.preload, check=jobs.check_request,
                    prepare=jobs.PREPARE, after_job=jobs.trim_caches, max_job_bytes=args.max_job_bytes)
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.bind()
    server.serve_forever()  # removes the state file however it ends
    return 0


if __name__ == "__main__":
    sys.exit(main())
