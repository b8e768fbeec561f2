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
        box_given: ``bbox`` is the user's (``--bbox``, a boxes file): the crop keeps to it. Otherwise it
            was found around the seen body, and the crop also spans the guessed, hidden keypoints
            (``photo.steps.crop_people``).
    """

    image_index: int
    bbox: np.ndarray
    keypoints: np.ndarray | None
    joint_set: str | None
    mask: np.ndarray | None = None
    world_landmarks: np.ndarray | None = None
    box_given: bool = False


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


def box_region(bbox: np.ndarray, image_hw: tuple[int, int]) -> tuple[int, int, int, int]:
    """The box padded by 10 % per side, clipped to the photo: where mediapipe looks for the box's person."""
    h, w = image_hw
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    return (int(max(bbox[0] - 0.1 * bw, 0)), int(max(bbox[1] - 0.1 * bh, 0)),
            int(min(bbox[2] + 0.1 * bw, w)), int(min(bbox[3] + 0.1 * bh, h)))


def cut_by_frame(bbox: np.ndarray, mask: np.ndarray | None, image_hw: tuple[int, int],
                 min_share: float = 0.05) -> list[str]:
    """The photo edges that cut the person: ``top``, ``bottom``, ``left``, ``right``.

    An edge cuts the person when the box reaches it (within a pixel), or when the mask (> 0.5) covers at
    least ``min_share`` of the box's extent along that edge in the photo's border row or column, read only
    beside the box (someone else may touch the border elsewhere). Both, because a person found in a part of
    the photo (``detect.everyone``) has a mask only there. mediapipe keeps guessing the parts beyond the
    frame, and they look as sure as the rest (a player cut at the waist got knees just below his hips and was
    fitted seated), so the caller says so.

    Args:
        bbox: (4,) x0, y0, x1, y1 photo pixels; mask: (H, W) person probability or None; image_hw: (H, W).
    """
    h, w = image_hw
    x0, y0, x1, y1 = (float(v) for v in bbox)
    cut = {"top": y0 <= 1, "bottom": y1 >= h - 1, "left": x0 <= 1, "right": x1 >= w - 1}
    if mask is not None:
        m = np.asarray(mask) > 0.5
        c0, c1 = max(0, int(math.floor(x0))), min(w, int(math.ceil(x1)) + 1)
        r0, r1 = max(0, int(math.floor(y0))), min(h, int(math.ceil(y1)) + 1)
        border = {"top": (m[0, c0:c1], x1 - x0), "bottom": (m[h - 1, c0:c1], x1 - x0),
                  "left": (m[r0:r1, 0], y1 - y0), "right": (m[r0:r1, w - 1], y1 - y0)}
        for k, (line, extent) in border.items():
            cut[k] |= bool(line.sum() >= min_share * max(extent, 1.0))
    return [k for k, v in cut.items() if v]


def detect_in_box(detector, image: np.ndarray, bbox: np.ndarray, flip: bool = False):
    """Run the detector on a padded region around a box; keypoints and mask back in photo pixels.

    mediapipe returns the most prominent person of the region, which can be someone in front of the
    box's person: when the detection's box overlaps the given one by less than half (IoU), that person is
    painted out and the region searched once more; the better-overlapping detection is kept. ``flip``:
    average it with the answer on the mirrored region (:func:`neuralfit.detect.mediapipe_pose.flip_averaged`).
    """
    from neuralfit.detect.everyone import box_iou, paint_out
    from neuralfit.detect.mediapipe_pose import flip_averaged

    h, w = image.shape[:2]
    x0, y0, x1, y1 = box_region(bbox, (h, w))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    region = np.ascontiguousarray(image[y0:y1, x0:x1])
    best, best_iou, best_region = None, -1.0, region
    for _ in range(2):
        det = detector(region)
        if det is None:
            break
        iou = box_iou(det.bbox + np.array([x0, y0, x0, y0], np.float32), bbox)
        if iou > best_iou:
            best, best_iou, best_region = det, iou, region
        if iou >= 0.5:
            break
        region = paint_out(region, [det])  # someone else: paint them out and look again
    if best is None:
        return None
    if flip:
        best = flip_averaged(detector, best_region, best)
    best.keypoints[:, 0] += x0
    best.keypoints[:, 1] += y0
    best.bbox = best.bbox + np.array([x0, y0, x0, y0], np.float32)
    if best.mask is not None:
        full = np.zeros((h, w), np.float32)
        full[y0:y1, x0:x1] = best.mask
        best.mask = full
    return best


