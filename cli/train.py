"""``neuralfit train ...``: training commands (one sub-command per trained artefact).

``train prior`` lives here; other trainers add their own sub-commands to the :func:`train` group.
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


# Sub-commands defined in sibling modules (e.g. ``train network`` / ``train gmm`` in train_nets.py):
# every click command at their top level joins this group. A module that is absent is skipped.
_SUBCOMMAND_MODULES = ("train_nets",)


def _attach_subcommands() -> None:
    import importlib

    for name in _SUBCOMMAND_MODULES:
        try:
            module = importlib.import_module(f"neuralfit.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"neuralfit.cli.{name}":
                raise
            continue
        for obj in vars(module).values():
            if isinstance(obj, click.Command) and not isinstance(obj, click.Group) and obj.name not in train.commands:
                train.add_command(obj)


_attach_subcommands()
