"""Poisson blending (Pérez et al. 2003): the discrete equation, the boundary, dtypes, masks, errors.

Images are small (<= 128 px). Each solver test runs three times: with the sparse LU that small
regions get anyway, and with the multigrid + CG path forced on by lowering the direct-solve
threshold, once in numpy (`_multigrid`) and once compiled (`_jit`, numba).
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest

from nst_engine.compositing import NoBoundaryWarning, _multigrid, poisson, poisson_blend, poisson_blend_report

try:
    from nst_engine.compositing import _jit
except ImportError:  # no numba (a Python newer than its wheels): the numpy solver only
    _jit = None  # type: ignore[assignment]
from nst_engine.errors import InputError  # noqa: E402 (after the optional import above)

needs_numba = pytest.mark.skipif(_jit is None, reason="numba is not installed")

H, W = 96, 128


def _use(monkeypatch, backend: str, direct_max: int = 40) -> None:
    """Force the multigrid of `backend` ("numpy" or "jit") with several levels even at 96x128."""
    if backend == "jit" and _jit is None:
        pytest.skip("numba is not installed")
    cls = _jit.JitPoisson if backend == "jit" else _multigrid.MaskedPoisson
    monkeypatch.setattr(poisson, "_solver_class", lambda unknowns: cls)
    monkeypatch.setattr(_multigrid, "_DIRECT_MAX", direct_max)
    if _jit is not None:
        monkeypatch.setattr(_jit, "_DIRECT_MAX", direct_max)


@pytest.fixture(params=["numpy", "jit"])
def backend(request, monkeypatch) -> str:
    _use(monkeypatch, request.param)
    return request.param


@pytest.fixture(params=["lu", "numpy", "jit"])
def path(request, monkeypatch) -> str:
    if request.param != "lu":
        _use(monkeypatch, request.param)
    return request.param


@needs_numba
def test_large_regions_get_the_compiled_solver():
    assert poisson._solver_class(poisson.JIT_MIN) is _jit.JitPoisson  # numba is a dependency
    assert poisson._solver_class(poisson.JIT_MIN - 1) is _multigrid.MaskedPoisson


def test_without_numba_the_numpy_solver_is_used(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "numba", None)  # `import numba` raises ImportError
    for name in ("nst_engine.compositing._jit", "nst_engine.compositing._jit_kernels"):
        monkeypatch.delitem(sys.modules, name, raising=False)
        monkeypatch.delattr(name, raising=False)  # the package's attribute: `from . import _jit_kernels` finds it first
    assert poisson._solver_class(poisson.JIT_MIN) is _multigrid.MaskedPoisson
    poisson.prepare(poisson.JIT_MIN)  # starts a thread that finds no numba and stops quietly
    import threading

    for t in threading.enumerate():
        if t.name == "nst-jit-warm-up":
            t.join(timeout=60)  # done before the modules are put back
            assert not t.is_alive()


def _images(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    target = np.stack([0.5 + 0.3 * np.sin(xx / 9), 0.5 + 0.3 * np.cos(yy / 7), (xx + yy) / (H + W)], -1)
    source = np.stack([0.4 + 0.2 * np.cos(xx / 5), 0.5 + 0.2 * np.sin(yy / 11), 0.3 + 0.1 * rng.random((H, W))], -1)
    return source.astype(np.float64), target.astype(np.float64)


def _disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:H, 0:W]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r * r


def _masks() -> dict[str, np.ndarray]:
    holes = _disk(48, 64, 40) & ~_disk(48, 64, 12) & ~_disk(30, 40, 5)
    several = _disk(25, 25, 15) | _disk(70, 100, 20) | _disk(75, 30, 10)
    border = np.zeros((H, W), bool)
    border[:50, :70] = True  # top-left corner
    border[60:, 110:] = True  # bottom-right corner
    border[40:70, 0:5] = True  # a strip on the left edge
    return {"disk": _disk(48, 60, 35), "holes": holes, "several": several, "border": border}


def _edges(f: np.ndarray):
    """Yield (p-slice, q-slice) of every horizontal and vertical neighbour pair inside the image."""
    yield (slice(None), slice(None, -1)), (slice(None), slice(1, None))
    yield (slice(None, -1), slice(None)), (slice(1, None), slice(None))


def _div(pairs_value) -> np.ndarray:
    """sum over in-image neighbours q of value(p, q), from a function giving it per edge."""
    out = np.zeros((H, W, 3))
    for a, b in _edges(out):
        g = pairs_value(a, b)
        out[a] += g
        out[b] -= g
    return out


def _check_equation(out: np.ndarray, source: np.ndarray, target: np.ndarray, omega: np.ndarray, mode: str) -> float:
    """Max residual of eq. 7 of the paper on Omega: sum_q (f_p - f_q) = sum_q v_pq (in-image q)."""
    def guidance(a, b):
        v = source[a] - source[b]
        if mode == "mixed":
            dt = target[a] - target[b]
            v = np.where(np.abs(dt) > np.abs(v), dt, v)
        return v

    lhs = _div(lambda a, b: out[a] - out[b])
    rhs = _div(guidance)
    return float(np.abs(lhs - rhs)[omega].max())


@pytest.mark.parametrize("mode", ["seamless", "mixed"])
@pytest.mark.parametrize("name", ["disk", "holes", "several", "border"])
def test_equation_holds_inside_and_target_outside(path, mode, name):
    source, target = _images()
    omega = _masks()[name]
    out = poisson_blend(source, target, omega, mode=mode)
    assert out.dtype == target.dtype and out.shape == target.shape
    assert np.array_equal(out[~omega], target[~omega])  # bit for bit
    assert _check_equation(out, source, target, omega, mode) <= 1e-4


@pytest.mark.parametrize("mode", ["seamless", "mixed"])
def test_source_equal_to_target_plus_constant_gives_target(path, mode):
    _, target = _images()
    omega = _masks()["holes"]
    out = poisson_blend(target + 0.2, target, omega, mode=mode)
    assert np.abs(out - target).max() <= 1e-3


def test_multigrid_matches_direct(backend):
    source, target = _images(1)
    omega = _masks()["several"] | _masks()["border"]
    exact = poisson_blend(source, target, omega, solver="direct")
    report = poisson_blend_report(source, target, omega)
    assert all(it > 0 for it in report.iterations)  # really went through CG
    assert np.abs(report.image - exact).max() <= 1e-4


@pytest.mark.parametrize("hole", [(48, 64), (49, 65), (0, 0)])
def test_nearly_singular_region(backend, hole):
    """One Dirichlet pixel in the whole image: coarse grids must not lose it (or go singular)."""
    source, target = _images(3)
    omega = np.ones((H, W), bool)
    omega[hole] = False
    for mode in ("seamless", "mixed"):
        exact = poisson_blend(source, target, omega, mode=mode, solver="direct")
        assert np.abs(poisson_blend(source, target, omega, mode=mode) - exact).max() <= 1e-3


@needs_numba
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("name", ["disk", "holes", "several", "border"])
def test_compiled_mixed_right_hand_side_equals_numpy(monkeypatch, dtype, name):
    """Large mixed blends of 8/16-bit images build their right-hand side compiled, from the images
    themselves: the same bits as numpy's, also with an offset and a soft mask, and grey + alpha."""
    from nst_engine.compositing.poisson import _setup

    top = np.iinfo(dtype).max
    source, target = (np.rint(a * top).astype(dtype) for a in _images(4))
    grey_alpha = np.dstack([source[..., 0], np.full((H, W), top, dtype)]), target[..., :1]
    omega = _masks()[name]
    soft = np.where(omega, 0.5 + 0.5 * _disk(48, 64, 30), 0.0)
    cases = [(source, target, omega, (0, 0)), (source[5:90, 3:120], target, omega[5:90, 3:120], (7, -4)),
             (source, target, soft, (0, 0)), (*grey_alpha, omega, (0, 0))]
    for s, t, m, offset in cases:
        numpy_rhs = _setup(s, t, m, "mixed", offset, np.float32)
        monkeypatch.setattr(poisson, "JIT_MIN", 0)
        compiled = _setup(s, t, m, "mixed", offset, np.float32)
        monkeypatch.setattr(poisson, "JIT_MIN", 10**12)
        assert numpy_rhs._f0 is not None and compiled._f0 is None  # no float copies of the images
        assert np.array_equal(compiled.r, numpy_rhs.r)
    # whole blends, the same solver either way (hard masks take `_finish`'s path for f0 = source)
    monkeypatch.setattr(poisson, "_solver_class", lambda unknowns: _multigrid.MaskedPoisson)
    for m in (omega, soft):
        slow = poisson_blend(source, target, m, mode="mixed")
        with monkeypatch.context() as mp:
            mp.setattr(poisson, "JIT_MIN", 0)
            fast = poisson_blend(source, target, m, mode="mixed")
        # the same solution; rounding f = source + x directly may land one level apart
        assert np.abs(fast.astype(np.int64) - slow).max() <= 1 and np.mean(fast != slow) < 0.01


