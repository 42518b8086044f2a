"""The GIMP bridge's frames job (#13; `nst_engine.bridge.frames`): an animation's frames stylized
with temporal consistency, per-frame progress, frames of different sizes, the iterative path's
fewer steps after the first frame, refusals before the pixels are read. The engine is stubbed
except in the shipped-model test (64x48 frames)."""
from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bridge_helpers import authenticated, header
from nst_engine.bridge import client, frames, jobs, protocol
from nst_engine.errors import Cancelled, InputError


def _frames_arrays(frames_: list[np.ndarray], **extra: np.ndarray) -> dict[str, tuple[list[int], Any]]:
    arrays = {f"frame{i}": (list(f.shape), np.ascontiguousarray(f, np.float32).tobytes()) for i, f in enumerate(frames_)}
    for name, a in extra.items():
        arrays[name] = (list(a.shape), np.ascontiguousarray(a, np.float32).tobytes())
    return arrays


def _pan(n: int = 4, h: int = 48, w: int = 64, dx: int = 2) -> list[np.ndarray]:
    """``n`` RGBA frames of a smooth pattern panned ``dx`` px a frame, alpha a ramp."""
    ys, xs = np.mgrid[0:h, 0:w + n * dx].astype(np.float32)
    big = np.stack([0.5 + 0.4 * np.sin(xs / 5.0), 0.5 + 0.4 * np.cos(ys / 4.0),
                    0.5 + 0.4 * np.sin((xs + ys) / 7.0)], axis=2)
    alpha = np.broadcast_to(np.linspace(0.5, 1.0, w, dtype=np.float32)[None, :, None], (h, w, 1))
    return [np.concatenate([big[:, i * dx:i * dx + w], alpha], axis=2).astype(np.float32) for i in range(n)]


def _noisy_model(monkeypatch: pytest.MonkeyPatch, seen: list[dict[str, Any]]) -> None:
    """models.stylize_model stubbed: the frame darkened, plus fresh noise every call (flicker)."""
    from nst_engine import models

    rng = np.random.default_rng(0)

    def fake(content, model, callback=None, stop=None, **kw):
        seen.append({"shape": content.shape, "model": model, **kw})
        out = 0.8 * content[..., :3] + 0.2 * rng.random(content.shape[:2] + (3,), dtype=np.float32)
        return np.clip(out, 0, 1).astype(np.float32)

    monkeypatch.setattr(models, "stylize_model", fake)


def _run(params: dict[str, Any], arrays: dict[str, Any], stop: threading.Event | None = None):
    messages: list[dict[str, Any]] = []
    head, out = frames.frames(params, arrays, messages.append, stop or threading.Event())
    return head, {k: v[1].reshape(v[0]) for k, v in out.items()}, messages


def _flicker(outs: dict[str, np.ndarray]) -> float:
    keys = sorted(outs, key=lambda k: int(k[5:]))
    return float(np.mean([np.abs(outs[b][..., :3] - outs[a][..., :3]).mean() for a, b in zip(keys, keys[1:], strict=False)]))


def test_model_frames_temporal_flickers_less_than_frame_by_frame(monkeypatch):
    seen: list[dict[str, Any]] = []
    _noisy_model(monkeypatch, seen)
    still = [_pan(1)[0]] * 4  # the same frame four times: any difference between outputs is flicker
    base = {"method": "model", "model": "starry-night", "preserve_colors": "none"}
    head_t, temporal, messages = _run(dict(base, consistency="temporal"), _frames_arrays(still))
    _, none, _ = _run(dict(base, consistency="none"), _frames_arrays(still))
    assert sorted(temporal) == [f"frame{i}" for i in range(4)]
    assert all(a.shape == (48, 64, 4) for a in temporal.values())
    np.testing.assert_array_equal(temporal["frame2"][..., 3], still[2][..., 3])  # each frame's alpha kept
    assert _flicker(temporal) < 0.7 * _flicker(none)
    assert head_t["info"]["frames"] == 4 and head_t["info"]["consistency"] == "temporal" and head_t["note"] == ""
    assert [m["stage"] for m in messages if m["total"] == 0] == [f"frame {k}/4" for k in range(1, 5)]
    assert {(m["frame"], m["frames"]) for m in messages} == {(k, 4) for k in range(1, 5)}
    assert seen[0]["model_size"] == 0 and seen[0]["preserve_colors"] == "none"


