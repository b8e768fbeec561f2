"""Body models: real SMPL or the free SMPL-format body, joint/keypoint sets, parts, low-res neural mesh.

``load_body_model('free')`` needs no licence-gated file. Nothing is read at import time.
"""

from neuralfit.body.keypoints import LANDMARK_NAMES, KeypointSet
from neuralfit.body.loader import free_asset_path, load_body_model
from neuralfit.body.lowres import LowResMesh
from neuralfit.body.model import BodyModel, BodyOutput
from neuralfit.body.parts import NUM_PART_CLASSES, PART_NAMES, part_colors
from neuralfit.body.smpl_format import SMPL_JOINT_NAMES, SMPL_PARENTS

__all__ = [
    "LANDMARK_NAMES",
    "NUM_PART_CLASSES",
    "PART_NAMES",
    "SMPL_JOINT_NAMES",
    "SMPL_PARENTS",
    "BodyModel",
    "BodyOutput",
    "KeypointSet",
    "LowResMesh",
    "free_asset_path",
    "load_body_model",
    "part_colors",
]
