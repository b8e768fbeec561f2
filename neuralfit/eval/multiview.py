"""Calibrated multi-view pseudo-ground-truth: calibration reader, triangulation and scoring.

Used by ``benchmarks/real_multiview.py`` (docs/real_benchmark.md). Everything here is numpy/OpenCV
and works on any calibrated rig; the Qualisys ``.qca.txt`` reader follows the conventions verified on
Pose2Sim's demo (docs/real_benchmark.md, "Calibration conventions"):

- intrinsics are stored in 1/64 pixel: ``fx = focalLengthU / 64``, ``cx = centerPointU / 64 - fov left``;
- ``R = diag(1, -1, -1) @ M`` with ``M`` the ``transform`` r11..r33 read row by row, ``t = -R @ position / 1000``
  (metres); the camera frame is OpenCV's (x right, y down, z forward);
- distortion ``(k1, k2, p1, p2)`` are the raw values (OpenCV's order).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np

from neuralfit.body.keypoints import LIMB12_NAMES  # noqa: F401 - the 12 limb joints scored; callers import it here
from neuralfit.errors import NeuralfitError

#: BlazePose-33 indices of :data:`LIMB12_NAMES`.
BLAZEPOSE_LIMB12: tuple[int, ...] = (11, 12, 13, 14, 15, 16, 23, 24, 25, 26, 27, 28)
#: SMPL-24 indices of :data:`LIMB12_NAMES`.
SMPL_LIMB12: tuple[int, ...] = (16, 17, 18, 19, 20, 21, 1, 2, 4, 5, 7, 8)
#: Positions of the hips inside LIMB12 (the root is their midpoint).
LIMB12_HIPS: tuple[int, int] = (6, 7)


@dataclass(frozen=True)
class Camera:
    """One calibrated camera: ``x_cam = R @ X_world + t`` (metres, OpenCV axes), pixels via K and dist.

    Attributes:
        name: the camera's serial / name.
        K: (3, 3) intrinsics in pixels. dist: (4,) or (5,) OpenCV distortion (k1, k2, p1, p2[, k3]).
        R: (3, 3) world-to-camera rotation. t: (3,) translation in metres.
        size: (width, height) in pixels.
    """

    name: str
    K: np.ndarray
    dist: np.ndarray
    R: np.ndarray
    t: np.ndarray
    size: tuple[int, int]

    @property
    def center(self) -> np.ndarray:
        """(3,) camera position in the world."""
        return -self.R.T @ self.t

    def to_camera(self, X: np.ndarray) -> np.ndarray:
        """(..., 3) world points -> camera frame."""
        return X @ self.R.T + self.t

    def project(self, X: np.ndarray) -> np.ndarray:
        """(N, 3) world points -> (N, 2) distorted pixels."""
        rvec, _ = cv2.Rodrigues(self.R)
        pts, _ = cv2.projectPoints(np.asarray(X, np.float64).reshape(-1, 1, 3), rvec, self.t.astype(np.float64),
                                   self.K, self.dist)
        return pts.reshape(-1, 2)

    def undistort(self, pts: np.ndarray) -> np.ndarray:
        """(N, 2) distorted pixels -> (N, 2) normalised image coordinates (x/z, y/z) of the ideal pinhole."""
        out = cv2.undistortPoints(np.asarray(pts, np.float64).reshape(-1, 1, 2), self.K, self.dist)
        return out.reshape(-1, 2)

    def rotated(self, delta: np.ndarray) -> Camera:
        """A copy whose rotation is pre-multiplied by the axis-angle ``delta`` (3,), position kept."""
        dR, _ = cv2.Rodrigues(np.asarray(delta, np.float64).reshape(3, 1))
        R = dR @ self.R
        return replace(self, R=R, t=-R @ self.center)


def read_qca(path: str | Path) -> list[Camera]:
    """Cameras of a Qualisys ``.qca.txt`` calibration (conventions in the module doc), in file order."""
    path = Path(path)
    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as exc:
        raise NeuralfitError(f"cannot read Qualisys calibration {path}: {exc}") from None
    cams = []
    flip = np.diag([1.0, -1.0, -1.0])
    for tag in root.iter("camera"):
        fov, tr, it = tag.find("fov_video"), tag.find("transform"), tag.find("intrinsic")
        if fov is None or tr is None or it is None:
            raise NeuralfitError(f"{path}: camera {tag.get('serial')} lacks fov_video/transform/intrinsic")
        left, top = float(fov.get("left")), float(fov.get("top"))
        w = int(float(fov.get("right")) - left + 1)
        h = int(float(fov.get("bottom")) - top + 1)
        fx, fy = float(it.get("focalLengthU")) / 64, float(it.get("focalLengthV")) / 64
        cx, cy = float(it.get("centerPointU")) / 64 - left, float(it.get("centerPointV")) / 64 - top
        K = np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])
        dist = np.array([float(it.get(k)) for k in ("radialDistortion1", "radialDistortion2",
                                                   "tangentalDistortion1", "tangentalDistortion2")])
        M = np.array([[float(tr.get(f"r{i}{j}")) for j in (1, 2, 3)] for i in (1, 2, 3)])
        R = flip @ M
        pos = np.array([float(tr.get(k)) for k in ("x", "y", "z")]) / 1000.0
        cams.append(Camera(str(tag.get("serial")), K, dist, R, -R @ pos, (w, h)))
    if not cams:
        raise NeuralfitError(f"{path}: no <camera> entries")
    return cams


@dataclass
class Triangulation:
    """Robust triangulation of J points seen by V cameras.

    Attributes:
        points: (J, 3) world points (NaN where fewer than 2 views were usable).
        reproj: (V, J) reprojection error in (undistorted) pixels, NaN where a view did not see the point.
        used: (V, J) bool, the views that entered each point.
    """

    points: np.ndarray
    reproj: np.ndarray
    used: np.ndarray


def dlt(P: np.ndarray, xy: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted linear triangulation of one point.

    Args:
        P: (V, 3, 4) normalised projection matrices ``[R | t]``; xy: (V, 2) normalised coordinates;
        w: (V,) non-negative weights (a view with weight 0 does not count).

    Returns:
        (3,) point (NaN when fewer than 2 views have weight).
    """
    keep = w > 0
    if keep.sum() < 2:
        return np.full(3, np.nan)
    rows = []
    for Pv, (x, y), wv in zip(P[keep], xy[keep], w[keep], strict=True):
        rows.append(wv * (x * Pv[2] - Pv[0]))
        rows.append(wv * (y * Pv[2] - Pv[1]))
    _, _, vt = np.linalg.svd(np.asarray(rows))
    X = vt[-1]
    return X[:3] / X[3] if abs(X[3]) > 1e-12 else np.full(3, np.nan)


