"""Training loop of the multi-task network (``neuralfit train network``).

One step, for a batch of crops with SPIN-style annotations (batch contract: :mod:`neuralfit.training.batch`)::

    out = net(images)
    L = w_feat  * contrastive(features at visible low-res vertices vs. feature bank, background negatives)
      + w_part  * CE(part logits, part mask)
      + w_heat  * heatmap loss(heatmaps, 2D keypoints)
      + w_pose  * |R_pred - R_gt|^2 + w_betas * |beta_pred - beta_gt|^2          (samples with SMPL)
      + w_j3d   * |J3D_pred - J3D_gt|^2 (root-relative) + w_j2d * |proj(J3D_pred) - j2d|^2 + w_cam * exp(-10 s)
    Adam step; then the bank takes an EMA step towards this batch's vertex features.

Runs single-process (CPU or one GPU) or under ``torchrun`` (DDP; one process per GPU, gloo on CPU).
Every epoch writes the network checkpoint (``out``), a resumable training state (``out`` + ``.state.pt``),
the loss curves as JSON and PNG (``out`` stem + ``_curves.json/.png``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import ConcatDataset, DataLoader, Dataset

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path, save_json
from neuralfit.nets.checkpoint import body_signature, save_network
from neuralfit.nets.model import STRIDE, MultiTaskNet, NetConfig
from neuralfit.training import losses as L
from neuralfit.training.batch import ground_truth, prepare_batch
from neuralfit.training.contrastive import (
    FeatureBank,
    adjacency_matrix,
    contrastive_loss,
    sample_at,
    sample_background,
)
from neuralfit.training.regressor import regressor_terms


@dataclass
class TrainConfig:
    """Optimisation settings; defaults follow the seed (K=3, tau=10, T=0.07, EMA 0.9) and SPIN's loss weights.

    Attributes:
        epochs / batch_size / lr: Adam with a constant learning rate (SPIN: 5e-5 at batch 64).
        num_components: K orientation components per vertex. tau: softness of their assignment.
        temperature / bank_momentum: contrastive softmax temperature and feature bank EMA momentum.
        background_per_image: background features sampled per image as negatives.
        heatmap_sigma: Gaussian sigma of keypoint targets, in stride-4 cells.
        w_*: loss weights (SPIN: keypoints 5, pose 1, betas 0.001; 3D joints 5).
        max_steps_per_epoch: cap for smoke runs (None = the whole data set).
        freeze_backbone: keep the ImageNet backbone fixed (cheap CPU fine-tuning of decoder, heads, regressor).
        finetune_stages: with ``freeze_backbone``, still train the last N of the backbone's 5 stages (N = 2:
            strides 16 and 32, where the semantic features are and a backward pass is cheap), at
            ``backbone_lr_scale`` x lr, with their batch-norm statistics frozen (batches of 8 are too small).
        num_workers: DataLoader workers. seed: sampling and bank initialisation seed.
        device: "cpu", "cuda", "cuda:1"...; under torchrun each rank uses its LOCAL_RANK GPU when on cuda.
    """

    epochs: int = 20
    batch_size: int = 32
    lr: float = 1e-4
    weight_decay: float = 0.0
    num_components: int = 3
    tau: float = 10.0
    temperature: float = 0.07
    bank_momentum: float = 0.9
    background_per_image: int = 128
    heatmap_sigma: float = 2.0
    w_feature: float = 1.0
    w_part: float = 1.0
    w_heatmap: float = 1.0
    w_pose: float = 1.0
    w_betas: float = 0.001
    w_joints3d: float = 5.0
    w_keypoints2d: float = 5.0
    w_cam: float = 1.0
    max_steps_per_epoch: int | None = None
    freeze_backbone: bool = False
    finetune_stages: int = 0
    backbone_lr_scale: float = 0.3
    num_workers: int = 2
    seed: int = 0
    device: str = "cpu"
    extra: dict[str, Any] = field(default_factory=dict)


class NetworkTrainer:
    """Holds the network, feature bank, optimiser and loss history; :meth:`step` is one training step."""

    def __init__(self, body: Any, net_config: NetConfig, config: TrainConfig, device: torch.device | str = "cpu"):
        self.body = body
        self.config = config
        self.device = torch.device(device)
        if net_config.joint_set not in body.keypoint_sets:
            raise NeuralfitError(f"body {body.name!r} has no keypoint set {net_config.joint_set!r}")
        net_config.num_keypoints = len(body.keypoint_sets[net_config.joint_set].names)
        self.net = MultiTaskNet(net_config).to(self.device)
        low = body.lowres
        v_low = int(low.part_labels.shape[0])
        self.bank = FeatureBank(v_low, config.num_components, net_config.feature_dim, config.bank_momentum,
                                seed=config.seed).to(self.device)
        edges = getattr(low, "edges", None)
        if edges is None:
            from neuralfit.body.lowres import mesh_edges

            edges = torch.as_tensor(mesh_edges(low.faces))
        self.neighbours = adjacency_matrix(torch.as_tensor(edges).to(self.device), v_low)
        self.model: torch.nn.Module = self.net  # replaced by the DDP wrapper when distributed
        if config.freeze_backbone:
            self.net.backbone.requires_grad_(False)
            if config.finetune_stages > 0:
                for stage in self.net.backbone.stages()[-config.finetune_stages:]:
                    stage.requires_grad_(True)
        backbone_ids = {id(p) for p in self.net.backbone.parameters()}
        trainable = [p for p in self.net.parameters() if p.requires_grad]
        groups = [{"params": [p for p in trainable if id(p) not in backbone_ids]}]
        tuned = [p for p in trainable if id(p) in backbone_ids]
        if tuned:
            groups.append({"params": tuned, "lr": config.lr * (config.backbone_lr_scale if config.freeze_backbone
                                                                else 1.0)})
        self.optimizer = torch.optim.Adam(groups, lr=config.lr, weight_decay=config.weight_decay)
        self.history: list[dict[str, float]] = []
        self.epoch = 0
        self.generator = torch.Generator().manual_seed(config.seed)

    # -- one step -------------------------------------------------------------------------------
    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """All loss terms for a prepared batch (and the contrastive positives for the bank update)."""
        cfg = self.config
        body = self.body
        res = batch["image"].shape[-1]
        out = self.model(self.net.normalise(batch["image"]))
        gt = ground_truth(batch, body, cfg.num_components, cfg.tau)
        terms: dict[str, torch.Tensor] = {}

        # Contrastive features: visible low-res vertices vs. the bank; background pixels as negatives.
        feats = out["features"]
        update: dict[str, Any] = {}
        if gt.uv is not None and bool(gt.vis.any()):
            f_all = sample_at(feats, gt.uv, res)  # (B, V, D)
            bi, vi = gt.vis.nonzero(as_tuple=True)
            k = gt.alpha[bi, vi].argmax(dim=-1)
            classes = vi * cfg.num_components + k
            if "partseg" in batch:
                bg = L.downsample_labels(batch["partseg"], STRIDE) == 0
                bg &= batch["has_partseg"][:, None, None]
            else:
                bg = torch.zeros(feats.shape[0], *feats.shape[-2:], dtype=torch.bool, device=feats.device)
            background = sample_background(feats, bg, cfg.background_per_image, self.generator)
            terms["feature"] = contrastive_loss(f_all[bi, vi], classes, self.bank, self.neighbours, background,
                                                cfg.temperature)
            update = {"features": f_all[bi, vi].detach(), "classes": classes}
        else:
            terms["feature"] = feats.sum() * 0.0

        if "partseg" in batch:
            terms["part"] = L.part_seg_loss(out["part_logits"], batch["partseg"], batch["has_partseg"])
        else:
            terms["part"] = out["part_logits"].sum() * 0.0
        joint_set = self.net.config.joint_set
        kp_key = "keypoints" if joint_set == "spin24" else f"keypoints_{joint_set}"
        if kp_key in batch:
            terms["heatmap"] = L.heatmap_loss(out["heatmaps"], batch[kp_key], STRIDE, cfg.heatmap_sigma)
        else:
            terms["heatmap"] = out["heatmaps"].sum() * 0.0

        # Regressor: SMPL parameters, 3D joints, 2D reprojection through the weak-perspective camera
        # (the convention camera of every crop, docs/architecture.md, as in predict()).
        terms.update(regressor_terms(body, out, gt.rotmat, batch["has_smpl"], res, batch.get("betas"),
                                     batch.get("joints3d"), batch.get("keypoints")))
        return terms, update

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        c = self.config
        w = {"feature": c.w_feature, "part": c.w_part, "heatmap": c.w_heatmap, "pose": c.w_pose, "betas": c.w_betas,
             "joints3d": c.w_joints3d, "keypoints2d": c.w_keypoints2d, "cam": c.w_cam}
        return sum(w[k] * v for k, v in terms.items())

    def step(self, raw_batch: dict[str, Any]) -> dict[str, float]:
        """One optimisation step + bank update; returns the loss terms as floats."""
        self.model.train()
        if self.config.freeze_backbone:
            self.net.backbone.eval()  # frozen also means frozen batch-norm statistics
        batch = prepare_batch(raw_batch, self.device)
        terms, update = self.losses(batch)
        loss = self.total(terms)
        if not torch.isfinite(loss):
            raise NeuralfitError(f"training loss became {float(loss)} (terms: "
                                 f"{ {k: float(v) for k, v in terms.items()} }); lower --lr")
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        if not update:  # under DDP every rank must join the bank's all-reduce, even with nothing to add
            d = self.bank.bank.shape[-1]
            update = {"features": torch.zeros(0, d, device=self.device),
                      "classes": torch.zeros(0, dtype=torch.long, device=self.device)}
        self.bank.update(update["features"], update["classes"])
        rec = {k: float(v.detach()) for k, v in terms.items()}
        rec["total"] = float(loss.detach())
        return rec

    # -- state ------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict(), "bank": self.bank.state_dict(), "optimizer": self.optimizer.state_dict(),
                "epoch": self.epoch, "history": self.history, "net_config": self.net.config.to_dict(),
                "train_config": asdict(self.config), "body": body_signature(self.body)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("body") != body_signature(self.body):
            raise NeuralfitError("training state was made for another body; start a new run without --resume")
        self.net.load_state_dict(state["net"])
        self.bank.load_state_dict(state["bank"])
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as exc:
            raise NeuralfitError("training state trained another set of parameters (freeze/finetune settings "
                                 "differ); start a new run from its checkpoint with --init instead") from exc
        self.epoch = int(state["epoch"])
        self.history = list(state["history"])

    @torch.no_grad()
    def init_from_checkpoint(self, path: str | os.PathLike) -> None:
        """Start from a network checkpoint's weights (same config) and its contrastive feature bank."""
        from neuralfit.nets.checkpoint import check_compatible, read_checkpoint

        ckpt = read_checkpoint(path)
        check_compatible(ckpt, self.body, path)
        state = {k: v.float() if v.is_floating_point() else v for k, v in ckpt["state_dict"].items()}
        try:
            self.net.load_state_dict(state)
        except RuntimeError as exc:
            raise NeuralfitError(f"--init {path}: its architecture differs from this run's: {str(exc)[:200]}") from exc
        if ckpt.get("feature_bank") is not None:
            self.bank.bank.copy_(ckpt["feature_bank"].float().to(self.bank.bank.device))

    @torch.no_grad()
    def init_from_mean(self, pose: np.ndarray, betas: np.ndarray) -> None:
        """Start the regressor from the training set's mean pose (chordal mean of rotations) and shape."""
        from neuralfit.nets.rotations import axis_angle_to_matrix, mean_rotation

        rot = mean_rotation(axis_angle_to_matrix(torch.as_tensor(pose, dtype=torch.float32).reshape(-1, 24, 3)))
        nb = self.net.config.num_betas
        self.net.regressor.set_init(rot.to(self.device),
                                    torch.as_tensor(betas, dtype=torch.float32).reshape(-1, betas.shape[-1])
                                    .mean(0)[:nb].to(self.device))


