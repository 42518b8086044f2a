"""Masked 5-point Poisson solver: conjugate gradients preconditioned by a geometric V-cycle.

The system is eq. (7) of Pérez, Gangnet & Blake (2003), "Poisson image editing": for every
pixel p of the region Omega, |N_p| x_p - sum_{q in N_p ∩ Omega} x_q = b_p, with N_p the
4-neighbours inside the image. Pixels outside Omega are Dirichlet pixels folded into b by
`poisson.py` (the unknowns are corrections, 0 outside Omega). The solve rectangle is Omega's
bounding box plus one ring; each of its sides is a ring of Dirichlet pixels or an image edge,
where missing neighbours are left out of N_p (Neumann, as the paper defines N_p).

Solver (the paper leaves it open): preconditioned CG; the preconditioner is one symmetric
V(1,1)-cycle of vertex-centred geometric multigrid in float32: red-black Gauss-Seidel (red, black
before the coarse correction; black, red after), bilinear prolongation P and restriction P^T,
coarse operators re-discretised on Omega sampled at the even pixels (see `_coarsen` for the
one repair), SuperLU on the coarsest level. After the pre-smoother the black residual is exactly
zero, and the post-smoother overwrites black pixels before reading them, so only red pixels are
restricted and prolongated; the cycle stays a symmetric positive definite operator, as CG
requires. Pixels are stored as four contiguous sub-lattices (even/odd row x even/odd column):
each neighbour set is a contiguous slice, and the even-even sub-lattice is the next coarser grid.
"""
from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy import ndimage

from ._laplacian import Sides as _Sides
from ._laplacian import degrees as _degrees
from ._laplacian import direct_solver

__all__ = ["MaskedPoisson"]

_DIRECT_MAX = 12_000  # unknowns: factorise the level directly at or below this size


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


def _coarsen(omega: np.ndarray, neumann: _Sides) -> np.ndarray:
    """The coarse region: Omega sampled at the even pixels, made safe.

    Sampling can drop Dirichlet pixels (a lone one at an odd position), which can leave a coarse
    component with no Dirichlet neighbour: a singular coarse operator. Such components only keep
    the even pixels whose whole 3x3 neighbourhood is in Omega, so every Dirichlet pixel survives
    there. (Applying that rule everywhere halves CG's convergence speed on ordinary masks.)
    """
    coarse = omega[0::2, 0::2].copy()
    top, bottom, left, right = neumann
    # Dirichlet contact: a 4-neighbour outside the coarse region, or beyond a ring side
    pad = np.pad(coarse, 1, constant_values=False)
    pad[0, :], pad[-1, :], pad[:, 0], pad[:, -1] = top, bottom, left, right
    contact = coarse & ~(pad[:-2, 1:-1] & pad[2:, 1:-1] & pad[1:-1, :-2] & pad[1:-1, 2:])
    labels, n = ndimage.label(coarse)
    touching = np.zeros(n + 1, dtype=bool)
    touching[labels[contact]] = True
    stranded = coarse & ~touching[labels]
    if stranded.any():
        inner = np.pad(omega, 1, constant_values=False)  # 3x3 rule, beyond an image edge = inside
        inner[0, :], inner[-1, :], inner[:, 0], inner[:, -1] = top, bottom, left, right
        hc, wc = coarse.shape
        full = np.ones((hc, wc), dtype=bool)
        for dy in range(3):
            for dx in range(3):
                full &= inner[dy : dy + 2 * hc - 1 : 2, dx : dx + 2 * wc - 1 : 2]
        coarse &= ~stranded | full
    return coarse


