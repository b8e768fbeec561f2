"""Maximum-likelihood feature distributions of the neural mesh model (``neuralfit train gmm``).

With the network frozen, every training image contributes, for each visible low-res vertex r, its unit
feature f (sampled at the vertex's projection) with soft orientation weights alpha_rk (seed eq. 6):

    phi_rk = normalise(sum_j alpha_jrk f_j)         (vMF mean direction MLE, the seed's weighted mean)

Background pixels (part mask 0: scene and occluders) feed the clutter model: a reservoir of their
features is clustered by spherical k-means into M clutter directions (M = 1 is the seed's single mean).

Concentration: all vMFs of the model share one kappa. Its MLE from the mean resultant length
``R = sum_rk |sum_j alpha f| / sum_rk sum_j alpha`` is ``kappa ~ R (D - R^2) / (1 - R^2)`` (Banerjee et al.
2005); :class:`GMMStatistics` reports it, and ``fit_temperature=True`` uses ``T = 1 / kappa`` instead of the
seed's T = 0.07.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from neuralfit.errors import NeuralfitError
from neuralfit.nets.model import STRIDE, MultiTaskNet
from neuralfit.training.batch import ground_truth, prepare_batch
from neuralfit.training.contrastive import sample_at
from neuralfit.training.losses import downsample_labels


@dataclass
class GMMStatistics:
    """Accumulated sufficient statistics.

    feature_sums: (V, K, D) sum of alpha-weighted unit features. counts: (V, K) sum of alpha.
    background: (N, D) reservoir of background features (uniform sample of all seen).
    background_seen: how many background features were offered to the reservoir.
    """

    feature_sums: torch.Tensor
    counts: torch.Tensor
    background: torch.Tensor
    background_seen: int = 0

    def kappa(self) -> float:
        """Shared vMF concentration MLE (Banerjee's approximation) from the mean resultant length."""
        n = float(self.counts.sum())
        if n <= 0:
            return float("nan")
        r = float(self.feature_sums.norm(dim=-1).sum()) / n
        d = self.feature_sums.shape[-1]
        r = min(r, 1 - 1e-6)
        return r * (d - r * r) / (1 - r * r)


def _reservoir_add(stats: GMMStatistics, feats: torch.Tensor, capacity: int, gen: torch.Generator) -> None:
    """Reservoir sampling (Vitter's algorithm R, vectorised): keep a uniform sample of every feature seen."""
    n_have = stats.background.shape[0]
    take = min(capacity - n_have, feats.shape[0])
    if take > 0:
        stats.background = torch.cat([stats.background, feats[:take]])
    seen = stats.background_seen + take
    rest = feats[take:]
    if rest.shape[0]:
        idx = torch.arange(seen + 1, seen + rest.shape[0] + 1, dtype=torch.float64)
        slot = (torch.rand(rest.shape[0], generator=gen, dtype=torch.float64) * idx).long()
        keep = slot < capacity
        stats.background[slot[keep]] = rest[keep]  # later duplicates of a slot win, as in the sequential form
        seen += rest.shape[0]
    stats.background_seen = seen


def spherical_kmeans(x: torch.Tensor, m: int, iters: int = 20, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster unit vectors (N, D) into m directions; returns (sums (m, D), counts (m,)) of the final assignment."""
    if x.shape[0] == 0:
        raise NeuralfitError("no background pixels seen: the clutter model needs images with background")
    g = torch.Generator().manual_seed(seed)
    centres = x[torch.randperm(x.shape[0], generator=g)[:m]].clone()
    for _ in range(iters):
        assign = (x @ centres.T).argmax(dim=1)
        sums = torch.zeros_like(centres).index_add_(0, assign, x)
        empty = sums.norm(dim=1) < 1e-8
        centres = torch.where(empty[:, None], centres, F.normalize(sums, dim=1))
    assign = (x @ centres.T).argmax(dim=1)
    sums = torch.zeros_like(centres).index_add_(0, assign, x)
    return sums, torch.bincount(assign, minlength=centres.shape[0]).float()


@torch.no_grad()
def accumulate_statistics(net: MultiTaskNet, datasets: list[Dataset], body: Any, num_components: int = 3,
                          tau: float = 10.0, batch_size: int = 16, num_workers: int = 0,
                          background_capacity: int = 20000, max_batches: int | None = None, seed: int = 0,
                          progress: bool = True) -> GMMStatistics:
    """Run the frozen network over the data and accumulate the MLE statistics."""
    from tqdm import tqdm

    device = net.device
    net.eval()
    v_low = int(body.lowres.part_labels.shape[0])
    d = net.config.feature_dim
    stats = GMMStatistics(torch.zeros(v_low, num_components, d, dtype=torch.float64),
                          torch.zeros(v_low, num_components, dtype=torch.float64), torch.zeros(0, d))
    gen = torch.Generator().manual_seed(seed)
    data = torch.utils.data.ConcatDataset(datasets) if len(datasets) > 1 else datasets[0]
    loader = DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    total = len(loader) if max_batches is None else min(max_batches, len(loader))
    for i, raw in enumerate(tqdm(loader, total=total, desc="feature GMM (MLE)", disable=not progress)):
        if i >= total:
            break
        batch = prepare_batch(raw, device)
        res = batch["image"].shape[-1]
        feats = net(net.normalise(batch["image"]))["features"]
        gt = ground_truth(batch, body, num_components, tau)
        if gt.uv is not None and bool(gt.vis.any()):
            f = sample_at(feats, gt.uv, res)  # (B, V, D)
            w = gt.alpha * gt.vis[..., None]  # (B, V, K)
            stats.feature_sums += torch.einsum("bvk,bvd->vkd", w.double(), f.double()).cpu()
            stats.counts += w.sum(0).double().cpu()
        if "partseg" in batch:
            bg = (downsample_labels(batch["partseg"], STRIDE) == 0) & batch["has_partseg"][:, None, None]
            _reservoir_add(stats, feats.permute(0, 2, 3, 1)[bg].float().cpu(), background_capacity, gen)
    return stats


def build_neural_model(stats: GMMStatistics, body: Any, num_clutter: int = 1, temperature: float = 0.07,
                       tau: float = 10.0, fit_temperature: bool = False, allow_unseen: bool = True, seed: int = 0):
    """Turn statistics into a :class:`neuralfit.neural.NeuralMeshModel` (vertex means, clutter, T)."""
    from neuralfit.neural.model import NeuralMeshModel

    clutter_sums, clutter_counts = spherical_kmeans(stats.background, num_clutter, seed=seed)
    if fit_temperature:
        kappa = stats.kappa()
        if not kappa > 0:
            raise NeuralfitError("cannot fit the concentration: no vertex observations")
        temperature = 1.0 / kappa
    return NeuralMeshModel.from_statistics(
        stats.feature_sums.float(), stats.counts.float(), clutter_sums, allow_unseen=allow_unseen,
        clutter_weights=clutter_counts.clamp(min=1e-6), temperature=temperature, tau=tau,
        body_name=str(body.name), body_spec=str(body.spec))
