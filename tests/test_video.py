"""`nst video` and its frame I/O (nst_engine.video_io): folders, GIF/APNG/WebP, MP4 with audio, resume."""
from __future__ import annotations

import os
import re
import signal
import subprocess
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from nst_engine.cli import main
from nst_engine.errors import InputError
from nst_engine.video_io import Timing, open_clip, write_clip

W, H = 64, 48


@pytest.fixture(scope="module")
def pan() -> list[np.ndarray]:
    """4 frames (64x48 uint8) of a camera panning right over a photo, 3 px a frame."""
    from skimage import data
    from skimage.transform import resize

    photo = (resize(data.astronaut(), (H, 96), anti_aliasing=True) * 255 + 0.5).astype(np.uint8)
    return [photo[:, 3 * t: 3 * t + W].copy() for t in range(4)]


@pytest.fixture
def cv2() -> Any:
    return pytest.importorskip("cv2", reason="optical flow (--consistency temporal) needs opencv-python-headless")


@pytest.fixture
def ffmpeg() -> str:
    iio = pytest.importorskip("imageio_ffmpeg", reason="video files need imageio-ffmpeg (the video extra)")
    return str(iio.get_ffmpeg_exe())


def folder_of(frames: list[np.ndarray], path: Path, pattern: str = "frame{}.png") -> Path:
    path.mkdir()
    for i, f in enumerate(frames):
        Image.fromarray(f).save(path / pattern.format(i + 1))
    return path


def u8(frames: Any) -> np.ndarray:
    return (np.asarray(list(frames)) * 255 + 0.5).astype(np.uint8)


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    return code, capsys.readouterr().err


def probe(ffmpeg: str, path: Path) -> tuple[float, list[str]]:
    """(duration in s, stream lines) from ffmpeg's own report."""
    err = subprocess.run([ffmpeg, "-hide_banner", "-i", str(path)], capture_output=True, text=True).stderr
    hh, mm, ss = re.search(r"Duration: (\d+):(\d+):([\d.]+)", err).groups()  # type: ignore[union-attr]
    return int(hh) * 3600 + int(mm) * 60 + float(ss), [ln.strip() for ln in err.splitlines() if "Stream #" in ln]


# --- frame I/O ---------------------------------------------------------------------------------


def test_folder_round_trip_is_exact_and_natural_order(pan: list[np.ndarray], tmp_path: Path) -> None:
    src = folder_of(pan, tmp_path / "in")  # frame1 … frame4
    os.replace(src / "frame4.png", src / "frame10.png")
    Image.fromarray(pan[0]).save(src / "frame2b.png")  # after frame2, before frame3
    clip = open_clip(src)
    assert (clip.kind, clip.count, clip.size) == ("folder", 5, (H, W))
    assert [f.name for f in clip.files] == ["frame1.png", "frame2.png", "frame2b.png", "frame3.png", "frame10.png"]
    got = u8(clip.frames())
    np.testing.assert_array_equal(got, np.stack([pan[0], pan[1], pan[0], pan[2], pan[3]]))
    out = write_clip(tmp_path / "out", got, clip.timing(0, 5))
    assert sorted(os.listdir(out)) == [f"{i:06d}.png" for i in range(5)]
    np.testing.assert_array_equal(u8(open_clip(out).frames(1, 3)), got[1:3])
    write_clip(out, got[:2], clip.timing(0, 2))  # an existing frames folder is replaced whole
    assert sorted(os.listdir(out)) == ["000000.png", "000001.png"]
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []
    Image.fromarray(pan[0][:10]).save(src / "frame11.png")
    with pytest.raises(InputError, match="all frames must be one size"):
        list(open_clip(src).frames())


@pytest.mark.parametrize("suffix", [".gif", ".png", ".webp"])
def test_animation_keeps_durations_and_loop(pan: list[np.ndarray], tmp_path: Path, suffix: str) -> None:
    durations = (100, 250, 40, 70)
    out = write_clip(tmp_path / f"a{suffix}", pan, Timing(Fraction(10), durations, 3))
    clip = open_clip(out)
    assert (clip.kind, clip.count, clip.size, clip.durations, clip.loop) == ("animation", 4, (H, W), durations, 3)
    got = u8(clip.frames()).astype(int)
    err = np.abs(got - np.stack(pan)).mean()
    assert err == 0 if suffix == ".png" else err < 6, err  # GIF: a palette, WebP: lossy
    t = clip.timing(1, 3)
    assert t.durations == (250, 40) and t.fps == Fraction(2000, 290)
    assert clip.timing(0, 4, fps=20).durations == (50,) * 4


