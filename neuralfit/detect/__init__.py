"""Finding people in images: mediapipe keypoints/box/mask, or keypoints from user JSON files."""

from neuralfit.detect.keypoint_files import PersonKeypoints, load_keypoints_json
from neuralfit.detect.mediapipe_pose import BLAZEPOSE33_NAMES, Detection, DetectorConfig, PersonDetector

__all__ = [
    "BLAZEPOSE33_NAMES",
    "Detection",
    "DetectorConfig",
    "PersonDetector",
    "PersonKeypoints",
    "load_keypoints_json",
]
