"""Client side of the bridge: find the engine, start or reuse its server, run one job. Stdlib only.

Copied verbatim into the installed plug-in next to ``protocol.py`` and ``state.py`` (as the
package ``nst_bridge``), and importable from the engine for tests. The config, the state folder
and the log are `state.py`'s.

The server (``python -m nst_engine.bridge.server``) listens on 127.0.0.1 on a free port and
writes ``server.json`` (pid, port, token; mode 0600, in a 0700 folder) into the per-user state
folder. Only someone who can read that file can use the server, and the client sends nothing
(no pixels, no request) before the server has proved that it knows the token too: a process that
took the port of a dead server is refused. The server keeps the VGG encoder loaded between calls
and exits after ``idle_timeout`` seconds without work.

In Flatpak the client never starts a server (the sandbox cannot run the engine's Python): it
uses the one the user started outside GIMP with ``nst serve --flatpak``, whichever Python that
is, and when none runs it says which command starts it (`state.start_outside_message`).
"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

try:  # as the package nst_bridge inside the plug-in, or as nst_engine.bridge
    from . import protocol
    from .state import (CONFIG_NAME, DEFAULT_IDLE_TIMEOUT, INSTALL_HINT, LOG_NAME, START_TIMEOUT,  # noqa: F401
                        STARTING_NAME, STATE_NAME, BridgeError, Lock, alive, load_config, log_tail,
                        make_private_dir, read_state, rotate_log, state_dir,
                        in_flatpak, start_outside_command, start_outside_message)
except ImportError:  # pragma: no cover - loaded as a plain module
    import protocol  # type: ignore[no-redef]
    from state import (CONFIG_NAME, DEFAULT_IDLE_TIMEOUT, INSTALL_HINT, LOG_NAME, START_TIMEOUT,  # type: ignore[no-redef]  # noqa: F401
                       STARTING_NAME, STATE_NAME, BridgeError, Lock, alive, load_config, log_tail,
                       make_private_dir, read_state, rotate_log, state_dir,
                       in_flatpak, start_outside_command, start_outside_message)

__all__ = ["BridgeError", "Cancelled", "Engine", "NotOurServer", "CONFIG_NAME", "LOG_NAME", "STATE_NAME",
           "STARTING_NAME", "load_config", "log_tail", "read_state", "state_dir"]  # state.py's names: the plug-in's API

HANDSHAKE_TIMEOUT = 10.0  # s for the server's challenge and hello
SEND_TIMEOUT = 60.0  # s the server may go without taking any of a request


class Cancelled(BridgeError):
    """The progress handler asked to stop."""


class NotOurServer(protocol.ProtocolError):
    """Whatever listens on the state file's port could not prove that it knows the token."""


