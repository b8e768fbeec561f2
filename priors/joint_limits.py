"""Joint-angle-limit prior: anatomical per-joint ranges on SMPL's local axis-angle components.

Each of the 23 body joints gets a box ``lo <= a <= hi`` on its rotation vector ``a = (a_x, a_y, a_z)``,
written in SMPL's local joint frame (rest = T-pose, Y up, body facing +z, body left = +x). For small and
moderate rotations the components are close to Euler angles about the frame axes, which is what the
ranges are about:

* knees flex about +x only (``a_x > 0`` moves the ankle backwards, -z; checked by posing the body in
  ``tests/test_priors_limits.py``), with a little hyper-extension allowed;
* elbows flex about y: the left elbow with ``a_y < 0``, the right with ``a_y > 0`` (both bring the
  forearm forward, +z, from the T-pose); forearm twist rides on the elbow's x;
* hips flex with ``a_x < 0`` (thigh forward), shoulders are wide, spine/neck/head moderate (the three
  spine joints share a bend, so each gets about a third of the trunk's range).

Right-side ranges are the mirror image of the left ones: (x, y, z) -> (x, -y, -z), which swaps and
negates the y and z bounds. The ranges contain all retargeted DeepMimic frames (see docs/priors.md).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

from .mocap import SMPL_JOINT_NAMES

# Left-side and midline ranges in radians: name -> ((lo_x, lo_y, lo_z), (hi_x, hi_y, hi_z)).
_LEFT_AND_MIDLINE: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    "left_hip": ((-2.6, -1.3, -0.6), (0.7, 1.3, 1.3)),
    "spine1": ((-0.5, -0.5, -0.4), (0.8, 0.5, 0.4)),
    "left_knee": ((-0.2, -0.3, -0.3), (2.8, 0.3, 0.3)),
    "spine2": ((-0.5, -0.5, -0.4), (0.8, 0.5, 0.4)),
    "left_ankle": ((-1.2, -1.0, -1.0), (1.0, 1.0, 0.8)),
    "spine3": ((-0.5, -0.5, -0.4), (0.8, 0.5, 0.4)),
    "left_foot": ((-0.6, -0.3, -0.3), (0.6, 0.3, 0.3)),
    "neck": ((-0.7, -0.9, -0.6), (0.7, 0.9, 0.6)),
    "left_collar": ((-0.3, -0.5, -0.3), (0.3, 0.5, 0.6)),
    "head": ((-0.7, -0.9, -0.6), (0.7, 0.9, 0.6)),
    "left_shoulder": ((-2.0, -2.4, -2.0), (1.7, 1.8, 2.0)),
    "left_elbow": ((-1.2, -2.8, -0.4), (1.2, 0.1, 0.4)),
    "left_wrist": ((-1.2, -0.9, -1.0), (1.2, 0.9, 1.0)),
    "left_hand": ((-0.6, -0.6, -0.6), (0.6, 0.6, 0.6)),
}

BODY_JOINT_NAMES: tuple[str, ...] = SMPL_JOINT_NAMES[1:]  # the 23 joints of body_pose


def default_limits() -> tuple[np.ndarray, np.ndarray]:
    """``(lo, hi)``, each (23, 3) float32 radians, in ``body_pose`` joint order."""
    lo = np.zeros((23, 3), dtype=np.float32)
    hi = np.zeros((23, 3), dtype=np.float32)
    for i, name in enumerate(BODY_JOINT_NAMES):
        if name in _LEFT_AND_MIDLINE:
            lo[i], hi[i] = _LEFT_AND_MIDLINE[name]
        else:  # right joint: mirror the left one, (x, y, z) -> (x, -y, -z)
            l_lo, l_hi = _LEFT_AND_MIDLINE["left_" + name.removeprefix("right_")]
            lo[i] = (l_lo[0], -l_hi[1], -l_hi[2])
            hi[i] = (l_hi[0], -l_lo[1], -l_lo[2])
    return lo, hi


@dataclass
class JointLimitConfig:
    """``tolerance`` (rad): how far outside a range counts as a violation in :meth:`violations`."""

    tolerance: float = 0.05


def _check_body_pose(body_pose: torch.Tensor) -> torch.Tensor:
    if not torch.is_tensor(body_pose) or body_pose.ndim != 2 or body_pose.shape[1] != 69:
        shape = tuple(body_pose.shape) if hasattr(body_pose, "shape") else type(body_pose).__name__
        raise NeuralfitError(f"body_pose has shape {shape}; expected a (B, 69) axis-angle tensor")
    return body_pose


class JointLimitPrior(torch.nn.Module):
    """Box limits on the local rotation vectors of the 23 SMPL body joints.

    Buffers ``lo`` and ``hi`` are (23, 3) radians; ``.to(device)`` moves them.
    """

    lo: torch.Tensor
    hi: torch.Tensor

    def __init__(self, config: JointLimitConfig | None = None,
                 lo: np.ndarray | None = None, hi: np.ndarray | None = None) -> None:
        super().__init__()
        self.config = config or JointLimitConfig()
        d_lo, d_hi = default_limits()
        self.register_buffer("lo", torch.as_tensor(d_lo if lo is None else lo, dtype=torch.float32))
        self.register_buffer("hi", torch.as_tensor(d_hi if hi is None else hi, dtype=torch.float32))

    def excess(self, body_pose: torch.Tensor) -> torch.Tensor:
        """How far each component lies outside its range (0 inside): (B, 23, 3) radians."""
        a = _check_body_pose(body_pose).reshape(-1, 23, 3)
        lo, hi = self.lo.to(a.dtype), self.hi.to(a.dtype)
        return torch.relu(lo - a) + torch.relu(a - hi)

    def penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Differentiable squared excess summed over joints and axes: (B, 69) -> (B,) rad^2."""
        return self.excess(body_pose).pow(2).sum(dim=(1, 2))

    def violations(self, body_pose: torch.Tensor, tolerance: float | None = None) -> torch.Tensor:
        """(B, 23) bool: joint ``j`` has a component more than ``tolerance`` rad outside its range."""
        tol = self.config.tolerance if tolerance is None else tolerance
        return (self.excess(body_pose) > tol).any(dim=-1)

    def sample_uniform(self, n: int, seed: int | None = None) -> torch.Tensor:
        """(n, 69) poses with every component uniform in its range (a deliberately *un*-humanlike
        reference distribution: each joint is plausible on its own, their combination is not)."""
        gen = torch.Generator(device="cpu")
        gen.manual_seed(int(seed) if seed is not None else int(torch.randint(0, 2**31 - 1, ()).item()))
        u = torch.rand(n, 23, 3, generator=gen).to(self.lo.device)
        return (self.lo + (self.hi - self.lo) * u).reshape(n, 69)

    def clamp(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Clip every component into its range: (B, 69) -> (B, 69)."""
        a = _check_body_pose(body_pose).reshape(-1, 23, 3)
        return torch.maximum(torch.minimum(a, self.hi.to(a.dtype)), self.lo.to(a.dtype)).reshape(-1, 69)

    def joint_index(self, name: str) -> int:
        """Index of a body joint (0..22) in ``body_pose`` order, e.g. ``"left_knee"`` -> 3."""
        if name not in BODY_JOINT_NAMES:
            raise NeuralfitError(f"joint {name!r} unknown; expected one of {list(BODY_JOINT_NAMES)}")
        return BODY_JOINT_NAMES.index(name)
