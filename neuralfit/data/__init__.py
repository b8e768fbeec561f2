"""Data: the synthetic occlusion-aware data engine, SPIN/EFT npz datasets, crops and augmentation.

- :func:`generate_dataset` / ``neuralfit synth``: render a LASOR-style synthetic dataset.
- :class:`SynthEngine`, :class:`SynthConfig`, :data:`PRESETS`: one image at a time.
- :class:`NpzDataset`, :class:`DatasetConfig`, :class:`AugmentConfig`: torch datasets over SPIN/EFT ``.npz``.
- :mod:`neuralfit.data.crop`: SPIN crops and left/right flips.
"""

from neuralfit.data.datasets import AugmentConfig, DatasetConfig, NpzDataset
from neuralfit.data.synth import PRESETS, OcclusionPreset, SynthConfig, SynthEngine
from neuralfit.data.writer import generate_dataset

__all__ = [
    "PRESETS", "AugmentConfig", "DatasetConfig", "NpzDataset", "OcclusionPreset", "SynthConfig",
    "SynthEngine", "generate_dataset",
]
