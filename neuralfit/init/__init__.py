"""The 3D-aware start: IK onto mediapipe's world landmarks, placing a posed body in a photo's camera,
the photo's intrinsics (flags, EXIF, default rule) and a user's regressor outputs (``.npz``).

See docs/init.md.
"""

from neuralfit.init.ik import IKConfig, fit_world_landmarks, world_landmark_tensors
from neuralfit.init.types import StartParams

__all__ = ["IKConfig", "StartParams", "fit_world_landmarks", "world_landmark_tensors"]
