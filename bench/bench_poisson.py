"""Benchmark: `nst_engine.compositing.poisson_blend` against OpenCV's `cv2.seamlessClone`.

Both blend the same synthetic 8-bit source into the same 8-bit target (a wavy disc with a hole as
the mask, about 1, 4 and 16 megapixels), each is timed (best of --repeat, the two methods
alternating run by run), and each is compared with the exact solution of the problem it solves:

* ours: Pérez, Gangnet & Blake (2003), eq. 7, on the mask. Reference in float64 by SciPy's sparse
  direct solver (SuperLU, as in ``spsolve``) up to 1.5 MP; above that SuperLU's fill-in takes
  too long and too much memory, so conjugate gradients with PyAMG's Ruge-Stuben preconditioner
  to a relative residual of 1e-12 (float64). Both are independent of the multigrid under test; the
  script checks that they agree on the first size.
* OpenCV: its own discretisation (modules/photo/src/seamless_cloning*.cpp), solved exactly in
  float64 with a DST-I (its domain is a rectangle): the Poisson equation on the whole ROI, with
  the source's gradients where its eroded mask is set, the target's elsewhere, and the ROI's
  outer ring as the boundary.
"cv2 vs Pérez" is the difference between the two problems, not a numerical error: OpenCV pins the
target only on the ROI's ring, so pixels outside the mask (and inside its holes) change too
("cv2 outside mask"), and it takes the target's gradient on mask edges that leave to the left or
top. Ours rounds to uint8 (so at least 0.5 level of error); OpenCV truncates (up to 1 level).
"ours float err" is our float32 solution before rounding.

Aligning OpenCV:
* It zeroes the mask's outer 1-px frame, takes the bounding box of what is left as the ROI and
  centres it on the point ``p``: ``roi_d.x = p.x - roi_s.width / 2``. We pass
  ``p = roi.x + roi.width // 2`` (and the same for y) so the source lands where it is (offset 0).
* It erodes the mask 3 times with a 3x3 square (through a view of the ROI, so the zeros beyond
  the ROI count too), and its DST keeps the ROI's outer ring as the (Dirichlet) boundary. We hand
  OpenCV our region dilated by 3 px, and give our solver exactly the pixels OpenCV then solves
  for with the source's gradients (that eroded mask minus the ROI ring), so both solve for the
  same unknowns.
* `cv2.seamlessClone` erodes and inverts the caller's mask array in place (it works on a view
  of it; OpenCV 5.0.0), so every call here gets a fresh copy.

Run from the repository root (prints a markdown table; takes a few minutes on 2 cores):
    .venv/bin/python bench/bench_poisson.py [--sizes 1,4,16] [--repeat 3] [--mode seamless]
Needs opencv-python-headless (the bench extra) and, for --reference amg/auto above 1.5 MP, pyamg.

``--whole`` times each tool as a whole process instead, as a user runs it, on the same PNG files
(source, target, each tool's mask; written with cv2.imwrite): ``nst blend SOURCE TARGET MASK -o
OUT.png`` against ``python -c "cv2.imread x3; cv2.seamlessClone; cv2.imwrite"``. Each process
pays its start-up, imports, PNG decoding and encoding; wall time is the best of --repeat (the two
alternating), CPU time that run's (the child's user + system time):
    .venv/bin/python bench/bench_poisson.py --whole --sizes 4,13 [--repeat 3]
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cv2  # noqa: E402
import scipy  # noqa: E402

from nst_engine.compositing._laplacian import direct_solver, laplacian_matrix  # noqa: E402
from nst_engine.compositing.poisson import _setup, poisson_blend  # noqa: E402

MARGIN = 64  # px of target around the region's bounding box
KERNEL = np.ones((3, 3), np.uint8)


def blob(area_px: float) -> np.ndarray:
    """A wavy, non-convex disc with a hole, of about `area_px` pixels, centred in a canvas."""
    a, b = 0.15, 0.05
    R = np.sqrt(area_px / (np.pi * (1 + (a * a + b * b) / 2) - np.pi * 0.15**2))
    side = int(2 * R * (1 + a + b)) + 2 * MARGIN
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32) - side / 2
    theta, rad = np.arctan2(yy, xx), np.hypot(yy, xx)
    inside = rad < R * (1 + a * np.sin(5 * theta) + b * np.sin(11 * theta + 1))
    hole = np.hypot(yy - 0.3 * R, xx + 0.2 * R) < 0.15 * R
    return inside & ~hole


def images(side: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Smooth colourful target; source with other colours, fine stripes and noise (uint8 RGB)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:side, 0:side].astype(np.float32)
    t = np.stack([128 + 90 * np.sin(xx / 500 + c) * np.cos(yy / 700 - c) + 8 * np.sin(xx / 3) for c in (0, 1, 2)], -1)
    s = np.stack([110 + 70 * np.cos(yy / 300 + c) + 20 * np.sin((xx + yy) / 9 + c) for c in (0, 1, 2)], -1)
    s += rng.normal(0, 6, s.shape).astype(np.float32)
    return np.clip(s, 0, 255).astype(np.uint8), np.clip(t, 0, 255).astype(np.uint8)


def opencv_alignment(region: np.ndarray) -> tuple[np.ndarray, tuple[int, int], np.ndarray]:
    """(mask for OpenCV, centre point p, the pixels OpenCV solves for) for a region."""
    mask_cv = cv2.dilate(region.astype(np.uint8) * 255, KERNEL, iterations=3)
    work = mask_cv.copy()
    work[[0, -1], :] = 0
    work[:, [0, -1]] = 0
    x, y, w, h = cv2.boundingRect(work)
    # OpenCV erodes through a view of the ROI, so the zeros beyond the ROI count: erode the whole
    eroded = cv2.erode(work, KERNEL, iterations=3) > 0
    omega = np.zeros_like(region)
    omega[y + 1 : y + h - 1, x + 1 : x + w - 1] = eroded[y + 1 : y + h - 1, x + 1 : x + w - 1]  # minus the ring
    return mask_cv, (x + w // 2, y + h // 2), omega


def reference(source: np.ndarray, target: np.ndarray, omega: np.ndarray, mode: str, kind: str) -> np.ndarray:
    """Pérez's exact solution in float64 (0..255) on the pixels of `omega`, shape (C, N), solved
    by SuperLU or by PyAMG-preconditioned CG; one channel at a time, one factorisation/hierarchy."""
    import pyamg

    solve, out = None, []
    for c in range(source.shape[2]):
        pb = _setup(source[:, :, c] / 255.0, target[:, :, c] / 255.0, omega, mode, (0, 0), np.float64)
        if solve is None:
            A = laplacian_matrix(pb.omega, pb.degrees())[0]
            if kind == "spsolve":
                solve = direct_solver(pb.omega, pb.degrees())
            else:
                A = A.tocsr()
                ml = pyamg.ruge_stuben_solver(A)
                solve = lambda b, ml=ml: ml.solve(b, tol=1e-12, accel="cg", maxiter=500)  # noqa: E731
        b = pb.r[0][pb.omega]
        x = solve(b)
        rel = np.linalg.norm(A @ x - b) / np.linalg.norm(b)
        assert rel < 1e-10, f"reference solve did not converge: {rel:.1e}"
        out.append((pb.f0[0][pb.omega] + x) * 255.0)
        del pb
    return np.stack(out)


def _fwd(a: np.ndarray, axis: int) -> np.ndarray:
    """OpenCV's forward difference (filter2D with [0, -1, 1], BORDER_REFLECT_101)."""
    a = np.moveaxis(a, axis, 0)
    g = np.empty_like(a)
    g[:-1] = a[1:] - a[:-1]
    g[-1] = a[-2] - a[-1]
    return np.moveaxis(g, 0, axis)


