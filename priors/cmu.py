"""CMU Graphics Lab mocap (``cmu_free_subset_v1.npz``) retargeted to SMPL's 24-joint tree.

The archive (``../shared/data/mocap/``; its README gives the layout) keeps three source skeletons: A, a
fixed CMU-ASF-like tree; B, cgspeed's "Daz-friendly" BVH tree; C, cgspeed's "MotionBuilder-friendly"
tree with per-subject bone lengths. All share SMPL's world axes (Y up, facing +Z, left side +X) and
BVH forward kinematics (``X[c] = X[p] + G[p] @ offset[c]``: a joint's global rotation orients the bone to
its child, exactly as in SMPL), so no basis change is needed. Only the rest poses differ (A/C: CMU's
default pose with the thighs splayed ~20 deg and arms out sideways; B: a T-pose; SMPL: a T-pose).

Retargeting, per SMPL joint ``j`` driven by source segment ``s`` (:data:`SEGMENTS`):

* limbs (one child bone each): ``G_smpl[j] = G_src[s] @ C_j``, where ``C_j`` is the
  minimal rotation taking SMPL's rest bone direction onto the source's rest bone direction (computed
  per clip, because C's bone lengths differ per subject). Then ``G_smpl[j] d_smpl = G_src[s] d_src``:
  the SMPL bone points exactly where the source bone points, and its twist is the source segment's;
* leaf joints (head, feet, wrists: SMPL has no child joint to aim) copy the source segment's rotation
  relative to its parent segment, seen through the parent's ``C``;
* torso: pelvis, spine1/2/3, neck and collars copy the source root, lower-back, mid-back, chest, neck
  and clavicle segments (B has one abdomen segment for spine1 and spine2) with no rest alignment, so
  a source standing straight gives SMPL's zero torso pose (see ``_COPIED``);
* hands (22, 23) stay zero (the sources' finger data are mostly static).

Directions agree to float rounding for thighs, shins, feet, upper arms and forearms; torso bones keep
the rest-shape difference of the two skeletons;
``tests/test_priors_cmu.py`` checks this by forward kinematics of both skeletons, plus knees/elbows
never bent backwards and feet on the floor.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from neuralfit.errors import NeuralfitError

from .mocap import SMPL_JOINT_NAMES, SMPL_PARENTS

#: Requested acknowledgement of the CMU database; kept in every file derived from it.
CMU_CREDIT = ("The data used in this project was obtained from mocap.cs.cmu.edu. "
              "The database was created with funding from NSF EIA-0196217.")
CMU_LICENSE = ("CMU Graphics Lab Motion Capture Database (mocap.cs.cmu.edu): free for all uses; "
               "not to be resold directly, even in converted form.")

#: Where the shared archive lives relative to the repository (CI can read ../shared/).
DEFAULT_ARCHIVE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mocap" / "cmu_free_subset_v1.npz"

# Per part: SMPL joint -> (source segment whose rotation drives it, source joint at the bone's end or
# None for a leaf joint). The segment's global rotation orients the bone from its joint to that end.
_SIDES = {"A": ("L", "R"), "B": ("l", "r"), "C": ("Left", "Right")}
SEGMENTS: dict[str, dict[str, tuple[str, str | None]]] = {
    "A": {"pelvis": ("Hips", None), "spine1": ("LowerBack", "Spine"), "spine2": ("Spine", "Spine1"),
          "spine3": ("Thorax", "Neck"), "neck": ("Neck", "Head"), "head": ("Head", None)},
    # B's abdomen segment spans SMPL's spine1 and spine2: both take its rotation.
    "B": {"pelvis": ("hip", None), "spine1": ("abdomen", "chest"), "spine2": ("abdomen", "chest"),
          "spine3": ("chest", "neck"), "neck": ("neck", "head"), "head": ("head", None)},
    # C's Neck joint sits at the chest top with no offset, so no source bone aims SMPL's spine3 -> neck.
    "C": {"pelvis": ("Hips", None), "spine1": ("LowerBack", "Spine"), "spine2": ("Spine", "Spine1"),
          "spine3": ("Spine1", None), "neck": ("Neck1", "Head"), "head": ("Head", None)},
}
_LIMBS = {  # SMPL joint stem -> per part (segment, end) with {s} the side prefix
    "A": {"hip": ("{s}Hip", "{s}Knee"), "knee": ("{s}Knee", "{s}Ankle"), "ankle": ("{s}Ankle", "{s}ToeBase"),
          "foot": ("{s}ToeBase", None), "collar": ("{s}Clavicle", "{s}Shoulder"),
          "shoulder": ("{s}Shoulder", "{s}Elbow"), "elbow": ("{s}Elbow", "{s}Wrist"), "wrist": ("{s}Hand", None)},
    "B": {"hip": ("{s}Thigh", "{s}Shin"), "knee": ("{s}Shin", "{s}Foot"), "ankle": ("{s}Foot", "{s}Foot_end"),
          "foot": ("{s}Foot_end", None), "collar": ("{s}Collar", "{s}Shldr"),
          "shoulder": ("{s}Shldr", "{s}ForeArm"), "elbow": ("{s}ForeArm", "{s}Hand"), "wrist": ("{s}Hand", None)},
    "C": {"hip": ("{s}UpLeg", "{s}Leg"), "knee": ("{s}Leg", "{s}Foot"), "ankle": ("{s}Foot", "{s}ToeBase"),
          "foot": ("{s}ToeBase", None), "collar": ("{s}Shoulder", "{s}Arm"),
          "shoulder": ("{s}Arm", "{s}ForeArm"), "elbow": ("{s}ForeArm", "{s}Hand"), "wrist": ("{s}Hand", None)},
}
for _p, _table in _LIMBS.items():
    for _side, _pre in zip(("left", "right"), _SIDES[_p], strict=True):
        for _stem, (_seg, _end) in _table.items():
            SEGMENTS[_p][f"{_side}_{_stem}"] = (_seg.format(s=_pre), None if _end is None else _end.format(s=_pre))
del _p, _table, _side, _pre, _stem, _seg, _end

#: Hinge axes of the left knee and elbow as measured in SMPL's local frames when the rest alignment is the
#: minimal rotation (unit vectors; mean over every 3rd clip, frames bent > 0.5 rad; spread 0.4-1.6 deg).
#: The sources' rest arms are turned ~29 deg about their long axis against SMPL's palms-down T-pose, so
#: elbows would flex about a tilted axis; :func:`rest_alignment` adds a twist about the bone that maps
#: them onto SMPL's flexion axes (knee +x, left elbow -y). Right side: mirrored, (a, b, c) -> (a, -b, -c).
HINGE_AXES: dict[str, dict[str, tuple[float, float, float]]] = {
    "A": {"knee": (0.997, 0.076, -0.016), "elbow": (-0.011, -0.875, 0.483)},
    "B": {"knee": (0.995, 0.100, -0.029), "elbow": (-0.028, -0.883, 0.468)},
    "C": {"knee": (0.997, 0.076, -0.016), "elbow": (-0.011, -0.875, 0.483)},
}
SMPL_HINGE_AXES: dict[str, tuple[float, float, float]] = {"knee": (1.0, 0.0, 0.0), "elbow": (0.0, -1.0, 0.0)}
_HINGE_PARENT = {"knee": "hip", "elbow": "shoulder"}

#: SMPL joints whose bone direction is transferred exactly (a child bone and a source end joint).
AIMED_JOINTS: tuple[str, ...] = tuple(f"{s}_{j}" for s in ("left", "right")
                                      for j in ("hip", "knee", "ankle", "shoulder", "elbow"))
#: Torso joints copy their segment's global rotation unchanged (rest frames agree: Y up, facing +Z).
#: Aiming them too would bend SMPL's rest torso into the source's rest curvature (measured: spine3 at
#: -0.5 rad and collars raised 27 deg in every standing frame), so a standing source would not give
#: SMPL's zero pose; their bone directions keep the constant rest-shape difference instead.
_COPIED = ("pelvis", "spine1", "spine2", "spine3", "neck", "left_collar", "right_collar")
#: Leaf joints: rotation relative to the parent segment (SMPL has no child joint to aim).
LEAF_JOINTS: tuple[str, ...] = ("head", "left_foot", "right_foot", "left_wrist", "right_wrist")


def quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """(..., 4) quaternions ``w, x, y, z`` (renormalised: the archive stores float16) -> (..., 3, 3)."""
    q = np.asarray(q, dtype=np.float64)
    flat = q.reshape(-1, 4)
    flat = flat / np.linalg.norm(flat, axis=-1, keepdims=True)
    return Rotation.from_quat(flat[:, [1, 2, 3, 0]]).as_matrix().reshape(q.shape[:-1] + (3, 3))


def source_fk(parents: np.ndarray, offsets: np.ndarray, rot: np.ndarray,
              root_trans: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """BVH forward kinematics: local rotations (N, J, 3, 3) -> global rotations and positions (N, J, 3)."""
    n, nj = rot.shape[:2]
    g = np.empty_like(rot)
    x = np.zeros((n, nj, 3))
    for j in range(nj):
        p = int(parents[j])
        if p < 0:
            g[:, j] = rot[:, j]
            if root_trans is not None:
                x[:, j] = root_trans
        else:
            g[:, j] = g[:, p] @ rot[:, j]
            x[:, j] = x[:, p] + g[:, p] @ offsets[j]
    return g, x


def smpl_fk(local: np.ndarray, rest_joints: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """SMPL forward kinematics (numpy): local rotations (N, 24, 3, 3) -> global rotations, joints (N, 24, 3)."""
    offsets = np.asarray(rest_joints, dtype=np.float64).copy()
    offsets[1:] = offsets[1:] - offsets[list(SMPL_PARENTS[1:])]
    offsets[0] = 0.0
    return source_fk(np.asarray(SMPL_PARENTS), offsets, local)


def min_rotation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """The smallest rotation taking direction ``a`` onto direction ``b`` (both (3,)), as (3, 3)."""
    a = a / np.linalg.norm(a)
    b = b / np.linalg.norm(b)
    axis = np.cross(a, b)
    s = np.linalg.norm(axis)
    angle = np.arctan2(s, float(a @ b))
    if s < 1e-12:
        if a @ b > 0:
            return np.eye(3)
        perp = np.cross(a, [1.0, 0.0, 0.0] if abs(a[0]) < 0.9 else [0.0, 1.0, 0.0])
        return Rotation.from_rotvec(np.pi * perp / np.linalg.norm(perp)).as_matrix()
    return Rotation.from_rotvec(axis / s * angle).as_matrix()


def _twist_between(axis: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Rotation about ``axis`` by the signed angle from ``a`` to ``b`` projected onto the plane normal to it."""
    n = axis / np.linalg.norm(axis)
    pa, pb = a - (a @ n) * n, b - (b @ n) * n
    angle = np.arctan2(np.cross(pa, pb) @ n, pa @ pb)
    return Rotation.from_rotvec(n * angle).as_matrix()


