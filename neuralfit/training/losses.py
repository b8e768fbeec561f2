"""Supervised losses of the multi-task network (SPIN-style for the regressor).

All losses return a scalar that is 0 (with a graph) when nothing in the batch supervises them, so
mixed batches (synthetic with SMPL, real with 2D keypoints only) need no special casing.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from neuralfit.nets.heads import gaussian_heatmaps, heatmap_mass


def _zero(like: torch.Tensor) -> torch.Tensor:
    return like.sum() * 0.0


def downsample_labels(labels: torch.Tensor, stride: int) -> torch.Tensor:
    """(B, R, R) integer labels -> (B, R/stride, R/stride): the label at each cell's central pixel."""
    c = stride // 2
    return labels[:, c::stride, c::stride]


def part_seg_loss(part_logits: torch.Tensor, partseg: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of (B, C, h, w) logits against (B, R, R) labels (0 = background), on ``valid`` (B,) images."""
    if not bool(valid.any()):
        return _zero(part_logits)
    stride = partseg.shape[-1] // part_logits.shape[-1]
    target = downsample_labels(partseg, stride).long()
    return F.cross_entropy(part_logits[valid], target[valid])


def heatmap_loss(heatmaps: torch.Tensor, keypoints: torch.Tensor, stride: int, sigma: float) -> torch.Tensor:
    """Squared error to unit-peak Gaussians, per visible keypoint, normalised by the Gaussian's mass.

    Args:
        heatmaps: (B, J, h, w) predictions.
        keypoints: (B, J, 3) crop pixels + visibility/confidence in [0, 1].

    Predicting all zeros costs exactly 1 per keypoint (sum of the squared target is pi sigma^2), so the
    loss is O(1) and comparable to the other terms without a magic weight.
    """
    conf = keypoints[..., 2]
    if not bool((conf > 0).any()):
        return _zero(heatmaps)
    target = gaussian_heatmaps(keypoints[..., :2], heatmaps.shape[-2:], stride, sigma)
    err = ((heatmaps - target) ** 2).sum(dim=(-1, -2))  # (B, J)
    return (err * conf).sum() / (conf.sum() * heatmap_mass(sigma))


def pose_loss(pred_rotmat: torch.Tensor, gt_rotmat: torch.Tensor, has_smpl: torch.Tensor) -> torch.Tensor:
    """SPIN's SMPL parameter loss: mean squared error of (B, 24, 3, 3) rotation matrices on ``has_smpl``."""
    if not bool(has_smpl.any()):
        return _zero(pred_rotmat)
    return F.mse_loss(pred_rotmat[has_smpl], gt_rotmat[has_smpl])


def betas_loss(pred: torch.Tensor, gt: torch.Tensor, has_smpl: torch.Tensor) -> torch.Tensor:
    """Mean squared error of betas (B, nb) on ``has_smpl``."""
    if not bool(has_smpl.any()):
        return _zero(pred)
    return F.mse_loss(pred[has_smpl], gt[has_smpl, : pred.shape[1]])


def joints3d_loss(pred: torch.Tensor, gt: torch.Tensor, pelvis: tuple[int, int] = (2, 3)) -> torch.Tensor:
    """Root-relative squared error of 3D joints, weighted by confidence.

    Args:
        pred: (B, J, 3) predicted joints (any translation).
        gt: (B, J, 4) ground truth + confidence (SPIN's ``S``).
        pelvis: the two hip joints whose midpoint is the root (LSP/spin24: right hip 2, left hip 3).
    """
    conf = gt[..., 3]
    ok = (conf[:, list(pelvis)] > 0).all(dim=1) & (conf > 0).any(dim=1)
    if not bool(ok.any()):
        return _zero(pred)
    p = pred - pred[:, list(pelvis)].mean(dim=1, keepdim=True)
    g = gt[..., :3] - gt[:, list(pelvis), :3].mean(dim=1, keepdim=True)
    err = ((p - g) ** 2).sum(-1)  # (B, J)
    c = conf * ok[:, None]
    return (err * c).sum() / c.sum().clamp(min=1.0)


def keypoints2d_loss(pred_uv: torch.Tensor, gt: torch.Tensor, res: int) -> torch.Tensor:
    """SPIN's reprojection loss: squared error in crop coordinates scaled to [-1, 1], weighted by confidence.

    Args:
        pred_uv: (B, J, 2) projected predicted keypoints, crop pixels.
        gt: (B, J, 3) crop pixels + confidence.
    """
    conf = gt[..., 2]
    if not bool((conf > 0).any()):
        return _zero(pred_uv)
    half = res / 2.0
    err = (((pred_uv - half) / half - (gt[..., :2] - half) / half) ** 2).sum(-1)
    return (err * conf).sum() / conf.sum().clamp(min=1.0)


def camera_scale_loss(cam: torch.Tensor) -> torch.Tensor:
    """SPIN's ``exp(-10 s)`` penalty: keeps the weak-perspective scale positive (a negative scale flips depth)."""
    return torch.exp(-10.0 * cam[:, 0]).mean()
