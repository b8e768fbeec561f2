"""The photo fit's occlusion map: which pixels of the fitted body the image says are hidden.

The map lives on a person crop's feature grid (``res / 4``, the network's part-head grid) and is read
from the part head's background probability on the fitted body, on every body cell the full mesh
covers. The head was trained with occluded pixels labelled background, so it does not fill a person in
through an occluder the way mediapipe's segmentation does. Other people's masks where this person's mask
is absent also count as hidden (someone in front). Why the fitter's mask + keypoint map is not used here
when the head is available: docs/occlusion.md (session 15).
"""

from __future__ import annotations

import numpy as np


def cell_faces(vertices: np.ndarray, faces: np.ndarray, focal: float, principal_point: np.ndarray,
               affine: np.ndarray, size: int) -> np.ndarray:
    """(size, size) int: the index of the mesh face nearest the camera at each grid cell's centre, -1 off it.

    Args:
        vertices: (V, 3) in the photo camera (OpenCV axes, z forward, metres).
        faces: (F, 3) vertex indices.
        focal, principal_point: the photo camera (pixels).
        affine: (2, 3) photo -> grid pixel transform (``Crop.affine(size)``).
        size: grid side in cells.
    """
    from neuralfit.render.zbuffer import rasterize

    v = np.asarray(vertices, np.float64)
    z = v[:, 2]
    uv = float(focal) * v[:, :2] / np.maximum(z, 1e-6)[:, None] + np.asarray(principal_point, np.float64)
    a = np.asarray(affine, np.float64)
    # The grid's cell i spans [i, i + 1): its centre is i + 0.5, where the rasteriser samples pixel i.
    grid = uv @ a[:, :2].T + a[:, 2] - 0.5
    return rasterize(grid, z, faces, size, size).face.reshape(size, size)


def body_cells(vertices: np.ndarray, faces: np.ndarray, focal: float, principal_point: np.ndarray,
               affine: np.ndarray, size: int) -> np.ndarray:
    """(size, size) bool: the grid cells whose centre the mesh covers (arguments of :func:`cell_faces`)."""
    return cell_faces(vertices, faces, focal, principal_point, affine, size) >= 0


def smooth_on(values: np.ndarray, where: np.ndarray, k: int) -> np.ndarray:
    """(H, W) the mean of ``values`` over each cell's ``k x k`` neighbourhood, counting only ``where`` cells
    (cells outside ``where`` keep their value). k <= 1: unchanged."""
    import cv2

    if k <= 1:
        return np.asarray(values, np.float32)
    w = np.asarray(where, np.float32)
    x = np.asarray(values, np.float32)
    num = cv2.boxFilter(x * w, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    den = cv2.boxFilter(w, -1, (k, k), normalize=False, borderType=cv2.BORDER_CONSTANT)
    return np.where((w > 0) & (den > 0), num / np.maximum(den, 1e-6), x)


def occlusion_from_parts(background: np.ndarray, body: np.ndarray, value_range: tuple[float, float],
                         smooth: int = 1, mask: np.ndarray | None = None,
                         others: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float32 occlusion probability of each body cell (0 off the body).

    ``clip((S(b) - lo) / (hi - lo), 0, 1)`` with ``b`` the part head's P(background), ``S`` its mean over
    the ``smooth x smooth`` body cells around each cell (1: the cell alone), ``(lo, hi) = value_range``.
    Where another person's mask ``others`` covers the body and this person's ``mask`` does not, the cell is
    hidden by that person: noisy-or with ``others * (1 - mask)``.

    Args:
        background: (H, W) the part head's background probability on the crop's grid.
        body: (H, W) bool, the cells the fitted body covers (:func:`body_cells`).
        value_range: (lo, hi), 0 <= lo < hi <= 1.
        smooth: neighbourhood side in cells (1 = off, the default photo setting).
        mask: (H, W) this person's mask probability, or None; others: (H, W) the other people's masks
            (max) on the same grid, or None.
    """
    lo, hi = value_range
    body = np.asarray(body, bool)
    occ = np.clip((smooth_on(background, body, smooth) - lo) / (hi - lo), 0.0, 1.0)
    if others is not None:
        seen = np.zeros_like(occ) if mask is None else np.asarray(mask, np.float32)
        occ = 1.0 - (1.0 - occ) * (1.0 - np.asarray(others, np.float32) * (1.0 - seen))
    return np.where(body, occ, 0.0).astype(np.float32)


def extend(values: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(H, W) ``values`` with every cell outside ``where`` set to the nearest ``where`` cell's value."""
    from scipy.ndimage import distance_transform_edt

    where = np.asarray(where, bool)
    if not where.any() or where.all():
        return np.asarray(values, np.float32)
    iy, ix = distance_transform_edt(~where, return_distances=False, return_indices=True)
    return np.asarray(values, np.float32)[iy, ix]


def dilate(where: np.ndarray, cells: int = 1) -> np.ndarray:
    """(H, W) float32 ``where`` grown by ``cells`` cells (3 x 3 steps)."""
    import cv2

    return cv2.dilate(np.asarray(where, np.uint8), np.ones((3, 3), np.uint8), iterations=cells).astype(np.float32)