def rest_alignment(part: str, names: list[str], parents: np.ndarray, offsets: np.ndarray,
                   rest_joints: np.ndarray) -> dict[str, np.ndarray]:
    """Per SMPL joint, ``C_j`` (3, 3): SMPL's rest bone direction -> the source's rest bone direction.

    The source's rest pose has every rotation identity, so its rest bone directions are sums of offsets.
    Leaf joints get their parent's ``C`` (their rotation is transferred relative to the parent).
    """
    idx = {n: i for i, n in enumerate(names)}
    _, xr = source_fk(parents, offsets, np.tile(np.eye(3), (1, len(names), 1, 1)))
    out: dict[str, np.ndarray] = {j: np.eye(3) for j in _COPIED}
    for j, (seg, end) in SEGMENTS[part].items():
        if end is None or j in _COPIED:
            continue
        child = next(c for c in range(24) if SMPL_PARENTS[c] == SMPL_JOINT_NAMES.index(j))
        d_smpl = rest_joints[child] - rest_joints[SMPL_JOINT_NAMES.index(j)]
        out[j] = min_rotation(d_smpl, xr[0, idx[end]] - xr[0, idx[seg]])
    for side, sign in (("left", 1.0), ("right", -1.0)):
        for hinge, parent in _HINGE_PARENT.items():
            flip = np.array([1.0, sign, sign])
            measured, target = np.array(HINGE_AXES[part][hinge]) * flip, np.array(SMPL_HINGE_AXES[hinge]) * flip
            for j in (f"{side}_{parent}", f"{side}_{hinge}"):
                ji = SMPL_JOINT_NAMES.index(j)
                child = next(c for c in range(24) if SMPL_PARENTS[c] == ji)
                out[j] = out[j] @ _twist_between(rest_joints[child] - rest_joints[ji], target, measured)
    for j in LEAF_JOINTS:
        out[j] = out[SMPL_JOINT_NAMES[SMPL_PARENTS[SMPL_JOINT_NAMES.index(j)]]]
    return out


