"""Named keypoint sets as fixed linear maps from a body's joints and a few surface vertices.

Every set is a matrix ``W`` (J, 24 + L) applied to ``[joints (24); landmark vertices (L)]``, so keypoints
are batched and differentiable: ``kp = W @ [joints; vertices[landmark_ids]]`` -> (B, J, 3). The L
landmarks (nose, eyes, ears, mouth corners, head top, chin, toes, heels, finger tips) are surface
vertices whose ids depend on the body: published SMPL vertex ids for real SMPL, ids found geometrically
by the build script for the free body. A keypoint a body cannot define has a zero row and ``valid=False``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

#: The 12 limb joints (shoulders, elbows, wrists, hips, knees, ankles; left first) by their BlazePose /
#: spin24 keypoint names: what the real benchmarks score, the lifter validates on and the start counts.
LIMB12_NAMES: tuple[str, ...] = (
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hip", "right_hip", "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

#: Surface landmarks every body tries to define (order fixed; index into ``[joints; landmarks]`` is 24 + i).
LANDMARK_NAMES: list[str] = [
    "nose", "leye", "reye", "lear", "rear", "mouth_l", "mouth_r", "head_top", "chin",
    "lbigtoe", "lsmalltoe", "lheel", "rbigtoe", "rsmalltoe", "rheel",
    "lthumb", "lindex", "lmiddle", "lring", "lpinky", "rthumb", "rindex", "rmiddle", "rring", "rpinky",
]  # fmt: skip

#: SMPL (6890-vertex topology) vertex ids: face, toes, heels and finger tips as published with smplx
#: (``smplx.vertex_ids['smplh']``); head top 411 as used by SPIN/SMPLify for the LSP head top.
#: Mouth corners and chin have no published ids, so real SMPL leaves them undefined.
SMPL_LANDMARK_IDS: dict[str, int] = {
    "nose": 332, "reye": 6260, "leye": 2800, "rear": 4071, "lear": 583, "head_top": 411,
    "rthumb": 6191, "rindex": 5782, "rmiddle": 5905, "rring": 6016, "rpinky": 6133,
    "lthumb": 2746, "lindex": 2319, "lmiddle": 2445, "lring": 2556, "lpinky": 2673,
    "lbigtoe": 3216, "lsmalltoe": 3226, "lheel": 3387, "rbigtoe": 6617, "rsmalltoe": 6624, "rheel": 6787,
}  # fmt: skip
SMPL_NUM_VERTICES = 6890

_J = {
    "pelvis": 0, "lhip": 1, "rhip": 2, "spine1": 3, "lknee": 4, "rknee": 5, "spine2": 6, "lankle": 7,
    "rankle": 8, "spine3": 9, "lfoot": 10, "rfoot": 11, "neck": 12, "lcollar": 13, "rcollar": 14,
    "head": 15, "lshoulder": 16, "rshoulder": 17, "lelbow": 18, "relbow": 19, "lwrist": 20, "rwrist": 21,
    "lhand": 22, "rhand": 23,
}  # fmt: skip

# A source is a joint name, a landmark name, a tuple of sources (their mean), a dict source -> weight (a
# weighted sum, weights summing to 1: a calibrated detector keypoint), or None (undefined).
Source = str | tuple | dict | None

COCO17 = [
    ("nose", "nose"), ("left_eye", "leye"), ("right_eye", "reye"), ("left_ear", "lear"),
    ("right_ear", "rear"), ("left_shoulder", "lshoulder"), ("right_shoulder", "rshoulder"),
    ("left_elbow", "lelbow"), ("right_elbow", "relbow"), ("left_wrist", "lwrist"), ("right_wrist", "rwrist"),
    ("left_hip", "lhip"), ("right_hip", "rhip"), ("left_knee", "lknee"), ("right_knee", "rknee"),
    ("left_ankle", "lankle"), ("right_ankle", "rankle"),
]  # fmt: skip

BODY25 = [
    ("Nose", "nose"), ("Neck", "neck"), ("RShoulder", "rshoulder"), ("RElbow", "relbow"),
    ("RWrist", "rwrist"), ("LShoulder", "lshoulder"), ("LElbow", "lelbow"), ("LWrist", "lwrist"),
    ("MidHip", ("lhip", "rhip")), ("RHip", "rhip"), ("RKnee", "rknee"), ("RAnkle", "rankle"),
    ("LHip", "lhip"), ("LKnee", "lknee"), ("LAnkle", "lankle"), ("REye", "reye"), ("LEye", "leye"),
    ("REar", "rear"), ("LEar", "lear"), ("LBigToe", "lbigtoe"), ("LSmallToe", "lsmalltoe"),
    ("LHeel", "lheel"), ("RBigToe", "rbigtoe"), ("RSmallToe", "rsmalltoe"), ("RHeel", "rheel"),
]  # fmt: skip

# MediaPipe BlazePose 33. Inner/outer eye corners are not defined on either body; the hand points
# (pinky/index/thumb) use the finger tips, a few cm beyond BlazePose's knuckle-ish points.
BLAZEPOSE33 = [
    ("nose", "nose"), ("left_eye_inner", None), ("left_eye", "leye"), ("left_eye_outer", None),
    ("right_eye_inner", None), ("right_eye", "reye"), ("right_eye_outer", None), ("left_ear", "lear"),
    ("right_ear", "rear"), ("mouth_left", "mouth_l"), ("mouth_right", "mouth_r"),
    ("left_shoulder", "lshoulder"), ("right_shoulder", "rshoulder"), ("left_elbow", "lelbow"),
    ("right_elbow", "relbow"), ("left_wrist", "lwrist"), ("right_wrist", "rwrist"),
    ("left_pinky", "lpinky"), ("right_pinky", "rpinky"), ("left_index", "lindex"),
    ("right_index", "rindex"), ("left_thumb", "lthumb"), ("right_thumb", "rthumb"), ("left_hip", "lhip"),
    ("right_hip", "rhip"), ("left_knee", "lknee"), ("right_knee", "rknee"), ("left_ankle", "lankle"),
    ("right_ankle", "rankle"), ("left_heel", "lheel"), ("right_heel", "rheel"),
    ("left_foot_index", "lbigtoe"), ("right_foot_index", "rbigtoe"),
]  # fmt: skip

# SPIN's 24 ground-truth joints (constants.JOINT_NAMES[25:]); its first 14 are the LSP order.
# H36M/MPII-only points map to the nearest SMPL equivalents: thorax = mean of collars, spine = spine2,
# "Head (H36M)" = head joint, jaw = chin landmark.
SPIN24 = [
    ("right_ankle", "rankle"), ("right_knee", "rknee"), ("right_hip", "rhip"), ("left_hip", "lhip"),
    ("left_knee", "lknee"), ("left_ankle", "lankle"), ("right_wrist", "rwrist"), ("right_elbow", "relbow"),
    ("right_shoulder", "rshoulder"), ("left_shoulder", "lshoulder"), ("left_elbow", "lelbow"),
    ("left_wrist", "lwrist"), ("neck", "neck"), ("head_top", "head_top"), ("pelvis", "pelvis"),
    ("thorax", ("lcollar", "rcollar")), ("spine", "spine2"), ("jaw", "chin"), ("head", "head"),
    ("nose", "nose"), ("left_eye", "leye"), ("right_eye", "reye"), ("left_ear", "lear"),
    ("right_ear", "rear"),
]  # fmt: skip
LSP14 = SPIN24[:14]

SMPL24 = [(name, short) for short, name in zip(_J, [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
], strict=True)]  # fmt: skip

KEYPOINT_SET_DEFS: dict[str, list[tuple[str, Source]]] = {
    "smpl24": SMPL24,
    "coco17": COCO17,
    "body25": BODY25,
    "blazepose33": BLAZEPOSE33,
    "lsp14": LSP14,
    "spin24": SPIN24,
}


@dataclass(frozen=True)
class KeypointSet:
    """One named keypoint set of one body.

    Attributes:
        name: e.g. ``"coco17"``.
        names: (J,) keypoint names in order.
        weights: (J, 24 + L) float32 map from ``[joints; landmark vertices]`` to keypoints.
        valid: (J,) bool, False where this body does not define the keypoint (its row is zero).
        joint_index: (J,) long, the point a keypoint stands for, an index into ``[joints (24); landmarks]``:
            the joint or landmark itself, or the base point of a calibrated detector keypoint (-1 for means).
    """

    name: str
    names: tuple[str, ...]
    weights: torch.Tensor
    valid: torch.Tensor
    joint_index: torch.Tensor

    def __len__(self) -> int:
        return len(self.names)

    def index(self, name: str) -> int:
        """Position of a keypoint name in this set."""
        return self.names.index(name)


def _row(src: Source, landmark_ok: dict[str, bool]) -> np.ndarray | None:
    row = np.zeros(24 + len(LANDMARK_NAMES), dtype=np.float32)
    if src is None:
        return None
    if isinstance(src, tuple):
        rows = [_row(s, landmark_ok) for s in src]
        if any(r is None for r in rows):
            return None
        return np.mean(rows, axis=0)
    if isinstance(src, dict):
        parts = [(_row(s, landmark_ok), float(w)) for s, w in src.items()]
        if any(r is None for r, _ in parts):
            return None
        return np.sum([r * w for r, w in parts], axis=0).astype(np.float32)
    if src in _J:
        row[_J[src]] = 1.0
        return row
    if src in LANDMARK_NAMES:
        if not landmark_ok.get(src, False):
            return None
        row[24 + LANDMARK_NAMES.index(src)] = 1.0
        return row
    raise KeyError(src)


def _stands_for(src: Source) -> int:
    """Index into ``[joints; landmarks]`` of the point a keypoint stands for: the joint or landmark itself,
    or a calibrated keypoint's base point (its largest weight); -1 for means."""
    if isinstance(src, dict):
        src = max(src, key=lambda k: src[k])
    if isinstance(src, str) and src in _J:
        return _J[src]
    return 24 + LANDMARK_NAMES.index(src) if isinstance(src, str) and src in LANDMARK_NAMES else -1


