"""The photo's own pinhole camera (:func:`neuralfit.init.photo_intrinsics`), checked early.

Focal length, in order: the user's (``--focal PX``, ``--fov DEG`` horizontal, or a full ``K``), the
photo's EXIF, else the default rule (focal = image diagonal). The principal point is the photo centre
unless ``K`` gives one. :func:`neuralfit.render.camera.crop_camera_from_photo` turns it into each crop's
camera, so fitting in crop pixels is fitting in the photo's camera (translations metric in its frame).
"""

from __future__ import annotations

from neuralfit.errors import NeuralfitError


def check_focal_options(focal: float | None, fov: float | None) -> None:
    """One-line errors for impossible ``--focal`` / ``--fov`` before any model is loaded (the same checks
    ``photo_intrinsics`` applies per photo)."""
    from neuralfit.init import photo_intrinsics

    if focal is not None and fov is not None:
        raise NeuralfitError("give --focal or --fov, not both")
    try:
        photo_intrinsics((1, 1), focal=focal, fov=fov)
    except NeuralfitError as exc:
        raise NeuralfitError(f"--{'focal' if focal is not None else 'fov'}: {exc}") from None
