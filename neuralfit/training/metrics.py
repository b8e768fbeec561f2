"""Quality numbers of the network's outputs (issue 6's acceptance list); the evaluation package owns
the full protocols, these are the per-batch functions it and the training loop share.

- :func:`pa_mpjpe`: regressor joints after per-sample similarity Procrustes alignment (mm if inputs are m x 1000).
- :func:`part_iou`: per-class intersection/union counts, :func:`miou` turns accumulated counts into mIoU.
- :func:`pck`: fraction of visible keypoints within ``alpha`` x reference size.
- :func:`feature_hits`: nearest-bank-feature vertex within ``max_hops`` mesh edges of the true vertex.
- :func:`evaluate_network`: all four over data sets, for a trained checkpoint.
"""

from __future__ import annotations

from typing import Any

import torch

from neuralfit.eval.metrics import pa_mpjpe, procrustes_align  # noqa: F401  (one Procrustes for the package)
from neuralfit.training.contrastive import sample_at


def mpjpe(pred: torch.Tensor, gt: torch.Tensor, pelvis: tuple[int, int] = (2, 3)) -> torch.Tensor:
    """(B,) mean joint error after aligning the hip midpoints (LSP right/left hip 2, 3)."""
    p = pred - pred[:, list(pelvis)].mean(dim=1, keepdim=True)
    g = gt - gt[:, list(pelvis)].mean(dim=1, keepdim=True)
    return (p - g).norm(dim=-1).mean(dim=1)