def build_keypoint_sets(
    landmark_ok: dict[str, bool], calibration: dict[str, dict[str, dict[str, float]]] | None = None
) -> dict[str, KeypointSet]:
    """All sets of :data:`KEYPOINT_SET_DEFS` for a body that defines the landmarks in ``landmark_ok``.

    ``calibration``: set name -> keypoint name -> ``{source: weight}`` replacing that keypoint's definition
    (a detector's keypoint measured on this body, e.g. where BlazePose puts its hips; see
    ``scripts/calibrate_keypoints.py``).
    """
    calibration = calibration or {}
    unknown = sorted(set(calibration) - set(KEYPOINT_SET_DEFS))
    if unknown:
        raise NeuralfitError(f"keypoint calibration names unknown sets {unknown}")
    sets = {}
    for set_name, spec in KEYPOINT_SET_DEFS.items():
        cal = calibration.get(set_name, {})
        bad = sorted(set(cal) - {n for n, _ in spec})
        if bad:
            raise NeuralfitError(f"keypoint calibration of {set_name!r} names unknown keypoints {bad}")
        rows, valid, joint = [], [], []
        for name, src in spec:
            src = cal.get(name, src)
            try:
                r = _row(src, landmark_ok)
            except KeyError as exc:
                raise NeuralfitError(f"keypoint {name!r} of {set_name!r} names unknown joint {exc}") from None
            valid.append(r is not None)
            rows.append(r if r is not None else np.zeros(24 + len(LANDMARK_NAMES), np.float32))
            joint.append(_stands_for(src))
        sets[set_name] = KeypointSet(
            name=set_name,
            names=tuple(n for n, _ in spec),
            weights=torch.as_tensor(np.stack(rows)),
            valid=torch.as_tensor(valid),
            joint_index=torch.as_tensor(joint, dtype=torch.long),
        )
    return sets


