"""Pose and shape priors (``neuralfit.priors``).

* :func:`load_pose_prior` - ``"default"`` (embedded, trained by ``neuralfit train prior``), an official
  VPoser v2 folder/checkpoint, or a VPoser v1 snapshot -> :class:`PosePrior` with ``penalty``,
  ``encode``, ``decode``, ``sample``, ``project``.
* :class:`JointLimitPrior` - anatomical per-joint ranges; :class:`ShapePrior` - Gaussian on betas.
* :func:`sample_poses` - poses for the synthetic data engine (mocap frames and prior samples).
* :func:`load_mocap` - the retargeted DeepMimic pose set shipped with the package.

Nothing is read at import time; assets load inside these functions.
"""

from .default import load_pose_prior, read_state_dict, save_vposer_npz, vposer_from_state_dict
from .joint_limits import JointLimitConfig, JointLimitPrior
from .mocap import MocapSet, load_mocap, mirror_pose
from .pose_prior import PosePrior, PosePriorConfig
from .sampling import sample_poses
from .shape import ShapePrior, ShapePriorConfig
from .vposer import VPoser, VPoserConfig

__all__ = [
    "JointLimitConfig", "JointLimitPrior", "MocapSet", "PosePrior", "PosePriorConfig", "ShapePrior",
    "ShapePriorConfig", "VPoser", "VPoserConfig", "load_mocap", "load_pose_prior", "mirror_pose",
    "read_state_dict", "sample_poses", "save_vposer_npz", "vposer_from_state_dict",
]
