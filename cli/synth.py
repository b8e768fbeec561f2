"""``neuralfit synth``: render a LASOR-style synthetic, occlusion-aware dataset."""

from __future__ import annotations

import click
from neuralfit.cli.options import check_out_dir, check_out_file, check_positive_int, check_size, quiet_option


@click.command("synth")
@click.option("--out", "out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--count", required=True, type=int, help="Number of images.")
@click.option("--seed", default=0, show_default=True, type=int, help="Master seed (each image gets its own).")
@click.option("--res", default=224, show_default=True, type=int, help="Image side in pixels.")
@click.option("--occlusion", default="train", show_default=True,
              type=click.Choice(["train", "test-clean", "test-occluded"]), help="Occlusion preset.")
@click.option("--workers", default=1, show_default=True, type=int, help="Worker processes.")
@click.option("--body", default="free", show_default=True,
              help="'free' (the shipped body), a path to SMPL files, or 'toy' (procedural test body).")
@click.option("--photos/--no-photos", default=True, show_default=True,
              help="Use installed photo packages (pip install neuralfit[synth]) for backgrounds and occluders.")
@click.option("--sheet", type=click.Path(dir_okay=False), default=None,
              help="Also write a contact sheet PNG of the first 64 annotated samples.")
@quiet_option
def synth(out: str, count: int, seed: int, res: int, occlusion: str, workers: int, body: str,
          photos: bool, sheet: str | None, quiet: bool) -> None:
    """Render COUNT synthetic images with SPIN/EFT-style annotations into OUT (resumable).

    Rerunning into the same OUT with the same settings resumes (finished images are kept); other
    settings are refused. Each worker uses one torch thread, so the bytes do not depend on --workers.
    """
    from neuralfit.data.synth import SynthConfig
    from neuralfit.data.writer import generate_dataset
    from neuralfit.errors import NeuralfitError

    check_positive_int("--count", count)
    check_positive_int("--workers", workers)
    check_size("--res", res, minimum=32)
    # An OUT holding a dataset is not "results to protect": the same settings resume it, others are refused.
    check_out_dir(out, overwrite=True)
    if sheet:
        check_out_file(sheet, "--sheet", suffixes=(".png",))
    if seed < 0:
        raise NeuralfitError(f"--seed must be >= 0, got {seed}")
    cfg = SynthConfig(res=res, occlusion=occlusion, body=body, photos=photos)
    path = generate_dataset(out, count, seed, cfg, workers=workers, progress=not quiet)
    click.echo(f"wrote {path}")
    if sheet:
        from neuralfit.data.sheet import contact_sheet

        click.echo(f"wrote {contact_sheet(out, sheet)}")
