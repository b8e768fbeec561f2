"""Dense heads on BlazePose GHUM's frozen trunk, trained on CPU from cached trunk features.

The trunk runs in an interpreter and is never trained, so its levels are computed once per training crop
(no augmentation: a cached crop must be the crop the labels describe) and stored as float16 ``.npy``
memmaps; training then only runs the U-Net decoder and the heads. The loss, the contrastive feature bank
and the checkpoint format are the ones of ``neuralfit train network`` (:class:`NetworkTrainer` is reused;
the regressor terms get weight 0 and the keypoint regressor is copied from another network, e.g. the
shipped default: it reads 2D keypoints, not image features).

::

    python -m neuralfit.training.ghum_heads cache --data runs/ghum/train --out runs/ghum/cache_train
    python -m neuralfit.training.ghum_heads train --data runs/ghum/train --cache runs/ghum/cache_train \\
        [--data DIR2 --cache CACHE2 ...] \\
        --out runs/ghum/net.pt --regressor-from neuralfit/nets/assets/lite0.pt --steps 3000
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path, save_json
from neuralfit.nets.blazepose import GHUM_LEVELS, BlazePoseGHUMBackbone
from neuralfit.nets.checkpoint import save_network
from neuralfit.nets.model import NetConfig
from neuralfit.training.network import NetworkTrainer, TrainConfig, curve_paths, plot_curves

_META = "meta.json"


@dataclass
class GHUMHeadsConfig:
    """The GHUM network's architecture and its head training.

    Attributes:
        input_res: crop size; 256 is GHUM's own input, so the trunk sees the crop unresampled.
        decoder_channels / head_channels / feature_dim: lighter than the lite0 network's (the stride-4 map
            is 64 x 64 here): sized so that trunk + decoder + heads stay inside the 60 ms CPU budget.
        steps / batch_size / lr: Adam, cosine decay to ``lr / 20`` over ``steps``.
        save_every: steps between checkpoints (network + resumable state).
        w_part_balanced / part_weight_power: weight of the class-balanced part term (0 = off) and the
            exponent of its inverse-frequency class weights (0.5: square root).
        w_part_lovasz: weight of the Lovasz-softmax part term (0 = off; a convex surrogate of the per-class
            IoU, over the batch's stride-4 cells, classes present in the batch).
    """

    input_res: int = 256
    decoder_channels: tuple[int, ...] = (96, 64, 48, 48)
    head_channels: int = 48
    feature_dim: int = 128
    steps: int = 3000
    batch_size: int = 8
    lr: float = 1e-3
    save_every: int = 250
    w_part_balanced: float = 1.0
    part_weight_power: float = 0.5
    w_part_lovasz: float = 0.0
    num_workers: int = 1
    seed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    def net_config(self) -> NetConfig:
        return NetConfig(backbone="blazepose-ghum", pretrained=False, input_res=self.input_res,
                         feature_dim=self.feature_dim, decoder_channels=self.decoder_channels,
                         head_channels=self.head_channels, regressor_input="keypoints")

    def train_config(self) -> TrainConfig:
        # Regressor weights 0: the keypoint regressor is copied in, not trained on image crops.
        return TrainConfig(epochs=1, batch_size=self.batch_size, lr=self.lr, freeze_backbone=True,
                           num_workers=self.num_workers, seed=self.seed, w_pose=0.0, w_betas=0.0,
                           w_joints3d=0.0, w_keypoints2d=0.0, w_cam=0.0)


# -- the cache ------------------------------------------------------------------------------------------

def cache_trunk_levels(backbone: BlazePoseGHUMBackbone, dataset: Dataset, out_dir: str | os.PathLike,
                       limit: int | None = None, progress: bool = True) -> Path:
    """Write the raw GHUM levels of ``dataset``'s crops (items' ``img``, (3, R, R) in [0, 1]) to ``out_dir``.

    Files: ``level{k}.npy`` (N, C, h, w) float16 and ``meta.json`` (count done, shapes); resumable: an
    interrupted run continues after the last completed item.
    """
    from tqdm import tqdm

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    n = len(dataset) if limit is None else min(limit, len(dataset))
    if n == 0:
        raise NeuralfitError("cannot cache GHUM features of an empty data set")
    meta_path = out / _META
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    first = dataset[0]["img"]
    res = int(first.shape[-1])
    shapes = [(ch, res // s, res // s) for s, _, ch in GHUM_LEVELS]
    done = int(meta.get("done", 0)) if meta.get("count") == n and meta.get("res") == res else 0
    mode = "r+" if done > 0 else "w+"
    maps = [np.lib.format.open_memmap(out / f"level{k}.npy", mode=mode, dtype=np.float16, shape=(n, *shp))
            for k, shp in enumerate(shapes)]
    bar = tqdm(total=n, initial=done, desc="GHUM cache", disable=not progress, dynamic_ncols=True)
    chunk = 16
    for start in range(done, n, chunk):
        idx = range(start, min(n, start + chunk))
        imgs = torch.stack([torch.as_tensor(dataset[i]["img"]).float() for i in idx])
        for m, lev in zip(maps, backbone.trunk_levels(imgs), strict=True):
            m[start:start + len(idx)] = lev.numpy().astype(np.float16)
        for m in maps:
            m.flush()
        meta = {"count": n, "done": start + len(idx), "res": res, "shapes": shapes,
                "levels": [name for _, name, _ in GHUM_LEVELS]}
        with atomic_path(meta_path) as tmp:
            Path(tmp).write_text(json.dumps(meta))
        bar.update(len(idx))
    bar.close()
    return out


def _open_cache(cache_dir: str | os.PathLike) -> tuple[dict[str, Any], list[np.ndarray]]:
    d = Path(cache_dir)
    meta_path = d / _META
    if not meta_path.is_file():
        raise NeuralfitError(f"{d} is not a GHUM feature cache (no {_META}); run `ghum_heads cache` first")
    meta = json.loads(meta_path.read_text())
    if meta["done"] != meta["count"]:
        raise NeuralfitError(f"GHUM feature cache {d} is incomplete ({meta['done']} of {meta['count']}); rerun cache")
    return meta, [np.load(d / f"level{k}.npy", mmap_mode="r") for k in range(len(GHUM_LEVELS))]


def level_statistics(cache_dir: str | os.PathLike, max_items: int = 400) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per-channel mean and std of each cached level over (up to) ``max_items`` evenly spaced crops."""
    meta, maps = _open_cache(cache_dir)
    idx = np.linspace(0, meta["count"] - 1, min(max_items, meta["count"])).astype(int)
    means, stds = [], []
    for m in maps:
        x = torch.from_numpy(np.asarray(m[idx], dtype=np.float32))  # (n, C, h, w)
        means.append(x.mean(dim=(0, 2, 3)))
        stds.append(x.std(dim=(0, 2, 3)))
    return means, stds


