"""Video with temporal consistency (nst_engine.temporal): flow, warping, occlusions, the blend, a model run."""
from __future__ import annotations

import numpy as np
import pytest

cv2 = pytest.importorskip("cv2")

from nst_engine.errors import Cancelled, InputError  # noqa: E402
from nst_engine.progress import Progress  # noqa: E402
from nst_engine.temporal import (  # noqa: E402
    PRESETS, TemporalStylizer, occlusion_mask, optical_flow, soft_mask, stylize_frames, temporal_blend, warp,
)


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    from skimage import data
    from skimage.transform import resize

    return resize(data.astronaut(), (96, 96), anti_aliasing=True).astype(np.float32)


def pan(photo: np.ndarray, n: int, step: int, width: int = 80) -> list[np.ndarray]:
    """Frames of a camera panning right: frame t shows photo[:, t*step : t*step + width]."""
    assert (n - 1) * step + width <= photo.shape[1]
    return [photo[:, t * step : t * step + width].copy() for t in range(n)]


def test_warp_known_shift_recovers_the_shifted_image(photo: np.ndarray) -> None:
    # b(x) = x + 3 px right, 2 px down: warp(photo, b)(y, x) = photo(y + 2, x + 3).
    flow = np.zeros(photo.shape[:2] + (2,), np.float32)
    flow[..., 0], flow[..., 1] = 3.0, 2.0
    out = warp(photo, flow)
    np.testing.assert_allclose(out[:-2, :-3], photo[2:, 3:], atol=1e-5)
    # A sub-pixel shift is bilinear: the mean of two neighbours.
    flow[..., 0], flow[..., 1] = 0.5, 0.0
    out = warp(photo, flow)
    np.testing.assert_allclose(out[:, :-1], (photo[:, :-1] + photo[:, 1:]) / 2, atol=1e-5)
    with pytest.raises(InputError):
        warp(photo, flow[:-1])


@pytest.mark.parametrize("preset", PRESETS)
def test_flow_of_a_pan_warps_the_previous_frame_onto_the_next(photo: np.ndarray, preset: str) -> None:
    f0, f1 = pan(photo, 2, 2)
    backward = optical_flow(f1, f0, preset)  # f1(x) = f0(x + 2)
    inner = (slice(8, -8), slice(8, -8))
    assert np.abs(backward[inner][..., 0] - 2.0).mean() < 0.25
    assert np.abs(backward[inner][..., 1]).mean() < 0.25
    err = np.abs(warp(f0, backward) - f1)[inner].mean()
    assert err < np.abs(f0 - f1)[inner].mean() / 3


def test_occlusion_mask_marks_the_uncovered_band_of_a_pan(photo: np.ndarray) -> None:
    f0, f1 = pan(photo, 2, 3)
    occ = occlusion_mask(optical_flow(f1, f0), optical_flow(f0, f1))
    assert occ[:, -3:].all()  # the 3 columns the pan brought in were not in frame 0
    assert not occ[6:-6, 6:-6].any()
    assert occ.mean() < 0.1


def test_occlusion_mask_forward_backward_and_motion_boundary() -> None:
    h, w = 40, 40
    backward = np.zeros((h, w, 2), np.float32)
    forward = np.zeros((h, w, 2), np.float32)
    backward[:, 20:, 0] = 4.0  # right half came from 4 px further right...
    forward[:, 24:, 0] = -4.0  # ...and moved back: consistent there
    occ = occlusion_mask(backward, forward)
    assert not occ[:, 2:18].any() and not occ[:, 22:34].any()
    assert occ[:, 19:21].all()  # the flow's step is a motion boundary
    assert occ[:, -4:].all()  # came from outside frame t-1
    forward[:, 24:, 0] = 0.0  # forward flow disagrees: x + ŵ + w̃ is 4 px off
    occ = occlusion_mask(backward, forward)
    assert occ[:, 22:34].all() and not occ[:, 2:18].any()


def test_soft_mask_grows_and_softens_occlusions() -> None:
    occ = np.zeros((30, 30), bool)
    occ[:, 15:] = True
    m = soft_mask(occ)
    assert m.dtype == np.float32 and m.shape == occ.shape
    assert (m[:, 15:] == 0).all() and np.allclose(m[:, :10], 1.0)
    assert 0.0 < m[0, 13] < 1.0


def test_perfectly_warped_previous_output_gives_no_temporal_change(photo: np.ndarray) -> None:
    f0, f1 = pan(photo, 2, 2)
    backward = optical_flow(f1, f0)
    prev_out = f0[::-1].copy()  # any "stylized" previous frame
    stylized = warp(prev_out, backward)  # the model painted the new frame exactly as the flow says
    mask = soft_mask(occlusion_mask(backward, optical_flow(f0, f1)))
    for blend in (0.0, 0.5, 0.9):
        out = temporal_blend(stylized, warp(prev_out, backward), mask, blend)
        np.testing.assert_allclose(out, stylized, atol=1e-6)
    # ...while a different stylization is pulled towards the warped previous output where m = 1.
    other = np.full_like(stylized, 0.5)
    out = temporal_blend(other, warp(prev_out, backward), mask, 0.5)
    keep = mask == 1.0
    np.testing.assert_allclose(out[keep], (other[keep] + stylized[keep]) / 2, atol=1e-6)
    np.testing.assert_array_equal(out[mask == 0.0], other[mask == 0.0])


