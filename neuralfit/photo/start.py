"""Where each person's fit starts: a body pose from one source, placed in the person's crop camera.

Sources (``--init``), each falling back to the next one that has what it needs:

* ``mediapipe3d`` (default for photos): inverse kinematics of the body's BlazePose-33 keypoints onto
  mediapipe's metric world landmarks (:func:`neuralfit.init.fit_world_landmarks`), weighted by their
  visibility. It knows which way the person faces, so no second hypothesis is needed.
* ``lifter``: a keypoint regressor network (``regressor_input="keypoints"``) reading the detector's
  keypoints transferred to its joint set.
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


def check_init(init: str) -> str:
    """``mediapipe3d``, ``lifter``, ``network`` or an existing ``.npz`` path."""
    if init in INITS:
        return init
    if str(init).endswith(".npz"):
        if not Path(init).is_file():
            raise NeuralfitError(f"--init {init}: file not found")
        return str(init)
    raise NeuralfitError(f"--init {init!r}: expected mediapipe3d, lifter, network or FILE.npz")


@dataclass
class PersonStart:
    """One person's start: ``params`` (one row; transl in the crop camera), its ``source``, and whether
    it ``knows_facing`` (False: also try it rotated 180 degrees)."""

    params: StartParams
    source: str
    knows_facing: bool


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


def start_people(init: str, inputs: StartInputs, body, prior=None, net=None) -> list[PersonStart]:
    """Each person's start (see the module docstring for the sources and their fallbacks)."""
    P = len(inputs.keypoints)
    raw: list[tuple[StartParams, str, bool] | None] = [None] * P
    if init == "mediapipe3d":
        rows = [j for j in range(P) if inputs.world_landmarks[j] is not None]
        if rows:
            from neuralfit.init import fit_world_landmarks

            lm = torch.tensor(np.stack([inputs.world_landmarks[j] for j in rows]), dtype=torch.float32)
            dev = body.faces.device
            sp = fit_world_landmarks(body, lm[..., :3].to(dev), lm[..., 3].to(dev), prior=prior)
            for r, j in enumerate(rows):
                raw[j] = (sp.row(r), "mediapipe3d", True)
    elif init not in INITS:
        _from_file(init, inputs, raw)
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
        out.append(PersonStart(StartParams(sp.global_orient, sp.body_pose, sp.betas, transl), source, facing))
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


def _from_file(path: str, inputs: StartInputs, raw: list) -> None:
    from neuralfit.init import load_init_npz

    table = load_init_npz(path)
    for j, name in enumerate(inputs.image_names):
        sp = table.lookup(name) if name is not None else None
        if sp is not None:
            raw[j] = (sp, f"file {os.path.basename(path)}", True)


def place(body, start: StartParams, keypoints: np.ndarray | None, joint_set: str | None, focal: float,
          principal_point: np.ndarray, box: np.ndarray) -> torch.Tensor:
    """(1, 3) translation putting the posed start on the keypoints in a crop camera (``focal``, ``principal_point``).

    Without keypoints, a 1.7 m tall body fills the box height, centred on the box.
    """
    try:
        from neuralfit.init import place_in_camera
    except ImportError:  # until neuralfit.init ships it
        place_in_camera = _place_in_camera

    if keypoints is not None and joint_set is not None and (keypoints[:, 2] > 0).sum() >= 2:
        kp = torch.as_tensor(keypoints, dtype=torch.float32)[None]
        return place_in_camera(body, start, kp, joint_set, focal, np.asarray(principal_point, np.float64)).cpu()
    z = focal * 1.7 / max(float(box[3] - box[1]), 1.0)
    cx, cy = (box[0] + box[2]) / 2.0 - principal_point[0], (box[1] + box[3]) / 2.0 - principal_point[1]
    with torch.no_grad():
        dev = body.faces.device
        pelvis = body(betas=start.betas.to(dev), global_orient=start.global_orient.to(dev),
                      body_pose=start.body_pose.to(dev), full=False).joints[0, 0].cpu()
    return (torch.tensor([[cx * z / focal, cy * z / focal, z]]) - pelvis[None]).float()


def _place_in_camera(body, start: StartParams, keypoints: torch.Tensor, joint_set: str, focal: float,
                     principal_point) -> torch.Tensor:
    """Weighted linear least squares for t: ``f (X + t_x) = (u - c_u) (Z + t_z)`` (and the same for v)."""
    dev = body.faces.device
    with torch.no_grad():
        posed = body(betas=start.betas.to(dev), global_orient=start.global_orient.to(dev),
                     body_pose=start.body_pose.to(dev), full=False)
        X = body.keypoints(posed, joint_set)[0].double().cpu()
    valid = body.keypoint_sets[joint_set].valid.cpu()
    kp = keypoints[0].double()
    w = (kp[:, 2].clamp(min=0) * valid).sqrt()
    du, dv = kp[:, 0] - float(principal_point[0]), kp[:, 1] - float(principal_point[1])
    zero = torch.zeros_like(du)
    A = torch.cat([torch.stack([torch.full_like(du, focal), zero, -du], -1),
                   torch.stack([zero, torch.full_like(dv, focal), -dv], -1)]) * torch.cat([w, w])[:, None]
    b = torch.cat([du * X[:, 2] - focal * X[:, 0], dv * X[:, 2] - focal * X[:, 1]]) * torch.cat([w, w])
    return torch.linalg.lstsq(A, b[:, None]).solution.T.float()