def landmark_ids_for_smpl(num_vertices: int) -> tuple[np.ndarray, np.ndarray]:
    """Landmark vertex ids (L,) and validity (L,) for a real-SMPL-topology body.

    The published ids only mean something on SMPL's 6890-vertex topology; for other vertex counts the
    landmarks are all undefined (joint keypoints still work).
    """
    ids = np.zeros(len(LANDMARK_NAMES), dtype=np.int64)
    ok = np.zeros(len(LANDMARK_NAMES), dtype=bool)
    if num_vertices == SMPL_NUM_VERTICES:
        for i, name in enumerate(LANDMARK_NAMES):
            if name in SMPL_LANDMARK_IDS:
                ids[i], ok[i] = SMPL_LANDMARK_IDS[name], True
    return ids, ok


def apply_keypoints(kset: KeypointSet, joints: torch.Tensor, landmarks: torch.Tensor) -> torch.Tensor:
    """(B, 24, 3) joints and (B, L, 3) landmark vertices -> (B, J, 3) keypoints."""
    if joints.shape[-2] != 24 or landmarks.shape[-2] != len(LANDMARK_NAMES):
        raise NeuralfitError(
            f"keypoints need (B, 24, 3) joints and (B, {len(LANDMARK_NAMES)}, 3) landmarks, "
            f"got {tuple(joints.shape)} and {tuple(landmarks.shape)}"
        )
    src = torch.cat([joints, landmarks], dim=1)
    return torch.einsum("jk,bkc->bjc", kset.weights.to(src), src)


