"""A VPoser v2-compatible variational pose prior, written for neuralfit.

The module's parameter names and shapes follow the official VPoser v2 (``V02_05``) checkpoint layout, so
the ``state_dict`` of a user's checkpoint (keys ``vp_model.<name>`` in a PyTorch-Lightning ``.ckpt``)
loads with no missing or unexpected keys:

encoder_net (input: 21 body joints x 3 axis-angle = 63)
    1 BatchNorm1d(63), 2 Linear(63, H), 3 LeakyReLU, 4 BatchNorm1d(H), 5 Dropout(0.1),
    6 Linear(H, H), 7 Linear(H, H), 8 NormalDist head: ``mu`` Linear(H, D), ``logvar`` Linear(H, D)
    (index 0 flattens; 6 and 7 follow each other with no activation in the official layout).
decoder_net
    0 Linear(D, H), 1 LeakyReLU, 2 Dropout(0.1), 3 Linear(H, H), 4 LeakyReLU, 5 Linear(H, 21 * 6),
    6 6D -> rotation matrix (Gram-Schmidt on the two columns of each 3x2 block).

H = ``num_neurons`` (512), D = ``latent_dim`` (32). The encoder's scale is ``softplus(logvar)`` (the
official code's choice, despite the name).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NUM_BODY_JOINTS = 21  # VPoser covers SMPL joints 1..21 (body_pose[:, :63]); hands are not modelled


@dataclass
class VPoserConfig:
    """Sizes of the official V02_05 model."""

    num_neurons: int = 512
    latent_dim: int = 32
    dropout: float = 0.1


class _Flatten(nn.Module):
    """(B, ...) -> (B, prod(...)); parameter-free, keeps index 0 of ``encoder_net`` as in the official layout."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.reshape(x.shape[0], -1)


class NormalHead(nn.Module):
    """Maps features (B, H) to a diagonal Normal over the latent (B, D); parameters ``mu`` and ``logvar``."""

    def __init__(self, num_in: int, latent_dim: int) -> None:
        super().__init__()
        self.mu = nn.Linear(num_in, latent_dim)
        self.logvar = nn.Linear(num_in, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.distributions.Normal:
        return torch.distributions.Normal(self.mu(x), F.softplus(self.logvar(x)))


class SixDToMatrix(nn.Module):
    """(B, J * 6) continuous 6D representation -> (B * J, 3, 3) rotation matrices.

    Each 6-vector is read as a 3x2 matrix whose columns are orthonormalised (Zhou et al. 2019); the
    third column is their cross product, so the output is always a proper rotation.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        m = x.reshape(-1, 3, 2)
        b1 = F.normalize(m[:, :, 0], dim=1)
        b2 = F.normalize(m[:, :, 1] - (b1 * m[:, :, 1]).sum(dim=1, keepdim=True) * b1, dim=1)
        b3 = torch.cross(b1, b2, dim=1)
        return torch.stack([b1, b2, b3], dim=-1)


class VPoser(nn.Module):
    """Variational autoencoder over the 21 SMPL body-joint rotations (official v2 parameter layout)."""

    def __init__(self, config: VPoserConfig | None = None) -> None:
        super().__init__()
        self.config = config or VPoserConfig()
        h, d, p = self.config.num_neurons, self.config.latent_dim, self.config.dropout
        n_in = NUM_BODY_JOINTS * 3
        self.encoder_net = nn.Sequential(
            _Flatten(), nn.BatchNorm1d(n_in), nn.Linear(n_in, h), nn.LeakyReLU(), nn.BatchNorm1d(h),
            nn.Dropout(p), nn.Linear(h, h), nn.Linear(h, h), NormalHead(h, d),
        )
        self.decoder_net = nn.Sequential(
            nn.Linear(d, h), nn.LeakyReLU(), nn.Dropout(p), nn.Linear(h, h), nn.LeakyReLU(),
            nn.Linear(h, NUM_BODY_JOINTS * 6), SixDToMatrix(),
        )

    @property
    def latent_dim(self) -> int:
        return self.config.latent_dim

    def encode(self, pose_body: torch.Tensor) -> torch.distributions.Normal:
        """q(z | pose): ``pose_body`` (B, 63) axis-angle of joints 1..21 -> Normal with (B, D) loc/scale."""
        return self.encoder_net(pose_body)

    def decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) latents -> (B, 21, 3, 3) rotation matrices."""
        return self.decoder_net(z).reshape(z.shape[0], NUM_BODY_JOINTS, 3, 3)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) latents -> (B, 63) axis-angle of joints 1..21."""
        from pytorch3d.transforms import matrix_to_axis_angle

        return matrix_to_axis_angle(self.decode_matrices(z)).reshape(z.shape[0], NUM_BODY_JOINTS * 3)