def test_frames_of_different_sizes_each_keep_their_size(monkeypatch):
    _noisy_model(monkeypatch, [])
    a, b = _pan(2), _pan(2, 32, 40)
    head, out, _ = _run({"method": "model", "model": "starry-night"}, _frames_arrays([a[0], a[1], b[0], b[1]]))
    assert [out[f"frame{i}"].shape for i in range(4)] == [(48, 64, 4)] * 2 + [(32, 40, 4)] * 2
    assert head["info"]["runs"] == 2
    assert "Frame 3 differ" in head["note"] and "own size" in head["note"]
    assert frames.runs([(4, 4, 3), (4, 4, 4), (2, 4, 3), (4, 4, 3)]) == [range(0, 2), range(2, 3), range(3, 4)]


def test_iterative_frames_start_from_the_previous_result_with_fewer_steps(monkeypatch):
    """Frame 1 of each same-size run: all steps, the default start; later frames: the previous
    output warped as the start image, next-steps (0: half of steps) at the final scale only;
    frame by frame (consistency none), every frame from the default start with all steps."""
    from nst_engine import api

    seen: list[dict[str, Any]] = []

    def fake(content, styles, config, callback=None, stop=None, **kw):
        init = config.init
        seen.append({"steps": config.steps, "scales": config.scales, "init_file": Path(init).is_file()
                     if init not in ("content", "noise", "style") else init, "styles": len(styles),
                     "temporal": kw.get("temporal")})
        return api.StyleResult(content.astype(np.float32), 0.0, {}, [], config.steps, False, 0.0, "cpu")

    monkeypatch.setattr(api, "stylize", fake)
    pan = _pan(3)
    style = np.random.default_rng(1).random((16, 16, 4), dtype=np.float32)
    params = {"method": "iterative", "steps": 10, "size": 64}
    head, out, messages = _run(params, _frames_arrays(pan + [_pan(1, 32, 32)[0]], style=style))
    assert [s["steps"] for s in seen] == [10, 5, 5, 10]
    assert [s["init_file"] for s in seen] == ["content", True, True, "content"]
    assert all(s["styles"] == 1 for s in seen) and seen[1]["scales"] == (64,)
    assert head["info"]["steps"] == 30 and out["frame3"].shape == (32, 32, 4)
    # later frames of a run are held to the warped previous result by the temporal loss
    assert [s["temporal"] is not None for s in seen] == [False, True, True, False]
    assert seen[1]["temporal"].warped.shape[:2] == seen[1]["temporal"].mask.shape
    seen.clear()
    _run(dict(params, next_steps=3, consistency="none"), _frames_arrays(pan, style=style))
    assert [(s["steps"], s["init_file"]) for s in seen] == [(10, "content")] * 3  # no warm start: all steps
    assert all(s["temporal"] is None for s in seen)


def test_frames_job_errors_name_the_argument(monkeypatch):
    seen: list[dict[str, Any]] = []
    _noisy_model(monkeypatch, seen)
    pan = _pan(2)
    for params, arrays, match in (
            ({"method": "model", "model": "starry-night"}, _frames_arrays(pan[:1]), "at least 2 frames"),
            ({"method": "model", "model": "starry-night"}, {**_frames_arrays(pan), "frame3": _frames_arrays(pan)["frame0"]},
             "without a gap"),
            ({"method": "model", "model": "starry-night", "consistency": "sometimes"}, _frames_arrays(pan), "consistency"),
            ({"method": "model", "model": "starry-night", "blend": 1.0}, _frames_arrays(pan), "blend"),
            ({"method": "model", "model": ""}, _frames_arrays(pan), "choose a model"),
            ({"method": "iterative"}, _frames_arrays(pan), "choose a style"),
            ({"method": "model", "model": "starry-night", "next_steps": -1}, _frames_arrays(pan), "next-steps"),
            ({"method": "model", "model": "starry-night", "refine_steps": -1}, _frames_arrays(pan), "refine-steps"),
            ({"method": "model", "model": "starry-night", "refine_steps": 2, "consistency": "none"},
             _frames_arrays(pan), "refine-steps"),
            ({"method": "iterative", "refine_steps": 2}, _frames_arrays(pan, style=pan[0]), "refine-steps")):
        with pytest.raises(InputError, match=match):
            frames.frames(params, arrays, lambda m: None, threading.Event())
    assert not seen  # refused before any work


def test_frames_job_stops_between_frames(monkeypatch):
    _noisy_model(monkeypatch, [])
    stop = threading.Event()
    messages: list[dict[str, Any]] = []

    def progress(m: dict[str, Any]) -> None:
        messages.append(m)
        if m.get("frame") == 2:
            stop.set()

    with pytest.raises(Cancelled):
        frames.frames({"method": "model", "model": "starry-night"}, _frames_arrays(_pan(4)), progress, stop)
    assert max(m["frame"] for m in messages) == 2


