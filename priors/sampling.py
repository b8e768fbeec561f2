"""Pose sampling for the synthetic data engine: mocap frames with noise, prior samples, or a mix."""

from __future__ import annotations

import torch

from neuralfit.errors import NeuralfitError

from .joint_limits import BODY_JOINT_NAMES, JointLimitPrior
from .mocap import MocapSet, load_mocap
from .pose_prior import PosePrior

# Joints DeepMimic does not animate: their mocap value is always zero.
UNOBSERVED_JOINTS = ("left_collar", "right_collar", "left_foot", "right_foot", "left_wrist", "right_wrist")


def jitter_poses(body_pose: torch.Tensor, limits: JointLimitPrior, jitter: float, unobserved: float,
                 gen: torch.Generator) -> torch.Tensor:
    """Joint-limit-uniform noise around (B, 69) poses.

    Every component moves by ``U(-1, 1) * jitter * (hi - lo)`` of its joint's range; the joints mocap
    lacks are drawn as ``unobserved * U(lo, hi)``; the result is clipped into the limits.
    """
    span = (limits.hi - limits.lo).reshape(1, 69).cpu()
    u = torch.rand(body_pose.shape, generator=gen) * 2.0 - 1.0
    out = body_pose.cpu() + jitter * span * u
    idx = [BODY_JOINT_NAMES.index(n) for n in UNOBSERVED_JOINTS]
    cols = torch.tensor([3 * i + k for i in idx for k in range(3)])
    lo = limits.lo.reshape(69).cpu()[cols]
    hi = limits.hi.reshape(69).cpu()[cols]
    out[:, cols] = unobserved * (lo + (hi - lo) * torch.rand(body_pose.shape[0], len(cols), generator=gen))
    return _clamp(out, limits)


def _clamp(x: torch.Tensor, limits: JointLimitPrior) -> torch.Tensor:
    lo = limits.lo.reshape(1, 69).to(x)
    hi = limits.hi.reshape(1, 69).to(x)
    return torch.maximum(torch.minimum(x, hi), lo)


def sample_poses(n: int, seed: int | None = None, source: str = "mixed", prior: PosePrior | None = None,
                 mocap: MocapSet | None = None, mocap_fraction: float = 0.5, jitter: float = 0.03,
                 unobserved: float = 0.3, device: str | torch.device = "cpu") -> torch.Tensor:
    """Draw (n, 69) body poses (axis-angle, float32) for synthetic data.

    ``source``: ``"mocap"`` = random retargeted mocap frames with joint-limit-uniform jitter (see
    :func:`jitter_poses`), ``"prior"`` = samples of the pose prior (default: the embedded one),
    ``"mixed"`` = a ``mocap_fraction`` share of mocap frames, the rest prior samples, shuffled.
    Deterministic for a given ``seed``.
    """
    if source not in ("mixed", "mocap", "prior"):
        raise NeuralfitError(f"pose source {source!r} unknown; expected 'mixed', 'mocap' or 'prior'")
    if n < 0 or not 0.0 <= mocap_fraction <= 1.0:
        raise NeuralfitError(f"sample_poses: n={n}, mocap_fraction={mocap_fraction}; expected n >= 0, fraction in [0, 1]")
    gen = torch.Generator()
    if seed is not None:
        gen.manual_seed(int(seed))
    else:
        gen.seed()
    n_mocap = {"mocap": n, "prior": 0, "mixed": int(round(n * mocap_fraction))}[source]
    parts = []
    if n_mocap:
        mocap = mocap if mocap is not None else load_mocap()
        frames = torch.from_numpy(mocap.body_pose).float()
        pick = torch.randint(0, len(frames), (n_mocap,), generator=gen)
        parts.append(jitter_poses(frames[pick], JointLimitPrior(), jitter, unobserved, gen))
    if n - n_mocap:
        if prior is None:
            from .default import load_pose_prior

            prior = load_pose_prior("default")
        seed_prior = int(torch.randint(0, 2**31 - 1, (), generator=gen))
        parts.append(prior.sample(n - n_mocap, seed=seed_prior).float().cpu())
    out = torch.cat(parts) if parts else torch.zeros(0, 69)
    out = out[torch.randperm(len(out), generator=gen)]
    return out.to(device)
