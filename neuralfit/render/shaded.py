"""A small shaded renderer for pictures (demos, overlays): PyTorch3D, vertex colours, OpenCV camera.

Not used inside fitting (see ``neuralfit.render.raster`` for that). Cameras follow
docs/architecture.md: OpenCV frame (x right, y down, z forward), intrinsics in pixels.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralfit.errors import NeuralfitError


def render_shaded(
    vertices: torch.Tensor | np.ndarray,
    faces: torch.Tensor | np.ndarray,
    colors: torch.Tensor | np.ndarray,
    image_size: tuple[int, int],
    focal: float | tuple[float, float],
    principal_point: tuple[float, float] | None = None,
    background: np.ndarray | None = None,
    ambient: float = 0.45,
    device: str | torch.device = "cpu",
) -> np.ndarray:
    """Render one mesh, Lambert-shaded with a light at the camera, to an RGB uint8 image.

    Args:
        vertices: (V, 3) in the camera frame (OpenCV: x right, y down, z forward), metres.
        faces: (F, 3) triangle indices.
        colors: (V, 3) per-vertex RGB, floats in [0, 1] or uint8.
        image_size: (H, W) in pixels.
        focal: focal length in pixels (fx = fy, or a pair).
        principal_point: (cx, cy) in pixels; default the image centre.
        background: optional (H, W, 3) uint8 image to composite over; default white.
        ambient: ambient light share (the rest is diffuse from the camera direction).
        device: where to rasterise.

    Returns:
        (H, W, 3) uint8 image.
    """
    h, w = int(image_size[0]), int(image_size[1])
    v = (
        torch.as_tensor(np.asarray(vertices) if not torch.is_tensor(vertices) else vertices)
        .float()
        .to(device)
    )
    f = torch.as_tensor(np.asarray(faces) if not torch.is_tensor(faces) else faces).long().to(device)
    c = torch.as_tensor(np.asarray(colors) if not torch.is_tensor(colors) else colors).to(device)
    c = c.float() / 255.0 if c.dtype == torch.uint8 else c.float()
    if v.ndim != 2 or v.shape[1] != 3 or c.shape != v.shape:
        raise NeuralfitError(
            f"render needs (V, 3) vertices and colours, got {tuple(v.shape)} and {tuple(c.shape)}"
        )
    if background is not None and background.shape != (h, w, 3):
        raise NeuralfitError(f"background has shape {background.shape}, expected ({h}, {w}, 3)")
    fx, fy = (focal, focal) if np.isscalar(focal) else focal
    cx, cy = principal_point if principal_point is not None else (w / 2.0, h / 2.0)
    p2f, bary = _rasterize_tiled(v, f, float(fx), float(fy), float(cx), float(cy), h, w)
    hit = p2f >= 0
    face_ids = p2f.clamp(min=0)
    corner = f[face_ids]  # (H, W, 3) vertex ids
    col = (c[corner] * bary[..., None]).sum(-2)
    # Lambert term with the light at the camera: |n . view direction|, with face normals.
    tri = v[f]
    n = torch.nn.functional.normalize(torch.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0], dim=1), dim=1)
    pos = (tri[face_ids] * bary[..., None]).sum(-2)
    view = torch.nn.functional.normalize(pos, dim=-1)
    lambert = (n[face_ids] * view).sum(-1).abs()
    shade = ambient + (1.0 - ambient) * lambert
    rgb = (col * shade[..., None]).clamp(0, 1)
    bg = (
        torch.ones(h, w, 3, device=device)
        if background is None
        else torch.as_tensor(background, device=device).float() / 255.0
    )
    out = torch.where(hit[..., None], rgb, bg)
    return (out * 255.0 + 0.5).clamp(0, 255).to(torch.uint8).cpu().numpy()


def _rasterize_tiled(
    v: torch.Tensor,
    f: torch.Tensor,
    fx: float,
    fy: float,
    cx: float,
    cy: float,
    h: int,
    w: int,
    tile: int = 64,
) -> tuple[torch.Tensor, torch.Tensor]:
    """PyTorch3D rasterisation, one tile at a time: (H, W) face ids (-1 = none) and (H, W, 3) barycentrics.

    PyTorch3D's CPU rasteriser is naive, O(pixels x faces) (coarse binning is GPU-only), so a 27k-face
    mesh at 384 px takes minutes. Rasterising each tile with only the faces whose projected bounding
    box overlaps it, through a camera whose principal point is shifted to the tile, gives the same
    result at a fraction of the cost.
    """
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection

    dev = v.device
    z = v[:, 2].clamp(min=1e-6)
    uv = torch.stack([fx * v[:, 0] / z + cx, fy * v[:, 1] / z + cy], dim=1)
    tri_uv = uv[f]  # (F, 3, 2)
    lo, hi = tri_uv.min(1).values, tri_uv.max(1).values
    front = (v[f][:, :, 2] > 1e-6).all(1)
    p2f = torch.full((h, w), -1, dtype=torch.long, device=dev)
    bary = torch.zeros(h, w, 3, device=dev)
    for y0 in range(0, h, tile):
        for x0 in range(0, w, tile):
            th, tw = min(tile, h - y0), min(tile, w - x0)
            sel = front & (hi[:, 0] >= x0) & (lo[:, 0] <= x0 + tw) & (hi[:, 1] >= y0) & (lo[:, 1] <= y0 + th)
            ids = torch.nonzero(sel).squeeze(1)
            if ids.numel() == 0:
                continue
            k = torch.tensor([[fx, 0.0, cx - x0], [0.0, fy, cy - y0], [0.0, 0.0, 1.0]], device=dev)[None]
            cams = cameras_from_opencv_projection(
                torch.eye(3, device=dev)[None],
                torch.zeros(1, 3, device=dev),
                k,
                torch.tensor([[th, tw]], device=dev),
            )
            settings = RasterizationSettings(image_size=(th, tw), faces_per_pixel=1, bin_size=0)
            frags = MeshRasterizer(cameras=cams, raster_settings=settings)(Meshes(verts=[v], faces=[f[ids]]))
            local = frags.pix_to_face[0, ..., 0]
            p2f[y0 : y0 + th, x0 : x0 + tw] = torch.where(local >= 0, ids[local.clamp(min=0)], -1)
            bary[y0 : y0 + th, x0 : x0 + tw] = frags.bary_coords[0, ..., 0, :]
    return p2f, bary
