"""Where each person's fit starts: a body pose from one source, placed in the person's crop camera.

Sources (``--init``), each falling back to the next one that has what it needs:

* ``mediapipe3d`` (default for photos): inverse kinematics of the body's BlazePose-33 keypoints onto
  mediapipe's metric world landmarks (:func:`neuralfit.init.fit_world_landmarks`), weighted by their
  visibility. It knows which way the person faces, so no second hypothesis is needed.
* ``lifter``: the keypoint lifter (:mod:`neuralfit.nets.lifter`, shipped as ``nets/assets/lifter.pt``)
  lifts the detector's 2D keypoints to metric 3D landmarks, which go through the same IK as mediapipe's;
  or, with a keypoint regressor network (``regressor_input="keypoints"``) and no lifter, that network.
* ``network``: the network's regressor on the crop (image features or its own heatmaps).
* ``FILE.npz``: a user's regressor outputs (SPIN/EFT-style ``imgname``, ``pose``, ``shape``), matched by
  image file name.
* ``mean`` (last resort): the mean pose facing the camera; it cannot tell front from back, so the fit
  also tries it rotated 180 degrees.

Every start is then placed in the person's own crop camera (the photo's camera seen in the crop) by
weighted linear least squares on the 2D keypoints, so depth comes from the camera and the person's size.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init.types import StartParams

INITS = ("mediapipe3d", "lifter", "network")

#: A transferred detection needs this many keypoints for the lifter (its training kept >= 6).
_LIFTER_MIN_KEYPOINTS = 6

#: A keypoint below this confidence counts as unsure: hidden, guessed, or (in a clean photo) a far-side limb.
UNSURE_CONFIDENCE = 0.5


def check_init(init: str) -> str:
    """``mediapipe3d``, ``lifter``, ``network`` or an existing ``.npz`` path."""
    if init in INITS:
        return init
    if str(init).endswith(".npz"):
        from neuralfit.init import load_init_npz

        if not Path(init).is_file():
            raise NeuralfitError(f"--init {init}: file not found")
        load_init_npz(init)  # wrong keys or shapes fail here, before any model is loaded
        return str(init)
    raise NeuralfitError(f"--init {init!r}: expected mediapipe3d, lifter, network or FILE.npz")


@dataclass
class PersonStart:
    """One person's start: ``params`` (one row; transl in the crop camera), its ``source``, whether it
    ``knows_facing`` (False: also try it rotated 180 degrees), and how ``inconsistent`` mediapipe's 3D
    landmarks were with its 2D keypoints (:func:`inconsistent_weight`, 0 to 1; 0 when not measured)."""

    params: StartParams
    source: str
    knows_facing: bool
    inconsistent: float = 0.0


@dataclass
class StartInputs:
    """What the starts may use, per person j (crop pixels; lists of length P).

    Attributes:
        keypoints: (J, 3) detections in crop pixels or None; joint_sets: their sets.
        world_landmarks: (33, 4) or None; image_names: file names (for a FILE.npz), or None.
        focal: (P,) crop focal; principal_point: (P, 2) crop pixels; boxes: (P, 4) boxes in crop pixels.
        prediction: the network's output for the crops (``neuralfit.nets.predict``), or None.
    """

    keypoints: list[np.ndarray | None]
    joint_sets: list[str | None]
    world_landmarks: list[np.ndarray | None]
    image_names: list[str | None]
    focal: np.ndarray
    principal_point: np.ndarray
    boxes: np.ndarray
    prediction: Any = None


def start_people(init: str, inputs: StartInputs, body, prior=None, net=None, lifter=None,
                 lift_blend: float = 0.0, lift_blend_hidden: float = 0.0,
                 lift_blend_inconsistent: tuple[float, float] | None = None) -> list[PersonStart]:
    """Each person's start (see the module docstring for the sources and their fallbacks).

    ``lift_blend`` > 0 (with ``init="mediapipe3d"`` and a lifter): the IK target is mediapipe's landmarks
    times ``1 - lift_blend`` plus the lifter's landmarks times ``lift_blend``, where the lifter has enough
    keypoints. ``lift_blend_hidden`` = k raises a person's share to ``a + (1 - a) min(1, k s)``, ``s`` the share of
    their 12 limb keypoints below confidence 0.5 (:func:`hidden_limb_share`). ``lift_blend_inconsistent``
    = (r0, r1) raises it further, ``a + (1 - a) w`` with ``w`` rising from 0 to 1 as mediapipe's world
    landmarks disagree with its own 2D keypoints (:func:`landmark_reprojection_residual` from r0 to r1).
    """
    P = len(inputs.keypoints)
    raw: list[tuple[StartParams, str, bool] | None] = [None] * P
    inconsistent = [0.0 if inputs.world_landmarks[j] is None else
                    inconsistent_weight(inputs.world_landmarks[j], inputs.keypoints[j], inputs.joint_sets[j],
                                        lift_blend_inconsistent) for j in range(P)]
    if init == "mediapipe3d":
        rows = [j for j in range(P) if inputs.world_landmarks[j] is not None]
        if rows:
            from neuralfit.init import fit_world_landmarks

            lm = torch.tensor(np.stack([inputs.world_landmarks[j] for j in rows]), dtype=torch.float32)
            if lifter is not None and lift_blend > 0:
                lm = _blend_lifted(lifter, body, inputs, rows, lm, lift_blend, lift_blend_hidden, inconsistent)
            dev = body.faces.device
            sp = fit_world_landmarks(body, lm[..., :3].to(dev), lm[..., 3].to(dev), prior=prior)
            for r, j in enumerate(rows):
                raw[j] = (sp.row(r), "mediapipe3d", True)
    elif init not in INITS:
        _from_file(init, inputs, raw)
    if lifter is not None and init == "lifter":
        _from_keypoint_lifter(lifter, body, inputs, raw, prior)
    if net is not None and getattr(net.config, "regressor_input", "image") == "keypoints" and init != "network":
        _from_lifter(net, body, inputs, raw)
    if net is not None and inputs.prediction is not None:
        pred = inputs.prediction
        for j in range(P):
            if raw[j] is None:
                raw[j] = (StartParams(pred["global_orient"][j:j + 1], pred["body_pose"][j:j + 1],
                                      _betas10(pred["betas"][j:j + 1])), "network", True)
    out = []
    for j in range(P):
        sp, source, facing = raw[j] if raw[j] is not None else (_mean_start(), "mean", False)
        sp = StartParams(*(t.float().cpu() for t in (sp.global_orient, sp.body_pose, sp.betas)))
        transl = place(body, sp, inputs.keypoints[j], inputs.joint_sets[j], float(inputs.focal[j]),
                       inputs.principal_point[j], inputs.boxes[j])
        out.append(PersonStart(StartParams(sp.global_orient, sp.body_pose, sp.betas, transl), source, facing,
                               inconsistent[j]))
    return out


def _betas10(b: torch.Tensor) -> torch.Tensor:
    b = b.float().cpu()
    return torch.nn.functional.pad(b, (0, max(0, 10 - b.shape[1])))[:, :10]


def _mean_start() -> StartParams:
    # SMPL's zero pose is y-up facing +z; rotated 180 deg about x it stands upright facing the camera.
    return StartParams(torch.tensor([[math.pi, 0.0, 0.0]]), torch.zeros(1, 69), torch.zeros(1, 10))


def _from_lifter(net, body, inputs: StartInputs, raw: list) -> None:
    from neuralfit.body.keypoints import transfer_keypoints
    from neuralfit.nets.model import regress

    dst = body.keypoint_sets[net.config.joint_set]
    rows, kps = [], []
    for j, (kp, js) in enumerate(zip(inputs.keypoints, inputs.joint_sets, strict=True)):
        if raw[j] is not None or kp is None or js not in body.keypoint_sets:
            continue
        t = transfer_keypoints(kp, body.keypoint_sets[js], dst)
        if (t[:, 2] > 0).sum() >= _LIFTER_MIN_KEYPOINTS:
            rows.append(j)
            kps.append(t)
    if rows:
        smpl = regress(net, np.stack(kps).astype(np.float32))
        for r, j in enumerate(rows):
            raw[j] = (StartParams(smpl["global_orient"][r:r + 1], smpl["body_pose"][r:r + 1],
                                  _betas10(smpl["betas"][r:r + 1])), "lifter", True)


def hidden_limb_share(body, keypoints: np.ndarray, joint_set: str, below: float = UNSURE_CONFIDENCE) -> float:
    """Share of the 12 limb keypoints (transferred to spin24) with confidence below ``below``; a keypoint
    the set does not have counts as hidden."""
    from neuralfit.body.keypoints import LIMB12_NAMES, transfer_keypoints

    dst = body.keypoint_sets["spin24"]
    kp = transfer_keypoints(np.asarray(keypoints, np.float32), body.keypoint_sets[joint_set], dst)
    conf = np.nan_to_num(kp[[list(dst.names).index(n) for n in LIMB12_NAMES], 2])
    return float((conf < below).mean())


def hidden_weight(body, keypoints: np.ndarray | None, joint_set: str | None, k: float) -> float:
    """``min(1, k s)``, ``s`` = :func:`hidden_limb_share`: how occluded a person looks, 0 (every limb keypoint
    sure, or ``k = 0``) to 1. One or two unsure limbs are mostly self-occlusion in a clean photo; half of
    them unsure is an occluder. 0 without keypoints of a set the body knows."""
    if k <= 0 or keypoints is None or joint_set not in body.keypoint_sets:
        return 0.0
    return min(1.0, k * hidden_limb_share(body, keypoints, joint_set))


def landmark_reprojection_residual(world_landmarks: np.ndarray, keypoints: np.ndarray,
                                   min_confidence: float = UNSURE_CONFIDENCE) -> float:
    """How far mediapipe's 3D landmarks are from its own 2D keypoints, as a share of the person's size.

    Args:
        world_landmarks: (33, 3+) metric landmarks (x right, y down, hip-centred), BlazePose order.
        keypoints: (33, 3) the same detection's keypoints (x, y, confidence) in pixels.
    Returns:
        rms of the 2D residual after the best scale + shift of the landmarks' (x, y) onto the keypoints
        with confidence above ``min_confidence``, over the keypoints' rms distance from their centre; NaN with fewer
        than 6 such keypoints. The two come from one network: when an occluder confuses it, the 3D head
        often invents a pose that no longer projects onto the 2D one (clean photos: ~0.07 at the median).
    """
    x = np.asarray(world_landmarks, np.float64)[:, :2]
    y = np.asarray(keypoints, np.float64)[:, :2]
    w = (np.nan_to_num(np.asarray(keypoints, np.float64)[:, 2]) > min_confidence).astype(np.float64)
    if w.sum() < 6 or not (np.isfinite(x[w > 0]).all() and np.isfinite(y[w > 0]).all()):
        return float("nan")
    x = np.where(w[:, None] > 0, x, 0.0)
    y = np.where(w[:, None] > 0, y, 0.0)
    xc = x - (w[:, None] * x).sum(0) / w.sum()
    yc = y - (w[:, None] * y).sum(0) / w.sum()
    den = (w * (xc * xc).sum(1)).sum()
    size = np.sqrt((w * (yc * yc).sum(1)).sum() / w.sum())
    if den <= 0 or size <= 0:
        return float("nan")
    scale = (w * (xc * yc).sum(1)).sum() / den
    rms = np.sqrt((w * ((scale * xc - yc) ** 2).sum(1)).sum() / w.sum())
    return float(rms / size)


def inconsistent_weight(world_landmarks: np.ndarray, keypoints: np.ndarray | None, joint_set: str | None,
                        ramp: tuple[float, float] | None) -> float:
    """0 to 1 as :func:`landmark_reprojection_residual` rises from ``ramp[0]`` to ``ramp[1]``; 0 without a
    ramp, without BlazePose keypoints or when the residual cannot be measured."""
    if ramp is None or keypoints is None or joint_set != "blazepose33" or len(keypoints) != len(world_landmarks):
        return 0.0
    r = landmark_reprojection_residual(world_landmarks, keypoints)
    if not math.isfinite(r):
        return 0.0
    r0, r1 = ramp
    return float(np.clip((r - r0) / (r1 - r0), 0.0, 1.0))


def _blend_lifted(lifter, body, inputs: StartInputs, rows: list[int], lm: torch.Tensor, a: float,
                  k_hidden: float, inconsistent: list[float]) -> torch.Tensor:
    from neuralfit.init.lift import lift_landmarks

    out = lm.clone()
    for r, j in enumerate(rows):
        kp, js = inputs.keypoints[j], inputs.joint_sets[j]
        if kp is None or js not in body.keypoint_sets:
            continue
        lifted, ok = lift_landmarks(lifter, body, kp[None], js, float(inputs.focal[j]))
        if ok[0]:
            ar = a + (1 - a) * hidden_weight(body, kp, js, k_hidden)
            ar = ar + (1 - ar) * inconsistent[j]
            out[r, :, :3] = (1 - ar) * lm[r, :, :3] + ar * lifted[0]
    return out


def _from_keypoint_lifter(lifter, body, inputs: StartInputs, raw: list, prior) -> None:
    from neuralfit.init.lift import lift_start

    rows = [j for j, (kp, js) in enumerate(zip(inputs.keypoints, inputs.joint_sets, strict=True))
            if raw[j] is None and kp is not None and js in body.keypoint_sets]
    by_set: dict[str, list[int]] = {}
    for j in rows:
        by_set.setdefault(inputs.joint_sets[j], []).append(j)
    for js, idx in by_set.items():
        sp, ok = lift_start(lifter, body, np.stack([inputs.keypoints[j] for j in idx]), js,
                            np.asarray(inputs.focal)[idx], prior=prior)
        for r, j in enumerate(idx):
            if ok[r]:
                raw[j] = (sp.row(r), "lifter", True)


def _from_file(path: str, inputs: StartInputs, raw: list) -> None:
    """Rows of the file for each photo, in order: the k-th person of a photo gets its k-th row."""
    from neuralfit.init import load_init_npz

    table = load_init_npz(path)
    used: dict[str, int] = {}
    for j, name in enumerate(inputs.image_names):
        if name is None:
            continue
        rows = table.lookup(name)
        k = used.get(name, 0)
        used[name] = k + 1
        if k < len(rows):
            raw[j] = (rows[k], f"file {os.path.basename(path)}", True)


def place(body, start: StartParams, keypoints: np.ndarray | None, joint_set: str | None, focal: float,
          principal_point: np.ndarray, box: np.ndarray) -> torch.Tensor:
    """(1, 3) translation putting the posed start on the keypoints in a crop camera (``focal``,
    ``principal_point``), by :func:`neuralfit.init.place_in_camera`; without keypoints its fallback
    makes the body's height fill the box."""
    from neuralfit.init import place_in_camera

    if keypoints is None or joint_set is None:
        joint_set = "coco17"  # any set: all confidences 0, so only the box counts
        keypoints = np.zeros((len(body.keypoint_sets[joint_set]), 3), np.float32)
    dev = body.faces.device
    sp = StartParams(*(t.to(dev) for t in (start.global_orient, start.body_pose, start.betas)))
    kp = torch.as_tensor(np.asarray(keypoints), dtype=torch.float32, device=dev)[None]
    pp = torch.as_tensor(np.asarray(principal_point), dtype=torch.float32, device=dev)[None]
    bbox = torch.as_tensor(np.asarray(box), dtype=torch.float32, device=dev)[None]
    return place_in_camera(body, sp, kp, joint_set, float(focal), pp, bbox=bbox).float().cpu()
