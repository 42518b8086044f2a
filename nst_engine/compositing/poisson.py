"""Poisson image blending: Pérez, Gangnet & Blake, "Poisson image editing", SIGGRAPH 2003.

Inside the selected region Omega the output f solves the discrete Poisson equation of the paper
(eq. 7): for every pixel p in Omega with 4-neighbours N_p *inside the image*,

    |N_p| f_p - sum_{q in N_p ∩ Omega} f_q = sum_{q in N_p ∩ ∂Omega} f*_q + sum_{q in N_p} v_pq,

so f keeps the guidance field v and meets the target f* on the boundary ∂Omega.
``mode="seamless"`` uses the source's gradients, v_pq = g_p - g_q (paper eq. 11);
``mode="mixed"`` the stronger of the source's and the target's, per edge and per colour channel
(eq. 13). Outside Omega the output *is* the target, bit for bit.

Choices where the paper is silent or a user needs more (each one is tested):

* **Colour**: each colour channel is solved on its own, as in the paper. An **alpha** channel
  (RGBA, or grey + alpha) is never blended: the output keeps the target's alpha everywhere, and the
  source's alpha is ignored. Multiply it into ``mask`` to honour it.
* **dtype**: uint8 and uint16 are read as 0..1 and written back rounded and clipped; float images are
  taken as they are and written back unclipped in the target's float dtype (a Poisson solution
  may overshoot 0..1 a little; clip it if you need to). The solve runs in float32 (multigrid) or
  float64 (``solver="direct"``), so a uint16 result may be one level off the exactly rounded one.
* **Soft masks** (values between 0 and 1): Omega is ``mask > 0`` (the whole feathered selection);
  the solution is then alpha-blended over the target by the mask value:
  ``out = m * f + (1 - m) * target``. A binary mask gives the plain Poisson solution.
* **Image border**: a pixel of Omega on the target's edge just has fewer neighbours (Neumann, the
  paper's N_p). ``offset`` may push the source partly out of the target: the part outside is
  dropped and the clipped region is blended like any other that touches the border.
* **Source border**: the source is extended by replicating its edge pixels, so a mask that
  touches the source's own edge adds no gradient across it.
* **No boundary**: if Omega covers the whole target there is no boundary to match; the problem is
  solved up to a constant and that constant is set so that every channel keeps the target's mean
  (in seamless mode the result is just the source shifted by a constant per channel). A
  :class:`NoBoundaryWarning` says so.

Solver: conjugate gradients with a geometric multigrid preconditioner on the mask's bounding box,
compiled with numba (``_jit.py``: every pass fused, all channels at once, rows split over threads),
or the same method in numpy (``_multigrid.py``) where numba is missing; ``solver="direct"`` is a
sparse LU (SuperLU) of the same system, exact but slow beyond ~1 megapixel.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from collections.abc import Callable
from types import ModuleType
from typing import TYPE_CHECKING, Literal

import numpy as np

from nst_engine.arrays import _INT_MAX, to_unit_float
from nst_engine.errors import InputError

from ._inputs import _check_offset, _colour_channels, _from_unit_float, _mask_float, _mask_values, _planes, _unit
from ._laplacian import degrees as _degrees
from ._laplacian import direct_solver
from ._multigrid import MaskedPoisson

if TYPE_CHECKING:
    from ._jit import JitPoisson

__all__ = ["poisson_blend", "poisson_blend_report", "BlendReport", "NoBoundaryWarning", "to_unit_float"]

Mode = Literal["seamless", "mixed"]
Solver = Literal["multigrid", "direct"]
_MODES = ("seamless", "mixed")
_SOLVERS = ("multigrid", "direct")


class NoBoundaryWarning(UserWarning):
    """The mask covers the whole target: the blend kept the target's mean instead of a boundary."""


@dataclass(frozen=True)
class BlendReport:
    """What `poisson_blend_report` did, besides the image."""

    image: np.ndarray
    bbox: tuple[int, int, int, int]  # x0, y0, x1, y1 of the solved region in the target (exclusive)
    unknowns: int  # pixels solved for (the region Omega, mask > 0)
    iterations: list[int]  # CG iterations per colour channel (0: factorised directly)
    note: str  # "" or why the result is not a plain Poisson blend (no boundary)


