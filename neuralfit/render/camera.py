"""Perspective camera in crop pixels (docs/architecture.md, "Camera").

The camera frame is OpenCV's: x right, y down, z forward (into the scene). A square crop of ``res``
pixels sees the scene through a pinhole with focal ``f`` and principal point ``c``::

    u = f * x / z + c_u,    v = f * y / z + c_v

By default (training crops, SPIN's convention) ``f = 5000 * res / 224`` and ``c`` is the crop centre.
A crop cut from a photo with its own camera (focal ``F``, principal point ``p``, photo pixels) sees the
scene through that same camera, resampled: for a SPIN crop (``center``, ``scale``) the crop is the photo
scaled by ``k = res / (200 scale)`` and shifted, so ``f = F k`` and ``c = (p - center) k + res / 2``
(:func:`crop_camera_from_photo`). Fitting in crop pixels with that camera is exactly fitting in the
photo's camera: translations and joints come out metric in the photo's camera frame.

Focal and principal point may be per sample (tensors over the batch), so one batch can hold crops of
different photos and people.

Image coordinates are continuous: pixel ``(row i, column j)`` covers ``[j, j + 1) x [i, i + 1)`` and
its centre is ``(j + 0.5, i + 0.5)``. A map of ``size`` pixels covering the same crop (a feature map
at stride ``res / size``) uses the same camera with everything scaled by ``size / res``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

#: Focal length in pixels of a 224-pixel crop (SPIN / HMR convention).
FOCAL_AT_224 = 5000.0


def default_focal(res: int) -> float:
    """Focal length in pixels for a crop of ``res`` pixels: ``5000 * res / 224``."""
    return FOCAL_AT_224 * float(res) / 224.0


@dataclass(frozen=True, eq=False)
class CropCamera:
    """Pinhole camera of a square crop.

    Attributes:
        res: crop resolution in pixels (the network input size, e.g. 224).
        focal: focal length in crop pixels: a number, a (B,) tensor (one per sample), or ``None`` for the
            convention ``5000 * res / 224``.
        principal_point: (2,) or (B, 2) ``(u, v)`` in crop pixels, or ``None`` for the crop centre.
    """

    res: int
    focal: float | torch.Tensor | None = None
    principal_point: torch.Tensor | tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if int(self.res) <= 0:
            raise NeuralfitError(f"crop resolution must be a positive integer, got {self.res}")
        if self.focal is not None:
            f = torch.as_tensor(self.focal, dtype=torch.float64)
            if f.ndim > 1 or not bool((f > 0).all()) or not bool(torch.isfinite(f).all()):
                raise NeuralfitError(f"camera focal must be positive and finite, got {self.focal}")
        if self.principal_point is not None:
            c = torch.as_tensor(self.principal_point, dtype=torch.float64)
            if c.ndim not in (1, 2) or c.shape[-1] != 2 or not bool(torch.isfinite(c).all()):
                raise NeuralfitError(f"principal point must be finite (2,) or (B, 2), got {tuple(c.shape)}")

    @property
    def f(self) -> float | torch.Tensor:
        """Focal length in crop pixels (a float, or a (B,) tensor for per-sample cameras)."""
        if self.focal is None:
            return default_focal(self.res)
        return self.focal if torch.is_tensor(self.focal) else float(self.focal)

    @property
    def per_sample(self) -> bool:
        """True when focal or principal point vary over the batch."""
        return (torch.is_tensor(self.focal) and self.focal.ndim == 1) or (
            self.principal_point is not None and torch.as_tensor(self.principal_point).ndim == 2)

    def intrinsics(self, size: int | None = None) -> tuple[float | torch.Tensor, float | torch.Tensor]:
        """``(focal, principal point)`` in pixels of a map of ``size`` pixels covering the crop.

        Scalars for the default camera (the principal point then is the same for u and v); with a given
        principal point or per-sample values, tensors shaped to broadcast against (B, N, 2) points:
        focal (B, 1, 1) or (), principal point (B, 1, 2) or (2,).
        """
        size = self.res if size is None else int(size)
        scale = size / float(self.res)
        if not self.per_sample and self.principal_point is None:
            return self.f * scale, size / 2.0
        dev = next((v.device for v in (self.focal, self.principal_point) if torch.is_tensor(v)), None)
        f = torch.as_tensor(self.f, dtype=torch.float32, device=dev)
        f = f.view(-1, 1, 1) if f.ndim == 1 else f
        if self.principal_point is None:
            c = torch.full((2,), size / 2.0, device=dev)
        else:
            c = torch.as_tensor(self.principal_point, dtype=torch.float32, device=dev) * scale
            c = c.view(-1, 1, 2) if c.ndim == 2 else c
        return f * scale, c

    def to(self, device: torch.device | str) -> CropCamera:
        """The same camera with its tensors on ``device``."""
        def move(v):
            return v.to(device) if torch.is_tensor(v) else v

        return CropCamera(self.res, move(self.focal), move(self.principal_point))

    def repeat(self, n: int) -> CropCamera:
        """The camera of a batch repeated ``n`` times (e.g. for a second hypothesis per sample)."""
        def rep(v, dims):
            return v.repeat(n, *([1] * (dims - 1))) if torch.is_tensor(v) and v.ndim == dims else v

        return CropCamera(self.res, rep(self.focal, 1), rep(self.principal_point, 2))

    def transl_from_weak_perspective(self, cam: torch.Tensor) -> torch.Tensor:
        """Weak-perspective ``[s, tx, ty]`` (B, 3) -> camera translation (B, 3): ``[tx, ty, 2 f / (res s)]``."""
        if cam.ndim != 2 or cam.shape[-1] != 3:
            raise NeuralfitError(f"weak-perspective camera must have shape (B, 3), got {tuple(cam.shape)}")
        s = cam[:, 0].clamp(min=1e-6)
        tz = 2.0 * self.f / (self.res * s)  # the principal point does not enter: tx, ty are the offsets
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


def crop_camera_from_photo(focal: float, principal_point, center, scale, res: int) -> tuple[float, np.ndarray]:
    """The photo camera seen in a SPIN crop: ``(focal, principal point)`` in crop pixels.

    Args:
        focal: photo focal in pixels; principal_point: (2,) in photo pixels.
        center: (2,) crop centre in photo pixels; scale: crop side / 200 (SPIN); res: crop pixels.

    The crop resamples the photo by ``k = res / (200 scale)`` around ``center``, so
    ``f = focal k`` and ``c = (principal_point - center) k + res / 2``.
    """
    k = float(res) / (200.0 * float(scale))
    pp = (np.asarray(principal_point, dtype=np.float64) - np.asarray(center, dtype=np.float64)) * k + res / 2.0
    return float(focal) * k, pp