def _reproj_px(cams: list[Camera], X: np.ndarray, xy: np.ndarray) -> np.ndarray:
    """(V,) pixel distance between X projected (ideal pinhole) and the normalised observations."""
    out = np.full(len(cams), np.nan)
    if not np.all(np.isfinite(X)):
        return out
    for v, c in enumerate(cams):
        xc = c.R @ X + c.t
        if xc[2] <= 1e-6:
            out[v] = np.inf
            continue
        out[v] = np.linalg.norm((xc[:2] / xc[2] - xy[v]) * np.array([c.K[0, 0], c.K[1, 1]]))
    return out


def triangulate(cams: list[Camera], keypoints: np.ndarray, min_conf: float = 0.3,
                max_reproj: float = 25.0) -> Triangulation:
    """Confidence-weighted DLT per joint, dropping the worst view once when its error is large.

    Args:
        cams: V cameras. keypoints: (V, J, 3) distorted pixel ``x, y, confidence`` (NaN/0 for unseen).
        min_conf: keypoints below this confidence are not used.
        max_reproj: when the worst used view's reprojection error exceeds this (pixels) and 3 or more
            views were used, that view is dropped and the point re-triangulated.
    """
    V, J = keypoints.shape[:2]
    if V != len(cams):
        raise NeuralfitError(f"keypoints cover {V} views but {len(cams)} cameras were given")
    P = np.stack([np.hstack([c.R, c.t[:, None]]) for c in cams])
    xy = np.full((V, J, 2), np.nan)
    for v, c in enumerate(cams):
        ok = np.all(np.isfinite(keypoints[v, :, :2]), axis=1)
        if ok.any():
            xy[v, ok] = c.undistort(keypoints[v, ok, :2])
    conf = np.nan_to_num(keypoints[..., 2], nan=0.0)
    w0 = np.where((conf >= min_conf) & np.all(np.isfinite(xy), axis=2), conf, 0.0)
    points = np.full((J, 3), np.nan)
    reproj = np.full((V, J), np.nan)
    used = np.zeros((V, J), bool)
    for j in range(J):
        w = w0[:, j].copy()
        X = dlt(P, np.nan_to_num(xy[:, j]), w)
        err = _reproj_px(cams, X, np.nan_to_num(xy[:, j]))
        if (w > 0).sum() >= 3:
            worst = int(np.nanargmax(np.where(w > 0, err, -1.0)))
            if err[worst] > max_reproj:
                w[worst] = 0.0
                X = dlt(P, np.nan_to_num(xy[:, j]), w)
                err = _reproj_px(cams, X, np.nan_to_num(xy[:, j]))
        points[j] = X
        seen = np.all(np.isfinite(xy[:, j]), axis=1) & (conf[:, j] > 0)
        reproj[seen, j] = err[seen]
        used[:, j] = (w > 0) & bool(np.all(np.isfinite(X)))
    return Triangulation(points, reproj, used)


