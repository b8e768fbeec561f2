"""A small shaded renderer for pictures (demos, grids, sensitivity meshes): vertex colours, OpenCV camera.

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
        device: where to shade (rasterisation runs in numpy on the CPU).

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
    p2f, bary = _rasterize(v, f, float(fx), float(fy), float(cx), float(cy), h, w)
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


def _rasterize(
    v: torch.Tensor, f: torch.Tensor, fx: float, fy: float, cx: float, cy: float, h: int, w: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(H, W) face ids (-1 = none) and (H, W, 3) barycentrics, from the numpy z-buffer.

    PyTorch3D's CPU rasteriser is O(pixels x faces) (coarse binning is GPU-only): a 27k-face body at
    384 px took seconds even when tiled. The z-buffer of :mod:`neuralfit.render.zbuffer` does it in tens
    of milliseconds; faces with a vertex behind the camera are dropped, as a near plane would.
    """
    from neuralfit.render.zbuffer import rasterize

    vn = v.detach().cpu().double().numpy()
    fn = f.detach().cpu().numpy()
    front = np.nonzero((vn[fn][:, :, 2] > 1e-6).all(1))[0]
    z = np.maximum(vn[:, 2], 1e-6)
    uv = np.stack([fx * vn[:, 0] / z + cx, fy * vn[:, 1] / z + cy], axis=1)
    r = rasterize(uv, z, fn[front], h, w)
    face = np.where(r.face >= 0, front[np.maximum(r.face, 0)], -1)
    return torch.as_tensor(face, device=v.device).long(), torch.as_tensor(r.bary, device=v.device).float()
