"""GHUM heads on cached trunk features: cache round trip, training steps, regressor copy, checkpoint."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.nets import blazepose as bp


def _have_model_file() -> bool:
    try:
        return bp.default_model_path().is_file()
    except NeuralfitError:
        return False


# without ai-edge-litert the backbone runs the file through the PyTorch port (fast enough for 4 crops)
pytestmark = pytest.mark.skipif(not _have_model_file(), reason="needs mediapipe's pose_landmark_full.tflite")


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from neuralfit.cli.train_nets import open_datasets

    from neuralfit.data import SynthConfig, generate_dataset

    root = tmp_path_factory.mktemp("ghum")
    generate_dataset(root / "data", count=4, seed=0, config=SynthConfig(res=256), progress=False)
    return root, open_datasets((str(root / "data"),), 256, augment=False)[0]


def test_cache_holds_the_trunk_levels(tiny) -> None:
    from neuralfit.training.ghum_heads import CachedLevels, cache_trunk_levels, level_statistics

    root, ds = tiny
    backbone = bp.BlazePoseGHUMBackbone(num_threads=1)
    cache = cache_trunk_levels(backbone, ds, root / "cache", progress=False)
    cached = CachedLevels(ds, cache)
    assert len(cached) == 4
    direct = backbone.trunk_levels(torch.as_tensor(ds[2]["img"])[None].float())
    for a, b in zip(cached[2]["trunk_levels"], direct, strict=True):
        assert a.shape == b.shape[1:]
        np.testing.assert_allclose(a.numpy(), b[0].numpy(), rtol=2e-3, atol=2e-3 * float(b.abs().max()))
    means, stds = level_statistics(cache)
    assert [m.shape[0] for m in means] == [c for *_, c in bp.GHUM_LEVELS]
    assert all(bool((s > 0).all()) for s in stds)


def test_heads_train_and_keep_the_copied_regressor(tiny) -> None:
    from neuralfit.body import load_body_model
    from neuralfit.nets import MultiTaskNet, NetConfig, load_network, save_network
    from neuralfit.nets.checkpoint import read_checkpoint
    from neuralfit.training.ghum_heads import CachedLevels, GHUMHeadsConfig, copy_regressor, train_heads

    root, ds = tiny
    body = load_body_model("free")
    # a stand-in for the shipped keypoint regressor: any keypoint-regressor checkpoint with random weights
    src = MultiTaskNet(NetConfig(input_res=64, regressor_input="keypoints", pretrained=False))
    save_network(root / "src.pt", src, body)
    if not (root / "cache" / "meta.json").is_file():
        from neuralfit.training.ghum_heads import cache_trunk_levels

        cache_trunk_levels(bp.BlazePoseGHUMBackbone(num_threads=1), ds, root / "cache", progress=False)
    cfg = GHUMHeadsConfig(steps=3, batch_size=2, save_every=2, num_workers=0)
    trainer = train_heads([CachedLevels(ds, root / "cache")], root / "net.pt", body, cfg,
                          regressor_from=root / "src.pt", progress=False)
    assert len(trainer.history) == 3 and all(np.isfinite(h["total"]) for h in trainer.history)
    net = load_network(root / "net.pt", body)
    assert net.config.backbone == "blazepose-ghum" and net.config.input_res == 256
    want = read_checkpoint(root / "src.pt")["state_dict"]
    for k, v in net.regressor.state_dict().items():
        torch.testing.assert_close(v, want["regressor." + k].float())  # regressor weights 0: untouched
    assert float(net.backbone.level4_std.min()) > 0 and not torch.allclose(net.backbone.level4_std,
                                                                          torch.ones_like(net.backbone.level4_std))
    with pytest.raises(NeuralfitError, match="image features"):
        img_src = MultiTaskNet(NetConfig(input_res=64, pretrained=False))
        save_network(root / "img.pt", img_src, body)
        copy_regressor(net, root / "img.pt")


def test_lovasz_softmax_is_zero_when_right_and_ranks_errors() -> None:
    from neuralfit.training.ghum_heads import lovasz_softmax

    labels = torch.zeros(2, 8, 8, dtype=torch.long)
    labels[:, 2:5, 2:5] = 3
    right = torch.nn.functional.one_hot(labels, 25).permute(0, 3, 1, 2).float() * 50.0
    assert float(lovasz_softmax(right, labels)) < 1e-6
    wrong = right.clone()
    wrong[:, :, 2:5, 2:5] = right[:, :, :1, :1]  # the part predicted as background
    half = right.clone()
    half[:, :, 2:5, 2:3] = right[:, :, :1, :1]
    assert 0 < float(lovasz_softmax(half, labels)) < float(lovasz_softmax(wrong, labels)) <= 1.0
    logits = torch.randn(2, 25, 8, 8, requires_grad=True)
    lovasz_softmax(logits, labels).backward()
    assert torch.isfinite(logits.grad).all() and float(logits.grad.abs().sum()) > 0


def test_validation_keeps_the_best_checkpoint(tiny) -> None:
    import json

    from neuralfit.body import load_body_model
    from neuralfit.nets import load_network
    from neuralfit.training.ghum_heads import CachedLevels, GHUMHeadsConfig, train_heads, validation_paths

    root, ds = tiny
    body = load_body_model("free")
    if not (root / "cache" / "meta.json").is_file():
        from neuralfit.training.ghum_heads import cache_trunk_levels

        cache_trunk_levels(bp.BlazePoseGHUMBackbone(num_threads=1), ds, root / "cache", progress=False)
    cfg = GHUMHeadsConfig(steps=4, batch_size=2, save_every=2, num_workers=0, w_part_lovasz=1.0, head_channels=16)
    out = root / "val_net.pt"
    trainer = train_heads([CachedLevels(ds, root / "cache")], out, body, cfg, progress=False, val_sets=[ds])
    assert all("part_lovasz" in h for h in trainer.history)
    val_json, best = validation_paths(out)
    record = json.loads(val_json.read_text())
    assert [r["step"] for r in record] == [2, 4] and all(0 <= r["part_miou"] <= 1 for r in record)
    net = load_network(best, body)
    chosen = net.checkpoint_info["provenance"]["validation_best"]
    assert chosen["part_miou"] == max(r["part_miou"] for r in record)
