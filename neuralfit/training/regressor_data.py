"""Keypoint-lifter training data seen through *photo* cameras (``neuralfit train regressor``, default).

The fit feeds the lifter detector keypoints from real photos (BlazePose-33, COCO-17 or BODY-25, all
transferred to spin24) cropped SPIN-style. :func:`sample_photo_keypoint_set` reproduces that chain
without rendering:

1. a mocap frame (training clips only; :mod:`neuralfit.priors.cmu` + DeepMimic, or a user's set) with its
   own global orientation turned to a random heading, a random shape;
2. a photo camera: focal ``focal_diag`` x the image diagonal, aspect ratio of a phone/DSLR photo,
   elevation ``elevation_deg`` (positive = looking down), distance ``distance_m``, a little roll, the person
   anywhere in the frame (``offcentre``) and sometimes partly outside it (``p_truncation``);
3. the SPIN crop of the box of the in-frame keypoints (``box_rescale`` x its long side), giving crop pixels
   and the crop focal ``f_crop = F res / (200 scale)``;
4. targets in the *crop's virtual camera* (the photo camera turned to look at the crop centre), which is
   all a crop can tell: global orientation, root-relative 3D joints.

:func:`detector_keypoints` then turns exact crop keypoints into a detector's: the joint set's mask
(BlazePose/COCO have no neck, pelvis, head top, thorax, spine, jaw, head; BODY-25 adds the neck), for
BlazePose the body's own calibrated BlazePose keypoints (where mediapipe puts hips, ankles, shoulders on
this body, ``tools/calibrate_keypoints.py``), for COCO and BODY-25 hips pushed out by a guessed widening,
left/right swaps, then the noise / occlusion dropout / outliers of
:func:`~neuralfit.training.regressor.corrupt_keypoints`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

#: spin24 joints each detector's keypoints transfer to (exact definitions on the body; see
#: ``neuralfit.body.keypoints.keypoint_correspondence``). ``spin24`` = the network's own heatmaps.
DETECTOR_JOINTS: dict[str, tuple[str, ...]] = {
    "blazepose33": ("right_ankle", "right_knee", "right_hip", "left_hip", "left_knee", "left_ankle", "right_wrist",
                    "right_elbow", "right_shoulder", "left_shoulder", "left_elbow", "left_wrist", "nose", "left_eye",
                    "right_eye", "left_ear", "right_ear"),
}
DETECTOR_JOINTS["coco17"] = DETECTOR_JOINTS["blazepose33"]
DETECTOR_JOINTS["body25"] = DETECTOR_JOINTS["blazepose33"] + ("neck",)
#: Extra half hip width of each detector's hip keypoints, metres (see the module doc).
#: BlazePose's hips come from the body's calibrated keypoints instead (``keypoints_bp``).
HIP_WIDENING_M: dict[str, float] = {"blazepose33": 0.0, "coco17": 0.02, "body25": 0.015, "spin24": 0.0}
_WIDE_PROBE_M = 0.05  # hips are also projected pushed out by this much; detectors interpolate


@dataclass
class PhotoCameraConfig:
    """Photo camera and crop distribution of :func:`sample_photo_keypoint_set`; see the module doc.

    ``leg_scale`` / ``arm_scale`` / ``shoulder_scale``: per-sample uniform ranges that stretch the keypoints'
    limb chains and shoulder width (:func:`scale_limbs`), for proportions (and detectors' keypoint
    definitions) that the shape space does not cover; (1, 1) = off.
    """

    focal_diag: tuple[float, float] = (0.6, 1.6)
    elevation_deg: tuple[float, float] = (-10.0, 40.0)
    distance_m: tuple[float, float] = (2.0, 10.0)
    roll_std_deg: float = 3.0
    aspects: tuple[float, ...] = (4 / 3, 3 / 4, 16 / 9, 9 / 16, 3 / 2, 2 / 3, 1.0)
    offcentre: float = 0.35
    p_truncation: float = 0.1
    box_rescale: float = 1.2
    aim_jitter_m: float = 0.3
    formats: tuple[str, ...] = ("blazepose33", "coco17", "body25", "spin24")
    format_probs: tuple[float, ...] = (0.35, 0.3, 0.2, 0.15)
    p_swap_all: float = 0.03
    p_swap_pair: float = 0.06
    leg_scale: tuple[float, float] = (1.0, 1.0)
    arm_scale: tuple[float, float] = (1.0, 1.0)
    shoulder_scale: tuple[float, float] = (1.0, 1.0)


def _unit(v: torch.Tensor) -> torch.Tensor:
    return v / v.norm(dim=-1, keepdim=True).clamp(min=1e-9)


def rotation_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) smallest rotations taking unit vectors ``a`` (N, 3) onto ``b`` (never antiparallel here)."""
    a, b = _unit(a), _unit(b)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    k = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    k = k - k.transpose(1, 2)
    return torch.eye(3, dtype=a.dtype) + k + k @ k / (1.0 + c).clamp(min=1e-6)[:, None, None]


