"""Compiled (numba) loops of the multigrid solver in `_jit.py`: each is one fused pass over memory.

Every kernel works on a band of rows [i0, i1) so that the caller can split a level over threads
(numba's `nogil=True` lets two Python threads run two bands at once), and on the channels listed
in `chans` (CG drops a channel from the list once it has converged). Arrays are channel-planar:
fine solutions `x` are (C, h+2, w+2) with a ring of zeros (pixel (i, j) at [i+1, j+1]), right-hand
sides and residuals (C, h, w); `d` is |N_p| on Omega and 0 elsewhere, `invd` its inverse (0
elsewhere), both (h, w). Colour 0 ("red") is the pixels with i + j even. `span[i]` is the
columns [lo, hi) of row i that hold its Omega pixels (lo = hi when none): the kernels skip the
rest of each row, which stays 0 (solution, right-hand side, residual and CG vectors alike).

The V-cycle makes two passes over a level (`restrict`, `smooth`): the smoothed values that a
pass needs from neighbouring rows are recomputed from the right-hand side into rings of three
rows, never stored and read back. A band therefore reads nothing that another band writes.

No fastmath: a row's sums are added in a fixed order, so results do not depend on how the rows
are split over threads (tests/test_poisson.py checks it bit for bit).

Compiled on first use and cached on disk (`cache=True`: next to this file, or in numba's user cache
when the package folder is read-only), so only the very first blend pays the compilation.
"""
from __future__ import annotations

import numpy as np
from numba import njit

_exact = njit(nogil=True, cache=True, boundscheck=False, error_model="numpy")
# row helpers are inlined into the kernels: called, their loops do not vectorise (measured 6x slower)
_row = njit(inline="always", nogil=True, cache=True, boundscheck=False, error_model="numpy")


@njit(inline="always", cache=True)
def _slot(i: int) -> int:
    return (i + 6) % 3  # ring slot of row i (rows from -3 up)


@njit(inline="always", cache=True)
def _sum(t: np.ndarray, n: int) -> float:
    """t[0] + ... + t[n-1] in float64, as 8 interleaved partial sums (a fixed order that does not
    wait on one running sum, and that numba without fastmath may vectorise)."""
    s0 = s1 = s2 = s3 = s4 = s5 = s6 = s7 = 0.0
    n8 = n - n % 8
    for j in range(0, n8, 8):
        s0 += t[j]
        s1 += t[j + 1]
        s2 += t[j + 2]
        s3 += t[j + 3]
        s4 += t[j + 4]
        s5 += t[j + 5]
        s6 += t[j + 6]
        s7 += t[j + 7]
    for j in range(n8, n):
        s0 += t[j]
    return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))


@_row
def _clear_outside(out: np.ndarray, lo: int, hi: int) -> None:
    """Zero a padded ring row outside [lo+1, hi+1), the part its caller does not write."""
    out[: lo + 1] = 0.0
    out[hi + 1 :] = 0.0


@_row
def _open_row(span: np.ndarray, i: int, out: np.ndarray) -> tuple[int, int]:
    """Row i's span (lo, hi), with out zeroed outside it; for a row outside the grid, all of out
    zeroed and an empty span."""
    if i < 0 or i >= span.shape[0]:
        out[:] = 0.0
        return 0, 0
    lo, hi = span[i, 0], span[i, 1]
    _clear_outside(out, lo, hi)
    return lo, hi


