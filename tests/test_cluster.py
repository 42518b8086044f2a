"""`nst video --ray` (nst_engine.cluster): chunks of frames on a local Ray with 2 CPUs, against the local run.

Needs ray (the cluster extra); skipped without it, except the check that nothing else imports ray.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nst_engine.cli import main
from nst_engine.cluster import Chunk, plan
from nst_engine.video_io import open_clip

W, H, N = 64, 48, 12
CHUNKS = ["--chunk-frames", "5", "--chunk-overlap", "2"]  # chunks 0:5, 5:10 (from 3), 10:12 (from 8)
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def ray() -> Any:
    pytest.importorskip("cv2", reason="optical flow (--consistency temporal) needs opencv-python-headless")
    return pytest.importorskip("ray", reason="--ray needs Ray: pip install -e '.[cluster]'")


@pytest.fixture(scope="module")
def src(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 frames (64x48) of a camera panning right over a photo, 3 px a frame."""
    from skimage import data
    from skimage.transform import resize

    photo = (resize(data.astronaut(), (H, W + 3 * N), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
    folder = tmp_path_factory.mktemp("pan") / "in"
    folder.mkdir()
    for t in range(N):
        Image.fromarray(photo[:, 3 * t: 3 * t + W].copy()).save(folder / f"f{t:02d}.png")
    return folder


def frames(path: Path) -> np.ndarray:
    return (np.asarray(list(open_clip(path).frames())) * 255 + 0.5).astype(np.int16)


def video(src: Path, out: Path, *extra: str) -> np.ndarray:
    assert main(["video", str(src), "--model", "starry-night", "-q", *extra, "-o", str(out)]) == 0
    return frames(out)


@pytest.fixture(scope="module")
def local(ray: Any, src: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """The local runs (no --ray), temporal and frame by frame."""
    tmp = tmp_path_factory.mktemp("local")
    return {c: video(src, tmp / c, "--consistency", c) for c in ("temporal", "none")}


@pytest.fixture(scope="module")
def cluster(ray: Any) -> Any:
    """A local Ray with 2 CPUs for the tests below (one start: each takes 4-25 s on 2 busy cores), which
    `nst video --ray` uses, and leaves, when it finds it; the test before them starts its own."""
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR")
    yield ray
    ray.shutdown()


def test_plan_cuts_chunks_with_an_overlap_never_before_the_first_frame() -> None:
    assert plan(0, 12, 5, 2) == [Chunk(0, 0, 5), Chunk(3, 5, 10), Chunk(8, 10, 12)]
    assert plan(6, 12, 5, 2, floor=0) == [Chunk(4, 6, 11), Chunk(9, 11, 12)]  # resumed at frame 6
    assert plan(3, 9, 4, 9, floor=2) == [Chunk(2, 3, 7), Chunk(2, 7, 9)]
    assert plan(5, 5, 4, 1) == []


def test_ray_local_matches_the_local_run_within_tolerance_at_the_joins(
        ray: Any, src: Path, local: dict[str, np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert not ray.is_initialized()
    code = main(["video", str(src), "--model", "starry-night", "--ray", "local:2", *CHUNKS, "-o", str(tmp_path / "r")])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "a local Ray, 2 CPUs on 1 node; 3 chunks of ≤5 frames, 2 before each" in err, err
    assert "frame 5/12" in err and "chunk 1/3" in err and "chunk 3/3" in err and f"wrote {tmp_path / 'r'}" in err
    assert not ray.is_initialized()  # the Ray it started is shut down
    assert not (tmp_path / "r.nst-frames").exists()
    got, ref = frames(tmp_path / "r"), local["temporal"]
    assert got.shape == ref.shape == (N, H, W, 3)
    diff = np.abs(got - ref).mean(axis=(1, 2, 3))
    np.testing.assert_array_equal(got[:5], ref[:5])  # the first chunk is the local run's first frames
    # A chunk starts 2 frames early from a cold temporal state: at its first frame the outputs differ
    # by ~0.5² of a cold start (measured 1.4/255; 6.5 with no overlap), then half as much each frame.
    for join in (5, 10):
        assert 0 < diff[join] <= 3, diff
    assert diff[5] > diff[6] > diff[7] > diff[8] > diff[9] and diff[10] > diff[11]
    assert np.abs(got[9] - ref[9]).max() <= 1  # 4 frames after the join: within 1/255


def test_the_overlap_is_what_joins_the_chunks_and_frame_by_frame_is_exact(
        cluster: Any, src: Path, local: dict[str, np.ndarray], tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["video", str(src), "--model", "starry-night", "--ray", "local", *CHUNKS, "-o", str(tmp_path / "r")])
    assert code == 0 and "the Ray this process is connected to, 2 CPUs" in capsys.readouterr().err
    assert cluster.is_initialized()  # not ours to shut down
    joins = np.abs(frames(tmp_path / "r") - local["temporal"]).mean(axis=(1, 2, 3))[[5, 10]]
    cold = video(src, tmp_path / "cold", "--ray", "local", "--chunk-frames", "5", "--chunk-overlap", "0")
    cold_joins = np.abs(cold - local["temporal"]).mean(axis=(1, 2, 3))[[5, 10]]
    assert (cold_joins > 3 * joins).all() and (cold_joins > 4).all(), (cold_joins, joins)  # measured 6.5 against 1.4
    none = video(src, tmp_path / "none", "--consistency", "none", "--ray", "local", *CHUNKS)
    np.testing.assert_array_equal(none, local["none"])


def test_iterative_runs_on_ray_frame_by_frame_only(cluster: Any, src: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    base = ["video", str(src), "style:swirls", "--size", "32", "--steps", "3", "--precision", "fp32", "--frames", "0:4",
            "-q", "--consistency", "none"]
    code = main([*base[:-2], "--ray", "local", "-o", str(tmp_path / "t")])
    assert code == 2 and "--ray='local': with STYLE images needs --consistency none" in capsys.readouterr().err
    assert main([*base, "-o", str(tmp_path / "l")]) == 0
    assert main([*base, "--ray", "local", "--chunk-frames", "3", "-o", str(tmp_path / "r")]) == 0
    # the same optimizer on each frame; only the threads differ (a worker runs one), so the float sums may
    diff = np.abs(frames(tmp_path / "r") - frames(tmp_path / "l"))
    assert diff.shape == (4, 24, 32, 3) and diff.mean() <= 1.0, diff.mean()


def test_ray_resume_continues_after_the_last_saved_frame(
        cluster: Any, src: Path, local: dict[str, np.ndarray], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli.video_work import WorkFolder

    whole = video(src, tmp_path / "whole", "--ray", "local", *CHUNKS)
    real, saved = WorkFolder.save, []

    def save(self: WorkFolder, i: int, out: np.ndarray) -> None:
        if len(saved) == 6:
            raise KeyboardInterrupt
        saved.append(i)
        real(self, i, out)

    monkeypatch.setattr(WorkFolder, "save", save)
    argv = ["video", str(src), "--model", "starry-night", "--ray", "local", *CHUNKS, "-o", str(tmp_path / "o")]
    assert main(argv) == 130 and "6 of 12 frames kept" in capsys.readouterr().err
    monkeypatch.setattr(WorkFolder, "save", real)
    assert main([*argv, "--resume", "-q"]) == 0
    got = frames(tmp_path / "o")
    np.testing.assert_array_equal(got[:6], whole[:6])  # kept as they were
    assert np.abs(got - local["temporal"]).mean(axis=(1, 2, 3)).max() <= 3  # frame 6 is a join now


@pytest.mark.parametrize("extra, needle", [
    (["--chunk-frames", "5"], "--chunk-frames=5: applies with --ray only"),
    (["--chunk-overlap", "2"], "--chunk-overlap=2: applies with --ray only"),
    (["--ray", "local", "--chunk-frames", "0"], "--chunk-frames=0: must be between 1 and 1000000"),
    (["--ray", "local:0"], "--ray='local:0': expected auto, local, local:N"),
])
def test_bad_cluster_arguments_exit_2(src: Path, tmp_path: Path, extra: list[str], needle: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["video", str(src), "--model", "starry-night", *extra, "-o", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and needle in err, err


def test_nothing_but_the_cluster_module_imports_ray() -> None:
    importers = sorted(str(p.relative_to(ROOT)) for folder in ("nst_engine", "gimp_plugin", "export")
                       for p in (ROOT / folder).rglob("*.py")
                       if any(line.strip().startswith(("import ray", "from ray")) for line in p.read_text().splitlines()))
    assert importers == ["nst_engine/cluster.py"]
    code = ("import sys, contextlib, io\n"
            "from nst_engine.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    assert main(['video', '--help']) == 0\n"
            "import nst_engine.cluster, nst_engine.cli.video\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)