def _camera_rotation(forward: torch.Tensor, roll: torch.Tensor) -> torch.Tensor:
    """(N, 3, 3) world-to-camera rotations (rows = camera x right, y down, z forward) for Y-up worlds."""
    up = torch.tensor([0.0, 1.0, 0.0]).expand_as(forward)
    z = _unit(forward)
    y = _unit(-up + (up * z).sum(-1, keepdim=True) * z)
    x = torch.cross(y, z, dim=-1)
    r = torch.stack([x, y, z], dim=1)
    c, s = roll.cos(), roll.sin()
    o, zero = torch.ones_like(c), torch.zeros_like(c)
    rz = torch.stack([c, -s, zero, s, c, zero, zero, zero, o], -1).reshape(-1, 3, 3)
    return rz @ r


_ARM = ("shoulder", "elbow", "wrist")
_LEG = ("hip", "knee", "ankle")
_ATTACHED = {"wrist": ("pinky", "index", "thumb"), "ankle": ("heel", "foot_index")}


def scale_limbs(points: torch.Tensor, names: list[str], leg: torch.Tensor, arm: torch.Tensor,
                shoulder: torch.Tensor) -> torch.Tensor:
    """(m, J, 3) keypoints with each limb segment (hip-knee-ankle, shoulder-elbow-wrist) scaled by ``leg`` /
    ``arm`` (m,) and the shoulders moved from their midpoint by ``shoulder`` (m,); the arm follows its
    shoulder, hands and feet keypoints keep their offsets from the wrist / ankle. Keypoints of other names
    are unchanged."""
    old, new = points, points.clone()
    ix = {n: i for i, n in enumerate(names)}
    sh = [ix.get(f"{s}_shoulder") for s in ("left", "right")]
    if None not in sh:
        centre = old[:, sh].mean(1)
        for i in sh:
            new[:, i] = centre + shoulder[:, None] * (old[:, i] - centre)
    for side in ("left_", "right_"):
        for chain, f in ((_ARM, arm), (_LEG, leg)):
            ids = [ix.get(side + j) for j in chain]
            if None in ids:
                continue
            for a, b in zip(ids[:-1], ids[1:], strict=True):
                new[:, b] = new[:, a] + f[:, None] * (old[:, b] - old[:, a])
            end = ids[-1]
            for k in _ATTACHED.get(chain[-1], ()):
                if side + k in ix:
                    new[:, ix[side + k]] = new[:, end] + old[:, ix[side + k]] - old[:, end]
    return new


