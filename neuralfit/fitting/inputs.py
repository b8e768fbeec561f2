"""The one way from observations to the fitter's input, shared by ``fit``, ``eval`` and ``refine``.

Every caller describes a batch of crops as :class:`Observations` (what was seen: keypoints, person mask,
features, part probabilities, and the camera of the crops) plus a :class:`neuralfit.init.StartParams`
(the initial SMPL estimate, with its translation in the crops' camera), and :func:`fit_batch` turns them into a :class:`~neuralfit.fitting.FitBatch` for a method.
So the "keypoints" and "neural" methods benchmarked by ``neuralfit eval`` are the ones ``neuralfit fit``
runs on photos: the same observations give the same batch (tests/test_fit_inputs.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.fitting.config import FitConfig
from neuralfit.fitting.fitter import FitBatch
from neuralfit.init.types import StartParams

#: Fitting methods: keypoints + priors (SMPLify-like), or the full neural fit.
FIT_METHODS = ("keypoints", "neural")


@dataclass
class Observations:
    """What was observed in B crops of ``res`` pixels (tensors batched over B; any may be None).

    Attributes:
        res: crop size in pixels.
        keypoints: (B, J, 3) ``(u, v, confidence)`` in crop pixels of ``joint_set``.
        joint_set: the keypoints' joint set name.
        features: (B, D, H, W) unit-norm feature map; part_probs: (B, 25, H, W).
        mask: (B, H, W) person probability at the feature-map resolution.
        focal: crop focal in pixels (a number or (B,)); None = the convention ``5000 res / 224``.
        principal_point: (B, 2) in crop pixels; None = the crop centre.
        group: (B,) photo index per crop (people of one photo are fitted together); None = independent.
        occluders: (B, H, W) the other people's masks in each crop (same grid as ``mask``).
        hidden: (B, H, W) evidence that a body pixel is hidden (same grid as ``mask``; ``FitBatch.hidden``).
        keypoint_weight: (B,) per-crop factor on the keypoint terms (``FitBatch.keypoint_weight``).
        keypoint_visibility: (B, J) the detector's confidences for the occlusion map
            (``FitBatch.keypoint_visibility``).
        keypoint_anchor: (B, J) how far each keypoint is held in 3D where stage 1 left it
            (``FitBatch.keypoint_anchor``).
    """

    res: int
    keypoints: torch.Tensor | None = None
    joint_set: str = "smpl24"
    features: torch.Tensor | None = None
    part_probs: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    focal: float | torch.Tensor | None = None
    principal_point: torch.Tensor | None = None
    group: torch.Tensor | None = None
    occluders: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    keypoint_weight: torch.Tensor | None = None
    keypoint_visibility: torch.Tensor | None = None
    keypoint_anchor: torch.Tensor | None = None


def check_method(method: str) -> str:
    if method not in FIT_METHODS:
        raise NeuralfitError(f"fit method {method!r} is unknown; expected one of {', '.join(FIT_METHODS)}")
    return method


def method_config(method: str, config: FitConfig) -> FitConfig:
    """The fitter settings of a method: ``keypoints`` turns the image terms off."""
    return config.with_(keypoints_only=check_method(method) == "keypoints")


def fit_batch(start: StartParams, obs: Observations, method: str) -> FitBatch:
    """The fitter's input for ``method`` from a start and observations (the only place it is built)."""
    neural = check_method(method) == "neural"
    if start.transl is None:
        raise NeuralfitError("the start has no translation: place it in the crops' camera first")
    if not neural and obs.keypoints is None:
        raise NeuralfitError("the keypoints method needs 2D keypoints (none were detected or given)")
    if neural and obs.features is None:
        raise NeuralfitError("the neural method needs the network's features (no network output was given)")
    return FitBatch(start.global_orient, start.body_pose, start.transl, start.betas, res=int(obs.res),
                    features=obs.features if neural else None, part_probs=obs.part_probs if neural else None,
                    keypoints=obs.keypoints, joint_set=obs.joint_set if obs.keypoints is not None else "smpl24",
                    mask=obs.mask, focal=obs.focal, principal_point=obs.principal_point, group=obs.group,
                    occluders=obs.occluders, hidden=obs.hidden, keypoint_weight=obs.keypoint_weight,
                    keypoint_visibility=obs.keypoint_visibility, keypoint_anchor=obs.keypoint_anchor)


def observations_from_prediction(pred: Any, keypoints: torch.Tensor | None = None,
                                 joint_set: str | None = None) -> Observations:
    """Observations from :func:`neuralfit.nets.predict`'s output, in its (convention) crop camera.

    ``keypoints`` / ``joint_set`` replace the network's heatmap keypoints (e.g. a detector's).
    """
    kp = pred["keypoints"] if keypoints is None else keypoints
    return Observations(res=int(pred["res"]), keypoints=kp, joint_set=joint_set or pred["joint_set"],
                        features=pred["features"], part_probs=pred["part_probs"], focal=float(pred["focal"]))


def start_from_prediction(pred: Any) -> StartParams:
    """The network regressor's SMPL estimate (in the crop camera the prediction was made with)."""
    return StartParams(pred["global_orient"], pred["body_pose"], pred["betas"], pred["transl"])
