"""The pose-prior interface the fitter and the data engine use, over any VPoser-like backbone.

``PosePrior.penalty(body_pose)`` is what the fitter minimises: the negative log of the standard-Normal
latent prior at the encoded mean, ``0.5 * |mu(x)|^2`` (constants dropped), plus a weighted joint-angle-
limit term (:mod:`.joint_limits`). VPoser models joints 1..21 (``body_pose[:, :63]``); the two hand
joints (22, 23) are neither scored by the VAE nor changed by :meth:`PosePrior.project`; they are zero in
decoded and sampled poses, and the limit term still covers them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn

from neuralfit.errors import NeuralfitError

from .joint_limits import JointLimitPrior
from .vposer import NUM_BODY_JOINTS

_N_VP = NUM_BODY_JOINTS * 3  # 63


class PoseBackbone(Protocol):
    """What :class:`PosePrior` needs from a VAE: ``encode`` (B, 63) -> Normal, ``decode`` (B, D) -> (B, 63)."""

    latent_dim: int

    def encode(self, pose_body: torch.Tensor) -> torch.distributions.Normal: ...

    def decode(self, z: torch.Tensor) -> torch.Tensor: ...


@dataclass
class PosePriorConfig:
    """Weights of the penalty terms and sampling behaviour.

    ``rec_weight`` multiplies the reconstruction error ``sum_j |R_j(x) - R_j(decode(mu(x)))|_F^2``
    over the 21 joints' rotation matrices: with it the penalty is a negative-ELBO-style score (a pose
    the VAE cannot reproduce is implausible even if its code is short); 0 gives the plain latent term.
    ``limit_weight`` multiplies the squared limit excess (rad^2): 100 makes 0.1 rad past a limit cost
    as much as one unit of latent negative log-prior. ``max_sample_tries`` bounds the rejection loop
    that drops decoded samples violating a joint limit (the prior is VAE x limit box).
    """

    limit_weight: float = 100.0
    rec_weight: float = 1.0
    reject_violations: bool = True
    max_sample_tries: int = 20


def check_body_pose(body_pose: torch.Tensor, what: str = "body_pose") -> torch.Tensor:
    """Raise a NeuralfitError unless ``body_pose`` is a (B, 69) tensor."""
    if not torch.is_tensor(body_pose) or body_pose.ndim != 2 or body_pose.shape[1] != 69:
        shape = tuple(body_pose.shape) if hasattr(body_pose, "shape") else type(body_pose).__name__
        raise NeuralfitError(f"{what} has shape {shape}; expected a (B, 69) axis-angle tensor")
    return body_pose


class PosePrior(nn.Module):
    """VPoser-style VAE + joint-angle limits, behind one interface. Always in eval mode, frozen weights."""

    def __init__(self, backbone: nn.Module, limits: JointLimitPrior | None = None,
                 config: PosePriorConfig | None = None, name: str = "vposer") -> None:
        super().__init__()
        self.backbone = backbone
        self.limits = limits if limits is not None else JointLimitPrior()
        self.config = config or PosePriorConfig()
        self.name = name
        for p in self.backbone.parameters():
            p.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> PosePrior:
        # The prior is a fixed, trained model: BatchNorm must use its running statistics and dropout
        # must stay off even when a surrounding module is switched to training mode.
        return super().train(False)

    @property
    def latent_dim(self) -> int:
        return int(self.backbone.latent_dim)

    def _device_dtype(self) -> tuple[torch.device, torch.dtype]:
        p = next(self.backbone.parameters())
        return p.device, p.dtype

    def encode(self, body_pose: torch.Tensor) -> torch.distributions.Normal:
        """q(z | pose): (B, 69) axis-angle -> Normal with (B, D) ``loc`` and ``scale``."""
        check_body_pose(body_pose)
        _, dtype = self._device_dtype()
        return self.backbone.encode(body_pose[:, :_N_VP].to(dtype))

    def encode_mean(self, body_pose: torch.Tensor) -> torch.Tensor:
        """(B, 69) -> (B, D): the latent mean."""
        return self.encode(body_pose).mean

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, D) latents -> (B, 69) axis-angle; hand joints zero."""
        if not torch.is_tensor(z) or z.ndim != 2 or z.shape[1] != self.latent_dim:
            shape = tuple(z.shape) if hasattr(z, "shape") else type(z).__name__
            raise NeuralfitError(f"latent has shape {shape}; expected (B, {self.latent_dim})")
        _, dtype = self._device_dtype()
        out = self.backbone.decode(z.to(dtype))
        return torch.cat([out, out.new_zeros(out.shape[0], 69 - _N_VP)], dim=1)

    def latent_penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """``0.5 * |mu(x)|^2``: (B, 69) -> (B,)."""
        return 0.5 * self.encode_mean(body_pose).pow(2).sum(dim=1)

    def _decode_matrices(self, z: torch.Tensor) -> torch.Tensor:
        if hasattr(self.backbone, "decode_matrices"):
            return self.backbone.decode_matrices(z)
        from pytorch3d.transforms import axis_angle_to_matrix

        return axis_angle_to_matrix(self.backbone.decode(z).reshape(z.shape[0], NUM_BODY_JOINTS, 3))

    def reconstruction_error(self, body_pose: torch.Tensor) -> torch.Tensor:
        """``sum_j |R_j(x) - R_j(decode(mu(x)))|_F^2`` over joints 1..21: (B, 69) -> (B,)."""
        from pytorch3d.transforms import axis_angle_to_matrix

        mu = self.encode_mean(body_pose)
        target = axis_angle_to_matrix(body_pose[:, :_N_VP].to(mu.dtype).reshape(-1, NUM_BODY_JOINTS, 3))
        return (self._decode_matrices(mu) - target).pow(2).sum(dim=(1, 2, 3))

    def penalty(self, body_pose: torch.Tensor) -> torch.Tensor:
        """What the fitter minimises: ``0.5 |mu(x)|^2 + rec_weight * rec(x) + limit_weight * excess(x)^2``.

        (B, 69) axis-angle -> (B,); differentiable with respect to ``body_pose``.
        """
        from pytorch3d.transforms import axis_angle_to_matrix

        check_body_pose(body_pose)
        _, dtype = self._device_dtype()
        x = body_pose.to(dtype)
        mu = self.backbone.encode(x[:, :_N_VP]).mean
        out = 0.5 * mu.pow(2).sum(dim=1)
        if self.config.rec_weight:
            target = axis_angle_to_matrix(x[:, :_N_VP].reshape(-1, NUM_BODY_JOINTS, 3))
            rec = (self._decode_matrices(mu) - target).pow(2).sum(dim=(1, 2, 3))
            out = out + self.config.rec_weight * rec
        return out + self.config.limit_weight * self.limits.penalty(x)

    def project(self, body_pose: torch.Tensor) -> torch.Tensor:
        """Nearest plausible pose ``decode(encode_mean(x))``: (B, 69) -> (B, 69); hands kept from the input."""
        check_body_pose(body_pose)
        out = self.decode(self.encode_mean(body_pose)).to(body_pose.dtype)
        return torch.cat([out[:, :_N_VP], body_pose[:, _N_VP:]], dim=1)

    @torch.no_grad()
    def sample(self, n: int, seed: int | None = None, temperature: float = 1.0,
               reject: bool | None = None) -> torch.Tensor:
        """(n, 69) poses decoded from ``z ~ N(0, temperature^2 I)``.

        With ``reject`` (default ``config.reject_violations``) a sample that breaks a joint limit is redrawn (up to
        ``max_sample_tries`` rounds; any left are clamped into the limits), so knees and elbows never
        bend the wrong way. ``reject=False`` returns the VAE's raw decodes.
        """
        if n < 0:
            raise NeuralfitError(f"number of samples is {n}; expected >= 0")
        device, dtype = self._device_dtype()
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(int(seed))
        else:
            gen.seed()

        def draw(k: int) -> torch.Tensor:
            z = temperature * torch.randn(k, self.latent_dim, generator=gen, dtype=dtype)
            return self.decode(z.to(device))

        out = draw(n)
        if (self.config.reject_violations if reject is None else reject) and n > 0:
            for _ in range(self.config.max_sample_tries):
                bad = self.limits.violations(out).any(dim=1)
                if not bool(bad.any()):
                    break
                out[bad] = draw(int(bad.sum()))
            out = self.limits.clamp(out)
        return out
