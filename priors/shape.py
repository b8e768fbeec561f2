"""Shape prior: independent Gaussians on the shape coefficients ``betas``.

SMPL's (and the free body's) ``shapedirs`` are PCA components scaled so that ``betas ~ N(0, I)`` over
the training population, hence the default is the plain L2 penalty ``0.5 * sum(betas^2)`` (SMPLify's
shape term). Per-component means and standard deviations can be given for a different population.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError


@dataclass
class ShapePriorConfig:
    """``mean``/``std`` per component (length ``num_betas``); ``None`` = 0 / 1 (the PCA convention)."""

    num_betas: int = 10
    mean: list[float] | None = None
    std: list[float] | None = None


class ShapePrior(torch.nn.Module):
    """Negative log-density (up to a constant) of ``betas`` under independent Gaussians."""

    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, config: ShapePriorConfig | None = None) -> None:
        super().__init__()
        self.config = config or ShapePriorConfig()
        n = self.config.num_betas
        mean = torch.zeros(n) if self.config.mean is None else torch.as_tensor(self.config.mean, dtype=torch.float32)
        std = torch.ones(n) if self.config.std is None else torch.as_tensor(self.config.std, dtype=torch.float32)
        if mean.shape != (n,) or std.shape != (n,) or bool((std <= 0).any()):
            raise NeuralfitError(f"shape prior mean/std must be {n} values with std > 0")
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def penalty(self, betas: torch.Tensor) -> torch.Tensor:
        """``0.5 * sum(((betas - mean) / std)^2)``: (B, num_betas) -> (B,)."""
        n = self.config.num_betas
        if not torch.is_tensor(betas) or betas.ndim != 2 or betas.shape[1] != n:
            shape = tuple(betas.shape) if hasattr(betas, "shape") else type(betas).__name__
            raise NeuralfitError(f"betas has shape {shape}; expected a (B, {n}) tensor")
        z = (betas - self.mean.to(betas.dtype)) / self.std.to(betas.dtype)
        return 0.5 * z.pow(2).sum(dim=1)

    def sample(self, n: int, seed: int | None = None, scale: float = 1.0) -> torch.Tensor:
        """(n, num_betas) draws; ``scale`` < 1 narrows the population (e.g. for synthetic data)."""
        gen = torch.Generator(device="cpu")
        if seed is not None:
            gen.manual_seed(int(seed))
        else:
            gen.seed()
        z = torch.randn(n, self.config.num_betas, generator=gen).to(self.mean.device)
        return self.mean + scale * self.std * z
