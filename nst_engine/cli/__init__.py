"""`nst`: the command line. Thin: parse, call the engine, write files; errors become exit codes here.

Exit codes: 0 done, 1 runtime error, 2 bad input/usage, 130 interrupted.
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from ..errors import InputError, NSTError

# Each module has register(subparsers) that adds its subcommand(s) with set_defaults(func=run).
COMMAND_MODULES: tuple[str, ...] = (
    "nst_engine.cli.optimizer",  # stylize, reconstruct, texture
    "nst_engine.cli.compose",  # blend, recolor
    "nst_engine.cli.train",  # train (feed-forward models)
    "nst_engine.gimp_install",  # gimp-install
    "nst_engine.cli.serve",  # serve (the engine server, for GIMP from Flatpak)
    "nst_engine.cli.video",  # video (frames, animations, video files)
)
# The module of each command, so that `nst blend …` imports only what blend needs (start-up time
# counts for a one-shot command); a command missing here still works (all modules are loaded).
COMMAND_MODULE: dict[str, str] = {
    "stylize": COMMAND_MODULES[0], "reconstruct": COMMAND_MODULES[0], "texture": COMMAND_MODULES[0],
    "blend": COMMAND_MODULES[1], "recolor": COMMAND_MODULES[1],
    "train": COMMAND_MODULES[2], "models": COMMAND_MODULES[2], "gimp-install": COMMAND_MODULES[3],
    "serve": COMMAND_MODULES[4], "video": COMMAND_MODULES[5],
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `nst` parser: every command, or only ``command``'s module when it is a known command."""
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="nst", description="Neural style transfer (Gatys et al. optimizer on VGG-19; fast ONNX models)."
    )
    parser.add_argument("--version", action="version", version=f"nst {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in [COMMAND_MODULE[command]] if command in COMMAND_MODULE else COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command whose module is not part of this build
                continue
            raise
        module.register(sub)
    if command in COMMAND_MODULE and command not in sub.choices:
        return build_parser(None)  # the table above is out of date (or the module is missing): everything
    return parser


def _flag_name(parser: argparse.ArgumentParser, argument: str, command: str | None = None) -> str:
    """How ``command``'s usage spells an engine argument name: ``model`` → ``--model``, a
    positional ``mask`` → ``MASK``; only that command's own arguments count (``nst blend``'s
    MASK is not ``nst stylize``'s ``--mask``)."""
    parsers = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction) and command in action.choices:
            parsers.append(action.choices[command])
    for p in reversed(parsers):
        for action in p._actions:
            if action.dest == argument or (not action.option_strings and action.metavar == argument):
                if action.option_strings:
                    return max(action.option_strings, key=len)
                return str(action.metavar or action.dest.upper())
    return argument


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (never raises for expected errors)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse: --help (0) or a usage error (2)
        return int(e.code or 0)
    if not getattr(args, "func", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.func(args) or 0)
    except InputError as e:
        print(f"nst: error: {_flag_name(parser, e.argument, args.command)}={e.value!r}: {e.reason}", file=sys.stderr)
        return e.exit_code
    except NSTError as e:
        print(f"nst: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("nst: interrupted; nothing written", file=sys.stderr)
        return 130
    except MemoryError:
        print("nst: error: out of memory; try a smaller --size", file=sys.stderr)
        return 1
    except RuntimeError as e:  # torch's errors (CUDA out of memory, …) as one line
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        if "out of memory" in msg.lower():
            msg += "; try a smaller --size"
        print(f"nst: error: {msg}", file=sys.stderr)
        return 1
    except Exception as e:  # a bug: one line, the traceback only on request
        if os.environ.get("NST_DEBUG"):
            raise
        print(f"nst: internal error: {type(e).__name__}: {e} (set NST_DEBUG=1 for details; please report)",
              file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
