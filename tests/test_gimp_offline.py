"""The GIMP side without a GIMP: Flatpak (the state folder, a client that never starts the engine
and names the command, `nst serve`), the plug-in's messages and error handling, and when the real
GIMP tests run, skip or fail."""
from __future__ import annotations

import ast
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from gimp_plugin import nst_gimp_spec
from nst_engine.bridge import client, state
from nst_engine.bridge.server import Server
from nst_engine.cli import build_parser

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gimp"))
import gimpchroot  # noqa: E402

NST = str(Path(sys.executable).parent / "nst")
linux_only = pytest.mark.skipif(sys.platform != "linux", reason="Flatpak and XDG folders are Linux's")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh $HOME outside any Flatpak, with no state-folder override."""
    if os.path.isfile("/.flatpak-info"):
        pytest.skip("these tests run outside a Flatpak sandbox")
    monkeypatch.setenv("HOME", str(tmp_path))
    for var in ("NST_BRIDGE_STATE_DIR", "FLATPAK_ID", "XDG_RUNTIME_DIR", "NST_ENGINE_PYTHON"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path


# --------------------------------------------------------------------------------------------
# the state folder
# --------------------------------------------------------------------------------------------

@linux_only
def test_state_dir_inside_flatpak_is_the_apps_own_cache(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    flatpak = home / ".var/app/org.gimp.GIMP/cache/nst-gimp"
    assert state.state_dir({}) == home / "cache" / "nst-gimp"  # outside Flatpak: as before
    assert not state.in_flatpak({})
    assert state.state_dir({"flatpak": True}) == flatpak  # installed into a Flatpak GIMP's folder
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")  # what the sandbox sets
    assert state.in_flatpak({}) and state.state_dir({}) == flatpak
    monkeypatch.setenv("FLATPAK_ID", "org.example.OtherGIMP")
    assert state.state_dir({}) == home / ".var/app/org.example.OtherGIMP/cache/nst-gimp"
    assert state.state_dir({"state_dir": str(home / "cfg")}) == home / "cfg"  # the config's choice wins
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(home / "env"))
    assert state.state_dir({"state_dir": str(home / "cfg")}) == home / "env"  # and the environment's over it


@linux_only
def test_start_outside_command(home: Path) -> None:
    cfg = {"engine_python": sys.executable, "serve_command": [NST, "serve"]}
    assert state.start_outside_command(cfg, state.flatpak_state_dir()) == f"{shlex.quote(NST)} serve --flatpak"
    assert state.start_outside_command(cfg, home / "my state") == f"{shlex.quote(NST)} serve --state-dir '{home}/my state'"
    # an older config without serve_command: the nst script beside the engine's Python
    assert state.start_outside_command({"engine_python": sys.executable}, home / "s") == \
        f"{shlex.quote(NST)} serve --state-dir {home}/s"
    # no nst script there (a source checkout): python -m, with the checkout on PYTHONPATH
    python = home / "bin" / "python3"
    python.parent.mkdir()
    python.touch()
    cmd = state.start_outside_command({"engine_python": str(python), "engine_pythonpath": "/src/nst gimp"},
                                      state.flatpak_state_dir())
    assert cmd == f"PYTHONPATH='/src/nst gimp' {python} -m nst_engine.cli.serve --flatpak"


# --------------------------------------------------------------------------------------------
# the client in Flatpak
# --------------------------------------------------------------------------------------------

@linux_only
def test_flatpak_client_never_starts_the_engine_and_says_how(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FLATPAK_ID", "org.gimp.GIMP")

    def no_popen(*a: Any, **k: Any) -> None:
        raise AssertionError(f"the client tried to start a process: {a}")

    monkeypatch.setattr(client.subprocess, "Popen", no_popen)
    engine = client.Engine({"engine_python": sys.executable, "serve_command": [NST, "serve"]})
    assert not engine.can_spawn and engine.dir == home / ".var/app/org.gimp.GIMP/cache/nst-gimp"
    assert engine.prestart() is False
    with pytest.raises(client.BridgeError) as e:
        engine.call("stylize", {}, {"content": ([2, 3, 4], np.zeros((2, 3, 4), np.float32))})
    message = str(e.value)
    assert "Flatpak cannot start it itself" in message and "outside GIMP" in message
    assert f"\n    {shlex.quote(NST)} serve --flatpak\n" in message
    assert not (engine.dir / state.STATE_NAME).exists()


def test_flatpak_client_uses_the_users_server_whatever_its_python(bridge_server: Any,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """A native client stops a server of another Python and starts its own; in Flatpak it cannot,
    so the server the user started (it proves the token) is the engine, and is never stopped."""
    srv: Server = bridge_server()
    img = np.full((2, 3, 4), 0.25, np.float32)
    other = {"engine_python": "/elsewhere/bin/python", "flatpak": True}
    header, out = client.Engine(other).call("stylize", {}, {"content": ([2, 3, 4], img)})
    assert np.allclose(np.frombuffer(out["image"][1], "<f4"), 0.75)
    assert not srv.stopping.is_set()
    with pytest.raises(client.BridgeError, match="not found"):  # outside Flatpak: stopped, then ours fails
        client.Engine({"engine_python": "/elsewhere/bin/python"}).call("stylize", {}, {"content": ([2, 3, 4], img)})
    assert srv.stopping.wait(5)


# --------------------------------------------------------------------------------------------
# nst serve
# --------------------------------------------------------------------------------------------

def _serve(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "nst_engine.cli.serve", *args], env=env, cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.skipif(sys.platform == "win32", reason="SIGTERM")
def test_nst_serve_honours_the_state_dir_and_serves_the_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`nst serve` finds its folder in NST_BRIDGE_STATE_DIR (or --state-dir), the client finds it
    there; a second one for the same folder refuses; SIGTERM ends it and removes the state file."""
    folder = tmp_path / "state"
    env = dict(os.environ, NST_BRIDGE_STATE_DIR=str(folder), PYTHONPATH=str(REPO))
    first = _serve(["--no-preload"], env)
    try:
        deadline = time.monotonic() + 60
        while state.read_state(folder) is None and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        st = state.read_state(folder)
        assert st is not None and st["pid"] == first.pid, first.stderr.read() if first.poll() is not None else st
        assert (folder.stat().st_mode & 0o777) == 0o700
        monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(folder))
        hello = client.Engine({"engine_python": "/elsewhere/bin/python", "flatpak": True}).running()
        assert hello is not None and hello["pid"] == first.pid
        env.pop("NST_BRIDGE_STATE_DIR")
        second = subprocess.run([sys.executable, "-m", "nst_engine.cli.serve", "--state-dir", str(folder)],
                                env=env, cwd=REPO, capture_output=True, text=True, timeout=60)
        assert second.returncode == 1 and f"already runs for {folder} (pid {first.pid}" in second.stderr
        first.send_signal(signal.SIGTERM)
        assert first.wait(30) == 0
        assert not (folder / state.STATE_NAME).exists()
        assert "state file" in first.stderr.read()
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()


