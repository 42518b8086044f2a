"""Shared fixtures: small real images (scikit-image's photos, the shipped styles), real VGG-19 weights,
an in-process bridge server."""
from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from bridge_helpers import invert
from nst_engine.bridge.server import Server
from nst_engine.samples import load

torch.set_num_threads(2)


def small(spec: str, size: int) -> np.ndarray:
    from skimage.transform import resize

    img = load(spec, "test")[..., :3]
    h, w = img.shape[:2]
    s = size / max(h, w)
    return resize(img, (round(h * s), round(w * s)), anti_aliasing=True).astype(np.float32)


@pytest.fixture(scope="session")
def content96() -> np.ndarray:
    return small("sample:astronaut", 96)


@pytest.fixture(scope="session")
def style96() -> np.ndarray:
    return small("style:swirls", 96)


@pytest.fixture
def bridge_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., Server]]:
    """bridge_server(handlers, **Server kwargs) -> a running in-process bridge server (stopped at the end;
    the default handler inverts ``content``). The client finds it through NST_BRIDGE_STATE_DIR."""
    monkeypatch.setenv("NST_BRIDGE_STATE_DIR", str(tmp_path / "state"))
    running: list[tuple[Server, threading.Thread]] = []

    def _start(handlers: dict[str, Any] | None = None, **kw: Any) -> Server:
        srv = Server(tmp_path / "state", handlers or {"stylize": invert}, **{"idle_timeout": 60, **kw})
        srv.bind()
        t = threading.Thread(target=srv.serve_forever, daemon=True)
        t.start()
        running.append((srv, t))
        return srv

    yield _start
    for srv, t in running:
        srv.stop()
        t.join(10)
