"""``neuralfit sweep``: PARE-style occlusion sensitivity maps and the occlusion-sensitivity mesh."""

from __future__ import annotations

import click
from neuralfit.cli.options import (
    check_dataset,
    check_image,
    device_option,
    quiet_option,
    threads_option,
    torch_threads,
)


@click.command("sweep")
@click.argument("image", required=False, type=click.Path(exists=True, dir_okay=False))
@click.option("--data", type=click.Path(exists=True), default=None,
              help="Test set (folder with annotations.npz or .npz) instead of IMAGE: errors against ground truth.")
@click.option("--index", default=0, show_default=True, type=int, help="Sample of --data to sweep.")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="Output folder.")
@click.option("--method", default="regressor", show_default=True,
              type=click.Choice(["regressor", "keypoints", "neural", "oracle"]), help="Method to probe.")
@click.option("--network", type=click.Path(exists=True, dir_okay=False), default=None, help="Network checkpoint (default: the shipped one).")
@click.option("--neural-model", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Neural mesh model (method 'neural').")
@click.option("--size", default=40, show_default=True, type=int, help="Patch side in 224-px units.")
@click.option("--stride", default=10, show_default=True, type=int, help="Patch stride in 224-px units.")
@click.option("--patch", default="gray", show_default=True, type=click.Choice(["gray", "textured"]),
              help="PARE's gray square or the AdvOcc texture.")
@click.option("--body", default="free", show_default=True, help="Body model of the network.")
@click.option("--res", default=224, show_default=True, type=int, help="Crop size (the network's input size).")
@click.option("--batch-size", default=32, show_default=True, type=int, help="Patch positions per method call.")
@device_option  # checks cpu | cuda | cuda:N (and that a GPU exists) while parsing
@threads_option
@quiet_option
def sweep(image: str | None, data: str | None, index: int, out: str, method: str, network: str | None,
          neural_model: str | None, size: int, stride: int, patch: str, body: str, res: int, batch_size: int,
          device: str, threads: int, quiet: bool) -> None:
    """Slide an occluder over IMAGE (a person crop) or a --data sample and map the per-joint errors.

    Writes OUT/heatmaps.png (one error map per LSP-14 joint), OUT/sensitivity_mesh.{png,ply} (vertex colour =
    mean joint error when the patch covers the vertex), OUT/sensitivity.npz and OUT/sweep.json. With IMAGE
    (no ground truth) errors are measured against the method's own prediction on the unoccluded crop.
    """
    import cv2
    import numpy as np

    from neuralfit.errors import NeuralfitError
    from neuralfit.eval.methods import resolve_methods
    from neuralfit.eval.protocols import EvalSample, load_samples
    from neuralfit.eval.sensitivity import occlusion_sensitivity, write_sweep

    check_image(image)  # the real problem (not an image) before any --network complaint
    check_dataset(data)
    if (image is None) == (data is None):
        raise NeuralfitError("give either IMAGE or --data")
    if image is not None and method == "oracle":
        raise NeuralfitError("method 'oracle' needs ground truth: use --data")
    methods, _, body_model = resolve_methods([method], network, neural_model, body, None, device)
    fn = methods[method]
    if body_model is None:  # the oracle stand-in: still pose the ground-truth mesh for the sensitivity mesh
        from neuralfit.body import load_body_model

        body_model = load_body_model(body, device=device)
    reference = None
    if data is not None:
        samples = load_samples(data, limit=index + 1, body=body_model, res=res)
        if index < 0 or index >= len(samples):
            raise NeuralfitError(f"--index {index} out of range for {data} ({len(samples)} samples)")
        sample = samples[index]
    else:
        from neuralfit.io.images import read_image
        from neuralfit.render.camera import default_focal

        pic = read_image(image)
        h, w = pic.shape[:2]
        side = min(h, w)  # centre square crop, as a person crop is assumed
        pic = pic[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
        rgb = np.ascontiguousarray(cv2.resize(pic, (res, res), interpolation=cv2.INTER_AREA))
        f = default_focal(res)
        dummy = np.zeros((14, 3))
        sample = EvalSample(0, str(image), rgb, dummy, np.full((14, 2), res / 2.0), np.ones(14, bool),
                            np.zeros((res, res), bool), f, res)
        clean = fn(rgb[None], [sample])
        reference = clean.joints3d[0]
    with torch_threads(threads):
        result = occlusion_sensitivity(sample, fn, size, stride, patch, reference, batch_size=batch_size,
                                       progress=not quiet)
    import torch

    # Mesh to colour: the ground truth with --data, else the method's clean prediction (if it returns SMPL).
    if data is not None and sample.pose is not None and sample.transl is not None:
        params = {"global_orient": sample.pose[None, :3], "body_pose": sample.pose[None, 3:],
                  "betas": sample.betas[None], "transl": sample.transl[None]}
    else:
        params = fn(sample.image[None], [sample]).smpl
    vertices = faces = None
    if params is not None:
        dev = body_model.faces.device
        with torch.no_grad():
            o = body_model(**{k: torch.as_tensor(np.asarray(v), dtype=torch.float32, device=dev)
                              for k, v in params.items()})
        vertices, faces = o.vertices[0].cpu().numpy(), body_model.faces.cpu().numpy()
    names = list(body_model.keypoint_sets["lsp14"].names)
    summary = write_sweep(out, result, sample.image, names, vertices, faces, sample.focal)
    click.echo(f"baseline MPJPE {summary['baseline_mpjpe_mm']:.1f} mm, worst {summary['max_mpjpe_mm']:.1f} mm over "
               f"{summary['positions']} positions")
    for f in summary["files"].values():
        click.echo(f"wrote {f}")
