"""Which way a fitted person faces, checked against the part head's left/right parts.

mediapipe sometimes reads a person seen from behind as seen from the front (or the reverse): its 2D
keypoints then carry swapped left/right labels and its 3D landmarks the mirrored depth, and the fit follows
both. The silhouette is nearly the same either way, but the parts are not: the fitted body's left arm lands
where the person's right arm is. The part head (trained on renders with true left/right labels) gives a
second opinion. ``lr_evidence`` compares the log-probability it gives the rendered parts with the one it
gives the same cells with left and right exchanged; clearly negative means the head reads the other
facing, and the photo path then refits that person from left/right-swapped observations
(``ImageFitter._recheck_facing``, with ``photo.steps.facing_evidence`` and ``swap_sides``). Measured on the real benchmark's frames: docs/fit.md (session 16).
"""

from __future__ import annotations

import numpy as np


def mirror_classes() -> np.ndarray:
    """(25,) int: the part class with left and right exchanged (0 = background and the central parts map to
    themselves; the same table the training flips use, ``data.crop.PART_CLASS_FLIP``)."""
    from neuralfit.data.crop import PART_CLASS_FLIP

    return PART_CLASS_FLIP.copy()


def rendered_parts(vertices: np.ndarray, faces: np.ndarray, face_class: np.ndarray, focal: float,
                   principal_point: np.ndarray, affine: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int: the part class (1 + part id) of the mesh at each grid cell's centre, 0 off the body.

    Args:
        vertices: (V, 3) in the photo camera (metres); faces: (F, 3); face_class: (F,) part class per face.
        focal, principal_point, affine, size: as :func:`neuralfit.photo.occlusion.body_cells`.
    """
    from neuralfit.photo.occlusion import cell_faces

    face = cell_faces(vertices, faces, focal, principal_point, affine, size)
    return np.where(face >= 0, np.asarray(face_class)[np.maximum(face, 0)], 0)


def lr_evidence(part_probs: np.ndarray, classes: np.ndarray, floor: float = 1e-4) -> float:
    """Mean over the body's cells of ``log P(rendered part) - log P(its left/right mirror)``; 0 without body.

    Positive: the part head agrees with the fitted body's left and right; negative: it reads them swapped.
    Central parts (spine, head) add 0. ``floor`` bounds the log of near-zero probabilities.

    Args:
        part_probs: (25, H, W) the part head's softmax on the crop's grid.
        classes: (H, W) int rendered part classes (:func:`rendered_parts`).
    """
    classes = np.asarray(classes)
    body = classes > 0
    if not body.any():
        return 0.0
    logp = np.log(np.clip(np.asarray(part_probs, np.float32), floor, 1.0))
    own = np.take_along_axis(logp, classes[None], 0)[0]
    swapped = np.take_along_axis(logp, mirror_classes()[classes][None], 0)[0]
    return float((own - swapped)[body].mean())
