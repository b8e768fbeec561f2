"""A photo's pinhole intrinsics: from the user (K, focal, field of view), the file's EXIF, or a default rule.

Order: ``K`` > ``focal`` > ``fov`` > EXIF > default. A value the user gives that cannot be a camera raises
:class:`NeuralfitError`; EXIF that cannot be right (zero focal, missing sensor size, an absurd field of
view) only falls back to the default with a warning, since cameras and editors write such tags.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError

#: Diagonal of a 36 x 24 mm frame: "35 mm-equivalent" focal lengths refer to it (CIPA DC-008).
FULL_FRAME_DIAGONAL_MM = math.hypot(36.0, 24.0)  # 43.27

#: EXIF tags (Exif IFD): FocalLength, FocalLengthIn35mmFilm, FocalPlaneXResolution, FocalPlaneResolutionUnit,
#: PixelXDimension, PixelYDimension.
_FOCAL, _FOCAL35, _FPX, _FPUNIT, _PIXX, _PIXY = 0x920A, 0xA405, 0xA20E, 0xA210, 0xA002, 0xA003
_EXIF_IFD = 0x8769
#: FocalPlaneResolutionUnit -> millimetres per unit (2 inch, 3 cm; 4 mm and 5 um are written by some cameras).
_UNIT_MM = {2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}

#: 35 mm-equivalent focal lengths outside this range (mm) are treated as a lying EXIF: 8 mm is a fisheye,
#: 1200 mm a long super-telephoto; a person photo is neither.
PLAUSIBLE_FOCAL35_MM = (8.0, 1200.0)


@dataclass
class PhotoIntrinsics:
    """Pinhole camera of a photo in its own pixels (OpenCV axes: x right, y down, z forward).

    Attributes:
        focal: focal length in pixels (square pixels).
        principal_point: (2,) ``c_x, c_y`` pixels; the image centre ``(W/2, H/2)`` unless K gives it.
        source: where ``focal`` came from: ``"K"``, ``"--focal"``, ``"--fov"``, ``"exif:35mm"``,
            ``"exif:focal+sensor"``, ``"default:diagonal"``, ``"default:width"`` or ``"default:<factor>xdiagonal"``.
        warnings: one-line notes on what was ignored and why (lying EXIF, non-square K, ...).
    """

    focal: float
    principal_point: np.ndarray
    source: str
    warnings: list[str] = field(default_factory=list)

    @property
    def K(self) -> np.ndarray:  # noqa: N802 - the usual name of the matrix
        """(3, 3) float64 camera matrix."""
        return np.array([[self.focal, 0.0, self.principal_point[0]], [0.0, self.focal, self.principal_point[1]],
                         [0.0, 0.0, 1.0]])


def _check_hw(image_hw: tuple[int, int]) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in image_hw)
    except (TypeError, ValueError) as e:
        raise NeuralfitError(f"image size {image_hw!r} is not (height, width)") from e
    if h <= 0 or w <= 0:
        raise NeuralfitError(f"image size {image_hw!r} must be positive (height, width) pixels")
    return h, w


def _positive_finite(value: object, what: str) -> float:
    try:
        v = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError) as e:
        raise NeuralfitError(f"{what} {value!r} is not a number") from e
    if not math.isfinite(v) or v <= 0:
        raise NeuralfitError(f"{what} is {value!r}; expected a finite number > 0")
    return v


def default_focal(image_hw: tuple[int, int], rule: str = "diagonal") -> tuple[float, str]:
    """Focal (pixels) and its source label for a photo without calibration or EXIF.

    ``rule``: ``"diagonal"`` (focal = image diagonal, ~53 deg diagonal field of view, the assumption of several
    recent regressors), ``"width"`` (focal = image width, ~53 deg horizontal), or a number ``k`` / ``"k"``
    (focal = k x diagonal) so benchmarks can sweep it.
    """
    h, w = _check_hw(image_hw)
    diag = math.hypot(h, w)
    if rule == "diagonal":
        return diag, "default:diagonal"
    if rule == "width":
        return float(w), "default:width"
    try:
        k = float(rule)
    except (TypeError, ValueError) as e:
        raise NeuralfitError(f"default focal rule {rule!r}; expected 'diagonal', 'width' or a factor of the diagonal") from e
    if not math.isfinite(k) or k <= 0:
        raise NeuralfitError(f"default focal factor {rule!r}; expected a finite number > 0")
    return k * diag, f"default:{k:g}xdiagonal"


def _rational(v: object) -> float | None:
    """EXIF rationals arrive as Pillow IFDRational, tuples (num, den) or numbers; None if unusable."""
    try:
        if isinstance(v, tuple) and len(v) == 2:
            return float(v[0]) / float(v[1]) if float(v[1]) != 0 else None
        x = float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return x if math.isfinite(x) else None


def read_exif_focal(path: str | os.PathLike, image_hw: tuple[int, int]) -> tuple[float | None, str, list[str]]:
    """Focal in pixels from a photo's EXIF, with its source label and warnings; (None, "", warnings) if none.

    ``FocalLengthIn35mmFilm`` converts through the full-frame diagonal (43.27 mm), which makes it
    independent of resizing; ``FocalLength`` with ``FocalPlaneXResolution``/``FocalPlaneResolutionUnit`` is
    scaled from the resolution the camera wrote (``PixelXDimension``) to ``image_hw``.
    """
    h, w = _check_hw(image_hw)
    warnings: list[str] = []
    try:
        from PIL import Image

        with Image.open(path) as im:
            exif = im.getexif()
            tags = dict(exif.get_ifd(_EXIF_IFD))
            tags.update({k: v for k, v in exif.items() if k in (_FOCAL, _FOCAL35, _FPX, _FPUNIT)})
    except Exception as e:  # noqa: BLE001 - any unreadable header only means "no EXIF"
        warnings.append(f"EXIF of {Path(path).name} unreadable ({type(e).__name__}); using the default focal")
        return None, "", warnings
    diag = math.hypot(h, w)
    lo, hi = PLAUSIBLE_FOCAL35_MM
    f35 = _rational(tags.get(_FOCAL35))
    if f35 is not None and f35 != 0:
        if lo <= f35 <= hi:
            return f35 / FULL_FRAME_DIAGONAL_MM * diag, "exif:35mm", warnings
        warnings.append(f"EXIF FocalLengthIn35mmFilm = {f35:g} mm is implausible; ignored")
    fmm = _rational(tags.get(_FOCAL))
    if fmm is None:
        return None, "", warnings
    if fmm <= 0:
        warnings.append(f"EXIF FocalLength = {fmm:g} mm; ignored")
        return None, "", warnings
    res, unit = _rational(tags.get(_FPX)), tags.get(_FPUNIT, 2)  # EXIF's default unit is the inch
    try:
        mm_per_unit = _UNIT_MM.get(int(unit))
    except (TypeError, ValueError):
        mm_per_unit = None
    if res is None or res <= 0 or mm_per_unit is None:
        warnings.append(f"EXIF FocalLength = {fmm:g} mm but no usable sensor size (FocalPlaneXResolution); ignored")
        return None, "", warnings
    px_per_mm = res / mm_per_unit
    exif_w = _rational(tags.get(_PIXX))
    scale = w / exif_w if exif_w and exif_w > 0 else 1.0
    focal = fmm * px_per_mm * scale
    f35_equiv = focal / diag * FULL_FRAME_DIAGONAL_MM
    if not (lo <= f35_equiv <= hi):
        warnings.append(f"EXIF FocalLength = {fmm:g} mm with the sensor size gives {f35_equiv:.0f} mm full-frame "
                        "equivalent, implausible; ignored")
        return None, "", warnings
    return focal, "exif:focal+sensor", warnings


def _from_k(k: object, w: int, h: int) -> PhotoIntrinsics:
    try:
        km = np.asarray(k, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise NeuralfitError("K is not a 3x3 numeric matrix") from e
    if km.shape != (3, 3) or not np.isfinite(km).all():
        raise NeuralfitError(f"K has shape {km.shape} or non-finite entries; expected a finite 3x3 matrix")
    if km[2, 2] <= 0 or abs(km[2, 0]) > 1e-9 or abs(km[2, 1]) > 1e-9:
        raise NeuralfitError("K's last row must be [0, 0, k] with k > 0")
    km = km / km[2, 2]
    fx, fy = km[0, 0], km[1, 1]
    if fx <= 0 or fy <= 0 or abs(km[1, 0]) > 1e-9:
        raise NeuralfitError(f"K has focal entries fx={fx:g}, fy={fy:g}; expected both > 0 (upper-triangular K)")
    warnings = []
    if abs(fx - fy) > 0.01 * max(fx, fy):
        warnings.append(f"K has fx={fx:g} != fy={fy:g}; using their mean (square pixels)")
    if abs(km[0, 1]) > 1e-6 * fx:
        warnings.append(f"K has skew {km[0, 1]:g}; ignored")
    pp = np.array([km[0, 2], km[1, 2]])
    if not (0 <= pp[0] <= w and 0 <= pp[1] <= h):
        warnings.append(f"K's principal point {pp.tolist()} lies outside the {w}x{h} image")
    return PhotoIntrinsics(float(0.5 * (fx + fy)), pp, "K", warnings)


def photo_intrinsics(image_hw: tuple[int, int], path: str | os.PathLike | None = None, focal: float | None = None,
                     fov: float | None = None, K: np.ndarray | None = None,  # noqa: N803
                     default: str = "diagonal") -> PhotoIntrinsics:
    """The pinhole intrinsics to fit a photo in.

    Args:
        image_hw: (height, width) pixels of the image as it will be fitted (after EXIF rotation, if any).
        path: the photo file, read for EXIF focal tags only when nothing above EXIF was given.
        focal: pixels (``--focal``); must be finite and > 0.
        fov: *horizontal* field of view in degrees across the image width (``--fov``), in (1, 179):
            ``focal = (W / 2) / tan(fov / 2)``.
        K: (3, 3) camera matrix; gives the principal point too.
        default: rule when nothing else applies, see :func:`default_focal`.

    Returns:
        :class:`PhotoIntrinsics`. Principal point: the image centre unless ``K`` gives one.
    """
    h, w = _check_hw(image_hw)
    centre = np.array([w / 2.0, h / 2.0])
    if K is not None:
        return _from_k(K, w, h)
    if focal is not None:
        return PhotoIntrinsics(_positive_finite(focal, "focal"), centre, "--focal")
    if fov is not None:
        deg = _positive_finite(fov, "field of view")
        if not 1.0 < deg < 179.0:
            raise NeuralfitError(f"field of view is {fov!r} degrees; expected a horizontal FOV in (1, 179)")
        return PhotoIntrinsics(0.5 * w / math.tan(math.radians(deg) / 2.0), centre, "--fov")
    warnings: list[str] = []
    if path is not None:
        if not Path(path).is_file():
            raise NeuralfitError(f"photo {path} not found")
        f_exif, source, warnings = read_exif_focal(path, (h, w))
        if f_exif is not None:
            return PhotoIntrinsics(f_exif, centre, source, warnings)
    f_def, source = default_focal((h, w), default)
    return PhotoIntrinsics(f_def, centre, source, warnings)