@_row
def _around(up: np.ndarray, mid: np.ndarray, dn: np.ndarray, lo: int,
            hi: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The padded neighbour rows over the span: up and down at k, left and right at k and k + 2."""
    return up[lo + 1 : hi + 1], mid[lo : hi + 2], dn[lo + 1 : hi + 1]


# The row loops below run over slices with an index k from 0: with `for j in range(lo, hi)`, numba's
# wrap-around of negative indices made LLVM vectorise them with gathers and scatters, 2-3x slower.


@_row
def _red(b: np.ndarray, invd: np.ndarray, span: np.ndarray, c: int, i: int, out: np.ndarray) -> None:
    """out[j+1] = b / |N_p| on the red pixels of row i (the pre-smoother's red half-sweep from
    x = 0), 0 elsewhere and outside the grid."""
    lo, hi = _open_row(span, i, out)
    if hi == lo:
        return
    br, ir, o, par = b[c, i, lo:hi], invd[i, lo:hi], out[lo + 1 : hi + 1], (i + lo) & 1
    for k in range(hi - lo):  # every column, the red ones kept (k & 1 == par)
        v = br[k] * ir[k]
        o[k] = v if k & 1 == par else np.float32(0.0)


@_row
def _black(b: np.ndarray, invd: np.ndarray, span: np.ndarray, c: int, i: int, up: np.ndarray, mid: np.ndarray,
           dn: np.ndarray, out: np.ndarray, keep_red: bool) -> None:
    """out[j+1] = (b + the 4 neighbours in up/mid/dn) / |N_p| on the black pixels of row i: a black
    half-sweep, given the red values of rows i-1, i, i+1. Red pixels of `out` get mid's (keep_red)
    or 0; outside the span and the grid, 0."""
    lo, hi = _open_row(span, i, out)
    if hi == lo:
        return
    br, ir, o, par = b[c, i, lo:hi], invd[i, lo:hi], out[lo + 1 : hi + 1], (i + lo) & 1
    u, m, dw = _around(up, mid, dn, lo, hi)
    if keep_red:
        for k in range(hi - lo):
            v = (br[k] + u[k] + dw[k] + m[k] + m[k + 2]) * ir[k]
            o[k] = v if k & 1 != par else m[k + 1]
    else:
        for k in range(hi - lo):
            v = (br[k] + u[k] + dw[k] + m[k] + m[k + 2]) * ir[k]
            o[k] = v if k & 1 != par else np.float32(0.0)


@_row
def _red_residual(b: np.ndarray, d: np.ndarray, span: np.ndarray, c: int, i: int, up: np.ndarray, mid: np.ndarray,
                  dn: np.ndarray, out: np.ndarray) -> None:
    """out[j+1] = (b - A x) on the red pixels of Omega of row i, x's rows i-1, i, i+1 given (padded);
    0 elsewhere and outside the grid."""
    lo, hi = _open_row(span, i, out)
    if hi == lo:
        return
    br, dr, o, par = b[c, i, lo:hi], d[i, lo:hi], out[lo + 1 : hi + 1], (i + lo) & 1
    u, m, dw = _around(up, mid, dn, lo, hi)
    for k in range(hi - lo):
        v = br[k] + u[k] + dw[k] + m[k] + m[k + 2] - dr[k] * m[k + 1]
        o[k] = v if dr[k] > 0.0 and k & 1 == par else np.float32(0.0)


@_exact
def restrict(b: np.ndarray, invd: np.ndarray, d: np.ndarray, span: np.ndarray, cd: np.ndarray,
             cspan: np.ndarray, cb: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """The pre-smoother from x = 0, the residual and its restriction in one pass: cb = P^T (b - A x)
    on the coarse rows i0..i1 (coarse pixel (I, J) is fine (2I, 2J)). x itself is not stored: its
    rows are made from b in a ring (the smoother `smooth` recomputes the red ones it needs).

    After the pre-smoother the black residual is zero, so only red pixels are restricted: the
    coarse pixel itself (weight 1) and its 4 diagonal neighbours (1/4). P repeats the last coarse
    row/column beyond the grid (see `_prolonged_red`), so there the odd fine row/column weighs double.
    """
    C, w = b.shape[0], d.shape[1]
    hc, wc = cd.shape
    red = np.zeros((C, 3, w + 2), np.float32)  # rings: fine row t in slot _slot(t)
    xs = np.zeros((C, 3, w + 2), np.float32)  # the pre-smoothed x
    res = np.zeros((C, 3, w + 2), np.float32)  # the residual
    # fine rows: red t, x t - 1, residual t - 2 (coarse row I needs residual rows 2I-1 .. 2I+1)
    for t in range(2 * i0 - 3, 2 * i1 + 2):
        for c in chans:
            _red(b, invd, span, c, t, red[c, _slot(t)])
            u = t - 1
            if u >= 2 * i0 - 2:
                _black(b, invd, span, c, u, red[c, _slot(u - 1)], red[c, _slot(u)], red[c, _slot(u + 1)],
                       xs[c, _slot(u)], True)
            v = t - 2
            if v < 2 * i0 - 1:
                continue
            _red_residual(b, d, span, c, v, xs[c, _slot(v - 1)], xs[c, _slot(v)], xs[c, _slot(v + 1)],
                          res[c, _slot(v)])
            if v < 2 * i0 + 1 or v & 1 == 0:
                continue
            ci = (v - 1) >> 1
            wdn = 2.0 if ci == hc - 1 else 1.0
            top, cen, bot = res[c, _slot(v - 2)], res[c, _slot(v - 1)], res[c, _slot(v)]
            clo, n = cspan[ci, 0], cspan[ci, 1] - cspan[ci, 0]
            out, cdr = cb[c, ci, clo : clo + n], cd[ci, clo : clo + n]
            # fine column 2*cj is padded index 2*cj + 1: k = 2m + 1 in rows sliced from 2*clo
            k0, k1 = 2 * clo, 2 * clo + 2 * n + 1
            tp, ce, bt = top[k0:k1], cen[k0:k1], bot[k0:k1]
            for m in range(n):
                wrt = 2.0 if clo + m == wc - 1 else 1.0
                s = ce[2 * m + 1] + 0.25 * (tp[2 * m] + wrt * tp[2 * m + 2] + wdn * (bt[2 * m] + wrt * bt[2 * m + 2]))
                out[m] = s if cdr[m] > 0.0 else 0.0


@_row
def _prolonged_red(b: np.ndarray, invd: np.ndarray, e: np.ndarray, d: np.ndarray, span: np.ndarray, c: int,
                   i: int, out: np.ndarray) -> None:
    """out[j+1] = x + P e on the red pixels of Omega of row i, 0 elsewhere: x is the pre-smoothed
    red value b / |N_p|, P e bilinear from the coarse solution e ((C, hc+2, wc+2), padded), the
    last coarse row/column repeated beyond the grid. Red pixels of an even row are coarse pixels;
    those of an odd row average 4 of them."""
    out[:] = 0.0
    if i < 0 or i >= d.shape[0]:
        return
    hc, wc = e.shape[1] - 2, e.shape[2] - 2
    lo, hi = span[i, 0], span[i, 1]
    ci = i >> 1
    if i & 1 == 0:  # even columns lo <= j = 2 cj < hi
        c0 = (lo + 1) >> 1
        n = ((hi + 1) >> 1) - c0
        j0 = 2 * c0
        br, ir, dr, o = b[c, i, j0 : j0 + 2 * n], invd[i, j0 : j0 + 2 * n], d[i, j0 : j0 + 2 * n], out[j0 + 1 : j0 + 2 * n + 1]
        ra = e[c, ci + 1, c0 + 1 : c0 + 1 + n]
        for m in range(n):
            o[2 * m] = br[2 * m] * ir[2 * m] + ra[m] if dr[2 * m] > 0.0 else 0.0
        return
    # odd columns lo <= j = 2 cj + 1 < hi; coarse column cj + 1 is cj itself at the grid's end
    c0 = lo >> 1
    n = (hi >> 1) - c0
    j0 = 2 * c0 + 1
    br, ir, dr, o = b[c, i, j0 : j0 + 2 * n], invd[i, j0 : j0 + 2 * n], d[i, j0 : j0 + 2 * n], out[j0 + 1 : j0 + 2 * n + 1]
    rb_i = min(ci + 1, hc - 1) + 1
    ra, rb = e[c, ci + 1, c0 + 1 : c0 + 2 + n], e[c, rb_i, c0 + 1 : c0 + 2 + n]
    last = n - 1 if c0 + n == wc else n  # the one column (cj = wc - 1) whose right neighbour is itself
    for m in range(last):
        v = 0.25 * (ra[m] + ra[m + 1] + rb[m] + rb[m + 1])
        o[2 * m] = br[2 * m] * ir[2 * m] + v if dr[2 * m] > 0.0 else 0.0
    for m in range(last, n):
        v = 0.25 * (ra[m] + ra[m] + rb[m] + rb[m])
        o[2 * m] = br[2 * m] * ir[2 * m] + v if dr[2 * m] > 0.0 else 0.0


@_exact
def smooth(x: np.ndarray, e: np.ndarray, b: np.ndarray, invd: np.ndarray, d: np.ndarray, span: np.ndarray,
           acc: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """The coarse correction and the post-smoother (black, then red: the reverse of the
    pre-smoother, which keeps the cycle symmetric) in one pass that writes x once, rows i0..i1.
    The red x + P e and the black rows are made in rings, one and two rows ahead; acc[c, i] =
    row i's share of b.x (b.z in CG)."""
    C, w = x.shape[0], d.shape[1]
    red = np.zeros((C, 3, w + 2), np.float32)  # rings: row t in slot _slot(t)
    blk = np.zeros((C, 3, w + 2), np.float32)
    tmp = np.empty(w, np.float32)
    # rows: red t, black t - 1, red again and written t - 2
    for t in range(i0 - 2, i1 + 2):
        for c in chans:
            _prolonged_red(b, invd, e, d, span, c, t, red[c, _slot(t)])
            k = t - 1
            if k >= i0 - 1:
                _black(b, invd, span, c, k, red[c, _slot(k - 1)], red[c, _slot(k)], red[c, _slot(k + 1)],
                       blk[c, _slot(k)], False)
            i = t - 2
            if i < i0:
                continue
            lo, hi = span[i, 0], span[i, 1]
            n, par = hi - lo, (i + lo) & 1
            br, ir, xo = b[c, i, lo:hi], invd[i, lo:hi], x[c, i + 1, lo + 1 : hi + 1]
            u, m, dw = blk[c, _slot(i - 1), lo + 1 : hi + 1], blk[c, _slot(i), lo : hi + 2], blk[c, _slot(i + 1), lo + 1 : hi + 1]
            for k in range(n):
                v = (br[k] + u[k] + dw[k] + m[k] + m[k + 2]) * ir[k]
                xo[k] = v if k & 1 == par else m[k + 1]
            for k in range(n):
                tmp[k] = br[k] * xo[k]
            acc[c, i] = _sum(tmp, n)


@_exact
def direction(p: np.ndarray, z: np.ndarray, beta: np.ndarray, d: np.ndarray, span: np.ndarray, acc: np.ndarray,
              edge: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """CG's new direction p = z + beta p (beta per channel) on rows i0..i1 and, in the same pass,
    acc[c, i] = row i's share of p.(A p) (float64; A p itself is not stored: `update` recomputes
    it, which costs less than writing it out and reading it back).

    The new rows are made one row ahead in a ring, from the old p of rows i0-1 and i1 too; so that
    no band overwrites a row that its neighbour still reads, a band's first and last rows go to
    `edge[c, 0]` and `edge[c, 1]` (padded rows) and the caller copies them into p afterwards."""
    C, w = p.shape[0], d.shape[1]
    ring = np.zeros((C, 3, w + 2), np.float32)  # row t in slot _slot(t)
    tmp = np.empty(w, np.float64)
    for t in range(i0 - 1, i1 + 1):
        for c in chans:
            row = ring[c, _slot(t)]
            if 0 <= t < d.shape[0]:
                lo, hi = span[t, 0], span[t, 1]
                _clear_outside(row, lo, hi)
                bt, pr, zr, ro = beta[c], p[c, t + 1, lo + 1 : hi + 1], z[c, t + 1, lo + 1 : hi + 1], row[lo + 1 : hi + 1]
                for k in range(hi - lo):
                    ro[k] = zr[k] + bt * pr[k]
            else:
                row[:] = 0.0
            i = t - 1
            if i < i0:
                continue
            lo, hi = span[i, 0], span[i, 1]
            n, dr = hi - lo, d[i, lo:hi]
            rc = ring[c]
            u, m, dw = rc[_slot(i - 1), lo + 1 : hi + 1], rc[_slot(i), lo : hi + 2], rc[_slot(i + 1), lo + 1 : hi + 1]
            for k in range(n):
                v = dr[k] * m[k + 1] - (u[k] + dw[k] + m[k] + m[k + 2])
                v = v if dr[k] > 0.0 else 0.0
                tmp[k] = m[k + 1] * v
            acc[c, i] = _sum(tmp, n)
            dst = edge[c, 0] if i == i0 else edge[c, 1] if i == i1 - 1 else p[c, i + 1]
            dst[lo + 1 : hi + 1] = m[1 : n + 1]


@_exact
def update(x: np.ndarray, r: np.ndarray, p: np.ndarray, d: np.ndarray, alpha: np.ndarray,
           span: np.ndarray, acc: np.ndarray, chans: np.ndarray, i0: int, i1: int) -> None:
    """x += alpha p, r -= alpha A p (alpha per channel); acc[c, i] = row i's share of r.r."""
    tmp = np.empty(d.shape[1], np.float32)
    for i in range(i0, i1):
        lo, hi = span[i, 0], span[i, 1]
        n, dr = hi - lo, d[i, lo:hi]
        for c in chans:
            a = alpha[c]
            xr, rr = x[c, i, lo:hi], r[c, i, lo:hi]
            u, m, dw = p[c, i, lo + 1 : hi + 1], p[c, i + 1, lo : hi + 2], p[c, i + 2, lo + 1 : hi + 1]
            for k in range(n):
                xr[k] += a * m[k + 1]
                q = dr[k] * m[k + 1] - (u[k] + dw[k] + m[k] + m[k + 2])
                q = np.float32(q if dr[k] > 0.0 else 0.0)  # as `direction` would have stored it
                v = rr[k] - a * q
                rr[k] = v
                tmp[k] = v * v
            acc[c, i] = _sum(tmp, n)


@_row
def _mixed_term(s: np.ndarray, t: np.ndarray, omega: np.ndarray, i: int, j: int, qi: int, qj: int, c: int,
                sp: np.float32, tp: np.float32, s_scale: np.float32, t_scale: np.float32) -> np.float32:
    """v_pq - (f0_p - f0_q) for p = (i, j) in Omega and its neighbour q: v_pq the stronger of the
    source's and the target's differences (paper eq. 13), f0 the source on Omega, else the target."""
    sq = np.float32(s[qi, qj, c]) * s_scale
    tq = np.float32(t[qi, qj, c]) * t_scale
    vs, vt = sp - sq, tp - tq
    v = vt if abs(vt) > abs(vs) else vs
    return v - (sp - (sq if omega[qi, qj] else tq))


@_exact
def mixed_rhs(t: np.ndarray, s: np.ndarray, omega: np.ndarray, t_scale: np.float32, s_scale: np.float32,
              r: np.ndarray) -> None:
    """The right-hand side of a mixed-gradient blend (`poisson._setup`) from the 8/16-bit images
    themselves (HxWxC on the solve rectangle, scaled to 0..1 by t_scale and s_scale), with no float
    copy of them: r[c, i, j] = sum over the 4-neighbours q in the rectangle of v_pq - (f0_p - f0_q),
    on Omega; r stays 0 elsewhere."""
    h, w = omega.shape
    for i in range(h):
        for j in range(w):
            if not omega[i, j]:
                continue
            for c in range(r.shape[0]):
                sp = np.float32(s[i, j, c]) * s_scale
                tp = np.float32(t[i, j, c]) * t_scale
                acc = np.float32(0.0)
                if i + 1 < h:
                    acc += _mixed_term(s, t, omega, i, j, i + 1, j, c, sp, tp, s_scale, t_scale)
                if i > 0:
                    acc += _mixed_term(s, t, omega, i, j, i - 1, j, c, sp, tp, s_scale, t_scale)
                if j + 1 < w:
                    acc += _mixed_term(s, t, omega, i, j, i, j + 1, c, sp, tp, s_scale, t_scale)
                if j > 0:
                    acc += _mixed_term(s, t, omega, i, j, i, j - 1, c, sp, tp, s_scale, t_scale)
                r[c, i, j] = acc