@dataclass
class _Problem:
    """The linear system of one blend, on the solve rectangle (see `_setup`).

    The colour planes `T` and `f0` are made on first use: a seamless blend of an 8/16-bit image
    with a hard mask never needs them whole (`_seamless_rhs` reads the boundary pixels, `_finish`
    adds the source straight into the output), which saves two float copies of the rectangle.
    """

    target: np.ndarray  # the caller's target (for the output's shape and dtype)
    box: tuple[int, int, int, int]  # x0, y0, x1, y1 of the rectangle in the target
    neumann: tuple[bool, bool, bool, bool]  # image edges at top, bottom, left, right
    m: np.ndarray  # mask values on the rectangle, float32
    omega: np.ndarray  # m > 0
    singular: bool  # Omega is the whole target: no Dirichlet pixel
    t_rect: np.ndarray  # the target on the rectangle, HxWxC in its own dtype (a view)
    s_rect: np.ndarray  # the source on the rectangle (edge pixels replicated where it does not reach)
    r: np.ndarray  # right-hand side for the correction x = f - f0 (zero outside Omega; the solver may overwrite it)
    _f0: np.ndarray | None = None  # the first guess as planes, once made (see `f0`)
    _T: np.ndarray | None = None

    @property
    def T(self) -> np.ndarray:
        """Target colours (C, h, w), 0..1."""
        if self._T is None:
            self._T = _planes(self.t_rect, self.r.shape[0], self.r.dtype.type, "target")
        return self._T

    @property
    def f0(self) -> np.ndarray:
        """The first guess: the source on Omega (elsewhere the target in mixed mode, or unused)."""
        if self._f0 is None:
            self._f0 = _planes(self.s_rect, self.r.shape[0], self.r.dtype.type, "source")
        return self._f0

    def degrees(self) -> np.ndarray:
        """|N_p| on Omega (0 elsewhere): the matrix diagonal."""
        return _degrees(self.omega, self.neumann) * self.omega