def test_threads_do_not_change_the_result(monkeypatch, backend):
    monkeypatch.setattr(_multigrid, "_PARALLEL_MIN", 1)  # split even these small levels over threads
    if _jit is not None:
        monkeypatch.setattr(_jit, "_PARALLEL_MIN", 1)
    source, target = _images(2)
    omega = _masks()["holes"]
    one = poisson_blend_report(source, target, omega, threads=1)
    for threads in (2, 3):
        other = poisson_blend_report(source, target, omega, threads=threads)
        assert np.array_equal(other.image, one.image) and other.iterations == one.iterations


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16, np.float32, np.float16])
def test_dtypes_round_trip(dtype):
    source, target = _images()
    omega = _masks()["disk"]
    exact = poisson_blend(source, target, omega)
    if np.dtype(dtype).kind == "u":
        top = np.iinfo(dtype).max
        to = lambda a: np.round(a * top).astype(dtype)  # noqa: E731
        out = poisson_blend(to(source), to(target), omega)
        assert out.dtype == dtype
        assert np.array_equal(out[~omega], to(target)[~omega])
        # the float solution of the same (quantised) inputs, rounded: half a level off, or one
        # where the float32 solve lands on the other side of a rounding threshold
        exact_q = poisson_blend(to(source) / top, to(target) / top, omega)
        err = np.abs(out.astype(np.float64) / top - exact_q)
        assert err.max() <= 1.0 / top + 1e-9 and err.mean() <= 0.3 / top
    else:
        out = poisson_blend(source.astype(dtype), target.astype(dtype), omega)
        assert out.dtype == dtype
        assert np.array_equal(out[~omega], target.astype(dtype)[~omega])
        assert np.abs(out.astype(np.float64) - exact).max() <= (2e-3 if dtype == np.float16 else 1e-5)


