"""``neuralfit refine``: refine regressor outputs (SPIN/EFT/PARE-style .npz) by batched model fitting."""

from __future__ import annotations

import click
from neuralfit.cli.options import check_out_file, device_option, quiet_option, threads_option, torch_threads


@click.command()
@click.argument("init", type=click.Path(dir_okay=False))
@click.option("--images", "images", required=True, type=click.Path(file_okay=False),
              help="Folder the npz's imgname entries are relative to.")
@click.option("--out", "out", required=True, type=click.Path(dir_okay=False), help="Refined .npz (written atomically).")
@click.option("--method", type=click.Choice(["keypoints", "neural"]), default="keypoints", show_default=True,
              help="keypoints: SMPLify-style (npz keypoints + priors); neural: NeuralSMPL (network features, "
                   "parts, keypoints + priors).")
@click.option("--network", type=click.Path(dir_okay=False), default=None,
              help="Multi-task network checkpoint for the neural method (default: the shipped one).")
@click.option("--neural-model", "neural_model", type=click.Path(dir_okay=False), default=None,
              help="Neural mesh model .pt for the neural method (default: the shipped one).")
@click.option("--keypoints", type=click.Choice(["auto", "part", "openpose", "none"]), default="auto",
              show_default=True, help="Which npz keypoints to fit (part = spin24, openpose = BODY-25).")
@click.option("--init", "init_from", type=click.Choice(["file", "lifter"]), default="file", show_default=True,
              help="Where each fit starts: the row's own pose/shape (file), or the keypoint lifter on the row's "
                   "keypoints (lifter; rows with fewer than 6 confident keypoints keep their own).")
@click.option("--lifter", type=click.Path(dir_okay=False), default=None,
              help="Keypoint lifter checkpoint for --init lifter (default: the shipped one).")
@click.option("--batch-size", type=int, default=16, show_default=True, help="Crops fitted at once.")
@click.option("--resume", is_flag=True, help="Continue an interrupted run from OUT.partial/.")
@click.option("--shard", default=None, metavar="I/N",
              help="Process rows I::N only (output keeps row_index; combine with merge_shards). Under torchrun "
                   "RANK/WORLD_SIZE are used when this is not given.")
@device_option  # checks cpu | cuda | cuda:N (and that a GPU exists) while parsing
@click.option("--body", "body_spec", default="free", show_default=True, help="'free' or a path to SMPL files.")
@click.option("--prior", "prior_spec", default="default", show_default=True,
              help="Pose prior: 'default', a VPoser folder/checkpoint, or 'none'.")
@click.option("--res", type=int, default=224, show_default=True,
              help="Crop resolution of the camera model (keypoints method; the network's own otherwise).")
@click.option("--clean", is_flag=True, help="Seed preset for unoccluded images (lr 0.002 instead of 0.02).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Fitter setting (a FitConfig field, docs/fitting.md), e.g. --set lr=0.01 "
                   "--set second_hypothesis=true. Repeatable; applied after --clean.")
@threads_option
@quiet_option
def refine(init: str, images: str, out: str, method: str, network: str | None, neural_model: str | None,
           keypoints: str, init_from: str, lifter: str | None, batch_size: int, resume: bool, shard: str | None, device: str, body_spec: str,
           prior_spec: str, res: int, clean: bool, settings: tuple[str, ...], threads: int, quiet: bool) -> None:
    """Refine the SMPL estimates in INIT (.npz with imgname, center, scale, pose, shape [, cam, part, openpose])."""
    from neuralfit.fitting.config import FitConfig
    from neuralfit.refine import RefineOptions, parse_shard, refine_npz

    check_out_file(out)  # OUT and OUT.partial/ go next to each other: refuse an unwritable folder first
    fit = (FitConfig.clean() if clean else FitConfig.occluded()).with_settings(settings)
    options = RefineOptions(method=method, batch_size=batch_size, res=res, keypoints=keypoints, body=body_spec,
                            prior=prior_spec, network=network, neural_model=neural_model, device=device,
                            init=init_from, lifter=lifter, fit=fit)
    with torch_threads(threads):
        summary = refine_npz(init, images, out, options, resume=resume,
                             shard=parse_shard(shard) if shard else None, progress=not quiet)
    click.echo(f"refined {summary.rows} rows -> {summary.out}")
