"""``neuralfit train network`` and ``neuralfit train gmm``: the multi-task network and its feature GMMs.

Plain click commands; ``neuralfit.cli.train`` attaches them to its ``train`` group. Heavy imports
happen inside the functions so that ``neuralfit --help`` stays fast.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import click
from neuralfit.cli.options import (
    check_dataset,
    check_out_file,
    check_positive_int,
    check_size,
    device_option,
    quiet_option,
    threads_option,
    torch_threads,
)


def open_datasets(paths: tuple[str, ...], res: int, augment: bool, seed: int = 0) -> list:
    """One :class:`neuralfit.data.NpzDataset` per ``--data``: a folder with ``annotations.npz`` or an ``.npz`` file.

    Images are returned in [0, 1] (``normalize=False``): the network applies its backbone's own scaling.
    """
    from neuralfit.data import AugmentConfig, DatasetConfig, NpzDataset
    from neuralfit.errors import NeuralfitError

    out = []
    for i, p in enumerate(paths):
        path = Path(p)
        npz = path / "annotations.npz" if path.is_dir() else path
        if not npz.is_file():
            raise NeuralfitError(f"--data {p}: expected a folder with annotations.npz or an .npz file")
        cfg = DatasetConfig(res=res, augment=AugmentConfig() if augment else None, normalize=False)
        out.append(NpzDataset(npz, config=cfg, seed=seed + i))
    return out


@click.command("network")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
              help="Training set: a folder with annotations.npz (neuralfit synth) or a SPIN-style .npz. Repeatable.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Network checkpoint to write (.pt).")
@click.option("--epochs", default=20, show_default=True, help="Total epochs (also with --resume).")
@click.option("--batch-size", default=32, show_default=True)
@click.option("--lr", default=1e-4, show_default=True, help="Adam learning rate.")
@click.option("--res", default=224, show_default=True, help="Crop size in pixels (multiple of 32).")
@click.option("--feature-dim", default=128, show_default=True, help="D of the neural mesh features.")
@click.option("--joint-set", default="spin24", show_default=True, help="Keypoint set of the heatmap head.")
@click.option("--backbone", default="efficientnet-lite0", show_default=True,
              type=click.Choice(["efficientnet-lite0", "resnet50"]))
@click.option("--backbone-weights", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Backbone state dict (required for a pretrained resnet50).")
@click.option("--body", "body_spec", default="free", show_default=True, help="Body model: 'free' or an SMPL path.")
@device_option(help="cpu, cuda, cuda:1 ... (torchrun: per-rank GPU).")
@click.option("--workers", default=2, show_default=True, help="DataLoader workers.")
@click.option("--max-steps", default=None, type=int, help="Cap on steps per epoch (smoke runs).")
@click.option("--no-augment", is_flag=True, help="Disable crop/flip/colour/occluder augmentation.")
@click.option("--freeze-backbone", is_flag=True,
              help="Keep the ImageNet backbone fixed (~3x cheaper steps on CPU; weaker regressor).")
@click.option("--finetune-stages", default=0, show_default=True,
              help="With --freeze-backbone: still train the backbone's last N of 5 stages (batch-norm frozen).")
@click.option("--resume", is_flag=True, help="Continue from OUT.state.pt.")
@click.option("--init", "init", default=None, type=click.Path(exists=True, dir_okay=False),
              help="Start a new run from this network checkpoint's weights and feature bank.")
@click.option("--seed", default=0, show_default=True)
@threads_option(default=None, help="CPU threads for torch (>= 1) [torch's default: one per core].")
@quiet_option
def network(data: tuple[str, ...], out: str, epochs: int, batch_size: int, lr: float, res: int, feature_dim: int,
            joint_set: str, backbone: str, backbone_weights: str | None, body_spec: str, device: str, workers: int,
            max_steps: int | None, no_augment: bool, freeze_backbone: bool, finetune_stages: int, resume: bool,
            init: str | None, seed: int, threads: int | None, quiet: bool) -> None:
    """Train the multi-task network (features, part segmentation, keypoints, SMPL regressor) and write OUT.

    Also writes OUT.state.pt (for --resume) and <stem>_curves.json/.png. Multi-GPU: launch with
    `torchrun --nproc_per_node N -m neuralfit.cli.main train network ... --device cuda`.
    """
    from neuralfit.body import load_body_model
    from neuralfit.errors import NeuralfitError
    from neuralfit.nets import NetConfig
    from neuralfit.training.network import TrainConfig, train_network

    # Checked before anything loads or is written: --epochs 0 used to print "wrote OUT" and write nothing.
    check_positive_int("--epochs", epochs)
    check_positive_int("--batch-size", batch_size)
    check_positive_int("--max-steps", max_steps)
    check_positive_int("--feature-dim", feature_dim)
    check_positive_int("--workers", workers, minimum=0)
    check_size("--res", res, minimum=32)
    if res % 32:
        raise NeuralfitError(f"--res must be a multiple of 32, got {res}")
    if not 0 <= finetune_stages <= 5:
        raise NeuralfitError(f"--finetune-stages must be 0..5, got {finetune_stages}")
    if lr <= 0:
        raise NeuralfitError(f"--lr must be > 0, got {lr}")
    check_out_file(out)
    for d in data:
        check_dataset(d)
    if device == "cuda" and "LOCAL_RANK" in os.environ:  # torchrun: one GPU per process
        device = f"cuda:{os.environ['LOCAL_RANK']}"
    body = load_body_model(body_spec, device=device)
    datasets = open_datasets(data, res, augment=not no_augment, seed=seed)
    net_cfg = NetConfig(backbone=backbone, backbone_weights=backbone_weights, input_res=res, feature_dim=feature_dim,
                        joint_set=joint_set)
    cfg = TrainConfig(epochs=epochs, batch_size=batch_size, lr=lr, device=device, num_workers=workers,
                      max_steps_per_epoch=max_steps, seed=seed, freeze_backbone=freeze_backbone,
                      finetune_stages=finetune_stages)
    with torch_threads(threads):
        trainer = train_network(datasets, out, body, net_cfg, cfg, resume=resume, init=init,
                                provenance={"command": " ".join(sys.argv), "data": list(data)}, progress=not quiet)
    if int(os.environ.get("RANK", "0")) != 0:
        return
    last = trainer.history[-1] if trainer.history else {}
    click.echo(f"wrote {out} after {trainer.epoch} epochs; last losses: "
               + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "epoch"))


@click.command("gmm")
@click.option("--data", "data", multiple=True, required=True, type=click.Path(exists=True),
              help="Data set(s) to estimate on (folder with annotations.npz or an .npz). Repeatable.")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Trained network checkpoint.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Neural mesh model to write (.pt).")
@click.option("--body", "body_spec", default="free", show_default=True)
@click.option("--components", "num_components", default=3, show_default=True, help="K orientation components.")
@click.option("--tau", default=10.0, show_default=True, help="Softness of the orientation assignment.")
@click.option("--clutter", "num_clutter", default=1, show_default=True, help="Clutter directions (k-means).")
@click.option("--temperature", default=0.07, show_default=True, help="vMF temperature T (kappa = 1/T).")
@click.option("--fit-temperature", is_flag=True, help="Use the MLE concentration instead of --temperature.")
@click.option("--batch-size", default=16, show_default=True)
@click.option("--max-batches", default=None, type=int, help="Use only this many batches (smoke runs).")
@device_option
@click.option("--workers", default=2, show_default=True, help="DataLoader workers.")
@threads_option(default=None, help="CPU threads for torch (>= 1) [torch's default: one per core].")
@quiet_option
def gmm(data: tuple[str, ...], network_path: str, out: str, body_spec: str, num_components: int, tau: float,
        num_clutter: int, temperature: float, fit_temperature: bool, batch_size: int, max_batches: int | None,
        device: str, workers: int, threads: int | None, quiet: bool) -> None:
    """Estimate the neural mesh model (per-vertex, per-orientation feature means + clutter) with the network frozen."""
    from neuralfit.body import load_body_model
    from neuralfit.errors import NeuralfitError
    from neuralfit.nets import load_network
    from neuralfit.training.gmm import accumulate_statistics, build_neural_model

    for name, value in (("--components", num_components), ("--clutter", num_clutter),
                        ("--batch-size", batch_size), ("--max-batches", max_batches)):
        check_positive_int(name, value)
    check_positive_int("--workers", workers, minimum=0)
    if temperature <= 0 or tau <= 0:
        raise NeuralfitError(f"--temperature and --tau must be > 0, got {temperature} and {tau}")
    check_out_file(out)
    for d in data:
        check_dataset(d)
    body = load_body_model(body_spec, device=device)
    net = load_network(network_path, body, device=device)
    datasets = open_datasets(data, net.config.input_res, augment=False)
    with torch_threads(threads):
        stats = accumulate_statistics(net, datasets, body, num_components, tau, batch_size=batch_size,
                                      num_workers=workers, max_batches=max_batches, progress=not quiet)
    model = build_neural_model(stats, body, num_clutter=num_clutter, temperature=temperature, tau=tau,
                               fit_temperature=fit_temperature)
    model.save(out)
    seen = int((stats.counts.sum(1) > 0).sum())
    click.echo(f"wrote {out}: {model.n_vertices} vertices x {model.n_orientations} orientations x {model.dim} dims, "
               f"{seen} vertices observed, {stats.background_seen} background features, "
               f"kappa_MLE {stats.kappa():.1f} (T used {model.temperature:.4g})")


@click.command("regressor")
@click.option("--network", "network_path", required=True, type=click.Path(exists=True, dir_okay=False),
              help="Network checkpoint whose regressor to (re)train; an image regressor is replaced by a keypoint one.")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Network checkpoint to write (.pt).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, file_okay=False),
              help="`neuralfit synth` folder(s): mix the network's own keypoints on these images into every batch.")
@click.option("--max-images", default=2000, show_default=True, help="Images per --data folder.")
@click.option("--poses", "poses", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Pose set(s) to draw bodies from instead of the shipped DeepMimic + CMU sets: .npz with "
                   "body_pose (N, 69) and global_orient (N, 3) axis-angle, optional clip_id (N,) (whole clips "
                   "are held out for validation). Repeatable.")
@click.option("--camera", type=click.Choice(["photo", "crop"]), default="photo", show_default=True,
              help="photo: photo cameras + detector joint sets (BlazePose/COCO/BODY-25); crop: the image "
                   "engine's crop camera and pose sampler (the first default's data).")
@click.option("--holdout-fraction", default=0.1, show_default=True,
              help="Share of clips held out (same split as `train prior`); scored after training.")
@click.option("--crop-fraction", default=0.3, show_default=True,
              help="With --camera photo: share of each batch from crop-camera data (the synthetic images' camera).")
@click.option("--body", "body_spec", default="free", show_default=True)
@click.option("--samples", default=60_000, show_default=True, help="Synthetic keypoint sets drawn.")
@click.option("--steps", default=6_000, show_default=True)
@click.option("--batch-size", default=256, show_default=True)
@click.option("--lr", default=2e-4, show_default=True, help="Adam learning rate (cosine decay to 5 %).")
@click.option("--half", is_flag=True, help="Store weights as float16 (the shipped default).")
@click.option("--seed", default=0, show_default=True)
@click.option("--quiet", is_flag=True)
def regressor(network_path: str, out: str, data: tuple[str, ...], max_images: int, poses: tuple[str, ...],
              camera: str, holdout_fraction: float, crop_fraction: float, body_spec: str, samples: int,
              steps: int, batch_size: int, lr: float, half: bool, seed: int, quiet: bool) -> None:
    """Train the SMPL regressor of a network from 2D keypoints (no images needed) and write OUT.

    Draws posed bodies from the pose/shape priors, projects their keypoints with the synthetic data's
    camera distribution, corrupts them like a detector would (noise, occluded regions, outliers) and
    trains the iterative regressor to recover SMPL. Everything but the regressor is copied unchanged.
    """
    import torch

    from neuralfit.body import load_body_model
    from neuralfit.io.atomic import save_json
    from neuralfit.nets import load_network
    from neuralfit.nets.checkpoint import save_network
    from neuralfit.training.network import plot_curves
    from neuralfit.training.regressor import (
        RegressorConfig,
        convert_to_keypoint_regressor,
        predicted_keypoint_set,
        train_regressor,
    )

    check_positive_int("--steps", steps)  # --steps 0 crashed after writing nothing useful (issue 18)
    body = load_body_model(body_spec)
    net = load_network(network_path, body)
    if net.config.regressor_input != "keypoints":
        net = convert_to_keypoint_regressor(net)
    predicted = None
    if data:
        sets = [predicted_keypoint_set(net, d, max_images=max_images, progress=not quiet) for d in data]
        predicted = {k: torch.cat([s[k] for s in sets]) for k in sets[0]}
    cfg = RegressorConfig(samples=samples, steps=steps, batch_size=batch_size, lr=lr, seed=seed, camera=camera,
                          poses=tuple(poses), holdout_fraction=holdout_fraction, crop_fraction=crop_fraction)
    history = train_regressor(net, body, cfg, predicted=predicted, progress=not quiet)
    if camera == "photo" and holdout_fraction > 0:
        from neuralfit.training.regressor import heldout_keypoint_set, lifter_pa_mpjpe

        val, val_inputs = heldout_keypoint_set(body, net.config.input_res, cfg)
        net.regressor_training["heldout_pa_mpjpe_mm"] = round(float(lifter_pa_mpjpe(net, body, val, val_inputs).mean()), 1)
    info = getattr(net, "checkpoint_info", {})
    prov = dict(info.get("provenance", {}))
    prov["regressor_training"] = {**net.regressor_training, "command": " ".join(sys.argv), "data": list(data)}
    bank = info.get("feature_bank")
    save_network(out, net, body, provenance=prov, feature_bank=bank, half=half)
    png_path = Path(out).with_name(Path(out).stem + "_regressor_curves.png")
    save_json(png_path.with_suffix(".json"), history)
    plot_curves([{k: v for k, v in h.items() if k != "step"} for h in history], png_path, smooth=50,
                title="neuralfit train regressor: loss per step")
    last = history[-1]
    held = net.regressor_training.get("heldout_pa_mpjpe_mm")
    click.echo(f"wrote {out}: regressor trained {steps} steps in {net.regressor_training['seconds']:.0f} s; "
               + (f"held-out PA-MPJPE {held} mm; " if held is not None else "")
               + "last losses: " + ", ".join(f"{k} {v:.4g}" for k, v in last.items() if k != "step"))


@click.command("lifter")
@click.option("--out", required=True, type=click.Path(dir_okay=False), help="Lifter checkpoint to write (.pt).")
@click.option("--poses", "poses", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Pose set(s) instead of the shipped DeepMimic + CMU sets: .npz with body_pose (N, 69) and "
                   "global_orient (N, 3) axis-angle, optional clip_id (N,) (whole clips are held out). Repeatable.")
@click.option("--holdout-fraction", default=0.1, show_default=True,
              help="Share of clips held out (same split as `train prior`); scored during training.")
@click.option("--body", "body_spec", default="free", show_default=True)
# Defaults (None) are LifterTrainConfig's: each setting is defined once, and torch stays unimported here.
@click.option("--samples", type=int, default=None, help="Bodies x photo cameras drawn once [400000].")
@click.option("--steps", type=int, default=None, help="Adam steps [4000, the shipped lifter].")
@click.option("--batch-size", type=int, default=None, help="[256]")
@click.option("--lr", type=float, default=None, help="Adam learning rate, decayed exponentially [1e-3].")
@click.option("--hidden", type=int, default=None, help="Width of the residual MLP [512].")
@click.option("--confidence-correlation", type=float, default=None,
              help="Share of each keypoint's confidence drawn once per sample, in [0, 1] (RegressorConfig).")
@click.option("--seed", default=0, show_default=True)
@threads_option(default=1, help="CPU threads for torch (>= 1).")
@quiet_option
def lifter(out: str, poses: tuple[str, ...], holdout_fraction: float, body_spec: str, samples: int, steps: int,
           batch_size: int, lr: float, hidden: int, confidence_correlation: float | None, seed: int,
           threads: int | None, quiet: bool) -> None:
    """Train the 2D-to-3D keypoint lifter (the `--init lifter` start) and write OUT.

    Mocap poses x random shapes x random photo cameras, corrupted like a detector's keypoints (BlazePose,
    COCO, BODY-25; noise, occlusion dropout, swaps, outliers); the target is the body's metric BlazePose-33
    landmarks in mediapipe's world frame. See docs/network.md.
    """
    for name, v in (("--steps", steps), ("--samples", samples), ("--batch-size", batch_size), ("--hidden", hidden)):
        if v is not None:
            check_positive_int(name, v)
    if not 0 < holdout_fraction < 1:
        raise click.UsageError(f"--holdout-fraction must be in (0, 1), got {holdout_fraction}")
    if confidence_correlation is not None and not 0 <= confidence_correlation <= 1:
        raise click.UsageError(f"--confidence-correlation must be in [0, 1], got {confidence_correlation}")
    with torch_threads(threads):
        _train_lifter(out, poses, holdout_fraction, body_spec, samples, steps, batch_size, lr, hidden,
                      confidence_correlation, seed, quiet)


def _train_lifter(out: str, poses: tuple[str, ...], holdout_fraction: float, body_spec: str, samples: int,
                  steps: int, batch_size: int, lr: float, hidden: int, confidence_correlation: float | None,
                  seed: int, quiet: bool) -> None:
    import time
    from dataclasses import replace

    from neuralfit.body import load_body_model
    from neuralfit.io.atomic import save_json
    from neuralfit.nets.lifter import save_lifter
    from neuralfit.training.lifter import LifterTrainConfig, train_lifter
    from neuralfit.training.regressor import RegressorConfig, lifter_pose_sets
    from neuralfit.training.regressor_data import sample_photo_keypoint_set

    t0 = time.time()
    body = load_body_model(body_spec)
    given = {"samples": samples, "steps": steps, "batch_size": batch_size, "lr": lr, "hidden": hidden}
    cfg = LifterTrainConfig(seed=seed, **{k: v for k, v in given.items() if v is not None})
    if confidence_correlation is not None:
        cfg = replace(cfg, keypoints=replace(cfg.keypoints, confidence_correlation=confidence_correlation))
    train_poses, held_poses = lifter_pose_sets(RegressorConfig(poses=tuple(poses), holdout_fraction=holdout_fraction))
    train_set = sample_photo_keypoint_set(body, train_poses, cfg.samples, 224, cfg.keypoints.photo, seed=seed + 1)
    held_set = sample_photo_keypoint_set(body, held_poses, cfg.heldout_samples, 224, cfg.keypoints.photo, seed=9001)
    model, rows = train_lifter(body, train_set, held_set, cfg, log=(lambda s: None) if quiet else click.echo)
    best = min(r["heldout_pa"] for r in rows)
    info = {"command": " ".join(sys.argv), "poses": list(poses) or ["shipped CMU + DeepMimic"],
            "heldout_limb_pa_mpjpe_mm": round(best, 1), "train_frames": len(train_poses.body_pose),
            "seconds": round(time.time() - t0), "credit": "CMU data: mocap.cs.cmu.edu (NSF EIA-0196217)"}
    save_lifter(model, out, info)
    save_json(Path(out).with_suffix(".json"), {"info": info, "log": rows})
    click.echo(f"wrote {out}: held-out limb PA-MPJPE {best:.1f} mm after {cfg.steps} steps ({info['seconds']} s)")
