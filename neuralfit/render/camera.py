"""Perspective camera in crop pixels (docs/architecture.md, "Camera").

The camera frame is OpenCV's: x right, y down, z forward (into the scene). A square crop of ``res``
pixels sees the scene through a pinhole with focal ``f = 5000 * res / 224`` pixels and its principal
point at the crop centre::

    u = f * x / z + res / 2,    v = f * y / z + res / 2

Image coordinates are continuous: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)`` and
its centre is ``(j + 0.5, i + 0.5)``. A map of ``size`` pixels covering the same crop (a feature map
at stride ``res / size``) uses the same camera with everything scaled by ``size / res``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError

#: Focal length in pixels of a 224-pixel crop (SPIN / HMR convention).
FOCAL_AT_224 = 5000.0


def default_focal(res: int) -> float:
    """Focal length in pixels for a crop of ``res`` pixels: ``5000 * res / 224``."""
    return FOCAL_AT_224 * float(res) / 224.0


@dataclass(frozen=True)
class CropCamera:
    """Pinhole camera of a square crop.

    Attributes:
        res: crop resolution in pixels (the network input size, e.g. 224).
        focal: focal length in crop pixels; ``None`` means the convention ``5000 * res / 224``.
    """

    res: int
    focal: float | None = None

    def __post_init__(self) -> None:
        if int(self.res) <= 0:
            raise NeuralfitError(f"crop resolution must be a positive integer, got {self.res}")
        if self.focal is not None and not float(self.focal) > 0:
            raise NeuralfitError(f"camera focal must be positive, got {self.focal}")

    @property
    def f(self) -> float:
        """Focal length in crop pixels."""
        return default_focal(self.res) if self.focal is None else float(self.focal)

    def intrinsics(self, size: int | None = None) -> tuple[float, float]:
        """``(focal, principal point)`` in pixels of a map of ``size`` pixels covering the crop.

        The principal point is the same for u and v (square crop, centred).
        """
        size = self.res if size is None else int(size)
        scale = size / float(self.res)
        return self.f * scale, size / 2.0

    def transl_from_weak_perspective(self, cam: torch.Tensor) -> torch.Tensor:
        """Weak-perspective ``[s, tx, ty]`` (B, 3) -> camera translation (B, 3): ``[tx, ty, 2 f / (res s)]``."""
        if cam.ndim != 2 or cam.shape[-1] != 3:
            raise NeuralfitError(f"weak-perspective camera must have shape (B, 3), got {tuple(cam.shape)}")
        s = cam[:, 0].clamp(min=1e-6)
        tz = 2.0 * self.f / (self.res * s)
        return torch.stack([cam[:, 1], cam[:, 2], tz], dim=-1)


def project(points: torch.Tensor, cam: CropCamera, size: int | None = None, eps: float = 1e-6) -> torch.Tensor:
    """Project camera-frame points to pixels.

    Args:
        points: (B, N, 3) points in the camera frame (metres, z forward).
        cam: the crop camera.
        size: pixel size of the target map (default ``cam.res``: crop pixels).
        eps: depths are clamped to at least this, so points behind the camera do not produce inf.

    Returns:
        (B, N, 2) pixel coordinates ``(u, v)`` (u to the right, v down).
    """
    if points.shape[-1] != 3:
        raise NeuralfitError(f"points must have shape (..., 3), got {tuple(points.shape)}")
    f, c = cam.intrinsics(size)
    z = points[..., 2:3].clamp(min=eps)
    return points[..., :2] / z * f + c