def sample_photo_keypoint_set(body: Any, poses: Any, n: int, res: int, camera: PhotoCameraConfig | None = None,
                              seed: int = 0, chunk: int = 2000, jitter: float = 0.02) -> dict[str, torch.Tensor]:
    """Draw ``n`` bodies from ``poses`` (a :class:`~neuralfit.priors.mocap.MocapSet`) through photo cameras.

    Returns float32 tensors: ``rotmat`` (n, 24, 3, 3) in the crop's virtual camera, ``betas`` (n, 10),
    ``joints3d`` (n, 24, 4) virtual camera + confidence 1, ``landmarks3d`` (n, 33, 3) the body's
    BlazePose-33 keypoints in the virtual camera with their hip centre at the origin (mediapipe's world
    landmark frame; what :class:`~neuralfit.nets.lifter.KeypointLifter` predicts), ``keypoints`` (n, 24, 3)
    crop pixels + in-photo flag, ``keypoints_bp`` (n, 24, 3) the same for the body's BlazePose-33 keypoints in
    the spin24 slots they stand for, ``hips_wide`` (n, 2, 2) crop pixels of the two hips pushed outwards by 5 cm, ``face_visible``
    (n, 5), ``focal`` (n,) crop focal in pixels.
    """
    from neuralfit.body.keypoints import keypoint_correspondence
    from neuralfit.nets.rotations import axis_angle_to_matrix
    from neuralfit.priors import JointLimitPrior, ShapePrior
    from neuralfit.priors.sampling import jitter_poses

    from .regressor import FACE

    cam = camera or PhotoCameraConfig()
    gen = torch.Generator().manual_seed(seed)
    names = list(body.keypoint_sets["spin24"].names)
    face_idx = [names.index(k) for k in FACE]
    head_idx, hips = names.index("head"), [names.index("right_hip"), names.index("left_hip")]
    limits, shapes = JointLimitPrior(), ShapePrior()
    bp_all = torch.from_numpy(poses.body_pose).float()
    go_all = torch.from_numpy(poses.global_orient).float()
    keys = ("rotmat", "betas", "joints3d", "landmarks3d", "keypoints", "keypoints_bp", "hips_wide", "face_visible",
            "focal")
    bp_hips = [body.keypoint_sets["blazepose33"].index(k) for k in ("left_hip", "right_hip")]
    corr = torch.from_numpy(keypoint_correspondence(body.keypoint_sets["blazepose33"], body.keypoint_sets["spin24"]))
    bp_have, bp_src = (corr >= 0).nonzero().flatten(), corr[corr >= 0]
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in keys}
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        pick = torch.randint(0, len(bp_all), (m,), generator=gen)
        bp = jitter_poses(bp_all[pick], limits, jitter, 0.3, gen) if jitter > 0 else bp_all[pick]
        betas = shapes.sample(m, seed=int(torch.randint(0, 2**31 - 1, (), generator=gen))).float()[:, :10]
        yaw = (torch.rand(m, generator=gen) * 2 - 1) * math.pi
        ry = axis_angle_to_matrix(torch.stack([torch.zeros(m), yaw, torch.zeros(m)], -1))
        g_world = ry @ axis_angle_to_matrix(go_all[pick])
        local = axis_angle_to_matrix(bp.reshape(m, 23, 3))
        with torch.no_grad():
            out = body(betas=betas, global_orient=g_world[:, None], body_pose=local, full=False, lowres=False)
            kp = body.keypoints(out, "spin24")[..., :3]
            lm = body.keypoints(out, "blazepose33")[..., :3]
        if (cam.leg_scale, cam.arm_scale, cam.shoulder_scale) != ((1.0, 1.0),) * 3:
            f = [lo + (hi - lo) * torch.rand(m, generator=gen) for lo, hi in (cam.leg_scale, cam.arm_scale,
                                                                               cam.shoulder_scale)]
            kp = scale_limbs(kp, names, *f)
            lm = scale_limbs(lm, list(body.keypoint_sets["blazepose33"].names), *f)
        # Where BlazePose itself would put the spin24 joints it has (the body's calibrated keypoints).
        kp_bp = kp.clone()
        kp_bp[:, bp_have] = lm[:, bp_src]
        lm = lm - lm[:, bp_hips].mean(1, keepdim=True)
        root = kp[:, hips].mean(1)
        kp = kp - root[:, None]
        kp_bp = kp_bp - root[:, None]
        # Hips pushed out along the hip line (what a wider-hipped detector reports).
        lateral = _unit(kp[:, hips[1]] - kp[:, hips[0]])
        wide = torch.stack([kp[:, hips[0]] - _WIDE_PROBE_M * lateral, kp[:, hips[1]] + _WIDE_PROBE_M * lateral], 1)

        u = torch.rand(m, 10, generator=gen)
        lo, hi = cam.elevation_deg
        elev = torch.deg2rad(lo + (hi - lo) * u[:, 0])
        dist = cam.distance_m[0] * (cam.distance_m[1] / cam.distance_m[0]) ** u[:, 1]  # log-uniform
        aim = torch.stack([torch.zeros(m), (u[:, 2] * 2 - 1) * cam.aim_jitter_m, torch.zeros(m)], -1)
        centre = torch.stack([torch.zeros(m), dist * elev.sin(), dist * elev.cos()], -1)
        roll = torch.randn(m, generator=gen) * math.radians(cam.roll_std_deg)
        r_wc = _camera_rotation(aim - centre, roll)
        # Image size and focal: long side 1000 px (only ratios matter), focal = k x diagonal.
        aspect = torch.tensor(cam.aspects)[torch.randint(0, len(cam.aspects), (m,), generator=gen)]
        w = torch.where(aspect >= 1, torch.full_like(aspect, 1000.0), 1000.0 * aspect)
        h = w / aspect
        f = (cam.focal_diag[0] + (cam.focal_diag[1] - cam.focal_diag[0]) * u[:, 3]) * torch.sqrt(w**2 + h**2)
        # Where the aimed point lands: anywhere in the central part, further out when truncated.
        reach = torch.where(u[:, 4] < cam.p_truncation, 0.6 + 0.35 * u[:, 5], cam.offcentre * u[:, 5].sqrt())
        ang = u[:, 6] * 2 * math.pi
        du, dv = reach * ang.cos() * w / 2, reach * ang.sin() * h / 2
        r_off = rotation_between(torch.tensor([0.0, 0.0, 1.0]).expand(m, 3), torch.stack([du, dv, f], -1))
        r_cam = r_off @ r_wc  # world -> photo camera
        pc = (r_cam @ (kp - centre[:, None]).transpose(1, 2)).transpose(1, 2)
        pw = (r_cam @ (wide - centre[:, None]).transpose(1, 2)).transpose(1, 2)
        pb = (r_cam @ (kp_bp - centre[:, None]).transpose(1, 2)).transpose(1, 2)

        def project(p: torch.Tensor, f=f, w=w, h=h) -> torch.Tensor:
            z = p[..., 2:].clamp(min=0.05)
            return torch.cat([f[:, None, None] * p[..., :1] / z + w[:, None, None] / 2,
                              f[:, None, None] * p[..., 1:2] / z + h[:, None, None] / 2], -1)

        uv, uvw, uvb = project(pc), project(pw), project(pb)
        inside = (uv[..., 0] >= 0) & (uv[..., 0] < w[:, None]) & (uv[..., 1] >= 0) & (uv[..., 1] < h[:, None])
        inside &= pc[..., 2] > 0.05
        # SPIN crop of the box of the in-photo keypoints (a detector's person box).
        big = torch.tensor(1e9)
        bl = torch.where(inside[..., None], uv, big).amin(1)
        bh = torch.where(inside[..., None], uv, -big).amax(1)
        ok = inside.sum(1) >= 2
        bl, bh = torch.where(ok[:, None], bl, uv.amin(1)), torch.where(ok[:, None], bh, uv.amax(1))
        box_c = (bl + bh) / 2
        scale = cam.box_rescale * (bh - bl).amax(-1).clamp(min=20.0) / 200.0
        k = res / (200.0 * scale)
        crop = (uv - box_c[:, None]) * k[:, None, None] + res / 2
        crop_w = (uvw - box_c[:, None]) * k[:, None, None] + res / 2
        crop_b = (uvb - box_c[:, None]) * k[:, None, None] + res / 2
        f_crop = f * k
        # The crop's virtual camera: the photo camera turned so that its axis passes through the box centre.
        ray = torch.stack([box_c[:, 0] - w / 2, box_c[:, 1] - h / 2, f], -1)
        r_v = rotation_between(ray, torch.tensor([0.0, 0.0, 1.0]).expand(m, 3))
        pv = (r_v @ pc.transpose(1, 2)).transpose(1, 2)
        g_cam = r_v @ r_cam @ g_world
        face_vis = pv[:, face_idx, 2] < pv[:, head_idx : head_idx + 1, 2] + 0.02
        outs["rotmat"].append(torch.cat([g_cam[:, None], local], 1))
        outs["betas"].append(betas)
        outs["joints3d"].append(torch.cat([pv, torch.ones_like(pv[..., :1])], -1))
        outs["landmarks3d"].append((r_v @ r_cam @ lm.transpose(1, 2)).transpose(1, 2))
        outs["keypoints"].append(torch.cat([crop, inside[..., None].float()], -1))
        outs["hips_wide"].append(crop_w)
        outs["keypoints_bp"].append(torch.cat([crop_b, inside[..., None].float()], -1))
        outs["face_visible"].append(face_vis)
        outs["focal"].append(f_crop)
    return {k: torch.cat(v).float() for k, v in outs.items()}


