"""Everyone in a photo with a one-person detector (mediapipe BlazePose finds one person per call).

:func:`find_everyone` calls the detector on the photo, then on the photo with each person found so far
painted grey (their segmentation mask, dilated), then on overlapping crops (left/right and top/bottom
60 %), which catch people the full-frame pass misses (small, or next to a bigger one). A new detection
is the same person again (and dropped) when its torso lies on a found torso, its box nearly equals a
found box, or most of its mask lies on found people: a non-maximum suppression over people, with the
masks as the overlap measure (boxes of a person in front of another overlap a lot; their masks do not).

The people come back ordered by box area, largest first; ``max_people=1`` is exactly one detector call on
the whole photo (the single-person result). Used by ``neuralfit fit`` (``--max-people``) and by the
real-photo benchmarks, so they measure what ships.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import cv2
import numpy as np

from neuralfit.detect.mediapipe_pose import Detection, flip_blazepose

#: BlazePose-33 shoulders and hips.
_TORSO = (11, 12, 23, 24)
#: BlazePose-33 limbs (shoulder-elbow-wrist, hip-knee-ankle-foot) and the neck-to-nose line.
_LIMBS = ((11, 13), (13, 15), (12, 14), (14, 16), (23, 25), (25, 27), (27, 31), (24, 26), (26, 28), (28, 32),
          (11, 0), (12, 0))


def torso_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean 2D distance between the torso keypoints (shoulders, hips) of two (33, 3) keypoint arrays,
    side-agnostic (the smaller of as-is and left/right swapped)."""
    t = list(_TORSO)
    direct = np.linalg.norm(a[t, :2] - b[t, :2], axis=1).mean()
    swapped = np.linalg.norm(a[t, :2] - flip_blazepose(b)[t, :2], axis=1).mean()
    return float(min(direct, swapped))


def box_iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two (4,) ``x0, y0, x1, y1`` boxes."""
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def box_size(d: Detection) -> float:
    """The longer side of a detection's box (pixels, at least 1)."""
    return float(max(d.bbox[2] - d.bbox[0], d.bbox[3] - d.bbox[1], 1.0))


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


def is_same_person(d: Detection, found: list[Detection], taken: np.ndarray | None,
                   max_mask_overlap: float = 0.5, max_box_iou: float = 0.8) -> bool:
    """Whether ``d`` is someone in ``found`` again: torso within 10 % of the box size of a found torso,
    box IoU above ``max_box_iou``, or more than ``max_mask_overlap`` of its mask on ``taken`` (the found
    people's dilated masks, (H, W) bool, or None)."""
    for f in found:
        if torso_distance(d.keypoints, f.keypoints) < 0.1 * min(box_size(d), box_size(f)):
            return True
        if box_iou(d.bbox, f.bbox) > max_box_iou:
            return True
    if taken is not None and d.mask is not None:
        own = d.mask > 0.5
        n = int(own.sum())
        if n and float((own & taken).sum()) / n > max_mask_overlap:
            return True
    return False


def body_region(d: Detection, hw: tuple[int, int], min_conf: float = 0.3) -> np.ndarray:
    """(H, W) bool: the found person's mask where it lies near their own skeleton.

    mediapipe's segmentation covers every person in its region of interest, so the mask of someone in
    front often holds the head or arm of whoever stands behind; painting all of it would hide that person
    from the next search. The skeleton (torso polygon, limbs and head drawn with widths set by the torso
    size) keeps the paint on the person the keypoints describe.
    """
    h, w = hw
    kp = d.keypoints
    ok = kp[:, 2] >= min_conf
    torso = kp[list(_TORSO), :2]
    size = float(np.linalg.norm(torso[:2].mean(0) - torso[2:].mean(0))) if ok[list(_TORSO)].all() else \
        0.3 * box_size(d)
    region = np.zeros((h, w), np.uint8)
    if ok[list(_TORSO)].all():
        cv2.fillConvexPoly(region, np.round(torso[[0, 1, 3, 2]]).astype(np.int32), 1)
    for a, b in _LIMBS:
        if ok[a] and ok[b]:
            cv2.line(region, tuple(int(v) for v in np.round(kp[a, :2])), tuple(int(v) for v in np.round(kp[b, :2])),
                     1, thickness=max(int(0.45 * size), 3))
    if ok[0]:
        cv2.circle(region, tuple(int(v) for v in np.round(kp[0, :2])), max(int(0.35 * size), 3), 1, -1)
    region = cv2.dilate(region, np.ones((3, 3), np.uint8), iterations=max(int(0.1 * size), 1))
    if d.mask is None:
        return region > 0
    return (region > 0) & (d.mask > 0.3)


def paint_out(image: np.ndarray, people: list[Detection], grey: int = 127, dilate: int = 25) -> np.ndarray:
    """A copy of ``image`` with each detection's :func:`body_region` (dilated by ``dilate`` pixels: the
    mask's border is soft) painted ``grey``: the one way people are hidden before searching again."""
    out = image.copy()
    for d in people:
        out[painted_region(d, image.shape[:2], dilate)] = grey
    return out


def painted_region(d: Detection, hw: tuple[int, int], dilate: int = 25) -> np.ndarray:
    """(H, W) bool: what :func:`paint_out` paints for ``d``."""
    return cv2.dilate(body_region(d, hw).astype(np.uint8), np.ones((dilate, dilate), np.uint8)) > 0


def find_everyone(detector: Callable[[np.ndarray], Detection | None], image: np.ndarray, max_people: int = 4,
                  grey: int = 127, dilate: int = 25) -> list[Detection]:
    """Up to ``max_people`` people in an RGB photo (module docstring), largest box first.

    Args:
        detector: e.g. :class:`neuralfit.detect.PersonDetector` (segmentation on: the masks do the painting).
        image: (H, W, 3) uint8 RGB.
        max_people: at most this many; 1 = one detector call on the whole photo.
        grey: the value found people are painted with before the next search.
        dilate: pixels the person mask is grown by before painting (its border is soft).

    Returns:
        Detections in photo pixels, ordered by box area (largest first).
    """
    if max_people < 1:
        return []
    h, w = image.shape[:2]
    found: list[Detection] = []
    taken = np.zeros((h, w), bool)
    painted = image

    regions = [(0, 0, w, h)]
    if max_people > 1:
        for fx0, fx1 in ((0.0, 0.6), (0.4, 1.0)):
            regions.append((int(fx0 * w), 0, int(fx1 * w), h))
        for fy0, fy1 in ((0.0, 0.6), (0.4, 1.0)):
            regions.append((0, int(fy0 * h), w, int(fy1 * h)))
    for x0, y0, x1, y1 in regions:
        while len(found) < max_people:
            d = detector(np.ascontiguousarray(painted[y0:y1, x0:x1]))
            if d is None:
                break
            if (x0, y0, x1, y1) != (0, 0, w, h):
                d = _shift(d, x0, y0, (h, w))
            if is_same_person(d, found, taken if found else None):
                break  # the region shows nobody new: move on
            found.append(d)
            if len(found) < max_people:
                grown = painted_region(d, (h, w), dilate)
                taken |= grown
                painted = painted.copy()
                painted[grown] = grey
        if len(found) >= max_people:
            break
    return sorted(found, key=lambda d: -float((d.bbox[2] - d.bbox[0]) * (d.bbox[3] - d.bbox[1])))
