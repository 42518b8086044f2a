"""Feed-forward style networks (issue #5): train a few steps, export to ONNX, run with onnxruntime.

All on the CPU with tiny crops; the real training and the speed/seam numbers are in
``bench/bench_feedforward.py`` and ``export/README.md``.
"""
from __future__ import annotations

import argparse
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

onnx = pytest.importorskip("onnx", reason="exporting needs the onnx package (pip install -e '.[train]')")

from export.network import NetSpec, TransformerNet, count_parameters  # noqa: E402
from export.onnx_export import VERIFY_TOLERANCE, export_onnx, verify_onnx  # noqa: E402
from export.train import PhotoCrops, TrainConfig, load_checkpoint, net_from_checkpoint, net_from_model, train  # noqa: E402
from nst_engine.cli import main  # noqa: E402
from nst_engine.errors import Cancelled, EngineRuntimeError, InputError  # noqa: E402
from nst_engine.models import MARKER, load_model, stylize_model  # noqa: E402

from conftest import small  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture(scope="module", autouse=True)
def _one_torch_thread():  # noqa: ANN202
    # These are many tiny ops: on a busy 2-core machine two OpenMP threads spin-wait on each
    # other and run ~10x slower than one.
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in ("astronaut", "chelsea", "coffee"):
        Image.fromarray((small(f"sample:{name}", 80) * 255).astype(np.uint8)).save(folder / f"{name}.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    return folder


def _config(photos: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict[str, object] = dict(style="style:swirls", content_dir=str(photos), output=str(out), variant="light",
                                   steps=20, batch_size=2, crop=32, style_size=64, lr=1e-2, seed=0, device="cpu",
                                   checkpoint_every=0, content_weight=30.0, fine_steps=5, fine_crop=48, fine_batch_size=1)
    base.update(kw)
    return TrainConfig(**base)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def trained(photos: Path, tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    out = tmp_path_factory.mktemp("model") / "swirls.onnx"
    seen: list[object] = []
    result = train(_config(photos, out, preview_every=10, preview_size=48), callback=seen.append)
    return result, seen


# --- the network -----------------------------------------------------------------------------------


@pytest.mark.parametrize("variant", ["standard", "light"])
def test_network_keeps_any_size_and_range(variant: str) -> None:
    net = TransformerNet(variant).eval()
    with torch.no_grad():
        for shape in ((1, 3, 32, 48), (2, 3, 37, 53), (1, 3, 8, 8)):
            y = net(torch.rand(shape))
            assert y.shape == shape
            assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0


def test_light_is_much_smaller() -> None:
    assert count_parameters(TransformerNet("light")) * 5 < count_parameters(TransformerNet("standard"))
    assert NetSpec.from_dict(NetSpec.of("light").to_dict()) == NetSpec.of("light")
    with pytest.raises(InputError, match="variant"):
        NetSpec.of("huge")


# --- training and export ---------------------------------------------------------------------------


def test_training_loss_falls_and_reports_progress(trained) -> None:  # noqa: ANN001
    result, seen = trained
    h = result.history
    assert len(h) == 20 and result.steps == 20
    assert np.mean(h[-5:]) < 0.7 * np.mean(h[:5])
    assert set(result.parts) == {"content", "style", "tv"}
    assert [p.step for p in seen] == list(range(1, 21))  # type: ignore[attr-defined]
    snaps = [p for p in seen if p.snapshot is not None]  # type: ignore[attr-defined]
    assert [p.step for p in snaps] == [10, 20]  # type: ignore[attr-defined]
    assert (result.model.parent / "swirls.preview000010.png").is_file()


def test_export_loads_matches_torch_and_has_metadata(trained) -> None:  # noqa: ANN001
    result, _ = trained
    info = load_model(result.model, "cpu")
    meta = info.metadata
    assert meta[MARKER] == "1" and meta["input_range"] == "0..1" and meta["style_name"] == "swirls"
    assert meta["variant"] == "light" and int(meta["opset"]) >= 17
    training = info.training
    assert training["steps_done"] == 20 and training["crop"] == 32 and training["style"] == "style:swirls"
    assert "/" not in training["content_dir"]  # no local paths in the file
    model = onnx.load(str(result.model))
    assert {p.key for p in model.metadata_props} >= {MARKER, "style_name", "training", "network"}
    net = net_from_checkpoint(load_checkpoint(result.checkpoint)).eval()
    assert verify_onnx(net, result.model) <= VERIFY_TOLERANCE
    # and on a real image, through the runner
    img = small("sample:chelsea", 64)
    with torch.no_grad():
        ref = net(torch.from_numpy(img).permute(2, 0, 1)[None])[0].permute(1, 2, 0).numpy()
    got = stylize_model(img, result.model, device="cpu")
    assert np.abs(got - ref).max() <= 1e-3


def test_init_from_an_exported_model(trained, photos: Path, tmp_path: Path) -> None:  # noqa: ANN001
    # --init takes an .onnx model of ours (or a shipped name) as well as a checkpoint: the weights
    # read back from the ONNX file are the trained ones, and training starts from them.
    result, _ = trained
    from_ckpt = net_from_checkpoint(load_checkpoint(result.checkpoint))
    from_onnx = net_from_model(str(result.model))
    for (k, a), b in zip(from_ckpt.state_dict().items(), from_onnx.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    shipped = net_from_model("starry-night")
    assert shipped.spec.variant == "light"
    r = train(_config(photos, tmp_path / "i.onnx", steps=1, fine_steps=0, lr=1e-9, lr_final=1e-9,
                      init=str(result.model)), export=False)
    started = net_from_checkpoint(load_checkpoint(r.checkpoint))
    for (k, a), b in zip(from_ckpt.state_dict().items(), started.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-5), k  # one step at lr 1e-9 from the model's weights
    with pytest.raises(InputError, match="init"):
        net_from_model(str(photos / "notes.txt"))


def test_checkpoint_is_weights_only_and_resume_is_exact(photos: Path, tmp_path: Path) -> None:
    # The schedule (lr decay, fine crops) spans the run's --steps: stop a 4-step run after 2, resume it.
    straight = train(_config(photos, tmp_path / "a.onnx", steps=4, fine_steps=2), export=False)
    stop = threading.Event()
    part_cfg = _config(photos, tmp_path / "b.onnx", steps=4, fine_steps=2)
    with pytest.raises(Cancelled, match="resume"):
        train(part_cfg, export=False, stop=stop, callback=lambda p: stop.set() if p.step == 2 else None)
    part = SimpleNamespace(checkpoint=part_cfg.checkpoint_path)
    ckpt = torch.load(part.checkpoint, weights_only=True)
    assert ckpt["step"] == 2 and ckpt["spec"]["variant"] == "light"
    assert ckpt["seconds"] > 0 and ckpt["cpu_seconds"] > 0
    resumed = train(_config(photos, tmp_path / "c.onnx", steps=4, fine_steps=2, resume=str(part.checkpoint)),
                    export=False)
    assert resumed.history == straight.history
    a = load_checkpoint(straight.checkpoint)["net"]
    c = load_checkpoint(resumed.checkpoint)["net"]
    assert all(torch.equal(a[k], c[k]) for k in a)
    with pytest.raises(InputError, match="checkpoint holds"):
        train(_config(photos, tmp_path / "d.onnx", steps=4, variant="standard", resume=str(part.checkpoint)))


def test_stop_writes_checkpoint_and_cancels(photos: Path, tmp_path: Path) -> None:
    class StopAt:
        def __init__(self) -> None:
            self.calls = 0

        def is_set(self) -> bool:
            self.calls += 1
            return self.calls > 2

    with pytest.raises(Cancelled, match="resume"):
        train(_config(photos, tmp_path / "s.onnx", steps=10), stop=StopAt())
    assert load_checkpoint(tmp_path / "s.ckpt.pt")["step"] == 2
    assert not (tmp_path / "s.onnx").exists()

    def ctrl_c(p: object) -> None:
        if p.step == 3:  # type: ignore[attr-defined]
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(_config(photos, tmp_path / "k.onnx", steps=10), callback=ctrl_c)
    assert load_checkpoint(tmp_path / "k.ckpt.pt")["step"] == 3
    # Resuming to the steps already done only exports.
    r = train(_config(photos, tmp_path / "k.onnx", steps=3, resume=str(tmp_path / "k.ckpt.pt")))
    assert r.steps == 3 and r.model.is_file() and load_model(r.model).training["steps_done"] == 3


def test_distillation_from_teacher(trained, photos: Path, tmp_path: Path) -> None:  # noqa: ANN001
    result, _ = trained
    for teacher in (result.model, result.checkpoint):
        r = train(_config(photos, tmp_path / "student.onnx", steps=1, teacher=str(teacher)), export=False)
        assert r.parts["distill"] > 0


def test_failed_verification_writes_nothing(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import export.onnx_export as ox

    monkeypatch.setattr(ox, "verify_onnx", lambda net, path: 0.5)
    with pytest.raises(EngineRuntimeError, match="differs from torch"):
        export_onnx(TransformerNet("light"), tmp_path / "x.onnx")
    assert list(tmp_path.iterdir()) == []


# --- the runner ------------------------------------------------------------------------------------


def test_stylize_small_image_strength_and_alpha(trained) -> None:  # noqa: ANN001
    result, _ = trained
    img = small("sample:astronaut", 64)
    full = stylize_model(img, result.model, device="cpu")
    assert full.shape == img.shape and full.dtype == np.float32
    assert 0.0 <= full.min() and full.max() <= 1.0
    assert np.abs(full - img).mean() > 0.02  # it did something
    np.testing.assert_allclose(stylize_model(img, result.model, strength=0.0), img, atol=1e-6)
    half = stylize_model(img, result.model, strength=0.5)
    np.testing.assert_allclose(half, 0.5 * full + 0.5 * img, atol=1e-5)
    rgba = np.concatenate([img, np.full((*img.shape[:2], 1), 0.5, np.float32)], axis=2)
    np.testing.assert_allclose(stylize_model(rgba, result.model), full, atol=1e-6)
    tiny = stylize_model(img[:5, :7], result.model)  # padded up to the network's minimum
    assert tiny.shape == (5, 7, 3)
    with pytest.raises(InputError, match="strength"):
        stylize_model(img, result.model, strength=1.5)


def _onnx_model(path: Path, *, marker: bool = True, channels: int = 3, fixed: bool = False, conv: int = 3) -> Path:
    """A hand-made ONNX file: conv k×k (+ sigmoid), no instance norm, so tiling must be exact."""
    from onnx import TensorProto, helper, numpy_helper

    dims: list[object] = [1, channels, 64, 64] if fixed else ["n", channels, "h", "w"]
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((3, channels, conv, conv)) * 0.3).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w"], ["c"], pads=[conv // 2] * 4),
         helper.make_node("Sigmoid", ["c"], ["stylized"])],
        "g",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, dims)],
        [helper.make_tensor_value_info("stylized", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [numpy_helper.from_array(w, "w")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if marker:
        helper.set_model_props(model, {MARKER: "1"})
    onnx.save(model, str(path))
    return path


def test_automatic_tile_follows_the_network_and_the_budget(trained) -> None:  # noqa: ANN001
    from nst_engine.models import BYTES_PER_PIXEL, auto_tile, load_model

    info = load_model(trained[0].model, "cpu")
    light = auto_tile(info, budget=2 * 1024**3)
    assert info.metadata["variant"] == "light" and light % 64 == 0 and 512 <= light <= 8192
    assert light * light * BYTES_PER_PIXEL[info.metadata["variant"]] <= 2 * 1024**3
    assert auto_tile(info, budget=256 * 1024**2) < light  # a smaller budget, smaller tiles
    original = info.metadata  # the session is cached: put its metadata back
    try:
        info.metadata = {**original, "variant": "standard"}
        assert auto_tile(info, budget=2 * 1024**3) < light  # the standard net needs more per pixel
    finally:
        info.metadata = original


def test_tiles_blend_without_seams(tmp_path: Path) -> None:
    model = _onnx_model(tmp_path / "local.onnx")
    img = small("sample:coffee", 200)  # 133x200
    whole = stylize_model(img, model)
    steps: list[int] = []
    tiled = stylize_model(img, model, tile=64, overlap=16, callback=lambda p: steps.append(p.step))
    assert steps == list(range(1, 13))  # 3 x 4 tiles
    # A local operator: tiles agree wherever they overlap, so only the blend could leave a seam.
    assert np.abs(tiled - whole).max() < 2e-3


def test_tiles_share_the_whole_images_statistics(trained, monkeypatch: pytest.MonkeyPatch) -> None:  # noqa: ANN001
    result, _ = trained
    img = small("sample:astronaut", 128)
    info = load_model(result.model)
    assert info.shares_stats
    whole = stylize_model(img, result.model)
    steps: list[int] = []
    shared = stylize_model(img, result.model, tile=64, overlap=24, callback=lambda p: steps.append(p.total))
    assert steps == [18] * 18  # 3 x 3 tiles, two passes
    monkeypatch.setattr(info, "shares_stats", False)  # as a model without the statistics in/outputs
    own = stylize_model(img, result.model, tile=64, overlap=24)
    d_shared, d_own = np.abs(shared - whole).mean(), np.abs(own - whole).mean()
    assert d_shared < 0.5 * d_own


def test_foreign_corrupt_and_misshapen_models_are_refused(tmp_path: Path) -> None:
    img = small("sample:coffee", 32)
    corrupt = tmp_path / "corrupt.onnx"
    corrupt.write_bytes(b"\x08\x07" + b"garbage" * 50)
    cases = {
        corrupt: "not a readable ONNX model",
        _onnx_model(tmp_path / "foreign.onnx", marker=False): "not an nst-gimp style model",
        _onnx_model(tmp_path / "gray.onnx", channels=1): "needs \\(N, 3, H, W\\)",
        _onnx_model(tmp_path / "fixed.onnx", fixed=True): "fixed size",
        tmp_path / "missing.onnx": "no such file",
        "no-such-shipped-model": "no such model",
    }
    for model, needle in cases.items():
        with pytest.raises(InputError, match=needle):
            stylize_model(img, model)


# --- the command line ------------------------------------------------------------------------------


def test_nst_train_and_stylize_model_commands(photos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from nst_engine.cli.train import run_model_stylize

    out = tmp_path / "cli.onnx"
    assert main(["train", "style:mosaic", "--content-dir", str(photos), "-o", str(out), "--steps", "2",
                 "--batch-size", "2", "--crop", "32", "--style-size", "64", "--device", "cpu", "-q"]) == 0
    assert out.is_file() and (tmp_path / "cli.ckpt.pt").is_file()
    content = tmp_path / "c.png"
    Image.fromarray((small("sample:chelsea", 48) * 255).astype(np.uint8)).save(content)
    args = argparse.Namespace(content=str(content), model=str(out), strength=1.0, tile=1024, overlap=128,
                              output=str(tmp_path / "styled.png"), quiet=True, device="cpu")
    assert run_model_stylize(args) == 0
    assert Image.open(tmp_path / "styled.png").size == Image.open(content).size
    # bad input: exit code 2, one line naming the option
    capsys.readouterr()
    assert main(["train", "style:mosaic", "--content-dir", str(tmp_path / "nope"), "-o", str(out)]) == 2
    assert "--content-dir=" in capsys.readouterr().err
    assert main(["stylize", str(content), "--model", "no-such-model", "-o", str(tmp_path / "x.png")]) == 2
    assert "--model='no-such-model': no such model" in capsys.readouterr().err
    assert main(["train", "style:mosaic", "--content-dir", str(photos), "-o", str(tmp_path / "m.png")]) == 2


def test_cli_exit_1_when_verification_fails(photos: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import export.onnx_export as ox

    monkeypatch.setattr(ox, "verify_onnx", lambda net, path: 1.0)
    out = tmp_path / "bad.onnx"
    assert main(["train", "style:mosaic", "--content-dir", str(photos), "-o", str(out), "--steps", "1",
                 "--batch-size", "2", "--crop", "32", "--device", "cpu", "-q"]) == 1
    assert not out.exists()


@pytest.mark.skipif(not (SHARED / "datasets" / "train_photos").is_dir(), reason="no ../shared/datasets/train_photos")
def test_crops_of_the_shared_training_photos() -> None:
    data = PhotoCrops(SHARED / "datasets" / "train_photos", 64)
    assert len(data) >= 100
    gen = torch.Generator().manual_seed(1)
    batch = data.batch(3, gen)
    assert batch.shape == (3, 3, 64, 64) and 0.0 <= float(batch.min()) and float(batch.max()) <= 1.0