class CachedLevels(Dataset):
    """Items of ``dataset`` (un-augmented) plus ``trunk_levels``: their cached GHUM levels as float tensors."""

    def __init__(self, dataset: Dataset, cache_dir: str | os.PathLike):
        self.dataset = dataset
        self.cache_dir = Path(cache_dir)
        meta, _ = _open_cache(cache_dir)
        self.count = int(meta["count"])
        if self.count > len(dataset):
            raise NeuralfitError(f"GHUM cache {cache_dir} has {self.count} crops, its data set only {len(dataset)}")
        self._maps: list[np.ndarray] | None = None  # opened per process (DataLoader workers)

    def __len__(self) -> int:
        return self.count

    def __getitem__(self, i: int) -> dict[str, Any]:
        if self._maps is None:
            self._maps = _open_cache(self.cache_dir)[1]
        item = dict(self.dataset[i])
        item["trunk_levels"] = [torch.from_numpy(np.asarray(m[i], dtype=np.float32)) for m in self._maps]
        return item


# -- training -----------------------------------------------------------------------------------------

def _lovasz_grad(fg_sorted: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovasz extension of the Jaccard loss at errors sorted in decreasing order."""
    gts = fg_sorted.sum()
    inter = gts - fg_sorted.cumsum(0)
    union = gts + (1.0 - fg_sorted).cumsum(0)
    jac = 1.0 - inter / union
    if jac.numel() > 1:
        jac = torch.cat([jac[:1], jac[1:] - jac[:-1]])
    return jac


def lovasz_softmax(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Lovasz-softmax loss (Berman et al. 2018) of (N, C, h, w) logits vs (N, h, w) labels, all cells pooled,
    averaged over the classes present in ``labels`` (a differentiable surrogate of 1 - mIoU)."""
    probs = logits.softmax(dim=1).permute(0, 2, 3, 1).reshape(-1, logits.shape[1])
    lab = labels.reshape(-1)
    losses = []
    for c in torch.unique(lab).tolist():
        fg = (lab == c).float()
        err = (fg - probs[:, c]).abs()
        err_sorted, perm = torch.sort(err, descending=True)
        losses.append(torch.dot(err_sorted, _lovasz_grad(fg[perm])))
    return torch.stack(losses).mean() if losses else logits.sum() * 0.0


class CachedTrainer(NetworkTrainer):
    """:class:`NetworkTrainer` whose backbone is fed each batch's cached levels instead of running GHUM.

    With ``part_weights`` (25,) it adds a class-weighted part cross-entropy (``part_balanced``, weight
    ``w_part_balanced``) to the usual terms. Why: background is ~90 % of the stride-4 cells, and at step 500
    of the first run the plain cross-entropy left 33-95 % of every limb's cells labelled background (hands,
    feet, wrists, elbows, collars at IoU ~0), while left/right confusions were only 1-6 %. With
    ``w_part_lovasz`` > 0 it also adds the Lovasz-softmax term (``part_lovasz``).
    """

    def __init__(self, *args: Any, part_weights: torch.Tensor | None = None, w_part_balanced: float = 1.0,
                 w_part_lovasz: float = 0.0, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.part_weights = None if part_weights is None else part_weights.float().to(self.device)
        self.w_part_balanced = w_part_balanced
        self.w_part_lovasz = w_part_lovasz
        self._part_logits: torch.Tensor | None = None
        self.net.part_head.register_forward_hook(self._keep_part_logits)

    def _keep_part_logits(self, module: torch.nn.Module, inputs: Any, output: torch.Tensor) -> None:
        self._part_logits = output

    def losses(self, batch: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        terms, update = super().losses(batch)
        logits = self._part_logits
        want = self.part_weights is not None or self.w_part_lovasz > 0
        if want and logits is not None and "partseg" in batch:
            import torch.nn.functional as F

            from neuralfit.training.losses import downsample_labels

            ok = batch["has_partseg"].bool()
            if bool(ok.any()):
                target = downsample_labels(batch["partseg"], batch["partseg"].shape[-1] // logits.shape[-1]).long()
                if self.part_weights is not None:
                    terms["part_balanced"] = F.cross_entropy(logits[ok], target[ok], weight=self.part_weights)
                if self.w_part_lovasz > 0:
                    terms["part_lovasz"] = lovasz_softmax(logits[ok], target[ok])
        return terms, update

    def total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        extra = {"part_balanced": self.w_part_balanced, "part_lovasz": self.w_part_lovasz}
        base = {k: v for k, v in terms.items() if k not in extra}
        return super().total(base) + sum(w * terms[k] for k, w in extra.items() if k in terms)

    def step(self, raw_batch: dict[str, Any]) -> dict[str, float]:
        levels = raw_batch.pop("trunk_levels")
        self.net.backbone.feed([t.to(self.device) for t in levels])
        return super().step(raw_batch)


def part_class_weights(dataset: Dataset, num_classes: int = 25, samples: int = 200, power: float = 0.5) -> torch.Tensor:
    """Class weights ``f_c ** -power`` from the stride-4 part labels of ``samples`` evenly spaced items,
    scaled so that the frequency-weighted mean weight is 1 (the loss keeps the plain cross-entropy's scale)."""
    from neuralfit.training.losses import downsample_labels

    idx = np.linspace(0, len(dataset) - 1, min(samples, len(dataset))).astype(int)
    counts = torch.zeros(num_classes)
    for i in idx:
        item = dataset[int(i)]
        if "partseg" in item:
            lab = downsample_labels(torch.as_tensor(item["partseg"])[None], 4).long().flatten()
            counts += torch.bincount(lab, minlength=num_classes)[:num_classes].float()
    freq = (counts + 1.0) / (counts.sum() + num_classes)
    w = freq ** -power
    return w / (freq * w).sum()


def copy_regressor(net: torch.nn.Module, source: str | os.PathLike) -> None:
    """Copy the keypoint regressor (weights + mean-pose buffers) of the network checkpoint ``source``."""
    from neuralfit.nets.checkpoint import read_checkpoint

    ckpt = read_checkpoint(source)
    if ckpt["config"].get("regressor_input") != "keypoints":
        raise NeuralfitError(f"{source}: its regressor reads image features; a keypoint regressor is needed")
    state = {k[len("regressor."):]: v.float() for k, v in ckpt["state_dict"].items() if k.startswith("regressor.")}
    try:
        net.regressor.load_state_dict(state)
    except RuntimeError as exc:
        raise NeuralfitError(f"{source}: its regressor does not fit this network: {str(exc)[:160]}") from exc


def validation_paths(out: Path) -> tuple[Path, Path]:
    """(``<out>.val.json``: the validation record per save, ``<out stem>_best<suffix>``: the best checkpoint)."""
    return out.with_name(out.name + ".val.json"), out.with_name(f"{out.stem}_best{out.suffix}")


def train_heads(datasets: list[CachedLevels], out: str | os.PathLike, body: Any, config: GHUMHeadsConfig | None = None,
                regressor_from: str | os.PathLike | None = None, resume: bool = False,
                progress: bool = True, val_sets: list[Dataset] | None = None,
                val_limit: int | None = None) -> CachedTrainer:
    """Train the GHUM network's decoder and heads on cached levels; writes ``out`` every ``save_every`` steps.

    The levels' standardisation statistics come from the first cache; ``resume`` continues ``out.state.pt``
    (more cached sets may be added on resume). With ``val_sets`` (un-augmented, never the test set) every
    save also evaluates the network on them (:func:`~neuralfit.training.metrics.evaluate_network` with the
    live feature bank), appends the numbers to ``<out>.val.json`` and keeps the checkpoint of the best
    validation part mIoU so far as ``<out stem>_best<suffix>`` (the selection never sees a test set).
    """
    from torch.utils.data import ConcatDataset
    from tqdm import tqdm

    if not datasets:
        raise NeuralfitError("train_heads needs at least one cached data set")
    dataset = ConcatDataset(datasets) if len(datasets) > 1 else datasets[0]

    cfg = config or GHUMHeadsConfig()
    out = Path(out)
    state_path, json_path, png_path = curve_paths(out)
    val_path, best_path = validation_paths(out)
    torch.manual_seed(cfg.seed)
    weights = part_class_weights(dataset, power=cfg.part_weight_power) if cfg.w_part_balanced > 0 else None
    trainer = CachedTrainer(body, cfg.net_config(), cfg.train_config(), "cpu", part_weights=weights,
                            w_part_balanced=cfg.w_part_balanced, w_part_lovasz=cfg.w_part_lovasz)
    if resume and state_path.is_file():
        trainer.load_state_dict(torch.load(state_path, map_location="cpu", weights_only=True))
    else:
        trainer.net.backbone.set_standardisation(*level_statistics(datasets[0].cache_dir))
        if regressor_from is not None:
            copy_regressor(trainer.net, regressor_from)
    sched = torch.optim.lr_scheduler.LambdaLR(
        trainer.optimizer, lambda s: float(0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(s, cfg.steps) / cfg.steps))))
    for _ in range(len(trainer.history)):
        sched.step()
    val_record: list[dict[str, float]] = json.loads(val_path.read_text()) if resume and val_path.is_file() else []
    prov = {"ghum_heads": asdict(cfg), "part_weights": None if weights is None else [round(float(w), 4) for w in weights], "caches": [str(d.cache_dir) for d in datasets], "samples": len(dataset),
            "regressor_from": None if regressor_from is None else str(regressor_from),
            "validation": None if not val_sets else {"sets": [str(getattr(v, "path", v)) for v in val_sets],
                                                     "limit": val_limit, "criterion": "max part_miou"}}

    def validate() -> bool:
        """Evaluate on the validation sets; True when this is the best part mIoU so far."""
        from neuralfit.training.metrics import evaluate_network

        t0 = time.time()
        max_batches = None if val_limit is None else -(-val_limit // 16)
        m = evaluate_network(trainer.net, val_sets, body, bank=trainer.bank.bank.detach(), max_batches=max_batches,
                             progress=False)
        rec = {"step": len(trainer.history), **{k: round(float(v), 4) for k, v in m.items()},
               "seconds": round(time.time() - t0, 1)}
        best = all(rec["part_miou"] > r["part_miou"] for r in val_record)
        val_record.append(rec)
        save_json(val_path, val_record)
        print(f"validation {rec}{'  <- best' if best else ''}", flush=True)
        return best

    def save() -> None:
        prov.update({"steps_done": len(trainer.history), "final_losses": trainer.history[-1] if trainer.history else {},
                     "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
        save_network(out, trainer.net, body, provenance=prov, feature_bank=trainer.bank.bank)
        with atomic_path(state_path) as tmp:
            torch.save(trainer.state_dict(), tmp)
        save_json(json_path, trainer.history)
        plot_curves(trainer.history, png_path, title="GHUM heads on cached trunk features: loss per step")
        if val_sets and validate():
            save_network(best_path, trainer.net, body, provenance={**prov, "validation_best": val_record[-1]},
                         feature_bank=trainer.bank.bank)

    bar = tqdm(total=cfg.steps, initial=len(trainer.history), disable=not progress, dynamic_ncols=True)
    epoch = 0
    while len(trainer.history) < cfg.steps:
        loader = DataLoader(dataset, batch_size=cfg.batch_size, shuffle=True, drop_last=True,
                            num_workers=cfg.num_workers,
                            generator=torch.Generator().manual_seed(cfg.seed + epoch + 1000 * len(trainer.history)))
        for batch in loader:
            rec = trainer.step(batch)
            sched.step()
            rec["step"] = len(trainer.history)
            trainer.history.append(rec)
            bar.set_postfix({k: f"{rec[k]:.3g}" for k in ("feature", "part", "part_balanced", "part_lovasz", "heatmap")
                             if k in rec})
            bar.update(1)
            if len(trainer.history) % cfg.save_every == 0 or len(trainer.history) >= cfg.steps:
                save()
            if len(trainer.history) >= cfg.steps:
                break
        epoch += 1
    bar.close()
    return trainer


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description="GHUM heads on cached trunk features")
    ap.add_argument("command", choices=("cache", "train"))
    ap.add_argument("--data", action="append", required=True, help="neuralfit synth folder (train: repeatable)")
    ap.add_argument("--cache", action="append", default=[], help="feature cache folder per --data (train)")
    ap.add_argument("--out", required=True, help="cache folder (cache) or network checkpoint (train)")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--steps", type=int, default=GHUMHeadsConfig.steps)
    ap.add_argument("--lr", type=float, default=GHUMHeadsConfig.lr)
    ap.add_argument("--batch-size", type=int, default=GHUMHeadsConfig.batch_size)
    ap.add_argument("--regressor-from", default=None)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--body", default="free")
    d = GHUMHeadsConfig()
    ap.add_argument("--decoder-channels", type=int, nargs=4, default=list(d.decoder_channels),
                    help="decoder widths at strides 32, 16, 8, 4")
    ap.add_argument("--head-channels", type=int, default=d.head_channels)
    ap.add_argument("--save-every", type=int, default=d.save_every)
    ap.add_argument("--w-part-balanced", type=float, default=d.w_part_balanced)
    ap.add_argument("--part-weight-power", type=float, default=d.part_weight_power)
    ap.add_argument("--w-part-lovasz", type=float, default=d.w_part_lovasz)
    ap.add_argument("--val-data", action="append", default=[],
                    help="validation synth folder (train): evaluated at every save, best part mIoU kept")
    ap.add_argument("--val-limit", type=int, default=None, help="validation crops per evaluation")
    args = ap.parse_args(argv)

    from neuralfit.cli.train_nets import open_datasets

    cfg = GHUMHeadsConfig(steps=args.steps, lr=args.lr, batch_size=args.batch_size,
                          decoder_channels=tuple(args.decoder_channels), head_channels=args.head_channels,
                          save_every=args.save_every, w_part_balanced=args.w_part_balanced,
                          part_weight_power=args.part_weight_power, w_part_lovasz=args.w_part_lovasz)
    sets = open_datasets(tuple(args.data), cfg.input_res, augment=False)
    if args.command == "cache":
        if len(sets) != 1:
            raise NeuralfitError("cache takes one --data folder")
        cache_trunk_levels(BlazePoseGHUMBackbone(), sets[0], args.out, limit=args.limit)
        return
    from neuralfit.body import load_body_model

    if len(args.cache) != len(sets):
        raise NeuralfitError("train needs one --cache (written by `ghum_heads cache`) per --data")
    cached = [CachedLevels(ds, c) for ds, c in zip(sets, args.cache, strict=True)]
    val_sets = open_datasets(tuple(args.val_data), cfg.input_res, augment=False) if args.val_data else None
    train_heads(cached, args.out, load_body_model(args.body), cfg, regressor_from=args.regressor_from,
                resume=args.resume, val_sets=val_sets, val_limit=args.val_limit)


if __name__ == "__main__":
    main()