def regions(omega: np.ndarray, neumann: _Sides, direct_max: int) -> list[np.ndarray]:
    """The region of each level, finest first: coarsened (`_coarsen`) while a level has more than
    `direct_max` unknowns (the last one is factorised directly)."""
    out = [omega]
    while int(out[-1].sum()) > direct_max and min(out[-1].shape) >= 3:
        coarse = _coarsen(out[-1], neumann)
        if not coarse.any():
            break
        out.append(coarse)
    return out


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
        self.x: _Parts = {k: np.zeros((v.shape[0] + 2, v.shape[1] + 2), np.float32) for k, v in self.om.items()}
        self.b: _Parts = {k: np.zeros(v.shape, np.float32) for k, v in self.om.items()}
        self.tmp: _Parts = {k: np.empty(v.shape, np.float32) for k, v in self.om.items()}
        self.tmp2: _Parts = {k: np.empty(v.shape, np.float32) for k, v in self.om.items()}
        h, w = self.shape
        hc, wc = (h + 1) // 2, (w + 1) // 2
        self.cp = np.zeros((hc + 1, wc + 1), np.float32)  # restriction accumulator
        self.ep = np.zeros((hc + 1, wc + 1), np.float32)  # prolongation source
        self.full = np.zeros((h, w), np.float32)

    def clone(self) -> _Level:
        other = object.__new__(_Level)
        other.__dict__.update(self.__dict__)
        other.allocate()
        return other

    @staticmethod
    def inner(parts: _Parts, key: _Key) -> np.ndarray:
        return parts[key][1:-1, 1:-1]

    def nsum(self, x: _Parts, key: _Key, out: np.ndarray) -> np.ndarray:
        """Sum of the 4 neighbours of every pixel of sub-lattice `key` (0 off the region)."""
        (k0, r0, c0), (k1, r1, c1), (k2, r2, c2), (k3, r3, c3) = self.nb[key]
        np.add(x[k0][r0, c0], x[k1][r1, c1], out=out)
        out += x[k2][r2, c2]
        out += x[k3][r3, c3]
        return out

    def sweep(self, b: _Parts, key: _Key) -> None:
        """Gauss-Seidel on the sub-lattice `key`: x_p = (b_p + sum x_q) / |N_p|."""
        t = self.nsum(self.x, key, self.tmp[key])
        t += b[key]
        np.multiply(t, self.invd[key], out=self.inner(self.x, key))

    def red_residual(self, b: _Parts, key: _Key) -> None:
        """tmp[key] = b - A x on a red sub-lattice (the black residual is zero after a black sweep)."""
        x, t = self.x, self.tmp[key]
        self.nsum(x, key, t)
        t += b[key]
        np.multiply(self.d[key], self.inner(x, key), out=self.tmp2[key])
        t -= self.tmp2[key]
        t *= self.om[key]

    def to_full(self, parts: _Parts, padded: bool, out: np.ndarray | None = None) -> np.ndarray:
        out = self.full if out is None else out
        for k in _KEYS:
            out[k[0] :: 2, k[1] :: 2] = parts[k][1:-1, 1:-1] if padded else parts[k]
        return out

    def factorize(self, singular: bool) -> None:
        self.lu = direct_solver(self.omega, self.d_full, singular=singular)


_PARALLEL_MIN = 40_000  # sub-lattice entries: below this a level's steps are not worth a thread