def keypoint_correspondence(src: KeypointSet, dst: KeypointSet, tol: float = 1e-6) -> np.ndarray:
    """(J_dst,) index of the ``src`` keypoint defined exactly like each ``dst`` keypoint, -1 where none is.

    Two keypoints correspond when their rows of ``weights`` agree (same joints and landmark vertices
    with the same weights), whatever the sets call them ("RShoulder" in body25, "right_shoulder" in
    spin24), or when both stand for the same joint or landmark (a calibrated BlazePose hip is the hip
    that the other sets call the hip joint). Keypoints a body does not define (``valid`` False) never correspond.
    """
    d = (dst.weights[:, None, :] - src.weights[None, :, :]).abs().amax(-1)  # (J_dst, J_src)
    same_joint = (dst.joint_index[:, None] == src.joint_index[None, :]) & (dst.joint_index[:, None] >= 0)
    d = torch.where(same_joint, torch.zeros_like(d), d)
    best = d.min(dim=1)
    idx = best.indices.cpu().numpy().astype(np.int64)
    ok = (best.values <= tol).cpu().numpy() & dst.valid.cpu().numpy()
    ok &= src.valid.cpu().numpy()[idx]
    return np.where(ok, idx, -1)


def transfer_keypoints(keypoints: np.ndarray | torch.Tensor, src: KeypointSet, dst: KeypointSet) -> np.ndarray:
    """Detections (..., J_src, 3) in set ``src`` -> (..., J_dst, 3) in set ``dst``; confidence 0 where ``src``
    has no matching keypoint (see :func:`keypoint_correspondence`)."""
    kp = np.asarray(keypoints, dtype=np.float32)
    if kp.shape[-2:] != (len(src), 3):
        raise NeuralfitError(f"keypoints of set {src.name!r} must have shape (..., {len(src)}, 3), got {kp.shape}")
    idx = keypoint_correspondence(src, dst)
    out = np.zeros(kp.shape[:-2] + (len(dst), 3), np.float32)
    have = idx >= 0
    out[..., have, :] = kp[..., idx[have], :]
    return out
