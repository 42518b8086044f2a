"""`nst serve`: run the engine server the GIMP plug-in talks to, in the foreground.

The plug-in normally starts the server itself (``python -m nst_engine.bridge.server``) and lets
it quit after 15 idle minutes. GIMP in Flatpak cannot: its sandbox cannot run this Python. So the
user runs ``nst serve --flatpak`` outside GIMP (in a terminal, or as a systemd user service:
``--systemd-unit`` prints one): the same server, with its state file (port and secret, mode 0600)
in ``~/.var/app/org.gimp.GIMP/cache/nst-gimp``, the folder the sandboxed plug-in reads
(`nst_engine.bridge.state.flatpak_state_dir`). It runs until Ctrl-C or SIGTERM.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from ..bridge.state import FLATPAK_APP, STATE_NAME, flatpak_state_dir, serve_base_command, state_dir

DESCRIPTION = """Run the engine server that the GIMP plug-in talks to, until Ctrl-C or SIGTERM.

GIMP from Flatpak cannot start the engine itself (its sandbox cannot run this Python): run
`nst serve --flatpak` outside GIMP and leave it running; the plug-in finds it through the state
file in ~/.var/app/org.gimp.GIMP/cache/nst-gimp. `nst serve --flatpak --systemd-unit` prints a
systemd user service that starts it with your session."""


def register(sub: Any) -> None:
    p = sub.add_parser("serve", help="run the engine server for GIMP (needed by GIMP from Flatpak)",
                       description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    where = p.add_mutually_exclusive_group()
    where.add_argument("--flatpak", action="store_true",
                       help=f"for GIMP from Flatpak: the state file goes into {_home_relative(flatpak_state_dir(FLATPAK_APP))}")
    where.add_argument("--state-dir", metavar="DIR",
                       help="folder for the state file and the plug-in's lock [default: $NST_BRIDGE_STATE_DIR, "
                            "else the folder a GIMP outside Flatpak uses]")
    p.add_argument("--idle-timeout", type=float, default=0.0, metavar="S",
                   help="exit after S seconds without a job; 0 = never [default: 0]")
    p.add_argument("--no-preload", action="store_true",
                   help="load the iterative engine (VGG-19) on its first job, not at start")
    p.add_argument("--systemd-unit", action="store_true",
                   help="print a systemd user service that runs this command, and exit")
    p.set_defaults(func=run)


def _home_relative(path: Path) -> str:
    try:
        return "~/" + path.relative_to(Path.home()).as_posix()
    except ValueError:
        return str(path)


def chosen_state_dir(args: argparse.Namespace) -> Path:
    if args.flatpak:
        return flatpak_state_dir(FLATPAK_APP)
    if args.state_dir:
        return Path(args.state_dir).expanduser().absolute()
    return state_dir()


def command_line(args: argparse.Namespace) -> list[str]:
    """This command as argv, with this Python's `nst` (for the service unit)."""
    base = serve_base_command(sys.executable)
    where = ["--flatpak"] if args.flatpak else ["--state-dir", str(chosen_state_dir(args))]
    extra = ([f"--idle-timeout={args.idle_timeout:g}"] if args.idle_timeout else []) + (
        ["--no-preload"] if args.no_preload else [])
    return [*base, *where, *extra]


def systemd_unit(args: argparse.Namespace) -> str:
    """A systemd user service (``~/.config/systemd/user/nst-gimp.service``) running `command_line`."""
    argv = command_line(args)
    env = ""
    if argv[1:2] == ["-m"]:  # no `nst` script beside this Python: the engine's folder on the path
        env = f"Environment=PYTHONPATH={Path(__file__).resolve().parents[2]}\n"
    return (
        "# ~/.config/systemd/user/nst-gimp.service; then: systemctl --user enable --now nst-gimp\n"
        "[Unit]\n"
        "Description=nst-gimp engine server for GIMP (neural style transfer)\n\n"
        "[Service]\n"
        f"{env}ExecStart={shlex.join(argv)}\n"
        "Restart=always\n"  # also after `nst gimp-install` stopped it to bring in a new version
        "RestartSec=2\n\n"
        "[Install]\n"
        "WantedBy=default.target\n"
    )


def run(args: argparse.Namespace) -> int:
    if args.systemd_unit:
        sys.stdout.write(systemd_unit(args))
        return 0
    if args.idle_timeout < 0:
        from ..errors import InputError

        raise InputError("idle_timeout", args.idle_timeout, "must be 0 (never) or a number of seconds")
    directory = chosen_state_dir(args)
    from ..bridge.client import Engine

    other = Engine({"engine_python": sys.executable}, directory).running()
    if other is not None:
        print(f"nst serve: error: an engine server already runs for {directory} (pid {other.get('pid')}, "
              f"{other.get('python')}); GIMP uses that one. Stop it first to start another.", file=sys.stderr)
        return 1
    if args.flatpak and not directory.parents[1].is_dir():
        print(f"nst serve: note: {_home_relative(directory.parents[1])} does not exist yet: is GIMP installed from "
              f"Flathub (flatpak install flathub {FLATPAK_APP}) and has it run once? Serving anyway.",
              file=sys.stderr)
    print(f"nst serve: serving the GIMP plug-in from {sys.executable}; state file "
          f"{directory / STATE_NAME}; Ctrl-C to stop", file=sys.stderr, flush=True)
    from ..bridge import server

    argv = ["--state-dir", str(directory), "--idle-timeout", str(args.idle_timeout or float("inf"))]
    try:
        return server.main(argv + (["--no-preload"] if args.no_preload else []))
    except KeyboardInterrupt:  # the server removed its state file on the way out
        print("nst serve: stopped", file=sys.stderr)
        return 0


if __name__ == "__main__":  # python -m nst_engine.cli.serve (where no `nst` script is installed)
    from . import main

    sys.exit(main(["serve", *sys.argv[1:]]))