class MaskedPoisson:
    """Solve the masked Laplacian system for several right-hand sides (one per colour channel).

    `omega` is the bool region on the solve rectangle, `neumann` says which sides of the
    rectangle (top, bottom, left, right) are image edges. `singular` marks the one case without
    any Dirichlet pixel (the region is the whole image): the zero-mean solution is returned.
    """

    def __init__(self, omega: np.ndarray, neumann: _Sides, *, singular: bool = False) -> None:
        self.singular = singular
        self.pool: ThreadPoolExecutor | None = None  # set while one channel uses two threads
        # a singular problem stays singular on coarse levels: a small diagonal shift keeps the
        # V-cycle positive definite (CG projects the constant mode out on the fine level)
        self.levels: list[_Level] = [_Level(region, neumann, 1e-2 if singular and k else 0.0)
                                     for k, region in enumerate(regions(omega, neumann, _DIRECT_MAX))]
        self.levels[-1].factorize(singular and len(self.levels) == 1)

    def _clone(self) -> MaskedPoisson:
        other = object.__new__(MaskedPoisson)
        other.singular, other.pool = self.singular, None
        other.levels = [L.clone() for L in self.levels]
        return other

    def _each(self, L: _Level, keys: tuple[_Key, ...], fn: Callable[[_Key], object]) -> None:
        """fn(key) for each key; split in two halves over two threads on large levels.

        The sub-lattices of one colour never touch each other's outputs (nor their tmp buffers),
        and numpy releases the GIL in its loops, so the halves run truly in parallel.
        """
        if self.pool is None or L.om[(0, 0)].size < _PARALLEL_MIN:
            for k in keys:
                fn(k)
            return
        half = len(keys) // 2
        other = self.pool.submit(lambda: [fn(k) for k in keys[half:]])
        for k in keys[:half]:
            fn(k)
        other.result()

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
        self._each(L, _RED, lambda key: np.multiply(b[key], L.invd[key], out=L.inner(x, key)))
        self._each(L, _BLACK, lambda key: L.sweep(b, key))
        # red residual (the black one is zero now), restricted with P^T onto the coarse grid,
        # whose pixels are the even-even ones
        self._each(L, _RED, lambda key: L.red_residual(b, key))
        C = self.levels[k + 1]
        hc, wc = C.shape
        (h, w), (_, bottom, _, right) = L.shape, L.neumann
        cp = L.cp
        cp.fill(0.0)
        q = L.tmp[(1, 1)]
        q *= np.float32(0.25)
        n1, m1 = q.shape
        for dy, dx in ((0, 0), (1, 0), (0, 1), (1, 1)):  # each odd-odd pixel feeds its 4 coarse corners
            cp[dy : n1 + dy, dx : m1 + dx] += q
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
        ep = L.ep
        ep[:hc, :wc] = e
        if bottom and h % 2 == 0:
            ep[hc, :wc] = e[hc - 1, :]
        if right and w % 2 == 0:
            ep[:, wc] = ep[:, wc - 1]

        def prolong(key: _Key) -> None:
            if key == (0, 0):
                L.inner(x, key)[...] += e
                return
            t = L.tmp[key]
            np.add(ep[:n1, :m1], ep[1 : n1 + 1, :m1], out=t)
            for dy, dx in ((0, 1), (1, 1)):
                t += ep[dy : n1 + dy, dx : m1 + dx]
            t *= np.float32(0.25)
            t *= L.om[key]
            L.inner(x, key)[...] += t

        self._each(L, _RED, prolong)
        # post-smoothing in the reverse order keeps the cycle symmetric
        self._each(L, _BLACK, lambda key: L.sweep(b, key))
        self._each(L, _RED, lambda key: L.sweep(b, key))
        return x

    def _center(self, parts: _Parts) -> None:
        """Subtract the mean over Omega (the constant mode of the singular, boundary-free problem)."""
        om = self.levels[0].om
        total = sum(float(parts[k].sum(dtype=np.float64)) for k in _KEYS)
        mean = np.float32(total / sum(float(v.sum()) for v in om.values()))
        for k in _KEYS:
            parts[k] -= mean * om[k]

    def solve_one(self, b: np.ndarray, *, rtol: float, maxiter: int) -> tuple[np.ndarray, int]:
        """PCG for one right-hand side (float32 (h, w), zero outside Omega); returns (x, iterations)."""
        L = self.levels[0]
        r = {k: v * L.om[k] for k, v in _split(b.astype(np.float32)).items()}
        if self.singular:
            self._center(r)
        part: dict[_Key, float] = {}

        def dot(a: _Parts, c: _Parts) -> float:
            self._each(L, _KEYS, lambda k: part.__setitem__(k, float(np.einsum("ij,ij->", a[k], c[k]))))
            return total()

        def total() -> float:  # in a fixed order, so that threads do not change the last bit
            return sum(part[k] for k in _KEYS)

        r0 = np.sqrt(dot(r, r))
        if r0 == 0.0:
            return np.zeros(L.shape, np.float32), 0

        def precondition() -> _Parts:
            zp = self._vcycle(0, r)
            z = {k: L.inner(zp, k) for k in _KEYS}
            if self.singular:
                self._center(z)
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

        def apply_A(k: _Key) -> None:  # q = A p, and p.q
            L.nsum(p, k, q[k])
            np.multiply(L.d[k], pin[k], out=L.tmp[k])
            np.subtract(L.tmp[k], q[k], out=q[k])
            q[k] *= L.om[k]
            part[k] = float(np.einsum("ij,ij->", pin[k], q[k]))

        def update(k: _Key) -> None:  # x += alpha p, r -= alpha q, and r.r
            np.multiply(pin[k], alpha, out=L.tmp[k])
            x[k] += L.tmp[k]
            np.multiply(q[k], alpha, out=L.tmp[k])
            r[k] -= L.tmp[k]
            part[k] = float(np.einsum("ij,ij->", r[k], r[k]))

        def direction(k: _Key) -> None:  # p = z + beta p
            pin[k] *= beta
            pin[k] += z[k]

        it, best, stalled = 0, r0, 0
        for it in range(1, maxiter + 1):  # noqa: B007 (it is returned)
            self._each(L, _KEYS, apply_A)
            alpha = np.float32(rz / total())
            self._each(L, _KEYS, update)
            rn = np.sqrt(total())
            # stop at the tolerance, or when float32 round-off stalls progress (8 steps without 10%)
            best, stalled = (rn, 0) if rn < 0.9 * best else (best, stalled + 1)
            if rn <= rtol * r0 or stalled >= 8:
                break
            z = precondition()
            rz_new = dot(r, z)
            beta = np.float32(rz_new / rz)
            self._each(L, _KEYS, direction)
            rz = rz_new
        if self.singular:
            self._center(x)
        return L.to_full(x, False, np.empty(L.shape, np.float32)), it

    def solve(self, rhs: np.ndarray, *, rtol: float = 1e-5, maxiter: int = 200,
              threads: int | None = None) -> tuple[np.ndarray, list[int]]:
        """Solve for rhs of shape (C, h, w); returns the corrections (C, h, w), zero outside
        Omega, and the PCG iterations per channel.

        With T threads (default: the CPUs this process may use), channels run T at a time in
        parallel; a remainder that leaves threads idle (the 3rd channel of RGB on 2 CPUs) runs
        with its sub-lattice steps split over two threads instead.
        """
        if threads is None:
            try:
                threads = len(os.sched_getaffinity(0))
            except AttributeError:  # not on Linux
                threads = os.cpu_count() or 1
        n = rhs.shape[0]
        threads = max(1, threads)
        results: list[tuple[np.ndarray, int]] = []
        solvers = [self] + [self._clone() for _ in range(min(threads, n) - 1)]
        with ThreadPoolExecutor(max_workers=max(1, threads - 1)) as pool:
            done = 0
            while done < n:
                group = min(threads, n - done)
                if group == 1:
                    if threads >= 2:
                        self.pool = pool
                    try:
                        results.append(self.solve_one(rhs[done], rtol=rtol, maxiter=maxiter))
                    finally:
                        self.pool = None
                else:
                    futures = [pool.submit(solvers[i].solve_one, rhs[done + i], rtol=rtol, maxiter=maxiter)
                               for i in range(1, group)]
                    first = solvers[0].solve_one(rhs[done], rtol=rtol, maxiter=maxiter)
                    results += [first] + [f.result() for f in futures]
                done += group
        return np.stack([x for x, _ in results]), [it for _, it in results]