def retarget_clip(part: str, names: list[str], parents: np.ndarray, offsets: np.ndarray, quat: np.ndarray,
                  rest_joints: np.ndarray) -> np.ndarray:
    """One clip's frames (N, J, 4) -> SMPL local rotations (N, 24, 3, 3). See the module doc."""
    if part not in SEGMENTS:
        raise NeuralfitError(f"CMU part {part!r} unknown; expected one of {sorted(SEGMENTS)}")
    missing = sorted({s for s, e in SEGMENTS[part].values() for s in (s, e) if s is not None} - set(names))
    if missing:
        raise NeuralfitError(f"CMU part {part}: joints {missing} not in the archive's skeleton")
    idx = {n: i for i, n in enumerate(names)}
    g_src, _ = source_fk(parents, offsets, quat_wxyz_to_matrix(quat))
    c = rest_alignment(part, names, parents, offsets, rest_joints)
    n = len(quat)
    glob = np.tile(np.eye(3), (n, 24, 1, 1))
    for j, (seg, _) in SEGMENTS[part].items():
        if j not in LEAF_JOINTS:
            glob[:, SMPL_JOINT_NAMES.index(j)] = g_src[:, idx[seg]] @ c[j]
    for j in LEAF_JOINTS:
        # Leaf: the source segment's rotation relative to its parent segment, in the SMPL parent's frame.
        seg = SEGMENTS[part][j][0]
        pj = SMPL_PARENTS[SMPL_JOINT_NAMES.index(j)]
        pseg = SEGMENTS[part][SMPL_JOINT_NAMES[pj]][0]
        rel = np.swapaxes(g_src[:, idx[pseg]], -1, -2) @ g_src[:, idx[seg]]
        glob[:, SMPL_JOINT_NAMES.index(j)] = glob[:, pj] @ c[j].T @ rel @ c[j]
    local = np.empty_like(glob)
    local[:, 0] = glob[:, 0]
    for ji in range(1, 24):
        local[:, ji] = np.swapaxes(glob[:, SMPL_PARENTS[ji]], -1, -2) @ glob[:, ji]
    local[:, 22:] = np.eye(3)
    return local


