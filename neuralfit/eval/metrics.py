"""Pose metrics on batched joint arrays: MPJPE, PA-MPJPE, PVE, PCKh, with visible-joint variants.

Conventions (docs/architecture.md):

* Inputs are (B, J, 3) metres (3D) or (B, J, 2) pixels (2D), as torch tensors or numpy arrays; the
  result has the input's type (torch in -> torch out, numpy in -> numpy out). Computation is float64.
* ``mask`` (B, J) bool/float selects the joints an error is averaged over (visible-joint variants).
  A sample with no selected joint gets NaN, so means over a dataset must use ``nanmean``.
* MPJPE aligns a root first: ``root=None`` the joint mean (the original behaviour of this module),
  an int a joint index, a tuple of ints the mean of those joints (LSP-14 pelvis = hips 2 and 3,
  :data:`LSP14_PELVIS`). :func:`joint_errors` gives the per-joint distances behind every mean.
* PA-MPJPE similarity-aligns (rotation, uniform scale, translation; Umeyama) each sample on *all*
  joints (3D ground truth is complete even when joints are hidden in the image), then averages the
  error over the masked joints.
* PCKh@a is 2D: a joint is correct when its distance to the ground truth is below
  ``a x`` the ground-truth head segment length; for LSP-14 that is neck (12) to head top (13).
"""

from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

Array = TypeVar("Array", torch.Tensor, np.ndarray)

#: LSP-14 joint indices (SPIN order): 0 r-ankle, 1 r-knee, 2 r-hip, 3 l-hip, ..., 12 neck, 13 head top.
LSP14_PELVIS: tuple[int, int] = (2, 3)
LSP14_HEAD: tuple[int, int] = (12, 13)
#: SMPL-24: pelvis 0; head segment neck (12) -> head (15) (SMPL has no head-top joint).
SMPL24_PELVIS: int = 0
SMPL24_HEAD: tuple[int, int] = (12, 15)


def _to_torch(x, name: str) -> torch.Tensor:
    if isinstance(x, np.ndarray):
        return torch.from_numpy(np.ascontiguousarray(x)).double()
    if torch.is_tensor(x):
        return x.double()
    raise NeuralfitError(f"{name} must be a torch tensor or numpy array, got {type(x).__name__}")


def _like(out: torch.Tensor, ref):
    """Return ``out`` with the type of ``ref`` (numpy in -> numpy out; torch keeps ref's dtype/device)."""
    if isinstance(ref, np.ndarray):
        return out.detach().cpu().numpy()
    return out.to(dtype=ref.dtype if ref.is_floating_point() else torch.float64, device=ref.device)


def _check_pair(pred, gt, dims: tuple[int, ...] = (3,)) -> None:
    if pred.ndim != 3 or pred.shape[-1] not in dims or tuple(pred.shape) != tuple(gt.shape):
        want = " or ".join(f"(B, J, {d})" for d in dims)
        raise NeuralfitError(f"joints must both have shape {want}, got {tuple(pred.shape)} and {tuple(gt.shape)}")


def _check_mask(mask, shape: tuple[int, ...]) -> torch.Tensor | None:
    if mask is None:
        return None
    m = _to_torch(mask, "mask") if not (torch.is_tensor(mask) and mask.dtype == torch.bool) else mask.double()
    if tuple(m.shape) != tuple(shape[:2]):
        raise NeuralfitError(f"mask must have shape (B, J) = {tuple(shape[:2])}, got {tuple(m.shape)}")
    return (m > 0).double()


def _masked_mean(err: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """Mean over the last axis of (B, J) ``err`` restricted to ``mask``; NaN where nothing is selected."""
    if mask is None:
        return err.mean(-1)
    n = mask.sum(-1)
    s = (err * mask).sum(-1)
    return torch.where(n > 0, s / n.clamp(min=1), torch.full_like(s, float("nan")))


def _root(x: torch.Tensor, root: int | tuple[int, ...] | None) -> torch.Tensor:
    """(B, 1, D) root point: joint mean, one joint, or the mean of several joints."""
    if root is None:
        return x.mean(1, keepdim=True)
    idx = [root] if isinstance(root, int) else list(root)
    if not idx or max(idx) >= x.shape[1] or min(idx) < -x.shape[1]:
        raise NeuralfitError(f"root joint(s) {root} out of range for {x.shape[1]} joints")
    return x[:, idx].mean(1, keepdim=True)


def procrustes_align(pred: Array, gt: Array) -> Array:
    """Similarity-align ``pred`` to ``gt`` per sample (rotation, uniform scale, translation; Umeyama).

    Args:
        pred, gt: (B, J, 3).

    Returns:
        (B, J, 3) ``s R pred + t`` minimising the squared distance to ``gt`` (det R = +1).
    """
    _check_pair(pred, gt)
    pred64, gt64 = _to_torch(pred, "pred"), _to_torch(gt, "gt")
    mu_p, mu_g = pred64.mean(1, keepdim=True), gt64.mean(1, keepdim=True)
    x, y = pred64 - mu_p, gt64 - mu_g
    var_x = x.pow(2).sum(dim=(1, 2))
    cov = y.transpose(1, 2) @ x  # (B, 3, 3)
    U, S, Vh = torch.linalg.svd(cov)
    # Reflection guard: flip the last singular direction when det(U V^T) < 0.
    d = torch.sign(torch.linalg.det(U @ Vh))
    d = torch.where(d == 0, torch.ones_like(d), d)
    D = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=-1))
    R = U @ D @ Vh
    scale = (S * torch.diagonal(D, dim1=1, dim2=2)).sum(-1) / var_x.clamp(min=1e-12)
    aligned = scale[:, None, None] * (x @ R.transpose(1, 2)) + mu_g
    return _like(aligned, pred)