def _bwd(a: np.ndarray, axis: int) -> np.ndarray:
    """OpenCV's backward difference (filter2D with [-1, 1, 0], BORDER_REFLECT_101)."""
    a = np.moveaxis(a, axis, 0)
    g = np.empty_like(a)
    g[1:] = a[1:] - a[:-1]
    g[0] = a[0] - a[1]
    return np.moveaxis(g, 0, axis)


def opencv_reference(source: np.ndarray, target: np.ndarray, mask_cv: np.ndarray, mode: str,
                     omega: np.ndarray) -> np.ndarray:
    """The exact (float64, 0..255) solution of the problem OpenCV's seamlessClone discretises, on
    the pixels of `omega`, shape (C, N).

    Same ROI, eroded mask, masked patch, gradient and divergence stencils as
    seamless_cloning_impl.cpp; then the 5-point Poisson equation on the ROI interior with the
    ROI's ring as Dirichlet boundary, solved exactly with a float64 DST-I (a rectangle).
    """
    from scipy.fft import dstn

    work = mask_cv.copy()
    work[[0, -1], :] = 0
    work[:, [0, -1]] = 0
    x, y, w, h = cv2.boundingRect(work)
    m = work[y : y + h, x : x + w] > 0
    me = (cv2.erode(work, KERNEL, iterations=3)[y : y + h, x : x + w] > 0).astype(np.float64)
    n, k = h - 2, w - 2
    eig = (4.0 - 2.0 * np.cos(np.pi * np.arange(1, n + 1) / (n + 1))[:, None]
           - 2.0 * np.cos(np.pi * np.arange(1, k + 1) / (k + 1))[None, :])
    om_roi = omega[y + 1 : y + h - 1, x + 1 : x + w - 1]
    out = []
    for c in range(source.shape[2]):
        D = target[y : y + h, x : x + w, c].astype(np.float64)
        P = np.where(m, source[y : y + h, x : x + w, c], 0).astype(np.float64)
        gxp, gyp, gxd, gyd = _fwd(P, 1), _fwd(P, 0), _fwd(D, 1), _fwd(D, 0)
        if mode == "mixed":  # OpenCV compares |gx - gy| of patch and destination (sic)
            take_p = np.abs(gxp - gyp) > np.abs(gxd - gyd)
            gxp, gyp = np.where(take_p, gxp, gxd), np.where(take_p, gyp, gyd)
        lap = _bwd(gxp * me + gxd * (1.0 - me), 1) + _bwd(gyp * me + gyd * (1.0 - me), 0)
        del gxp, gyp, gxd, gyd, P
        # interior: 4 u_p - sum_{interior q} u_q = -lap_p + sum_{ring q} D_q
        rhs = -lap[1:-1, 1:-1]
        rhs[0] += D[0, 1:-1]
        rhs[-1] += D[-1, 1:-1]
        rhs[:, 0] += D[1:-1, 0]
        rhs[:, -1] += D[1:-1, -1]
        u = dstn(dstn(rhs, type=1, norm="ortho") / eig, type=1, norm="ortho")
        out.append(np.clip(u[om_roi], 0, 255))
    return np.stack(out)