@dataclass
class CmuPoses:
    """Retargeted CMU frames: axis-angle ``global_orient`` (N, 3), ``body_pose`` (N, 69), ``transl`` (N, 3)
    (the source root position, metres), ``clip_id`` (N,) into ``clip_names``, ``part`` (N,) 'A'/'B'/'C'."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    clip_id: np.ndarray
    part: np.ndarray
    clip_names: np.ndarray


def open_archive(path: str | os.PathLike | None = None) -> np.lib.npyio.NpzFile:
    path = Path(path) if path is not None else DEFAULT_ARCHIVE
    if not path.is_file():
        raise NeuralfitError(f"CMU mocap archive {path} not found (expected ../shared/data/mocap/cmu_free_subset_v1.npz)")
    return np.load(path, allow_pickle=False)


def clip_rotations(d: np.lib.npyio.NpzFile, clip: int, rest_joints: np.ndarray) -> tuple[str, np.ndarray, np.ndarray]:
    """(part, source frame mask within the part, SMPL local rotations) of one global clip id."""
    part = str(d["clip_part"][clip])
    names = [str(s) for s in d[f"{part}_joint_names"]]
    mask = d[f"{part}_clip_id"] == clip
    offs = d[f"{part}_clip_offsets"][clip - int(d[f"{part}_clip_start"])].astype(np.float64)
    local = retarget_clip(part, names, d[f"{part}_parents"], offs, d[f"{part}_quat"][mask], rest_joints)
    return part, mask, local


def retarget_archive(path: str | os.PathLike | None = None, rest_joints: np.ndarray | None = None,
                     clips: list[int] | None = None) -> CmuPoses:
    """Retarget every clip (or ``clips``) of the archive; ``rest_joints`` (24, 3) default: the free body's."""
    d = open_archive(path)
    rest = default_rest_joints() if rest_joints is None else np.asarray(rest_joints, dtype=np.float64)
    ids = range(len(d["clip_names"])) if clips is None else clips
    go, bp, tr, cid, parts = [], [], [], [], []
    for clip in ids:
        part, mask, local = clip_rotations(d, int(clip), rest)
        aa = Rotation.from_matrix(local.reshape(-1, 3, 3)).as_rotvec().reshape(len(local), 72)
        go.append(aa[:, :3])
        bp.append(aa[:, 3:])
        tr.append(d[f"{part}_root_trans"][mask].astype(np.float64))
        cid.append(np.full(len(local), clip, dtype=np.int32))
        parts.append(np.full(len(local), part))
    return CmuPoses(np.concatenate(go), np.concatenate(bp), np.concatenate(tr), np.concatenate(cid),
                    np.concatenate(parts), np.asarray(d["clip_names"]).astype(str))


