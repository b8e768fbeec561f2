"""Per-sample loss terms of the fitter (each returns a (B,) tensor).

The feature NLL with the outlier process lives in :meth:`neuralfit.neural.NeuralMeshModel.loss`;
this module holds the others: 2D keypoint reprojection, part segmentation, silhouette, shape prior.
"""

from __future__ import annotations

import torch

from neuralfit.render.camera import CropCamera, project
from neuralfit.render.raster import Fragments


def gmof(sq_residual: torch.Tensor, sigma: float) -> torch.Tensor:
    """Geman-McClure robustifier on squared residuals, normalised to [0, 1): ``r^2 / (sigma^2 + r^2)``.

    (SMPLify's ``sigma^2 r^2 / (sigma^2 + r^2)`` divided by ``sigma^2``: quadratic for r << sigma,
    saturating for outliers so a wrong detection cannot drag the body far.)
    """
    s2 = sigma * sigma
    return sq_residual / (s2 + sq_residual)


def keypoint_loss(points3d: torch.Tensor, valid: torch.Tensor, observed: torch.Tensor, cam: CropCamera,
                  sigma: float = 100.0) -> torch.Tensor:
    """2D reprojection loss (B,).

    Args:
        points3d: (B, J, 3) camera-frame keypoints of the body.
        valid: (J,) bool, keypoints the body defines.
        observed: (B, J, 3) detected ``(u, v, confidence)`` in crop pixels.
        cam: crop camera.
        sigma: GMoF scale in 224-px units (residuals are rescaled to a 224-px crop first).

    Returns:
        ``sum_j c_j gmof(|r_j|^2) / sum_j c_j`` per sample (0 when no joint is confident).
    """
    uv = project(points3d, cam)
    r = (uv - observed[..., :2]) * (224.0 / cam.res)
    conf = observed[..., 2].clamp(min=0.0) * valid.to(observed.dtype)
    rho = gmof(r.pow(2).sum(-1), sigma)
    return (conf * rho).sum(-1) / conf.sum(-1).clamp(min=1e-6)


def partseg_loss(frags: Fragments, vertex_parts: torch.Tensor, part_probs: torch.Tensor,
                 eps: float = 1e-6, log_probs: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of predicted part probabilities under the rendered part labels (B,).

    On rendered body pixels the target is the barycentric blend of the face's vertex part one-hots
    (class ``1 + part``; differentiable in the pose through the barycentrics); elsewhere it is class 0
    (background). Mean over all pixels.

    Args:
        frags: rasterised low-res mesh at the resolution of ``part_probs``.
        vertex_parts: (V,) part id 0..23 of each low-res vertex.
        part_probs: (B, C, H, W) predicted probabilities, class 0 = background.
        log_probs: optional precomputed ``log_part_probs(part_probs)`` (the fitter computes it once per fit).
    """
    B, C, H, W = part_probs.shape
    logp = log_part_probs(part_probs, eps) if log_probs is None else log_probs
    cls = 1 + vertex_parts.to(frags.face_verts.device)[frags.face_verts]  # (n, 3)
    fg_logp = logp.index_select(0, frags.pix).gather(1, cls)  # (n, 3)
    bary = frags.bary_fg.clamp(min=0.0)
    bary = bary / bary.sum(-1, keepdim=True).clamp(min=1e-8)
    fg = -(bary * fg_logp).sum(-1)
    bg = -logp[:, 0].masked_fill(frags.mask.reshape(-1), 0.0).view(B, -1).sum(1)
    return (bg + fg.new_zeros(B).index_add(0, frags.batch_index, fg)) / (H * W)


def log_part_probs(part_probs: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """(B, C, H, W) probabilities -> (B * H * W, C) pixel-major log-probabilities (clamped at ``eps``)."""
    B, C, H, W = part_probs.shape
    return part_probs.clamp(min=eps).log().permute(0, 2, 3, 1).reshape(B * H * W, C)


def silhouette_loss(silhouette: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean squared error between a soft silhouette (B, H, W) and an observed mask (B, H, W) in [0, 1]."""
    return (silhouette - mask.to(silhouette.dtype)).pow(2).flatten(1).mean(1)


def l2_shape_penalty(betas: torch.Tensor) -> torch.Tensor:
    """``0.5 |betas|^2`` (B,): the standard-Normal shape prior of SMPL's PCA space."""
    return 0.5 * betas.pow(2).sum(-1)
