"""``nst gimp-install``: put the GIMP 3 plug-in into GIMP's user folder and point it at this engine.

Installs ``plug-ins/nst-gimp/``::

    nst-gimp.py          the plug-in (executable; GIMP runs plug-ins/NAME/NAME.py)
    nst_gimp_dialog.py   its dialogs (imported for interactive runs only)
    nst_gimp_engine.py   the engine's parameters, the progress bar, checking the engine's pixels
    nst_gimp_frames.py   Filters ▸ Animation ▸ Neural Style Transfer (frames): an animation into a new image
    nst_gimp_layers.py   reading and writing GIMP pixels, the regions to process
    nst_gimp_spec.py     the argument spec, checked against what GIMP registered, and the messages
    nst_bridge/          the bridge client, its state files and the time estimate (standard library only), copied
                         from nst_engine.bridge
    nst-gimp-args.json   the procedures' arguments, generated from StyleConfig and from what the
                         engine's Python reports (`engine_facts`): the shipped models, whether
                         CUDA is there, the measured cost of an optimizer step
    nst-bridge.json      where the engine is: this Python and the folder holding nst_engine, the
                         `nst serve` command; in a Flatpak GIMP's folder also "flatpak": true (the
                         plug-in then uses the server the user starts with `nst serve --flatpak`)

into every GIMP 3.x user folder found (native, and Flatpak on Linux), or into the default one of
the newest GIMP 3 if none exists yet; ``--gimp-config-dir`` names one explicitly. Running it
again changes nothing unless something changed; ``--uninstall`` removes the folder again.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .bridge.arguments import EngineFacts

PLUGIN_NAME = "nst-gimp"
DESCRIPTION = """Install the GIMP 3 plug-in into GIMP's user folder and point it at this engine.

Puts plug-ins/nst-gimp/ (the plug-in, its bridge client, its arguments generated from the engine's
settings, and nst-bridge.json naming this Python) into every GIMP 3.x user folder found (Linux:
~/.config/GIMP/3.x and the Flatpak's ~/.var/app/org.gimp.GIMP/config/GIMP/3.x; macOS:
~/Library/Application Support/GIMP/3.x; Windows: %APPDATA%\\GIMP\\3.x), or creates the default one
if there is none yet. The dialog's time estimate comes from one optimizer step timed on this
computer (the first time only; --remeasure times it again). Safe to run again; restart GIMP
afterwards."""
PLUGIN_MODULES = ("nst_gimp_dialog.py", "nst_gimp_engine.py", "nst_gimp_frames.py", "nst_gimp_layers.py",
                  "nst_gimp_spec.py")  # gimp_plugin/ modules installed beside it
NEWEST_KNOWN = "3.0"  # the user folder to create when no GIMP 3.x folder exists yet
_VERSION_DIR = re.compile(r"^3\.(\d+)$")


def _gimp_bases() -> list[Path]:
    """Folders that hold GIMP's per-version user folders (``.../GIMP``) on this platform."""
    home = Path.home()
    if sys.platform == "win32":
        return [Path(os.environ.get("APPDATA") or home / "AppData" / "Roaming") / "GIMP"]
    if sys.platform == "darwin":
        return [home / "Library" / "Application Support" / "GIMP"]
    xdg = Path(os.environ.get("XDG_CONFIG_HOME") or home / ".config")
    return [xdg / "GIMP", home / ".var" / "app" / "org.gimp.GIMP" / "config" / "GIMP"]


def find_gimp_dirs() -> tuple[list[Path], bool]:
    """(GIMP 3.x user folders to install into, whether they exist already).

    ``GIMP3_DIRECTORY`` (GIMP's own override of its user folder) wins when set.
    """
    if os.environ.get("GIMP3_DIRECTORY"):
        d = Path(os.environ["GIMP3_DIRECTORY"])
        return [d], d.is_dir()
    found = []
    for base in _gimp_bases():
        if base.is_dir():
            for child in base.iterdir():
                if child.is_dir() and _VERSION_DIR.match(child.name):
                    found.append(child)
    if found:
        return sorted(found, key=lambda p: (str(p.parent), int(_VERSION_DIR.match(p.name).group(1)))), True  # type: ignore[union-attr]
    return [_gimp_bases()[0] / NEWEST_KNOWN], False


def _plugin_source() -> Path:
    here = Path(__file__).resolve().parent
    candidates = [here.parent / "gimp_plugin" / "nst_gimp.py"]
    try:
        import gimp_plugin  # installed as a package next to nst_engine

        candidates.insert(0, Path(gimp_plugin.__file__).resolve().parent / "nst_gimp.py")
    except ImportError:
        pass
    for c in candidates:
        if c.is_file():
            return c
    raise FileNotFoundError("gimp_plugin/nst_gimp.py is missing from this installation of nst-gimp")


def is_flatpak_profile(gimp_dir: Path) -> bool:
    """Is ``gimp_dir`` a Flatpak GIMP's user folder (``~/.var/app/APP/config/GIMP/3.x``)?"""
    parts = Path(gimp_dir).expanduser().absolute().parts
    return any(parts[i:i + 2] == (".var", "app") for i in range(len(parts) - 1))