class Engine:
    """One engine (server) as seen from the plug-in. ``timing`` records the last call's costs."""

    def __init__(self, cfg: dict[str, Any], directory: "os.PathLike[str] | str | None" = None) -> None:
        """``directory``: the state folder, instead of `state_dir`'s choice."""
        self.cfg = cfg
        self.dir = Path(directory) if directory is not None else state_dir(cfg)
        self.timing: dict[str, Any] = {}
        self._pending: subprocess.Popen[bytes] | None = None
        self.impostor_seen = False  # saw a listener on the state file's port that could not prove the token
        # Flatpak: no server of ours can be started, so any server here that proves the token is the engine.
        self.can_spawn = not in_flatpak(cfg)
        self.other_server: dict[str, Any] | None = None  # a server that answered but that we cannot use

    # --- server discovery / start ----------------------------------------------------------
    def _hello(self, st: dict[str, Any], timeout: float = HANDSHAKE_TIMEOUT) -> tuple[socket.socket, dict[str, Any]]:
        """Connect and authenticate both ways: the server proves it knows the token before the
        client proves it (the token itself never travels). Raises NotOurServer, ProtocolError, OSError."""
        sock = socket.create_connection(("127.0.0.1", int(st["port"])), timeout=timeout)
        try:
            deadline = time.monotonic() + timeout
            token, mine = str(st["token"]), protocol.nonce()
            protocol.send(sock, {"op": "hello", "nonce": mine, "protocol": protocol.PROTOCOL_VERSION})
            challenge, _ = protocol.recv(sock, max_array_bytes=0, deadline=deadline)
            if challenge.get("type") == "error":  # a server of ours that refuses (busy, old protocol)
                raise protocol.ProtocolError(str(challenge.get("message"))[:200])
            if challenge.get("type") != "challenge":
                raise NotOurServer(str(challenge.get("message") or f"unexpected reply {challenge.get('type')!r}")[:200])
            theirs = challenge.get("nonce")
            if (not isinstance(theirs, str) or not protocol.is_nonce(theirs)
                    or not protocol.proof_ok(challenge.get("proof"), token, "server", mine, theirs)):
                raise NotOurServer("the process on the server's port does not know the token")
            protocol.send(sock, {"op": "auth", "proof": protocol.proof(token, "client", mine, theirs)})
            reply, _ = protocol.recv(sock, max_array_bytes=0, deadline=deadline)
            if reply.get("type") != "hello":
                raise protocol.ProtocolError(str(reply.get("message") or f"unexpected reply {reply.get('type')!r}")[:200])
            return sock, reply
        except BaseException:
            sock.close()
            raise

    def _matches(self, hello: dict[str, Any]) -> bool:
        """Is this server the engine the config names (same interpreter, same protocol)?"""
        want = self.cfg.get("engine_python", "")
        return hello.get("protocol") == protocol.PROTOCOL_VERSION and (
            os.path.realpath(hello.get("python", "")) == os.path.realpath(want)
            or hello.get("python") == want
        )

    def _try_existing(self) -> tuple[socket.socket, dict[str, Any]] | None:
        st = read_state(self.dir)
        if st is None:
            return None
        try:
            sock, hello = self._hello(st)
        except NotOurServer:
            self.impostor_seen = True  # not ours: never talk to it again; start our own server
            return None
        except (OSError, protocol.ProtocolError):
            return None
        if self._matches(hello) or (not self.can_spawn and hello.get("protocol") == protocol.PROTOCOL_VERSION):
            return sock, hello
        if not self.can_spawn:  # never stop the server the user started: it may serve another plug-in
            self.other_server = hello
            sock.close()
            return None
        # A server of another engine (reinstalled elsewhere): ask it to leave, start ours.
        try:
            protocol.send(sock, {"op": "shutdown"})
            protocol.recv(sock, max_array_bytes=0)
        except (OSError, protocol.ProtocolError):
            pass
        sock.close()
        return None

    def _spawn(self) -> subprocess.Popen[bytes]:
        if not self.can_spawn:
            other = self.other_server
            if other is not None:
                raise BridgeError(
                    f"The NST engine running outside GIMP (pid {other.get('pid')}, {other.get('python')}) speaks "
                    f"bridge protocol {other.get('protocol')}, this plug-in {protocol.PROTOCOL_VERSION}: one of them "
                    f"is out of date. Stop that engine and start it again with the nst-gimp this plug-in came "
                    f"from:\n\n    {start_outside_command(self.cfg, self.dir)}\n\n(or run `nst gimp-install` again "
                    "from the engine's environment and restart GIMP).")
            raise BridgeError(start_outside_message(self.cfg, self.dir))
        python = self.cfg["engine_python"]
        if not os.path.isfile(python):
            raise BridgeError(
                f"The NST engine's Python was not found at {python}. Run `nst gimp-install` from the "
                "Python environment where nst-gimp is installed (or set NST_ENGINE_PYTHON to that "
                "Python), then restart GIMP."
            )
        env = dict(os.environ)
        extra = self.cfg.get("engine_pythonpath")
        if extra:
            env["PYTHONPATH"] = extra + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
        for var in ("PYTHONHOME", "PYTHONSTARTUP"):  # GIMP's own Python settings must not leak in
            env.pop(var, None)
        idle = float(self.cfg.get("idle_timeout", DEFAULT_IDLE_TIMEOUT))
        cmd = [python, "-m", "nst_engine.bridge.server", "--state-dir", str(self.dir), "--idle-timeout", str(idle)]
        rotate_log(self.dir)
        log = open(self.dir / LOG_NAME, "ab")
        kw: dict[str, Any] = {}
        if sys.platform == "win32":
            kw["creationflags"] = 0x00000008 | 0x00000200 | 0x08000000  # DETACHED | NEW_GROUP | NO_WINDOW
        else:
            kw["start_new_session"] = True  # GIMP killing the plug-in must not kill the server
        try:
            proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env,
                                    cwd=str(self.dir), close_fds=True, **kw)
        except OSError as e:
            raise BridgeError(f"The NST engine could not be started ({python}: {e}). {INSTALL_HINT} Or start "
                              f"it outside GIMP and leave it running: {start_outside_command(self.cfg, self.dir)}"
                              ) from None
        finally:
            log.close()
        # Tell other plug-in processes that a server is on its way (they wait instead of spawning).
        (self.dir / STARTING_NAME).write_text(json.dumps({"pid": proc.pid, "time": time.time()}))
        return proc

    def _starting_pid(self) -> int | None:
        """The pid of a server another process started moments ago and that is still coming up."""
        if sys.platform == "win32":
            return None
        try:
            st = json.loads((self.dir / STARTING_NAME).read_text())
            pid, started = int(st["pid"]), float(st["time"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if time.time() - started > START_TIMEOUT:
            return None
        st = read_state(self.dir)
        if st is not None and st.get("pid") == pid:
            return None  # it has started (and, if it does not answer, died since)
        return pid if alive(pid) else None

    def _make_dir(self) -> None:
        make_private_dir(self.dir)

    def prestart(self) -> bool:
        """Start the server in the background if none runs (while the user is in the dialog, say),
        without waiting for it. True if one was started; `connect` then waits for that one."""
        if not self.can_spawn:
            return False  # Flatpak: the run says how to start one if none runs
        found = self._try_existing()
        if found is not None:
            found[0].close()
            return False
        self._make_dir()
        with Lock(self.dir / "spawn.lock"):
            found = self._try_existing()
            if found is not None:
                found[0].close()
                return False
            if self._starting_pid() is not None:
                return False
            self._pending = self._spawn()
        return True

    def connect(self) -> tuple[socket.socket, dict[str, Any]]:
        """An authenticated connection to a running server of this engine (started if needed)."""
        t0 = time.monotonic()
        self.timing = {"spawned": False}
        found = self._try_existing()
        if found is None:
            self._make_dir()
            with Lock(self.dir / "spawn.lock"):
                found = self._try_existing()  # somebody else may have started one meanwhile
                if found is None:
                    pending, self._pending = self._pending, None
                    self.timing["spawned"] = True
                    if pending is not None and pending.poll() is None:
                        self.timing["prestarted"] = True
                        found = self._wait_for(pending.pid, pending)
                    else:
                        pid = self._starting_pid()
                        if pid is not None:
                            found = self._wait_for(pid, None)
                        else:
                            proc = self._spawn()
                            found = self._wait_for(proc.pid, proc)
        self.timing["connect_s"] = time.monotonic() - t0
        return found

    def _wait_for(self, pid: int, proc: subprocess.Popen[bytes] | None) -> tuple[socket.socket, dict[str, Any]]:
        """Wait until the server ``pid`` has written its state file and answers."""
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            code = proc.poll() if proc is not None else None
            st = read_state(self.dir)
            if st and st.get("pid") == pid:
                try:
                    return self._hello(st)
                except (OSError, protocol.ProtocolError):
                    pass
            if code is not None or (proc is None and self._starting_pid() != pid):
                tail = log_tail(self.dir)
                raise BridgeError(
                    f"The NST engine exited while starting (exit code {code}). "
                    f"{INSTALL_HINT}\nLast lines of {self.dir / LOG_NAME}:\n{tail}"
                )
            time.sleep(0.05)
        raise BridgeError(f"The NST engine did not start within {START_TIMEOUT:.0f} s. See {self.dir / LOG_NAME}.")

    # --- one job ---------------------------------------------------------------------------
    def call(
        self,
        op: str,
        params: dict[str, Any],
        arrays: dict[str, tuple[list[int], Any]] | None = None,
        on_progress: Callable[[dict[str, Any]], None] | None = None,
    ) -> tuple[dict[str, Any], dict[str, tuple[list[int], bytearray]]]:
        """Run ``op`` and return the result (header, arrays). Raises BridgeError with a message."""
        t0 = time.monotonic()
        sock, hello = self.connect()
        self.timing["server_pid"] = hello.get("pid")
        first_progress = None
        try:
            try:
                protocol.send(sock, {"op": op, "params": params}, arrays, timeout=SEND_TIMEOUT)
            except OSError:  # the server refused the request mid-way: its reason may be waiting
                sock.settimeout(2.0)
                header, _ = protocol.recv(sock, max_array_bytes=0)
                raise BridgeError(str(header.get("message") or "the engine refused the request")) from None
            sock.settimeout(None)  # a step can take long; the server's death closes the socket
            while True:
                header, data = protocol.recv(sock)
                kind = header.get("type")
                if kind == "progress":
                    if first_progress is None:
                        first_progress = time.monotonic() - t0
                    if on_progress is not None:
                        on_progress(header)  # may raise Cancelled: we close, the server stops
                elif kind == "result":
                    self.timing.update(total_s=time.monotonic() - t0, first_progress_s=first_progress,
                                       server=header.get("timing", {}))
                    return header, data
                elif kind == "error":
                    raise BridgeError(str(header.get("message") or "the engine reported an unknown error"))
                else:
                    raise BridgeError(f"The NST engine sent an unexpected message {kind!r}.")
        except protocol.ProtocolError as e:
            raise BridgeError(
                "The NST engine stopped unexpectedly (it crashed or was killed) or sent garbage "
                f"({e}). Nothing was changed. Try again; if it keeps failing, see {self.dir / LOG_NAME}."
            ) from None
        except OSError as e:
            raise BridgeError(f"Lost the connection to the NST engine: {e}. Try again.") from None
        finally:
            sock.close()

    def running(self) -> dict[str, Any] | None:
        """The hello of a server that answers in this state folder and proves the token (any
        engine, any Python), or None; starts and stops nothing."""
        st = read_state(self.dir)
        if st is None:
            return None
        try:
            sock, hello = self._hello(st)
        except (OSError, protocol.ProtocolError):
            return None
        sock.close()
        return hello

    def shutdown(self) -> bool:
        """Ask a running server to exit. True if one was running."""
        found = self._try_existing()
        if found is None:
            return False
        sock, _ = found
        try:
            protocol.send(sock, {"op": "shutdown"})
            protocol.recv(sock, max_array_bytes=0)
        except (OSError, protocol.ProtocolError):
            pass
        finally:
            sock.close()
        return True