def leave_one_view_out(cams: list[Camera], keypoints: np.ndarray, full: Triangulation,
                       **kwargs: float) -> np.ndarray:
    """(V, J) distance (metres) between each point triangulated without view v and with all views;
    NaN where view v was not used or too few views remain. A measure of the pseudo-GT's own noise."""
    V, J = keypoints.shape[:2]
    out = np.full((V, J), np.nan)
    for v in range(V):
        kp = keypoints.copy()
        kp[v, :, 2] = 0.0
        loo = triangulate(cams, kp, **kwargs)
        d = np.linalg.norm(loo.points - full.points, axis=1)
        out[v] = np.where(full.used[v], d, np.nan)
    return out


def refine_rotations(cams: list[Camera], keypoints: list[np.ndarray], rounds: int = 3,
                     min_conf: float = 0.5, max_reproj: float = 25.0) -> tuple[list[Camera], np.ndarray]:
    """Rotation-only refinement of every camera on 2D keypoints (positions and intrinsics kept).

    The calibration's rotations are off by up to ~0.7 deg (docs/real_benchmark.md): that leaves a 10-15 px
    reprojection bias that the keypoints can remove. Alternates triangulation and a per-camera
    robust (soft-L1) least-squares fit of a small rotation, ``rounds`` times.

    Args:
        keypoints: a list of (V, J, 3) observations (one per person-frame).

    Returns:
        The refined cameras and (V, 3) axis-angle corrections applied (radians).
    """
    from scipy.optimize import least_squares

    deltas = np.zeros((len(cams), 3))
    current = list(cams)
    for _ in range(rounds):
        obs: list[list[tuple[np.ndarray, np.ndarray]]] = [[] for _ in cams]
        for kp in keypoints:
            tri = triangulate(current, kp, min_conf=min_conf, max_reproj=max_reproj)
            for v in range(len(cams)):
                ok = tri.used[v] & np.all(np.isfinite(tri.points), axis=1)
                if ok.any():
                    obs[v].append((tri.points[ok], kp[v, ok, :2]))
        for v, c in enumerate(cams):
            if not obs[v]:
                continue
            X = np.concatenate([o[0] for o in obs[v]])
            uv = np.concatenate([o[1] for o in obs[v]])

            def resid(d: np.ndarray, c: Camera = c, X: np.ndarray = X, uv: np.ndarray = uv) -> np.ndarray:
                return (c.rotated(d).project(X) - uv).ravel()

            sol = least_squares(resid, np.zeros(3), loss="soft_l1", f_scale=5.0)
            current[v] = c.rotated(sol.x)
            # Small rotations compose to first order; the total is reported for the docs.
            deltas[v] = cv2.Rodrigues(current[v].R @ cams[v].R.T)[0].ravel()
    return current, deltas


@dataclass
class Scores:
    """Errors of one prediction against the pseudo-GT (millimetres; NaN when not computable).

    Attributes:
        pa_mpjpe, mpjpe: on the 12 limb joints (MPJPE root-aligned at the mid-hip).
        pa_mpjpe_nohips, mpjpe_nohips: on the 10 joints without the hips (root still the mid-hip),
            which removes most of the SMPL-vs-BlazePose hip-width offset from the score.
    """

    pa_mpjpe: float
    mpjpe: float
    pa_mpjpe_nohips: float
    mpjpe_nohips: float


def _procrustes(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """Similarity-align pred (J, 3) to gt (J, 3): the package's one Procrustes, on one sample."""
    from neuralfit.eval.metrics import procrustes_align

    return procrustes_align(np.asarray(pred, np.float64)[None], np.asarray(gt, np.float64)[None])[0]


def pa_joint_errors(pred: np.ndarray, gt: np.ndarray) -> np.ndarray:
    """(12,) per-joint errors (mm) of (12, 3) predicted limb joints after the Procrustes alignment of all 12 to
    the GT (the alignment :func:`score_limb12` uses); NaN where either is not finite."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        return np.full(12, np.nan)
    return 1000 * np.linalg.norm(_procrustes(pred, gt) - gt, axis=1)


def score_limb12(pred: np.ndarray, gt: np.ndarray) -> Scores:
    """Score (12, 3) predicted limb joints against (12, 3) GT in the same camera frame (metres in, mm out)."""
    pred, gt = np.asarray(pred, np.float64), np.asarray(gt, np.float64)
    if pred.shape != (12, 3) or gt.shape != (12, 3):
        raise NeuralfitError(f"expected (12, 3) limb joints, got {pred.shape} and {gt.shape}")
    if not (np.all(np.isfinite(pred)) and np.all(np.isfinite(gt))):
        nan = float("nan")
        return Scores(nan, nan, nan, nan)
    h = list(LIMB12_HIPS)
    keep = [i for i in range(12) if i not in h]
    rp, rg = pred - pred[h].mean(0), gt - gt[h].mean(0)
    root_err = np.linalg.norm(rp - rg, axis=1)
    pa = pa_joint_errors(pred, gt) / 1000
    pa10 = np.linalg.norm(_procrustes(pred[keep], gt[keep]) - gt[keep], axis=1)
    return Scores(1000 * pa.mean(), 1000 * root_err.mean(), 1000 * pa10.mean(), 1000 * root_err[keep].mean())


