"""The 24-part body segmentation (one part per SMPL joint) and its colour map."""

from __future__ import annotations

import colorsys

import numpy as np
import torch

from neuralfit.body.smpl_format import SMPL_JOINT_NAMES

#: Part names, one per SMPL joint; image/network classes are 0 = background, 1 + part id for the body.
PART_NAMES: list[str] = list(SMPL_JOINT_NAMES)
NUM_PART_CLASSES = 25


def part_labels_from_weights(weights: torch.Tensor) -> torch.Tensor:
    """(V, 24) skinning weights -> (V,) long part ids: the joint with the largest weight."""
    return weights.argmax(dim=1).long()


def part_colors() -> np.ndarray:
    """(25, 3) uint8 colour map: row 0 (background) black, row 1 + p the colour of part p.

    Hues step by the golden ratio so neighbouring part ids get clearly different colours; left and
    right parts therefore differ too. Deterministic, no external palette.
    """
    colors = np.zeros((NUM_PART_CLASSES, 3), dtype=np.uint8)
    for p in range(24):
        hue = (p * 0.618033988749895) % 1.0
        sat = 0.55 + 0.35 * ((p * 7) % 3) / 2.0
        r, g, b = colorsys.hsv_to_rgb(hue, sat, 0.95)
        colors[1 + p] = np.round(np.array([r, g, b]) * 255).astype(np.uint8)
    return colors
