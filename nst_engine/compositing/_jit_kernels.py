"""Compiled (numba) loops of the multigrid solver in `_jit.py`: each is one fused pass over memory.

Every kernel works on a band of rows [i0, i1) so that the caller can split a level over threads
(numba's `nogil=True` lets two Python threads run two bands at once), and on the channels listed
in `chans` (CG drops a channel from the list once it has converged). Arrays are channel-planar:
fine solutions `x` are (C, h+2, w+2) with a ring of zeros (pixel (i, j) at [i+1, j+1]), right-hand
sides and residuals (C, h, w); `d` is |N_p| on Omega and 0 elsewhere, `invd` its inverse (0
elsewhere), both (h, w). Colour 0 ("red") is the pixels with i + j even. `span[i]` is the
columns [lo, hi) of row i that hold its Omega pixels (lo = hi when none): the kernels skip the
rest of each row, which stays 0 (solution, right-hand side, residual and CG vectors alike).

Compiled on first use and cached on disk (`cache=True`: next to this file, or in numba's user cache
when the package folder is read-only), so only the very first blend pays the compilation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

# fastmath lets LLVM reorder the row sums into vector lanes; a row's sum stays the same from run to
# run and does not depend on how rows are split over threads (they are added up per row). The row
# helpers below are called from two places in a kernel (a band's first rows, and the loop): without
# fastmath, both compute the same bits, so splitting the rows over threads changes nothing.
_compiled = njit(nogil=True, cache=True, boundscheck=False, error_model="numpy", fastmath=True)
_exact = njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")


@_exact
def _red_start(b: np.ndarray, invd: np.ndarray, span: np.ndarray, c: int, i: int, out: np.ndarray) -> None:
    """out[j+1] = b / |N_p| on the red pixels of row i, 0 elsewhere (and outside the grid)."""
    out[:] = 0.0
    if 0 <= i < invd.shape[0]:
        br, ir, lo, hi = b[c, i], invd[i], span[i, 0], span[i, 1]
        for j in range(lo + ((i + lo) & 1), hi, 2):
            out[j + 1] = br[j] * ir[j]


@_exact
def pre_smooth(x: np.ndarray, b: np.ndarray, invd: np.ndarray, span: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """The V-cycle's pre-smoother from x = 0 in one pass: red x = b / |N_p|, then black
    x = (b + red neighbours) / |N_p|. The red neighbours of a row are recomputed from b (three
    rows kept in a ring), so a band of rows depends on nothing another thread writes."""
    C, w = x.shape[0], invd.shape[1]
    red = np.zeros((C, 3, w + 2), np.float32)  # ring: row r in slot (r + 1) % 3
    tmp = np.empty(w, np.float32)
    for c in chans:
        _red_start(b, invd, span, c, i0 - 1, red[c, i0 % 3])
        _red_start(b, invd, span, c, i0, red[c, (i0 + 1) % 3])
    for i in range(i0, i1):
        lo, hi = span[i, 0], span[i, 1]
        for c in chans:
            _red_start(b, invd, span, c, i + 1, red[c, (i + 2) % 3])
            up, mid, dn = red[c, i % 3], red[c, (i + 1) % 3], red[c, (i + 2) % 3]
            br, ir = b[c, i], invd[i]
            for j in range(lo, hi):
                tmp[j] = (br[j] + up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2]) * ir[j]
            xr = x[c, i + 1]
            for j in range(lo, hi):
                xr[j + 1] = mid[j + 1]
            for j in range(lo + ((i + 1 + lo) & 1), hi, 2):
                xr[j + 1] = tmp[j]


@_exact
def _red_residual(x: np.ndarray, b: np.ndarray, d: np.ndarray, span: np.ndarray, c: int, i: int,
                  out: np.ndarray) -> None:
    """out[j+1] = (b - A x)[c, i, j] on red pixels of Omega, 0 elsewhere (and outside the grid)."""
    out[:] = 0.0
    if i < 0 or i >= d.shape[0]:
        return
    up, mid, dn, br, dr = x[c, i], x[c, i + 1], x[c, i + 2], b[c, i], d[i]
    lo, hi = span[i, 0], span[i, 1]
    for j in range(lo + ((i + lo) & 1), hi, 2):
        v = br[j] + up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2] - dr[j] * mid[j + 1]
        out[j + 1] = v if dr[j] > 0.0 else 0.0


@_exact
def restrict_residual(x: np.ndarray, b: np.ndarray, d: np.ndarray, span: np.ndarray, cd: np.ndarray,
                      cspan: np.ndarray, cb: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """cb = P^T (b - A x) on the coarse rows i0..i1 (coarse pixel (I, J) is fine (2I, 2J)).

    After the pre-smoother the black residual is zero, so only red pixels are restricted: the
    coarse pixel itself (weight 1) and its 4 diagonal neighbours (1/4). P repeats the last coarse
    row/column beyond the grid (see `_prolonged_red`), so there the odd fine row/column weighs double.
    """
    C, w = x.shape[0], d.shape[1]
    hc, wc = cd.shape
    res = np.zeros((C, 3, w + 2), np.float32)  # residual rows 2I-1 (top), 2I, 2I+1 (bottom)
    for c in chans:
        _red_residual(x, b, d, span, c, 2 * i0 - 1, res[c, 0])
    for ci in range(i0, i1):
        wdn = 2.0 if ci == hc - 1 else 1.0
        t = (ci - i0) & 1  # the top row's slot alternates between 0 and 2
        for c in chans:
            top, cen, bot = res[c, 2 * t], res[c, 1], res[c, 2 - 2 * t]
            _red_residual(x, b, d, span, c, 2 * ci, cen)
            _red_residual(x, b, d, span, c, 2 * ci + 1, bot)
            out, cdr = cb[c, ci], cd[ci]
            for cj in range(cspan[ci, 0], cspan[ci, 1]):
                j = 2 * cj + 1  # padded index of fine column 2*cj
                wrt = 2.0 if cj == wc - 1 else 1.0
                s = cen[j] + 0.25 * (top[j - 1] + wrt * top[j + 1] + wdn * (bot[j - 1] + wrt * bot[j + 1]))
                out[cj] = s if cdr[cj] > 0.0 else 0.0


@_exact
def _prolonged_red(x: np.ndarray, e: np.ndarray, d: np.ndarray, span: np.ndarray, c: int, i: int,
                   out: np.ndarray) -> None:
    """out[j+1] = x + P e on the red pixels of Omega of row i, 0 elsewhere: bilinear from the coarse
    solution e ((C, hc+2, wc+2), padded), the last coarse row/column repeated beyond the grid.
    Red pixels of an even row are coarse pixels; those of an odd row average 4 of them."""
    out[:] = 0.0
    if i < 0 or i >= d.shape[0]:
        return
    hc, wc = e.shape[1] - 2, e.shape[2] - 2
    lo, hi = span[i, 0], span[i, 1]
    ci = i >> 1
    ra = e[c, ci + 1]
    xr, dr = x[c, i + 1], d[i]
    if i & 1 == 0:
        for cj in range((lo + 1) >> 1, (hi + 1) >> 1):  # even columns lo <= j < hi
            j = 2 * cj
            out[j + 1] = xr[j + 1] + ra[cj + 1] if dr[j] > 0.0 else 0.0
        return
    rb = e[c, min(ci + 1, hc - 1) + 1]
    for cj in range(lo >> 1, hi >> 1):  # odd columns lo <= j < hi
        j = 2 * cj + 1
        cn = min(cj + 1, wc - 1) + 1
        v = 0.25 * (ra[cj + 1] + ra[cn] + rb[cj + 1] + rb[cn])
        out[j + 1] = xr[j + 1] + v if dr[j] > 0.0 else 0.0


@_exact
def post_black(x: np.ndarray, e: np.ndarray, b: np.ndarray, invd: np.ndarray, d: np.ndarray,
               span: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """Coarse correction and the post-smoother's black half-sweep in one pass: black x =
    (b + prolonged red neighbours) / |N_p|, the red x + P e computed on the fly (three rows in a
    ring) and not stored: the red half-sweep that follows overwrites red without reading it."""
    C, w = x.shape[0], d.shape[1]
    red = np.zeros((C, 3, w + 2), np.float32)  # ring: row r in slot (r + 1) % 3
    tmp = np.empty(w, np.float32)
    for c in chans:
        _prolonged_red(x, e, d, span, c, i0 - 1, red[c, i0 % 3])
        _prolonged_red(x, e, d, span, c, i0, red[c, (i0 + 1) % 3])
    for i in range(i0, i1):
        lo, hi = span[i, 0], span[i, 1]
        for c in chans:
            _prolonged_red(x, e, d, span, c, i + 1, red[c, (i + 2) % 3])
            up, mid, dn = red[c, i % 3], red[c, (i + 1) % 3], red[c, (i + 2) % 3]
            br, ir = b[c, i], invd[i]
            for j in range(lo, hi):
                tmp[j] = (br[j] + up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2]) * ir[j]
            xr = x[c, i + 1]
            for j in range(lo + ((i + 1 + lo) & 1), hi, 2):
                xr[j + 1] = tmp[j]


@_exact
def post_red(x: np.ndarray, b: np.ndarray, invd: np.ndarray, span: np.ndarray, acc: np.ndarray,
             chans: np.ndarray, i0: int, i1: int) -> None:
    """The post-smoother's red half-sweep; acc[c, i] = row i's share of b.x after it (b.z in CG)."""
    w = invd.shape[1]
    tmp = np.empty(w, np.float32)
    for i in range(i0, i1):
        lo, hi = span[i, 0], span[i, 1]
        for c in chans:
            up, mid, dn, br, ir = x[c, i], x[c, i + 1], x[c, i + 2], b[c, i], invd[i]
            for j in range(lo, hi):
                tmp[j] = (br[j] + up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2]) * ir[j]
            for j in range(lo + ((i + lo) & 1), hi, 2):
                mid[j + 1] = tmp[j]
            s = 0.0
            for j in range(lo, hi):
                s += br[j] * mid[j + 1]
            acc[c, i] = s


@_exact
def curvature(p: np.ndarray, d: np.ndarray, span: np.ndarray, acc: np.ndarray, chans: np.ndarray,
              i0: int, i1: int) -> None:
    """acc[c, i] = row i's share of p.(A p) (float64). A p itself is not stored: `update`
    recomputes it, which costs less than writing it out and reading it back."""
    for c in chans:
        for i in range(i0, i1):
            up, mid, dn, dr = p[c, i], p[c, i + 1], p[c, i + 2], d[i]
            s = 0.0
            for j in range(span[i, 0], span[i, 1]):
                v = dr[j] * mid[j + 1] - (up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2])
                v = v if dr[j] > 0.0 else 0.0
                s += mid[j + 1] * v
            acc[c, i] = s


@_exact
def update(x: np.ndarray, r: np.ndarray, p: np.ndarray, d: np.ndarray, alpha: np.ndarray,
           span: np.ndarray, acc: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """x += alpha p, r -= alpha A p (alpha per channel); acc[c, i] = row i's share of r.r."""
    for c in chans:
        a = alpha[c]
        for i in range(i0, i1):
            xr, rr, up, mid, dn, dr = x[c, i], r[c, i], p[c, i], p[c, i + 1], p[c, i + 2], d[i]
            s = 0.0
            for j in range(span[i, 0], span[i, 1]):
                xr[j] += a * mid[j + 1]
                q = dr[j] * mid[j + 1] - (up[j + 1] + dn[j + 1] + mid[j] + mid[j + 2])
                q = np.float32(q if dr[j] > 0.0 else 0.0)  # as `curvature` would have stored it
                v = rr[j] - a * q
                rr[j] = v
                s += v * v
            acc[c, i] = s


@_exact
def direction(p: np.ndarray, z: np.ndarray, beta: np.ndarray, span: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """p = z + beta p on the padded rows i0+1..i1 (beta per channel)."""
    for c in chans:
        bt = beta[c]
        for i in range(i0, i1):
            pr, zr = p[c, i + 1], z[c, i + 1]
            for j in range(span[i, 0] + 1, span[i, 1] + 1):
                pr[j] = zr[j] + bt * pr[j]