def test_uint8_clips_and_rounds():
    target = np.full((32, 32, 3), 250, np.uint8)
    source = np.zeros((32, 32, 3), np.uint8)
    source[12:20, 12:20] = 255  # a bright square on black: the solution overshoots 255
    omega = np.zeros((32, 32), bool)
    omega[4:28, 4:28] = True
    exact = poisson_blend(source / 255.0, target / 255.0, omega)
    assert exact.max() > 1.5  # floats are not clipped
    out = poisson_blend(source, target, omega)
    assert out.dtype == np.uint8
    assert np.abs(out.astype(np.float64) - np.clip(np.rint(exact * 255), 0, 255)).max() <= 1


def test_rgba_keeps_target_alpha_and_blends_colour():
    source, target = _images()
    omega = _masks()["disk"]
    alpha_t = np.linspace(0, 1, H * W).reshape(H, W, 1)
    rgba_t = np.concatenate([target, alpha_t], -1)
    rgba_s = np.concatenate([source, np.zeros((H, W, 1))], -1)  # source alpha is ignored
    out = poisson_blend(rgba_s, rgba_t, omega)
    assert out.shape == (H, W, 4)
    assert np.array_equal(out[:, :, 3], rgba_t[:, :, 3])
    np.testing.assert_allclose(out[:, :, :3], poisson_blend(source, target, omega), atol=1e-12)
    # RGB source into an RGBA target is fine too
    np.testing.assert_allclose(poisson_blend(source, rgba_t, omega), out, atol=1e-12)


