"""Training the embedded default pose prior (``neuralfit train prior``).

A VPoser v2-layout VAE is fitted to retargeted mocap: by default the DeepMimic frames (:mod:`.mocap`) and
the CMU frames (:mod:`.cmu`), both with their left-right mirrors; ``data`` replaces them with a user's
pose sets (``.npz`` with ``body_pose`` (N, 69), ``global_orient`` (N, 3), optional ``clip_id``; see
:func:`~.mocap.load_mocap`). Two augmentations:

* *joint-limit-uniform jitter*: every training pose gets, per joint and axis, uniform noise of
  ``jitter`` x (that joint's range) and is clipped into the limits, so the prior spreads around the
  mocap frames instead of memorising them;
* joints a source does not animate (exactly zero in a frame: DeepMimic's collars, feet and wrists,
  CMU's static clavicles) are drawn uniformly in ``unobserved`` x their range, so the prior does not
  insist they be exactly zero.

Loss per pose: squared Frobenius error of the 21 decoded rotation matrices (summed) + ``kl_weight`` x
KL(q(z|x) || N(0, I)). Whole clips (and their mirrors) are held out for validation: ``holdout_clips``
by name plus, by :func:`~.mocap.split_clips`, a ``holdout_fraction`` of the other sets' clips.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from neuralfit.errors import NeuralfitError

from .joint_limits import BODY_JOINT_NAMES, JointLimitPrior
from .mocap import MocapSet, concat_mocap, extract_pybullet_mocap, load_mocap, split_clips, with_mirrors
from .vposer import NUM_BODY_JOINTS, VPoser, VPoserConfig


@dataclass
class TrainPriorConfig:
    """Defaults reproduce the shipped ``priors/assets/default_prior.npz``."""

    epochs: int = 8
    batch_size: int = 256
    lr: float = 1e-3
    weight_decay: float = 1e-5
    kl_weight: float = 0.15
    num_neurons: int = 512
    latent_dim: int = 32
    jitter: float = 0.03
    unobserved: float = 0.3
    #: Share of every batch whose legs and spine are set straight (zero, then jittered), arms and head
    #: kept: CMU's frames bend the knees ~30 deg on median (walking, dance), so without these the
    #: decoded mean pose crouches and the rest pose scores high (measured: knees 34-37 deg after 1 epoch).
    standing_fraction: float = 0.15
    #: Weight of :func:`mean_anchor` (decode(0) legs and spine pulled to straight): the fitter's latent
    #: term pulls hidden joints toward decode(0), which must stand.
    mean_anchor_weight: float = 1.0
    #: Pose-set files to train on; empty = the shipped DeepMimic + CMU sets.
    data: tuple[str, ...] = ()
    holdout_clips: tuple[str, ...] = ("run", "dance_b")
    #: Share of the clips of every set but DeepMimic held out (by name hash, see ``split_clips``).
    holdout_fraction: float = 0.1
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
    """Jitter (B, 69) mocap poses within the joint limits; joints that are exactly zero in a frame (not
    animated by its source) are drawn as ``unobserved * U(lo, hi)`` instead."""
    b = body_pose.shape[0]
    body_pose = body_pose.clone()
    stand = torch.rand(b, generator=gen) < cfg.standing_fraction
    legs = torch.tensor([3 * BODY_JOINT_NAMES.index(n) + k for n in _STANDING_JOINTS for k in range(3)])
    body_pose[stand[:, None] & torch.isin(torch.arange(69), legs)[None]] = 0.0
    # A third of them become the whole rest pose, so that the rest pose itself scores as plausible.
    body_pose[stand & (torch.rand(b, generator=gen) < 1.0 / 3.0)] = 0.0
    zero = (body_pose.reshape(b, 23, 3).abs().amax(-1) < 1e-6).repeat_interleave(3, dim=1)
    span = (limits.hi - limits.lo).reshape(1, 69).cpu()
    lo = limits.lo.reshape(1, 69).cpu()
    u = torch.rand(body_pose.shape, generator=gen)
    out = body_pose.cpu() + cfg.jitter * span * (2.0 * u - 1.0)
    fill = cfg.unobserved * (lo + span * torch.rand(body_pose.shape, generator=gen))
    out = torch.where(zero, fill, out)
    return torch.maximum(torch.minimum(out, limits.hi.reshape(1, 69).cpu()), lo)


_STANDING_JOINTS = ("left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
                    "spine1", "spine2", "spine3")


def mean_anchor(model: VPoser, device: str | torch.device) -> torch.Tensor:
    """Squared Frobenius distance of decode(z = 0)'s legs and spine from the identity (standing straight)."""
    idx = torch.tensor([BODY_JOINT_NAMES.index(n) for n in _STANDING_JOINTS])
    mats = model.decode_matrices(torch.zeros(1, model.config.latent_dim, device=device))[0][idx]
    return (mats - torch.eye(3, device=device)).pow(2).sum()


