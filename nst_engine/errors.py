"""Exceptions of the engine, and the exit codes the CLI maps them to (in one place)."""
from __future__ import annotations


class NSTError(Exception):
    """Base class: every error the engine raises on purpose is one of these."""

    exit_code = 1


class InputError(NSTError, ValueError):
    """Bad input from the caller: an argument, a file, a layer name. CLI exit code 2."""

    exit_code = 2

    def __init__(self, argument: str, value: object, reason: str) -> None:
        self.argument = argument
        self.value = value
        self.reason = reason
        super().__init__(f"{argument}={value!r}: {reason}")


class EngineRuntimeError(NSTError, RuntimeError):
    """Something went wrong while working (NaN, out of memory, broken weights). Exit code 1."""

    exit_code = 1


class Cancelled(NSTError):
    """The caller asked the work to stop and no partial result is wanted."""

    exit_code = 130
