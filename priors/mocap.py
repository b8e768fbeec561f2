"""Offline mocap for the default pose prior: DeepMimic clip reader, retargeting to SMPL, mirroring.

The only free human mocap that the package registries carry is the set of 15 DeepMimic clips that
``pybullet`` ships (``pybullet_data/data/motions/humanoid3d_*.txt``). This module turns them into SMPL
``body_pose`` vectors. The extraction is a *build step* (``tools/build_prior_mocap.py``); the result is
shipped as ``priors/assets/mocap_poses.npz`` so nothing needs pybullet at run time.

DeepMimic ``humanoid3d`` conventions (from pybullet's ``humanoid/humanoid.urdf`` and the clip files):

* world frame: Y up, the character faces +x, its right side is +z;
* every joint frame is aligned with the world frame in the rest pose, and the rest pose stands with the
  **arms hanging down** (upper arm and forearm along -y);
* one frame is 44 numbers: duration, root position (3), then rotations as quaternions ``w, x, y, z`` for
  root, chest, neck, right hip, right knee (1 angle), right ankle, right shoulder, right elbow (1 angle),
  left hip, left knee (1), left ankle, left shoulder, left elbow (1). The 1-DoF joints rotate about +z.

SMPL conventions: Y up, the body faces +z, its left side is +x; the rest pose is a **T-pose** (arms along
+-x). A rotation ``L`` written in DeepMimic axes becomes ``B @ L @ B.T`` in SMPL axes with the basis change
``B`` below. The arms also need a fixed offset ``Q`` (a 90 deg turn about z) because their rest directions
differ: the SMPL shoulder rotation is ``B L B^T Q`` and the elbow ``Q^T (B L B^T) Q``; see
``retarget_deepmimic``. ``tests/test_priors_mocap.py`` checks this numerically by comparing limb
directions of both skeletons after forward kinematics.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.spatial.transform import Rotation

from neuralfit.errors import NeuralfitError

# ---------------------------------------------------------------------------------------------
# SMPL joint tables
# ---------------------------------------------------------------------------------------------

SMPL_JOINT_NAMES: tuple[str, ...] = (
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
)
SMPL_PARENTS: tuple[int, ...] = (-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21)


def _mirror_permutation() -> np.ndarray:
    """Index map over the 24 SMPL joints that swaps every left joint with its right twin."""
    perm = np.arange(24)
    for i, name in enumerate(SMPL_JOINT_NAMES):
        if name.startswith("left_"):
            j = SMPL_JOINT_NAMES.index("right_" + name[5:])
            perm[i], perm[j] = j, i
    return perm


SMPL_MIRROR_PERM: np.ndarray = _mirror_permutation()

# Basis change DeepMimic -> SMPL axes: SMPL x (body left) = -z_D, y = y_D, SMPL z (forward) = x_D.
B_DM_TO_SMPL = np.array([[0.0, 0.0, -1.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])

# Rest-pose offsets of the arms: rotate SMPL's T-pose arm direction onto DeepMimic's arms-down rest.
# Left arm: +x -> -y is a -90 deg turn about z; right arm: -x -> -y is +90 deg.
Q_LEFT_ARM = Rotation.from_rotvec([0.0, 0.0, -np.pi / 2]).as_matrix()
Q_RIGHT_ARM = Rotation.from_rotvec([0.0, 0.0, np.pi / 2]).as_matrix()

# Layout of one DeepMimic humanoid3d frame: (name, offset, size). Size 4 = quaternion wxyz, 1 = angle.
DEEPMIMIC_LAYOUT: tuple[tuple[str, int, int], ...] = (
    ("duration", 0, 1), ("root_pos", 1, 3), ("root", 4, 4), ("chest", 8, 4), ("neck", 12, 4),
    ("right_hip", 16, 4), ("right_knee", 20, 1), ("right_ankle", 21, 4), ("right_shoulder", 25, 4),
    ("right_elbow", 29, 1), ("left_hip", 30, 4), ("left_knee", 34, 1), ("left_ankle", 35, 4),
    ("left_shoulder", 39, 4), ("left_elbow", 43, 1),
)
DEEPMIMIC_FRAME_SIZE = 44


@dataclass
class DeepMimicClip:
    """One DeepMimic clip: ``frames`` (T, 44) float64 in the layout above, ``name`` e.g. ``"walk"``."""

    name: str
    frames: np.ndarray

    def field(self, key: str) -> np.ndarray:
        """The columns of one field, (T, size)."""
        for name, off, size in DEEPMIMIC_LAYOUT:
            if name == key:
                return self.frames[:, off : off + size]
        raise NeuralfitError(f"DeepMimic field {key!r} unknown; expected one of {[n for n, _, _ in DEEPMIMIC_LAYOUT]}")


def read_deepmimic_clip(path: str | os.PathLike) -> DeepMimicClip:
    """Read a DeepMimic ``humanoid3d_*.txt`` motion file (JSON with a ``Frames`` list of 44-vectors)."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        frames = np.asarray(data["Frames"], dtype=np.float64)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeuralfitError(f"DeepMimic clip {path}: cannot read ({exc}); expected JSON with 'Frames'") from exc
    if frames.ndim != 2 or frames.shape[1] != DEEPMIMIC_FRAME_SIZE:
        raise NeuralfitError(f"DeepMimic clip {path}: frames have shape {frames.shape}; expected (T, 44) humanoid3d")
    name = path.stem.removeprefix("humanoid3d_")
    return DeepMimicClip(name=name, frames=frames)


