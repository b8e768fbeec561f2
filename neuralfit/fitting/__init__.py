"""Losses, stages and the batched Adam fitter (NeuralSMPL inference); batch refinement of npz files."""

from neuralfit.fitting.config import FitConfig
from neuralfit.fitting.fitter import FitBatch, FitResult, Fitter, rotate_about_vertical
from neuralfit.fitting.posing import FitBody, Posed

__all__ = ["FitBatch", "FitBody", "FitConfig", "FitResult", "Fitter", "Posed", "rotate_about_vertical"]