# -- the loop -------------------------------------------------------------------------------------

def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    return int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0"))


def curve_paths(out: Path) -> tuple[Path, Path, Path]:
    """Sidecar files of a checkpoint: (training state, curves JSON, curves PNG)."""
    out = Path(out)
    return (out.with_name(out.name + ".state.pt"), out.with_name(out.stem + "_curves.json"),
            out.with_name(out.stem + "_curves.png"))


def plot_curves(history: list[dict[str, float]], path: Path, smooth: int = 20,
                title: str = "neuralfit train network: loss per step") -> None:
    """Write a PNG with one panel per loss term (raw and moving average), atomically."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keys = [k for k in history[0] if k not in ("epoch", "step")] if history else []
    n = max(len(keys), 1)
    cols = 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 2.6 * rows), squeeze=False)
    for ax, key in zip(axes.flat, keys, strict=False):
        y = np.array([h[key] for h in history])
        ax.plot(y, lw=0.5, alpha=0.4)
        if len(y) >= smooth:
            ax.plot(np.arange(smooth - 1, len(y)), np.convolve(y, np.ones(smooth) / smooth, "valid"), lw=1.2)
        ax.set_title(key, fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.set_yscale("log" if (y > 0).all() else "linear")
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    fig.suptitle(title)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90)
    plt.close(fig)


def _dataset_mean_params(datasets: list[Dataset]) -> tuple[np.ndarray, np.ndarray] | None:
    """Mean pose/shape over datasets that expose their annotation arrays (``pose``, ``shape``, ``has_smpl``)."""
    poses, shapes = [], []
    for ds in datasets:
        ann = getattr(ds, "annotations", None) or getattr(ds, "data", None)  # NpzDataset keeps its arrays in .data
        if not isinstance(ann, dict) or "pose" not in ann:
            continue
        has = np.asarray(ann.get("has_smpl", np.ones(len(ann["pose"])))) > 0.5
        poses.append(np.asarray(ann["pose"])[has])
        shapes.append(np.asarray(ann.get("shape", np.zeros((len(has), 10))))[has])
    if not poses or sum(len(p) for p in poses) == 0:
        return None
    return np.concatenate(poses), np.concatenate(shapes)


def train_network(datasets: list[Dataset], out: str | os.PathLike, body: Any, net_config: NetConfig | None = None,
                  config: TrainConfig | None = None, resume: bool = False, provenance: dict[str, Any] | None = None,
                  progress: bool = True, init: str | os.PathLike | None = None) -> NetworkTrainer:
    """Train the multi-task network on ``datasets`` (batch contract: :mod:`neuralfit.training.batch`).

    Writes ``out`` (network checkpoint, every epoch), ``out.state.pt`` (resume), ``<stem>_curves.json/.png``.
    With ``resume`` the run continues from ``out.state.pt`` up to ``config.epochs`` epochs in total.
    ``init`` starts a new run (fresh optimiser, epoch 0) from a network checkpoint's weights and feature bank,
    e.g. to fine-tune with other settings.
    Returns the trainer (network, bank, history).
    """
    from tqdm import tqdm

    config = config or TrainConfig()
    if config.epochs < 1:  # zero epochs would return without writing ``out`` (issue 18)
        raise NeuralfitError(f"epochs must be >= 1, got {config.epochs}")
    net_config = net_config or NetConfig()
    out = Path(out)
    state_path, json_path, png_path = curve_paths(out)
    rank, world, local_rank = _distributed()
    device = torch.device(config.device)
    if world > 1:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if not torch.distributed.is_initialized():
            torch.distributed.init_process_group(backend)
        if device.type == "cuda":
            device = torch.device("cuda", local_rank)
            torch.cuda.set_device(device)
            body = body.to(device) if hasattr(body, "to") else body
    torch.manual_seed(config.seed + rank)

    trainer = NetworkTrainer(body, net_config, config, device)
    if resume:
        if not state_path.is_file():
            raise NeuralfitError(f"--resume: no training state {state_path} next to {out}")
        trainer.load_state_dict(torch.load(state_path, map_location=device, weights_only=True))
        scales = [1.0] + [config.backbone_lr_scale if config.freeze_backbone else 1.0] * 2
        for group, scale in zip(trainer.optimizer.param_groups, scales, strict=False):
            group["lr"] = config.lr * scale  # --lr on resume takes effect (e.g. a lower rate to finish)
    elif init is not None:
        trainer.init_from_checkpoint(init)
    if not resume and init is None:
        mean = _dataset_mean_params(datasets)
        if mean is not None:
            trainer.init_from_mean(*mean)
    if world > 1:
        trainer.model = torch.nn.parallel.DistributedDataParallel(
            trainer.net, device_ids=[device.index] if device.type == "cuda" else None)

    data = ConcatDataset(datasets) if len(datasets) > 1 else datasets[0]
    if len(data) == 0:
        raise NeuralfitError("training data set is empty")
    sampler = torch.utils.data.DistributedSampler(data, seed=config.seed) if world > 1 else None
    loader = DataLoader(data, batch_size=config.batch_size, shuffle=sampler is None, sampler=sampler,
                        num_workers=config.num_workers, drop_last=len(data) >= config.batch_size * world,
                        generator=torch.Generator().manual_seed(config.seed + trainer.epoch),
                        persistent_workers=False)
    prov = {"neuralfit_train": asdict(config), "datasets": [str(getattr(d, "root", d)) for d in datasets],
            "samples": len(data), "world_size": world, **(provenance or {})}

    while trainer.epoch < config.epochs:
        if sampler is not None:
            sampler.set_epoch(trainer.epoch)
        for ds in datasets:  # NpzDataset draws new augmentations per epoch
            if hasattr(ds, "set_epoch"):
                ds.set_epoch(trainer.epoch)
        steps = len(loader) if config.max_steps_per_epoch is None else min(len(loader), config.max_steps_per_epoch)
        bar = tqdm(total=steps, desc=f"epoch {trainer.epoch + 1}/{config.epochs}", disable=not progress or rank != 0,
                   dynamic_ncols=True)
        t0 = time.time()
        for i, batch in enumerate(loader):
            if i >= steps:
                break
            rec = trainer.step(batch)
            rec["epoch"] = trainer.epoch + (i + 1) / steps
            trainer.history.append(rec)
            bar.set_postfix({k: f"{rec[k]:.3g}" for k in ("total", "feature", "part", "heatmap", "joints3d")})
            bar.update(1)
        bar.close()
        trainer.epoch += 1
        if rank == 0:
            prov.update({"epochs_done": trainer.epoch, "last_epoch_seconds": round(time.time() - t0, 1),
                         "final_losses": trainer.history[-1] if trainer.history else {},
                         "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            save_network(out, trainer.net, body, provenance=prov, feature_bank=trainer.bank.bank)
            with atomic_path(state_path) as tmp:
                torch.save(trainer.state_dict(), tmp)
            save_json(json_path, trainer.history)
            if trainer.history:
                plot_curves(trainer.history, png_path)
    if world > 1:
        torch.distributed.barrier()
    return trainer
