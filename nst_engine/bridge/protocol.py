"""Wire format between the GIMP plug-in and the engine server. Standard library only.

This file is copied verbatim into the installed plug-in (GIMP's Python has no numpy), so it must
not import anything outside the standard library.

A *message* is::

    b"NSTB" | uint32 big-endian header length | header (UTF-8 JSON object) | payload

The header's ``"arrays"`` list describes the payload: each entry ``{"name", "shape", "dtype"}``
(dtype is always ``"<f4"``, little-endian float32, C order); the payload is the arrays' raw
bytes one after the other. No pickle, nothing executable: a malformed message raises
`ProtocolError`.

A connection carries: client ``hello`` (a fresh nonce) → server ``challenge`` (its nonce and
its proof) → client ``auth`` (the client's proof) → server ``hello`` → client request (``op``:
``stylize``, ``texture``, ``frames``, ``ping`` or ``shutdown``) → server ``progress`` messages → one
``result`` or ``error``. The client cancels by closing the connection; the server notices and
stops the engine.

Both sides prove that they know the per-user token (from the 0600 state file) without sending
it: a proof is ``HMAC-SHA256(token, role | client nonce | server nonce)`` (`proof`). The client
checks the server's proof before it sends anything else, so a process that took over the port of
a dead server learns neither the token nor the pixels.

A receiver allocates memory as bytes arrive, not for the size a header declares, and can give
`recv` a deadline for the whole message (a peer trickling bytes cannot hold it forever).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import socket
import struct
import sys
import time
from typing import Any, Callable

MAGIC = b"NSTB"
PROTOCOL_VERSION = 2  # 2: mutual challenge (the token never travels)
DTYPE = "<f4"
ITEMSIZE = 4
MAX_HEADER = 1 << 20  # 1 MiB of JSON is far more than any header needs
MAX_ARRAY_BYTES = 1 << 34  # 16 GiB: 20000 x 20000 x 4 float32 plus slack
CHUNK = 1 << 22  # bytes per recv/send call: memory grows by at most this ahead of the data
NONCE_HEX = 64  # 32 random bytes as hex
_HEX = re.compile(r"[0-9a-f]{64}\Z")
_PREFIX = struct.Struct(">4sI")

# check(header, payload bytes) -> a deadline (time.monotonic()) for the payload, or None
Check = Callable[[dict[str, Any], int], "float | None"]


class ProtocolError(Exception):
    """The peer sent something that is not a valid message (or closed mid-message, or too slowly)."""


class ConnectionClosed(ProtocolError):
    """The peer closed the connection cleanly before a new message began."""


class Rejected(ProtocolError):
    """A well-formed message the receiver refuses (its ``check``); the message says why."""


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


def send(sock: socket.socket, header: dict[str, Any], arrays: dict[str, tuple[list[int], Any]] | None = None,
         *, timeout: float | None = None) -> None:
    """Send one message. ``timeout``: seconds the peer may go without taking any of it (then
    `socket.timeout`, an OSError); None: the socket's own setting."""
    if timeout is not None:
        sock.settimeout(timeout)
    for chunk in pack(header, arrays):
        view = memoryview(chunk)
        for i in range(0, len(view), CHUNK):  # each piece gets the whole timeout: "no progress for"
            sock.sendall(view[i:i + CHUNK])


def _recv_exact(sock: socket.socket, n: int, *, at_start: bool = False, deadline: float | None = None) -> bytearray:
    """``n`` bytes; the buffer grows with what arrives (a header's claim allocates nothing)."""
    buf = bytearray()
    scratch = memoryview(bytearray(min(n, CHUNK)))
    while len(buf) < n:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ProtocolError(f"timed out after {len(buf)} of {n} bytes")
            sock.settimeout(left)
        try:
            k = sock.recv_into(scratch, min(n - len(buf), len(scratch)))
        except socket.timeout:
            raise ProtocolError(f"timed out after {len(buf)} of {n} bytes") from None
        if k == 0:
            if at_start and not buf:
                raise ConnectionClosed("connection closed")
            raise ProtocolError(f"connection closed mid-message ({len(buf)} of {n} bytes)")
        buf += scratch[:k]
    return buf