def _setup(source: np.ndarray, target: np.ndarray, mask: np.ndarray, mode: str, offset: object,
           work: type) -> _Problem:
    """Check the arguments and build the system of eq. 7 for the correction x = f - f0."""
    if mode not in _MODES:
        raise InputError("mode", mode, f"expected one of {', '.join(_MODES)}")
    source, target = np.asarray(source), np.asarray(target)
    cs, ct = _colour_channels(source, "source"), _colour_channels(target, "target")
    if cs != ct:
        raise InputError("source", f"array of shape {source.shape}",
                         f"has {cs} colour channel(s), the target {target.shape} has {ct}")
    m_src = _mask_values(mask)
    if m_src.shape != source.shape[:2]:
        raise InputError("mask", f"array of shape {np.shape(mask)}", f"must match the source's HxW {source.shape[:2]}")
    ox, oy = _check_offset(offset)
    H, W = target.shape[:2]
    h, w = source.shape[:2]
    tx0, ty0, tx1, ty1 = max(0, ox), max(0, oy), min(W, ox + w), min(H, oy + h)
    if tx0 >= tx1 or ty0 >= ty1:
        raise InputError("offset", (ox, oy), f"places the {w}x{h} source entirely outside the {W}x{H} target")
    # the mask in target coordinates, on the overlap of source and target
    m_over = m_src[ty0 - oy : ty1 - oy, tx0 - ox : tx1 - ox]
    sel = m_over > 0
    if not sel.any():
        why = "is empty" if not (m_src > 0).any() else f"selects nothing inside the target at offset {(ox, oy)}"
        raise InputError("mask", f"array of shape {np.shape(mask)}", why)
    rows, cols = np.flatnonzero(sel.any(axis=1)), np.flatnonzero(sel.any(axis=0))
    # the solve rectangle: Omega's bounding box plus one ring of boundary pixels, inside the image
    by0, by1 = ty0 + rows[0], ty0 + rows[-1] + 1
    bx0, bx1 = tx0 + cols[0], tx0 + cols[-1] + 1
    y0, y1, x0, x1 = max(0, by0 - 1), min(H, by1 + 1), max(0, bx0 - 1), min(W, bx1 + 1)
    neumann = (by0 == 0, by1 == H, bx0 == 0, bx1 == W)

    m = np.zeros((y1 - y0, x1 - x0), np.float32)
    m[by0 - y0 : by1 - y0, bx0 - x0 : bx1 - x0] = _mask_float(m_over[by0 - ty0 : by1 - ty0, bx0 - tx0 : bx1 - tx0])
    omega = m > 0
    singular = bool(omega.all()) and (y0, y1, x0, x1) == (0, H, 0, W)

    t_img = target if target.ndim == 3 else target[:, :, None]
    s_img = source if source.ndim == 3 else source[:, :, None]
    for img, name in ((t_img, "target"), (s_img, "source")):
        if img.dtype not in _INT_MAX and img.dtype.kind != "f":
            raise InputError(name, f"array {img.shape} {img.dtype}", "dtype must be uint8, uint16 or float")
    t_rect = t_img[y0:y1, x0:x1]
    # the source on the rectangle, its edge pixels replicated where it does not reach
    sr0, sr1, sc0, sc1 = max(0, y0 - oy), min(h, y1 - oy), max(0, x0 - ox), min(w, x1 - ox)
    s_rect = s_img[sr0:sr1, sc0:sc1]
    pads = ((sr0 - (y0 - oy), (y1 - oy) - sr1), (sc0 - (x0 - ox), (x1 - ox) - sc1), (0, 0))
    if any(p for pair in pads for p in pair):
        s_rect = np.pad(s_rect, pads, mode="edge")

    # right-hand side of the correction x = f - f0, f0 = source on Omega and target elsewhere:
    # r_p = sum_{q in N_p} (v_pq - (f0_p - f0_q)), which is eq. 7 with f0 moved to the right
    r = np.zeros((ct, y1 - y0, x1 - x0), work)  # calloc: no pass over memory that is mostly left zero
    pb = _Problem(target, (x0, y0, x1, y1), neumann, m, omega, singular, t_rect, s_rect, r)
    if t_rect.dtype.kind == "f" or s_rect.dtype.kind == "f":
        pb.T, pb.f0  # noqa: B018 (float images: converted now, which checks them for NaN)
    if mode == "seamless":
        # v_pq = S_p - S_q, so the terms cancel except across the boundary:
        # r_p = sum over neighbours q outside Omega of (T_q - S_q), nonzero on Omega's inner edge only
        _seamless_rhs(r, t_rect, s_rect, omega)
        return pb
    ints = t_rect.dtype in _INT_MAX and s_rect.dtype in _INT_MAX
    kernel = _mixed_kernel(int(np.count_nonzero(omega))) if ints and work is np.float32 else None
    if kernel is not None:
        # compiled, from the images themselves: no float copies (~20x faster at 4 MP, same bits)
        kernel(t_rect, s_rect, omega, np.float32(1.0 / _INT_MAX[t_rect.dtype]),
               np.float32(1.0 / _INT_MAX[s_rect.dtype]), r)
    else:
        T, S = pb.T, pb.f0
        f0 = pb._f0 = np.where(omega, S, T)
        for axis in (1, 2):
            a_list, b_list = [slice(None)] * 3, [slice(None)] * 3
            a_list[axis], b_list[axis] = slice(None, -1), slice(1, None)
            a, b = tuple(a_list), tuple(b_list)
            v = S[a] - S[b]
            dt = T[a] - T[b]
            v = np.where(np.abs(dt) > np.abs(v), dt, v)  # mixed: the stronger gradient (eq. 13)
            g = v - (f0[a] - f0[b])
            r[a] += g
            r[b] -= g
        r *= omega
    return pb


