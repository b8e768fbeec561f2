"""The 3D-aware start: IK onto mediapipe's world landmarks, placing a posed body in a photo's camera,
the photo's intrinsics (flags, EXIF, default rule) and a user's regressor outputs (``.npz``).

    start = fit_world_landmarks(body, landmarks (B,33,3), confidence (B,33), prior)   # -> StartParams
    transl = place_in_camera(body, start, keypoints (B,J,3), "blazepose33", focal, principal_point)  # (B,3)
    cam = photo_intrinsics((H, W), path, focal=None, fov=None, K=None)                  # -> PhotoIntrinsics
    table = load_init_npz("spin_out.npz"); table.lookup("img001.jpg")                   # -> [StartParams]

See docs/init.md.
"""

from neuralfit.init.camera import PlaceConfig, place_in_camera
from neuralfit.init.ik import IKConfig, fit_world_landmarks, world_landmark_tensors
from neuralfit.init.intrinsics import PhotoIntrinsics, default_focal, photo_intrinsics, read_exif_focal
from neuralfit.init.npz import InitTable, load_init_npz
from neuralfit.init.types import StartParams

__all__ = [
    "IKConfig", "InitTable", "PhotoIntrinsics", "PlaceConfig", "StartParams", "default_focal", "fit_world_landmarks",
    "load_init_npz", "photo_intrinsics", "place_in_camera", "read_exif_focal", "world_landmark_tensors",
]
