"""Training the embedded default pose prior (``neuralfit train prior``).

A VPoser v2-layout VAE is fitted to the retargeted DeepMimic frames (:mod:`.mocap`), left-right mirrored,
with two augmentations that make up for how thin 15 clips are:

* *joint-limit-uniform jitter*: every training pose gets, per joint and axis, uniform noise of
  ``jitter`` x (that joint's range) and is clipped into the limits, so the prior spreads around the
  mocap frames instead of memorising them;
* joints DeepMimic does not have (collars, feet, wrists) are drawn uniformly in ``unobserved`` x their
  range, so the prior does not insist they be exactly zero.

Loss per pose: squared Frobenius error of the 21 decoded rotation matrices (summed) + ``kl_weight`` x
KL(q(z|x) || N(0, I)). Whole clips (and their mirrors) in ``holdout_clips`` are left out for validation.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuralfit.errors import NeuralfitError

from .joint_limits import JointLimitPrior
from .mocap import MocapSet, extract_pybullet_mocap, load_mocap
from .sampling import jitter_poses
from .vposer import NUM_BODY_JOINTS, VPoser, VPoserConfig


@dataclass
class TrainPriorConfig:
    """Defaults reproduce the shipped ``priors/assets/default_prior.npz``."""

    epochs: int = 150
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    kl_weight: float = 0.1
    num_neurons: int = 512
    latent_dim: int = 32
    jitter: float = 0.05
    unobserved: float = 0.3
    holdout_clips: tuple[str, ...] = ("run", "dance_b")
    seed: int = 0
    # The model is small: one thread avoids OpenMP contention on a shared 2-core machine (measured:
    # 2 threads ran ~8x slower per epoch than 1 while other jobs were running). None = torch's default.
    threads: int | None = 1
    extra_meta: dict[str, Any] = field(default_factory=dict)


def _rotmats(aa: torch.Tensor) -> torch.Tensor:
    from pytorch3d.transforms import axis_angle_to_matrix

    return axis_angle_to_matrix(aa.reshape(aa.shape[0], -1, 3))


def augment(body_pose: torch.Tensor, limits: JointLimitPrior, cfg: TrainPriorConfig,
            gen: torch.Generator) -> torch.Tensor:
    """Jitter (B, 69) mocap poses within the joint limits and randomise the unobserved joints."""
    return jitter_poses(body_pose, limits, cfg.jitter, cfg.unobserved, gen)


def vae_loss(model: VPoser, body_pose: torch.Tensor, kl_weight: float) -> tuple[torch.Tensor, dict[str, float]]:
    """Mean over the batch of (rotation-matrix squared error + kl_weight x KL): a scalar and its parts."""
    x = body_pose[:, : NUM_BODY_JOINTS * 3]
    q = model.encode(x)
    z = q.rsample()
    rec = (model.decode_matrices(z) - _rotmats(x)).pow(2).sum(dim=(1, 2, 3))
    prior = torch.distributions.Normal(torch.zeros_like(q.loc), torch.ones_like(q.scale))
    kl = torch.distributions.kl_divergence(q, prior).sum(dim=1)
    loss = (rec + kl_weight * kl).mean()
    return loss, {"rec": float(rec.mean().detach()), "kl": float(kl.mean().detach())}


def train_prior(cfg: TrainPriorConfig, mocap: MocapSet | None = None, progress: bool = True,
                device: str | torch.device = "cpu") -> tuple[VPoser, dict[str, Any]]:
    """Train a VPoser-layout VAE on the mocap set; returns ``(model in eval mode, metadata)``."""

    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise NeuralfitError(f"training needs epochs >= 1 and batch_size >= 2; got {cfg.epochs}, {cfg.batch_size}")
    mocap = mocap if mocap is not None else load_mocap()
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, mocap, progress, device)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainPriorConfig, mocap: MocapSet, progress: bool,
           device: str | torch.device) -> tuple[VPoser, dict[str, Any]]:
    from tqdm import tqdm

    train_set = mocap.select(list(cfg.holdout_clips), keep=False)
    data = torch.from_numpy(train_set.body_pose).float()
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    limits = JointLimitPrior()
    model = VPoser(VPoserConfig(num_neurons=cfg.num_neurons, latent_dim=cfg.latent_dim)).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    steps_per_epoch = max(1, len(data) // cfg.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs * steps_per_epoch, eta_min=cfg.lr * 0.05)
    t0 = time.perf_counter()
    model.train()
    bar = tqdm(range(cfg.epochs), desc="train prior", disable=not progress, unit="epoch")
    parts: dict[str, float] = {}
    for _ in bar:
        perm = torch.randperm(len(data), generator=gen)
        for s in range(steps_per_epoch):
            batch = data[perm[s * cfg.batch_size : (s + 1) * cfg.batch_size]]
            batch = augment(batch, limits, cfg, gen).to(device)
            loss, parts = vae_loss(model, batch, cfg.kl_weight)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        bar.set_postfix(rec=f"{parts['rec']:.3f}", kl=f"{parts['kl']:.1f}")
    model.eval()
    meta = {
        "config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()},
        "train_frames": len(data),
        "holdout_frames": int(len(mocap) - len(data)),
        "clips": list(mocap.clip_names),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return model.cpu(), meta


def train_and_save(out: str | os.PathLike, cfg: TrainPriorConfig, from_pybullet: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Train (on the shipped pose set, or freshly extracted from pybullet) and write ``out`` (.npz)."""
    from .default import save_vposer_npz
    from .mocap import save_mocap

    out = Path(out)
    if out.suffix != ".npz":
        raise NeuralfitError(f"prior output {out}: expected a .npz path")
    if from_pybullet:
        arrays = extract_pybullet_mocap()
        tmp = out.with_name(out.stem + "_mocap.npz")
        save_mocap(tmp, arrays)  # round-trips through float16 exactly as the shipped set does
        mocap = load_mocap(tmp)
    else:
        mocap = load_mocap()
    model, meta = train_prior(cfg, mocap, progress=progress)
    meta.update(cfg.extra_meta)
    save_vposer_npz(out, model, meta)
    meta["bytes"] = out.stat().st_size
    return meta
