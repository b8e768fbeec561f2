"""Training loop, feature bank and GMM MLE on a tiny fake data set (the toy capsule body, 64-px crops)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.nets.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from neuralfit.training.contrastive import FeatureBank, adjacency_matrix, contrastive_loss, hop_distances

RES = 64


@pytest.fixture(scope="module")
def body():
    from neuralfit.body import load_body_model

    return load_body_model("free")


class FakeCrops(torch.utils.data.Dataset):
    """Free-body people splatted into 64-px crops: image = part colour + noise, part mask, z-buffered
    low-res vertex visibility, spin24 keypoints, SMPL parameters. Crop camera of the architecture doc
    (f = 5000 res / 224, principal point at the centre)."""

    def __init__(self, body, n: int = 8, seed: int = 0):
        rng = np.random.default_rng(seed)
        self.items = []
        f = 5000.0 * RES / 224.0
        colours = np.asarray(body.part_colors, dtype=np.float32) / 255.0
        labels = body.part_labels.numpy()
        for _ in range(n):
            pose = np.zeros(72, dtype=np.float32)
            pose[3:] = rng.normal(0, 0.15, 69)
            # upright and facing the camera (half turn about x), then a random yaw about the body's axis
            r = axis_angle_to_matrix(torch.tensor([math.pi, 0.0, 0.0])) @ axis_angle_to_matrix(
                torch.tensor([0.0, rng.uniform(-0.6, 0.6), 0.0]))
            pose[:3] = matrix_to_axis_angle(r).numpy()
            betas = rng.normal(0, 0.5, 10).astype(np.float32)
            args = {"betas": torch.tensor(betas)[None], "global_orient": torch.tensor(pose[:3])[None],
                    "body_pose": torch.tensor(pose[3:])[None]}
            with torch.no_grad():
                centre = body(**args).vertices[0].mean(0).numpy()
                transl = np.array([-centre[0], -centre[1], 2 * f / (RES * 0.9) - centre[2]], dtype=np.float32)
                out = body(**args, transl=torch.tensor(transl)[None], lowres=True)
            verts = out.vertices[0].numpy()
            kp3 = body.keypoints(out, "spin24")[0].numpy()
            low = out.lowres_vertices[0].numpy()
            uv = f * verts[:, :2] / verts[:, 2:] + RES / 2
            low_uv = f * low[:, :2] / low[:, 2:] + RES / 2
            kp_uv = f * kp3[:, :2] / kp3[:, 2:] + RES / 2
            # z-buffer by painting far-to-near (numpy keeps the last write per pixel)
            order = np.argsort(-verts[:, 2])
            px = np.clip(uv[order].astype(int), 0, RES - 1)
            part = np.zeros((RES, RES), dtype=np.int64)
            depth = np.full((RES, RES), np.inf)
            part[px[:, 1], px[:, 0]] = 1 + labels[order]
            depth[px[:, 1], px[:, 0]] = verts[order, 2]
            lp = np.clip(low_uv.astype(int), 0, RES - 1)
            vis = low[:, 2] <= depth[lp[:, 1], lp[:, 0]] + 0.03
            img = colours[part].transpose(2, 0, 1) + rng.normal(0, 0.02, (3, RES, RES))
            self.items.append({
                "image": torch.tensor(np.clip(img, 0, 1), dtype=torch.float32),
                "partseg": torch.tensor(part),
                "keypoints": torch.tensor(np.concatenate([kp_uv, np.ones((24, 1))], 1), dtype=torch.float32),
                "pose": torch.tensor(pose), "betas": torch.tensor(betas), "has_smpl": torch.tensor(1.0),
                "joints3d": torch.tensor(np.concatenate([kp3, np.ones((24, 1))], 1), dtype=torch.float32),
                "transl": torch.tensor(transl), "cam_f": torch.tensor(f),
                "lowres_uv": torch.tensor(low_uv, dtype=torch.float32), "lowres_vis": torch.tensor(vis),
            })

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


# ----------------------------------------------------------------------------- feature bank


def test_bank_ema_step_and_unit_norm():
    bank = FeatureBank(5, 2, 8, momentum=0.9, seed=1)
    before = bank.bank.clone()
    f = torch.nn.functional.normalize(torch.randn(3, 8), dim=-1)
    classes = torch.tensor([0, 0, 7])  # two features for (r=0, k=0), one for (r=3, k=1)
    bank.update(f, classes)
    flat_before, flat = before.view(10, 8), bank.bank.view(10, 8)
    expect0 = torch.nn.functional.normalize(0.9 * flat_before[0] + 0.1 * f[:2].mean(0), dim=0)
    expect7 = torch.nn.functional.normalize(0.9 * flat_before[7] + 0.1 * f[2], dim=0)
    assert torch.allclose(flat[0], expect0, atol=1e-6) and torch.allclose(flat[7], expect7, atol=1e-6)
    untouched = [i for i in range(10) if i not in (0, 7)]
    assert torch.equal(flat[untouched], flat_before[untouched])
    assert bank.updates.view(-1).tolist() == [1, 0, 0, 0, 0, 0, 0, 1, 0, 0]
    for _ in range(50):  # repeated updates converge to the feature and stay unit length
        bank.update(f[2:], torch.tensor([7]))
        assert torch.allclose(bank.bank.norm(dim=-1), torch.ones(5, 2), atol=1e-6)
    assert float(flat[7] @ f[2]) > 0.999


def _path_edges(n):
    return torch.stack([torch.arange(n - 1), torch.arange(1, n)], dim=1)


def test_adjacency_and_hop_distances_on_a_path():
    edges = _path_edges(6)
    adj = adjacency_matrix(edges, 6)
    assert adj[2].nonzero().squeeze(1).tolist() == [1, 3] and not adj.diagonal().any()
    assert adjacency_matrix(edges, 6, hops=2)[0].nonzero().squeeze(1).tolist() == [1, 2]
    hops = hop_distances(edges, 6, max_hops=3)
    i, j = torch.meshgrid(torch.arange(6), torch.arange(6), indexing="ij")
    assert torch.equal(hops, (i - j).abs().clamp(max=4))


def test_mesh_neighbours_are_not_negatives():
    torch.manual_seed(0)
    bank = FeatureBank(6, 2, 16)
    neighbours = adjacency_matrix(_path_edges(6), 6)
    pos = torch.nn.functional.normalize(torch.randn(1, 16), dim=-1)
    cls = torch.tensor([2 * 2 + 0])  # vertex 2, component 0
    bg = torch.zeros(0, 16)
    base = contrastive_loss(pos, cls, bank, neighbours, bg)
    # Making a neighbour (vertex 3) look exactly like the feature must not change the loss ...
    bank.bank[3, 1] = pos[0]
    assert torch.allclose(contrastive_loss(pos, cls, bank, neighbours, bg), base)
    # ... while the same change at a non-neighbour (vertex 5), or without the exclusion, raises it.
    assert contrastive_loss(pos, cls, bank, torch.zeros_like(neighbours), bg) > base + 0.5
    bank.bank[5, 0] = pos[0]
    assert contrastive_loss(pos, cls, bank, neighbours, bg) > base + 0.5
    # The vertex's other orientation component stays a negative (seed's L_3D).
    bank2 = FeatureBank(6, 2, 16)
    l0 = contrastive_loss(pos, cls, bank2, neighbours, bg)
    bank2.bank[2, 1] = pos[0]
    assert contrastive_loss(pos, cls, bank2, neighbours, bg) > l0 + 0.5


def test_background_features_are_negatives_with_gradient():
    bank = FeatureBank(4, 1, 8, seed=3)
    neighbours = torch.zeros(4, 4, dtype=torch.bool)
    pos = bank.bank[1].clone()  # exactly its own bank entry
    bg = torch.nn.functional.normalize(torch.randn(5, 8), dim=-1).requires_grad_()
    far = contrastive_loss(pos, torch.tensor([1]), bank, neighbours, bg)
    near = contrastive_loss(pos, torch.tensor([1]), bank, neighbours, torch.cat([bg, pos]))
    assert near > far + 0.5  # a background pixel that looks like the vertex is penalised
    far.backward()
    assert bg.grad is not None and bg.grad.abs().sum() > 0


# ----------------------------------------------------------------------------- metrics


def test_pa_mpjpe_is_similarity_invariant_and_sees_pose_errors():
    from neuralfit.training.metrics import pa_mpjpe, procrustes_align

    gt = torch.randn(4, 14, 3)
    r = axis_angle_to_matrix(torch.randn(4, 3))
    pred = 1.7 * gt @ r.transpose(1, 2) + torch.randn(4, 1, 3)
    assert torch.allclose(pa_mpjpe(pred, gt), torch.zeros(4), atol=1e-4)
    noisy = gt.clone()
    noisy[:, 0] += torch.tensor([0.5, 0.0, 0.0])
    assert (pa_mpjpe(noisy, gt) > 0.005).all()
    # Procrustes is the least-squares similarity: no other one (here: centroid shift only) fits better.
    sq_pa = ((procrustes_align(noisy, gt) - gt) ** 2).sum(dim=(1, 2))
    shifted = noisy - noisy.mean(1, keepdim=True) + gt.mean(1, keepdim=True)
    assert (sq_pa <= ((shifted - gt) ** 2).sum(dim=(1, 2)) + 1e-6).all()


def test_iou_pck_and_feature_hits():
    from neuralfit.training.metrics import feature_hits, miou, part_iou, pck

    gt = torch.tensor([[0, 1, 1, 2]])
    pred = torch.tensor([[0, 1, 2, 2]])
    inter, union = part_iou(pred, gt, 3)
    assert inter.tolist() == [1, 1, 1] and union.tolist() == [1, 2, 2]
    assert miou(inter, union) == pytest.approx((1 + 0.5 + 0.5) / 3)
    kp = torch.tensor([[[0.0, 0.0, 1], [100.0, 0.0, 1], [50.0, 50.0, 0]]])
    hits, vis = pck(kp[..., :2] + torch.tensor([[[5.0, 0], [20.0, 0], [0, 0]]]), kp, alpha=0.1)
    assert (hits, vis) == (1, 2)  # threshold 10 px: 5 px hit, 20 px miss, invisible ignored
    # Vertex i sits at cell (row 0, column i) of a 6 x 6 map (res 24, stride 4) showing the bank entry of
    # vertex shown[i]; on a path mesh vertex i's hits are those within 2 hops of shown[i].
    bank = torch.nn.functional.normalize(torch.randn(6, 2, 8), dim=-1)
    hops = hop_distances(_path_edges(6), 6)
    shown = torch.tensor([1, 1, 2, 5, 4, 0])  # hop distances 1, 0, 0, 2, 0, 5 -> 5 hits of 6
    comp = torch.tensor([0, 1, 0, 1, 0, 1])  # any orientation component counts
    feats = bank[shown, comp].T.reshape(1, 8, 1, 6).expand(1, 8, 6, 6)
    uv = torch.stack([torch.arange(6) * 4 + 2.0, torch.full((6,), 2.0)], dim=1)[None]
    vis = torch.ones(1, 6, dtype=torch.bool)
    assert feature_hits(feats, uv, vis, bank, hops, res=24) == (5, 6)
    vis[0, 5] = False
    assert feature_hits(feats, uv, vis, bank, hops, res=24) == (5, 5)
    assert feature_hits(feats, uv, vis, bank, hops, res=24, max_hops=0) == (3, 5)


# ----------------------------------------------------------------------------- training loop


def test_prepare_batch_aliases_and_visibility():
    from neuralfit.training.batch import prepare_batch

    raw = {"img": torch.zeros(2, 3, 32, 32, dtype=torch.uint8) + 255, "part": torch.ones(2, 24, 3),
           "visible": torch.zeros(2, 24, dtype=torch.bool), "shape": torch.ones(2, 10), "S": torch.ones(2, 24, 4),
           "has_joints3d": torch.tensor([1.0, 0.0]), "imgname": ["a.jpg", "b.jpg"]}
    b = prepare_batch(raw, "cpu")
    assert torch.equal(b["image"], torch.ones(2, 3, 32, 32))  # uint8 -> [0, 1]
    assert (b["keypoints"][..., 2] == 0).all()  # hidden keypoints lose their confidence
    assert b["joints3d"][0, :, 3].eq(1).all() and b["joints3d"][1, :, 3].eq(0).all()
    assert b["betas"].shape == (2, 10) and not b["has_smpl"].any() and "imgname" not in b
    with pytest.raises(NeuralfitError, match="no 'image'"):
        prepare_batch({"pose": torch.zeros(1, 72)}, "cpu")


@pytest.fixture(scope="module")
def fake_data(body):
    return FakeCrops(body, n=4)


def _small_configs(**train):
    from neuralfit.nets import NetConfig
    from neuralfit.training.network import TrainConfig

    net = NetConfig(input_res=RES, feature_dim=32, decoder_channels=(64, 48, 32, 32), head_channels=32,
                    regressor_hidden=256)
    cfg = TrainConfig(lr=1e-3, batch_size=4, background_per_image=32, num_workers=0, **train)
    return net, cfg


def test_overfitting_a_tiny_batch_lowers_every_dense_loss(body, fake_data):
    from neuralfit.training.network import NetworkTrainer

    torch.manual_seed(0)
    # The ImageNet backbone is frozen to keep this under 20 s on 2 loaded cores; the loop is the same.
    net_cfg, cfg = _small_configs(freeze_backbone=True)
    trainer = NetworkTrainer(body, net_cfg, cfg)
    frozen = trainer.net.backbone.net._conv_stem.weight.clone()
    batch = torch.utils.data.default_collate([fake_data[i] for i in range(4)])
    first = trainer.step(batch)
    assert first["feature"] > 0 and first["part"] > 0 and first["heatmap"] > 0
    for _ in range(7):
        last = trainer.step(batch)
    assert torch.equal(trainer.net.backbone.net._conv_stem.weight, frozen)
    # Eight Adam steps at lr 1e-3 on four images: each dense term clearly lower, and the total too.
    assert last["feature"] < 0.67 * first["feature"]
    assert last["heatmap"] < 0.8 * first["heatmap"]  # starts at ~1 (zero-initialised head), measured 0.66
    assert last["part"] < 0.95 * first["part"]  # 25-class CE from ~log 25; measured 0.87-0.91
    assert last["total"] < 0.67 * first["total"]
    # the bank learnt the classes it saw and stayed unit length
    assert (trainer.bank.updates > 0).sum() > 0
    assert torch.allclose(trainer.bank.bank.norm(dim=-1), torch.ones(1), atol=1e-5)


def test_finetuning_the_last_stages_keeps_the_rest_and_batch_norm_frozen(body, fake_data):
    from neuralfit.training.network import NetworkTrainer

    torch.manual_seed(0)
    net_cfg, cfg = _small_configs(freeze_backbone=True, finetune_stages=2)
    trainer = NetworkTrainer(body, net_cfg, cfg)
    stages = trainer.net.backbone.stages()
    before = [[p.detach().clone() for p in st.parameters()] for st in stages]
    bn_mean = trainer.net.backbone.net._bn1.running_mean.clone()
    batch = torch.utils.data.default_collate([fake_data[i] for i in range(4)])
    trainer.step(batch)
    changed = [any(not torch.equal(a, b) for a, b in zip(old, st.parameters(), strict=True))
               for old, st in zip(before, stages, strict=True)]
    assert changed == [False, False, False, True, True]
    assert torch.equal(trainer.net.backbone.net._bn1.running_mean, bn_mean)  # statistics stay ImageNet's
    assert trainer.optimizer.param_groups[1]["lr"] == pytest.approx(cfg.lr * cfg.backbone_lr_scale)


def test_init_starts_a_new_run_from_a_checkpoint(body, fake_data, tmp_path):
    from neuralfit.training.network import train_network

    net_cfg, cfg = _small_configs(epochs=1, max_steps_per_epoch=1)
    net_cfg.pretrained = False
    first = train_network([fake_data], tmp_path / "a.pt", body, net_cfg, cfg, progress=False)
    cfg.max_steps_per_epoch = 0  # no step: the new run's weights are exactly the checkpoint's
    second = train_network([fake_data], tmp_path / "b.pt", body, net_cfg, cfg, progress=False,
                           init=tmp_path / "a.pt")
    for (k, a), b in zip(first.net.state_dict().items(), second.net.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert torch.equal(first.bank.bank, second.bank.bank)
    assert second.epoch == 1 and second.history == []


def test_train_network_writes_checkpoint_curves_and_resumes(body, fake_data, tmp_path):
    from neuralfit.nets import load_network
    from neuralfit.training.network import curve_paths, train_network

    net_cfg, cfg = _small_configs(epochs=1, max_steps_per_epoch=1)
    net_cfg.pretrained = False  # the loop, not the ImageNet start, is under test
    out = tmp_path / "net.pt"
    train_network([fake_data], out, body, net_cfg, cfg, progress=False)
    state, curves_json, curves_png = curve_paths(out)
    assert out.is_file() and state.is_file() and curves_json.is_file() and curves_png.stat().st_size > 1000
    net = load_network(out, body)
    assert net.config.input_res == RES and net.checkpoint_info["provenance"]["epochs_done"] == 1
    assert net.checkpoint_info["feature_bank"].shape == (body.lowres.part_labels.shape[0], 3, 32)
    cfg.epochs = 2
    trainer = train_network([fake_data], out, body, net_cfg, cfg, resume=True, progress=False)
    assert trainer.epoch == 2 and len(trainer.history) == 2
    assert load_network(out, body).checkpoint_info["provenance"]["epochs_done"] == 2
    with pytest.raises(NeuralfitError, match="no training state"):
        train_network([fake_data], tmp_path / "other.pt", body, net_cfg, cfg, resume=True, progress=False)


def test_gmm_mle_matches_the_weighted_mean(body, fake_data):
    from neuralfit.nets import MultiTaskNet
    from neuralfit.training.batch import ground_truth, prepare_batch
    from neuralfit.training.contrastive import sample_at
    from neuralfit.training.gmm import accumulate_statistics, build_neural_model

    net_cfg, _ = _small_configs()
    net_cfg.pretrained = False
    torch.manual_seed(0)
    net = MultiTaskNet(net_cfg).eval()
    stats = accumulate_statistics(net, [fake_data], body, num_components=3, tau=10.0, batch_size=2, progress=False)
    model = build_neural_model(stats, body, num_clutter=2)
    v_low = body.lowres.part_labels.shape[0]
    assert model.features.shape == (v_low, 3, 32) and model.clutter.shape == (2, 32)
    assert torch.allclose(model.features.norm(dim=-1), torch.ones(1), atol=1e-5)
    # Recompute one well-observed (vertex, component) by hand: phi = normalise(sum alpha f).
    r, k = np.unravel_index(int(stats.counts.argmax()), stats.counts.shape)
    total = torch.zeros(32, dtype=torch.float64)
    batch = prepare_batch(torch.utils.data.default_collate([fake_data[i] for i in range(4)]), "cpu")
    with torch.no_grad():
        feats = net(net.normalise(batch["image"]))["features"]
    gt = ground_truth(batch, body, 3, 10.0)
    f = sample_at(feats, gt.uv, RES)
    for b in range(4):
        if gt.vis[b, r]:
            total += gt.alpha[b, r, k].double() * f[b, r].double()
    assert torch.allclose(model.features[r, k], torch.nn.functional.normalize(total, dim=0).float(), atol=1e-4)
    assert stats.counts.sum() > 0 and stats.background_seen > 0
    assert stats.kappa() > 0


def test_evaluate_network_reports_the_issue_numbers(body, fake_data):
    from neuralfit.nets import MultiTaskNet
    from neuralfit.training.metrics import evaluate_network

    net_cfg, _ = _small_configs()
    net_cfg.pretrained = False
    net = MultiTaskNet(net_cfg).eval()
    bank = torch.nn.functional.normalize(torch.randn(body.lowres.part_labels.shape[0], 3, 32), dim=-1)
    res = evaluate_network(net, [fake_data], body, bank=bank, batch_size=4, progress=False)
    assert set(res) == {"pa_mpjpe_mm", "part_miou", "pck@0.1", "feature_acc@2"}
    assert res["pa_mpjpe_mm"] > 0 and all(0 <= res[k] <= 1 for k in ("part_miou", "pck@0.1", "feature_acc@2"))


@pytest.mark.slow
def test_cli_train_network_and_gmm_on_a_tiny_synthetic_set(tmp_path):
    """End to end through the click commands on 4 images from the data engine (res 64)."""
    from click.testing import CliRunner
    from neuralfit.cli.train_nets import gmm, network

    from neuralfit.data import SynthConfig, generate_dataset
    from neuralfit.neural.model import NeuralMeshModel

    generate_dataset(tmp_path / "data", count=4, seed=0, config=SynthConfig(res=64), progress=False)
    runner = CliRunner()
    r = runner.invoke(network, ["--data", str(tmp_path / "data"), "--out", str(tmp_path / "net.pt"), "--epochs", "1",
                                "--batch-size", "4", "--res", "64", "--feature-dim", "16", "--workers", "0",
                                "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0 and (tmp_path / "net_curves.png").is_file(), r.output
    r = runner.invoke(gmm, ["--data", str(tmp_path / "data"), "--network", str(tmp_path / "net.pt"), "--out",
                            str(tmp_path / "nm.pt"), "--workers", "0", "--quiet"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    model = NeuralMeshModel.load(tmp_path / "nm.pt")
    assert model.dim == 16 and model.n_orientations == 3