def test_mp4_keeps_frame_count_rate_and_size(pan: list[np.ndarray], tmp_path: Path, ffmpeg: str) -> None:
    for size, fps in (((H, W), Fraction(30000, 1001)), ((47, 63), Fraction(12))):  # odd sides: 4:4:4
        frames = [f[: size[0], : size[1]] for f in pan] * 2
        out = write_clip(tmp_path / f"v{size[1]}.mp4", frames, Timing(fps, (33,) * 8))
        clip = open_clip(out)
        assert (clip.kind, clip.count, clip.size, clip.audio) == ("video", 8, size, False)
        assert clip.timing(0, 8).fps == fps
        got = u8(clip.frames()).astype(int)
        err = np.abs(got - np.stack(frames)).mean()
        assert err < 8, err  # H.264 at 64x48
        nearest = [int(np.argmin([np.abs(g - f).mean() for f in frames[:4]])) for g in got]
        assert nearest == [0, 1, 2, 3] * 2  # each frame in its place
        assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_not_a_video_is_an_input_error(tmp_path: Path, ffmpeg: str) -> None:
    bad = tmp_path / "x.mp4"
    bad.write_text("not a video")
    with pytest.raises(InputError, match="not a video") as e:
        open_clip(bad)
    assert e.value.argument == "INPUT"


# --- nst video -----------------------------------------------------------------------------------