def _seamless_rhs(r: np.ndarray, t_rect: np.ndarray, s_rect: np.ndarray, omega: np.ndarray) -> None:
    """r_p += T_q - S_q for each 4-neighbour q outside Omega of each p in Omega (in the order below,
    above, right, left), touching only Omega's inner edge: the work follows the selection's
    perimeter, not its area. T and S are read from the HxWxC images, in 0..1."""
    C, work = r.shape[0], r.dtype.type
    h, w = omega.shape
    # beyond the rectangle is the image's edge (else the rectangle has a ring outside Omega): no
    # neighbour there, so it counts as inside
    pad = np.pad(omega, 1, constant_values=True)
    inner = pad[:-2, 1:-1] & pad[2:, 1:-1]
    inner &= pad[1:-1, :-2]
    inner &= pad[1:-1, 2:]
    py, px = np.nonzero(omega & ~inner)  # Omega's inner edge, found in one pass
    for dy, dx in ((1, 0), (-1, 0), (0, 1), (0, -1)):  # the neighbour q = p + (dy, dx)
        qy, qx = py + dy, px + dx
        out = (qy >= 0) & (qy < h) & (qx >= 0) & (qx < w)
        out[out] = ~omega[qy[out], qx[out]]
        ey, ex, qy, qx = py[out], px[out], qy[out], qx[out]
        r[:, ey, ex] += (_unit(t_rect[qy, qx, :C], work) - _unit(s_rect[qy, qx, :C], work)).T


def _finish(pb: _Problem, x: np.ndarray, iterations: list[int]) -> BlendReport:
    """Add the correction, alpha-blend soft masks, write Omega into a copy of the target."""
    x0, y0, x1, y1 = pb.box
    out = pb.target.copy()
    soft = bool((pb.m[pb.omega] < 1).any())
    if out.dtype in _INT_MAX and not soft and not pb.singular and pb._f0 is None:
        # hard mask, 8/16-bit, f0 the source on Omega (seamless, or mixed with the compiled
        # right-hand side): f = source + x, rounded straight into the output; x is ours, so no
        # full-size float copy is made
        top = _INT_MAX[out.dtype]
        s_scale = top / _INT_MAX[pb.s_rect.dtype] if pb.s_rect.dtype in _INT_MAX else top
        for k in range(x.shape[0]):
            v = x[k]
            v *= top
            v += pb.s_rect[:, :, k] if s_scale == 1.0 else pb.s_rect[:, :, k] * s_scale
            np.rint(v, out=v)
            np.clip(v, 0, top, out=v)
            dst = out[y0:y1, x0:x1] if out.ndim == 2 else out[y0:y1, x0:x1, k]
            np.copyto(dst, v, where=pb.omega, casting="unsafe")
        return BlendReport(out, pb.box, int(pb.omega.sum()), iterations, "")
    f = np.add(x, pb.f0, out=x)  # x is ours: no new array
    note = ""
    if pb.singular:
        # no boundary: the solution is defined up to a constant; keep the target's mean
        shift = pb.T.mean(axis=(1, 2), dtype=np.float64) - f.mean(axis=(1, 2), dtype=np.float64)
        f += shift.astype(f.dtype)[:, None, None]
        note = "mask covers the whole target: no boundary to match, kept the target's mean per channel"
    for k in range(pb.T.shape[0]):
        vals = pb.T[k] + pb.m * (f[k] - pb.T[k]) if soft else f[k]  # soft masks: alpha-blend
        dst = out[y0:y1, x0:x1] if out.ndim == 2 else out[y0:y1, x0:x1, k]
        np.copyto(dst, _from_unit_float(vals, out.dtype), where=pb.omega)
    return BlendReport(out, pb.box, int(pb.omega.sum()), iterations, note)


# unknowns from which the compiled solver pays for loading numba and its kernels (~0.4 s once per
# process); below, the numpy solver takes under ~0.5 s (so does numba's first call)
JIT_MIN = 1_000_000


def _compiled(unknowns: int) -> ModuleType | None:
    """The compiled solver's module (`_jit`) for a region of `unknowns` pixels: None below
    `JIT_MIN` or without numba."""
    if unknowns < JIT_MIN:
        return None
    try:
        from . import _jit
    except ImportError:
        return None
    return _jit


def _solver_class(unknowns: int) -> type[MaskedPoisson] | type[JitPoisson]:
    """The compiled solver (`_jit.py`) for large regions when numba is installed, else the numpy
    one: the same method, results within the tolerance of each other."""
    jit = _compiled(unknowns)
    return MaskedPoisson if jit is None else jit.JitPoisson


def _mixed_kernel(unknowns: int) -> Callable[..., None] | None:
    """The compiled right-hand side of a mixed blend (`_jit_kernels.mixed_rhs`) where the compiled
    solver runs (`_solver_class`), else None (numpy)."""
    jit = _compiled(unknowns)
    return None if jit is None else jit.K.mixed_rhs  # type: ignore[no-any-return]


