"""The plug-in's argument spec (from StyleConfig and the engine's facts) and `nst gimp-install`."""
from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

import pytest

from nst_engine.bridge import arguments
from nst_engine.config import StyleConfig


# --------------------------------------------------------------------------------------------
# arguments: derived from StyleConfig
# --------------------------------------------------------------------------------------------

def test_arguments_match_styleconfig():
    fields = {f.name: f for f in dataclasses.fields(StyleConfig)}
    spec = arguments.spec()
    json.dumps(spec)  # serialisable
    for proc, args in spec["procedures"].items():
        names = [a["name"] for a in args]
        assert len(names) == len(set(names)), proc
        for a in args:
            if "config_field" not in a:
                continue
            f = fields[a["config_field"]]
            assert a["name"] == f.name.replace("_", "-")
            default = getattr(StyleConfig(), f.name)
            assert a["default"] == (-1 if default is None else default)
            if "lo" in f.metadata:
                hi = min(f.metadata["hi"], arguments.GINT_MAX) if a["type"] == "int" else f.metadata["hi"]
                assert a["min"] == f.metadata["lo"] and a["max"] == hi
            assert a["blurb"].startswith(f.metadata["help"])
            if a["type"] == "choice":
                assert a["default"] in [c["nick"] for c in a["choices"]]
    stylize = {a["name"] for a in spec["procedures"]["plug-in-nst-stylize"]}
    assert {"style-layer", "style-file", "method", "model", "model-file", "model-size", "steps", "size",
            "style-weight", "preserve-colors", "composite", "layer-mode", "opacity"} <= stylize
    assert spec["estimate"] is None


def test_arguments_from_engine_facts():
    models = [{"name": "great-wave", "painting": "The Great Wave off Kanagawa (Hokusai, c. 1831)", "variant": "light"},
              {"name": "starry-night", "painting": "The Starry Night (Vincent van Gogh, 1889)", "variant": "light"},
              {"name": "starry-night-big", "painting": "The Starry Night (Vincent van Gogh, 1889)",
               "variant": "standard"}]
    cost = {"a": 0.1, "b": 1e-5, "device": "cpu", "single_scale_max": 1024, "coarsest": 512}
    spec = arguments.spec({"models": models, "cuda": False, "step_cost": cost})
    args = {a["name"]: a for a in spec["procedures"]["plug-in-nst-stylize"]}
    model = args["model"]
    assert [c["nick"] for c in model["choices"]] == ["great-wave", "starry-night", "starry-night-big", "file"]
    assert [c["label"] for c in model["choices"]] == [
        "The Great Wave off Kanagawa (Hokusai, c. 1831)", "The Starry Night (Vincent van Gogh, 1889), light",
        "The Starry Night (Vincent van Gogh, 1889), standard", "Other .onnx file…"]
    assert model["default"] == "starry-night" and "great-wave" in model["blurb"]
    assert args["method"]["default"] == "iterative"  # scripts keep the iterative default...
    assert args["method"]["dialog_default"] == "model"  # ...the dialog opens on Model without CUDA
    assert args["model-file"]["type"] == "file" and args["model-file"]["show_if"] == {"method": ["model"],
                                                                                        "model": ["file"]}
    size = args["model-size"]
    assert (size["type"], size["min"], size["default"]) == ("int", 0, 1024)
    assert size["blurb"].startswith("Long side the model paints at") and size["show_if"] == {"method": ["model"]}
    for name in ("steps", "size", "style-weight", "style-layer", "style-file"):
        assert args[name]["show_if"] == {"method": ["iterative"]}, name
    assert "show_if" not in args["preserve-colors"]  # both methods
    assert spec["estimate"] == cost
    # with CUDA the dialog stays iterative; without models only a file can be chosen, and the first
    # shipped model is the default where there is no starry-night
    assert {a["name"]: a for a in arguments.spec({"cuda": True})["procedures"]["plug-in-nst-stylize"]}[
        "method"]["dialog_default"] == "iterative"
    bare = {a["name"]: a for a in arguments.spec({})["procedures"]["plug-in-nst-stylize"]}
    assert [c["nick"] for c in bare["model"]["choices"]] == ["file"] and bare["model"]["default"] == "file"
    first = {a["name"]: a for a in arguments.spec({"models": models[:1]})["procedures"]["plug-in-nst-stylize"]}
    assert first["model"]["default"] == "great-wave"


# --------------------------------------------------------------------------------------------
# gimp-install
# --------------------------------------------------------------------------------------------

def _run_install(*argv):
    from nst_engine import gimp_install

    return gimp_install.main(["gimp-install", *argv])


