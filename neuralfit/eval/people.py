"""Several people per photo with a one-person detector, and the same people across calibrated views.

mediapipe's BlazePose finds one person per call. :func:`find_people` finds more by greying out each
found person (its segmentation mask) and searching again, then searching overlapping crops;
:func:`associate` matches detections across views by triangulation (on left/right-symmetric midpoints,
so a view whose sides are swapped still matches) and :func:`fix_side_swaps` undoes mediapipe's
left/right swaps against the other views. Used by the real-photo benchmarks (docs/real_benchmark.md).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass, replace

import cv2
import numpy as np

from neuralfit.detect import Detection
from neuralfit.eval.multiview import Camera, flip_blazepose, triangulate

#: BlazePose index pairs whose midpoints do not change when mediapipe swaps sides.
_SYMMETRIC_PAIRS: tuple[tuple[int, int], ...] = ((11, 12), (23, 24), (25, 26), (27, 28), (13, 14), (2, 5))
_TORSO = (11, 12, 23, 24)


def _shift(d: Detection, x0: int, y0: int, hw: tuple[int, int]) -> Detection:
    """A detection made on a crop at (x0, y0), moved back to the full image of size ``hw``."""
    kp = d.keypoints.copy()
    kp[:, 0] += x0
    kp[:, 1] += y0
    mask = None
    if d.mask is not None:
        mask = np.zeros(hw, np.float32)
        h, w = d.mask.shape
        mask[y0:y0 + h, x0:x0 + w] = d.mask
    return replace(d, keypoints=kp, bbox=d.bbox + np.array([x0, y0, x0, y0], np.float32), mask=mask)


def torso_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean 2D distance between the torso keypoints (shoulders, hips) of two (33, 3) keypoint arrays,
    side-agnostic (the smaller of as-is and left/right swapped)."""
    t = list(_TORSO)
    direct = np.linalg.norm(a[t, :2] - b[t, :2], axis=1).mean()
    swapped = np.linalg.norm(a[t, :2] - flip_blazepose(b)[t, :2], axis=1).mean()
    return float(min(direct, swapped))


def _size(d: Detection) -> float:
    return float(max(d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1], 1.0))


def _is_duplicate(d: Detection, found: list[Detection]) -> bool:
    return any(torso_distance(d.keypoints, f.keypoints) < 0.1 * min(_size(d), _size(f)) for f in found)


def find_people(detector: Callable[[np.ndarray], Detection | None], image: np.ndarray,
                max_people: int = 3, grey: int = 127, dilate: int = 25) -> list[Detection]:
    """Up to ``max_people`` people in an RGB image, by masking found people and searching crops.

    Args:
        detector: e.g. :class:`neuralfit.detect.PersonDetector` (segmentation on).
        image: (H, W, 3) uint8 RGB.
        grey: the value found people are painted with before the next search.
        dilate: pixels the person mask is grown by before painting (its border is soft).

    Returns:
        Detections in full-image pixels (order found); duplicates (same torso) are dropped.
    """
    h, w = image.shape[:2]
    found: list[Detection] = []
    kernel = np.ones((dilate, dilate), np.uint8)

    def painted(src: np.ndarray) -> np.ndarray:
        out = src.copy()
        for f in found:
            if f.mask is not None:
                m = cv2.dilate((f.mask > 0.3).astype(np.uint8), kernel) > 0
                out[m] = grey
        return out

    # Overlapping crops catch people the full-frame pass misses (small, or next to a bigger one).
    regions = [(0, 0, w, h)]
    for fx0, fx1 in ((0.0, 0.6), (0.4, 1.0)):
        regions.append((int(fx0 * w), 0, int(fx1 * w), h))
    for fy0, fy1 in ((0.0, 0.6), (0.4, 1.0)):
        regions.append((0, int(fy0 * h), w, int(fy1 * h)))
    for x0, y0, x1, y1 in regions:
        misses = 0
        while len(found) < max_people and misses < 1:
            crop = np.ascontiguousarray(painted(image)[y0:y1, x0:x1])
            d = detector(crop)
            if d is None:
                break
            d = _shift(d, x0, y0, (h, w))
            if _is_duplicate(d, found):
                misses += 1
                continue
            found.append(d)
        if len(found) >= max_people:
            break
    return found


