"""``neuralfit body show|export``: pose a body and render it coloured by part, or save it as a mesh."""

from __future__ import annotations

from pathlib import Path

import click
from neuralfit.cli.options import check_out_file, check_size

_BODY_HELP = "'free' (the shipped neuralfit-free body) or a path to SMPL files (.pkl/.npz or a model folder)"


def _posed(body_spec: str, gender: str, pose: str, seed: int, lowres: bool):
    """Load the body and pose it; returns (body, vertices (V, 3), faces (F, 3), part ids (V,))."""
    import torch

    from neuralfit.body import load_body_model

    body = load_body_model(body_spec, gender=gender)
    body_pose = torch.zeros(1, 69)
    if pose == "random":
        g = torch.Generator().manual_seed(seed)
        # Moderate random joint rotations (about 20 degrees per axis) keep the body plausible enough.
        body_pose = 0.35 * torch.randn(1, 69, generator=g)
    with torch.no_grad():
        out = body(body_pose=body_pose, lowres=lowres)
    if lowres:
        return (
            body,
            out.lowres_vertices[0].numpy(),
            body.lowres.faces.numpy(),
            body.lowres.part_labels.numpy(),
        )
    return body, out.vertices[0].numpy(), body.faces.numpy(), body.part_labels.numpy()


@click.group()
def body() -> None:
    """Body models: render or export a posed body (free body or your SMPL files)."""


def _common(f):
    f = click.option("--lowres", is_flag=True, help="Use the low-res neural mesh instead of the full mesh.")(
        f
    )
    f = click.option("--seed", type=int, default=0, show_default=True, help="Seed of --pose random.")(f)
    f = click.option(
        "--pose", type=click.Choice(["zero", "random"]), default="zero", show_default=True, help="Body pose."
    )(f)
    f = click.option("--gender", type=click.Choice(["neutral", "male", "female"]), default="neutral",
                     show_default=True)(f)  # fmt: skip
    f = click.option("--body", "body_spec", default="free", show_default=True, help=_BODY_HELP)(f)
    return f


@body.command()
@_common
@click.option("--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help="PNG to write.")
@click.option("--size", type=int, default=512, show_default=True, help="Image size in pixels.")
def show(body_spec: str, gender: str, pose: str, seed: int, lowres: bool, out: Path, size: int) -> None:
    """Render the posed body coloured by its 24 parts to a PNG."""
    import cv2
    import numpy as np

    from neuralfit.errors import NeuralfitError
    from neuralfit.io.atomic import atomic_path
    from neuralfit.render.shaded import render_shaded

    # The camera divides by the size: 0 crashed, a negative size reached OpenCV (issue 18).
    check_size("--size", size, minimum=16, maximum=8192)
    check_out_file(out, suffixes=(".png",))
    model, verts, faces, parts = _posed(body_spec, gender, pose, seed, lowres)
    # Camera: OpenCV frame looking at the body's front (SMPL faces +z, up is +y): flip y and z,
    # then place the body so its bounding box fills ~85 % of the image.
    v = verts * np.array([1.0, -1.0, -1.0])
    centre = (v.max(0) + v.min(0)) / 2.0
    extent = float((v.max(0) - v.min(0))[:2].max())
    focal = 2.0 * size
    depth = focal * extent / (0.85 * size)
    v = v - centre + np.array([0.0, 0.0, depth])
    colors = model.part_colors[1 + parts]
    img = render_shaded(v, faces, colors, (size, size), focal)
    with atomic_path(out) as tmp:
        if not cv2.imwrite(str(tmp), cv2.cvtColor(img, cv2.COLOR_RGB2BGR)):
            raise NeuralfitError(f"could not write image {out}")
    click.echo(f"wrote {out} ({model.name}, {len(verts)} vertices, pose {pose})")


@body.command()
@_common
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), required=True, help=".obj or .ply to write."
)
@click.option("--colors/--no-colors", default=True, show_default=True, help="Store part colours per vertex.")
def export(body_spec: str, gender: str, pose: str, seed: int, lowres: bool, out: Path, colors: bool) -> None:
    """Save the posed body as an OBJ or PLY mesh (metres, SMPL axes: y up, facing +z)."""
    from neuralfit.io.mesh import save_mesh

    check_out_file(out, suffixes=(".obj", ".ply"))
    model, verts, faces, parts = _posed(body_spec, gender, pose, seed, lowres)
    save_mesh(out, verts, faces, model.part_colors[1 + parts] if colors else None)
    click.echo(f"wrote {out} ({model.name}, {len(verts)} vertices, {len(faces)} faces)")