def _flip_in_photo(detector, pic: np.ndarray, d, box: np.ndarray | None = None):
    """:func:`~neuralfit.detect.mediapipe_pose.flip_averaged` for a detection made on the whole photo:
    the mirrored pass runs on ``box`` (default: the detection's keypoint box) padded as in
    :func:`detect_in_box`, where the person fills the region as they do in a box search."""
    from dataclasses import replace

    from neuralfit.detect.mediapipe_pose import flip_averaged

    box = box if box is not None else box_from_keypoints(d.keypoints, pic.shape[:2], BOX_CONFIDENCE)
    if box is None:
        return d
    x0, y0, x1, y1 = box_region(box, pic.shape[:2])
    if x1 - x0 < 8 or y1 - y0 < 8:
        return d
    off = np.array([x0, y0], np.float32)
    local = replace(d, keypoints=np.concatenate([d.keypoints[:, :2] - off, d.keypoints[:, 2:]], 1),
                    bbox=d.bbox - np.tile(off, 2))
    out = flip_averaged(detector, np.ascontiguousarray(pic[y0:y1, x0:x1]), local)
    if out is local:
        return d
    return replace(d, keypoints=np.concatenate([out.keypoints[:, :2] + off, out.keypoints[:, 2:]], 1),
                   world_landmarks=out.world_landmarks)


def _person(image_index: int, d, box: np.ndarray | None) -> Person:
    return Person(image_index, np.asarray(box if box is not None else d.bbox, np.float32),
                  d.keypoints.astype(np.float32), "blazepose33", mask=d.mask,
                  world_landmarks=getattr(d, "world_landmarks", None), box_given=box is not None)


def _redetect(detector, pic: np.ndarray, d, others: list, flip: bool = False):
    """``d`` found again inside its own box with the other people painted out, as a top-down pipeline
    runs pose per person box: on Demo_MultiPerson the whole-photo detection of the woman in front scored
    3.3 mm PA-MPJPE worse than mediapipe inside her box. The first answer is kept when the box search
    finds nobody or someone else (torso off ``d``'s by more than 20 % of its size)."""
    from neuralfit.detect.everyone import body_region, box_size, paint_out, torso_distance

    box = box_from_keypoints(d.keypoints, pic.shape[:2], BOX_CONFIDENCE)
    if box is None:
        return d
    # Undilated: others stand next to (or in front of) this person, and a grown paint eats into them: with
    # the 25-px growth the search uses, Demo_MultiPerson scored 66.4 / 105.0 mm instead of 65.8 / 101.3.
    painted = paint_out(pic, others, dilate=1)
    # This person's own skeleton region stays visible: where someone behind overlaps it, their paint would
    # hide this person's limbs (Demo_MultiPerson, no box: the woman 60.7 -> 60.3 mm PA as BlazePose
    # points, the man 89.7 -> 89.1; docs/real_benchmark.md, session 16).
    own = body_region(d, pic.shape[:2])
    painted[own] = pic[own]
    again = detect_in_box(detector, painted, box, flip)
    if again is None or torso_distance(again.keypoints, d.keypoints) > 0.2 * box_size(d):
        return _flip_in_photo(detector, painted, d) if flip else d
    return again


def _match_boxes(dets: list, boxes: np.ndarray, min_iou: float = 0.3) -> list[int | None]:
    """For each given box, the index of the detection that overlaps it best (one-to-one, IoU >= min_iou)."""
    from scipy.optimize import linear_sum_assignment

    from neuralfit.detect.everyone import box_iou

    out: list[int | None] = [None] * len(boxes)
    if not dets:
        return out
    iou = np.array([[box_iou(d.bbox, b) for d in dets] for b in boxes])
    rows, cols = linear_sum_assignment(-iou)
    for r, c in zip(rows, cols, strict=True):
        if iou[r, c] >= min_iou:
            out[r] = int(c)
    return out


