"""Command-line options generated from a dataclass's fields and their metadata (no torch).

`add_field_options` turns each field of `StylizeOptions`, `TrainConfig` (or any dataclass whose
fields carry `nst_engine.config.option` metadata) into one argparse argument: ``model_size`` →
``--model-size``, a ``bool`` → ``--x/--no-x``, a tuple → a comma-separated list, with the field's
help, choices, default and, from the metadata, its flags (``cli``), ``metavar``, help section
(``group``), ``required`` and ``cli_default``. `field_values` reads them back.
"""
from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import InputError

_TYPES: dict[str, Callable[[str], Any]] = {"int": int, "float": float, "str": str}
_NAMES = {"int": "whole numbers", "float": "numbers", "str": "names"}


def flag(name: str) -> str:
    """The option a field becomes: ``model_size`` → ``--model-size``."""
    return "--" + name.replace("_", "-")


def list_of(kind: Callable[[str], Any], what: str = "values") -> Callable[[str], tuple[Any, ...]]:
    """An argparse type: a comma-separated list of ``kind``."""

    def parse(text: str) -> tuple[Any, ...]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        try:
            return tuple(kind(t) for t in items)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a comma-separated list of {what}, got {text!r}") from None

    return parse


def _default(f: dataclasses.Field[Any]) -> Any:
    if "cli_default" in f.metadata:
        return f.metadata["cli_default"]
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


def cli_fields(cls: type, skip: Iterable[str] = ()) -> list[dataclasses.Field[Any]]:
    """The fields of ``cls`` that are command-line arguments (metadata ``cli`` not ``None``)."""
    left_out = set(skip)
    return [f for f in dataclasses.fields(cls)
            if f.name not in left_out and f.metadata.get("cli", "") is not None]


def add_field_options(parser: argparse.ArgumentParser, cls: type, *, skip: Iterable[str] = (),
                      title: str | None = None) -> None:
    """One argument per field of ``cls`` (see the module notes); fields without a ``group`` go
    into the section ``title`` (``None``: the parser's own)."""
    groups: dict[str | None, Any] = {None: parser.add_argument_group(title) if title else parser}
    for f in cli_fields(cls, skip):
        meta = f.metadata
        group_name = meta.get("group")
        if group_name not in groups:
            groups[group_name] = parser.add_argument_group(group_name)
        default = _default(f)
        annotation = str(f.type).removesuffix(" | None")
        help_text = str(meta.get("help", ""))
        kw: dict[str, Any] = {}
        if annotation == "bool":
            kw["action"] = argparse.BooleanOptionalAction
        elif annotation.startswith("tuple[") and annotation.endswith(", ...]"):
            item = annotation[len("tuple["):-len(", ...]")]
            kw["type"] = list_of(_TYPES[item], _NAMES[item])
            kw["metavar"] = "NAME,…" if item == "str" else "V,…"
        else:
            kw["type"] = _TYPES[annotation]
        if "choices" in meta:
            kw["choices"] = meta["choices"]
        if "metavar" in meta:
            kw["metavar"] = meta["metavar"]
        shown = meta.get("default_text", default)
        if annotation != "bool" and shown not in (None, ""):
            shown = ",".join(map(str, shown)) if isinstance(shown, tuple) else shown
            help_text += f" [default: {shown}]"
        kw["help"] = help_text.replace("%", "%%")  # argparse formats help with %
        names = meta.get("cli") or flag(f.name)
        names = (names,) if isinstance(names, str) else tuple(names)
        if not names[0].startswith("-"):  # a positional argument: its METAVAR
            groups[group_name].add_argument(f.name, metavar=names[0], **kw)
            continue
        if meta.get("required"):
            kw["required"] = True
        groups[group_name].add_argument(*names, dest=f.name, default=default, **kw)


def field_values(cls: type, args: argparse.Namespace, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The parsed values of ``cls``'s command-line fields that ``args`` has."""
    return {f.name: getattr(args, f.name) for f in cli_fields(cls, skip) if hasattr(args, f.name)}


def refuse_changed(args: argparse.Namespace, cls: type, names: Iterable[str], reason: str) -> None:
    """`InputError` for the first of ``names`` (fields of ``cls``) that ``args`` sets to something
    other than its default: a setting the run would not use is refused, not silently ignored."""
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in names:
        value = getattr(args, name, None)
        if hasattr(args, name) and value != _default(fields[name]):
            raise InputError(name, value, reason)