def _swap_table(names: list[str]) -> torch.Tensor:
    perm = list(range(len(names)))
    for i, nm in enumerate(names):
        for a, b in (("left_", "right_"), ("right_", "left_")):
            if nm.startswith(a) and b + nm[len(a):] in names:
                perm[i] = names.index(b + nm[len(a):])
    return torch.tensor(perm)


def detector_keypoints(data: dict[str, torch.Tensor], idx: torch.Tensor, names: list[str], res: int, config: Any,
                       camera: PhotoCameraConfig, gen: torch.Generator) -> torch.Tensor:
    """Detector-like spin24 keypoints (B, 24, 3) for samples ``idx`` of a photo keypoint set (module doc)."""
    from .regressor import corrupt_keypoints

    b = len(idx)
    fmt = torch.multinomial(torch.tensor(camera.format_probs), b, replacement=True, generator=gen)
    # BlazePose inputs are the body's calibrated BlazePose keypoints (where mediapipe puts them on this body).
    is_bp = torch.tensor([f == "blazepose33" for f in camera.formats])[fmt]
    bp = data.get("keypoints_bp", data["keypoints"])[idx]
    kp = torch.where(is_bp[:, None, None], bp, data["keypoints"][idx]).clone()
    hips = [names.index("right_hip"), names.index("left_hip")]
    widen = torch.tensor([HIP_WIDENING_M[camera.formats[i]] for i in range(len(camera.formats))])[fmt]
    t = (widen * (0.5 + torch.rand(b, generator=gen)) / _WIDE_PROBE_M)[:, None, None]
    kp[:, hips, :2] = kp[:, hips, :2] + t * (data["hips_wide"][idx] - kp[:, hips, :2])
    # Left/right confusions: the whole body (a back view read as a front view) or one limb pair.
    perm = _swap_table(names)
    swap_all = torch.rand(b, generator=gen) < camera.p_swap_all
    kp[swap_all] = kp[swap_all][:, perm]
    pairs = [(names.index(f"left_{j}"), names.index(f"right_{j}")) for j in ("ankle", "knee", "wrist", "elbow")]
    swap_one = (torch.rand(b, generator=gen) < camera.p_swap_pair).nonzero().flatten()
    for s in swap_one.tolist():
        a, c = pairs[int(torch.randint(0, len(pairs), (), generator=gen))]
        kp[s, [a, c]] = kp[s, [c, a]]
    out = corrupt_keypoints(kp, names, res, config, gen, data["face_visible"][idx])
    mask = torch.ones(len(camera.formats), len(names), dtype=torch.bool)
    for i, f in enumerate(camera.formats):
        if f != "spin24":
            mask[i] = torch.tensor([nm in DETECTOR_JOINTS[f] for nm in names])
    keep = mask[fmt]
    return torch.where(keep[..., None], out, torch.zeros_like(out))