def test_gimp_install_is_idempotent_and_uninstalls(tmp_path, capsys, monkeypatch):
    from nst_engine import estimate, gimp_install

    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "st"))
    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    measured = []
    monkeypatch.setattr(estimate, "measure", lambda *a, **k: measured.append(1) or [(6912, 0.05), (27648, 0.17)])
    gdir = tmp_path / "GIMP" / "3.0"
    assert _run_install("--gimp-config-dir", str(gdir)) == 0
    plug = gdir / "plug-ins" / "nst-gimp"
    main = plug / "nst-gimp.py"
    assert main.is_file() and os.access(main, os.X_OK)
    for rel in ("nst_bridge/client.py", "nst_bridge/protocol.py", "nst_bridge/state.py", "nst_bridge/__init__.py",
                "nst_bridge/timing.py", "nst_gimp_dialog.py", "nst_gimp_engine.py", "nst_gimp_frames.py",
                "nst_gimp_layers.py", "nst_gimp_spec.py",
                "nst-gimp-args.json"):
        assert (plug / rel).is_file(), rel
    cfg = json.loads((plug / "nst-bridge.json").read_text())
    assert cfg["engine_python"] == sys.executable
    assert (Path(cfg["engine_pythonpath"]) / "nst_engine").is_dir()
    installed = json.loads((plug / "nst-gimp-args.json").read_text())
    assert installed == json.loads(json.dumps(arguments.spec(gimp_install.engine_facts())))
    import torch
    from nst_engine.models import model_catalog

    assert installed["estimate"]["a"] == pytest.approx(0.01) and installed["estimate"]["b"] == pytest.approx(0.12 / 20736)
    stylize = {a["name"]: a for a in installed["procedures"]["plug-in-nst-stylize"]}
    assert [c["nick"] for c in stylize["model"]["choices"]] == [e.name for e in model_catalog()] + ["file"]
    assert stylize["method"]["dialog_default"] == ("iterative" if torch.cuda.is_available() else "model")
    assert measured == [1]  # measured once, then cached
    before = {p: p.stat().st_mtime_ns for p in plug.rglob("*")}
    capsys.readouterr()
    assert _run_install("--gimp-config-dir", str(gdir)) == 0
    assert "up to date" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in plug.rglob("*")} == before
    assert _run_install("--gimp-config-dir", str(gdir), "--uninstall") == 0
    assert not plug.exists() and (gdir / "plug-ins").is_dir()


@pytest.mark.skipif(sys.platform == "win32", reason="shell-script interpreters")
def test_gimp_install_asks_the_engine_python(tmp_path, monkeypatch, capsys):
    """--engine-python names another Python: the facts (models, CUDA, step cost) are that Python's."""
    import torch

    from nst_engine import estimate, gimp_install

    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setattr(estimate, "measure", lambda *a, **k: [(6912, 0.05), (27648, 0.17)])
    local = json.loads(json.dumps(gimp_install.engine_facts()))  # also fills the cache the other Python reads
    other = tmp_path / "python"
    other.write_text(f'#!/bin/sh\nOMP_NUM_THREADS={torch.get_num_threads()} exec {sys.executable} "$@"\n')
    other.chmod(0o755)
    assert gimp_install.facts_for(str(other)) == local
    assert "could not" not in capsys.readouterr().err
    broken = tmp_path / "broken"
    broken.write_text("#!/bin/sh\nexit 3\n")
    broken.chmod(0o755)
    assert gimp_install.facts_for(str(broken)) == local  # with a warning: this Python's facts
    assert "could not report on its engine" in capsys.readouterr().err
    calls = []
    monkeypatch.setattr(estimate, "measure", lambda *a, **k: calls.append(1) or [(6912, 0.1), (27648, 0.2)])
    assert gimp_install.engine_facts(remeasure=True)["step_cost"]["b"] == pytest.approx(0.1 / 20736)
    assert calls == [1]


def test_gimp_install_finds_version_folders(tmp_path, monkeypatch):
    from nst_engine import gimp_install

    monkeypatch.delenv("GIMP3_DIRECTORY", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "cfg"))
    if sys.platform in ("win32", "darwin"):
        pytest.skip("Linux folder layout")
    dirs, exist = gimp_install.find_gimp_dirs()
    assert not exist and dirs == [tmp_path / "cfg" / "GIMP" / gimp_install.NEWEST_KNOWN]
    for d in ("cfg/GIMP/2.10", "cfg/GIMP/3.0", "cfg/GIMP/3.2", ".var/app/org.gimp.GIMP/config/GIMP/3.0"):
        (tmp_path / d).mkdir(parents=True)
    dirs, exist = gimp_install.find_gimp_dirs()
    assert exist
    assert set(dirs) == {tmp_path / "cfg/GIMP/3.0", tmp_path / "cfg/GIMP/3.2",
                         tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0"}
    monkeypatch.setenv("GIMP3_DIRECTORY", str(tmp_path / "custom"))
    assert gimp_install.find_gimp_dirs() == ([tmp_path / "custom"], False)