def _quat_wxyz_to_matrix(q: np.ndarray) -> np.ndarray:
    """(T, 4) quaternions ``w, x, y, z`` -> (T, 3, 3); normalised first (the files carry 6 digits)."""
    return Rotation.from_quat(q[:, [1, 2, 3, 0]]).as_matrix()


def _conj(mats: np.ndarray) -> np.ndarray:
    """Express (T, 3, 3) rotations given in DeepMimic axes in SMPL axes: ``B R B^T``."""
    return B_DM_TO_SMPL @ mats @ B_DM_TO_SMPL.T


def _z_rotation(angle: np.ndarray) -> np.ndarray:
    """(T,) angles -> (T, 3, 3) rotations about +z (DeepMimic's knee and elbow axis)."""
    rv = np.zeros((angle.shape[0], 3))
    rv[:, 2] = angle
    return Rotation.from_rotvec(rv).as_matrix()


def _aa(mats: np.ndarray) -> np.ndarray:
    return Rotation.from_matrix(mats).as_rotvec()


def retarget_deepmimic(clip: DeepMimicClip) -> tuple[np.ndarray, np.ndarray]:
    """Map a DeepMimic clip onto SMPL's 24-joint skeleton.

    Returns ``global_orient`` (T, 3) and ``body_pose`` (T, 69), axis-angle in SMPL's local joint frames.
    Joints with no DeepMimic counterpart (collars, feet, wrists, hands) stay at zero. DeepMimic's single
    chest joint is shared equally by spine1/2/3 (the same axis, a third of the angle each, so their
    product is exactly the chest rotation) and its neck by SMPL's neck and head.
    """
    T = clip.frames.shape[0]
    pose = np.zeros((T, 24, 3))
    rot = {k: _conj(_quat_wxyz_to_matrix(clip.field(k))) for k in (
        "root", "chest", "neck", "right_hip", "right_ankle", "right_shoulder",
        "left_hip", "left_ankle", "left_shoulder")}
    for side in ("left", "right"):
        rot[f"{side}_knee"] = _conj(_z_rotation(clip.field(f"{side}_knee")[:, 0]))
        rot[f"{side}_elbow"] = _conj(_z_rotation(clip.field(f"{side}_elbow")[:, 0]))

    j = SMPL_JOINT_NAMES.index
    pose[:, 0] = _aa(rot["root"])
    chest = _aa(rot["chest"])
    for name in ("spine1", "spine2", "spine3"):
        pose[:, j(name)] = chest / 3.0
    neck = _aa(rot["neck"])
    pose[:, j("neck")] = neck / 2.0
    pose[:, j("head")] = neck / 2.0
    for side, q in (("left", Q_LEFT_ARM), ("right", Q_RIGHT_ARM)):
        pose[:, j(f"{side}_hip")] = _aa(rot[f"{side}_hip"])
        pose[:, j(f"{side}_knee")] = _aa(rot[f"{side}_knee"])
        pose[:, j(f"{side}_ankle")] = _aa(rot[f"{side}_ankle"])
        # Collar stays identity, so the shoulder carries the whole chest->upper-arm rotation plus the
        # rest-pose offset; the elbow is the DeepMimic elbow seen from the offset arm frame.
        pose[:, j(f"{side}_shoulder")] = _aa(rot[f"{side}_shoulder"] @ q)
        pose[:, j(f"{side}_elbow")] = _aa(q.T @ rot[f"{side}_elbow"] @ q)
    flat = pose.reshape(T, 72)
    return flat[:, :3].copy(), flat[:, 3:].copy()


