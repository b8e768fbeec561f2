"""Limb orientation w.r.t. the camera and the seed's soft assignment to K orientation components.

NeuralSMPL conditions each vertex's feature distribution on the 3D orientation of the limb the vertex
belongs to: ``gamma_r = arccos(l_r . z+)``, the angle between the unit limb direction ``l_r`` (in the
camera frame) and the camera's forward axis. ``[0, pi]`` is cut into K equal bins and the rectangular
bin indicator is replaced by a difference of sigmoids of softness ``tau`` (seed poster, eq. 6)::

    alpha_k = sigmoid(tau (gamma - k pi / K)) + sigmoid(-tau (gamma - (k + 1) pi / K)) - 1,  k = 0..K-1
"""

from __future__ import annotations

import math

import torch

from neuralfit.errors import NeuralfitError

#: SMPL's kinematic tree (24 joints); the free body uses the same one.
SMPL_PARENTS = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)

# Limb of each SMPL part as (from joint, to joint). A part is the region skinned mostly to joint p, which
# spans from p to the child that continues its chain (pelvis -> spine1, spine3 -> neck); the leaves
# (feet, head, hands) have no child and use the bone that ends at them.
_SMPL_LIMBS = (
    (0, 3), (1, 4), (2, 5), (3, 6), (4, 7), (5, 8), (6, 9), (7, 10), (8, 11), (9, 12), (7, 10), (8, 11),
    (12, 15), (13, 16), (14, 17), (12, 15), (16, 18), (17, 19), (18, 20), (19, 21), (20, 22), (21, 23),
    (20, 22), (21, 23),
)


def limb_pairs(parents: torch.Tensor | list[int] | tuple[int, ...]) -> torch.Tensor:
    """(J, 2) long: ``(from, to)`` joints of each part's limb.

    SMPL's tree uses the table above; any other tree uses the first child, or the parent bone for leaves.
    """
    par = [int(p) for p in (parents.tolist() if isinstance(parents, torch.Tensor) else parents)]
    if tuple(par) == SMPL_PARENTS:
        return torch.tensor(_SMPL_LIMBS, dtype=torch.long)
    pairs = []
    for j in range(len(par)):
        children = [c for c, p in enumerate(par) if p == j]
        if children:
            pairs.append((j, children[0]))
        elif par[j] >= 0:
            pairs.append((par[j], j))
        else:
            raise NeuralfitError(f"kinematic tree with a single joint has no limbs (parents={par})")
    return torch.tensor(pairs, dtype=torch.long)


def limb_angles(joints: torch.Tensor, pairs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Angle gamma (B, J) in [0, pi] between each limb direction (camera frame) and the camera z axis.

    Args:
        joints: (B, J, 3) joints in the camera frame.
        pairs: (J, 2) from :func:`limb_pairs`.
    """
    d = joints[:, pairs[:, 1]] - joints[:, pairs[:, 0]]
    cos = d[..., 2] / d.norm(dim=-1).clamp(min=eps)
    # arccos has an infinite slope at +-1: keep away from it so gradients stay finite.
    return torch.arccos(cos.clamp(-1.0 + eps, 1.0 - eps))


def orientation_weights(gamma: torch.Tensor, K: int = 3, tau: float = 10.0) -> torch.Tensor:
    """Soft assignment (..., K) of angles gamma (...) to K orientation bins (seed eq. 6), summing to 1.

    The raw formula gives the outer bins only half weight at gamma = 0 and pi (the sigmoid is 0.5 at a
    bin edge) and slightly negative values far from a bin, so it is clamped at 0 and normalised.
    """
    if K < 1:
        raise NeuralfitError(f"number of orientation components must be >= 1, got {K}")
    if K == 1:
        return torch.ones(*gamma.shape, 1, dtype=gamma.dtype, device=gamma.device)
    k = torch.arange(K, dtype=gamma.dtype, device=gamma.device)
    g = gamma[..., None]
    raw = torch.sigmoid(tau * (g - k * math.pi / K)) + torch.sigmoid(-tau * (g - (k + 1) * math.pi / K)) - 1.0
    raw = raw.clamp(min=0.0) + 1e-8
    return raw / raw.sum(-1, keepdim=True)
