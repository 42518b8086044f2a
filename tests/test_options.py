"""One source for every option (#11): the CLI options, the GIMP arguments and the bridge's checks are
generated from the fields of `StyleConfig`, `StylizeOptions` and `TrainConfig`."""
from __future__ import annotations

import argparse
import dataclasses
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from export.config import TrainConfig
from nst_engine.bridge import arguments, jobs
from nst_engine.cli import build_parser, main
from nst_engine.cli.fields import flag
from nst_engine.config import StyleConfig
from nst_engine.errors import InputError
from nst_engine.options import COMPOSITES, SELECTION_MARGIN, StylizeOptions


def _actions(command: str) -> dict[str, argparse.Action]:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return {a.dest: a for a in sub.choices[command]._actions}


def _default(f: dataclasses.Field[Any]) -> Any:
    if "cli_default" in f.metadata:
        return f.metadata["cli_default"]
    return None if f.default is dataclasses.MISSING else f.default


@pytest.mark.parametrize("cls", [StylizeOptions, StyleConfig])
def test_every_stylize_field_is_an_option(cls: type) -> None:
    actions = _actions("stylize")
    for f in dataclasses.fields(cls):
        if f.metadata.get("cli", "") is None:  # StylizeOptions.method: --model chooses it
            assert f.name not in actions, f.name
            continue
        a = actions[f.name]
        assert flag(f.name) in a.option_strings, f.name
        assert a.default == _default(f), f.name
        assert a.help and a.help.startswith(f.metadata["help"].replace("%", "%%")), f.name
        if "choices" in f.metadata:
            assert tuple(a.choices) == tuple(f.metadata["choices"]), f.name
    assert [f.name for f in dataclasses.fields(StylizeOptions) if f.metadata.get("cli", "") is None] == ["method"]


def test_every_train_field_is_an_option(tmp_path: Path) -> None:
    actions = _actions("train")
    for f in dataclasses.fields(TrainConfig):
        a = actions[f.name]
        assert a.help and a.help.startswith(f.metadata["help"].replace("%", "%%")), f.name
        if f.name == "style":
            assert not a.option_strings and a.metavar == "STYLE"
            continue
        assert flag(f.name) in a.option_strings, f.name
        assert a.default == _default(f), f.name
        assert a.required == bool(f.metadata.get("required")), f.name
        if "choices" in f.metadata:
            assert tuple(a.choices) == tuple(f.metadata["choices"]), f.name
    # parsed back: the defaults give the default TrainConfig; bools have --x/--no-x
    from nst_engine.cli.train import config_from_args

    parser = build_parser("train")
    base = ["train", "style:mosaic", "--content-dir", str(tmp_path), "-o", str(tmp_path / "m.onnx")]
    cfg = config_from_args(parser.parse_args(base))
    assert cfg == TrainConfig(style="style:mosaic", content_dir=str(tmp_path), output=str(tmp_path / "m.onnx"))
    cfg = config_from_args(parser.parse_args([*base, "--no-channels-last", "--style-layers",
                                              "relu1_1,relu2_1", "--device", "cuda:1", "--variant", "standard"]))
    assert (cfg.channels_last, cfg.style_layers) == (False, ("relu1_1", "relu2_1"))
    assert cfg.device == "cuda:1" and cfg.variant == "standard"  # kept as given (was: cuda:1 -> cuda)
    assert config_from_args(parser.parse_args([*base, "--channels-last"])).channels_last is True


@pytest.mark.parametrize(("extra", "needle"), [
    (["--precision", "fp16"], "invalid choice: 'fp16'"),
    (["--variant", "huge"], "invalid choice: 'huge'"),
    (["--steps", "many"], "invalid int value"),
    (["--steps", "0"], "--steps=0"),
])
def test_train_options_are_checked(tmp_path: Path, extra: list[str], needle: str,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "m.onnx"
    assert main(["train", "style:mosaic", "--content-dir", str(tmp_path), "-o", str(out), *extra]) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err
    assert not out.exists()


def test_stylize_options_are_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "o.png"
    for extra, needle in ((["--composite", "blend"], "invalid choice: 'blend'"),
                          (["--margin", "-1"], "--margin=-1: must be between 0"),
                          (["--strength", "2"], "--strength=2.0: must be between 0"),
                          (["--model-size", "-5"], "--model-size=-5")):
        code = main(["stylize", "sample:chelsea", "--model", "starry-night", "--mask", "sample:chelsea",
                     "-o", str(out), *extra])
        err = capsys.readouterr().err
        assert code == 2 and needle in err and "Traceback" not in err, (extra, err)
    assert not out.exists()


def test_gimp_arguments_come_from_stylize_options() -> None:
    spec = arguments.spec()
    assert spec["selection_margin"] == SELECTION_MARGIN
    args = {a["name"]: a for a in spec["procedures"]["plug-in-nst-stylize"]}
    fields = {f.name: f for f in dataclasses.fields(StylizeOptions)}
    generated = [a for a in args.values() if "option_field" in a]
    assert {a["option_field"] for a in generated} == {"method", "model_size", "composite"}
    for a in generated:
        f = fields[a["option_field"]]
        assert a["name"] == f.name.replace("_", "-") and a["default"] == f.default
        assert a["blurb"].lower().startswith(f.metadata["help"].lower())
        if "choices" in f.metadata:
            assert [c["nick"] for c in a["choices"]] == list(f.metadata["choices"])
        else:
            assert (a["min"], a["max"]) == (f.metadata["lo"], f.metadata["hi"])
    assert [c["nick"] for c in args["composite"]["choices"]] == list(COMPOSITES)


@pytest.mark.parametrize(("params", "argument"), [
    ({"composite": "blend"}, "composite"), ({"margin": -1}, "margin"), ({"margin": 2.5}, "margin"),
    ({"strength": 1.5}, "strength"), ({"model_size": "big"}, "model-size"), ({"method": "magic"}, "method"),
    ({"feather": -2.0}, "feather"), ({"overlap": -3}, "overlap"), ({"preserve_colors": "sepia"}, "preserve-colors"),
])
def test_bridge_refuses_bad_options_naming_the_argument(params: dict[str, Any], argument: str) -> None:
    content = np.zeros((8, 8, 4), np.float32)
    arrays = {"content": ([8, 8, 4], content.tobytes()), "style": ([8, 8, 4], content.tobytes())}
    header = {"params": params, "arrays": [{"name": "content", "shape": [8, 8, 4]}]}
    if argument in ("preserve-colors",):  # a StyleConfig field: checked when the job starts
        checks = [lambda: jobs.stylize(params, arrays, lambda m: None, threading.Event())]
    else:  # StylizeOptions: refused before the pixels are read, and by the job itself
        checks = [lambda: jobs.check_request("stylize", header, content.nbytes),
                  lambda: jobs.stylize(params, arrays, lambda m: None, threading.Event())]
    for check in checks:
        with pytest.raises(InputError) as e:
            check()
        assert e.value.argument == argument and e.value.value == next(iter(params.values())), e.value


def test_options_from_params_ignore_other_keys() -> None:
    o = StylizeOptions.from_params({"composite": "none", "margin": None, "steps": 3, "layer_mode": "overlay"})
    assert o == StylizeOptions(composite="none")
    with pytest.raises(InputError, match="choose a model"):
        StylizeOptions.from_params({"method": "model", "model": ""})
