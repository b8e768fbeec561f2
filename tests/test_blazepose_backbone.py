"""BlazePose GHUM backbone: levels and strides, crop convention, batching, checkpoints, clear errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.nets import blazepose as bp

needs_trunk = pytest.mark.skipif(not bp.trunk_available(), reason="needs mediapipe's pose_landmark_full.tflite and ai-edge-litert")


def _have_model_file() -> bool:
    try:
        return bp.default_model_path().is_file()
    except NeuralfitError:
        return False


# the backbone runs through the PyTorch port when ai-edge-litert is missing: these need only the file
needs_model = pytest.mark.skipif(not _have_model_file(), reason="needs mediapipe's pose_landmark_full.tflite")


@pytest.fixture(scope="module")
def backbone() -> bp.BlazePoseGHUMBackbone:
    return bp.BlazePoseGHUMBackbone(num_threads=1)


def _photo_like(b: int, res: int, seed: int = 0) -> torch.Tensor:
    """Smooth random images (not white noise, which drives the trunk far outside its data)."""
    g = torch.Generator().manual_seed(seed)
    small = torch.rand(b, 3, 8, 8, generator=g)
    return torch.nn.functional.interpolate(small, size=(res, res), mode="bilinear", align_corners=False)


@needs_model
def test_levels_have_documented_shapes_and_strides(backbone: bp.BlazePoseGHUMBackbone) -> None:
    for res in (256, 224):
        levels = backbone.trunk_levels(_photo_like(2, res))
        want = [(2, ch, res // s, res // s) for s, _, ch in bp.GHUM_LEVELS]
        assert [tuple(t.shape) for t in levels] == want
        skips, pooled = backbone(_photo_like(2, res))
        assert [t.shape[1] for t in skips] == list(bp.GHUM_CHANNELS)
        assert [t.shape[-1] for t in skips] == [res // s for s in (2, 4, 8, 16, 32)]
        assert pooled.shape == (2, backbone.pooled_channels)
        assert all(torch.isfinite(t).all() for t in levels)


@needs_trunk
def test_batch_equals_single_images(backbone: bp.BlazePoseGHUMBackbone) -> None:
    # The interpreter reuses its buffers between invokes: a batch must not see the last image's maps.
    x = _photo_like(3, 256, seed=1)
    batch = backbone.trunk_levels(x)
    for i in range(3):
        single = backbone.trunk_levels(x[i:i + 1])
        for a, b in zip(batch, single, strict=True):
            assert torch.equal(a[i:i + 1], b)
    assert not torch.allclose(batch[0][0], batch[0][1])


@needs_model
def test_fed_levels_reproduce_the_forward_pass(backbone: bp.BlazePoseGHUMBackbone) -> None:
    x = _photo_like(2, 256, seed=2)
    levels = backbone.trunk_levels(x)
    means = [t.mean(dim=(0, 2, 3)) for t in levels]
    stds = [t.std(dim=(0, 2, 3)) for t in levels]
    backbone.set_standardisation(means, stds)
    try:
        direct, _ = backbone(x)
        # float16 round trip, as in the cache: the standardised maps agree to fp16 precision
        backbone.feed([t.half().float() for t in levels])
        fed, _ = backbone(x)
        for a, b in zip(direct[1:], fed[1:], strict=True):
            assert (a - b).abs().max() < 0.02
        assert abs(float(direct[4].mean())) < 1e-3  # standardised with its own statistics: mean 0
    finally:
        backbone.set_standardisation([torch.zeros(c) for *_, c in bp.GHUM_LEVELS],
                                     [torch.ones(c) for *_, c in bp.GHUM_LEVELS])


def test_crop_mapping_round_trips() -> None:
    uv = np.array([[0.0, 0.0], [111.5, 37.25], [224.0, 224.0]])
    for res in (224, 256, 320):
        np.testing.assert_allclose(bp.ghum_to_crop(bp.crop_to_ghum(uv, res), res), uv, atol=1e-9)
    np.testing.assert_allclose(bp.crop_to_ghum(uv, 224)[2], [256.0, 256.0])
    c, s = bp.ghum_roi_to_spin_box(*bp.spin_box_to_ghum_roi(np.array([300.0, 200.0]), 1.7))
    np.testing.assert_allclose(c, [300.0, 200.0])
    assert s == pytest.approx(1.7)
    assert bp.spin_box_to_ghum_roi(np.zeros(2), 1.0)[1] == pytest.approx(200.0)


def test_crop_mapping_follows_the_resampling() -> None:
    # A bright 8x8 block in a 224 crop lands where crop_to_ghum says once resampled to GHUM's 256 input.
    img = torch.zeros(1, 1, 224, 224)
    img[..., 100:108, 40:48] = 1.0
    g = torch.nn.functional.interpolate(img, size=(256, 256), mode="bilinear", align_corners=False)[0, 0]
    ys, xs = torch.meshgrid(torch.arange(256) + 0.5, torch.arange(256) + 0.5, indexing="ij")
    centroid = np.array([float((xs * g).sum() / g.sum()), float((ys * g).sum() / g.sum())])
    np.testing.assert_allclose(centroid, bp.crop_to_ghum(np.array([44.0, 104.0]), 224), atol=0.05)


def test_missing_model_file_is_one_line_error(tmp_path) -> None:
    with pytest.raises(NeuralfitError) as err:
        bp.BlazePoseGHUMBackbone(weights=str(tmp_path / "nope.tflite"))
    assert "nope.tflite" in str(err.value) and "\n" not in str(err.value)


def test_missing_interpreter_is_one_line_error(monkeypatch, tmp_path) -> None:
    fake = tmp_path / "pose_landmark_full.tflite"
    fake.write_bytes(b"x")
    monkeypatch.setattr(bp, "interpreter_available", lambda: False)
    with pytest.raises(NeuralfitError, match="ai-edge-litert") as err:
        bp.BlazePoseGHUMBackbone(weights=str(fake), engine="interpreter")
    assert "\n" not in str(err.value)
    # "auto" (what a loaded network uses) falls back to the PyTorch port: no optional package needed
    assert bp.BlazePoseGHUMBackbone(weights=str(fake)).uses_port("cpu")
    monkeypatch.setitem(__import__("sys").modules, "ai_edge_litert.interpreter", None)
    with pytest.raises(NeuralfitError, match="ai-edge-litert"):
        bp._interpreter_class()


def test_not_a_ghum_file_is_one_line_error(tmp_path) -> None:
    if not bp.interpreter_available():
        pytest.skip("needs ai-edge-litert")
    fake = tmp_path / "pose_landmark_full.tflite"
    fake.write_bytes(b"not a flatbuffer")
    trunk = bp.GHUMTrunk(bp.GHUMTrunkConfig(model_path=str(fake)))
    with pytest.raises(NeuralfitError) as err:
        trunk(np.zeros((1, 256, 256, 3), np.float32))
    assert "\n" not in str(err.value)


@needs_model
def test_network_checkpoint_holds_no_trunk_weights(tmp_path) -> None:
    from neuralfit.body import load_body_model
    from neuralfit.nets import MultiTaskNet, NetConfig, load_network, save_network

    body = load_body_model("free")
    cfg = NetConfig(backbone="blazepose-ghum", input_res=256, regressor_input="keypoints",
                    num_keypoints=len(body.keypoint_sets["spin24"].names))
    net = MultiTaskNet(cfg).eval()
    backbone_keys = [k for k in net.state_dict() if k.startswith("backbone.")]
    assert len(backbone_keys) == 2 * len(bp.GHUM_LEVELS)  # the standardisation buffers, nothing of mediapipe
    assert sum(net.state_dict()[k].numel() for k in backbone_keys) == 2 * sum(c for *_, c in bp.GHUM_LEVELS)
    path = tmp_path / "ghum.pt"
    save_network(path, net, body, provenance={"test": True}, half=True)
    again = load_network(path, body)
    x = _photo_like(1, 256, seed=3)
    with torch.no_grad():
        a, b = net(net.normalise(x)), again(again.normalise(x))
    assert (a["part_logits"] - b["part_logits"]).abs().max() < 0.05  # fp16 storage


@needs_model
def test_default_install_runs_the_port(monkeypatch) -> None:
    # without ai-edge-litert (the optional `ghum` extra) the backbone runs mediapipe's file through the port
    monkeypatch.setattr(bp, "interpreter_available", lambda: False)
    bb = bp.BlazePoseGHUMBackbone()
    assert bb.uses_port("cpu") and bb.uses_port("cuda")
    levels = bb.trunk_levels(_photo_like(1, 256, seed=5))
    assert [tuple(t.shape) for t in levels] == [(1, ch, 256 // s, 256 // s) for s, _, ch in bp.GHUM_LEVELS]
    assert bb._port is not None and all(torch.isfinite(t).all() for t in levels)


@needs_model
def test_port_reader_matches_the_tflite_package() -> None:
    tflite = pytest.importorskip("tflite")
    from neuralfit.nets.blazepose_port import GHUMTorchPort

    a = GHUMTorchPort(bp.default_model_path())  # the built-in reader on the flatbuffers runtime
    b = GHUMTorchPort(bp.default_model_path(), schema=tflite)
    assert a.tensor_names == b.tensor_names and a.tensor_shapes == b.tensor_shapes
    assert (a.input_id, a.output_ids) == (b.input_id, b.output_ids)
    assert sorted(a.consts) == sorted(b.consts) and all(np.array_equal(a.consts[k], b.consts[k]) for k in a.consts)
    assert [op[:3] for op in a.ops] == [op[:3] for op in b.ops]
    fields = {"CONV_2D": ("Conv2DOptions", "Padding StrideW StrideH FusedActivationFunction DilationWFactor DilationHFactor"),
              "DEPTHWISE_CONV_2D": ("DepthwiseConv2DOptions", "Padding StrideW StrideH DepthMultiplier "
                                    "FusedActivationFunction DilationWFactor DilationHFactor"),
              "ADD": ("AddOptions", "FusedActivationFunction"),
              "RESIZE_BILINEAR": ("ResizeBilinearOptions", "AlignCorners HalfPixelCenters"),
              "MAX_POOL_2D": ("Pool2DOptions", "Padding StrideW StrideH FilterWidth FilterHeight FusedActivationFunction")}
    checked = 0
    for (name, _, _, ta), (_, _, _, tb) in zip(a.ops, b.ops, strict=True):
        if name in fields:
            cls, names = fields[name]
            oa, ob = a._opts(cls, ta), b._opts(cls, tb)
            for f in names.split():
                assert getattr(oa, f)() == getattr(ob, f)(), (name, f)
                checked += 1
    assert checked > 500


@needs_trunk
def test_torch_port_matches_the_interpreter_tensor_by_tensor(backbone: bp.BlazePoseGHUMBackbone) -> None:
    from neuralfit.nets.blazepose_port import GHUMTorchPort

    port = GHUMTorchPort(bp.default_model_path())
    x = _photo_like(2, 256, seed=4)
    ref = backbone.trunk_levels(x)  # the interpreter
    # every 4D activation of the trunk, decoder and heatmap head (maps of 64 x 64 and smaller), one image;
    # the segmentation branch (128 and 256 px, unused here) is left out
    names = [n for i, n in enumerate(port.tensor_names)
             if len(port.tensor_shapes[i]) == 4 and i not in port.consts and i != port.input_id
             and port.tensor_shapes[i][1] <= 64]
    with torch.no_grad():
        mine = port(x[:1], keep=names)
    backbone.trunk._open()
    interp = backbone.trunk._interp
    interp.set_tensor(backbone.trunk._input_id, x[:1].permute(0, 2, 3, 1).numpy().copy())
    interp.invoke()
    checked, worst = 0, 0.0
    for name, t in mine.items():
        want = interp.get_tensor(port.tensor_names.index(name))
        got = t.permute(0, 2, 3, 1).numpy()
        rel = float(np.abs(got - want).max() / max(np.abs(want).max(), 1e-3))
        worst = max(worst, rel)
        # fp32 with another summation order (XNNPACK); a wrong padding, stride or layout gives errors O(1)
        assert rel <= 1e-3, name
        checked += 1
    print(f"port vs interpreter: {checked} tensors, worst max-error / range {worst:.2e}")
    assert checked > 100
    # and the backbone's levels through the port engine, batched
    torch_bb = bp.BlazePoseGHUMBackbone(engine="torch")
    for a, b in zip(torch_bb.trunk_levels(x), ref, strict=True):
        assert (a - b).abs().max() <= 3e-3 * b.abs().max()


@needs_model
def test_shipped_ghum_assets_load() -> None:
    from pathlib import Path

    import neuralfit.nets as nets_pkg
    from neuralfit.body import load_body_model
    from neuralfit.nets import load_network
    from neuralfit.neural import NeuralMeshModel

    assets = Path(nets_pkg.__file__).parent / "assets"
    if not (assets / "ghum.pt").is_file():
        pytest.skip("no ghum.pt asset")
    body = load_body_model("free")
    net = load_network(assets / "ghum.pt", body)
    assert net.config.backbone == "blazepose-ghum" and net.config.input_res == 256
    nm = NeuralMeshModel.load(assets / "ghum_nm.pt", body=body)
    assert nm.features.shape[-1] == net.config.feature_dim
    assert (assets / "ghum.pt").stat().st_size + (assets / "ghum_nm.pt").stat().st_size < 30e6


def _rel_errors(got: dict[str, torch.Tensor], want: dict[str, torch.Tensor]) -> dict[str, float]:
    assert got.keys() == want.keys()
    return {k: float((got[k] - want[k]).abs().max() / want[k].abs().max().clamp_min(1e-3)) for k in want}


@needs_model
def test_planned_port_equals_the_plain_replay() -> None:
    """forward (pruned, pads folded, in place, channels-last) against reference (every op, as first ported)."""
    from neuralfit.nets.blazepose_port import GHUMTorchPort

    port = GHUMTorchPort(bp.default_model_path())
    levels = [name for _, name, _ in bp.GHUM_LEVELS]
    every = [n for i, n in enumerate(port.tensor_names)  # all activations at 64 px and below, as in the test above
             if len(port.tensor_shapes[i]) == 4 and i not in port.consts and i != port.input_id
             and port.tensor_shapes[i][1] <= 64]
    noise = torch.rand(2, 3, 256, 256, generator=torch.Generator().manual_seed(7))
    for x in (noise, _photo_like(2, 256, seed=6)):
        x0 = x.clone()
        for keep in (levels, every, None):  # None: the graph outputs (segmentation, landmarks: reshape, sigmoid)
            with torch.no_grad():
                ref = port.reference(x, keep)
                port.channels_last = False
                same_layout = port(x, keep)
                port.channels_last = True
                fast = port(x, keep)
            # same layout, same kernels: pruning, folded pads and in-place ops change nothing (bit-identical
            # here; the margin only allows another CPU's kernel choice)
            assert max(_rel_errors(same_layout, ref).values()) <= 1e-6
            # channels-last: oneDNN sums the same float32 products in another order. Each product rounds at
            # 2^-24 ~ 6e-8, sums run over up to 25 x 864 terms of an encoder stream reaching ~230, ~60 layers
            # deep: measured <= 1.5e-5 of the range on the levels, <= 2e-4 on ReLU6 maps (range 6, fed by that
            # ~40x larger stream) and <= 5e-4 on the segmentation logits (unused; range ~1,500 on noise, after
            # 256 px upsampling). A wrong pad, stride or layout errs by O(1).
            errs = _rel_errors(fast, ref)
            assert max(errs.values()) <= (1e-4 if keep is levels else 1e-3), max(errs.items(), key=lambda kv: kv[1])
        assert torch.equal(x, x0)  # in-place ops never touch the caller's tensor
    # a batch is its images one by one
    with torch.no_grad():
        batch, single = port(noise, levels), port(noise[1:], levels)
    assert max(_rel_errors({k: v[1:] for k, v in batch.items()}, single).values()) <= 1e-4


@needs_model
def test_planned_port_runs_only_what_the_levels_need() -> None:
    from neuralfit.nets.blazepose_port import GHUMTorchPort

    port = GHUMTorchPort(bp.default_model_path())
    levels = [name for _, name, _ in bp.GHUM_LEVELS]
    with torch.no_grad():
        port(_photo_like(1, 256), levels)
    plan = next(iter(port._plans.values()))
    made = {port.tensor_names[st.out] for st in plan}
    assert set(levels) <= made
    assert "Identity_2" not in made and "Identity" not in made  # segmentation and landmarks skipped
    assert not any(port.tensor_shapes[st.out][1] > 128 for st in plan)  # nothing at the 256 px mask size
    assert not any(st.op is not None and st.op[0] == "PAD" for st in plan)  # every PAD folded into its conv
    n_ops = sum(op[0] != "DEQUANTIZE" for op in port.ops)
    assert len(plan) < 0.6 * n_ops