def bridge_config(engine_python: str | None = None, flatpak: bool = False) -> dict[str, Any]:
    from . import __version__
    from .bridge.state import DEFAULT_IDLE_TIMEOUT, serve_base_command

    python = engine_python or sys.executable
    cfg: dict[str, Any] = {
        "format": 1,
        "engine_python": python,
        # The folder that holds nst_engine, for a source checkout that is not pip-installed.
        "engine_pythonpath": str(Path(__file__).resolve().parent.parent),
        "engine_version": __version__,
        "idle_timeout": DEFAULT_IDLE_TIMEOUT,
        # What the plug-in tells the user to run when it cannot start the engine itself.
        "serve_command": serve_base_command(python),
    }
    if flatpak:
        cfg["flatpak"] = True
    return cfg


def engine_facts(remeasure: bool = False) -> "EngineFacts":
    """What the plug-in's spec needs to know about this Python's engine: the shipped models,
    whether CUDA is available, and the step cost (`nst_engine.estimate`, measured once per
    machine and cached)."""
    import torch

    from .estimate import step_cost
    from .models import model_catalog

    try:
        models = [{"name": e.name, "painting": e.painting, "variant": e.variant} for e in model_catalog()]
    except Exception as e:  # a damaged model file must not stop the installation
        print(f"warning: could not list the shipped models ({e}); the dialog will offer .onnx files only",
              file=sys.stderr)
        models = []
    try:
        cost: dict[str, Any] | None = step_cost(refresh=remeasure).to_spec()
    except Exception as e:
        print(f"warning: could not time an optimizer step ({e}); the dialog will show no time estimate",
              file=sys.stderr)
        cost = None
    return {"models": models, "cuda": bool(torch.cuda.is_available()), "step_cost": cost}


def _same_python(python: str) -> bool:
    try:
        return os.path.samefile(python, sys.executable)
    except OSError:
        return False


def facts_for(engine_python: str | None = None, remeasure: bool = False) -> "EngineFacts":
    """`engine_facts` as the engine's Python sees them: here when it is this Python, else by
    running that Python (with the folder that holds nst_engine on its path)."""
    print("Checking the engine: shipped models, CUDA, the speed of an optimizer step "
          "(measured once per computer, a few seconds)...", file=sys.stderr, flush=True)
    if not engine_python or _same_python(engine_python):
        return engine_facts(remeasure)
    code = ("import json, sys; sys.path.insert(0, sys.argv[1]); from nst_engine.gimp_install import engine_facts; "
            "print('NST-FACTS ' + json.dumps(engine_facts(sys.argv[2] == '1')))")
    try:
        out = subprocess.run([engine_python, "-c", code, bridge_config(engine_python)["engine_pythonpath"],
                              "1" if remeasure else "0"],
                             capture_output=True, text=True, timeout=600, check=True).stdout
        line = [x for x in out.splitlines() if x.startswith("NST-FACTS ")][-1]
        return json.loads(line[len("NST-FACTS "):])  # type: ignore[no-any-return]
    except (OSError, subprocess.SubprocessError, IndexError, ValueError) as e:
        print(f"warning: {engine_python} could not report on its engine ({e}); using this Python's",
              file=sys.stderr)
        return engine_facts(remeasure)


def plugin_files(engine_python: str | None = None, facts: "EngineFacts | None" = None,
                 flatpak: bool = False) -> dict[str, tuple[bytes, int]]:
    """Relative path inside plug-ins/nst-gimp → (content, mode); ``flatpak``: for a Flatpak GIMP."""
    from .bridge import arguments

    if facts is None:
        facts = facts_for(engine_python)
    bridge = Path(__file__).resolve().parent / "bridge"

    def dump(obj: Any) -> bytes:
        return (json.dumps(obj, indent=2, sort_keys=True) + "\n").encode("utf-8")

    init = b'"""NST bridge client (copied from nst_engine.bridge by `nst gimp-install`)."""\n'
    plugin = _plugin_source()
    return {
        f"{PLUGIN_NAME}.py": (plugin.read_bytes(), 0o755),
        **{name: ((plugin.parent / name).read_bytes(), 0o644) for name in PLUGIN_MODULES},
        "nst_bridge/__init__.py": (init, 0o644),
        "nst_bridge/protocol.py": ((bridge / "protocol.py").read_bytes(), 0o644),
        "nst_bridge/client.py": ((bridge / "client.py").read_bytes(), 0o644),
        "nst_bridge/state.py": ((bridge / "state.py").read_bytes(), 0o644),
        "nst_bridge/timing.py": ((bridge / "timing.py").read_bytes(), 0o644),
        "nst-gimp-args.json": (dump(arguments.spec(facts)), 0o644),
        "nst-bridge.json": (dump(bridge_config(engine_python, flatpak)), 0o644),
    }