def test_grey_images():
    source, target = _images()
    omega = _masks()["holes"]
    out = poisson_blend(source[:, :, 0], target[:, :, 0], omega)
    assert out.shape == (H, W)
    np.testing.assert_allclose(out, poisson_blend(source, target, omega)[:, :, 0], atol=1e-12)


def test_soft_mask_alpha_blends_the_solution():
    source, target = _images()
    yy, xx = np.mgrid[0:H, 0:W]
    soft = np.clip((34 - np.hypot(yy - 48, xx - 60)) / 8, 0, 1)  # 8 px feathered disk
    hard = poisson_blend(source, target, soft > 0)
    out = poisson_blend(source, target, soft)
    expect = soft[:, :, None] * hard + (1 - soft[:, :, None]) * target
    np.testing.assert_allclose(out, expect, atol=1e-6)  # the solve runs in float32
    assert np.array_equal(out[soft == 0], target[soft == 0])
    # uint8 masks are read as 0..1
    np.testing.assert_allclose(poisson_blend(source, target, (soft * 255).round().astype(np.uint8)),
                               poisson_blend(source, target, (soft * 255).round() / 255), atol=1e-12)


def test_offset_places_a_smaller_source():
    source, target = _images()
    small = source[10:60, 20:90]
    omega_small = _disk(25, 35, 20)[:50, :70]
    # the same blend with the source pasted into a target-sized canvas
    canvas = np.zeros_like(source)
    canvas[30:80, 40:110] = small
    big_mask = np.zeros((H, W), bool)
    big_mask[30:80, 40:110] = omega_small
    expect = poisson_blend(canvas, target, big_mask)
    out = poisson_blend(small, target, omega_small, offset=(40, 30))
    np.testing.assert_allclose(out, expect, atol=1e-12)


def test_offset_partly_outside_is_clipped(path):
    source, target = _images()
    small = source[:60, :60]
    omega = np.ones((60, 60), bool)
    out = poisson_blend(small, target, omega, offset=(-20, 50))  # 20 px off the left, 14 off the bottom
    inside = np.zeros((H, W), bool)
    inside[50:96, 0:40] = True
    assert np.array_equal(out[~inside], target[~inside])
    # same as blending the part of the source that lands in the target
    np.testing.assert_allclose(out, poisson_blend(small[:46, 20:], target, omega[:46, 20:], offset=(0, 50)), atol=1e-12)
    # the region touches the left and bottom image edges: Neumann there, the equation holds
    # (with the source's edge replicated beyond it: no gradient across the source's own edge)
    canvas = np.pad(small[:46, 20:], ((50, 0), (0, W - 40), (0, 0)), mode="edge")
    assert _check_equation(out, canvas, target, inside, "seamless") <= 1e-4


def test_mask_touching_the_source_edge_adds_no_gradient_across_it():
    _, target = _images()
    flat = np.full((20, 20, 3), 0.7)
    out = poisson_blend(flat, target, np.ones((20, 20), bool), offset=(50, 40))
    # a flat source has no gradient anywhere: the solution is harmonic with the target's boundary
    omega = np.zeros((H, W), bool)
    omega[40:60, 50:70] = True
    assert _check_equation(out, np.zeros_like(target), target, omega, "seamless") <= 1e-4