def joint_errors(pred: Array, gt: Array, root: int | tuple[int, ...] | None = None, align: str = "root") -> Array:
    """(B, J) per-joint Euclidean errors after ``align`` = "root" (see module doc), "procrustes" or "none"."""
    _check_pair(pred, gt, dims=(2, 3))
    p, g = _to_torch(pred, "pred"), _to_torch(gt, "gt")
    if align == "root":
        p, g = p - _root(p, root), g - _root(g, root)
    elif align == "procrustes":
        p = _to_torch(procrustes_align(p, g), "pred")
    elif align != "none":
        raise NeuralfitError(f"align must be 'root', 'procrustes' or 'none', got {align!r}")
    return _like((p - g).norm(dim=-1), pred)


def mpjpe(pred: Array, gt: Array, mask=None, root: int | tuple[int, ...] | None = None) -> Array:
    """Mean per-joint position error (B,), same units as the input, after aligning the roots.

    Args:
        pred, gt: (B, J, 3).
        mask: optional (B, J) joints to average over (NaN for samples with none).
        root: None = joint mean (default, kept for compatibility), an index, or indices averaged
            (LSP-14: :data:`LSP14_PELVIS`; SMPL-24: :data:`SMPL24_PELVIS`).
    """
    _check_pair(pred, gt)
    err = _to_torch(joint_errors(pred, gt, root=root, align="root"), "err")
    return _like(_masked_mean(err, _check_mask(mask, pred.shape)), pred)


def pa_mpjpe(pred: Array, gt: Array, mask=None) -> Array:
    """Procrustes-aligned (similarity, per sample, on all joints) mean per-joint error (B,).

    ``mask`` (B, J) restricts the *average* to those joints; the alignment always uses all joints.
    """
    _check_pair(pred, gt)
    err = _to_torch(joint_errors(pred, gt, align="procrustes"), "err")
    return _like(_masked_mean(err, _check_mask(mask, pred.shape)), pred)


def pve(pred_vertices: Array, gt_vertices: Array, pred_root=None, gt_root=None) -> Array:
    """Per-vertex error (B,): mean vertex distance after translating each mesh by its root.

    Args:
        pred_vertices, gt_vertices: (B, V, 3), same topology.
        pred_root, gt_root: (B, 3) root points (e.g. the pelvis of each mesh's joints); None uses the
            vertex mean of that mesh (both must be given or neither).
    """
    _check_pair(pred_vertices, gt_vertices)
    p, g = _to_torch(pred_vertices, "pred_vertices"), _to_torch(gt_vertices, "gt_vertices")
    if (pred_root is None) != (gt_root is None):
        raise NeuralfitError("pve needs both pred_root and gt_root, or neither")
    if pred_root is None:
        p, g = p - p.mean(1, keepdim=True), g - g.mean(1, keepdim=True)
    else:
        pr, gr = _to_torch(pred_root, "pred_root"), _to_torch(gt_root, "gt_root")
        if tuple(pr.shape) != (p.shape[0], 3) or tuple(gr.shape) != (p.shape[0], 3):
            raise NeuralfitError(f"roots must have shape (B, 3) = ({p.shape[0]}, 3), got "
                                 f"{tuple(pr.shape)} and {tuple(gr.shape)}")
        p, g = p - pr[:, None], g - gr[:, None]
    return _like((p - g).norm(dim=-1).mean(-1), pred_vertices)


def pckh(pred2d: Array, gt2d: Array, mask=None, head: tuple[int, int] = LSP14_HEAD, alpha: float = 0.5) -> Array:
    """PCKh@alpha per sample (B,) in [0, 1]: share of (masked) joints within alpha x head length.

    Args:
        pred2d, gt2d: (B, J, 2) image points (pixels); extra trailing columns (confidence) are ignored.
        mask: optional (B, J) joints that count (annotated / visible); NaN for samples with none.
        head: indices (a, b) of the head segment in ``gt2d``; LSP-14 neck -> head top (default),
            :data:`SMPL24_HEAD` for SMPL-24.
        alpha: threshold as a fraction of the head segment length (0.5 = PCKh@0.5).
    """
    p, g = _to_torch(pred2d, "pred2d"), _to_torch(gt2d, "gt2d")
    if p.ndim != 3 or g.ndim != 3 or p.shape[:2] != g.shape[:2] or p.shape[-1] < 2 or g.shape[-1] < 2:
        raise NeuralfitError(f"pckh needs (B, J, 2) points, got {tuple(p.shape)} and {tuple(g.shape)}")
    if max(head) >= g.shape[1]:
        raise NeuralfitError(f"head segment {head} out of range for {g.shape[1]} joints")
    p, g = p[..., :2], g[..., :2]
    thr = alpha * (g[:, head[0]] - g[:, head[1]]).norm(dim=-1)  # (B,)
    correct = ((p - g).norm(dim=-1) <= thr[:, None]).double()
    return _like(_masked_mean(correct, _check_mask(mask, p.shape)), pred2d)