def install(gimp_dir: Path, engine_python: str | None = None, facts: "EngineFacts | None" = None) -> list[str]:
    """Install into one GIMP user folder; returns what changed (empty: already up to date)."""
    target = gimp_dir / "plug-ins" / PLUGIN_NAME
    changed = []
    for rel, (content, mode) in plugin_files(engine_python, facts, is_flatpak_profile(gimp_dir)).items():
        path = target / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.is_file() or path.read_bytes() != content:
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(content)
            os.replace(tmp, path)
            changed.append(rel)
        if sys.platform != "win32" and stat.S_IMODE(path.stat().st_mode) != mode:
            path.chmod(mode)
            changed.append(f"{rel} (mode)")
    for stale in (target / "nst_bridge").glob("*.pyc"):
        stale.unlink()
    if any(c.startswith(("nst-gimp-args.json", "nst_bridge/", *PLUGIN_MODULES)) for c in changed):
        # GIMP re-reads a plug-in's procedures only when the plug-in file's mtime changes.
        now = time.time()
        os.utime(target / f"{PLUGIN_NAME}.py", (now, now))
    return changed


def uninstall(gimp_dir: Path) -> bool:
    target = gimp_dir / "plug-ins" / PLUGIN_NAME
    if not target.exists():
        return False
    shutil.rmtree(target)
    return True


def register(subparsers: Any) -> argparse.ArgumentParser:
    p: argparse.ArgumentParser = subparsers.add_parser(
        "gimp-install", help="install the GIMP 3 plug-in (Filters ▸ Artistic ▸ Neural Style Transfer…)",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--gimp-config-dir", metavar="DIR",
                   help="GIMP's user folder (e.g. ~/.config/GIMP/3.0); default: every GIMP 3.x folder found")
    p.add_argument("--uninstall", action="store_true", help="remove the plug-in instead")
    p.add_argument("--remeasure", action="store_true",
                   help="time an optimizer step again for the dialog's estimate (after a hardware change, or "
                        "if it was measured while the computer was busy); it is cached otherwise")
    p.add_argument("--engine-python", metavar="PYTHON",
                   help="the Python the plug-in starts the engine with (default: this one, %(default)s)",
                   default=sys.executable)
    p.set_defaults(func=run)
    return p


def run(args: argparse.Namespace) -> int:
    if args.gimp_config_dir:
        dirs, exist = [Path(args.gimp_config_dir).expanduser()], True
    else:
        dirs, exist = find_gimp_dirs()
    if args.uninstall:
        for d in dirs:
            removed = uninstall(d)
            print(f"{'removed' if removed else 'not installed in'} {d / 'plug-ins' / PLUGIN_NAME}")
        _stop_server()
        return 0
    python = getattr(args, "engine_python", None) or sys.executable
    if not os.path.isfile(python):
        print(f"error: --engine-python {python}: no such file", file=sys.stderr)
        return 2
    any_changed = False
    facts = facts_for(python, getattr(args, "remeasure", False))
    for d in dirs:
        changed = install(d, python, facts)
        any_changed = any_changed or bool(changed)
        where = d / "plug-ins" / PLUGIN_NAME / f"{PLUGIN_NAME}.py"
        print(f"{'installed' if changed else 'up to date:'} {where}")
    if not exist:
        print(f"note: no GIMP 3 user folder was found; created {dirs[0]} (GIMP {NEWEST_KNOWN}). "
              "If your GIMP uses another folder, run again with --gimp-config-dir.")
    print("Restart GIMP, then use Filters ▸ Artistic ▸ Neural Style Transfer… "
          "or Filters ▸ Render ▸ Neural Texture…")
    flatpak = any(is_flatpak_profile(d) for d in dirs)
    if flatpak:
        print("GIMP from Flatpak cannot start the engine itself: run `nst serve --flatpak` outside GIMP and "
              "leave it running (README, \"Flatpak GIMP\"; `nst serve --flatpak --systemd-unit` prints a "
              "service that starts it with your session).")
    if any_changed:
        _stop_server()  # a running server may be of an older engine: the next call starts a fresh one
        if flatpak and _stop_server(flatpak_dir=True):
            print("Stopped the engine server of `nst serve --flatpak` (it may be of the older version): start "
                  "it again (a systemd service with Restart=always restarts it by itself).")
    return 0


def _stop_server(flatpak_dir: bool = False) -> bool:
    """Ask the engine server in the native (or Flatpak) state folder to exit. True if one did."""
    from .bridge.client import BridgeError, Engine
    from .bridge.state import FLATPAK_APP, flatpak_state_dir

    engine = Engine({"engine_python": sys.executable}, flatpak_state_dir(FLATPAK_APP) if flatpak_dir else None)
    try:
        if engine.running() is None:
            return False
        engine.shutdown()  # whichever Python it runs: a server of another engine is asked to leave too
        return True
    except (BridgeError, OSError) as e:  # stopping is a courtesy: the plug-in copes with an old server
        print(f"note: could not stop the running engine server ({e})", file=sys.stderr)
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nst")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args))


if __name__ == "__main__":
    sys.exit(main(["gimp-install", *sys.argv[1:]]))