def training_sets(cfg: TrainPriorConfig, deepmimic_set: MocapSet | None = None) -> tuple[MocapSet, tuple[str, ...]]:
    """The pose sets of ``cfg`` in one :class:`MocapSet` (mirrors added where a set has none) and the
    names of the held-out clips. ``deepmimic_set`` replaces the shipped DeepMimic set (``--from-pybullet``)."""
    from .cmu import default_cmu_path

    if cfg.data:
        sets = []
        for path in cfg.data:
            s = load_mocap(path)
            stem = Path(path).stem
            sets.append(MocapSet(s.body_pose, s.global_orient, s.clip, s.mirrored,
                                 tuple(f"{stem}/{c}" for c in s.clip_names)))
        deepmimic: tuple[str, ...] = ()
    else:
        dm = deepmimic_set if deepmimic_set is not None else load_mocap()
        sets = [dm, load_mocap(default_cmu_path())]
        deepmimic = dm.clip_names
    sets = [s if s.mirrored.any() else with_mirrors(s) for s in sets]
    data = concat_mocap(sets)
    unknown = set(cfg.holdout_clips) - set(data.clip_names)
    if unknown:
        raise NeuralfitError(f"held-out clips {sorted(unknown)} are not in the training data; "
                             "pass --holdout with names from it, or 'none'")
    others = [c for c in data.clip_names if c not in deepmimic]
    held = tuple(dict.fromkeys(tuple(cfg.holdout_clips) + split_clips(others, cfg.holdout_fraction)))
    return data, held


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
                device: str | torch.device = "cpu",
                held_clips: tuple[str, ...] | None = None) -> tuple[VPoser, dict[str, Any]]:
    """Train a VPoser-layout VAE; returns ``(model in eval mode, metadata)``.

    ``mocap`` None: the sets of :func:`training_sets`. A given ``mocap`` holds out ``held_clips``
    (default ``cfg.holdout_clips``).
    """

    if cfg.epochs < 1 or cfg.batch_size < 2:
        raise NeuralfitError(f"training needs epochs >= 1 and batch_size >= 2; got {cfg.epochs}, {cfg.batch_size}")
    held: tuple[str, ...] | None = None
    if mocap is None:
        mocap, held = training_sets(cfg)
    elif held_clips is not None:
        held = held_clips
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    try:
        return _train(cfg, mocap, progress, device, held)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainPriorConfig, mocap: MocapSet, progress: bool, device: str | torch.device,
           held: tuple[str, ...] | None) -> tuple[VPoser, dict[str, Any]]:
    from tqdm import tqdm

    held = tuple(cfg.holdout_clips) if held is None else held
    train_set = mocap.select(list(held), keep=False)
    if len(train_set) < cfg.batch_size:
        raise NeuralfitError(f"{len(train_set)} training frames after holding out clips; need >= batch size "
                             f"{cfg.batch_size}")
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
            if cfg.mean_anchor_weight:
                loss = loss + cfg.mean_anchor_weight * mean_anchor(model, device)
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
        "heldout_clip_names": list(held),
        "clips": len(mocap.clip_names),
        "train_seconds": round(time.perf_counter() - t0, 1),
        "torch_threads": torch.get_num_threads(),
    }
    return model.cpu(), meta


def train_and_save(out: str | os.PathLike, cfg: TrainPriorConfig, from_pybullet: bool = False,
                   progress: bool = True) -> dict[str, Any]:
    """Train (on ``cfg.data``, or the shipped DeepMimic + CMU sets, DeepMimic optionally re-extracted
    from pybullet) and write ``out`` (.npz)."""
    from .default import save_vposer_npz
    from .mocap import save_mocap

    out = Path(out)
    if out.suffix != ".npz":
        raise NeuralfitError(f"prior output {out}: expected a .npz path")
    if from_pybullet:
        arrays = extract_pybullet_mocap()
        tmp = out.with_name(out.stem + "_mocap.npz")
        save_mocap(tmp, arrays)  # round-trips through float16 exactly as the shipped set does
        mocap, held = training_sets(cfg, load_mocap(tmp))
    else:
        mocap, held = training_sets(cfg)
    model, meta = train_prior(cfg, mocap, progress=progress, held_clips=held)
    meta.update(cfg.extra_meta)
    save_vposer_npz(out, model, meta)
    meta["bytes"] = out.stat().st_size
    return meta
