"""Synthetic fitting scenes shared by the fitting tests (no network, no files written).

A known body (the free body in a pose from the shipped mocap set) is rendered at feature-map
resolution; its feature map is drawn from an oracle neural model whose vertex features are smooth
functions of the rest-pose surface position (random Fourier features with a length scale of 8 cm:
vertices > 25 cm apart are nearly orthogonal, neighbours are similar, like a trained extractor's),
plus noise. The background, and optionally an occluder box, get clutter-like features.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as Fn

from neuralfit.neural import NeuralMeshModel
from neuralfit.render import CropCamera, project, rasterize

RES, SIZE, DIM = 224, 56, 128


@dataclass
class Scene:
    gt_go: torch.Tensor
    gt_pose: torch.Tensor
    gt_transl: torch.Tensor
    gt_joints: torch.Tensor
    init_go: torch.Tensor
    init_pose: torch.Tensor
    init_transl: torch.Tensor
    features: torch.Tensor
    keypoints: torch.Tensor  # (B, 24, 3) spin24 in crop pixels, exact
    gt_mask: torch.Tensor
    box: torch.Tensor  # (B, H, W) occluder box (all False without occluder)


def mocap_poses(n: int, seed: int) -> torch.Tensor:
    from neuralfit.priors.mocap import default_mocap_path

    poses = np.load(default_mocap_path())["body_pose"].astype(np.float32)
    g = torch.Generator().manual_seed(seed)
    return torch.from_numpy(poses)[torch.randint(0, len(poses), (n,), generator=g)]


def oracle_model(fit_body, seed: int = 1, ell: float = 0.08) -> NeuralMeshModel:
    g = torch.Generator().manual_seed(seed)
    z = torch.zeros(1, 3)
    rest = fit_body(torch.zeros(1, 10), z, torch.zeros(1, 69), z).lowres[0]
    omega = torch.randn(3, DIM, generator=g) / ell
    phase = torch.rand(DIM, generator=g) * 2 * math.pi
    base = Fn.normalize(torch.cos(rest @ omega + phase), dim=-1)
    orient = Fn.normalize(torch.randn(3, DIM, generator=g), dim=-1)  # K = 3 orientation signatures
    feats = Fn.normalize(base[:, None] + 0.3 * orient[None], dim=-1)
    clutter = Fn.normalize(torch.randn(DIM, generator=g), dim=0)
    return NeuralMeshModel(feats, clutter, body_name=fit_body.name)


def make_scene(fit_body, model: NeuralMeshModel, n: int, seed: int = 0, deg: float = 25.0,
               occluder: float = 0.0, noise: float = 0.25) -> Scene:
    """``n`` crops; init = GT pose + ``deg`` degrees about a random axis at every joint.

    ``occluder``: fraction of the person's box height covered (from the bottom, full width) by a box
    of clutter-like features (0.4 = a 40 % box).
    """
    g = torch.Generator().manual_seed(seed + 100)
    cam = CropCamera(RES)
    go = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(n, 1)
    pose = mocap_poses(n, seed)
    tr = torch.tensor([[0.0, 0.15, 45.0]]).repeat(n, 1)
    with torch.no_grad():
        gt = fit_body(torch.zeros(n, 10), go, pose, tr)
        frags = rasterize(gt.lowres, fit_body.faces, cam, SIZE)
        alpha = model.vertex_orientation(gt.joints, fit_body.part_labels, fit_body.parents)
        clean = model.expected_features(frags, alpha)
        noisy = Fn.normalize(clean + noise * 4.0 / math.sqrt(DIM) * torch.randn(clean.shape, generator=g), dim=1)
        bg = Fn.normalize(model.clutter[0][None, :, None, None] + 0.12 * torch.randn(clean.shape, generator=g), dim=1)
        feats = torch.where(frags.mask[:, None], noisy, bg)
        box = torch.zeros(n, SIZE, SIZE, dtype=torch.bool)
        if occluder > 0:
            for b in range(n):
                ys, xs = torch.nonzero(frags.mask[b], as_tuple=True)
                y0, y1, x0, x1 = int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1
                box[b, y1 - int(round(occluder * (y1 - y0))):y1, x0:x1] = True
            feats = torch.where(box[:, None], bg, feats)
        kp3d, valid = fit_body.keypoints(gt, "spin24")
        kp = torch.cat([project(kp3d, cam), valid.float()[None, :, None].expand(n, -1, 1)], dim=-1)
    axis = Fn.normalize(torch.randn(n, 23, 3, generator=g), dim=-1)
    init_pose = (pose.view(n, 23, 3) + axis * math.radians(deg)).view(n, 69)
    init_go = go + 0.05 * torch.randn(n, 3, generator=g)
    init_tr = tr + torch.tensor([0.03, -0.03, 0.0])
    return Scene(go, pose, tr, gt.joints, init_go, init_pose, init_tr, feats, kp, frags.mask, box)
