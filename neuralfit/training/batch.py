"""The batch contract of the training loops, and the ground truth derived from it.

A training batch is a dict of collated tensors (docs/network.md); ``neuralfit.data.NpzDataset`` items
(built with ``normalize=False``) satisfy it::

    image       (B, 3, R, R) float RGB in [0, 1]           required; alias: img
    keypoints   (B, 24, 3) spin24 crop pixels + conf        alias: part (SPIN npz); ``visible`` (B, 24) bool, when
                                                            present, zeroes the confidence of hidden keypoints
    keypoints_<set>  (B, J, 3) for a network whose joint_set is not spin24 (e.g. keypoints_coco17)
    pose        (B, 72) axis-angle, betas (B, 10)           alias: shape; used where has_smpl
    has_smpl    (B,)                                        default 0
    joints3d    (B, 24, 4) spin24 camera-frame + conf       alias: S; optional, times has_joints3d when present
    partseg     (B, R, R) long, 0 background, 1 + part      optional, with has_partseg (B,) (default: present)
    transl      (B, 3) GT body translation in the crop camera; cam_K (B, 3, 3) its intrinsics (or cam_f (B,)
                with the principal point at the centre); has_camera (B,)
    lowres_uv   (B, V_low, 2), lowres_vis (B, V_low) bool   optional, with has_lowres (B,): samples without them
                                                            are projected from pose/transl/camera and made
                                                            visible where the part mask shows the vertex's part

The contrastive loss needs low-res vertex positions (given or projected) and the GT pose (for the limb
orientations); samples without SMPL simply do not contribute to it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.nets.rotations import axis_angle_to_matrix, matrix_to_axis_angle
from neuralfit.neural.orientation import limb_angles, limb_pairs, orientation_weights

_ALIASES = {"img": "image", "part": "keypoints", "shape": "betas", "S": "joints3d"}


def prepare_batch(batch: dict[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """Rename aliases, move tensors to ``device`` as float/long/bool, and check the required keys."""
    out: dict[str, Any] = {}
    for key, val in batch.items():
        name = _ALIASES.get(key, key)
        if name in out and key != name:
            continue  # the canonical key wins over its alias
        out[name] = val
    if "image" not in out:
        raise NeuralfitError("training batch has no 'image' (B, 3, R, R) entry; see docs/network.md")
    img = torch.as_tensor(out["image"])
    if img.dtype == torch.uint8:
        img = img.float() / 255.0
    if img.ndim != 4 or img.shape[1] != 3:
        raise NeuralfitError(f"training batch 'image' must be (B, 3, R, R), got {tuple(img.shape)}")
    b = img.shape[0]
    res: dict[str, torch.Tensor] = {"image": img.float().to(device)}
    for key, val in out.items():
        if key == "image":
            continue
        try:
            t = torch.as_tensor(val)
        except (TypeError, ValueError):
            continue  # strings (imgname) and other metadata
        if t.dtype == torch.bool:
            res[key] = t.to(device)
        elif t.is_floating_point():
            res[key] = t.float().to(device)
        else:
            res[key] = t.long().to(device)
    res["has_smpl"] = res.get("has_smpl", torch.zeros(b, device=device)) > 0.5
    if "keypoints" in res and "visible" in res:
        res["keypoints"] = torch.cat([res["keypoints"][..., :2], res["keypoints"][..., 2:] * res["visible"][..., None]],
                                     dim=-1)
    if "joints3d" in res and "has_joints3d" in res:
        res["joints3d"] = torch.cat([res["joints3d"][..., :3], res["joints3d"][..., 3:]
                                     * res["has_joints3d"].reshape(b, 1, 1)], dim=-1)
    if "partseg" in res:
        res["has_partseg"] = res.get("has_partseg", torch.ones(b, device=device)) > 0.5
    if "lowres_vis" in res:
        res["lowres_vis"] = res["lowres_vis"] > 0.5 if res["lowres_vis"].dtype != torch.bool else res["lowres_vis"]
    return res


@dataclass
class GroundTruth:
    """Per-batch targets derived from the GT body.

    rotmat: (B, 24, 3, 3) GT rotations (identity where there is no SMPL).
    uv: (B, V_low, 2) crop-pixel projections of the low-res vertices. vis: (B, V_low) bool.
    alpha: (B, V_low, K) soft orientation assignment of each vertex (seed eq. 6).
    """

    rotmat: torch.Tensor
    uv: torch.Tensor | None
    vis: torch.Tensor | None
    alpha: torch.Tensor | None


def pose_body(body: Any, betas: torch.Tensor, rotmat: torch.Tensor, transl: torch.Tensor | None = None,
              lowres: bool = False) -> tuple[Any, torch.Tensor | None]:
    """Pose ``body`` from (B, 24, 3, 3) rotations; returns (output with joints/landmarks, low-res vertices or None).

    A :class:`neuralfit.body.BodyModel` takes the rotations directly (no axis-angle round trip, as in SPIN)
    and poses only the low-res support and landmarks (``full=False``); other bodies with the same
    call signature (test bodies) get axis-angle and their full mesh.
    """
    from neuralfit.body import BodyModel

    b = rotmat.shape[0]
    if isinstance(body, BodyModel):
        out = body(betas=betas, global_orient=rotmat[:, :1], body_pose=rotmat[:, 1:], transl=transl,
                   full=False, lowres=lowres)
        return out, out.lowres_vertices
    aa = matrix_to_axis_angle(rotmat).reshape(b, -1)
    out = body(betas=betas, global_orient=aa[:, :3], body_pose=aa[:, 3:], transl=transl)
    return out, body.lowres.vertices(out.vertices) if lowres else None


def _mask_visibility(uv: torch.Tensor, partseg: torch.Tensor, part_labels: torch.Tensor) -> torch.Tensor:
    """Visible = inside the crop and the GT part mask shows this vertex's part at its pixel."""
    b, r = partseg.shape[0], partseg.shape[-1]
    px = uv.floor().long()
    inside = (px >= 0).all(-1) & (px < r).all(-1)
    pxc = px.clamp(0, r - 1)
    lab = partseg[torch.arange(b, device=uv.device)[:, None], pxc[..., 1], pxc[..., 0]]
    return inside & (lab == 1 + part_labels[None])


