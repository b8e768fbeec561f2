"""Rotation conversions used by the regressor: 6D inside the network, axis-angle in files.

The 6D representation (Zhou et al., CVPR 2019) is the first two *columns* of the rotation
matrix, as in HMR/SPIN; Gram-Schmidt turns any 6-vector back into a rotation, which makes it a
continuous, unconstrained regression target.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def rot6d_to_matrix(x: torch.Tensor) -> torch.Tensor:
    """(..., 6) -> (..., 3, 3). Columns b1, b2 from Gram-Schmidt of the two 3-vectors, b3 = b1 x b2."""
    a1, a2 = x[..., 0:3], x[..., 3:6]
    b1 = F.normalize(a1, dim=-1, eps=1e-8)
    b2 = F.normalize(a2 - (b1 * a2).sum(-1, keepdim=True) * b1, dim=-1, eps=1e-8)
    b3 = torch.cross(b1, b2, dim=-1)
    return torch.stack([b1, b2, b3], dim=-1)


def matrix_to_rot6d(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 6): the first two columns, concatenated."""
    return torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1)


def axis_angle_to_matrix(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) (Rodrigues; exact at angle 0)."""
    from pytorch3d.transforms import axis_angle_to_matrix as _aa2m

    return _aa2m(aa)


def matrix_to_axis_angle(m: torch.Tensor) -> torch.Tensor:
    """(..., 3, 3) -> (..., 3) axis-angle with angle in [0, pi] (via quaternions, stable near pi)."""
    from pytorch3d.transforms import matrix_to_axis_angle as _m2aa

    return _m2aa(m)


def mean_rotation(rotmats: torch.Tensor) -> torch.Tensor:
    """(N, ..., 3, 3) rotations -> (..., 3, 3): the average matrix projected back onto rotations through the
    6D Gram-Schmidt map (the regressor's mean-parameter start, as in HMR)."""
    m = rotmats.mean(0)
    return rot6d_to_matrix(torch.cat([m[..., :, 0], m[..., :, 1]], dim=-1))
