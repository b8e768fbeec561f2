"""``neuralfit fit IMAGE [IMAGE ...] --out DIR``: fit bodies to people in photos.

Exit status: 0 every photo fitted; 3 some photos had no person or could not be read/written (each
gets a one-line ``warning:``, the others finish); 1 bad arguments or assets (one ``error:`` line,
nothing written); 2 command-line usage errors (click).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click
from neuralfit.cli.options import device_option

EXIT_SOME_FAILED = 3


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder; each photo gets DIR/<stem>/ (params.npz, mesh.obj, overlay.png, "
                   "occlusion.png, fit.json).")
@click.option("--body", "body_spec", default="free", show_default=True,
              help="'free' (the shipped neuralfit-free body) or a path to SMPL files.")
@click.option("--prior", default="default", show_default=True,
              help="Pose prior: 'default', a VPoser v2 folder/checkpoint, or 'none'.")
@click.option("--network", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Network checkpoint (default: the shipped one, if any).")
@click.option("--neural-model", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Neural mesh model .pt (default with --method neural: the shipped one).")
@click.option("--keypoints", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="OpenPose BODY-25 or COCO-17 keypoint JSON instead of mediapipe (COCO files are matched "
                   "to images by file name).")
@click.option("--bbox", default=None, help="Person box x0,y0,x1,y1 in pixels (mediapipe looks inside it).")
@device_option  # checks cpu | cuda | cuda:N (and that a GPU exists) while parsing
@click.option("--method", type=click.Choice(["neural", "keypoints", "regressor"]), default=None,
              help="neural (full NeuralSMPL fit), keypoints (keypoints + priors only), regressor (network "
                   "only). Default: neural when you pass --neural-model, else keypoints (initialised by the "
                   "network's regressor; docs/fit.md says why the shipped neural model is not the default).")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Photos fitted together.")
@click.option("--threads", type=int, default=1, show_default=True,
              help="CPU threads for torch. The fit's tensors are small, so extra threads mostly wait (2 threads "
                   "took 5x the CPU time of 1 in benchmarks/fit_photo_speed.py); raise it for big batches.")
@click.option("--no-overlay", is_flag=True, help="Skip overlay.png / occlusion.png.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar or info lines.")
def fit(images: tuple[Path, ...], out: Path, body_spec: str, prior: str, network: Path | None,
        neural_model: Path | None, keypoints: Path | None, bbox: str | None, device: str, method: str | None,
        batch_size: int, threads: int, no_overlay: bool, quiet: bool) -> None:
    """Fit SMPL-format bodies to the people in IMAGE(s).

    Exit status: 0 all photos fitted; 3 some had no person or failed (one warning line each, the
    others still finish); 1 bad arguments; 2 usage errors.
    """
    import torch

    from neuralfit.errors import NeuralfitError

    if threads < 1:
        raise NeuralfitError(f"--threads must be >= 1, got {threads}")
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        _run(images, out, body_spec, prior, network, neural_model, keypoints, bbox, device, method, batch_size,
             no_overlay, quiet)
    finally:
        torch.set_num_threads(previous_threads)  # for callers that run the command in-process (tests)


def _run(images, out, body_spec, prior, network, neural_model, keypoints, bbox, device, method, batch_size,
         no_overlay, quiet) -> None:
    from neuralfit.pipeline import FitImageConfig, ImageFitter, parse_bbox

    log = logging.getLogger("neuralfit.fit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    box = parse_bbox(bbox) if bbox is not None else None
    cfg = FitImageConfig(method=method, batch_size=batch_size, write_overlay=not no_overlay)
    kps = None
    if keypoints is not None:
        from neuralfit.detect import load_keypoints_json

        kps = [load_keypoints_json(keypoints, image_name=p.name) for p in images]
    from neuralfit.io.folder import check_writable

    check_writable(out)
    with ImageFitter(body_spec, None if prior.lower() == "none" else prior, network, neural_model, cfg,
                     device) as fitter:
        log.info("method: %s (%s)", fitter.method, fitter.method_reason)
        results = fitter.fit(list(images), kps, [box] * len(images), progress=not quiet, out=out)
    ok = sum(r.ok for r in results)
    if not quiet:
        click.echo(f"fitted {ok} of {len(results)} photos -> {out}", err=True)
    if ok < len(results):
        sys.exit(EXIT_SOME_FAILED)


class _Format(logging.Formatter):
    """``warning: ...`` / ``error: ...`` for problems, the bare message for progress information."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        return f"{record.levelname.lower()}: {msg}" if record.levelno >= logging.WARNING else msg