def ground_truth(batch: dict[str, torch.Tensor], body: Any, num_components: int, tau: float) -> GroundTruth:
    """GT rotations, low-res vertex projections/visibility and orientation weights for a prepared batch."""
    b = batch["image"].shape[0]
    device = batch["image"].device
    has = batch["has_smpl"]
    if "pose" in batch:
        rotmat = axis_angle_to_matrix(batch["pose"].reshape(b, 24, 3))
    else:
        rotmat = torch.eye(3, device=device).expand(b, 24, 3, 3).clone()
    if not bool(has.any()) or "pose" not in batch:
        return GroundTruth(rotmat, None, None, None)
    betas = batch.get("betas", torch.zeros(b, 10, device=device))
    with torch.no_grad():
        out, low = pose_body(body, betas, rotmat, batch.get("transl"), lowres=True)
        pairs = limb_pairs(body.parents).to(device)
        gamma = limb_angles(out.joints, pairs)  # (B, 24)
        alpha_joint = orientation_weights(gamma, num_components, tau)  # (B, 24, K)
        part = body.lowres.part_labels.to(device)
        alpha = alpha_joint[:, part]  # (B, V_low, K)
        given = batch.get("has_lowres", torch.ones(b, dtype=torch.bool, device=device)).bool()
        if "lowres_uv" in batch and batch["lowres_uv"].shape[1] != part.shape[0]:
            raise NeuralfitError(f"data set has {batch['lowres_uv'].shape[1]} low-res vertices per sample but body "
                                 f"{body.name!r} has a {part.shape[0]}-vertex low-res mesh; regenerate the data "
                                 "with this body")
        if "lowres_uv" in batch and "lowres_vis" in batch:
            uv, vis = batch["lowres_uv"].clone(), batch["lowres_vis"].clone() & given[:, None]
        else:
            given = torch.zeros_like(given)
            uv = torch.zeros(b, part.shape[0], 2, device=device)
            vis = torch.zeros(b, part.shape[0], dtype=torch.bool, device=device)
        has_cam = batch.get("has_camera", torch.ones(b, device=device)).bool()
        todo = ~given & has_cam & (("cam_K" in batch) or ("cam_f" in batch))
        if bool(todo.any()):
            # Project the GT low-res mesh with the crop camera; visibility from the part mask.
            res = batch["image"].shape[-1]
            if "cam_K" in batch:
                fx, fy = batch["cam_K"][:, 0, 0], batch["cam_K"][:, 1, 1]
                cx, cy = batch["cam_K"][:, 0, 2], batch["cam_K"][:, 1, 2]
            else:
                fx = fy = batch["cam_f"].reshape(b)
                cx = cy = torch.full((b,), res / 2.0, device=device)
            z = low[..., 2].clamp(min=1e-3)
            proj = torch.stack([fx[:, None] * low[..., 0] / z + cx[:, None],
                                fy[:, None] * low[..., 1] / z + cy[:, None]], dim=-1)
            if "partseg" in batch:
                pvis = _mask_visibility(proj, batch["partseg"], part) & batch["has_partseg"][:, None]
            else:
                pvis = torch.zeros_like(vis)
            uv = torch.where(todo[:, None, None], proj, uv)
            vis = torch.where(todo[:, None], pvis, vis)
    vis = vis & has[:, None]
    return GroundTruth(rotmat, uv, vis, alpha)
