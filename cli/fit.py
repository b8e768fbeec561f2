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
from neuralfit.cli.options import (
    check_out_dir,
    check_positive_int,
    device_option,
    overwrite_option,
    quiet_option,
    threads_option,
    torch_threads,
)

from neuralfit.errors import NeuralfitError

EXIT_SOME_FAILED = 3


@click.command()
@click.argument("images", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder; each photo gets DIR/<stem>/ (params.npz, mesh.obj, mesh.glb, overlay.png, "
                   "side.png, occlusion.png, fit.json).")
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
@click.option("--boxes", "boxes_file", type=click.Path(path_type=Path), default=None, metavar="FILE.json",
              help="Person boxes per photo: JSON {\"img.jpg\": [[x0, y0, x1, y1], ...], ...} (or "
                   "{\"bbox\": [...]} objects); [] = no person there; photos not named get the normal search "
                   "(docs/fit.md). Not with --bbox.")
@click.option("--max-people", type=int, default=None, metavar="N",
              callback=lambda ctx, param, value: check_positive_int("--max-people", value),
              help="At most N people per photo found by the search (>= 1; 1 = single-person; default: the "
                   "library's, FitImageConfig.max_people). A --boxes file's boxes are not capped.")
@device_option  # checks cpu | cuda | cuda:N (and that a GPU exists) while parsing
@click.option("--method", type=click.Choice(["neural", "keypoints", "regressor"]), default=None,
              help="neural (full NeuralSMPL fit), keypoints (keypoints + priors only), regressor (the start, "
                   "no fitting). Default: neural when you pass --neural-model, else keypoints (docs/fit.md says "
                   "why the shipped neural model is not the default).")
@click.option("--init", "init", default="mediapipe3d", show_default=True, metavar="mediapipe3d|lifter|network|FILE.npz",
              help="Where fits start: IK to mediapipe's 3D landmarks, the keypoint lifter, the network's "
                   "regressor, or a SPIN/EFT-style .npz of your regressor's outputs (matched by image name). "
                   "Falls back to the next available start per person (fit.json says which ran).")
@click.option("--lifter", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Keypoint lifter checkpoint (`neuralfit train lifter`; default: the shipped one).")
@click.option("--lift-blend", type=float, default=None, metavar="A",
              help="Share of the lifter's 3D landmarks in the mediapipe3d start, in [0, 1] (0 = mediapipe's "
                   "alone; default: FitImageConfig.lift_blend, docs/init.md).")
@click.option("--lift-blend-hidden", type=float, default=None, metavar="K",
              help="Raise a person's lifter share by (1 - A) min(1, K s), s the share of their 12 limb keypoints "
                   "below confidence 0.5 (0 = off; default: FitImageConfig.lift_blend_hidden, docs/init.md).")
@click.option("--lift-blend-inconsistent", default=None, metavar="R0,R1|off",
              help="Raise it further, to the lifter's alone, as mediapipe's 3D landmarks stop projecting onto its "
                   "2D keypoints (residual from R0 to R1 of the person's size; default: "
                   "FitImageConfig.lift_blend_inconsistent, docs/init.md).")
@click.option("--inconsistent-keypoints", type=float, default=None, metavar="C",
              help="Weight the keypoint terms of such a person by 1 - min(1, C w), w that inconsistency from 0 to 1 "
                   "(0 = off; default: FitImageConfig.inconsistent_keypoints, docs/occlusion.md).")
@click.option("--unsure-hidden", type=float, default=None, metavar="K",
              help="In the 2D fit, weight a person's keypoints below confidence 0.5 by 1 - min(1, K s) (0 = off; "
                   "default: FitImageConfig.unsure_hidden, docs/occlusion.md).")
@click.option("--hidden-keypoints", type=float, default=None, metavar="K",
              help="In the 2D fit, scale each keypoint's confidence by 1 - min(1, K h), h the part head's "
                   "hidden-body evidence where it lies (0 = off; default: FitImageConfig.hidden_keypoints, "
                   "docs/occlusion.md).")
@click.option("--occlusion-map", default=None, metavar="LO,HI|fitter",
              help="occlusion.png from the part head's background probability mapped from [LO, HI] to [0, 1] over "
                   "the fitted body, or 'fitter' for the fitter's mask + keypoint outlier map (default: "
                   "FitImageConfig.occlusion_from_parts, docs/occlusion.md).")
@click.option("--facing-check", default=None, metavar="T|off",
              help="Refit a person from left/right-swapped keypoints when the part head reads the fit's left and "
                   "right the other way round (evidence below -T; default: FitImageConfig.facing_check, docs/fit.md).")
@click.option("--focal", type=float, default=None,
              help="The photos' focal length in pixels (default: EXIF, else the image diagonal).")
@click.option("--fov", type=float, default=None, help="The photos' horizontal field of view in degrees (instead of --focal).")
@click.option("--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Fitter setting (a FitConfig field, docs/fitting.md), e.g. --set stage2_iters=40 "
                   "--set min_keypoint_confidence=0.3. Repeatable.")
@click.option("--batch-size", type=int, default=8, show_default=True, help="Photos fitted together.")
@threads_option(help="CPU threads for torch. The fit's tensors are small, so extra threads mostly wait (2 threads "
                     "took 5x the CPU time of 1 in benchmarks/fit_photo_speed.py); raise it for big batches.")
@click.option("--no-overlay", is_flag=True, help="Skip overlay.png / side.png / occlusion.png.")
@overwrite_option
@quiet_option
def fit(images: tuple[Path, ...], out: Path, body_spec: str, prior: str, network: Path | None,
        neural_model: Path | None, keypoints: Path | None, bbox: str | None, boxes_file: Path | None,
        max_people: int | None, device: str, method: str | None, init: str, lifter: Path | None,
        lift_blend: float | None, lift_blend_hidden: float | None, lift_blend_inconsistent: str | None,
        inconsistent_keypoints: float | None, unsure_hidden: float | None, hidden_keypoints: float | None,
        occlusion_map: str | None, facing_check: str | None, focal: float | None,
        fov: float | None, settings: tuple[str, ...], batch_size: int, threads: int,
        no_overlay: bool, overwrite: bool, quiet: bool) -> None:
    """Fit SMPL-format bodies to the people in IMAGE(s), in each photo's own camera.

    Exit status: 0 all photos fitted; 3 some had no person or failed (one warning line each, the
    others still finish); 1 bad arguments; 2 usage errors.
    """
    from neuralfit.fitting import FitConfig
    from neuralfit.pipeline import FitImageConfig

    if bbox is not None and boxes_file is not None:
        raise NeuralfitError("--bbox and --boxes cannot be used together; put the box in the --boxes file instead")
    # Only when given: None means the library's default, which is FitImageConfig's to decide.
    extra = {} if max_people is None else {"max_people": max_people}
    if lift_blend is not None:
        extra["lift_blend"] = lift_blend
    if lift_blend_hidden is not None:
        extra["lift_blend_hidden"] = lift_blend_hidden
    if lift_blend_inconsistent is not None:
        extra["lift_blend_inconsistent"] = _pair(lift_blend_inconsistent, "--lift-blend-inconsistent", "R0,R1", "off")
    if inconsistent_keypoints is not None:
        extra["inconsistent_keypoints"] = inconsistent_keypoints
    if unsure_hidden is not None:
        extra["unsure_hidden"] = unsure_hidden
    if hidden_keypoints is not None:
        extra["hidden_keypoints"] = hidden_keypoints
    if occlusion_map is not None:
        extra["occlusion_from_parts"] = _pair(occlusion_map, "--occlusion-map", "LO,HI", "fitter")
    if facing_check is not None:
        extra["facing_check"] = _number_or_off(facing_check, "--facing-check")
    cfg = FitImageConfig(method=method, init=init, focal=focal, fov=fov, batch_size=batch_size,
                         write_overlay=not no_overlay, fit=FitConfig.photo().with_settings(settings), **extra)
    with torch_threads(threads):
        _run(images, out, body_spec, prior, network, neural_model, keypoints, bbox, boxes_file, device, cfg,
             overwrite, quiet, lifter)


def _pair(text: str, flag: str, form: str, word: str) -> tuple[float, float] | None:
    """``A,B`` -> (A, B); ``word`` (off, fitter) -> None. FitImageConfig checks the values."""
    if text.strip().lower() == word:
        return None
    try:
        a, b = (float(v) for v in text.split(","))
    except ValueError:
        raise NeuralfitError(f"{flag} {text!r}: expected {form} (two numbers) or {word}") from None
    return a, b


def _number_or_off(text: str, flag: str) -> float | None:
    """``T`` -> T; ``off`` -> None. FitImageConfig checks the value."""
    if text.strip().lower() == "off":
        return None
    try:
        return float(text)
    except ValueError:
        raise NeuralfitError(f"{flag} {text!r}: expected a number or off") from None


def _run(images, out, body_spec, prior, network, neural_model, keypoints, bbox, boxes_file, device, cfg,
         overwrite, quiet, lifter=None) -> None:
    from neuralfit.pipeline import ImageFitter, parse_bbox

    log = logging.getLogger("neuralfit.fit")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Format())
    log.handlers[:] = [handler]
    log.propagate = False
    log.setLevel(logging.WARNING if quiet else logging.INFO)
    # Per photo: None (search the whole photo), one (4,) box, or an (n, 4) array from --boxes (n = 0:
    # "no person here"). Loaded and checked before anything is written or any model loaded.
    if boxes_file is not None:
        from neuralfit.photo.boxes import boxes_for_images, load_boxes_file

        bboxes, box_warnings = boxes_for_images(load_boxes_file(boxes_file), images, path=boxes_file)
        for w in box_warnings:
            log.warning("%s", w)
    else:
        bboxes = [parse_bbox(bbox) if bbox is not None else None] * len(images)
    kps = None
    if keypoints is not None:
        from neuralfit.detect import load_keypoints_json

        kps = [load_keypoints_json(keypoints, image_name=p.name) for p in images]
    # Checked, not created: the folder appears only once a photo is written (a run that fails while
    # loading assets leaves nothing behind).
    check_out_dir(out, overwrite=overwrite, marker_files=[f"{Path(p).stem}/fit.json" for p in images])
    extra = {} if lifter is None else {"lifter": lifter}  # None: the library's (the shipped lifter)
    with ImageFitter(body_spec, None if prior.lower() == "none" else prior, network, neural_model, cfg,
                     device, **extra) as fitter:
        log.info("method: %s (%s)", fitter.method, fitter.method_reason)
        results = fitter.fit(list(images), kps, bboxes, progress=not quiet, out=out)
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