@linux_only
def test_nst_serve_flatpak_folder_and_systemd_unit(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli import main, serve

    args = build_parser("serve").parse_args(["serve", "--flatpak"])
    assert serve.chosen_state_dir(args) == home / ".var/app/org.gimp.GIMP/cache/nst-gimp"
    assert serve.chosen_state_dir(build_parser("serve").parse_args(["serve", "--state-dir", "~/x"])) == home / "x"
    assert main(["serve", "--flatpak", "--systemd-unit"]) == 0
    unit = capsys.readouterr().out
    assert f"\nExecStart={shlex.quote(NST)} serve --flatpak\n" in unit
    assert "\nRestart=always\n" in unit and "\nWantedBy=default.target\n" in unit
    assert main(["serve", "--flatpak", "--state-dir", "x"]) == 2  # one or the other
    assert main(["serve", "--idle-timeout", "-5"]) == 2
    assert "--idle-timeout=-5.0" in capsys.readouterr().err


# --------------------------------------------------------------------------------------------
# nst gimp-install for a Flatpak GIMP
# --------------------------------------------------------------------------------------------

def test_gimp_install_marks_a_flatpak_gimps_config(tmp_path: Path) -> None:
    from nst_engine import gimp_install

    flatpak = tmp_path / ".var/app/org.gimp.GIMP/config/GIMP/3.0"
    native = tmp_path / ".config/GIMP/3.0"
    assert gimp_install.is_flatpak_profile(flatpak) and not gimp_install.is_flatpak_profile(native)
    for d in (flatpak, native):
        gimp_install.install(d, sys.executable, facts={})
        assert (d / "plug-ins/nst-gimp/nst_gimp_spec.py").is_file()
    cfg = json.loads((flatpak / "plug-ins/nst-gimp/nst-bridge.json").read_text())
    assert cfg["flatpak"] is True and cfg["serve_command"] == [NST, "serve"]
    assert "flatpak" not in json.loads((native / "plug-ins/nst-gimp/nst-bridge.json").read_text())


# --------------------------------------------------------------------------------------------
# the plug-in: its spec checks and messages (gimp_plugin/nst_gimp_spec.py, no gi)
# --------------------------------------------------------------------------------------------

def test_plugin_spec_and_messages(tmp_path: Path) -> None:
    assert nst_gimp_spec.load_spec(str(tmp_path / "missing.json")) is None
    (tmp_path / "bad.json").write_text("{not json")
    assert nst_gimp_spec.load_spec(str(tmp_path / "bad.json")) is None
    (tmp_path / "list.json").write_text("[1, 2]")
    assert nst_gimp_spec.load_spec(str(tmp_path / "list.json")) is None
    spec = {"procedures": {"plug-in-nst-stylize": [{"name": "method"}, {"name": "model"}, {"name": "steps"}]}}
    (tmp_path / "ok.json").write_text(json.dumps(spec))
    assert nst_gimp_spec.load_spec(str(tmp_path / "ok.json")) == spec
    registered = {"method", "steps"}
    assert nst_gimp_spec.missing_arguments(spec, "plug-in-nst-stylize", registered.__contains__) == ["model"]
    assert nst_gimp_spec.missing_arguments(spec, "plug-in-nst-stylize", lambda n: True) == []
    assert nst_gimp_spec.missing_arguments(spec, "plug-in-nst-texture", lambda n: True) == [
        "(no arguments for plug-in-nst-texture in the spec)"]
    text = nst_gimp_spec.spec_mismatch_message("/p/nst-gimp-args.json", ["model", "steps"])
    assert "/p/nst-gimp-args.json" in text and "GIMP lacks model, steps" in text
    assert "Restart GIMP" in text and "run `nst gimp-install`" in text
    assert nst_gimp_spec.not_installed_message("no nst_bridge") == (
        "The NST plug-in is not installed completely (no nst_bridge). " + nst_gimp_spec.INSTALL_HINT)
    assert nst_gimp_spec.unexpected_error_message(KeyError("x")).startswith(
        "Unexpected error in the NST plug-in (KeyError: 'x').")


def _handlers(path: Path) -> list[tuple[int, str, ast.ExceptHandler]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    lines = path.read_text(encoding="utf-8").splitlines()
    return [(h.lineno, lines[h.lineno - 1], h) for h in ast.walk(tree) if isinstance(h, ast.ExceptHandler)]


@pytest.mark.parametrize("name", ["nst_gimp.py", "nst_gimp_dialog.py", "nst_gimp_engine.py", "nst_gimp_frames.py",
                                  "nst_gimp_layers.py", "nst_gimp_spec.py"])
def test_plugin_swallows_no_error_silently(name: str) -> None:
    """Every handler of Exception (or bare) says why in a comment and reports (a message or
    stderr); none is a bare ``pass``."""
    for lineno, line, h in _handlers(REPO / "gimp_plugin" / name):
        broad = h.type is None or (isinstance(h.type, ast.Name) and h.type.id in ("Exception", "BaseException"))
        if not broad:
            continue
        assert "#" in line, f"{name}:{lineno}: `{line.strip()}` gives no reason"
        assert not (len(h.body) == 1 and isinstance(h.body[0], ast.Pass)), f"{name}:{lineno}: swallowed"
        calls = {n.func.id if isinstance(n.func, ast.Name) else getattr(n.func, "attr", "")
                 for n in ast.walk(ast.Module(body=h.body, type_ignores=[])) if isinstance(n, ast.Call)}
        assert calls & {"print", "error_values", "message", "print_exc"}, f"{name}:{lineno}: reports nothing"


def test_plugin_shows_the_dialog_inside_its_error_handling() -> None:
    """A failing dialog (e.g. a spec GIMP did not register) ends as a message, not a crash."""
    tree = ast.parse((REPO / "gimp_plugin" / "nst_gimp.py").read_text(encoding="utf-8"))
    run = next(n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "_run")
    guarded = [t for t in ast.walk(run) if isinstance(t, ast.Try)
               and any(isinstance(h.type, ast.Name) and h.type.id == "Exception" for h in t.handlers)]
    assert guarded, "_run has no catch-all"
    inside = {id(n) for t in guarded for stmt in t.body for n in ast.walk(stmt)}
    for call in (n for n in ast.walk(run) if isinstance(n, ast.Call)):
        name = getattr(call.func, "attr", getattr(call.func, "id", ""))
        if name in ("show_dialog", "Engine", "load_config", "missing_arguments", "body", "_dialog_regions"):
            assert id(call) in inside, f"{name}() is called outside the try of _run"


# --------------------------------------------------------------------------------------------
# the real GIMP tests: run, skip or fail
# --------------------------------------------------------------------------------------------

@pytest.mark.parametrize("environ,platform,euid,unshare,expected", [
    ({}, "linux", 0, "/usr/bin/unshare", None),
    ({"CI": "true"}, "linux", 0, "/usr/bin/unshare", None),
    ({}, "linux", 1000, "/usr/bin/unshare", ("skip", "need root")),
    ({"CI": "true"}, "linux", 1000, "/usr/bin/unshare", ("fail", "need root")),
    ({"CI": "1"}, "linux", 1000, "/usr/bin/unshare", ("fail", "mandatory in CI")),
    ({"CI": "false"}, "linux", 1000, "/usr/bin/unshare", ("skip", "with CI=true this is a failure")),
    ({}, "darwin", 501, None, ("skip", "need Linux")),
    ({"CI": "true"}, "win32", None, None, ("fail", "need Linux")),
    ({}, "linux", 0, None, ("skip", "unshare")),
    ({"CI": "true", "NST_SKIP_GIMP": "1"}, "linux", 1000, None, ("skip", "NST_SKIP_GIMP=1")),
])
def test_gimp_tests_skip_outside_ci_and_fail_in_it(environ: dict[str, str], platform: str, euid: int | None,
                                                   unshare: str | None, expected: tuple[str, str] | None) -> None:
    verdict = gimpchroot.gimp_tests_verdict(environ, platform, euid, unshare)
    if expected is None:
        assert verdict is None
    else:
        assert verdict is not None and verdict[0] == expected[0] and expected[1] in verdict[1], verdict


# --------------------------------------------------------------------------------------------
# regions: the arguments, the plug-in's registration and the bridge agree
# --------------------------------------------------------------------------------------------

def test_region_arguments_are_registered_and_shown() -> None:
    """regions, regionK-channel/-style-layer/-style-file and regions-rest: last among the PDB
    arguments (older scripts keep their positions), every argument type has a registration branch
    in the plug-in, and the dialog lays out the same names."""
    from nst_engine.bridge import arguments, regions

    args = arguments.spec()["procedures"]["plug-in-nst-stylize"]
    names = [a["name"] for a in args]
    region_names = ["regions"] + [f"region{k}-{what}" for k in range(1, arguments.MAX_REGIONS + 1)
                                  for what in ("channel", "style-layer", "style-file")] + ["regions-rest"]
    region_names += [f"region{k}-weight" for k in range(1, arguments.MAX_REGIONS + 1)]  # spec 5: appended
    assert names[-len(region_names) - 1:-1] == region_names and names[-1] == "style-scale"  # spec 5: last
    assert arguments.MAX_REGIONS == regions.MAX_REGIONS == 4
    by_name = {a["name"]: a for a in args}
    assert (by_name["regions"]["type"], by_name["regions"]["min"], by_name["regions"]["max"]) == ("int", 0, 4)
    assert "show_if" not in by_name["regions"]  # seen with either method: the model method refuses regions
    assert by_name["region3-channel"]["type"] == "channel"
    assert by_name["region3-style-layer"]["show_if"] == {"method": ["iterative"], "regions": [3, 4]}
    assert [c["nick"] for c in by_name["regions-rest"]["choices"]] == list(regions.RESTS)
    assert by_name["regions-rest"]["default"] == "photo"
    w = by_name["region2-weight"]
    assert (w["type"], w["min"], w["max"], w["default"]) == ("double", 0.0, regions.MAX_WEIGHT, 1.0)
    assert w["show_if"] == {"method": ["iterative"], "regions": [2, 3, 4]}
    plugin = (REPO / "gimp_plugin" / "nst_gimp.py").read_text(encoding="utf-8")
    for kind in {a["type"] for a in args}:
        assert f'kind == "{kind}"' in plugin, f"nst_gimp.add_argument does not register {kind} arguments"
    dialog = ast.parse((REPO / "gimp_plugin" / "nst_gimp_dialog.py").read_text(encoding="utf-8"))
    assigned = {t.id: n.value for n in dialog.body if isinstance(n, ast.Assign) for t in n.targets
                if isinstance(t, ast.Name)}
    assert ast.literal_eval(assigned["MAX_REGIONS"]) == arguments.MAX_REGIONS
    assert "regions-rest" in ast.unparse(assigned["REGION_ARGUMENTS"])
    assert "weight" in [part for part, _ in ast.literal_eval(assigned["REGION_PARTS"])]  # on each region's row


# --------------------------------------------------------------------------------------------
# frames (#13): the spec, the plug-in's registration and dialog, and the engine's job agree
# --------------------------------------------------------------------------------------------

def _assigned(path: Path) -> dict[str, ast.expr]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {t.id: n.value for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}


def test_frames_procedure_spec_registration_dialog_and_job_agree() -> None:
    from nst_engine import gimp_install
    from nst_engine.bridge import arguments, frames
    from nst_engine.temporal import CONSISTENCY

    facts: Any = {"models": [{"name": "starry-night", "painting": "The Starry Night", "variant": "x"}]}
    args = arguments.spec(facts)["procedures"]["plug-in-nst-frames"]
    by_name = {a["name"]: a for a in args}
    assert by_name["method"]["default"] == "model" and by_name["model"]["default"] == "starry-night"
    assert [c["nick"] for c in by_name["consistency"]["choices"]] == list(CONSISTENCY)
    assert by_name["consistency"]["default"] == "temporal" and by_name["blend"]["max"] == frames.MAX_BLEND
    assert by_name["style-layer"]["show_if"] == {"method": ["iterative"]}
    plug = REPO / "gimp_plugin"
    plugin = (plug / "nst_gimp.py").read_text(encoding="utf-8")
    for kind in {a["type"] for a in args}:
        assert f'kind == "{kind}"' in plugin, f"nst_gimp.add_argument does not register {kind} arguments"
    assert "PROC_FRAMES]" in plugin and "nst_gimp_frames.describe(proc)" in plugin
    mine = _assigned(plug / "nst_gimp_frames.py")
    assert ast.literal_eval(mine["PROC_FRAMES"]) == "plug-in-nst-frames"
    assert ast.literal_eval(mine["MIN_FRAMES"]) == frames.MIN_FRAMES
    assert {"nst_gimp_frames.py", "nst_gimp_engine.py"} <= set(gimp_install.PLUGIN_MODULES)
    # the dialog lays out every argument once (Method on top, the rest in frames)
    dialog = _assigned(plug / "nst_gimp_dialog.py")
    assert ast.literal_eval(dialog["PROC_FRAMES"]) == "plug-in-nst-frames"
    groups = dialog["GROUPS"]
    assert isinstance(groups, ast.Dict)
    frames_groups = next(ast.literal_eval(v) for k, v in zip(groups.keys, groups.values, strict=True)
                         if isinstance(k, ast.Name) and k.id == "PROC_FRAMES")
    laid_out = ["method"] + [n for _, _, names in frames_groups for n in names]
    assert sorted(laid_out) == sorted(by_name), set(laid_out) ^ set(by_name)
    # what the plug-in sends (every argument but layers and files, '-' as '_') the job takes
    params = {a["name"].replace("-", "_"): a.get("default") for a in args if a["type"] not in ("layer", "file")}
    arrays = [{"name": f"frame{i}", "shape": [8, 8, 4], "dtype": "<f4"} for i in range(2)]
    frames.check_request({"params": params, "arrays": arrays}, 0)
    frames._config(params)


def test_plugin_modules_import_only_gi_and_the_standard_library() -> None:
    ours = {"nst_gimp_dialog", "nst_gimp_engine", "nst_gimp_frames", "nst_gimp_layers", "nst_gimp_spec", "nst_bridge",
            "gi", "__future__"}
    for path in sorted((REPO / "gimp_plugin").glob("nst_gimp*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for name in names:
                top = name.split(".")[0]
                assert top in ours or top in sys.stdlib_module_names, f"{path.name} imports {name}"
