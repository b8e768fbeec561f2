"""People in a photo: detection (mediapipe or the user's keypoints), boxes, SPIN crops and masks."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuralfit.errors import NeuralfitError

#: Keypoints at or above this confidence count for a person's box and for "enough keypoints" (4).
BOX_CONFIDENCE = 0.3


@dataclass
class Person:
    """One person to fit (photo pixels).

    Attributes:
        image_index: which photo of the chunk.
        bbox: (4,) x0, y0, x1, y1.
        keypoints: (J, 3) ``(x, y, confidence)`` of ``joint_set``, or None (a user box without detections).
        mask: (H, W) person probability over the photo (mediapipe), or None.
        world_landmarks: (33, 4) mediapipe's metric 3D landmarks + confidence, or None.
    """

    image_index: int
    bbox: np.ndarray
    keypoints: np.ndarray | None
    joint_set: str | None
    mask: np.ndarray | None = None
    world_landmarks: np.ndarray | None = None


@dataclass(frozen=True)
class Crop:
    """A SPIN-style square crop: ``center`` (2,) photo pixels, ``scale`` = side / 200, ``res`` pixels."""

    center: np.ndarray
    scale: float
    res: int

    def affine(self, size: int | None = None) -> np.ndarray:
        """(2, 3) photo -> crop (or a ``size`` map over the crop) pixel transform."""
        from neuralfit.data.crop import crop_transform

        return crop_transform(self.center, self.scale, self.res if size is None else size)

    def to_crop(self, points: np.ndarray) -> np.ndarray:
        from neuralfit.data.crop import apply_affine

        return apply_affine(self.affine(), points)


def parse_bbox(text: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> (4,) float32; one-line error otherwise."""
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[2] <= vals[0] or vals[3] <= vals[1]:
        raise NeuralfitError(f"--bbox {text!r} is not a box; expected x0,y0,x1,y1 in pixels with x1 > x0, y1 > y0")
    return np.asarray(vals, dtype=np.float32)


def box_in_photo(box: np.ndarray, image_hw: tuple[int, int]) -> bool:
    """Whether the box ``x0, y0, x1, y1`` overlaps the (h, w) photo at all."""
    h, w = image_hw
    return bool(box[0] < w and box[1] < h and box[2] > 0 and box[3] > 0)


def crop_from_box(bbox: np.ndarray, padding: float = 1.2) -> tuple[np.ndarray, float]:
    """SPIN-style crop of a box: ``center`` (2,) and ``scale`` = padding * longer side / 200."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    return center, padding * max(x1 - x0, y1 - y0, 1.0) / 200.0


def box_from_keypoints(kp: np.ndarray, image_hw: tuple[int, int], min_conf: float) -> np.ndarray | None:
    pts = kp[kp[:, 2] >= min_conf, :2]
    if len(pts) < 2:
        return None
    h, w = image_hw
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = 0.1 * max(x1 - x0, y1 - y0)  # joint centres -> outline (head top, hands, feet)
    return np.array([max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)], dtype=np.float32)


def detect_in_box(detector, image: np.ndarray, bbox: np.ndarray):
    """Run the detector on a padded region around a user box; keypoints back in photo pixels."""
    h, w = image.shape[:2]
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    x0, y0 = int(max(bbox[0] - 0.1 * bw, 0)), int(max(bbox[1] - 0.1 * bh, 0))
    x1, y1 = int(min(bbox[2] + 0.1 * bw, w)), int(min(bbox[3] + 0.1 * bh, h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    det = detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
    if det is None:
        return None
    det.keypoints[:, 0] += x0
    det.keypoints[:, 1] += y0
    if det.mask is not None:
        full = np.zeros((h, w), np.float32)
        full[y0:y1, x0:x1] = det.mask
        det.mask = full
    return det


def find_people(get_detector: Callable, pic: np.ndarray, keypoints: list | None, box: np.ndarray | None,
                image_index: int, box_alone_ok: bool) -> list[Person]:
    """People of one photo: from the user's keypoints, else mediapipe (inside the user box if given).

    ``box_alone_ok``: a user box where mediapipe finds nobody still gives a person (a network can supply
    the keypoints).
    """
    h, w = pic.shape[:2]
    if keypoints is not None:
        found = []
        for pk in keypoints:
            k = np.asarray(pk.keypoints, dtype=np.float32)
            pbox = box if box is not None else box_from_keypoints(k, (h, w), BOX_CONFIDENCE)
            if pbox is not None and (k[:, 2] >= BOX_CONFIDENCE).sum() >= 4:
                found.append(Person(image_index, np.asarray(pbox, np.float32), k, pk.joint_set))
        return found
    det = get_detector()
    d = detect_in_box(det, pic, box) if box is not None else det(pic)
    if d is None:
        if box is not None and box_alone_ok:
            return [Person(image_index, np.asarray(box, np.float32), None, None)]
        return []
    return [Person(image_index, np.asarray(box if box is not None else d.bbox, np.float32),
                   d.keypoints.astype(np.float32), "blazepose33", mask=d.mask,
                   world_landmarks=getattr(d, "world_landmarks", None))]


def crop_mask(mask: np.ndarray, aff: np.ndarray, res: int, size: int) -> np.ndarray:
    """A photo's (H, W) person probability -> (size, size) over the crop ``aff`` (the feature map's grid).

    Outside the photo the probability is 0.5 (unknown), not 0: the crop's padding says nothing."""
    import cv2

    from neuralfit.data.crop import warp

    inside = warp(np.ones(mask.shape, np.float32), aff, res)
    m = warp(mask.astype(np.float32), aff, res) + 0.5 * (1.0 - inside)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