def _midpoints(kp: np.ndarray) -> np.ndarray:
    """(len(_SYMMETRIC_PAIRS), 3) midpoints x, y and the smaller confidence of each pair."""
    a = kp[[p[0] for p in _SYMMETRIC_PAIRS]]
    b = kp[[p[1] for p in _SYMMETRIC_PAIRS]]
    return np.concatenate([(a[:, :2] + b[:, :2]) / 2, np.minimum(a[:, 2:], b[:, 2:])], axis=1)


@dataclass
class Track:
    """One person across views: ``detections[v]`` is that view's detection or None; ``cost`` is the
    median reprojection error (pixels) of the symmetric midpoints that matched them."""

    detections: list[Detection | None]
    cost: float


def associate(cams: list[Camera], detections: list[list[Detection]], max_people: int = 2,
              min_views: int = 3, max_cost: float = 40.0, missing_penalty: float = 15.0) -> list[Track]:
    """Match detections across views, greedily taking the most consistent person first.

    Every choice of one detection (or none) per view with at least ``min_views`` views is triangulated
    on side-agnostic midpoints; its cost is their median reprojection error plus ``missing_penalty``
    per missing view. Tracks costing more than ``max_cost`` pixels are not people seen by the rig.
    """
    V = len(cams)
    if len(detections) != V:
        raise ValueError(f"{len(detections)} views of detections for {len(cams)} cameras")
    taken: list[set[int]] = [set() for _ in range(V)]
    tracks: list[Track] = []
    for _ in range(max_people):
        best: tuple[float, tuple[int, ...]] | None = None
        choices = [[-1] + [i for i in range(len(detections[v])) if i not in taken[v]] for v in range(V)]
        for combo in itertools.product(*choices):
            n = sum(c >= 0 for c in combo)
            if n < min_views:
                continue
            kp = np.zeros((V, len(_SYMMETRIC_PAIRS), 3))
            for v, c in enumerate(combo):
                if c >= 0:
                    kp[v] = _midpoints(detections[v][c].keypoints)
            tri = triangulate(cams, kp, min_conf=0.3, max_reproj=1e9)
            err = tri.reproj[tri.used]
            if err.size < 2 * len(_SYMMETRIC_PAIRS):
                continue
            cost = float(np.median(err)) + missing_penalty * (V - n)
            if best is None or cost < best[0]:
                best = (cost, combo)
        if best is None or best[0] > max_cost:
            break
        for v, c in enumerate(best[1]):
            if c >= 0:
                taken[v].add(c)
        tracks.append(Track([detections[v][c] if c >= 0 else None for v, c in enumerate(best[1])], best[0]))
    return tracks


def track_keypoints(track: Track) -> np.ndarray:
    """(V, 33, 3) keypoints of a track; zeros (confidence 0) where a view has no detection."""
    return np.stack([d.keypoints if d is not None else np.zeros((33, 3), np.float32) for d in track.detections])


def fix_side_swaps(cams: list[Camera], keypoints: np.ndarray, margin: float = 0.7) -> tuple[np.ndarray, list[int]]:
    """Undo mediapipe's left/right swaps: a view is flipped when, against the point triangulated from
    the other views, its swapped keypoints reproject with under ``margin`` x the error of the originals.

    Args:
        keypoints: (V, 33, 3) one person's keypoints.

    Returns:
        The corrected keypoints and the views that were flipped.
    """
    kp = keypoints.copy()
    flipped = []
    for v in range(len(cams)):
        if kp[v, :, 2].max() <= 0:
            continue
        others = kp.copy()
        others[v, :, 2] = 0.0
        tri = triangulate(cams, others)
        ok = np.all(np.isfinite(tri.points), axis=1) & (kp[v, :, 2] >= 0.3)
        if ok.sum() < 6:
            continue
        proj = cams[v].project(tri.points[ok])
        e_as_is = np.linalg.norm(proj - kp[v, ok, :2], axis=1).mean()
        swapped = flip_blazepose(kp[v])
        ok_s = np.all(np.isfinite(tri.points), axis=1) & (swapped[:, 2] >= 0.3)
        e_sw = np.linalg.norm(cams[v].project(tri.points[ok_s]) - swapped[ok_s, :2], axis=1).mean()
        if e_sw < margin * e_as_is:
            kp[v] = swapped
            flipped.append(v)
    return kp, flipped
