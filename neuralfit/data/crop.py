"""SPIN-style crops and left/right flips for keypoints, 3D joints, SMPL poses and part masks.

Coordinates are pixel centres at integers (OpenCV); a crop of box side ``h = 200 * scale`` around
``center`` maps to ``res x res`` pixels, optionally rotated by ``rot`` degrees about the crop centre.
A positive ``rot`` corresponds to the 3D rotation ``Rz(rot)`` of the camera frame (x right, y down).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# SMPL-24 joint order under a left/right mirror (also the part-id permutation).
SMPL24_FLIP = np.array([0, 2, 1, 3, 5, 4, 6, 8, 7, 9, 11, 10, 12, 14, 13, 15, 17, 16, 19, 18, 21, 20, 23, 22])
# SPIN's 24 joints: R/L ankle, knee, hip (0-5), R/L wrist, elbow, shoulder (6-11), neck, head top,
# pelvis, thorax, spine, jaw, head, nose, L eye, R eye, L ear, R ear.
SPIN24_FLIP = np.array([5, 4, 3, 2, 1, 0, 11, 10, 9, 8, 7, 6, 12, 13, 14, 15, 16, 17, 18, 19, 21, 20, 23, 22])
COCO17_FLIP = np.array([0, 2, 1, 4, 3, 6, 5, 8, 7, 10, 9, 12, 11, 14, 13, 16, 15])
# Part classes (0 background, 1 + SMPL part) under a left/right mirror.
PART_CLASS_FLIP = np.concatenate([[0], 1 + SMPL24_FLIP])


def crop_transform(center: np.ndarray, scale: float, res: int, rot: float = 0.0) -> np.ndarray:
    """(2, 3) affine taking original-image pixels to crop pixels.

    u_crop = R(rot) * (res / h) * (u - center) + res / 2, with h = 200 * scale.
    """
    h = 200.0 * float(scale)
    s = res / h
    a = math.radians(rot)
    r = np.array([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * s
    t = np.array([res / 2, res / 2]) - r @ np.asarray(center, dtype=np.float64)
    return np.concatenate([r, t[:, None]], 1)


def flip_transform(res: int) -> np.ndarray:
    """(2, 3) affine of a horizontal mirror of a ``res``-wide image (pixel i -> res - 1 - i)."""
    return np.array([[-1.0, 0.0, res - 1.0], [0.0, 1.0, 0.0]])


def compose(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Affine ``a`` after ``b`` (both (2, 3))."""
    a3 = np.vstack([a, [0, 0, 1]])
    b3 = np.vstack([b, [0, 0, 1]])
    return (a3 @ b3)[:2]


def apply_affine(aff: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a (2, 3) affine to (..., 2) points."""
    return pts @ aff[:, :2].T + aff[:, 2]


def rot_z(deg: float) -> np.ndarray:
    a = math.radians(deg)
    return np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1.0]])


def rotate_global_orient(aa: np.ndarray, deg: float) -> np.ndarray:
    """Axis-angle (3,) of ``Rz(deg) @ R(aa)``: the body as seen by the in-plane-rotated crop."""
    from scipy.spatial.transform import Rotation

    return (Rotation.from_matrix(rot_z(deg)) * Rotation.from_rotvec(aa)).as_rotvec()


def flip_pose(pose: np.ndarray) -> np.ndarray:
    """Mirror an SMPL pose (72,) in x: swap left/right joints, negate the y and z axis-angle parts."""
    p = pose.reshape(24, 3)[SMPL24_FLIP].copy()
    p[:, 1:] *= -1
    return p.reshape(-1)


def flip_keypoints(kp: np.ndarray, res: int, perm: np.ndarray = SPIN24_FLIP) -> np.ndarray:
    """Mirror (J, 2+) crop keypoints: swap left/right, u -> res - 1 - u."""
    out = kp[perm].copy()
    out[:, 0] = res - 1 - out[:, 0]
    return out


def flip_joints3d(joints: np.ndarray, perm: np.ndarray = SPIN24_FLIP) -> np.ndarray:
    """Mirror (J, 3+) camera-frame joints: swap left/right, x -> -x."""
    out = joints[perm].copy()
    out[:, 0] *= -1
    return out


def flip_partseg(mask: np.ndarray) -> np.ndarray:
    """Mirror a part mask (0 background, 1 + SMPL part) and swap left/right part labels."""
    lut = PART_CLASS_FLIP.astype(mask.dtype)
    m = mask[:, ::-1]
    out = m.copy()
    valid = m < len(lut)
    out[valid] = lut[m[valid]]
    return out


def warp(img: np.ndarray, aff: np.ndarray, res: int, nearest: bool = False) -> np.ndarray:
    """Crop ``img`` with affine ``aff`` to ``res x res`` (zeros outside the source)."""
    return cv2.warpAffine(img, aff, (res, res), flags=cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