def mirror_pose(pose: np.ndarray) -> np.ndarray:
    """Left-right mirror SMPL poses: (N, 72) full or (N, 69) body pose, axis-angle.

    Reflecting the body in its sagittal plane (x -> -x) maps a rotation vector (a, b, c) to (a, -b, -c);
    the left and right joints then swap places.
    """
    pose = np.asarray(pose)
    if pose.ndim != 2 or pose.shape[1] not in (69, 72):
        raise NeuralfitError(f"pose to mirror has shape {pose.shape}; expected (N, 72) or (N, 69)")
    full = pose.shape[1] == 72
    p = pose.reshape(len(pose), -1, 3)
    if not full:
        p = np.concatenate([np.zeros_like(p[:, :1]), p], axis=1)
    out = p[:, SMPL_MIRROR_PERM] * np.array([1.0, -1.0, -1.0], dtype=p.dtype)
    if not full:
        out = out[:, 1:]
    return out.reshape(len(pose), -1)


# ---------------------------------------------------------------------------------------------
# The shipped pose set
# ---------------------------------------------------------------------------------------------

MOCAP_ASSET = "mocap_poses.npz"


def pybullet_motion_dir() -> Path:
    """Folder of the DeepMimic clips inside the installed ``pybullet_data`` (build extra)."""
    try:
        import pybullet_data
    except ModuleNotFoundError as exc:
        raise NeuralfitError("pybullet is not installed; `pip install neuralfit[build]` to extract the mocap") from exc
    return Path(pybullet_data.getDataPath()) / "data" / "motions"


def extract_pybullet_mocap(motion_dir: str | os.PathLike | None = None) -> dict[str, np.ndarray]:
    """Read and retarget every ``humanoid3d_*.txt`` clip, add mirrored copies.

    Returns arrays: ``body_pose`` (N, 69) float32, ``global_orient`` (N, 3) float32, ``clip`` (N,) int
    index into ``clip_names``, ``mirrored`` (N,) bool, ``clip_names`` (C,) str.
    """
    folder = Path(motion_dir) if motion_dir is not None else pybullet_motion_dir()
    files = sorted(folder.glob("humanoid3d_*.txt"))
    if not files:
        raise NeuralfitError(f"no humanoid3d_*.txt DeepMimic clips in {folder}")
    poses, orients, clips, mirrored, names = [], [], [], [], []
    for ci, f in enumerate(files):
        clip = read_deepmimic_clip(f)
        go, bp = retarget_deepmimic(clip)
        full = np.concatenate([go, bp], axis=1)
        mir = mirror_pose(full)
        for m, arr in ((False, full), (True, mir)):
            orients.append(arr[:, :3])
            poses.append(arr[:, 3:])
            clips.append(np.full(len(arr), ci))
            mirrored.append(np.full(len(arr), m))
        names.append(clip.name)
    return {
        "body_pose": np.concatenate(poses).astype(np.float32),
        "global_orient": np.concatenate(orients).astype(np.float32),
        "clip": np.concatenate(clips).astype(np.int16),
        "mirrored": np.concatenate(mirrored),
        "clip_names": np.array(names),
    }


@dataclass
class MocapSet:
    """The retargeted pose set. ``body_pose`` (N, 69), ``global_orient`` (N, 3) float32 axis-angle."""

    body_pose: np.ndarray
    global_orient: np.ndarray
    clip: np.ndarray
    mirrored: np.ndarray
    clip_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.body_pose)

    def select(self, clips: tuple[str, ...] | list[str], keep: bool = True) -> MocapSet:
        """Frames whose clip name is in ``clips`` (``keep=True``) or not in it (``keep=False``)."""
        unknown = set(clips) - set(self.clip_names)
        if unknown:
            raise NeuralfitError(f"mocap clips {sorted(unknown)} unknown; expected some of {list(self.clip_names)}")
        ids = [self.clip_names.index(c) for c in clips]
        mask = np.isin(self.clip, ids)
        if not keep:
            mask = ~mask
        return MocapSet(self.body_pose[mask], self.global_orient[mask], self.clip[mask], self.mirrored[mask],
                        self.clip_names)


def default_mocap_path() -> Path:
    """Path of the shipped pose set inside the installed package."""
    return Path(str(resources.files("neuralfit.priors") / "assets" / MOCAP_ASSET))