@pytest.mark.parametrize("mode", ["seamless", "mixed"])
def test_mask_covering_everything_keeps_target_mean(path, mode):
    source, target = _images()
    with pytest.warns(NoBoundaryWarning):
        out = poisson_blend(source, target, np.ones((H, W), bool), mode=mode)
    np.testing.assert_allclose(out.mean(axis=(0, 1)), target.mean(axis=(0, 1)), atol=1e-6)
    if mode == "seamless":  # the source shifted by a constant per channel
        expect = source - source.mean(axis=(0, 1)) + target.mean(axis=(0, 1))
        assert np.abs(out - expect).max() <= 1e-4
    else:
        exact = poisson_blend_report(source, target, np.ones((H, W), bool), mode=mode, solver="direct")
        assert exact.note and np.abs(out - exact.image).max() <= 1e-4
    assert _check_equation(out, source, target, np.ones((H, W), bool), mode) <= 1e-4


def test_report_fields():
    source, target = _images()
    omega = _masks()["disk"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no warning unless the mask covers everything
        report = poisson_blend_report(source, target, omega)
    x0, y0, x1, y1 = report.bbox
    rows, cols = np.flatnonzero(omega.any(1)), np.flatnonzero(omega.any(0))
    assert (x0, y0, x1, y1) == (cols[0] - 1, rows[0] - 1, cols[-1] + 2, rows[-1] + 2)
    assert report.unknowns == omega.sum() and report.note == ""


@pytest.mark.parametrize(
    "kwargs, argument",
    [
        ({"mask": np.zeros((H, W), bool)}, "mask"),
        ({"mask": np.ones((H, W + 1), bool)}, "mask"),
        ({"mask": np.full((H, W), 1.5)}, "mask"),
        ({"mask": np.full((H, W), np.nan)}, "mask"),
        ({"mask": np.ones((H, W), np.int32)}, "mask"),
        ({"offset": (W, 0)}, "offset"),
        ({"offset": (0, -H)}, "offset"),
        ({"offset": (1.5, 0)}, "offset"),
        ({"offset": "0,0"}, "offset"),
        ({"mode": "normal"}, "mode"),
        ({"solver": "fft"}, "solver"),
        ({"rtol": 0.0}, "rtol"),
        ({"source": np.zeros((H, W), np.float32)}, "source"),  # grey into RGB
        ({"source": np.zeros((H, W, 3), np.int64)}, "source"),
        ({"target": np.zeros((H, W, 5))}, "target"),
        ({"target": np.full((H, W, 3), np.inf)}, "target"),
    ],
)
def test_bad_input_raises_input_error(kwargs, argument):
    source, target = _images()
    args = {"source": source, "target": target, "mask": _masks()["disk"]}
    args.update(kwargs)
    with pytest.raises(InputError) as err:
        poisson_blend(args.pop("source"), args.pop("target"), args.pop("mask"), **args)
    assert err.value.argument == argument


def test_mask_selecting_nothing_inside_the_target():
    source, target = _images()
    mask = np.zeros((H, W), bool)
    mask[:, :10] = True
    with pytest.raises(InputError, match="nothing inside the target"):
        poisson_blend(source, target, mask, offset=(-20, 0))


@needs_numba
def test_prepare_loads_the_kernels_in_the_background_only_for_large_blends(monkeypatch):
    import threading

    calls: list[str] = []
    monkeypatch.setattr(_jit, "warm_up", lambda: calls.append(threading.current_thread().name))
    poisson.prepare(poisson.JIT_MIN - 1)
    poisson.prepare(poisson.JIT_MIN)
    for t in threading.enumerate():
        if t.name == "nst-jit-warm-up":
            t.join(timeout=60)
    assert calls == ["nst-jit-warm-up"]  # once, for the large blend, not in the caller's thread


@needs_numba
def test_warm_up_runs_every_kernel():
    _jit.warm_up()  # the tiny problem's shapes and types must be accepted by each kernel
