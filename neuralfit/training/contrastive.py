"""3D-aware contrastive feature learning against a feature bank (NeuralSMPL / NeMo style).

Every low-res vertex r and orientation component k owns a unit vector ``bank[r, k]`` (D,). A training
image gives, for each visible vertex, the feature ``f`` sampled at its projection and the component
``k`` of its limb's current orientation. The loss is a softmax cross-entropy at temperature T over

    positives:  bank[r, k]
    negatives:  bank[r', k'] for every other vertex r' that is *not a mesh neighbour* of r, and the
                other components k' != k of r itself (the seed's L_3D: the same vertex seen in another
                orientation must look different); neighbours are excluded because their features
                legitimately look alike at stride 4 (seed's L_Vertex over distinct vertices);
                background features of the batch (the seed's L_BG), with gradient, so the network also
                learns to push clutter away from the body.

After each step the bank moves towards the batch mean of each (r, k)'s features with EMA momentum
0.9 and is re-normalised to unit length. Under DDP the per-class sums and counts are all-reduced first,
so every rank keeps the same bank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from neuralfit.errors import NeuralfitError


def adjacency_matrix(edges: torch.Tensor, num_vertices: int, hops: int = 1) -> torch.Tensor:
    """(V, V) bool: vertices within ``hops`` mesh edges of each other, excluding the diagonal.

    Args:
        edges: (E, 2) long undirected edges (``body.lowres.edges``).
    """
    a = torch.zeros(num_vertices, num_vertices, dtype=torch.bool, device=edges.device)
    if edges.numel():
        a[edges[:, 0], edges[:, 1]] = True
        a[edges[:, 1], edges[:, 0]] = True
    reach = a.clone()
    frontier = a.float()
    for _ in range(hops - 1):
        frontier = (frontier @ a.float()).clamp(max=1.0)
        reach |= frontier.bool()
    reach.fill_diagonal_(False)
    return reach


def hop_distances(edges: torch.Tensor, num_vertices: int, max_hops: int = 8) -> torch.Tensor:
    """(V, V) long: shortest path length in mesh edges, capped at ``max_hops + 1`` (breadth-first)."""
    a = torch.zeros(num_vertices, num_vertices, device=edges.device)
    if edges.numel():
        a[edges[:, 0], edges[:, 1]] = 1.0
        a[edges[:, 1], edges[:, 0]] = 1.0
    dist = torch.full((num_vertices, num_vertices), max_hops + 1, dtype=torch.long, device=edges.device)
    dist.fill_diagonal_(0)
    reached = torch.eye(num_vertices, dtype=torch.bool, device=edges.device)
    for h in range(1, max_hops + 1):
        new = ((reached.float() @ a) > 0) & ~reached
        if not new.any():
            break
        dist[new] = h
        reached |= new
    return dist


class FeatureBank(nn.Module):
    """Unit-norm feature bank (V, K, D) updated by EMA; a buffer, never a parameter.

    Args:
        num_vertices: V, low-res vertices. num_components: K orientation components. dim: D.
        momentum: EMA momentum (seed: 0.9): ``bank <- normalise(m bank + (1 - m) mean_batch_feature)``.
        seed: random initial unit vectors are drawn from this seed (deterministic runs).
    """

    def __init__(self, num_vertices: int, num_components: int, dim: int, momentum: float = 0.9, seed: int = 0):
        super().__init__()
        if not 0.0 <= momentum < 1.0:
            raise NeuralfitError(f"feature bank momentum must be in [0, 1), got {momentum}")
        g = torch.Generator().manual_seed(seed)
        init = F.normalize(torch.randn(num_vertices, num_components, dim, generator=g), dim=-1)
        self.register_buffer("bank", init)
        # How many times each class was updated: a class never seen stays random.
        self.register_buffer("updates", torch.zeros(num_vertices, num_components, dtype=torch.long))
        self.momentum = momentum

    @property
    def num_vertices(self) -> int:
        return self.bank.shape[0]

    @property
    def num_components(self) -> int:
        return self.bank.shape[1]

    @torch.no_grad()
    def update(self, features: torch.Tensor, classes: torch.Tensor) -> None:
        """EMA update with (N, D) features of flat classes ``r * K + k`` (N,); re-normalises.

        Under torch.distributed the sums and counts are all-reduced so every rank gets the same bank.
        """
        vk = self.num_vertices * self.num_components
        d = self.bank.shape[-1]
        sums = torch.zeros(vk, d, device=features.device, dtype=features.dtype)
        sums.index_add_(0, classes, features.detach())
        counts = torch.bincount(classes, minlength=vk).to(features.dtype)
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            torch.distributed.all_reduce(sums)
            torch.distributed.all_reduce(counts)
        seen = counts > 0
        flat = self.bank.view(vk, d)
        mean = sums[seen] / counts[seen, None]
        flat[seen] = F.normalize(self.momentum * flat[seen] + (1.0 - self.momentum) * mean, dim=-1)
        self.updates.view(-1)[seen] += 1


def sample_at(features: torch.Tensor, uv: torch.Tensor, res: int) -> torch.Tensor:
    """Bilinearly sample (B, D, h, w) features at crop-pixel points (B, N, 2) -> (B, N, D), re-normalised.

    The feature map covers the crop exactly (pixel centres at ``i + 0.5``, docs/architecture.md), so a
    crop point u maps to the normalised grid coordinate ``2 u / res - 1`` with ``align_corners=False``.
    Interpolating unit vectors shortens them, hence the re-normalisation.
    """
    grid = (2.0 * uv / res - 1.0)[:, :, None, :]  # (B, N, 1, 2)
    f = F.grid_sample(features, grid.to(features.dtype), mode="bilinear", align_corners=False)
    return F.normalize(f[..., 0].transpose(1, 2), dim=-1, eps=1e-6)


def sample_background(features: torch.Tensor, background: torch.Tensor, per_image: int,
                      generator: torch.Generator | None = None) -> torch.Tensor:
    """Up to ``per_image`` random background features per image: (B, D, h, w), (B, h, w) bool -> (M, D)."""
    b, d = features.shape[:2]
    flat = features.flatten(2)  # (B, D, h w)
    out = []
    for i in range(b):
        idx = background[i].flatten().nonzero().squeeze(1)
        if idx.numel() == 0:
            continue
        perm = torch.randperm(idx.numel(), generator=generator, device="cpu")[:per_image].to(idx.device)
        out.append(flat[i][:, idx[perm]].T)
    if not out:
        return features.new_zeros(0, d)
    return torch.cat(out)


def contrastive_loss(positives: torch.Tensor, classes: torch.Tensor, bank: FeatureBank,
                     neighbours: torch.Tensor, background: torch.Tensor, temperature: float = 0.07) -> torch.Tensor:
    """Cross-entropy of each vertex feature against the bank, neighbours excluded, background as negatives.

    Args:
        positives: (N, D) unit features sampled at visible vertices.
        classes: (N,) long, ``r * K + k`` (vertex r, orientation component k).
        bank: the feature bank (V, K, D); used without gradient.
        neighbours: (V, V) bool from :func:`adjacency_matrix`; ``neighbours[r]`` are dropped from r's negatives.
        background: (M, D) unit background features (M may be 0); gradients flow into them.
        temperature: softmax temperature (seed: 0.07).

    Returns the mean loss over the N features (0 if N == 0).
    """
    if positives.shape[0] == 0:
        return positives.sum() * 0.0
    v, k = bank.num_vertices, bank.num_components
    logits_bank = positives @ bank.bank.view(v * k, -1).T.detach() / temperature  # (N, V K)
    vert = torch.div(classes, k, rounding_mode="floor")
    excluded = neighbours[vert].repeat_interleave(k, dim=1)  # (N, V K): all components of neighbours
    logits_bank = logits_bank.masked_fill(excluded, float("-inf"))
    logits_bg = positives @ background.T / temperature  # (N, M)
    logits = torch.cat([logits_bank, logits_bg], dim=1)
    return F.cross_entropy(logits, classes)