def prepare(pixels: int) -> None:
    """Start loading the compiled solver's kernels in a background thread if a blend of about
    `pixels` unknowns will use it: a caller that knows the size before the setup starts (`nst blend`
    after decoding) overlaps the loading with the setup."""
    if pixels < JIT_MIN:
        return
    import threading

    def load() -> None:
        jit = _compiled(pixels)
        if jit is not None:  # None without numba: the numpy solver it is
            jit.warm_up()

    threading.Thread(target=load, daemon=True, name="nst-jit-warm-up").start()


def poisson_blend_report(
    source: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    *,
    mode: Mode = "seamless",
    offset: tuple[int, int] = (0, 0),
    solver: Solver = "multigrid",
    rtol: float | None = None,
    threads: int | None = None,
) -> BlendReport:
    """Like :func:`poisson_blend` but returns a :class:`BlendReport` and does not warn."""
    if solver not in _SOLVERS:
        raise InputError("solver", solver, f"expected one of {', '.join(_SOLVERS)}")
    if rtol is not None and not 0.0 < rtol < 1.0:
        raise InputError("rtol", rtol, "expected 0 < rtol < 1")
    pb = _setup(source, target, mask, mode, offset, np.float64 if solver == "direct" else np.float32)
    if solver == "direct":
        solve = direct_solver(pb.omega, pb.degrees(), singular=pb.singular)
        x = np.zeros_like(pb.r)
        x[:, pb.omega] = solve(pb.r[:, pb.omega].T).T
        return _finish(pb, x, [0] * x.shape[0])
    if rtol is None:
        # measured max error vs the direct solve, in 8-bit levels: ~0.05 at 1e-4 (a tenth of the
        # rounding), ~0.001 at 1e-6; the constant mode of the boundary-free problem is slower
        rtol = 1e-4 if pb.target.dtype == np.uint8 else 1e-6
        rtol *= 0.1 if pb.singular else 1.0
    solver_class = _solver_class(int(pb.omega.sum()))
    x, iterations = solver_class(pb.omega, pb.neumann, singular=pb.singular).solve(pb.r, rtol=rtol, threads=threads)
    return _finish(pb, x, iterations)


def poisson_blend(
    source: np.ndarray,
    target: np.ndarray,
    mask: np.ndarray,
    *,
    mode: Mode = "seamless",
    offset: tuple[int, int] = (0, 0),
    solver: Solver = "multigrid",
    rtol: float | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Blend `source` into `target` inside `mask` (Pérez et al. 2003); returns a new target-like array.

    source, target: HxW, HxWx1..4 arrays (grey, grey+alpha, RGB, RGBA; uint8, uint16 or float),
        with the same number of colour channels; the output has the target's shape and dtype.
    mask: HxW of the *source* (bool, uint8/uint16, or float 0..1; soft values alpha-blend the
        solution, see the module notes).
    mode: "seamless" (source gradients) or "mixed" (the stronger gradient of source and target).
    offset: (x, y) of the source's top-left pixel in the target; may be negative or push the source
        partly outside the target (it is clipped). Entirely outside raises InputError.
    solver: "multigrid" (default: conjugate gradients + multigrid, small regions factorised
        directly) or "direct" (sparse LU, exact, for checking; slow beyond ~1 megapixel).
    rtol: relative residual at which conjugate gradients stop (multigrid solver); default 1e-4
        for uint8 targets (error ~0.05 of a level), 1e-6 otherwise (~5e-6 in 0..1 units).
    threads: threads for the solve (default: the CPUs this process may use); channels run in
        parallel, and a channel left alone splits its work over two threads.

    Raises InputError for bad arguments, an empty mask or one selecting nothing inside the target;
    warns NoBoundaryWarning when the mask covers the whole target (see the module notes).
    """
    report = poisson_blend_report(source, target, mask, mode=mode, offset=offset, solver=solver,
                                  rtol=rtol, threads=threads)
    if report.note:
        warnings.warn(report.note, NoBoundaryWarning, stacklevel=2)
    return report.image
