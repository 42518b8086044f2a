"""One job on an authenticated connection: the engine lock, progress, cancel, the reply.

The engine never waits for a socket: progress goes into a bounded queue that the connection's
own sender thread empties (a client that stops reading loses old progress messages, then its
job, never the engine). While waiting for the engine lock or working, a watcher reads the
connection: data or EOF from the client means stop. Preparing the inputs (reading a style file)
runs before the engine lock is taken, so a slow file holds only its own job.
"""
from __future__ import annotations

import collections
import logging
import math
import socket
import threading
import time
import traceback
from typing import TYPE_CHECKING, Any, Callable

from . import protocol

if TYPE_CHECKING:
    from .server import Server

log = logging.getLogger("nst_engine.bridge.server")

Arrays = dict[str, tuple[list[int], Any]]
Handler = Callable[[dict[str, Any], Arrays, Callable[[dict[str, Any]], None], threading.Event],
                   tuple[dict[str, Any], Arrays]]
Prepare = Callable[[dict[str, Any], Arrays], tuple[dict[str, Any], Arrays]]

SEND_TIMEOUT = 30.0  # s a client may go without taking any progress or result bytes
PROGRESS_QUEUE = 256  # progress messages held for a slow client (the oldest go first)


def clean(value: Any) -> Any:
    """JSON-safe: non-finite floats → None."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    return value


class Outbox:
    """Messages to one client, sent by their own thread with a send timeout."""

    def __init__(self, conn: socket.socket, stop: threading.Event, send_lock: threading.Lock) -> None:
        self.conn, self.stop, self.send_lock = conn, stop, send_lock
        self.queue: collections.deque[dict[str, Any]] = collections.deque(maxlen=PROGRESS_QUEUE)
        self.cond = threading.Condition()
        self.closed = False
        self.thread = threading.Thread(target=self._loop, name="progress", daemon=True)
        self.thread.start()

    def put(self, message: dict[str, Any]) -> None:
        """Never blocks (a full queue drops its oldest message)."""
        with self.cond:
            self.queue.append(message)
            self.cond.notify()

    def _loop(self) -> None:
        while True:
            with self.cond:
                while not self.queue and not self.closed:
                    self.cond.wait()
                if not self.queue:
                    return
                message = self.queue.popleft()
            try:
                with self.send_lock:
                    protocol.send(self.conn, message, timeout=SEND_TIMEOUT)
            except OSError:
                self.stop.set()  # the client does not read (or is gone): stop its job
                return

    def close(self) -> None:
        """Send what is queued (each message within SEND_TIMEOUT), then end the thread."""
        with self.cond:
            self.closed = True
            self.cond.notify()
        self.thread.join()


def _watch(conn: socket.socket, stop: threading.Event, done: threading.Event, op: str) -> None:
    """Any data or EOF from the client means: stop."""
    while True:
        try:
            conn.recv(1)
        except socket.timeout:  # the senders' timeout applies to this socket too: keep waiting
            if done.is_set():
                return
            continue
        except OSError:
            pass
        break
    if not done.is_set():
        log.info("client went away: stopping %s", op)
    stop.set()


def run_job(server: "Server", conn: socket.socket, op: str, handler: Handler, params: dict[str, Any],
            arrays: Arrays) -> None:
    """Run ``handler`` for one request and send its result (or error) on ``conn``."""
    stop, done, send_lock = threading.Event(), threading.Event(), threading.Lock()
    outbox = Outbox(conn, stop, send_lock)
    threading.Thread(target=_watch, args=(conn, stop, done, op), name="watch", daemon=True).start()

    def progress(info: dict[str, Any]) -> None:
        if not stop.is_set():
            outbox.put(clean({"type": "progress", **info}))

    t0 = time.monotonic()
    job = server.next_job()
    reply: tuple[dict[str, Any], Arrays | None]
    try:
        reply = _work(server, job, op, handler, params, arrays, progress, stop, t0)
    finally:
        done.set()
        outbox.close()
    if stop.is_set():
        log.info("job %d: stopped (client gone) after %.2f s", job, time.monotonic() - t0)
        return
    header, out = reply
    if header.get("type") == "result":
        header.setdefault("timing", {}).update(total_s=time.monotonic() - t0, job=job)
    try:
        with send_lock:
            protocol.send(conn, header, out, timeout=SEND_TIMEOUT)
    except OSError as e:
        log.info("job %d: the reply was not taken (%s)", job, e)
        return
    if header.get("type") == "result":
        log.info("job %d: done in %.2f s", job, time.monotonic() - t0)


def _work(server: "Server", job: int, op: str, handler: Handler, params: dict[str, Any], arrays: Arrays,
          progress: Callable[[dict[str, Any]], None], stop: threading.Event,
          t0: float) -> tuple[dict[str, Any], Arrays | None]:
    """(reply header, reply arrays): the result, or an error header."""
    try:
        prepare = server.prepare.get(op)
        if prepare is not None:
            params, arrays = prepare(params, arrays)  # outside the engine lock: file I/O
        if server.engine_lock.locked():
            progress({"stage": "waiting for the engine", "step": 0, "total": 0})
        while not server.engine_lock.acquire(timeout=0.25):
            if stop.is_set():
                return {"type": "error", "kind": "Cancelled", "message": "stopped"}, None
        try:
            wait_s = time.monotonic() - t0
            log.info("job %d: %s started", job, op)
            header, out = handler(params, arrays, progress, stop)
            if server.after_job is not None:
                server.after_job()
        finally:
            server.engine_lock.release()
    except Exception as e:
        message = error_message(e)
        if not stop.is_set():
            log.info("job %d: error: %s", job, message)
            if not getattr(e, "exit_code", None) and not isinstance(e, MemoryError):
                log.info("%s", traceback.format_exc())
        return protocol.error_header(message, type(e).__name__), None
    header = clean({"type": "result", "op": op, **header})
    header.setdefault("timing", {}).update(wait_s=wait_s)
    return header, out


def error_message(e: BaseException) -> str:
    from ..errors import NSTError

    if isinstance(e, NSTError):
        return str(e)
    if isinstance(e, MemoryError):
        return "The engine ran out of memory: use a smaller Size or a smaller selection."
    return f"Engine error ({type(e).__name__}): {e}"
