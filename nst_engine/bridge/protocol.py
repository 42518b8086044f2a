"""Wire format between the GIMP plug-in and the engine server. Standard library only.

This file is copied verbatim into the installed plug-in (GIMP's Python has no numpy), so it must
not import anything outside the standard library.

A *message* is::

    b"NSTB" | uint32 big-endian header length | header (UTF-8 JSON object) | payload

The header's ``"arrays"`` list describes the payload: each entry ``{"name", "shape", "dtype"}``
(dtype is always ``"<f4"``, little-endian float32, C order); the payload is the arrays' raw
bytes one after the other. No pickle, nothing executable: a malformed message raises
`ProtocolError`.

A connection carries: client ``hello`` (with the per-user token) → server ``hello`` → client
request (``op``: ``stylize``, ``texture``, ``ping`` or ``shutdown``) → server ``progress``
messages → one ``result`` or ``error``. The client cancels by closing the connection; the server
notices and stops the engine.
"""
from __future__ import annotations

import json
import socket
import struct
import sys
from typing import Any, Callable

MAGIC = b"NSTB"
PROTOCOL_VERSION = 1
DTYPE = "<f4"
ITEMSIZE = 4
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far more than any header needs
MAX_ARRAY_BYTES = 1 << 34  # 16 GiB: 20000 x 20000 x 4 float32 plus slack
_PREFIX = struct.Struct(">4sI")


class ProtocolError(Exception):
    """The peer sent something that is not a valid message (or closed mid-message)."""


class ConnectionClosed(ProtocolError):
    """The peer closed the connection cleanly before a new message began."""


def _prod(shape: list[int]) -> int:
    n = 1
    for s in shape:
        n *= s
    return n


def _as_bytes(data: Any) -> memoryview:
    """bytes, bytearray, memoryview, array.array or a numpy array → a flat byte view."""
    view = memoryview(data)
    if not view.c_contiguous:
        raise ProtocolError("array data must be C-contiguous")
    return view.cast("B") if view.format != "B" or view.ndim != 1 else view


def pack(header: dict[str, Any], arrays: dict[str, tuple[list[int], Any]] | None = None) -> list[Any]:
    """The message as a list of byte chunks (header copy + zero-copy views of the arrays).

    ``arrays`` maps a name to ``(shape, data)``, data being anything exposing float32 bytes
    (native little-endian; numpy float32 arrays pass as they are).
    """
    header = dict(header)
    descr, chunks = [], []
    for name, (shape, data) in (arrays or {}).items():
        shape = [int(s) for s in shape]
        view = _as_bytes(data)
        if view.nbytes != _prod(shape) * ITEMSIZE:
            raise ProtocolError(f"array {name!r}: {view.nbytes} bytes do not match shape {shape} float32")
        descr.append({"name": name, "shape": shape, "dtype": DTYPE})
        chunks.append(view)
    header["arrays"] = descr
    raw = json.dumps(header, separators=(",", ":"), allow_nan=False).encode("utf-8")
    if len(raw) > MAX_HEADER:
        raise ProtocolError("header too large")
    return [_PREFIX.pack(MAGIC, len(raw)) + raw, *chunks]


def send(sock: socket.socket, header: dict[str, Any], arrays: dict[str, tuple[list[int], Any]] | None = None) -> None:
    for chunk in pack(header, arrays):
        sock.sendall(chunk)


def _recv_exact(sock: socket.socket, n: int, *, at_start: bool = False) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], min(n - got, 1 << 22))
        if k == 0:
            if at_start and got == 0:
                raise ConnectionClosed("connection closed")
            raise ProtocolError(f"connection closed mid-message ({got} of {n} bytes)")
        got += k
    return buf


def recv(sock: socket.socket, *, max_array_bytes: int = MAX_ARRAY_BYTES) -> tuple[dict[str, Any], dict[str, tuple[list[int], bytearray]]]:
    """Read one message: (header, {name: (shape, raw little-endian float32 bytes)})."""
    magic, length = _PREFIX.unpack(bytes(_recv_exact(sock, _PREFIX.size, at_start=True)))
    if magic != MAGIC:
        raise ProtocolError(f"not an NST bridge message (magic {magic!r})")
    if length > MAX_HEADER:
        raise ProtocolError(f"header of {length} bytes is too large")
    try:
        header = json.loads(bytes(_recv_exact(sock, length)).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise ProtocolError(f"header is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    arrays: dict[str, tuple[list[int], bytearray]] = {}
    descr = header.get("arrays", [])
    if not isinstance(descr, list):
        raise ProtocolError("'arrays' must be a list")
    total = 0
    for d in descr:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or d.get("dtype") != DTYPE:
            raise ProtocolError(f"bad array description {d!r}")
        shape = d.get("shape")
        if not isinstance(shape, list) or not all(isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape):
            raise ProtocolError(f"bad array shape {shape!r}")
        nbytes = _prod(shape) * ITEMSIZE
        total += nbytes
        if total > max_array_bytes:
            raise ProtocolError(f"arrays of {total} bytes exceed the limit of {max_array_bytes}")
        arrays[d["name"]] = (shape, _recv_exact(sock, nbytes))
    return header, arrays


def to_native(data: bytearray) -> bytearray:
    """Little-endian float32 bytes → native order (a no-op on every platform GIMP runs on)."""
    if sys.byteorder == "little":
        return data
    import array

    a = array.array("f")
    a.frombytes(bytes(data))
    a.byteswap()
    return bytearray(a.tobytes())


def error_header(message: str, kind: str = "error") -> dict[str, Any]:
    return {"type": "error", "kind": kind, "message": message}


ProgressHandler = Callable[[dict[str, Any]], None]