def test_frames_requests_are_refused_before_the_pixels(bridge_server):
    srv = bridge_server({"frames": frames.frames}, check=jobs.check_request, max_job_bytes=16 << 30)
    for arrays, params, needle in (
            ([{"name": "frame0", "shape": [8, 8, 4], "dtype": "<f4"}], {}, "at least 2 frames"),
            ([{"name": "frame0", "shape": [8, 8, 4], "dtype": "<f4"}, {"name": "content", "shape": [8, 8, 4],
                                                                      "dtype": "<f4"}], {}, "frames takes frame0"),
            ([{"name": f"frame{i}", "shape": [8, 8, 2], "dtype": "<f4"} for i in range(2)], {}, "3 or 4"),
            ([{"name": "frame0", "shape": [8, 8, 4], "dtype": "<f4"},
              {"name": "frame1", "shape": [25000, 20000, 3], "dtype": "<f4"}], {}, "400 MP"),
            ([{"name": f"frame{i}", "shape": [8, 8, 4], "dtype": "<f4"} for i in range(2)],
             {"consistency": "x"}, "consistency")):
        s = authenticated(srv)
        s.sendall(header({"op": "frames", "params": params, "arrays": arrays}))
        reply, _ = protocol.recv(s)
        s.close()
        assert reply["type"] == "error" and needle in reply["message"], reply


def test_frames_through_the_client_with_progress(bridge_server, monkeypatch):
    _noisy_model(monkeypatch, [])
    bridge_server({"frames": frames.frames}, check=jobs.check_request, prepare=jobs.PREPARE)
    pan = _pan(3, 24, 32)
    seen: list[dict[str, Any]] = []
    head, out = client.Engine({"engine_python": sys.executable}).call(
        "frames", {"method": "model", "model": "starry-night"}, _frames_arrays(pan), seen.append)
    assert head["type"] == "result" and head["op"] == "frames"
    assert sorted(out) == ["frame0", "frame1", "frame2"] and out["frame1"][0] == [24, 32, 4]
    assert [m["stage"] for m in seen if m.get("total") == 0 and "frame" in m] == ["frame 1/3", "frame 2/3", "frame 3/3"]


def test_frames_with_a_shipped_model_temporal_changes_the_result():
    """starry-night on a 4-frame pan (64x48): temporal consistency blends consecutive outputs."""
    from nst_engine.models import model_catalog

    if "starry-night" not in [e.name for e in model_catalog()]:
        pytest.skip("starry-night does not ship here")
    pan = _pan(4)
    base = {"method": "model", "model": "starry-night"}
    _, temporal, _ = _run(dict(base, consistency="temporal"), _frames_arrays(pan))
    _, none, _ = _run(dict(base, consistency="none"), _frames_arrays(pan))
    np.testing.assert_array_equal(temporal["frame0"], none["frame0"])  # nothing to blend with yet
    assert np.abs(temporal["frame3"] - none["frame3"]).mean() > 1e-3
    assert all(np.abs(none[k][..., :3] - f[..., :3]).mean() > 0.02 for k, f in zip(sorted(none), pan, strict=True))


def test_frames_with_a_shipped_model_and_refine_steps():
    """refine-steps (as `nst video --refine-steps`): optimizer steps on the blended frames under the
    model's own loss change the later frames, never the first (nothing is blended into it)."""
    from nst_engine.models import model_catalog

    if "starry-night" not in [e.name for e in model_catalog()]:
        pytest.skip("starry-night does not ship here")
    pan = _pan(3)
    base = {"method": "model", "model": "starry-night", "consistency": "temporal"}
    _, plain, _ = _run(base, _frames_arrays(pan))
    _, refined, _ = _run(dict(base, refine_steps=3), _frames_arrays(pan))
    np.testing.assert_array_equal(refined["frame0"], plain["frame0"])
    assert np.abs(refined["frame2"][..., :3] - plain["frame2"][..., :3]).mean() > 1e-3
    assert all(np.isfinite(a).all() and a.min() >= 0.0 and a.max() <= 1.0 for a in refined.values())


def test_iterative_frames_with_vgg():
    """The iterative path for real (VGG-19, 48x64 frames, a few steps): frame 2 starts from frame 1's
    result warped, with half the steps; each frame is painted."""
    pan = _pan(2)
    style = np.random.default_rng(2).random((32, 32, 3), dtype=np.float32)
    head, out, messages = _run({"method": "iterative", "steps": 20, "size": 64, "seed": 0},
                               _frames_arrays(pan, style=style))
    assert head["info"]["steps"] == 20 + 10
    assert all(np.abs(out[f"frame{i}"][..., :3] - pan[i][..., :3]).mean() > 0.01 for i in range(2))
    assert any(m["stage"].startswith("frame 2/2: ") and m["total"] == 10 for m in messages), messages[-3:]