def default_rest_joints() -> np.ndarray:
    """(24, 3) rest joints of the free body (betas 0), pelvis at the origin."""
    import torch

    from neuralfit.body import load_body_model

    body = load_body_model("free")
    with torch.no_grad():
        j = body(betas=torch.zeros(1, 10)).joints[0, :24].double().numpy()
    return j - j[0]


CMU_ASSET = "cmu_poses.npz"


def default_cmu_path() -> Path:
    """Path of the shipped CMU pose set inside the installed package."""
    from importlib import resources

    return Path(str(resources.files("neuralfit.priors") / "assets" / CMU_ASSET))


def save_cmu_poses(path: str | os.PathLike, poses: CmuPoses) -> None:
    """Write the pose set in :func:`~neuralfit.priors.mocap.load_mocap`'s format (float16 angles:
    1e-3 rad steps, below mocap noise), with the CMU credit line and per-frame clip ids, atomically."""
    from neuralfit.io.atomic import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            body_pose=poses.body_pose.astype(np.float16),
            global_orient=poses.global_orient.astype(np.float16),
            transl=poses.transl.astype(np.float16),
            clip=poses.clip_id.astype(np.int16),
            mirrored=np.zeros(len(poses.clip_id), dtype=bool),
            clip_names=poses.clip_names.astype(str),
            part=poses.part.astype("<U1"),
            license=np.array(CMU_LICENSE),
            credit=np.array(CMU_CREDIT),
            source=np.array("cmu_free_subset_v1.npz retargeted by neuralfit.priors.cmu (tools/build_cmu_poses.py)"),
        )
