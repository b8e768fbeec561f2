"""``neuralfit train ...``: training commands (one sub-command per trained artefact).

``train prior`` lives here; ``train network`` and ``train gmm`` live in :mod:`neuralfit.cli.train_nets`.
"""

from __future__ import annotations

import click


@click.group()
def train() -> None:
    """Train neuralfit's models (pose prior, networks, feature models)."""


@train.command("prior")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False),
              help="Output .npz (priors/assets/default_prior.npz to replace the shipped default).")
@click.option("--data", "data", multiple=True, type=click.Path(exists=True, dir_okay=False),
              help="Pose set(s) to train on instead of the shipped DeepMimic + CMU sets: .npz with body_pose "
                   "(N, 69) and global_orient (N, 3) axis-angle, optional clip_id (N,) for clip-level splits "
                   "(e.g. AMASS frames you converted). Repeatable.")
@click.option("--holdout-fraction", default=None, type=float,
              help="Share of clips (other than DeepMimic's) held out for validation, by name hash [0.1].")
@click.option("--epochs", default=None, type=int, help="Passes over the training frames [8].")
@click.option("--batch-size", default=None, type=int, help="Poses per step [256].")
@click.option("--kl-weight", default=None, type=float, help="Weight of the KL term [0.15].")
@click.option("--seed", default=None, type=int, help="Random seed [0].")
@click.option("--threads", default=None, type=int, help="Torch threads [1; 0 = torch's default].")
@click.option("--holdout", default=None, help="Comma-separated clips held out by name [run,dance_b]; "
              "'none' holds out none by name (with --holdout-fraction 0: trains on all clips).")
@click.option("--from-pybullet", is_flag=True,
              help="Re-extract the DeepMimic clips from the installed pybullet (build extra) instead of "
                   "using the shipped pose set (the extracted set is written next to OUT as *_mocap.npz).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prior(out: str, data: tuple[str, ...], holdout_fraction: float | None, epochs: int | None,
          batch_size: int | None, kl_weight: float | None, seed: int | None, holdout: str | None,
          threads: int | None, from_pybullet: bool, quiet: bool) -> None:
    """Train the default VPoser-layout pose prior on the retargeted mocap and write it to OUT."""
    from dataclasses import replace

    from neuralfit.priors.train import TrainPriorConfig, train_and_save

    cfg = TrainPriorConfig()
    changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("kl_weight", kl_weight),
                                 ("seed", seed)) if v is not None}
    if data:
        changes["data"] = tuple(data)
        if holdout is None:
            changes["holdout_clips"] = ()  # DeepMimic's clip names do not exist in a user's set
    if holdout_fraction is not None:
        changes["holdout_fraction"] = holdout_fraction
    if holdout is not None:
        changes["holdout_clips"] = () if holdout.strip().lower() == "none" else tuple(
            c.strip() for c in holdout.split(",") if c.strip())
    if threads is not None:
        changes["threads"] = threads if threads > 0 else None
    cfg = replace(cfg, **changes)
    meta = train_and_save(out, cfg, from_pybullet=from_pybullet, progress=not quiet)
    click.echo(f"wrote {out}: {meta['bytes'] / 1e6:.2f} MB, {meta['train_frames']} training frames, "
               f"{meta['train_seconds']:.0f} s on {meta['torch_threads']} thread(s)")


def _attach_subcommands() -> None:
    # The network trainers live in their own module to keep this one readable.
    from neuralfit.cli.train_nets import gmm, lifter, network, regressor

    train.add_command(network)
    train.add_command(gmm)
    train.add_command(regressor)
    train.add_command(lifter)


_attach_subcommands()
