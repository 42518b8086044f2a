"""The GIMP side without a GIMP: the plug-in's messages and error handling, and when the real GIMP
tests run, skip or fail."""
from __future__ import annotations

import ast
import json
import sys
from pathlib import Path

import pytest

from gimp_plugin import nst_gimp_spec

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests" / "gimp"))
import gimpchroot  # noqa: E402


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


@pytest.mark.parametrize("name", ["nst_gimp.py", "nst_gimp_dialog.py", "nst_gimp_layers.py", "nst_gimp_spec.py"])
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