def interleaved(fns: list, repeat: int) -> list[tuple[float, float, np.ndarray]]:
    """Run each fn `repeat` times, alternating between them (so that other jobs on the machine
    weigh on all of them alike); per fn: (best wall time, that run's process CPU time, result).
    CPU time counts all threads; it is the steadier number when other jobs share the cores."""
    best: list[tuple[float, float, np.ndarray | None]] = [(np.inf, np.inf, None)] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0, c0 = time.perf_counter(), time.process_time()
            out = fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            if wall < best[i][0]:
                best[i] = (wall, cpu, out)
    return best  # type: ignore[return-value]


CV2_PROCESS = """import sys, cv2
s, t = cv2.imread(sys.argv[1]), cv2.imread(sys.argv[2])
m = cv2.imread(sys.argv[3], cv2.IMREAD_GRAYSCALE)
out = cv2.seamlessClone(s, t, m, (int(sys.argv[4]), int(sys.argv[5])), int(sys.argv[7]))
cv2.imwrite(sys.argv[6], out)
"""


def run_process(cmd: list[str]) -> tuple[float, float]:
    """(wall s, CPU s of the child) of one process run."""
    import resource
    import subprocess

    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, (r1.ru_utime - r0.ru_utime) + (r1.ru_stime - r0.ru_stime)