def load_mocap(path: str | os.PathLike | None = None) -> MocapSet:
    """Load a retargeted pose set (default: the DeepMimic set shipped in ``neuralfit/priors/assets``).

    Any ``.npz`` with ``body_pose`` (N, 69) and ``global_orient`` (N, 3) axis-angle loads (e.g. AMASS
    frames a user converted); optional ``clip`` or ``clip_id`` (N,) int labels whole clips for held-out
    splits (without it every frame is its own clip), ``clip_names`` (C,) names them, ``mirrored`` (N,).
    """
    path = Path(path) if path is not None else default_mocap_path()
    if not path.is_file():
        raise NeuralfitError(f"mocap pose set {path} not found; build it with tools/build_prior_mocap.py")
    try:
        z = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise NeuralfitError(f"pose set {path}: not a readable .npz ({exc})") from exc
    with z:
        if "body_pose" not in z or "global_orient" not in z:
            raise NeuralfitError(f"pose set {path}: needs 'body_pose' (N, 69) and 'global_orient' (N, 3) arrays; "
                                 f"found {sorted(z.files)}")
        bp, go = z["body_pose"].astype(np.float32), z["global_orient"].astype(np.float32)
        n = len(bp)
        if bp.shape != (n, 69) or go.shape != (n, 3) or n == 0:
            raise NeuralfitError(f"pose set {path}: body_pose {bp.shape}, global_orient {go.shape}; "
                                 "expected (N, 69) and (N, 3) with N > 0, axis-angle")
        if not (np.isfinite(bp).all() and np.isfinite(go).all()):
            raise NeuralfitError(f"pose set {path}: body_pose/global_orient contain NaN or inf")
        key = "clip" if "clip" in z else "clip_id" if "clip_id" in z else None
        clip = z[key].astype(np.int64) if key else np.arange(n)
        if clip.shape != (n,):
            raise NeuralfitError(f"pose set {path}: {key} has shape {clip.shape}; expected ({n},)")
        names = (tuple(str(s) for s in z["clip_names"]) if "clip_names" in z
                 else tuple(str(i) for i in range(int(clip.max()) + 1)))
        if clip.min() < 0 or clip.max() >= len(names):
            raise NeuralfitError(f"pose set {path}: clip ids must index clip_names (0..{len(names) - 1})")
        mirrored = z["mirrored"].astype(bool) if "mirrored" in z else np.zeros(n, dtype=bool)
    return MocapSet(body_pose=bp, global_orient=go, clip=clip, mirrored=mirrored, clip_names=names)


def concat_mocap(sets: list[MocapSet]) -> MocapSet:
    """One pose set from several; clip ids are renumbered so that every clip stays distinct."""
    names: list[str] = []
    clips = []
    for s in sets:
        clips.append(s.clip + len(names))
        names.extend(s.clip_names)
    return MocapSet(np.concatenate([s.body_pose for s in sets]), np.concatenate([s.global_orient for s in sets]),
                    np.concatenate(clips), np.concatenate([s.mirrored for s in sets]), tuple(names))


def with_mirrors(s: MocapSet) -> MocapSet:
    """The set plus its left-right mirror images (same clip ids: a clip and its mirror split together)."""
    full = mirror_pose(np.concatenate([s.global_orient, s.body_pose], axis=1))
    return MocapSet(np.concatenate([s.body_pose, full[:, 3:]]), np.concatenate([s.global_orient, full[:, :3]]),
                    np.concatenate([s.clip, s.clip]), np.concatenate([s.mirrored, ~s.mirrored]), s.clip_names)


def save_mocap(path: str | os.PathLike, arrays: dict[str, np.ndarray]) -> None:
    """Write the pose set compactly (float16 angles: 1e-3 rad steps, far below mocap noise), atomically."""
    from neuralfit.io.atomic import atomic_path

    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(
            tmp,
            body_pose=arrays["body_pose"].astype(np.float16),
            global_orient=arrays["global_orient"].astype(np.float16),
            clip=arrays["clip"].astype(np.int16),
            mirrored=arrays["mirrored"].astype(bool),
            clip_names=np.asarray(arrays["clip_names"]).astype(str),
        )
def split_clips(clip_names: tuple[str, ...] | list[str], fraction: float) -> tuple[str, ...]:
    """Clips held out for validation: those whose name's CRC32 falls in the lowest ``fraction``.

    A hash of the name, not a random draw over the list, so a clip's side of the split does not change
    when other clips are added (DeepMimic + CMU + a user's set) and the prior and the lifter agree.
    """
    import zlib

    if not 0.0 <= fraction < 1.0:
        raise NeuralfitError(f"held-out fraction {fraction}; expected 0 <= fraction < 1")
    return tuple(c for c in clip_names if zlib.crc32(c.encode()) / 2**32 < fraction)
