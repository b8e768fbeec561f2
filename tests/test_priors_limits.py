"""Joint-angle limits: signs checked by posing a skeleton; penalty, violations, uniform sampling; shape prior."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from neuralfit.priors import JointLimitPrior, ShapePrior, ShapePriorConfig, load_mocap
from neuralfit.priors.joint_limits import BODY_JOINT_NAMES
from neuralfit.priors.kinematics import forward_kinematics
from neuralfit.priors.mocap import SMPL_JOINT_NAMES

from neuralfit.errors import NeuralfitError

J = SMPL_JOINT_NAMES.index


def _rest_joints() -> list[tuple[str, torch.Tensor | None]]:
    """The hand-made rest skeleton, plus the free body's when its asset is built."""
    skeletons: list[tuple[str, torch.Tensor | None]] = [("approx", None)]
    try:
        from neuralfit.body import load_body_model

        body = load_body_model("free")
        skeletons.append(("free", body().joints[0, :24].detach()))
    except Exception:  # noqa: BLE001 - the body package may not be built in this checkout
        pass
    return skeletons


def _pose_one(joint: str, axis: int, angle: float) -> torch.Tensor:
    p = torch.zeros(1, 69)
    p[0, 3 * (J(joint) - 1) + axis] = angle
    return p


def _midpoint_flexion(limits: JointLimitPrior, joint: str, axis: int) -> float:
    """Half of the allowed range on the flexing side of the axis (what 'bending' means for that joint)."""
    i = limits.joint_index(joint)
    lo, hi = float(limits.lo[i, axis]), float(limits.hi[i, axis])
    return 0.5 * (hi if abs(hi) > abs(lo) else lo)


@pytest.mark.parametrize("name,rest", _rest_joints())
def test_allowed_knee_flexion_moves_the_ankle_backwards(name, rest):
    lim = JointLimitPrior()
    for side in ("left", "right"):
        bend = _midpoint_flexion(lim, f"{side}_knee", 0)
        assert bend > 0.5  # knees flex about +x, by a large angle
        j0 = forward_kinematics(torch.zeros(1, 69), rest)[0]
        j1 = forward_kinematics(_pose_one(f"{side}_knee", 0, bend), rest)[0]
        # The body faces +z: flexing the knee must swing the ankle to -z (behind the knee).
        assert j1[J(f"{side}_ankle"), 2] < j0[J(f"{side}_ankle"), 2] - 0.1
        # The opposite direction (hyper-extension) is a violation beyond a small margin.
        assert lim.violations(_pose_one(f"{side}_knee", 0, -0.5))[0, lim.joint_index(f"{side}_knee")]


@pytest.mark.parametrize("name,rest", _rest_joints())
def test_allowed_elbow_flexion_moves_the_wrist_forward(name, rest):
    lim = JointLimitPrior()
    for side, sign in (("left", -1.0), ("right", 1.0)):
        bend = _midpoint_flexion(lim, f"{side}_elbow", 1)
        assert np.sign(bend) == sign  # left elbow flexes with negative y, right with positive y
        j0 = forward_kinematics(torch.zeros(1, 69), rest)[0]
        j1 = forward_kinematics(_pose_one(f"{side}_elbow", 1, bend), rest)[0]
        assert j1[J(f"{side}_wrist"), 2] > j0[J(f"{side}_wrist"), 2] + 0.1  # forearm comes forward
        assert lim.violations(_pose_one(f"{side}_elbow", 1, -sign * 0.8))[0, lim.joint_index(f"{side}_elbow")]


def test_hip_flexion_sign_moves_the_knee_forward():
    lim = JointLimitPrior()
    bend = _midpoint_flexion(lim, "left_hip", 0)
    j1 = forward_kinematics(_pose_one("left_hip", 0, bend))[0]
    assert bend < 0 and j1[J("left_knee"), 2] > 0.1


def test_limits_are_left_right_mirror_images():
    lim = JointLimitPrior()
    for i, name in enumerate(BODY_JOINT_NAMES):
        if name.startswith("left_"):
            r = lim.joint_index("right_" + name[5:])
            assert torch.allclose(lim.lo[r], torch.stack([lim.lo[i, 0], -lim.hi[i, 1], -lim.hi[i, 2]]))
            assert torch.allclose(lim.hi[r], torch.stack([lim.hi[i, 0], -lim.lo[i, 1], -lim.lo[i, 2]]))
    assert bool((lim.lo < lim.hi).all())


def test_mocap_frames_respect_the_limits():
    lim = JointLimitPrior()
    mocap = torch.from_numpy(load_mocap().body_pose).float()
    rate = lim.violations(mocap).any(dim=1).float().mean().item()
    assert rate == 0.0, f"{rate:.3%} of mocap frames break a limit"


def test_penalty_is_zero_inside_and_grows_outside_with_gradient():
    lim = JointLimitPrior()
    inside = lim.sample_uniform(256, seed=0)
    assert torch.all(lim.penalty(inside) == 0) and not lim.violations(inside).any()
    knee = lim.joint_index("left_knee")
    out = torch.zeros(3, 69)
    out[:, 3 * knee] = torch.tensor([-0.3, -0.6, -0.9])  # 0.1, 0.4, 0.7 rad past the -0.2 limit
    out.requires_grad_(True)
    pen = lim.penalty(out)
    assert torch.allclose(pen, torch.tensor([0.1, 0.4, 0.7]) ** 2, atol=1e-5)
    pen.sum().backward()
    assert torch.all(out.grad[:, 3 * knee] < 0)  # descent pushes the knee back towards flexion


def test_uniform_samples_are_seeded_and_in_range():
    lim = JointLimitPrior()
    a, b = lim.sample_uniform(64, seed=3), lim.sample_uniform(64, seed=3)
    assert torch.equal(a, b) and a.shape == (64, 69)
    assert torch.equal(lim.clamp(a), a)


def test_bad_pose_shape_is_a_clear_error():
    with pytest.raises(NeuralfitError, match=r"\(B, 69\)"):
        JointLimitPrior().penalty(torch.zeros(2, 72))


def test_shape_prior_gaussian():
    prior = ShapePrior()
    betas = torch.tensor([[0.0] * 10, [1.0] + [0.0] * 9, [2.0] * 10])
    assert torch.allclose(prior.penalty(betas), torch.tensor([0.0, 0.5, 20.0]))
    s = prior.sample(20000, seed=0)
    # Sample mean/std of 20k standard normals: standard errors 0.007 / 0.005; 5 sigma margins.
    assert s.mean().abs() < 0.035 and (s.std() - 1).abs() < 0.025
    custom = ShapePrior(ShapePriorConfig(mean=[1.0] * 10, std=[2.0] * 10))
    assert torch.allclose(custom.penalty(torch.full((1, 10), 3.0)), torch.tensor([5.0]))
    with pytest.raises(NeuralfitError):
        prior.penalty(torch.zeros(2, 11))
    with pytest.raises(NeuralfitError):
        ShapePrior(ShapePriorConfig(std=[0.0] * 10))
