"""Client side of the bridge: find the engine, start or reuse its server, run one job. Stdlib only.

Copied verbatim into the installed plug-in next to ``protocol.py`` (as the package
``nst_bridge``), and importable from the engine for tests.

Where the engine is comes from the bridge config that ``nst gimp-install`` writes next to the
plug-in (``nst-bridge.json``: the engine's Python and the folder to put on its ``PYTHONPATH``).
Environment overrides: ``NST_GIMP_CONFIG`` (another config file), ``NST_ENGINE_PYTHON`` (another
interpreter), ``NST_BRIDGE_STATE_DIR`` (where the server's state file lives).

The server (``python -m nst_engine.bridge.server``) listens on 127.0.0.1 on a free port and
writes ``server.json`` (pid, port, token; mode 0600, in a 0700 folder) into the per-user state
folder. Only someone who can read that file can use the server. It keeps the VGG encoder loaded
between calls and exits after ``idle_timeout`` seconds without work.
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
except ImportError:  # pragma: no cover - loaded as a plain module
    import protocol  # type: ignore[no-redef]

CONFIG_NAME = "nst-bridge.json"
STATE_NAME = "server.json"
LOG_NAME = "server.log"
STARTING_NAME = "starting.json"
DEFAULT_IDLE_TIMEOUT = 900.0
START_TIMEOUT = float(os.environ.get("NST_BRIDGE_START_TIMEOUT", "180"))
INSTALL_HINT = "Run `nst gimp-install` from the Python environment where nst-gimp is installed, then restart GIMP."


class BridgeError(Exception):
    """Something the user must be told; the message says what to do."""


class Cancelled(BridgeError):
    """The progress handler asked to stop."""


# --------------------------------------------------------------------------------------------
# configuration
# --------------------------------------------------------------------------------------------

def default_config_path() -> Path:
    return Path(__file__).resolve().parent.parent / CONFIG_NAME


def load_config(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """The bridge config, with the environment overrides applied. Raises BridgeError."""
    path = Path(path or os.environ.get("NST_GIMP_CONFIG") or default_config_path())
    try:
        cfg = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BridgeError(f"The NST engine is not configured: {path} does not exist. {INSTALL_HINT}") from None
    except (OSError, ValueError) as e:
        raise BridgeError(f"The NST bridge config {path} cannot be read ({e}). {INSTALL_HINT}") from None
    if not isinstance(cfg, dict) or not isinstance(cfg.get("engine_python"), str):
        raise BridgeError(f"The NST bridge config {path} has no 'engine_python'. {INSTALL_HINT}")
    if os.environ.get("NST_ENGINE_PYTHON"):
        cfg["engine_python"] = os.environ["NST_ENGINE_PYTHON"]
    cfg["_path"] = str(path)
    return cfg


def state_dir(cfg: dict[str, Any] | None = None) -> Path:
    """Per-user folder for the server's state file and log."""
    if os.environ.get("NST_BRIDGE_STATE_DIR"):
        return Path(os.environ["NST_BRIDGE_STATE_DIR"])
    if cfg and cfg.get("state_dir"):
        return Path(cfg["state_dir"])
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        base = Path(os.environ["XDG_RUNTIME_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "nst-gimp"


def read_state(directory: Path) -> dict[str, Any] | None:
    try:
        st = json.loads((directory / STATE_NAME).read_text(encoding="utf-8"))
        return st if isinstance(st, dict) and "port" in st and "token" in st else None
    except (OSError, ValueError):
        return None


def log_tail(directory: Path, lines: int = 8) -> str:
    try:
        text = (directory / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


# --------------------------------------------------------------------------------------------
# the connection
# --------------------------------------------------------------------------------------------

def _alive(pid: int) -> bool:
    """Is process ``pid`` running (not gone, not a zombie)? POSIX only."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        pass
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            return fh.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


class _Lock:
    """An exclusive lock file, so two plug-in runs do not both start a server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def __enter__(self) -> "_Lock":
        self.fh = open(self.path, "a+b")
        try:
            if sys.platform == "win32":
                import msvcrt

                deadline = time.monotonic() + START_TIMEOUT
                while True:
                    try:
                        msvcrt.locking(self.fh.fileno(), msvcrt.LK_NBLCK, 1)
                        break
                    except OSError:
                        if time.monotonic() > deadline:
                            raise
                        time.sleep(0.1)
            else:
                import fcntl

                fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX)
        except Exception:
            self.fh.close()
            raise
        return self

    def __exit__(self, *exc: Any) -> None:
        self.fh.close()  # releases the lock


class Engine:
    """One engine (server) as seen from the plug-in. ``timing`` records the last call's costs."""

    def __init__(self, cfg: dict[str, Any]) -> None:
        self.cfg = cfg
        self.dir = state_dir(cfg)
        self.timing: dict[str, Any] = {}
        self._pending: subprocess.Popen | None = None

    # --- server discovery / start ----------------------------------------------------------
    def _hello(self, st: dict[str, Any], timeout: float = 5.0) -> tuple[socket.socket, dict[str, Any]]:
        sock = socket.create_connection(("127.0.0.1", int(st["port"])), timeout=timeout)
        try:
            protocol.send(sock, {"op": "hello", "token": st["token"], "protocol": protocol.PROTOCOL_VERSION})
            reply, _ = protocol.recv(sock, max_array_bytes=0)
            if reply.get("type") != "hello":
                raise protocol.ProtocolError(reply.get("message") or f"unexpected reply {reply.get('type')!r}")
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
        except (OSError, protocol.ProtocolError):
            return None
        if self._matches(hello):
            return sock, hello
        # A server of another engine (reinstalled elsewhere): ask it to leave, start ours.
        try:
            protocol.send(sock, {"op": "shutdown"})
            protocol.recv(sock, max_array_bytes=0)
        except (OSError, protocol.ProtocolError):
            pass
        sock.close()
        return None

    def _spawn(self) -> subprocess.Popen:
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
            raise BridgeError(f"The NST engine could not be started ({python}: {e}). {INSTALL_HINT}") from None
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
        return pid if _alive(pid) else None

    def _make_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        try:
            os.chmod(self.dir, 0o700)
        except OSError:
            pass

    def prestart(self) -> bool:
        """Start the server in the background if none runs (while the user is in the dialog, say),
        without waiting for it. True if one was started; `connect` then waits for that one."""
        found = self._try_existing()
        if found is not None:
            found[0].close()
            return False
        self._make_dir()
        with _Lock(self.dir / "spawn.lock"):
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
            with _Lock(self.dir / "spawn.lock"):
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

    def _wait_for(self, pid: int, proc: subprocess.Popen | None) -> tuple[socket.socket, dict[str, Any]]:
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
            sock.settimeout(None)  # a step can take long; the server's death closes the socket
            protocol.send(sock, {"op": op, "params": params}, arrays)
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
