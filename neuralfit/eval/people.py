"""The same people across calibrated views (everyone in one photo: :mod:`neuralfit.detect.everyone`).

:func:`associate` matches detections across views by triangulation (on left/right-symmetric midpoints,
so a view whose sides are swapped still matches) and :func:`fix_side_swaps` undoes mediapipe's
left/right swaps against the other views. Used by the real-photo benchmarks (docs/real_benchmark.md).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from neuralfit.detect import Detection
from neuralfit.detect.everyone import find_everyone, torso_distance
from neuralfit.detect.mediapipe_pose import flip_blazepose
from neuralfit.eval.multiview import Camera, triangulate

__all__ = ["Track", "associate", "find_everyone", "fix_side_swaps", "torso_distance", "track_keypoints"]

#: BlazePose index pairs whose midpoints do not change when mediapipe swaps sides.
_SYMMETRIC_PAIRS: tuple[tuple[int, int], ...] = ((11, 12), (23, 24), (25, 26), (27, 28), (13, 14), (2, 5))


def _midpoints(kp: np.ndarray) -> np.ndarray:
    """(len(_SYMMETRIC_PAIRS), 3) midpoints x, y and the smaller confidence of each pair."""
    a = kp[[p[0] for p in _SYMMETRIC_PAIRS]]
    b = kp[[p[1] for p in _SYMMETRIC_PAIRS]]
    return np.concatenate([(a[:, :2] + b[:, :2]) / 2, np.minimum(a[:, 2:], b[:, 2:])], axis=1)


@dataclass
class Track:
    """One person across views: ``detections[v]`` is that view's detection or None; ``cost`` is the
    median reprojection error (pixels) of the symmetric midpoints that matched them."""

    detections: list[Detection | None]
    cost: float


def associate(cams: list[Camera], detections: list[list[Detection]], max_people: int = 2,
              min_views: int = 3, max_cost: float = 40.0, missing_penalty: float = 15.0) -> list[Track]:
    """Match detections across views, greedily taking the most consistent person first.

    Every choice of one detection (or none) per view with at least ``min_views`` views is triangulated
    on side-agnostic midpoints; its cost is their median reprojection error plus ``missing_penalty``
    per missing view. Tracks costing more than ``max_cost`` pixels are not people seen by the rig.
    """
    V = len(cams)
    if len(detections) != V:
        raise ValueError(f"{len(detections)} views of detections for {len(cams)} cameras")
    taken: list[set[int]] = [set() for _ in range(V)]
    tracks: list[Track] = []
    for _ in range(max_people):
        best: tuple[float, tuple[int, ...]] | None = None
        choices = [[-1] + [i for i in range(len(detections[v])) if i not in taken[v]] for v in range(V)]
        for combo in itertools.product(*choices):
            n = sum(c >= 0 for c in combo)
            if n < min_views:
                continue
            kp = np.zeros((V, len(_SYMMETRIC_PAIRS), 3))
            for v, c in enumerate(combo):
                if c >= 0:
                    kp[v] = _midpoints(detections[v][c].keypoints)
            tri = triangulate(cams, kp, min_conf=0.3, max_reproj=1e9)
            err = tri.reproj[tri.used]
            if err.size < 2 * len(_SYMMETRIC_PAIRS):
                continue
            cost = float(np.median(err)) + missing_penalty * (V - n)
            if best is None or cost < best[0]:
                best = (cost, combo)
        if best is None or best[0] > max_cost:
            break
        for v, c in enumerate(best[1]):
            if c >= 0:
                taken[v].add(c)
        tracks.append(Track([detections[v][c] if c >= 0 else None for v, c in enumerate(best[1])], best[0]))
    return tracks


def track_keypoints(track: Track) -> np.ndarray:
    """(V, 33, 3) keypoints of a track; zeros (confidence 0) where a view has no detection."""
    return np.stack([d.keypoints if d is not None else np.zeros((33, 3), np.float32) for d in track.detections])


def fix_side_swaps(cams: list[Camera], keypoints: np.ndarray, margin: float = 0.7) -> tuple[np.ndarray, list[int]]:
    """Undo mediapipe's left/right swaps: a view is flipped when, against the point triangulated from
    the other views, its swapped keypoints reproject with under ``margin`` x the error of the originals.

    Args:
        keypoints: (V, 33, 3) one person's keypoints.

    Returns:
        The corrected keypoints and the views that were flipped.
    """
    kp = keypoints.copy()
    flipped = []
    for v in range(len(cams)):
        if kp[v, :, 2].max() <= 0:
            continue
        others = kp.copy()
        others[v, :, 2] = 0.0
        tri = triangulate(cams, others)
        ok = np.all(np.isfinite(tri.points), axis=1) & (kp[v, :, 2] >= 0.3)
        if ok.sum() < 6:
            continue
        proj = cams[v].project(tri.points[ok])
        e_as_is = np.linalg.norm(proj - kp[v, ok, :2], axis=1).mean()
        swapped = flip_blazepose(kp[v])
        ok_s = np.all(np.isfinite(tri.points), axis=1) & (swapped[:, 2] >= 0.3)
        e_sw = np.linalg.norm(cams[v].project(tri.points[ok_s]) - swapped[ok_s, :2], axis=1).mean()
        if e_sw < margin * e_as_is:
            kp[v] = swapped
            flipped.append(v)
    return kp, flipped
