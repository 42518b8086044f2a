"""Where the bridge keeps its files: the config, the per-user state folder, the server's log. Stdlib only.

Copied verbatim into the installed plug-in (``nst_bridge/state.py``) next to ``client.py``.

Where the engine is comes from the bridge config that ``nst gimp-install`` writes next to the
plug-in (``nst-bridge.json``: the engine's Python and the folder to put on its ``PYTHONPATH``).
Environment overrides: ``NST_GIMP_CONFIG`` (another config file), ``NST_ENGINE_PYTHON`` (another
interpreter), ``NST_BRIDGE_STATE_DIR`` (where the server's state file lives).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any

CONFIG_NAME = "nst-bridge.json"
STATE_NAME = "server.json"
LOG_NAME = "server.log"
STARTING_NAME = "starting.json"
DEFAULT_IDLE_TIMEOUT = 900.0
START_TIMEOUT = float(os.environ.get("NST_BRIDGE_START_TIMEOUT", "180"))
LOG_MAX_BYTES = 1 << 20  # server.log is rotated to server.log.1 beyond this
INSTALL_HINT = "Run `nst gimp-install` from the Python environment where nst-gimp is installed, then restart GIMP."


class BridgeError(Exception):
    """Something the user must be told; the message says what to do."""


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


def make_private_dir(directory: Path) -> None:
    """Create ``directory`` (mode 0700) and make sure it is 0700."""
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.chmod(directory, 0o700)
    except OSError:
        pass


def read_state(directory: Path) -> dict[str, Any] | None:
    """The running server's state file (pid, port, token), or None if missing or malformed."""
    try:
        st = json.loads((directory / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(st, dict) or not isinstance(st.get("token"), str) or not st["token"]:
        return None
    port = st.get("port")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        return None
    return st


def log_tail(directory: Path, lines: int = 8) -> str:
    try:
        text = (directory / LOG_NAME).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""
    return "\n".join(text.strip().splitlines()[-lines:])


def rotate_log(directory: Path, max_bytes: int = LOG_MAX_BYTES) -> bool:
    """Move server.log to server.log.1 (replacing it) when it is over ``max_bytes``. True if moved."""
    log = directory / LOG_NAME
    try:
        if log.stat().st_size <= max_bytes:
            return False
        os.replace(log, directory / (LOG_NAME + ".1"))
    except OSError:
        return False
    return True


def alive(pid: int) -> bool:
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


class Lock:
    """An exclusive lock file, so two plug-in runs do not both start a server."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fh: Any = None

    def __enter__(self) -> "Lock":
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