def whole_process(args: argparse.Namespace, flag: int) -> None:
    """The --whole table: both tools as processes on the same PNG files."""
    import tempfile

    nst = Path(sys.executable).with_name("nst")
    nst_cmd = [str(nst)] if nst.exists() else [sys.executable, "-c", "import sys; from nst_engine.cli import main; "
                                                                        "sys.exit(main())"]
    print("| mask MP | image | nst blend s (cpu) | cv2 process s (cpu) | nst speed-up | PNG out nst / cv2 MB |")
    print("|---|---|---|---|---|---|")
    for mp in (float(v) for v in args.sizes.split(",")):
        region = blob(mp * 1e6)
        source, target = images(region.shape[0])
        mask_cv, p, omega = opencv_alignment(region)
        with tempfile.TemporaryDirectory() as tmp:
            d = Path(tmp)
            cv2.imwrite(str(d / "source.png"), source[..., ::-1])
            cv2.imwrite(str(d / "target.png"), target[..., ::-1])
            cv2.imwrite(str(d / "mask.png"), omega.astype(np.uint8) * 255)
            cv2.imwrite(str(d / "mask_cv.png"), mask_cv)
            ins = [str(d / "source.png"), str(d / "target.png")]
            cmds = [[*nst_cmd, "blend", *ins, str(d / "mask.png"), "-o", str(d / "nst.png"), "--mode", args.mode],
                    [sys.executable, "-c", CV2_PROCESS, *ins, str(d / "mask_cv.png"), str(p[0]), str(p[1]),
                     str(d / "cv2.png"), str(flag)]]
            best = [(np.inf, np.inf)] * 2
            for _ in range(args.repeat):
                for i, cmd in enumerate(cmds):
                    run = run_process(cmd)
                    best[i] = min(best[i], run)
            ours = cv2.imread(str(d / "nst.png"))[..., ::-1]
            assert np.array_equal(ours[~omega], target[~omega]), "nst blend changed pixels outside the mask"
            sizes = [os.path.getsize(d / f) / 1e6 for f in ("nst.png", "cv2.png")]
        (t_n, c_n), (t_c, c_c) = best
        print(f"| {omega.sum() / 1e6:.2f} | {region.shape[1]}x{region.shape[0]} | {t_n:.2f} ({c_n:.2f}) | "
              f"{t_c:.2f} ({c_c:.2f}) | {t_c / t_n:.2f} | {sizes[0]:.1f} / {sizes[1]:.1f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,4,16", help="mask areas in megapixels, comma-separated")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs of each method; the best is kept")
    ap.add_argument("--mode", choices=("seamless", "mixed"), default="seamless")
    ap.add_argument("--reference", choices=("auto", "spsolve", "amg", "none"), default="auto")
    ap.add_argument("--whole", action="store_true", help="time both tools as whole processes on PNG files")
    args = ap.parse_args()
    flag = cv2.NORMAL_CLONE if args.mode == "seamless" else cv2.MIXED_CLONE
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    if args.whole:
        print(f"# Whole processes ({args.mode}): `nst blend` vs a cv2.seamlessClone script, best of {args.repeat}")
        print(f"python {platform.python_version()}, numpy {np.__version__}, opencv {cv2.__version__}, {cpus} CPUs, "
              f"load average at start {os.getloadavg()[0]:.2f}")
        print()
        whole_process(args, flag)
        print()
        print(f"load average at end {os.getloadavg()[0]:.2f}")
        return
    print(f"# Poisson blending ({args.mode}): nst_engine vs cv2.seamlessClone, best of {args.repeat}")
    print(f"python {platform.python_version()}, numpy {np.__version__}, scipy {scipy.__version__}, "
          f"opencv {cv2.__version__} ({cv2.getNumThreads()} threads), {cpus} CPUs, "
          f"load average at start {os.getloadavg()[0]:.2f}")
    print()
    print("| mask MP | image | ours s (cpu) | cv2 s (cpu) | cv2/ours | ours err max / mean | cv2 err max / mean "
          "| ours float err max | cv2 vs Pérez max / mean | cv2 outside mask max | Pérez reference |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    checked = False
    for mp in (float(v) for v in args.sizes.split(",")):
        region = blob(mp * 1e6)
        source, target = images(region.shape[0])
        mask_cv, p, omega = opencv_alignment(region)
        masks = [mask_cv.copy() for _ in range(args.repeat)]  # seamlessClone mutates its mask (see above)
        (t_ours, c_ours, ours), (t_cv, c_cv, cv) = interleaved(
            [lambda s=source, t=target, o=omega: poisson_blend(s, t, o, mode=args.mode),
             lambda s=source, t=target, ms=masks, c=p: cv2.seamlessClone(s, t, ms.pop(), c, flag)], args.repeat)
        assert np.array_equal(ours[~omega], target[~omega])
        ours_px, cv_px = ours[omega].T.astype(np.float64), cv[omega].T.astype(np.float64)
        # the solver's own error: float output at the tolerance the uint8 run used
        ours_f = poisson_blend(source / np.float32(255), target / np.float32(255), omega, mode=args.mode, rtol=1e-4)
        ours_f = ours_f[omega].T.astype(np.float64) * 255.0
        e_cv = np.abs(cv_px - opencv_reference(source, target, mask_cv, args.mode, omega))
        kind = args.reference
        if kind == "auto":
            kind = "spsolve" if omega.sum() <= 1.5e6 else "amg"
        cells = ["-", f"{e_cv.max():.2f} / {e_cv.mean():.3f}", "-", "-"]
        if kind != "none":
            ref = reference(source, target, omega, args.mode, kind)
            if not checked and kind == "spsolve" and args.reference == "auto":
                diff = np.abs(reference(source, target, omega, args.mode, "amg") - ref).max()
                print(f"<!-- AMG and SuperLU references agree to {diff:.1e} levels at {mp:g} MP -->")
                checked = True
            e_ours = np.abs(ours_px - np.clip(ref, 0, 255))
            e_float = np.abs(ours_f - ref)
            e_sem = np.abs(cv_px - np.clip(ref, 0, 255))
            cells = [f"{e_ours.max():.2f} / {e_ours.mean():.3f}", cells[1], f"{e_float.max():.4f}",
                     f"{e_sem.max():.1f} / {e_sem.mean():.2f}"]
            del ref
        outside = np.abs(cv.astype(np.int16) - target.astype(np.int16))[~omega].max()
        side = region.shape[0]
        times = f"{t_ours:.2f} ({c_ours:.2f}) | {t_cv:.2f} ({c_cv:.2f}) | {t_cv / t_ours:.2f}"
        print(f"| {omega.sum() / 1e6:.2f} | {side}x{side} | {times} | " + " | ".join(cells)
              + f" | {outside} | {kind} |", flush=True)
    print()
    print(f"errors in 8-bit levels over the region; load average at end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