def test_model_video_is_the_engine_s_temporal_output(pan: list[np.ndarray], tmp_path: Path, cv2: Any,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.temporal import stylize_frames

    src = folder_of(pan, tmp_path / "in")
    code, err = run(["video", str(src), "--model", "starry-night", "-o", str(tmp_path / "t")], capsys)
    assert code == 0, err
    assert "frame 4/4" in err and f"wrote {tmp_path / 't'} ({W}x{H}, 4 frames" in err
    assert not (tmp_path / f"t{'.nst-frames'}").exists()
    temporal = u8(open_clip(tmp_path / "t").frames())
    expected = u8(stylize_frames([f.astype(np.float32) / 255 for f in pan], "starry-night", tile=0))
    assert np.abs(temporal.astype(int) - expected).max() <= 1
    assert main(["video", str(src), "--model", "starry-night", "--consistency", "none", "-q",
                 "-o", str(tmp_path / "n")]) == 0
    none = u8(open_clip(tmp_path / "n").frames()).astype(int)
    assert np.abs(none - np.stack(pan)).mean() > 20  # stylized, not copied
    np.testing.assert_array_equal(temporal[0], none[0])  # nothing to blend the first frame with
    assert all(np.abs(temporal[t] - none[t]).mean() > 1 for t in (1, 2, 3))
    # --frames 1:3: two frames, the first painted alone
    assert main(["video", str(src), "--model", "starry-night", "--frames", "1:3", "-q",
                 "-o", str(tmp_path / "f.gif")]) == 0
    clip = open_clip(tmp_path / "f.gif")
    assert clip.count == 2 and clip.durations == (40, 40)  # a folder plays at 25 fps
    assert np.abs(u8(clip.frames(0, 1))[0].astype(int) - none[1]).mean() < 6  # (GIF palette)


def test_model_video_with_refine_steps(pan: list[np.ndarray], tmp_path: Path, cv2: Any) -> None:
    """--refine-steps: the engine's `stylize_frames(..., refine_steps=K)` with the model's own loss."""
    from nst_engine.models import load_model
    from nst_engine.temporal import stylize_frames

    src = folder_of(pan[:3], tmp_path / "in")
    assert main(["video", str(src), "--model", "starry-night", "--refine-steps", "2", "-q",
                 "-o", str(tmp_path / "r")]) == 0
    refined = u8(open_clip(tmp_path / "r").frames()).astype(int)
    frames = [f.astype(np.float32) / 255 for f in pan[:3]]
    expected = u8(stylize_frames(frames, "starry-night", tile=0, refine_steps=2,
                                 refine_loss=load_model("starry-night", "cpu").training)).astype(int)
    assert np.abs(refined - expected).max() <= 1
    blended = u8(stylize_frames(frames, "starry-night", tile=0)).astype(int)
    np.testing.assert_array_equal(refined[0], blended[0])
    assert np.abs(refined[2] - blended[2]).mean() > 1  # the steps changed the later frames


def test_resume_after_interrupt_gives_the_uninterrupted_frames(pan: list[np.ndarray], tmp_path: Path, cv2: Any,
                                                                monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine import models

    src = folder_of(pan, tmp_path / "in")
    base = ["video", str(src), "--model", "starry-night", "-q"]
    assert main([*base, "-o", str(tmp_path / "whole")]) == 0
    whole = u8(open_clip(tmp_path / "whole").frames())

    real = models.stylize_model
    calls: list[int] = []

    def failing(stop_at: int, how: str) -> Any:
        def fn(*a: Any, **k: Any) -> np.ndarray:
            calls.append(1)
            if len(calls) == stop_at:
                if how == "sigterm":
                    os.kill(os.getpid(), signal.SIGTERM)
                raise KeyboardInterrupt
            return real(*a, **k)
        return fn

    out = tmp_path / "o.mp4"
    work = tmp_path / "o.mp4.nst-frames"
    monkeypatch.setattr(models, "stylize_model", failing(3, "ctrl-c"))
    code, err = run([*base, "-o", str(tmp_path / "o")], capsys)
    assert code == 130 and "2 of 4 frames kept" in err and "--resume" in err, err
    assert not (tmp_path / "o").exists() and sorted(p.name for p in (tmp_path / "o.nst-frames").glob("*.png")) == [
        "000000.png", "000001.png"]
    assert (tmp_path / "o.nst-frames" / "manifest.json").is_file()
    # without --resume the kept frames are not thrown away; other settings are refused
    code, err = run([*base, "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "--output=" in err and "--resume" in err, err
    code, err = run([*base, "--blend", "0.7", "--resume", "-o", str(tmp_path / "o")], capsys)
    assert code == 2 and "--resume=" in err and "blend 0.5 (now 0.7)" in err, err
    monkeypatch.setattr(models, "stylize_model", failing(0, ""))
    calls.clear()
    assert main([*base, "--resume", "-o", str(tmp_path / "o")]) == 0
    assert len(calls) == 2  # frames 2 and 3 only
    np.testing.assert_array_equal(u8(open_clip(tmp_path / "o").frames()), whole)
    assert not (tmp_path / "o.nst-frames").exists()
    # SIGTERM stops like Ctrl-C; interrupted during the first frame, nothing is kept
    calls.clear()
    handler = signal.getsignal(signal.SIGTERM)
    monkeypatch.setattr(models, "stylize_model", failing(1, "sigterm"))
    code, err = run([*base, "-o", str(out)], capsys)
    assert code == 130 and "nothing written" in err and not work.exists() and not out.exists(), err
    assert signal.getsignal(signal.SIGTERM) == handler  # put back


def test_audio_is_copied_and_trimmed_to_the_frames(tmp_path: Path, ffmpeg: str, cv2: Any,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    src = tmp_path / "in.mp4"
    subprocess.run([ffmpeg, "-y", "-v", "error", "-f", "lavfi", "-i", f"testsrc=size={W}x{H}:rate=10", "-f", "lavfi",
                    "-i", "sine=frequency=440:sample_rate=22050", "-t", "1", "-c:v", "libx264", "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-shortest", str(src)], check=True)
    assert open_clip(src).audio
    code, err = run(["video", str(src), "--model", "starry-night", "--frames", "2:7", "-o", str(tmp_path / "o.mp4")],
                    capsys)
    assert code == 0 and "audio copied" in err, err
    clip = open_clip(tmp_path / "o.mp4")
    assert (clip.count, clip.size, clip.fps, clip.audio) == (5, (H, W), 10.0, True)
    seconds, streams = probe(ffmpeg, tmp_path / "o.mp4")
    assert abs(seconds - 0.5) < 0.1 and any("Audio: aac" in s for s in streams), (seconds, streams)
    # no audio in, none out; a GIF gets none
    assert main(["video", str(tmp_path / "o.mp4"), "--model", "starry-night", "--consistency", "none", "-q",
                 "-o", str(tmp_path / "o.gif")]) == 0
    assert open_clip(tmp_path / "o.gif").count == 5


@pytest.mark.parametrize("extra, needle", [
    (["--frames", "3:2"], "--frames='3:2'"),
    (["--frames", "0:9"], "--frames='0:9'"),
    (["--frames", "x"], "--frames='x'"),
    (["--blend", "1.5"], "--blend=1.5"),
    (["--next-steps", "5"], "--next-steps=5"),
    (["--temporal-weight", "2"], "--temporal-weight=2.0"),
    (["--refine-steps", "-1"], "--refine-steps=-1"),
    (["--steps", "5"], "--steps=5"),
    (["--fps", "0"], "--fps=0.0"),
    (["style:swirls"], "--model='starry-night': give STYLE images or --model, not both"),
])
def test_bad_arguments_exit_2_naming_the_argument(pan: list[np.ndarray], tmp_path: Path, extra: list[str],
                                                  needle: str, capsys: pytest.CaptureFixture[str]) -> None:
    src = folder_of(pan, tmp_path / "in")
    code, err = run(["video", str(src), *extra, "--model", "starry-night", "-o", str(tmp_path / "o.gif")], capsys)
    assert code == 2 and needle in err and "Traceback" not in err, err
    assert not (tmp_path / "o.gif").exists() and not (tmp_path / "o.gif.nst-frames").exists()


def test_bad_files_exit_2(pan: list[np.ndarray], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    src = folder_of(pan, tmp_path / "in")
    (tmp_path / "empty").mkdir()
    (tmp_path / "text.gif").write_text("no")
    for argv, needle in (
        ([str(tmp_path / "missing.mp4"), "--model", "starry-night", "-o", str(tmp_path / "o.gif")], "INPUT="),
        ([str(tmp_path / "empty"), "--model", "starry-night", "-o", str(tmp_path / "o.gif")], "folder has no images"),
        ([str(tmp_path / "text.gif"), "--model", "starry-night", "-o", str(tmp_path / "o.gif")], "INPUT="),
        ([str(src), "--model", "starry-night", "-o", str(tmp_path / "o.xyz")], "--output="),
        ([str(src), "--model", "starry-night", "-o", str(tmp_path / "no" / "o.gif")], "does not exist"),
        ([str(src), "--model", "starry-night", "-o", str(src)], "folder holds other files"),
        ([str(src), "-o", str(tmp_path / "o.gif")], "STYLE=''"),
    ):
        code, err = run(["video", *argv], capsys)
        assert code == 2 and needle in err, (argv, err)


@pytest.mark.slow
def test_iterative_frames_start_from_the_warped_previous_result(pan: list[np.ndarray], tmp_path: Path, cv2: Any,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from nst_engine import api
    from nst_engine.image import read_image

    seen: list[tuple[str, int, tuple[int, ...], np.ndarray | None]] = []
    temporal: list[Any] = []
    real = api.stylize

    def spy(content: np.ndarray, styles: Any, config: Any, **kw: Any) -> Any:
        init = read_image(config.init) if config.init not in ("content", "noise", "style") else None
        seen.append((config.init, config.steps, config.scales, init))
        temporal.append(kw.get("temporal"))
        return real(content, styles, config, **kw)

    monkeypatch.setattr(api, "stylize", spy)
    src = folder_of(pan[:3], tmp_path / "in")
    assert main(["video", str(src), "style:swirls", "--size", "32", "--steps", "3", "--next-steps", "1", "-q",
                 "--precision", "fp32", "--temporal-weight", "3", "-o", str(tmp_path / "o")]) == 0
    assert [(s[0], s[1], s[2]) for s in seen[:1]] == [("content", 3, ())]
    # the temporal loss (Ruder et al.) from frame 1 on: the warped previous result, its mask, the weight
    assert temporal[0] is None and all(t is not None and t.weight == 3.0 for t in temporal[1:])
    assert temporal[1].warped.shape == (24, 32, 3) and temporal[1].mask.shape == (24, 32)  # the size painted
    assert 0.5 < float(temporal[1].mask.mean()) <= 1.0  # most pixels were visible in the frame before
    assert [(Path(s[0]).name, s[1], s[2]) for s in seen[1:]] == [("init.tif", 1, (32,))] * 2
    outs = u8(open_clip(tmp_path / "o").frames())
    assert outs.shape == (3, 24, 32, 3)
    init1 = seen[1][3]
    assert init1 is not None
    # frame 1's start image is frame 0's result moved left by the pan (1.5 px at this size)
    assert np.abs(init1[4:-4, 4:-8] * 255 - outs[0][4:-4, 6:-6]).mean() < np.abs(
        init1[4:-4, 4:-8] * 255 - outs[0][4:-4, 4:-8]).mean()
