"""The embedded default prior: plausibility ranking, limit-respecting samples, projection, sampling API."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from neuralfit.priors import JointLimitPrior, load_mocap, load_pose_prior, sample_poses
from neuralfit.priors.default import default_prior_path

from neuralfit.errors import NeuralfitError


@pytest.fixture(scope="module")
def heldout(prior):
    from neuralfit.priors.train import TrainPriorConfig, training_sets

    with np.load(default_prior_path()) as z:
        meta = json.loads(str(z["__meta__"]))
    clips = meta.get("heldout_clip_names", meta["config"]["holdout_clips"])
    assert clips, "the shipped prior must hold out whole clips for this test"
    data, _ = training_sets(TrainPriorConfig())
    return torch.from_numpy(data.select(clips).body_pose).float()


def test_heldout_mocap_beats_uniform_limit_poses(prior, heldout):
    uniform = JointLimitPrior().sample_uniform(1000, seed=0)
    with torch.no_grad():
        p_mocap = prior.penalty(heldout)
        p_unif = prior.penalty(uniform)
    # Every (held-out frame, uniform pose) pair: the real pose must score as more plausible.
    win = (p_mocap[:, None] < p_unif[None, :]).float().mean().item()
    assert win >= 0.95, f"win-rate {win:.2%}"


def test_samples_never_bend_knees_or_elbows_backwards(prior):
    lim = prior.limits
    ids = [lim.joint_index(n) for n in ("left_knee", "right_knee", "left_elbow", "right_elbow")]
    s = prior.sample(500, seed=0)
    assert s.shape == (500, 69) and torch.isfinite(s).all()
    assert not lim.violations(s)[:, ids].any()
    # The VAE on its own (no rejection) should rarely need the rejection step at all.
    raw = prior.sample(500, seed=0, reject=False)
    assert lim.violations(raw)[:, ids].any(dim=1).float().mean() < 0.05
    # Seeded and diverse.
    assert torch.equal(s, prior.sample(500, seed=0))
    assert s.std(dim=0)[: 63].mean() > 0.05


def test_project_reduces_the_penalty_of_noisy_poses(prior, heldout):
    g = torch.Generator().manual_seed(0)
    noisy = heldout[:100] + 0.3 * torch.randn(100, 69, generator=g)
    with torch.no_grad():
        before = prior.penalty(noisy)
        projected = prior.project(noisy)
        after = prior.penalty(projected)
    assert (after < before).float().mean() >= 0.95
    assert torch.equal(projected[:, 63:], noisy[:, 63:])  # hands kept


def test_penalty_is_differentiable_and_checks_input(prior, heldout):
    x = heldout[:4].clone().requires_grad_(True)
    prior.penalty(x).sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad[:, :63].abs().sum() > 0
    assert not any(p.requires_grad for p in prior.parameters())
    with pytest.raises(NeuralfitError, match=r"\(B, 69\)"):
        prior.penalty(torch.zeros(4, 63))
    with pytest.raises(NeuralfitError, match="latent"):
        prior.decode(torch.zeros(2, 3))
    with pytest.raises(NeuralfitError, match="not found"):
        load_pose_prior("/no/such/prior")


def test_prior_stays_in_eval_mode(prior, heldout):
    prior.train()
    assert not prior.training and not prior.backbone.training
    a = prior.penalty(heldout[:1])  # a batch of one would fail in BatchNorm training mode
    assert a.shape == (1,)


def test_encode_decode_shapes(prior, heldout):
    q = prior.encode(heldout[:3])
    assert q.mean.shape == (3, prior.latent_dim) and bool((q.stddev > 0).all())
    assert prior.decode(q.mean).shape == (3, 69)


def test_sample_poses_sources():
    lim = JointLimitPrior()
    for source in ("mocap", "prior", "mixed"):
        p = sample_poses(40, seed=1, source=source)
        assert p.shape == (40, 69) and p.dtype == torch.float32
        assert not lim.violations(p, tolerance=1e-4).any()
        assert torch.equal(p, sample_poses(40, seed=1, source=source))
    with pytest.raises(NeuralfitError, match="source"):
        sample_poses(4, source="youtube")


def test_mean_pose_stands_and_rest_scores_low(prior, heldout):
    from neuralfit.priors.evaluate import mean_pose_report

    rep = mean_pose_report(prior)
    # decode(0) is what the latent term pulls hidden joints toward: it must stand (issue 15: < 25 deg).
    for k in ("left_hip", "right_hip", "left_knee", "right_knee"):
        assert rep[f"mean_{k}_deg"] < 25.0, rep
    with torch.no_grad():
        median = float(prior.penalty(heldout).median())
    # A knee bent backwards (ankle forward by 0.6 rad) scores worse than standing at rest, and the rest
    # pose scores below the typical held-out mocap frame.
    assert rep["penalty_knee_backwards"] > rep["penalty_rest"] + 10.0
    assert rep["penalty_rest"] < median, (rep["penalty_rest"], median)


def test_train_prior_command_takes_a_user_pose_set(tmp_path):
    from neuralfit.cli.train import train

    # A user's own set (e.g. converted AMASS): body_pose + global_orient + clip_id; mocap frames here.
    src = load_mocap()
    data = tmp_path / "mine.npz"
    np.savez(data, body_pose=src.body_pose[:800], global_orient=src.global_orient[:800], clip_id=np.arange(800) // 80)
    out = tmp_path / "tiny.npz"
    res = CliRunner().invoke(train, ["prior", "--out", str(out), "--data", str(data), "--epochs", "1",
                                     "--holdout-fraction", "0.3", "--quiet"])
    assert res.exit_code == 0, res.output
    tiny = load_pose_prior(out)
    assert tiny.sample(3, seed=0).shape == (3, 69)
    with np.load(out) as z:
        meta = json.loads(str(z["__meta__"]))
    held = meta["heldout_clip_names"]
    assert held and all(c.startswith("mine/") for c in held)
    assert meta["train_frames"] + meta["holdout_frames"] == 1600  # with mirrors
    res = CliRunner().invoke(train, ["prior", "--out", str(out), "--data", str(data), "--holdout", "walk"])
    assert res.exit_code != 0 and "not in the training data" in str(res.exception or res.output)
