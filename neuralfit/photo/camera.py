"""The photo's own pinhole camera, and how each person's crop sees it.

Focal length, in order: the user's (``--focal PX``, ``--fov DEG`` or a full ``K``), the photo's EXIF,
else the default rule (focal = image diagonal). The principal point is the photo centre unless ``K``
gives one. :func:`neuralfit.render.camera.crop_camera_from_photo` turns it into each crop's camera, so
fitting in crop pixels is fitting in the photo's camera (translations metric in the photo's frame).
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from neuralfit.errors import NeuralfitError


def photo_camera(image_hw: tuple[int, int], path: str | os.PathLike | None = None, focal: float | None = None,
                 fov: float | None = None, K: Any = None):
    """The photo's intrinsics (``focal``, ``principal_point``, ``source``, ``warnings``).

    See :func:`neuralfit.init.photo_intrinsics` (the sources and their checks)."""
    try:
        from neuralfit.init import photo_intrinsics
    except ImportError:  # until neuralfit.init ships it: user focal / fov, else the diagonal, no EXIF
        return _user_or_diagonal(image_hw, focal, fov, K)
    return photo_intrinsics(image_hw, path=path, focal=focal, fov=fov, K=K)


@dataclass
class _Intrinsics:
    focal: float
    principal_point: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)


def _user_or_diagonal(image_hw, focal, fov, K) -> _Intrinsics:
    h, w = image_hw
    pp = np.array([w / 2.0, h / 2.0])
    if K is not None:
        K = np.asarray(K, dtype=np.float64)
        return _Intrinsics(float(K[0, 0]), K[:2, 2].copy(), "user K")
    check_focal_options(focal, fov)
    if focal is not None:
        return _Intrinsics(float(focal), pp, "user focal")
    if fov is not None:
        return _Intrinsics(0.5 * max(h, w) / math.tan(math.radians(fov) / 2.0), pp, "user fov")
    return _Intrinsics(float(math.hypot(h, w)), pp, "default rule: diagonal")


def check_focal_options(focal: float | None, fov: float | None) -> None:
    """One-line errors for impossible ``--focal`` / ``--fov`` before any model is loaded."""
    if focal is not None and fov is not None:
        raise NeuralfitError("give --focal or --fov, not both")
    if focal is not None and not (np.isfinite(focal) and focal > 0):
        raise NeuralfitError(f"--focal must be a positive number of pixels, got {focal}")
    if fov is not None and not (np.isfinite(fov) and 1.0 <= fov <= 170.0):
        raise NeuralfitError(f"--fov must be a field of view in degrees between 1 and 170, got {fov}")
