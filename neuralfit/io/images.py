"""Reading photos and writing the pictures of a fit: mesh overlay and occlusion map (atomic PNGs)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path

#: Colour of the body in overlays (a light clay tone that stands out on most photos), RGB in [0, 1].
BODY_RGB = (0.72, 0.78, 0.95)


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read a photo as an (H, W, 3) uint8 RGB array.

    Raises :class:`NeuralfitError` (one line) for a missing, empty, corrupt or non-image file.
    """
    import cv2

    p = Path(path)
    if not p.is_file():
        raise NeuralfitError(f"image {p} does not exist or is not a file")
    if p.stat().st_size == 0:
        raise NeuralfitError(f"image {p} is an empty file; expected a JPEG/PNG photo")
    data = np.fromfile(p, dtype=np.uint8)
    img = cv2.imdecode(data, cv2.IMREAD_COLOR)
    if img is None:
        raise NeuralfitError(f"image {p} cannot be decoded; expected a JPEG/PNG (or other OpenCV-readable) photo")
    if img.shape[0] < 8 or img.shape[1] < 8:
        raise NeuralfitError(f"image {p} is {img.shape[1]}x{img.shape[0]} pixels; expected a photo of a person")
    return np.ascontiguousarray(img[:, :, ::-1])


def check_image_array(image: np.ndarray, name: str = "image") -> np.ndarray:
    """Validate an in-memory (H, W, 3) uint8 RGB image (as :func:`read_image` returns)."""
    a = np.asarray(image)
    if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
        raise NeuralfitError(f"{name} has shape {a.shape} dtype {a.dtype}; expected an (H, W, 3) uint8 RGB image")
    if a.shape[0] < 8 or a.shape[1] < 8:
        raise NeuralfitError(f"{name} is {a.shape[1]}x{a.shape[0]} pixels; expected a photo of a person")
    return np.ascontiguousarray(a)


def save_png(path: str | os.PathLike, image_rgb: np.ndarray) -> None:
    """Write an (H, W, 3) uint8 RGB image (or (H, W) grey) as PNG, atomically."""
    import cv2

    img = np.asarray(image_rgb)
    if img.ndim == 3:
        img = img[:, :, ::-1]
    with atomic_path(path, suffix=".png") as tmp:
        if not cv2.imwrite(str(tmp), np.ascontiguousarray(img)):
            raise NeuralfitError(f"cannot write PNG {path}")


def render_people(
    image: np.ndarray,
    vertices: list[np.ndarray],
    faces: np.ndarray,
    focal: float,
    principal_point: tuple[float, float],
    alpha: float = 0.85,
    supersample: int = 2,
    ambient: float = 0.35,
) -> tuple[np.ndarray, np.ndarray]:
    """Shaded bodies over the photo (a fast preview renderer for overlays).

    Painter's algorithm with back-face culling: front-facing triangles are drawn far to near with
    OpenCV at ``supersample`` x the photo's resolution (sub-pixel vertex positions), Lambert-shaded
    with a light at the camera, then area-downsampled, which anti-aliases the edges. For a closed body
    mesh whose triangles are a few pixels wide this matches a z-buffer render except where triangles
    intersect; it costs ~0.1 s for a 27k-face mesh at 640x480 (benchmarks/fit_photo_speed.py). Unlike
    ``neuralfit.render.shaded`` (one mesh, per-vertex colours, z-buffered) it anti-aliases and blends
    several people over the photo.

    Args:
        image: (H, W, 3) uint8 RGB photo.
        vertices: per person (V, 3) vertices in the photo's camera frame (OpenCV axes, metres).
        faces: (F, 3) triangles of a closed mesh.
        focal, principal_point: the photo's pinhole camera in pixels.
        alpha: opacity of the body over the photo.

    Returns:
        overlay (H, W, 3) uint8 and the body mask (H, W) bool (coverage >= 50 %).
    """
    import cv2

    h, w = image.shape[:2]
    ss = int(supersample)
    shift = 2  # fillConvexPoly fixed-point bits: quarter-pixel vertex precision
    canvas = np.zeros((h * ss, w * ss, 3), np.uint8)
    cover = np.zeros((h * ss, w * ss), np.uint8)
    base = np.asarray(BODY_RGB) * 255.0
    tris_all, shade_all, depth_all = [], [], []
    for v in vertices:
        v = np.asarray(v, dtype=np.float64)
        tri = v[faces]  # (F, 3, 3)
        n = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        # Outward normals: the signed volume of a closed mesh is positive for outward winding.
        sign = 1.0 if np.einsum("ij,ij->i", tri[:, 0], n).sum() >= 0 else -1.0
        n = sign * n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)
        centre = tri.mean(1)
        view = centre / np.maximum(np.linalg.norm(centre, axis=1, keepdims=True), 1e-12)
        ndv = np.einsum("ij,ij->i", n, view)
        keep = (ndv < 0) & (tri[:, :, 2] > 1e-3).all(1)
        z = tri[keep, :, 2:3]
        uv = tri[keep, :, :2] / z * focal + np.asarray(principal_point)
        tris_all.append(np.round(uv * ss * (1 << shift)).astype(np.int32))
        shade_all.append(ambient + (1.0 - ambient) * (-ndv[keep]))
        depth_all.append(centre[keep, 2])
    if tris_all:
        tris = np.concatenate(tris_all)
        shade = np.concatenate(shade_all)
        order = np.argsort(-np.concatenate(depth_all), kind="stable")  # far to near
        colors = np.clip(shade[:, None] * base[None], 0, 255).astype(np.uint8)
        for i in order:
            cv2.fillConvexPoly(canvas, tris[i], colors[i].tolist(), cv2.LINE_8, shift)
            cv2.fillConvexPoly(cover, tris[i], 255, cv2.LINE_8, shift)
    if ss > 1:
        canvas = cv2.resize(canvas, (w, h), interpolation=cv2.INTER_AREA)
        cover = cv2.resize(cover, (w, h), interpolation=cv2.INTER_AREA)
    cov = cover.astype(np.float32)[..., None] / 255.0
    # Edge pixels are partly covered: un-premultiply the body colour, blend by coverage * alpha.
    body = canvas.astype(np.float32) / np.maximum(cov, 1e-6)
    a = alpha * cov
    out = (1 - a) * image.astype(np.float32) + a * body
    return np.clip(out + 0.5, 0, 255).astype(np.uint8), cover >= 128


def occlusion_picture(image: np.ndarray, occlusion: np.ndarray | None, body_mask: np.ndarray) -> np.ndarray:
    """The outlier map over the photo: photo dimmed to grey, body silhouette tinted blue, and the
    posterior probability that a body pixel is occluded (explained by clutter) shown in red.

    Args:
        image: (H, W, 3) uint8 RGB.
        occlusion: (H, W) in [0, 1] (0 off the body), or None (the method has no outlier process).
        body_mask: (H, W) bool, where the fitted body projects.
    """
    grey = image.astype(np.float32).mean(-1, keepdims=True).repeat(3, -1) * 0.6 + 40.0
    out = grey.copy()
    blue = np.array([70.0, 130.0, 255.0])
    out[body_mask] = 0.6 * out[body_mask] + 0.4 * blue
    if occlusion is not None:
        a = np.clip(occlusion, 0.0, 1.0)[..., None] * body_mask[..., None]
        red = np.array([255.0, 30.0, 30.0])
        out = (1 - a) * out + a * red
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)