def find_people(get_detector: Callable, pic: np.ndarray, keypoints: list | None, boxes: np.ndarray | None,
                image_index: int, box_alone_ok: bool, max_people: int = 1, flip: bool = False) -> list[Person]:
    """People of one photo: from the user's keypoints, else mediapipe (inside the user's boxes if given).

    Args:
        keypoints: the people of a keypoint file for this photo, or None (mediapipe).
        boxes: (n, 4) user boxes, or None. One box: mediapipe inside it. Several: everyone is found in the
            photo (:func:`neuralfit.detect.everyone.find_everyone`) and matched to the boxes by overlap;
            a box left without a match is searched on its own with the found people painted out.
        box_alone_ok: a user box where mediapipe finds nobody still gives a person (a network can supply
            the keypoints).
        max_people: without boxes, at most this many people (largest first); 1 = one detector call to find
            the person (plus one mirrored pass when ``flip``).
        flip: average every mediapipe detection with its answer on the mirrored person region
            (:func:`neuralfit.detect.mediapipe_pose.flip_averaged`; one more detector call per person).
    """
    h, w = pic.shape[:2]
    if boxes is not None and len(boxes) == 0:
        return []
    if keypoints is not None:
        found = []
        for pk in keypoints:
            k = np.asarray(pk.keypoints, dtype=np.float32)
            pbox = box_from_keypoints(k, (h, w), BOX_CONFIDENCE)
            if boxes is not None and pbox is not None:
                from neuralfit.detect.everyone import box_iou

                # The user's box that overlaps this person most (one box: that box, as before).
                pbox = boxes[int(np.argmax([box_iou(pbox, b) for b in boxes]))]
            elif boxes is not None:
                pbox = boxes[0] if len(boxes) == 1 else None
            if pbox is not None and (k[:, 2] >= BOX_CONFIDENCE).sum() >= 4:
                found.append(Person(image_index, np.asarray(pbox, np.float32), k, pk.joint_set,
                                    box_given=boxes is not None))
        return found
    det = get_detector()
    if boxes is None:
        from neuralfit.detect.everyone import find_everyone

        dets = find_everyone(det, pic, max_people)
        if len(dets) > 1:
            dets = [_redetect(det, pic, d, [o for o in dets if o is not d], flip) for d in dets]
        elif dets and flip:
            dets = [_flip_in_photo(det, pic, dets[0])]
        return [_person(image_index, d, None) for d in dets]
    if len(boxes) == 1:
        dets, match = [], [None]
    else:
        from neuralfit.detect.everyone import find_everyone

        dets = find_everyone(det, pic, max(len(boxes), max_people))
        match = _match_boxes(dets, boxes)
    people = []
    for box, j in zip(boxes, match, strict=True):
        from neuralfit.detect.everyone import paint_out

        if j is not None:
            d = dets[j]
            if flip:
                d = _flip_in_photo(det, paint_out(pic, [o for o in dets if o is not d], dilate=1), d, box)
            people.append(_person(image_index, d, box))
            continue
        d = detect_in_box(det, paint_out(pic, dets) if dets else pic, box, flip)
        if d is not None:
            people.append(_person(image_index, d, box))
        elif box_alone_ok:
            people.append(Person(image_index, np.asarray(box, np.float32), None, None, box_given=True))
    return people


def crop_mask(mask: np.ndarray, aff: np.ndarray, res: int, size: int, outside: float = 0.5) -> np.ndarray:
    """A photo's (H, W) person probability -> (size, size) over the crop ``aff`` (the feature map's grid).

    Outside the photo the probability is ``outside``: 0.5 (unknown) for the person's own mask, since the
    crop's padding says nothing; 0 for an occluder map (nobody is known to be there)."""
    import cv2

    from neuralfit.data.crop import warp

    inside = warp(np.ones(mask.shape, np.float32), aff, res)
    m = warp(mask.astype(np.float32), aff, res) + outside * (1.0 - inside)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)
