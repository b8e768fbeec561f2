"""VPoser v2 layout: official checkpoints load exactly; bad and v1 inputs fail with one clear error."""

from __future__ import annotations

import importlib.util

import pytest
import torch
from neuralfit.priors import load_pose_prior, read_state_dict
from neuralfit.priors.vposer import VPoser, VPoserConfig

from neuralfit.errors import NeuralfitError

# The parameter names of the official human_body_prior v2 VPoser (V02_05), as they appear after the
# Lightning module's `vp_model.` prefix. BatchNorm layers also carry running stats and a counter.
OFFICIAL_KEYS = {
    *(f"encoder_net.{i}.{p}" for i in (1, 4)
      for p in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")),
    *(f"encoder_net.{i}.{p}" for i in (2, 6, 7) for p in ("weight", "bias")),
    *(f"encoder_net.8.{h}.{p}" for h in ("mu", "logvar") for p in ("weight", "bias")),
    *(f"decoder_net.{i}.{p}" for i in (0, 3, 5) for p in ("weight", "bias")),
}

V02_05_YAML = """---
general:
  expr_id: V02_05
model_params:
  num_neurons : 512
  latentD : 32
"""


class HParams:
    """Stands in for the omegaconf config a Lightning checkpoint pickles (not a tensor: weights_only refuses it)."""

    def __init__(self) -> None:
        self.model_params = {"num_neurons": 512, "latentD": 32}


def _random_official_state(num_neurons: int = 512, latent: int = 32, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the official shapes, written independently of our module."""
    g = torch.Generator().manual_seed(seed)
    h, d = num_neurons, latent
    shapes = {
        "encoder_net.1": (63,), "encoder_net.2.weight": (h, 63), "encoder_net.2.bias": (h,),
        "encoder_net.4": (h,), "encoder_net.6.weight": (h, h), "encoder_net.6.bias": (h,),
        "encoder_net.7.weight": (h, h), "encoder_net.7.bias": (h,),
        "encoder_net.8.mu.weight": (d, h), "encoder_net.8.mu.bias": (d,),
        "encoder_net.8.logvar.weight": (d, h), "encoder_net.8.logvar.bias": (d,),
        "decoder_net.0.weight": (h, d), "decoder_net.0.bias": (h,), "decoder_net.3.weight": (h, h),
        "decoder_net.3.bias": (h,), "decoder_net.5.weight": (126, h), "decoder_net.5.bias": (126,),
    }
    sd: dict[str, torch.Tensor] = {}
    for k, shape in shapes.items():
        if k in ("encoder_net.1", "encoder_net.4"):  # BatchNorm1d
            sd[f"{k}.weight"] = 1.0 + 0.1 * torch.randn(shape, generator=g)
            sd[f"{k}.bias"] = 0.1 * torch.randn(shape, generator=g)
            sd[f"{k}.running_mean"] = 0.1 * torch.randn(shape, generator=g)
            sd[f"{k}.running_var"] = 0.5 + torch.rand(shape, generator=g)
            sd[f"{k}.num_batches_tracked"] = torch.tensor(1000)
        else:
            sd[k] = torch.randn(shape, generator=g) / (shape[-1] ** 0.5)
    return sd


def _write_experiment(root, sd, yaml_text=V02_05_YAML):
    """An official-style experiment folder: V02_05.yaml + snapshots/<name>.ckpt (Lightning format)."""
    folder = root / "V02_05"
    (folder / "snapshots").mkdir(parents=True)
    (folder / "V02_05.yaml").write_text(yaml_text)
    state = {f"vp_model.{k}": v for k, v in sd.items()}
    # A Lightning module may hold more than the VAE (e.g. a body model's buffers): they must be ignored.
    state["bm_train.init_v_template"] = torch.zeros(10, 3)
    ckpt = {"epoch": 13, "global_step": 1, "pytorch-lightning_version": "1.2.0", "state_dict": state,
            "hyper_parameters": HParams(), "optimizer_states": [{"state": {}}]}
    path = folder / "snapshots" / "V02_05_epoch=13_val_loss=0.03.ckpt"
    torch.save(ckpt, path)
    return folder, path


def test_module_keys_match_official_layout():
    assert set(VPoser().state_dict()) == OFFICIAL_KEYS


def test_official_checkpoint_folder_loads_with_no_missing_or_unexpected_keys(tmp_path):
    sd = _random_official_state()
    folder, ckpt = _write_experiment(tmp_path, sd)
    # Strict loading inside load_pose_prior raises on any missing/unexpected key; also check directly.
    read = read_state_dict(ckpt)
    stripped = {k.removeprefix("vp_model."): v for k, v in read.items() if k.startswith("vp_model.")}
    missing, unexpected = VPoser().load_state_dict(stripped, strict=False)
    assert missing == [] and unexpected == []

    prior = load_pose_prior(folder)
    loaded = prior.backbone.state_dict()
    for k, v in sd.items():
        assert torch.equal(loaded[k], v.to(loaded[k].dtype)), k

    z = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    mats = prior.backbone.decode_matrices(z)
    eye = torch.eye(3).expand_as(mats)
    # Gram-Schmidt output: orthonormal to float32 rounding (~1e-6 per entry), det +1.
    assert torch.allclose(mats.transpose(-1, -2) @ mats, eye, atol=1e-5)
    assert torch.allclose(torch.linalg.det(mats), torch.ones(16, 21), atol=1e-5)
    pose = prior.decode(z)
    assert pose.shape == (16, 69) and torch.all(pose[:, 63:] == 0)


def test_checkpoint_file_and_plain_state_dict_load(tmp_path):
    sd = _random_official_state(num_neurons=64, latent=8)
    _, ckpt = _write_experiment(tmp_path, sd, yaml_text="model_params:\n  num_neurons: 64\n  latentD: 8\n")
    p1 = load_pose_prior(ckpt)
    torch.save(sd, tmp_path / "plain.pt")
    p2 = load_pose_prior(tmp_path / "plain.pt")
    x = 0.2 * torch.randn(5, 69, generator=torch.Generator().manual_seed(2))
    assert p1.latent_dim == 8
    assert torch.allclose(p1.encode_mean(x), p2.encode_mean(x))


def test_yaml_disagreeing_with_weights_is_an_error(tmp_path):
    folder, _ = _write_experiment(tmp_path, _random_official_state(num_neurons=64, latent=8))
    with pytest.raises(NeuralfitError, match="latentD"):
        load_pose_prior(folder)


def test_wrong_layout_is_a_clear_error(tmp_path):
    sd = _random_official_state(num_neurons=64, latent=8)
    del sd["encoder_net.7.weight"]
    torch.save({"state_dict": {f"vp_model.{k}": v for k, v in sd.items()}}, tmp_path / "bad.ckpt")
    with pytest.raises(NeuralfitError, match="missing"):
        load_pose_prior(tmp_path / "bad.ckpt")
    with pytest.raises(NeuralfitError, match="not found"):
        load_pose_prior(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NeuralfitError, match="snapshots"):
        load_pose_prior(tmp_path / "empty")


@pytest.mark.skipif(importlib.util.find_spec("human_body_prior") is not None,
                    reason="human_body_prior installed: v1 snapshots load through it")
def test_v1_snapshot_without_human_body_prior_is_a_clear_error(tmp_path):
    folder = tmp_path / "vposer_v1_0"
    (folder / "snapshots").mkdir(parents=True)
    v1 = {"bodyprior_enc_bn1.weight": torch.ones(63), "bodyprior_enc_fc1.weight": torch.zeros(512, 63),
          "bodyprior_dec_out.weight": torch.zeros(126, 512)}
    torch.save(v1, folder / "snapshots" / "TR00_E096.pt")
    for spec in (folder, folder / "snapshots" / "TR00_E096.pt"):
        with pytest.raises(NeuralfitError, match="human-body-prior==0.8.5"):
            load_pose_prior(spec)


def test_six_d_decoder_gives_rotations_for_any_input():
    m = VPoser(VPoserConfig(num_neurons=32, latent_dim=4)).eval()
    mats = m.decode_matrices(10.0 * torch.randn(8, 4))
    assert torch.allclose(torch.linalg.det(mats), torch.ones(8, 21), atol=1e-5)
