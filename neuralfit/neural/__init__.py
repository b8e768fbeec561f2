"""Neural mesh model: per-vertex orientation-conditioned feature distributions, clutter, outlier process."""

from neuralfit.neural.model import FeatureLoss, NeuralMeshModel
from neuralfit.neural.orientation import limb_angles, limb_pairs, orientation_weights

__all__ = ["FeatureLoss", "NeuralMeshModel", "limb_angles", "limb_pairs", "orientation_weights"]
