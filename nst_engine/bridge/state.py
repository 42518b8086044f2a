"""Where the bridge keeps its files: the config, the per-user state folder, the server's log. Stdlib only.

Copied verbatim into the installed plug-in (``nst_bridge/state.py``) next to ``client.py``.

Where the engine is comes from the bridge config that ``nst gimp-install`` writes next to the
plug-in (``nst-bridge.json``: the engine's Python and the folder to put on its ``PYTHONPATH``).
Environment overrides: ``NST_GIMP_CONFIG`` (another config file), ``NST_ENGINE_PYTHON`` (another
interpreter), ``NST_BRIDGE_STATE_DIR`` (where the server's state file lives).

Flatpak GIMP: the sandbox cannot start the engine's Python, and it sees neither the host's
``$XDG_RUNTIME_DIR`` nor (with reduced permissions) ``~/.cache``; it always sees its own
``~/.var/app/org.gimp.GIMP/``. So inside Flatpak (or with ``"flatpak": true`` in the config) the
state folder is ``~/.var/app/org.gimp.GIMP/cache/nst-gimp`` (`flatpak_state_dir`), the client
never spawns a server, and the user starts one outside GIMP with `start_outside_command` (``nst
serve --flatpak``), which writes its state file there. The loopback network is shared (GIMP's
Flatpak has ``--share=network``), so the plug-in reaches that server on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import shlex
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
FLATPAK_APP = "org.gimp.GIMP"  # GIMP's Flatpak (Flathub); FLATPAK_ID names another one
STATE_FOLDER = "nst-gimp"


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


def in_flatpak(cfg: dict[str, Any] | None = None) -> bool:
    """Is this process inside a Flatpak sandbox (or does the config say the plug-in is)?"""
    if cfg and cfg.get("flatpak"):
        return True
    return bool(os.environ.get("FLATPAK_ID")) or os.path.isfile("/.flatpak-info")


def flatpak_state_dir(app_id: str | None = None) -> Path:
    """The state folder that a Flatpak app and the host both see: the app's own cache folder,
    ``~/.var/app/APP/cache/nst-gimp`` (the sandbox keeps $HOME's path)."""
    app = app_id or os.environ.get("FLATPAK_ID") or FLATPAK_APP
    return Path.home() / ".var" / "app" / app / "cache" / STATE_FOLDER


def state_dir(cfg: dict[str, Any] | None = None) -> Path:
    """Per-user folder for the server's state file and log: ``NST_BRIDGE_STATE_DIR``, else the
    config's ``state_dir``, else `flatpak_state_dir` inside Flatpak, else the platform's."""
    if os.environ.get("NST_BRIDGE_STATE_DIR"):
        return Path(os.environ["NST_BRIDGE_STATE_DIR"])
    if cfg and cfg.get("state_dir"):
        return Path(cfg["state_dir"])
    if in_flatpak(cfg):
        return flatpak_state_dir()
    return native_state_dir()


def native_state_dir() -> Path:
    """The platform's per-user folder (what a GIMP outside Flatpak uses)."""
    if sys.platform == "win32":
        base = Path(os.environ.get("LOCALAPPDATA") or Path.home() / "AppData" / "Local")
    elif sys.platform == "darwin":
        base = Path.home() / "Library" / "Caches"
    elif os.environ.get("XDG_RUNTIME_DIR") and os.path.isdir(os.environ["XDG_RUNTIME_DIR"]):
        base = Path(os.environ["XDG_RUNTIME_DIR"])
    else:
        base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / STATE_FOLDER


def serve_base_command(engine_python: str) -> list[str]:
    """The command (argv) that runs ``nst serve`` with the engine's Python: the ``nst`` script
    beside that Python when there is one, else ``PYTHON -m nst_engine.cli.serve``."""
    folder = os.path.dirname(engine_python)
    for name in ("nst.exe", "nst") if sys.platform == "win32" else ("nst",):
        script = os.path.join(folder, name)
        if os.path.isfile(script):
            return [script, "serve"]
    return [engine_python, "-m", "nst_engine.cli.serve"]


def start_outside_command(cfg: dict[str, Any], directory: Path) -> str:
    """The shell command that starts the engine server outside GIMP for the state folder
    ``directory``: ``…/nst serve --flatpak`` for the Flatpak folder, else ``--state-dir DIR``."""
    base = cfg.get("serve_command")
    if not (isinstance(base, list) and base and all(isinstance(x, str) for x in base)):
        base = serve_base_command(str(cfg.get("engine_python") or "nst"))
    if Path(directory) == flatpak_state_dir(FLATPAK_APP):
        tail = ["--flatpak"]
    else:
        tail = ["--state-dir", str(directory)]
    words = [shlex.quote(w) for w in [*base, *tail]]
    pythonpath = cfg.get("engine_pythonpath")
    if base[1:2] == ["-m"] and isinstance(pythonpath, str) and pythonpath:
        words.insert(0, "PYTHONPATH=" + shlex.quote(pythonpath))
    return " ".join(words)


def start_outside_message(cfg: dict[str, Any], directory: Path) -> str:
    """What the plug-in says when it may not start the engine itself (Flatpak) and none runs."""
    return ("No NST engine is running, and GIMP in Flatpak cannot start it itself (the sandbox cannot run "
            "the engine's Python). Start it outside GIMP, in a terminal, and leave it running:\n\n"
            f"    {start_outside_command(cfg, directory)}\n\n"
            "then run the filter again. (To have it start with your session, see \"Flatpak GIMP\" in "
            "nst-gimp's README: a systemd user service.)")


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
