"""The masked Poisson solver of `_multigrid.py`, with its loops compiled (numba, `_jit_kernels.py`).

Same method, same system: conjugate gradients preconditioned by one symmetric V(1,1)-cycle
(red-black Gauss-Seidel, bilinear P and P^T, coarse regions from `_multigrid._coarsen`, SuperLU on
the coarsest level). What differs is how it runs:

* the V-cycle makes two passes over each level (`restrict`: pre-smoother, residual and
  restriction; `smooth`: coarse correction and post-smoother), the smoothed rows that a pass
  needs from its neighbours recomputed in small rings instead of written out and read back;
* CG makes two (`direction`: the new direction and p.(A p); `update`: x, r and r.r), and A p is
  recomputed instead of stored;
* all colour channels go through each pass together (one CG per channel, with its own step
  sizes and stopping test; a converged channel drops out), the columns outside Omega are
  skipped, a level's rows are split over threads, and the row loops vectorise;
* nothing is allocated inside the iteration loop but a few rows.

The result is bit-identical to the first compiled version (seven passes per iteration, loops
that did not vectorise) and the same for any split of the rows over threads. On bench_poisson's
4 MP blend, on 2 cores, it solves in 0.75-1.0 s what that version solved in 1.8-2.4 s and the
numpy version in 2.6-3.0 s (the closing note of sessions 10-11).

Used by `poisson.py` when numba imports; `_multigrid.MaskedPoisson` (pure numpy) stays the fallback.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import _jit_kernels as K
from ._laplacian import Sides as _Sides
from ._laplacian import degrees as _degrees
from ._laplacian import direct_solver
from ._multigrid import _DIRECT_MAX, regions  # the same levels as the numpy solver

__all__ = ["JitPoisson"]

_PARALLEL_MIN = 64  # rows: below this a level's passes run in one thread


class _Level:
    """One grid of the hierarchy: region, |N_p| (`d`, 0 off the region), its inverse, buffers."""

    def __init__(self, omega: np.ndarray, neumann: _Sides, shift: float) -> None:
        self.omega, self.shape = omega, omega.shape
        self.d = ((_degrees(omega, neumann) + np.float32(shift)) * omega).astype(np.float32)
        self.invd = np.divide(1.0, self.d, out=np.zeros_like(self.d), where=self.d > 0)
        # columns [lo, hi) of each row that hold its Omega pixels: the kernels skip the rest
        any_ = omega.any(axis=1)
        lo = np.where(any_, omega.argmax(axis=1), 0)
        hi = np.where(any_, omega.shape[1] - omega[:, ::-1].argmax(axis=1), 0)
        self.span = np.ascontiguousarray(np.stack([lo, hi], axis=1), dtype=np.int64)
        self.channels = 0
        self.lu: Callable[[np.ndarray], np.ndarray] | None = None  # set on the coarsest level

    def allocate(self, channels: int) -> None:
        """Work buffers for `channels` right-hand sides: padded solution, right-hand side (unused
        on the finest level, whose right-hand side is CG's residual: np.empty touches no memory)."""
        if channels == self.channels:
            return
        h, w = self.shape
        self.channels = channels
        self.x = np.zeros((channels, h + 2, w + 2), np.float32)
        self.b = np.zeros((channels, h, w), np.float32)  # only the spans are ever written
        self.acc = np.zeros((channels, h), np.float64)  # per-row sums of b.x after a V-cycle


class JitPoisson:
    """Solve the masked Laplacian system for several right-hand sides at once (see
    `_multigrid.MaskedPoisson`, whose interface and results this matches)."""

    def __init__(self, omega: np.ndarray, neumann: _Sides, *, singular: bool = False) -> None:
        self.singular = singular
        # singular: a small shift keeps the coarse levels definite (as in _multigrid)
        self.levels: list[_Level] = [_Level(region, neumann, 1e-2 if singular and k else 0.0)
                                     for k, region in enumerate(regions(omega, neumann, _DIRECT_MAX))]
        last = self.levels[-1]
        last.lu = direct_solver(last.omega, last.d, singular=singular and len(self.levels) == 1)
        self.pool: ThreadPoolExecutor | None = None
        self.threads = 1
        self.chans = np.zeros(0, np.int64)  # the channels CG still iterates on

    def _bands(self, n: int) -> list[int]:
        """Row cuts of a level of n rows: `threads` bands on large levels, else one."""
        k = 1 if self.pool is None or n < _PARALLEL_MIN else self.threads
        return [n * i // k for i in range(k + 1)]

    def _rows(self, n: int, kernel: Callable[..., None], *args: object) -> None:
        """kernel(*args, chans, i0, i1) over the bands of rows 0..n (`_bands`) for the channels
        still iterating, the bands at once."""
        chans, cuts = self.chans, self._bands(n)
        futures = [self.pool.submit(kernel, *args, chans, cuts[k], cuts[k + 1])  # type: ignore[union-attr]
                   for k in range(1, len(cuts) - 1)]
        kernel(*args, chans, cuts[0], cuts[1])
        for f in futures:
            f.result()

    def _direction(self, p: np.ndarray, z: np.ndarray, beta: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """p = z + beta p and p.(A p) per channel (`K.direction`); each band's first and last rows
        are copied into p once every band is done."""
        L = self.levels[0]
        h, chans = L.shape[0], self.chans
        cuts = self._bands(h)
        edges = [np.zeros((p.shape[0], 2, p.shape[2]), np.float32) for _ in cuts[1:]]
        futures = [self.pool.submit(K.direction, p, z, beta, L.d, L.span, acc, edges[k], chans,  # type: ignore[union-attr]
                                    cuts[k], cuts[k + 1]) for k in range(1, len(cuts) - 1)]
        K.direction(p, z, beta, L.d, L.span, acc, edges[0], chans, cuts[0], cuts[1])
        for f in futures:
            f.result()
        for k, edge in enumerate(edges):
            i0, i1 = cuts[k], cuts[k + 1]
            if i1 == i0:
                continue
            p[chans, i0 + 1] = edge[chans, 0]
            if i1 - 1 > i0:
                p[chans, i1] = edge[chans, 1]
        return acc.sum(axis=1)  # row sums in a fixed order: threads do not change the last bit

    def _vcycle(self, k: int, b: np.ndarray) -> np.ndarray:
        """One V-cycle for A_k y = b from y = 0; returns the level's padded solution."""
        L = self.levels[k]
        h = L.shape[0]
        x = L.x
        if L.lu is not None:
            x[:, 1:-1, 1:-1] = 0.0
            sol = L.lu(b[:, L.omega].T.astype(np.float64))
            x[:, 1:-1, 1:-1][:, L.omega] = np.asarray(sol, np.float32).reshape(-1, b.shape[0]).T
            return x
        C = self.levels[k + 1]
        self._rows(C.shape[0], K.restrict, b, L.invd, L.d, L.span, C.d, C.span, C.b)
        e = self._vcycle(k + 1, C.b)
        self._rows(h, K.smooth, x, e, b, L.invd, L.d, L.span, L.acc)
        return x

    def _center(self, a: np.ndarray) -> None:
        """Subtract each channel's mean over Omega (singular case only: Omega is the whole grid)."""
        a -= a.mean(axis=(1, 2), dtype=np.float64).astype(np.float32)[:, None, None]

    def _precondition(self, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """z = V-cycle(r) (padded) and r.z per channel."""
        z = self._vcycle(0, r)
        if not self.singular:
            return z, self.levels[0].acc.sum(axis=1)  # r.z summed row by row in the last pass
        self._center(z[:, 1:-1, 1:-1])
        return z, np.einsum("cij,cij->c", r, z[:, 1:-1, 1:-1], dtype=np.float64)

    def solve(self, rhs: np.ndarray, *, rtol: float = 1e-5, maxiter: int = 200,
              threads: int | None = None) -> tuple[np.ndarray, list[int]]:
        """Solve for rhs (C, h, w), zero outside Omega (float32 rhs is overwritten: it becomes CG's
        residual); returns the corrections (C, h, w), zero outside Omega, and the CG iterations
        per channel."""
        if threads is None:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                threads = os.cpu_count() or 1
        self.threads = max(1, threads)
        for level in self.levels:
            level.allocate(rhs.shape[0])
        with ThreadPoolExecutor(max_workers=max(1, self.threads - 1)) as pool:
            self.pool = pool
            try:
                return self._pcg(rhs, rtol, maxiter)
            finally:
                self.pool = None

    def _pcg(self, rhs: np.ndarray, rtol: float, maxiter: int) -> tuple[np.ndarray, list[int]]:
        L = self.levels[0]
        C, (h, w) = rhs.shape[0], L.shape
        # CG's residual starts as rhs itself: the caller's array (zero outside Omega) is overwritten
        r = rhs if rhs.dtype == np.float32 and rhs.flags.c_contiguous else np.ascontiguousarray(rhs, np.float32)
        if self.singular:
            self._center(r)
        acc = np.zeros((C, h), np.float64)

        def total() -> np.ndarray:  # row sums in a fixed order: threads do not change the last bit
            return acc.sum(axis=1)

        r0 = np.sqrt(np.einsum("cij,cij->c", r, r, dtype=np.float64))
        self.chans = np.arange(C, dtype=np.int64)
        if len(self.levels) == 1:  # factorised directly
            z, _ = self._precondition(r)
            return np.ascontiguousarray(z[:, 1:-1, 1:-1]), [0] * C
        x = np.zeros((C, h, w), np.float32)
        p = np.zeros((C, h + 2, w + 2), np.float32)
        iterations = [0] * C
        active = r0 > 0.0
        if not active.any():
            return x, iterations
        self.chans = np.flatnonzero(active).astype(np.int64)
        z, rz = self._precondition(r)
        pq = self._direction(p, z, np.zeros(C, np.float32), acc)
        best, stalled = r0.copy(), np.zeros(C, np.int64)
        for it in range(1, maxiter + 1):
            alpha = np.where(active, rz / np.where(pq > 0, pq, 1.0), 0.0).astype(np.float32)
            self._rows(h, K.update, x, r, p, L.d, alpha, L.span, acc)
            rn = np.sqrt(total())
            for c in np.flatnonzero(active):
                # stop at the tolerance, or when float32 round-off stalls progress (8 steps without 10%)
                best[c], stalled[c] = (rn[c], 0) if rn[c] < 0.9 * best[c] else (best[c], stalled[c] + 1)
                iterations[c] = it
                if rn[c] <= rtol * r0[c] or stalled[c] >= 8:
                    active[c] = False
            if not active.any():
                break
            self.chans = np.flatnonzero(active).astype(np.int64)  # converged channels stay as they are
            z, rz_new = self._precondition(r)
            beta = np.where(active, rz_new / np.where(rz != 0, rz, 1.0), 0.0).astype(np.float32)
            pq = self._direction(p, z, beta, acc)
            rz = rz_new
        if self.singular:
            self._center(x)
        return x, iterations


def warm_up() -> None:
    """Load every kernel (from numba's disk cache, or compile it on the very first run) on a tiny
    problem. Meant for a background thread (`poisson.prepare`): a solve that calls a kernel still
    being loaded waits for it on numba's compiler lock."""
    omega = np.ones((4, 4), bool)
    L, C = _Level(omega, (False,) * 4, 0.0), _Level(omega[::2, ::2], (False,) * 4, 0.0)
    L.allocate(1)
    C.allocate(1)
    b, acc, coef, first = L.b, L.acc, np.zeros(1, np.float32), np.zeros(1, np.int64)
    K.restrict(b, L.invd, L.d, L.span, C.d, C.span, C.b, first, 0, 2)
    K.smooth(L.x, C.x, b, L.invd, L.d, L.span, acc, first, 0, 4)
    K.direction(L.x, L.x, coef, L.d, L.span, acc, np.zeros((1, 2, 6), np.float32), first, 0, 4)
    K.update(np.zeros_like(b), np.zeros_like(b), L.x, L.d, coef, L.span, acc, first, 0, 4)
    for dtype in (np.uint8, np.uint16):  # the mixed right-hand side, for both integer images
        img = np.zeros((4, 4, 3), dtype)
        K.mixed_rhs(img, img, omega, np.float32(1.0), np.float32(1.0), np.zeros((3, 4, 4), np.float32))
