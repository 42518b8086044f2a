"""Reduced precision and the device-friendly loop (#6). The CUDA tests run on a GPU machine only."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch

from nst_engine import StyleConfig, stylize
from nst_engine.encoders import vgg
from nst_engine.encoders.vgg import HYBRID_WARMUP, precision, resolve_precision
from nst_engine.encoders.weights import get_encoder
from nst_engine.errors import InputError
from nst_engine.image import to_tensor
from nst_engine.losses import Objective, content_terms, style_terms
from nst_engine.optim import evaluate, optimize

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _fp32_loss(image: np.ndarray, content: np.ndarray, style: np.ndarray, device: str = "cpu") -> float:
    """The final image under one loss function: fp32, default layers and weights."""
    dev = torch.device(device)
    enc = get_encoder("caffe", "relu5_1", "max", dev)
    cfg = StyleConfig()
    c = to_tensor(content, image.shape[:2], dev)
    obj = Objective(enc, content_terms(enc, c, cfg.content_layers, (), 1.0),
                    style_terms(enc, [to_tensor(style, None, dev)], (), cfg.style_layers, (), 1.0))
    x = torch.from_numpy(image).permute(2, 0, 1)[None].to(dev) * 255
    with precision("fp32", dev):
        return evaluate(x, obj)[0]


def test_precision_names(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vgg, "bf16_pays", lambda device: True)
    assert resolve_precision("auto", torch.device("cpu")) == "hybrid"
    monkeypatch.setattr(vgg, "bf16_pays", lambda device: False)  # emulated or slower bf16
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert resolve_precision("auto", torch.device("cuda")) == "tf32"
    with pytest.raises(InputError, match="precision"):
        resolve_precision("fp8", torch.device("cpu"))
    with pytest.raises(InputError, match="precision"):
        StyleConfig(precision="fp16").check()


def test_auto_measures_whether_bf16_pays(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:  # noqa: ANN001
    # Native bf16 is not enough (it was slower than fp32 on an Intel Xeon without AMX): auto times
    # both once per machine and keeps the verdict in precision.json beside the step-cost cache.
    from nst_engine.encoders import probe

    monkeypatch.setenv("NST_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(probe, "_MEMO", {})
    monkeypatch.setattr(vgg, "bf16_supported", lambda device: True)
    calls: list[int] = []

    def timed(seconds: tuple[float, float]):  # noqa: ANN202
        return lambda repeats=4: calls.append(1) or seconds

    monkeypatch.setattr(probe, "measure_speedup", timed((1.0, 1.05)))  # hybrid slower
    assert resolve_precision("auto", torch.device("cpu")) == "fp32"
    assert "measured no faster" in vgg.describe_precision("auto", torch.device("cpu"))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32" and len(calls) == 1  # memoised
    monkeypatch.setattr(probe, "_MEMO", {})
    monkeypatch.setattr(probe, "measure_speedup", timed((1.0, 0.5)))
    assert resolve_precision("auto", torch.device("cpu")) == "fp32" and len(calls) == 1  # from the file
    (tmp_path / "precision.json").unlink()
    monkeypatch.setattr(probe, "_MEMO", {})
    assert resolve_precision("auto", torch.device("cpu")) == "hybrid" and len(calls) == 2  # 2x faster
    assert resolve_precision("hybrid", torch.device("cpu")) == "hybrid"  # asked for: no probe
    monkeypatch.setattr(vgg, "bf16_supported", lambda device: False)
    monkeypatch.setattr(probe, "_MEMO", {})
    assert resolve_precision("auto", torch.device("cpu")) == "fp32" and len(calls) == 2  # emulated: never timed


def test_the_probe_times_both_precisions() -> None:
    from nst_engine.encoders.probe import measure_speedup

    fp32, hybrid = measure_speedup(repeats=1)
    assert 0 < fp32 < 30 and 0 < hybrid < 30


def test_bf16_autocast_converges_like_fp32(content96: np.ndarray, style96: np.ndarray) -> None:
    cfg = StyleConfig(size=64, steps=30)
    runs = {p: stylize(content96, [style96], cfg.replace(precision=p)) for p in ("fp32", "bf16")}
    losses = {p: _fp32_loss(r.image, content96, style96) for p, r in runs.items()}
    assert runs["bf16"].history[-1] < 0.05 * runs["bf16"].history[0]  # the loss falls as in fp32
    # No worse than fp32 by more than 3 % (L-BFGS is chaotic: on an Intel Xeon bf16 ended 6 % *lower*)
    assert losses["bf16"] <= 1.03 * losses["fp32"]
    assert not np.array_equal(runs["bf16"].image, runs["fp32"].image)  # it did run in bf16


class _Spy:
    """A quadratic objective that records the encoder precision each evaluation ran under."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def __call__(self, image: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        loss = ((image - 100.0) ** 2).sum()
        return loss, {"quadratic": loss}

    def value_and_grad(self, image: torch.Tensor, need_grad: bool = True
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor], torch.Tensor | None]:
        self.seen.append(vgg._PRECISION.get())
        loss, parts = self(image)
        return loss, parts, 2 * (image - 100.0)


