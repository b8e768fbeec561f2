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
@click.option("--epochs", default=None, type=int, help="Passes over the training frames [150].")
@click.option("--batch-size", default=None, type=int, help="Poses per step [256].")
@click.option("--kl-weight", default=None, type=float, help="Weight of the KL term [0.1].")
@click.option("--seed", default=None, type=int, help="Random seed [0].")
@click.option("--threads", default=None, type=int, help="Torch threads [1; 0 = torch's default].")
@click.option("--holdout", default=None, help="Comma-separated clips held out for validation [run,dance_b]; "
              "'none' trains on all clips.")
@click.option("--from-pybullet", is_flag=True,
              help="Re-extract the DeepMimic clips from the installed pybullet (build extra) instead of "
                   "using the shipped pose set (the extracted set is written next to OUT as *_mocap.npz).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def prior(out: str, epochs: int | None, batch_size: int | None, kl_weight: float | None, seed: int | None,
          holdout: str | None, threads: int | None, from_pybullet: bool, quiet: bool) -> None:
    """Train the default VPoser-layout pose prior on the retargeted mocap and write it to OUT."""
    from dataclasses import replace

    from neuralfit.priors.train import TrainPriorConfig, train_and_save

    cfg = TrainPriorConfig()
    changes = {k: v for k, v in (("epochs", epochs), ("batch_size", batch_size), ("kl_weight", kl_weight),
                                 ("seed", seed)) if v is not None}
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
    from neuralfit.cli.train_nets import gmm, network, regressor

    train.add_command(network)
    train.add_command(gmm)
    train.add_command(regressor)


_attach_subcommands()
