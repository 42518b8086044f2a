"""Masked 5-point Poisson solver: conjugate gradients preconditioned by a geometric V-cycle.

The system is the one of Pérez, Gangnet & Blake (2003), "Poisson image editing", eq. (7):
for every unknown pixel p in the region Omega,

    |N_p| x_p - sum_{q in N_p, q in Omega} x_q = b_p,

where N_p are p's 4-neighbours inside the image and every pixel outside Omega is a
Dirichlet pixel (its value is folded into b, so the unknowns here are *corrections* that are 0
outside Omega). This module only knows the region and the right-hand side; `poisson.py` builds
them. The region lives on a rectangle (the mask's bounding box plus one ring of boundary pixels);
a side of the rectangle is either a ring of Dirichlet pixels or the image edge, where the
missing neighbours are simply left out of N_p (a Neumann border, as in the paper's definition
of N_p).

Solver (not in the paper, which leaves the solver open): preconditioned conjugate gradients, the
preconditioner one symmetric V(1,1)-cycle of vertex-centred geometric multigrid (in float32):
red-black Gauss-Seidel smoothing (red, black before the coarse correction; black, red after),
bilinear prolongation P and restriction P^T, coarse operators re-discretised on the region sampled
at the even pixels, and a sparse LU factorisation (SuperLU) on the coarsest level. Two facts of
red-black smoothing halve the transfer work: after the pre-smoother the black residual is exactly
zero (so only red pixels are restricted), and the post-smoother overwrites every black pixel
before reading it (so only red pixels are prolongated). The V-cycle is then a symmetric positive
definite linear operator, as conjugate gradients require. Pixels are stored red-black: four
contiguous sub-lattices (even/odd row x even/odd column), so each neighbour access is a contiguous
slice and the even-even sub-lattice is the next coarser grid.
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["MaskedPoisson", "direct_solver", "laplacian_matrix"]

_DIRECT_MAX = 12_000  # unknowns: factorise the level directly at or below this size
_Sides = tuple[bool, bool, bool, bool]  # Neumann (image edge) at top, bottom, left, right


def _degrees(omega: np.ndarray, neumann: _Sides) -> np.ndarray:
    """|N_p| on the level: 4 minus the neighbours that fall off an image edge."""
    d = np.full(omega.shape, 4.0, dtype=np.float32)
    top, bottom, left, right = neumann
    if top:
        d[0, :] -= 1
    if bottom:
        d[-1, :] -= 1
    if left:
        d[:, 0] -= 1
    if right:
        d[:, -1] -= 1
    return d


def laplacian_matrix(omega: np.ndarray, d: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """The sparse matrix of the masked Laplacian (diagonal `d`, -1 between 4-neighbours in Omega).

    Returns the CSC matrix and the map pixel -> unknown index (-1 outside Omega).
    """
    h, w = omega.shape
    index = np.full((h, w), -1, dtype=np.int64)
    n = int(omega.sum())
    index[omega] = np.arange(n)
    rows = [index[omega]]
    cols = [index[omega]]
    vals = [d[omega].astype(np.float64)]
    for a, b in (
        (index[:, :-1], index[:, 1:]),  # horizontal pairs
        (index[:-1, :], index[1:, :]),  # vertical pairs
    ):
        both = (a >= 0) & (b >= 0)
        i, j = a[both], b[both]
        rows += [i, j]
        cols += [j, i]
        vals += [np.full(i.size, -1.0), np.full(i.size, -1.0)]
    A = sp.csc_matrix(
        (np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)
    )
    return A, index


def direct_solver(omega: np.ndarray, d: np.ndarray, *, singular: bool = False):
    """A sparse LU factorisation of the masked Laplacian; returns `solve(b) -> x` (float64 vectors
    or (n, k) blocks over the pixels of Omega in row-major order).

    `singular` (no Dirichlet pixel at all): the system is bordered with the zero-mean constraint,
    [[A, 1], [1^T, 0]], which has the zero-mean solution of the consistent Neumann problem.
    """
    A, _ = laplacian_matrix(omega, d)
    n = A.shape[0]
    if singular:
        ones = sp.csc_matrix(np.ones((n, 1)))
        A = sp.bmat([[A, ones], [ones.T, None]], format="csc")
        lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A")

        def solve(b: np.ndarray) -> np.ndarray:
            b = np.asarray(b, dtype=np.float64)
            extra = np.zeros((1,) + b.shape[1:])
            return lu.solve(np.concatenate([b - b.mean(axis=0), extra]))[:n]

        return solve
    lu = spla.splu(A, permc_spec="MMD_AT_PLUS_A", diag_pivot_thresh=0.0, options={"SymmetricMode": True})
    return lambda b: lu.solve(np.asarray(b, dtype=np.float64))


_Key = tuple[int, int]
_KEYS: tuple[_Key, ...] = ((0, 0), (1, 1), (0, 1), (1, 0))
_RED, _BLACK = _KEYS[:2], _KEYS[2:]
_Parts = dict[_Key, np.ndarray]


def _neighbours(key: _Key, ni: int, nj: int) -> list[tuple[_Key, slice, slice]]:
    """Where the up, down, left and right neighbours of the sub-lattice `key` live.

    Pixel (2k+pi, 2l+pj) is entry (k, l) of sub-lattice (pi, pj); each sub-lattice is stored with a
    ring of zeros (entry (k, l) at [k+1, l+1]), so every neighbour set is a contiguous slice.
    """
    pi, pj = key
    rows, cols = slice(1, 1 + ni), slice(1, 1 + nj)
    up = ((0, pj), rows, cols) if pi else ((1, pj), slice(0, ni), cols)
    down = ((1, pj), rows, cols) if pi == 0 else ((0, pj), slice(2, 2 + ni), cols)
    left = ((pi, 0), rows, cols) if pj else ((pi, 1), rows, slice(0, nj))
    right = ((pi, 1), rows, cols) if pj == 0 else ((pi, 0), rows, slice(2, 2 + nj))
    return [up, down, left, right]


def _split(a: np.ndarray) -> _Parts:
    return {k: np.ascontiguousarray(a[k[0] :: 2, k[1] :: 2]) for k in _KEYS}


class _Level:
    """One grid of the hierarchy in red-black storage: region, |N_p|, neighbour slices, buffers."""

    def __init__(self, omega: np.ndarray, neumann: _Sides, shift: float) -> None:
        self.omega, self.neumann, self.shape = omega, neumann, omega.shape
        om = omega.astype(np.float32)
        d = (_degrees(omega, neumann) + np.float32(shift)) * om
        self.d_full = d
        self.om, self.d = _split(om), _split(d)
        self.invd = {k: np.divide(1.0, v, out=np.zeros_like(v), where=v > 0) for k, v in self.d.items()}
        self.nb = {k: _neighbours(k, *self.om[k].shape) for k in _KEYS}
        self.lu: Callable[[np.ndarray], np.ndarray] | None = None
        self.allocate()

    def allocate(self) -> None:
        """Work buffers (each thread gets its own): solution, right-hand side, temporaries."""
        self.x = {k: np.zeros((v.shape[0] + 2, v.shape[1] + 2), np.float32) for k, v in self.om.items()}
        self.b = {k: np.zeros(v.shape, np.float32) for k, v in self.om.items()}
        self.tmp = {k: np.empty(v.shape, np.float32) for k, v in self.om.items()}
        self.tmp2 = {k: np.empty(v.shape, np.float32) for k, v in self.om.items()}
        h, w = self.shape
        hc, wc = (h + 1) // 2, (w + 1) // 2
        self.cp = np.zeros((hc + 1, wc + 1), np.float32)  # restriction accumulator
        self.ep = np.zeros((hc + 1, wc + 1), np.float32)  # prolongation source
        self.full = np.zeros((h, w), np.float32)

    def clone(self) -> "_Level":
        other = object.__new__(_Level)
        other.__dict__.update(self.__dict__)
        other.allocate()
        return other

    def inner(self, parts: _Parts, key: _Key) -> np.ndarray:
        a = parts[key]
        return a[1:-1, 1:-1]

    def nsum(self, x: _Parts, key: _Key, out: np.ndarray) -> np.ndarray:
        """Sum of the 4 neighbours of every pixel of sub-lattice `key` (0 off the region)."""
        (k0, r0, c0), (k1, r1, c1), (k2, r2, c2), (k3, r3, c3) = self.nb[key]
        np.add(x[k0][r0, c0], x[k1][r1, c1], out=out)
        out += x[k2][r2, c2]
        out += x[k3][r3, c3]
        return out

    def half_sweep(self, b: _Parts, keys: tuple[_Key, ...]) -> None:
        """Gauss-Seidel on the sub-lattices `keys`: x_p = (b_p + sum x_q) / |N_p|."""
        for key in keys:
            t = self.nsum(self.x, key, self.tmp[key])
            t += b[key]
            np.multiply(t, self.invd[key], out=self.inner(self.x, key))

    def to_full(self, parts: _Parts, padded: bool, out: np.ndarray | None = None) -> np.ndarray:
        out = self.full if out is None else out
        for k in _KEYS:
            out[k[0] :: 2, k[1] :: 2] = parts[k][1:-1, 1:-1] if padded else parts[k]
        return out

    def factorize(self, singular: bool) -> None:
        self.lu = direct_solver(self.omega, self.d_full, singular=singular)


class MaskedPoisson:
    """Solve the masked Laplacian system for several right-hand sides (one per colour channel).

    `omega` is the bool region on the solve rectangle, `neumann` says which sides of the
    rectangle (top, bottom, left, right) are image edges. `singular` marks the one case without
    any Dirichlet pixel (the region is the whole image): the zero-mean solution is returned.
    """

    def __init__(self, omega: np.ndarray, neumann: _Sides, *, singular: bool = False) -> None:
        self.singular = singular
        self.levels: list[_Level] = [_Level(omega, neumann, 0.0)]
        while int(self.levels[-1].omega.sum()) > _DIRECT_MAX and min(self.levels[-1].shape) >= 3:
            coarse = self.levels[-1].omega[0::2, 0::2]
            if not coarse.any():
                break
            # a singular problem stays singular on coarse levels: a small diagonal shift keeps the
            # V-cycle positive definite (CG projects the constant mode out on the fine level)
            self.levels.append(_Level(coarse, neumann, 1e-2 if singular else 0.0))
        self.levels[-1].factorize(singular and len(self.levels) == 1)

    def _clone(self) -> "MaskedPoisson":
        other = object.__new__(MaskedPoisson)
        other.singular = self.singular
        other.levels = [L.clone() for L in self.levels]
        return other

    def _vcycle(self, k: int, b: _Parts) -> _Parts:
        """One V-cycle for A_k y = b from y = 0; returns the level's (padded) solution parts."""
        L = self.levels[k]
        x = L.x
        if L.lu is not None:
            full = L.to_full(b, padded=False)
            sol = np.zeros(L.shape, np.float32)
            sol[L.omega] = L.lu(full[L.omega])
            for key in _KEYS:
                L.inner(x, key)[...] = sol[key[0] :: 2, key[1] :: 2]
            return x
        # pre-smoothing, red then black. The red half-sweep from y = 0 writes every red pixel and
        # the black one every black pixel, so the buffers need no clearing.
        for key in _RED:
            np.multiply(b[key], L.invd[key], out=L.inner(x, key))
        L.half_sweep(b, _BLACK)
        # red residual (the black one is zero now), restricted with P^T onto the coarse grid,
        # whose pixels are the even-even ones
        for key in _RED:
            t = L.nsum(x, key, L.tmp[key])
            t += b[key]
            np.multiply(L.d[key], L.inner(x, key), out=L.tmp2[key])
            t -= L.tmp2[key]
            t *= L.om[key]
        C = self.levels[k + 1]
        hc, wc = C.shape
        (h, w), (_, bottom, _, right) = L.shape, L.neumann
        cp = L.cp
        cp.fill(0.0)
        q = L.tmp[(1, 1)]
        q *= np.float32(0.25)
        n1, m1 = q.shape
        cp[:n1, :m1] += q
        cp[1 : n1 + 1, :m1] += q
        cp[:n1, 1 : m1 + 1] += q
        cp[1 : n1 + 1, 1 : m1 + 1] += q
        cp[:hc, :wc] += L.tmp[(0, 0)]
        # transpose of the constant extrapolation that `ep` gets at an image edge below
        if bottom and h % 2 == 0:
            cp[hc - 1, :] += cp[hc, :]
        if right and w % 2 == 0:
            cp[:, wc - 1] += cp[:, wc]
        for key in _KEYS:
            np.multiply(cp[key[0] : hc : 2, key[1] : wc : 2], C.om[key], out=C.b[key])
        e = C.to_full(self._vcycle(k + 1, C.b), padded=True)
        # bilinear prolongation to the red pixels: even-even ones are the coarse pixels,
        # odd-odd ones the average of 4 (black ones are overwritten by the next half-sweep)
        L.inner(x, (0, 0))[...] += e
        ep = L.ep
        ep[:hc, :wc] = e
        if bottom and h % 2 == 0:
            ep[hc, :wc] = e[hc - 1, :]
        if right and w % 2 == 0:
            ep[:, wc] = ep[:, wc - 1]
        t = L.tmp[(1, 1)]
        np.add(ep[:n1, :m1], ep[1 : n1 + 1, :m1], out=t)
        t += ep[:n1, 1 : m1 + 1]
        t += ep[1 : n1 + 1, 1 : m1 + 1]
        t *= np.float32(0.25)
        t *= L.om[(1, 1)]
        L.inner(x, (1, 1))[...] += t
        # post-smoothing in the reverse order keeps the cycle symmetric
        L.half_sweep(b, _BLACK)
        L.half_sweep(b, _RED)
        return x

    def _mean(self, parts: _Parts, padded: bool) -> np.float32:
        om = self.levels[0].om
        total = sum(float((v[1:-1, 1:-1] if padded else v).sum(dtype=np.float64)) for v in parts.values())
        return np.float32(total / sum(float(v.sum()) for v in om.values()))

    def solve_one(self, b: np.ndarray, *, rtol: float, maxiter: int) -> tuple[np.ndarray, int]:
        """PCG for one right-hand side (float32 (h, w), zero outside Omega); returns (x, iterations)."""
        L = self.levels[0]
        r = {k: v * L.om[k] for k, v in _split(b.astype(np.float32)).items()}
        if self.singular:
            mean = self._mean(r, padded=False)
            for k in _KEYS:
                r[k] -= mean * L.om[k]

        def dot(a: _Parts, c: _Parts) -> float:
            return sum(float(np.einsum("ij,ij->", a[k], c[k])) for k in _KEYS)

        r0 = np.sqrt(dot(r, r))
        if r0 == 0.0:
            return np.zeros(L.shape, np.float32), 0

        def precondition() -> _Parts:
            zp = self._vcycle(0, r)
            z = {k: L.inner(zp, k) for k in _KEYS}
            if self.singular:
                mean = self._mean(z, padded=False)
                for k in _KEYS:
                    z[k] -= mean * L.om[k]
            return z

        if len(self.levels) == 1:  # factorised directly
            return L.to_full(precondition(), False, np.empty(L.shape, np.float32)), 0
        x = {k: np.zeros_like(v) for k, v in r.items()}
        p = {k: np.zeros_like(v) for k, v in L.x.items()}
        pin = {k: L.inner(p, k) for k in _KEYS}
        q = {k: np.empty_like(v) for k, v in r.items()}
        z = precondition()
        for k in _KEYS:
            pin[k][...] = z[k]
        rz = dot(r, z)
        it = 0
        for it in range(1, maxiter + 1):
            for k in _KEYS:  # q = A p
                L.nsum(p, k, q[k])
                np.multiply(L.d[k], pin[k], out=L.tmp[k])
                np.subtract(L.tmp[k], q[k], out=q[k])
                q[k] *= L.om[k]
            alpha = np.float32(rz / dot(pin, q))
            for k in _KEYS:
                np.multiply(pin[k], alpha, out=L.tmp[k])
                x[k] += L.tmp[k]
                np.multiply(q[k], alpha, out=L.tmp[k])
                r[k] -= L.tmp[k]
            if np.sqrt(dot(r, r)) <= rtol * r0:
                break
            z = precondition()
            rz_new = dot(r, z)
            beta = np.float32(rz_new / rz)
            for k in _KEYS:
                pin[k] *= beta
                pin[k] += z[k]
            rz = rz_new
        if self.singular:
            mean = self._mean(x, padded=False)
            for k in _KEYS:
                x[k] -= mean * L.om[k]
        return L.to_full(x, False, np.empty(L.shape, np.float32)), it

    def solve(self, rhs: np.ndarray, *, rtol: float = 1e-5, maxiter: int = 200,
              threads: int | None = None) -> tuple[np.ndarray, list[int]]:
        """Solve for rhs of shape (C, h, w); channels run in parallel threads (numpy frees the GIL).

        Returns the corrections (C, h, w), zero outside Omega, and the PCG iterations per channel.
        """
        if threads is None:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                threads = os.cpu_count() or 1
        n = rhs.shape[0]
        threads = max(1, min(threads, n))
        # each thread owns a copy of the buffers and runs its channels one after another
        solvers = [self] + [self._clone() for _ in range(threads - 1)]

        def work(k: int) -> list[tuple[np.ndarray, int]]:
            return [solvers[k].solve_one(rhs[c], rtol=rtol, maxiter=maxiter) for c in range(k, n, threads)]

        if threads == 1:
            results = work(0)
        else:
            with ThreadPoolExecutor(max_workers=threads) as pool:
                per_thread = list(pool.map(work, range(threads)))
            results = [per_thread[c % threads][c // threads] for c in range(n)]
        return np.stack([x for x, _ in results]), [it for _, it in results]