def part_iou(pred: torch.Tensor, gt: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-class (intersection, union) pixel counts (num_classes,) of label maps of equal shape."""
    pred = pred.reshape(-1).long()
    gt = gt.reshape(-1).long()
    inter = torch.bincount(gt[pred == gt], minlength=num_classes)[:num_classes]
    area_p = torch.bincount(pred, minlength=num_classes)[:num_classes]
    area_g = torch.bincount(gt, minlength=num_classes)[:num_classes]
    return inter, area_p + area_g - inter


def miou(inter: torch.Tensor, union: torch.Tensor) -> float:
    """Mean IoU over classes that occur (union > 0) in accumulated counts."""
    ok = union > 0
    return float((inter[ok].float() / union[ok].float()).mean()) if bool(ok.any()) else float("nan")


def pck(pred_uv: torch.Tensor, gt: torch.Tensor, alpha: float = 0.1, ref_size: torch.Tensor | None = None
        ) -> tuple[int, int]:
    """(hits, visible) counts of keypoints within ``alpha * ref_size`` pixels.

    Args:
        pred_uv: (B, J, 2) predicted pixels. gt: (B, J, 3) pixels + visibility.
        ref_size: (B,) reference length per sample; default the longer side of the box around the
            sample's visible ground-truth keypoints (PCK@0.1 "of the person's size").
    """
    vis = gt[..., 2] > 0
    if ref_size is None:
        big = torch.finfo(gt.dtype).max
        lo = torch.where(vis[..., None], gt[..., :2], big).amin(dim=1)
        hi = torch.where(vis[..., None], gt[..., :2], -big).amax(dim=1)
        ref_size = (hi - lo).amax(dim=1).clamp(min=1.0)
    dist = (pred_uv - gt[..., :2]).norm(dim=-1)
    hit = (dist <= alpha * ref_size[:, None]) & vis
    return int(hit.sum()), int(vis.sum())


def feature_hits(features: torch.Tensor, uv: torch.Tensor, vis: torch.Tensor, bank: torch.Tensor,
                 hops: torch.Tensor, res: int, max_hops: int = 2) -> tuple[int, int]:
    """(hits, visible): visible vertices whose nearest bank entry (any vertex, any component) is within
    ``max_hops`` mesh edges of the true vertex.

    Args:
        features: (B, D, h, w) unit features. uv: (B, V, 2) crop pixels of the low-res vertices.
        vis: (B, V) bool visibility. bank: (V, K, D) unit means (feature bank or neural mesh model means).
        hops: (V, V) mesh hop distances (``contrastive.hop_distances``). res: crop size in pixels.
    """
    f = sample_at(features, uv, res)[vis]  # (N, D)
    if f.shape[0] == 0:
        return 0, 0
    v, k, d = bank.shape
    nearest = (f @ bank.reshape(v * k, d).T).argmax(dim=1) // k  # vertex of the best bank entry
    true = vis.nonzero()[:, 1]
    ok = hops[true, nearest] <= max_hops
    return int(ok.sum()), int(ok.numel())


@torch.no_grad()
def evaluate_network(net: Any, datasets: list, body: Any, bank: torch.Tensor | None = None, batch_size: int = 16,
                     num_workers: int = 0, max_batches: int | None = None, max_hops: int = 2,
                     progress: bool = True) -> dict[str, float]:
    """The issue's network numbers over data sets (no augmentation expected).

    Returns ``pa_mpjpe_mm`` (regressor, LSP-14 = first 14 spin24 joints, samples with 3D joints),
    ``part_miou`` (stride-4 cells vs. the part mask's central pixel, classes that occur),
    ``pck@0.1`` (heatmap keypoints, visible spin24 keypoints, 0.1 x the visible-keypoint box), and
    ``feature_acc@2`` (visible low-res vertices whose nearest entry of ``bank`` (V, K, D) is within
    ``max_hops`` mesh edges; default bank: the checkpoint's contrastive bank).
    """
    from tqdm import tqdm

    from neuralfit.nets.heads import decode_heatmaps
    from neuralfit.nets.model import STRIDE
    from neuralfit.training.batch import ground_truth, pose_body, prepare_batch
    from neuralfit.training.contrastive import hop_distances
    from neuralfit.training.losses import downsample_labels

    device = net.device
    net.eval()
    if bank is None:
        bank = getattr(net, "checkpoint_info", {}).get("feature_bank")
    hops = None
    if bank is not None:
        bank = bank.to(device)
        hops = hop_distances(torch.as_tensor(body.lowres.edges).to(device), bank.shape[0], max_hops=max_hops)
    data = torch.utils.data.ConcatDataset(datasets) if len(datasets) > 1 else datasets[0]
    loader = torch.utils.data.DataLoader(data, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    total = len(loader) if max_batches is None else min(max_batches, len(loader))
    pa, inter, union = [], 0, 0
    kp_hit = kp_n = f_hit = f_n = 0
    for i, raw in enumerate(tqdm(loader, total=total, desc="evaluate network", disable=not progress)):
        if i >= total:
            break
        batch = prepare_batch(raw, device)
        res = batch["image"].shape[-1]
        out = net(net.normalise(batch["image"]))
        if "joints3d" in batch:
            ok = (batch["joints3d"][:, :14, 3] > 0).all(dim=1)
            if bool(ok.any()):
                pred, _ = pose_body(body, out["betas"], out["rotmat"])
                j = body.keypoints(pred, "spin24")[:, :14]
                pa.append(pa_mpjpe(j[ok], batch["joints3d"][ok, :14, :3]) * 1000.0)
        if "partseg" in batch:
            ok = batch["has_partseg"]
            if bool(ok.any()):
                labels = downsample_labels(batch["partseg"], STRIDE)[ok]
                a, b = part_iou(out["part_logits"][ok].argmax(1), labels, net.config.num_parts)
                inter, union = inter + a, union + b
        if "keypoints" in batch and net.config.joint_set == "spin24":
            h, n = pck(decode_heatmaps(out["heatmaps"], STRIDE)[..., :2], batch["keypoints"], 0.1)
            kp_hit, kp_n = kp_hit + h, kp_n + n
        if hops is not None:
            gt = ground_truth(batch, body, bank.shape[1], 10.0)
            if gt.uv is not None:
                h, n = feature_hits(out["features"], gt.uv, gt.vis, bank, hops, res, max_hops)
                f_hit, f_n = f_hit + h, f_n + n
    nan = float("nan")
    return {
        "pa_mpjpe_mm": float(torch.cat(pa).mean()) if pa else nan,
        "part_miou": miou(inter, union) if isinstance(union, torch.Tensor) else nan,
        "pck@0.1": kp_hit / kp_n if kp_n else nan,
        f"feature_acc@{max_hops}": f_hit / f_n if f_n else nan,
    }