def flicker(outputs: list[np.ndarray], frames: list[np.ndarray]) -> float:
    """Mean |O_t - warp(O_{t-1})| over non-occluded pixels (flow from the input frames)."""
    errs = []
    for t in range(1, len(outputs)):
        backward = optical_flow(frames[t], frames[t - 1])
        occ = occlusion_mask(backward, optical_flow(frames[t - 1], frames[t]))
        errs.append(float(np.abs(outputs[t] - warp(outputs[t - 1], backward))[~occ].mean()))
    return float(np.mean(errs))


def test_temporal_consistency_lowers_flicker_of_a_model_on_a_pan(photo: np.ndarray) -> None:
    frames = pan(photo, 6, 2)
    seen: list[Progress] = []
    plain = list(stylize_frames(frames, "starry-night", consistency="none"))
    temporal = list(stylize_frames(frames, "starry-night", blend=0.5, callback=seen.append))
    assert len(temporal) == 6 and all(o.shape == (96, 80, 3) and o.dtype == np.float32 for o in temporal)
    np.testing.assert_array_equal(temporal[0], plain[0])  # nothing to blend with yet
    assert not np.array_equal(temporal[3], plain[3])
    f_plain, f_temporal = flicker(plain, frames), flicker(temporal, frames)
    assert f_temporal < 0.75 * f_plain, (f_temporal, f_plain)
    assert [p.step for p in seen] == [1, 2, 3, 4, 5, 6] and all(p.total == 6 and p.stage == "video" for p in seen)


def _own_gram_loss(image: np.ndarray, own: np.ndarray) -> float:
    """The Gram loss of ``image`` against ``own`` (relu1_1..relu4_1, the models' training layers)."""
    import torch

    from nst_engine.encoders.weights import get_encoder
    from nst_engine.image import to_tensor
    from nst_engine.losses import Objective, style_terms

    cpu = torch.device("cpu")
    enc = get_encoder("caffe", "relu4_1", "max", cpu, False)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")
    obj = Objective(enc, style=style_terms(enc, [to_tensor(own, None, cpu)], (), layers, (), 1.0))
    with torch.no_grad():
        return float(obj(to_tensor(image, None, cpu))[0])


def test_refine_steps_restore_the_frames_own_texture_and_keep_it_steady(photo: np.ndarray) -> None:
    """The blend dulls the strokes (two paintings averaged); a few optimizer steps on the model's
    own loss towards the frame's unblended painting, with the temporal loss, bring the texture
    statistics back and keep the frame steadier than frame by frame."""
    frames = pan(photo, 3, 2)
    plain = list(stylize_frames(frames, "starry-night", consistency="none"))
    blended = list(stylize_frames(frames, "starry-night", blend=0.7))
    refined = list(stylize_frames(frames, "starry-night", blend=0.7, refine_steps=4))
    np.testing.assert_array_equal(refined[0], plain[0])  # nothing to refine towards yet
    for t in (1, 2):
        assert _own_gram_loss(refined[t], plain[t]) < 0.7 * _own_gram_loss(blended[t], plain[t])
    assert flicker(refined, frames) < flicker(plain, frames)


def test_stylize_frames_with_a_callable_model_an_iterator_and_stop(photo: np.ndarray) -> None:
    frames = pan(photo, 4, 2)
    calls = []

    def model(x: np.ndarray) -> np.ndarray:
        calls.append(x.shape)
        return 1.0 - x

    out = list(stylize_frames(iter(frames), model, consistency="none"))
    np.testing.assert_allclose(out[2], 1.0 - frames[2], atol=1e-6)
    assert len(calls) == 4

    class StopAfter:
        def __init__(self, n: int) -> None:
            self.n = n

        def is_set(self) -> bool:
            self.n -= 1
            return self.n < 0

    gen = stylize_frames(frames, model, stop=StopAfter(2))
    assert len([next(gen), next(gen)]) == 2
    with pytest.raises(Cancelled):
        next(gen)


def test_bad_arguments_are_refused(photo: np.ndarray) -> None:
    with pytest.raises(InputError, match="consistency"):
        TemporalStylizer("starry-night", consistency="smooth")
    with pytest.raises(InputError, match="blend"):
        TemporalStylizer("starry-night", blend=1.0)
    with pytest.raises(InputError, match="preset"):
        TemporalStylizer("starry-night", preset="slow")
    with pytest.raises(InputError, match="refine_steps"):
        TemporalStylizer("starry-night", refine_steps=-1)
    runner = TemporalStylizer(lambda x: x)
    runner.step(photo)
    with pytest.raises(InputError, match="differs in size"):
        runner.step(photo[:50])


def test_flow_on_shrunk_frames_is_scaled_back_to_full_size(photo: np.ndarray) -> None:
    f0, f1 = pan(photo, 2, 4)
    backward, mask = TemporalStylizer(lambda x: x, flow_side=48).flow_and_mask(f0, f1)  # flow at half size
    assert backward.shape == f1.shape[:2] + (2,) and mask.shape == f1.shape[:2]
    inner = (slice(12, -12), slice(12, -12))
    assert abs(float(np.median(backward[inner][..., 0])) - 4.0) < 0.5  # 2 px at half size → 4 px
    assert mask[inner].mean() > 0.9 and mask[:, -2:].max() == 0.0
