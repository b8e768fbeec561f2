"""The keypoint lifter's start: 2D keypoints -> metric 3D landmarks -> the same IK as mediapipe's 3D.

    landmarks, ok = lift_landmarks(lifter, body, keypoints (B,J,3), "coco17")   # (B,33,3) m, (B,) bool
    start = lift_start(lifter, body, keypoints, "coco17", prior)                 # -> StartParams

See :mod:`neuralfit.nets.lifter` for the network and docs/init.md for how it is used.
"""

from __future__ import annotations

import numpy as np
import torch

from neuralfit.init.types import StartParams

#: A person needs this many keypoints for the lifter (the torso and a few limb joints).
MIN_KEYPOINTS = 6


def lift_landmarks(lifter: torch.nn.Module, body, keypoints: np.ndarray | torch.Tensor, joint_set: str,
                   focal: float | np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, J, 3) keypoints (pixels + confidence) of ``joint_set`` -> ((B, 33, 3) metric landmarks in
    mediapipe's world frame, (B,) bool: enough keypoints to trust them). ``focal``: the camera's focal in
    the keypoints' pixels, one or (B,) (None: a typical photo's)."""
    from neuralfit.body.keypoints import transfer_keypoints

    src = body.keypoint_sets[joint_set]
    dst = body.keypoint_sets[lifter.config.in_set]
    kp = np.asarray(keypoints.detach().cpu() if isinstance(keypoints, torch.Tensor) else keypoints, np.float32)
    t = np.stack([transfer_keypoints(k, src, dst) for k in kp]).astype(np.float32)
    t = np.nan_to_num(t)
    ok = torch.from_numpy((t[..., 2] > 0).sum(-1) >= MIN_KEYPOINTS)
    dev = next(lifter.parameters()).device
    f = None if focal is None else torch.as_tensor(np.broadcast_to(np.asarray(focal, np.float32), (len(t),)).copy(),
                                                   device=dev)
    return lifter.lift(torch.from_numpy(t).to(dev), f).float().cpu(), ok


def lift_start(lifter: torch.nn.Module, body, keypoints: np.ndarray | torch.Tensor, joint_set: str,
               focal: float | np.ndarray | None = None,
               prior: torch.nn.Module | None = None) -> tuple[StartParams, torch.Tensor]:
    """The lifter's landmarks fitted by :func:`neuralfit.init.fit_world_landmarks` (all 33 trusted as the body
    defines them). Returns the start (translation-free, as the IK's) and the (B,) ``ok`` of
    :func:`lift_landmarks`; rows that are not ok should start elsewhere."""
    from neuralfit.init.ik import fit_world_landmarks

    lm, ok = lift_landmarks(lifter, body, keypoints, joint_set, focal)
    dev = body.faces.device
    conf = torch.ones(lm.shape[:2])
    return fit_world_landmarks(body, lm.to(dev), conf.to(dev), prior=prior), ok