def _describe(header: dict[str, Any], max_array_bytes: int) -> tuple[list[tuple[str, list[int]]], int]:
    """The header's arrays as (name, shape), checked, and their total bytes (nothing read yet)."""
    descr = header.get("arrays", [])
    if not isinstance(descr, list):
        raise ProtocolError("'arrays' must be a list")
    out: list[tuple[str, list[int]]] = []
    total = 0
    for d in descr:
        if not isinstance(d, dict) or not isinstance(d.get("name"), str) or d.get("dtype") != DTYPE:
            raise ProtocolError(f"bad array description {d!r}"[:300])
        shape = d.get("shape")
        if not isinstance(shape, list) or len(shape) > 8 or not all(
                isinstance(s, int) and not isinstance(s, bool) and 0 <= s for s in shape):
            raise ProtocolError(f"bad array shape {shape!r}"[:300])
        if any(name == d["name"] for name, _ in out):
            raise ProtocolError(f"array {d['name']!r} sent twice"[:300])
        total += _prod(shape) * ITEMSIZE
        if total > max_array_bytes:
            raise Rejected(f"the images sent ({total / 2**30:.2f} GiB as float32) exceed the engine's limit of "
                           f"{max_array_bytes / 2**30:.2f} GiB per job: use a smaller layer or selection")
        out.append((d["name"], shape))
    return out, total


def recv(sock: socket.socket, *, max_array_bytes: int = MAX_ARRAY_BYTES, deadline: float | None = None,
         check: Check | None = None) -> tuple[dict[str, Any], dict[str, tuple[list[int], bytearray]]]:
    """Read one message: (header, {name: (shape, raw little-endian float32 bytes)}).

    ``deadline`` (a `time.monotonic()` time) bounds the whole message; ``check(header, nbytes)``
    runs once the header is read and before any payload byte is: it may raise `Rejected` or
    return a new deadline for the payload. Memory grows with the bytes received.
    """
    magic, length = _PREFIX.unpack(bytes(_recv_exact(sock, _PREFIX.size, at_start=True, deadline=deadline)))
    if magic != MAGIC:
        raise ProtocolError(f"not an NST bridge message (magic {magic!r})")
    if length > MAX_HEADER:
        raise ProtocolError(f"header of {length} bytes is too large")
    try:
        header = json.loads(bytes(_recv_exact(sock, length, deadline=deadline)).decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError) as e:
        raise ProtocolError(f"header is not JSON: {e}"[:300]) from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    descr, total = _describe(header, max_array_bytes)
    if check is not None:
        deadline = check(header, total) or deadline
    arrays: dict[str, tuple[list[int], bytearray]] = {}
    for name, shape in descr:
        arrays[name] = (shape, _recv_exact(sock, _prod(shape) * ITEMSIZE, deadline=deadline))
    return header, arrays


# --------------------------------------------------------------------------------------------
# mutual authentication
# --------------------------------------------------------------------------------------------

def nonce() -> str:
    return os.urandom(NONCE_HEX // 2).hex()


def is_nonce(value: Any) -> bool:
    return isinstance(value, str) and _HEX.match(value) is not None


def proof(token: str, role: str, client_nonce: str, server_nonce: str) -> str:
    """HMAC-SHA256 of ``role|client nonce|server nonce`` keyed with the token (hex)."""
    msg = f"nst-bridge-{PROTOCOL_VERSION}|{role}|{client_nonce}|{server_nonce}".encode("ascii")
    return hmac.new(token.encode("utf-8"), msg, hashlib.sha256).hexdigest()


def proof_ok(value: Any, token: str, role: str, client_nonce: str, server_nonce: str) -> bool:
    """Is ``value`` the right proof? Any type and any text is safe to pass (no exception)."""
    if not is_nonce(value):  # a proof is 64 lower-case hex digits, like a nonce
        return False
    return hmac.compare_digest(value.encode("ascii"), proof(token, role, client_nonce, server_nonce).encode("ascii"))


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
