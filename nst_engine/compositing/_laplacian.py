"""The masked 5-point Laplacian of Poisson image editing as a sparse matrix, and its direct solve.

The matrix is the left-hand side of eq. (7) of Pérez, Gangnet & Blake (2003), "Poisson image
editing": for p in the region Omega, |N_p| on the diagonal (N_p: p's 4-neighbours inside the
image) and -1 for each neighbour q in Omega. Used for the exact solve (``solver="direct"``), on
the multigrid's coarsest level, and by the benchmark's reference solvers.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.sparse as sp
import scipy.sparse.linalg as spla

__all__ = ["Sides", "degrees", "laplacian_matrix", "direct_solver"]

Sides = tuple[bool, bool, bool, bool]  # is the side an image edge (Neumann): top, bottom, left, right


def degrees(omega: np.ndarray, neumann: Sides) -> np.ndarray:
    """|N_p| on the level: 4 minus the neighbours that fall off an image edge."""
    d: np.ndarray = np.full(omega.shape, 4.0, dtype=np.float32)
    sides: tuple[tuple[int | slice, int | slice], ...] = (np.s_[0, :], np.s_[-1, :], np.s_[:, 0], np.s_[:, -1])
    for is_edge, side in zip(neumann, sides, strict=True):
        d[side] -= 1.0 if is_edge else 0.0
    return d


def laplacian_matrix(omega: np.ndarray, d: np.ndarray) -> tuple[sp.csc_matrix, np.ndarray]:
    """The sparse matrix of the masked Laplacian (diagonal `d`, -1 between 4-neighbours in Omega).

    Returns the CSC matrix and the map pixel -> unknown index (-1 outside Omega).
    """
    h, w = omega.shape
    index = np.full((h, w), -1, dtype=np.int32 if omega.size < 2**31 else np.int64)
    n = int(omega.sum())
    index[omega] = np.arange(n, dtype=index.dtype)
    rows, cols, vals = [index[omega]], [index[omega]], [d[omega].astype(np.float64)]
    for a, b in ((index[:, :-1], index[:, 1:]), (index[:-1, :], index[1:, :])):  # horizontal, vertical pairs
        both = (a >= 0) & (b >= 0)
        i, j = a[both], b[both]
        rows += [i, j]
        cols += [j, i]
        vals += [np.full(2 * i.size, -1.0)]
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    return A, index


def direct_solver(omega: np.ndarray, d: np.ndarray, *, singular: bool = False) -> Callable[[np.ndarray], np.ndarray]:
    """A sparse LU factorisation of the masked Laplacian; returns `solve(b) -> x` (float64 vectors
    or (n, k) blocks over the pixels of Omega in row-major order).

    `singular` (no Dirichlet pixel at all, Omega is one connected image): the right-hand side is
    made consistent (zero mean), the first unknown pinned to 0 and its equation dropped (implied by
    the others), and the zero-mean solution returned.
    """
    A, _ = laplacian_matrix(omega, d)
    opts = {"permc_spec": "MMD_AT_PLUS_A", "diag_pivot_thresh": 0.0, "options": {"SymmetricMode": True}}
    if not singular:
        lu = spla.splu(A, **opts)
        return lambda b: lu.solve(np.asarray(b, dtype=np.float64))
    lu = spla.splu(A[1:, 1:].tocsc(), **opts)

    def solve(b: np.ndarray) -> np.ndarray:
        b = np.asarray(b, dtype=np.float64)
        x = np.zeros_like(b)
        x[1:] = lu.solve(np.ascontiguousarray((b - b.mean(axis=0))[1:]))
        return x - x.mean(axis=0)

    return solve
