"""Heads on the stride-4 decoder map (features, part segmentation, keypoint heatmaps) and the
HMR-style iterative SMPL regressor on the backbone's pooled features."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from neuralfit.nets.decoder import SeparableBlock
from neuralfit.nets.rotations import matrix_to_rot6d, rot6d_to_matrix

NUM_SMPL_JOINTS = 24  # global orient + 23 body joints; the regressor's output layout is SMPL's


class DenseHead(nn.Module):
    """Separable 3x3 block then a 1x1 projection: (B, cin, h, w) -> (B, cout, h, w)."""

    def __init__(self, cin: int, cout: int, hidden: int = 64):
        super().__init__()
        self.block = SeparableBlock(cin, hidden)
        self.proj = nn.Conv2d(hidden, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.block(x))


class FeatureHead(DenseHead):
    """Unit-norm per-pixel features for the neural mesh model: (B, cin, h, w) -> (B, D, h, w), |f| = 1."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(x), dim=1, eps=1e-6)


def upright_init_params(num_betas: int = 10) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Default starting point of the regressor: (pose6d (24, 6), betas (num_betas,), cam (3,)).

    A person standing upright, facing the camera, in the rest pose: SMPL is Y-up with the subject
    looking along +Z, the camera frame is OpenCV's (y down, z forward), so the global orientation
    is a half turn about x. ``cam = [0.9, 0, 0]`` fills ~90 % of the crop (SPIN's mean camera).
    Training replaces this with the training set's mean pose and shape.
    """
    rot = torch.eye(3).repeat(NUM_SMPL_JOINTS, 1, 1)
    rot[0] = torch.diag(torch.tensor([1.0, -1.0, -1.0]))
    return matrix_to_rot6d(rot), torch.zeros(num_betas), torch.tensor([0.9, 0.0, 0.0])


class SMPLRegressor(nn.Module):
    """HMR's iterative error feedback: params_{t+1} = params_t + MLP([pooled, params_t]).

    Params are 24 rotations in 6D (144), betas (num_betas) and a weak-perspective camera [s, tx, ty].
    The starting point is a buffer (``init_pose6d``, ``init_betas``, ``init_cam``) saved with the
    checkpoint. The last layers start near zero (gain 0.01) so that the first prediction is the
    mean, as in HMR/SPIN.
    """

    def __init__(self, in_channels: int, hidden: int = 1024, iterations: int = 3, num_betas: int = 10,
                 dropout: float = 0.5):
        super().__init__()
        self.iterations = iterations
        self.num_betas = num_betas
        npose = NUM_SMPL_JOINTS * 6
        self.mlp = nn.Sequential(
            nn.Linear(in_channels + npose + num_betas + 3, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )
        self.dec_pose = nn.Linear(hidden, npose)
        self.dec_betas = nn.Linear(hidden, num_betas)
        self.dec_cam = nn.Linear(hidden, 3)
        for layer in (self.dec_pose, self.dec_betas, self.dec_cam):
            nn.init.xavier_uniform_(layer.weight, gain=0.01)
            nn.init.zeros_(layer.bias)
        pose6d, betas, cam = upright_init_params(num_betas)
        self.register_buffer("init_pose6d", pose6d.reshape(-1))
        self.register_buffer("init_betas", betas)
        self.register_buffer("init_cam", cam)

    @torch.no_grad()
    def set_init(self, rotmats: torch.Tensor, betas: torch.Tensor, cam: torch.Tensor | None = None) -> None:
        """Start from a mean pose: ``rotmats`` (24, 3, 3), ``betas`` (num_betas,), optional ``cam`` (3,)."""
        self.init_pose6d.copy_(matrix_to_rot6d(rotmats).reshape(-1))
        self.init_betas.copy_(betas)
        if cam is not None:
            self.init_cam.copy_(cam)

    def forward(self, pooled: torch.Tensor) -> dict[str, torch.Tensor]:
        """(B, C) pooled features -> rotmat (B, 24, 3, 3), betas (B, nb), cam (B, 3), pose6d (B, 144)."""
        b = pooled.shape[0]
        pose = self.init_pose6d.expand(b, -1)
        betas = self.init_betas.expand(b, -1)
        cam = self.init_cam.expand(b, -1)
        for _ in range(self.iterations):
            h = self.mlp(torch.cat([pooled, pose, betas, cam], dim=1))
            pose = pose + self.dec_pose(h)
            betas = betas + self.dec_betas(h)
            cam = cam + self.dec_cam(h)
        rotmat = rot6d_to_matrix(pose.reshape(b, NUM_SMPL_JOINTS, 6))
        return {"rotmat": rotmat, "betas": betas, "cam": cam, "pose6d": pose}


def gaussian_heatmaps(uv: torch.Tensor, size: tuple[int, int], stride: float, sigma: float) -> torch.Tensor:
    """Target heatmaps: (B, J, 2) crop-pixel keypoints -> (B, J, h, w) Gaussians with peak 1.

    Crop pixel (u, v) lies at heatmap index ``u / stride - 0.5`` (pixel centres at ``i + 0.5``,
    docs/architecture.md); ``sigma`` is in heatmap pixels.
    """
    h, w = size
    ys = torch.arange(h, dtype=uv.dtype, device=uv.device)
    xs = torch.arange(w, dtype=uv.dtype, device=uv.device)
    cx = uv[..., 0] / stride - 0.5
    cy = uv[..., 1] / stride - 0.5
    gx = torch.exp(-((xs - cx[..., None]) ** 2) / (2 * sigma**2))  # (B, J, w)
    gy = torch.exp(-((ys - cy[..., None]) ** 2) / (2 * sigma**2))  # (B, J, h)
    return gy[..., :, None] * gx[..., None, :]


def decode_heatmaps(heatmaps: torch.Tensor, stride: float) -> torch.Tensor:
    """(B, J, h, w) heatmaps -> (B, J, 3): crop-pixel (u, v) and confidence in [0, 1].

    The location is the argmax cell refined per axis by a parabola through the log-values of the cell
    and its two neighbours (exact for a sampled Gaussian, whose log is quadratic; DARK, Zhang et al.
    2020). A truncated soft-argmax is biased towards the argmax cell by up to a quarter cell for
    sigma = 2. The offset is clamped to half a cell. Confidence is the peak value clipped to [0, 1]
    (targets peak at 1).
    """
    b, j, h, w = heatmaps.shape
    flat = heatmaps.reshape(b, j, -1)
    peak, idx = flat.max(dim=-1)
    py = torch.div(idx, w, rounding_mode="floor")
    px = idx % w
    logs = heatmaps.clamp(min=1e-6).log().reshape(b, j, -1)

    def at(y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return logs.gather(-1, (y.clamp(0, h - 1) * w + x.clamp(0, w - 1))[..., None])[..., 0]

    def offset(lm: torch.Tensor, l0: torch.Tensor, lp: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
        curv = 2 * l0 - lm - lp  # > 0 at a strict maximum
        off = 0.5 * (lp - lm) / curv.clamp(min=1e-6)
        return torch.where(inside & (curv > 1e-6), off.clamp(-0.5, 0.5), torch.zeros_like(off))

    l0 = at(py, px)
    dx = offset(at(py, px - 1), l0, at(py, px + 1), (px > 0) & (px < w - 1))
    dy = offset(at(py - 1, px), l0, at(py + 1, px), (py > 0) & (py < h - 1))
    x = px.to(heatmaps.dtype) + dx
    y = py.to(heatmaps.dtype) + dy
    uv = torch.stack([(x + 0.5) * stride, (y + 0.5) * stride], dim=-1)
    return torch.cat([uv, peak.clamp(0, 1)[..., None]], dim=-1)


def heatmap_mass(sigma: float) -> float:
    """Sum of a squared unit-peak Gaussian over the plane: pi sigma^2 (normalises the heatmap loss)."""
    return math.pi * sigma**2