def test_hybrid_runs_its_first_lbfgs_steps_in_fp32() -> None:
    spy = _Spy()
    with precision("hybrid", torch.device("cpu")):
        optimize(torch.zeros(1, 3, 4, 4), spy, steps=HYBRID_WARMUP + 3)
    assert spy.seen == ["fp32"] * HYBRID_WARMUP + ["hybrid"] * 3
    spy.seen.clear()
    with precision("bf16", torch.device("cpu")):  # all-bf16 is the user's explicit choice: no warm-up
        optimize(torch.zeros(1, 3, 4, 4), spy, steps=2)
    assert spy.seen == ["bf16", "bf16"]


def test_reading_the_loss_every_k_steps_changes_nothing(content96: np.ndarray, style96: np.ndarray) -> None:
    """The GPU loop reads the loss in blocks; on the CPU the blocks must give the same run."""
    enc = get_encoder("caffe", "relu5_1", "max", torch.device("cpu"))
    c = to_tensor(content96, (48, 48), torch.device("cpu"))
    obj = Objective(enc, content_terms(enc, c, ["relu4_2"], (), 1.0),
                    style_terms(enc, [to_tensor(style96, (48, 48), torch.device("cpu"))], (),
                                ["relu1_1", "relu2_1", "relu3_1"], (), 1.0))
    seen: list[tuple[int, float, bool]] = []
    one = optimize(c, obj, steps=12, sync_every=1)
    blocks = optimize(c, obj, steps=12, sync_every=5, save_every=4,
                      callback=lambda p: seen.append((p.step, p.loss, p.snapshot is not None)))
    assert one.history == blocks.history and torch.equal(one.image, blocks.image)
    assert [s for s, _, _ in seen] == list(range(1, 13)) and [v for _, v, _ in seen] == one.history
    assert [s for s, _, snap in seen if snap] == [4, 8, 12]


@cuda
@pytest.mark.parametrize("mode", ["tf32", "bf16"])
def test_cuda_reduced_precision_final_loss_within_2_percent(mode: str, content96: np.ndarray,
                                                           style96: np.ndarray) -> None:
    cfg = StyleConfig(size=256, steps=200, device="cuda")
    ref = stylize(content96, [style96], cfg.replace(precision="fp32"))
    fast = stylize(content96, [style96], cfg.replace(precision=mode))
    l_ref = _fp32_loss(ref.image, content96, style96, "cuda")
    l_fast = _fp32_loss(fast.image, content96, style96, "cuda")
    assert l_fast <= 1.02 * l_ref


@cuda
def test_cuda_loop_syncs_once_per_block(content96: np.ndarray, style96: np.ndarray) -> None:
    from nst_engine.optim import SYNC_EVERY_CUDA

    cfg = StyleConfig(size=128, steps=3 * SYNC_EVERY_CUDA, device="cuda")
    stylize(content96, [style96], cfg.replace(steps=2))  # warm-up: weights, cuDNN autotuning
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            stylize(content96, [style96], cfg)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    syncs = [w for w in caught if "synchroniz" in str(w.message)]
    # Set-up (targets, the start image) syncs a few times; the loop once per block.
    assert len(syncs) <= 3 + 10, [str(w.message) for w in syncs][:20]


def test_hybrid_precision_keeps_the_pixel_gradient(content96: np.ndarray) -> None:
    """The training recipe's hybrid (bf16 from conv3_1, blocks 1-2 and losses fp32): the pixel gradient
    stays within cosine 0.999 (style) / 0.9999 (content) of fp32 on a tiny image, closer than all-bf16."""
    from conftest import small

    from export.train import resolve_train_precision
    from nst_engine.encoders.vgg import bf16_pays

    dev = torch.device("cpu")
    torch.manual_seed(0)
    enc = get_encoder("caffe", "relu4_1", "max", dev)
    c = to_tensor(content96[:64, :64], None, dev)
    s = to_tensor(small("style:swirls", 64), None, dev)
    x = (c + 30 * torch.randn(c.shape, generator=torch.Generator().manual_seed(0))).clamp(0, 255)
    layers = ("relu1_1", "relu2_1", "relu3_1", "relu4_1")

    def grads(mode: str) -> dict[str, torch.Tensor]:
        out = {}
        with precision(mode, dev):
            feats = enc(x, ["relu2_1", "relu4_1"])
            out["dtypes"] = torch.tensor([feats["relu2_1"].dtype == torch.bfloat16, feats["relu4_1"].dtype == torch.bfloat16])
            for name, obj in (("style", Objective(enc, [], style_terms(enc, [s], (), layers, (), 1.0))),
                              ("content", Objective(enc, content_terms(enc, c, ("relu2_2",), (), 1000.0), []))):
                xx = x.clone().requires_grad_(True)
                obj(xx)[0].backward()
                out[name] = xx.grad.flatten()
        return out

    f, h, b = grads("fp32"), grads("hybrid"), grads("bf16")
    assert h["dtypes"].tolist() == [False, True] and b["dtypes"].tolist() == [True, True]
    cos = {k: float(torch.nn.functional.cosine_similarity(f[k], g[k], 0)) for g in (h,) for k in ("style", "content")}
    cos_bf16 = float(torch.nn.functional.cosine_similarity(f["style"], b["style"], 0))
    assert cos["style"] >= 0.999 and cos["content"] >= 0.9999, cos
    assert cos["style"] > cos_bf16
    # auto picks the hybrid only where bf16 is native and measured faster than fp32
    assert resolve_train_precision("auto", dev) == ("hybrid" if bf16_pays(dev) else "fp32")
