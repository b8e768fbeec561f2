"""Held-out quality measures of a pose prior (``tools/eval_prior.py`` prints them).

* ``rot_err_deg``: mean over frames and the 21 VPoser joints of the geodesic angle between a pose and
  its reconstruction ``decode(encode_mean(x))``.
* ``neg_elbo``: ``E_q[sum_j |R_j(x) - R_j(decode(z))|_F^2] + KL(q(z|x) || N(0, I))`` per frame, i.e. the
  negative ELBO under an isotropic Gaussian on rotation-matrix entries with variance 1/2 (constants
  dropped), the expectation over ``samples`` draws of ``z``. Only differences between priors matter.
* ``penalty``: the fitter's score :meth:`PosePrior.penalty` (median over frames).
* ``mean_pose``: hip and knee flexion of ``decode(z = 0)`` in degrees (a standing mean pose has both small).
"""

from __future__ import annotations

import math
from typing import Any

import torch

from .pose_prior import PosePrior
from .vposer import NUM_BODY_JOINTS

_N = NUM_BODY_JOINTS * 3


def _matrices(aa: torch.Tensor) -> torch.Tensor:
    from pytorch3d.transforms import axis_angle_to_matrix

    return axis_angle_to_matrix(aa.reshape(aa.shape[0], -1, 3))


def _geodesic_deg(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B, J, 3, 3) x 2 -> (B, J) rotation angle of ``a^T b`` in degrees."""
    tr = (a.transpose(-1, -2) @ b).diagonal(dim1=-2, dim2=-1).sum(-1)
    return torch.rad2deg(torch.acos(((tr - 1) / 2).clamp(-1.0, 1.0)))


@torch.no_grad()
def heldout_scores(prior: PosePrior, body_pose: torch.Tensor, samples: int = 8, seed: int = 0,
                   batch: int = 4096) -> dict[str, float]:
    """Reconstruction error, negative ELBO and penalty of (N, 69) held-out poses (see the module doc)."""
    gen = torch.Generator().manual_seed(seed)
    rot, elbo, pen = [], [], []
    for start in range(0, len(body_pose), batch):
        x = body_pose[start : start + batch].float()
        target = _matrices(x[:, :_N])
        q = prior.encode(x)
        rot.append(_geodesic_deg(_matrices(prior.decode(q.mean)[:, :_N]), target).mean(1))
        rec = torch.zeros(len(x))
        for _ in range(samples):
            z = q.mean + q.stddev * torch.randn(q.mean.shape, generator=gen)
            rec += (_matrices(prior.decode(z)[:, :_N]) - target).pow(2).sum(dim=(1, 2, 3)) / samples
        kl = torch.distributions.kl_divergence(q, torch.distributions.Normal(0.0, 1.0)).sum(1)
        elbo.append(rec + kl)
        pen.append(prior.penalty(x))
    r, e, p = torch.cat(rot), torch.cat(elbo), torch.cat(pen)
    return {"frames": len(r), "rot_err_deg": float(r.mean()), "rot_err_deg_median": float(r.median()),
            "neg_elbo": float(e.mean()), "neg_elbo_median": float(e.median()), "penalty_median": float(p.median())}


@torch.no_grad()
def mean_pose_report(prior: PosePrior) -> dict[str, Any]:
    """Flexion of hips and knees of ``decode(0)`` (degrees), the rest pose's and a backwards knee's penalty."""
    from .joint_limits import BODY_JOINT_NAMES

    mean = prior.decode(torch.zeros(1, prior.latent_dim))[0].reshape(23, 3)
    out: dict[str, Any] = {}
    for name in ("left_hip", "right_hip", "left_knee", "right_knee"):
        out[f"mean_{name}_deg"] = round(math.degrees(float(mean[BODY_JOINT_NAMES.index(name)].norm())), 1)
    rest = torch.zeros(1, 69)
    knee = rest.clone()
    for side in ("left", "right"):
        knee[0, 3 * BODY_JOINT_NAMES.index(f"{side}_knee")] = -0.6  # ankle forward: bent backwards
    out["penalty_rest"] = float(prior.penalty(rest)[0])
    out["penalty_knee_backwards"] = float(prior.penalty(knee)[0])
    return out
