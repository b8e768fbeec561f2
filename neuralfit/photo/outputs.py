"""What a photo's fit writes: params.npz, mesh.obj + mesh.glb, overlay.png, side.png, occlusion.png, fit.json.

Everything goes into a temporary folder that replaces ``DIR/<stem>/`` only when complete
(:func:`neuralfit.io.folder.atomic_dir`), so a failed write never leaves half a result.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralfit.photo.results import ImageFit, PersonFit

#: Rotation of the side view about the vertical axis (the body seen from its left when facing the camera).
SIDE_ANGLE_DEG = 90.0
_SIDE_BACKGROUND = 235


@dataclass
class RunInfo:
    """What produced the fits, for fit.json: ``settings`` (method, camera rule, fitter settings) and
    ``assets`` (versions and provenance of the body, prior, networks); both JSON-ready."""

    settings: dict[str, Any] = field(default_factory=dict)
    assets: dict[str, Any] = field(default_factory=dict)


def project_points(points: np.ndarray, focal: float, principal_point: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels."""
    z = np.maximum(points[..., 2:3], 1e-6)
    return points[..., :2] / z * focal + np.asarray(principal_point)


def side_view(r: ImageFit, faces: np.ndarray) -> np.ndarray:
    """The fitted bodies turned ``SIDE_ANGLE_DEG`` about the vertical through their centre, same camera.

    Depth becomes horizontal: a body leaning toward the camera or folded in depth shows here, while it
    looks right in the overlay. With several people the view steps back until everyone is in the picture.
    """
    from neuralfit.io.images import render_people

    h, w = r.image_size
    canvas = np.full((h, w, 3), _SIDE_BACKGROUND, np.uint8)
    if not r.people:
        return canvas
    centre = np.mean([p.joints3d.mean(0) for p in r.people], axis=0)
    a = math.radians(SIDE_ANGLE_DEG)
    R = np.array([[math.cos(a), 0.0, math.sin(a)], [0.0, 1.0, 0.0], [-math.sin(a), 0.0, math.cos(a)]])
    verts = [(p.vertices - centre) @ R.T + centre for p in r.people]
    # People far apart in depth end up side by side and can leave the frame: step the view back along
    # the optical axis until every body projects inside the picture (one person: no step needed).
    allv = np.concatenate(verts)
    for back in (0.0, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0):
        uv = project_points(allv + np.array([0.0, 0.0, back]), r.focal_length, r.principal_point)
        if (allv[:, 2] + back > 0.1).all() and (uv >= 0).all() and (uv[:, 0] < w).all() and (uv[:, 1] < h).all():
            break
    verts = [v + np.array([0.0, 0.0, back]) for v in verts]
    picture, _ = render_people(canvas, verts, faces, r.focal_length, tuple(r.principal_point), alpha=1.0)
    return picture


def keypoint_errors(p: PersonFit, min_conf: float = 0.5) -> np.ndarray | None:
    """Pixel distances between fitted and detected keypoints over confident keypoints the body defines."""
    if p.keypoints is None or p.keypoints_fit is None:
        return None
    ok = p.keypoints[:, 2] >= min_conf
    ok &= np.isfinite(p.keypoints_fit).all(1)
    if not ok.any():
        return None
    return np.linalg.norm(p.keypoints_fit[ok] - p.keypoints[ok, :2], axis=1)


def fit_summary(r: ImageFit, info: RunInfo | None = None) -> dict[str, Any]:
    """The content of fit.json."""
    people = []
    for p in r.people:
        entry: dict[str, Any] = {"bbox": p.bbox, "crop_center": p.center, "crop_scale": p.scale, "loss": p.loss,
                                 "terms": p.terms, "hypothesis": p.hypothesis, "start": p.start,
                                 "occlusion_fraction": p.occlusion_fraction,
                                 "occlusion_source": p.occlusion_source, "joint_set": p.joint_set,
                                 "observations": p.observations,
                                 "unsure_keypoint_weight": round(float(p.unsure_keypoint_weight), 4),
                                 "landmark_inconsistency": round(float(p.landmark_inconsistency), 4),
                                 "keypoint_term_weight": round(float(p.keypoint_term_weight), 4),
                                 "transl": p.transl}
        if p.keypoint_outlier is not None:  # p(outlier) per keypoint of joint_set; null = not observed
            entry["keypoint_outlier"] = [None if not np.isfinite(v) else round(float(v), 4)
                                         for v in p.keypoint_outlier]
        if p.hidden_keypoint_weight is not None:  # per keypoint of joint_set, from the part head's hidden map
            entry["hidden_keypoint_weight"] = [round(float(v), 4) for v in p.hidden_keypoint_weight]
        if p.facing_evidence is not None:  # the part head's left/right say; swapped: refitted the other way round
            entry["facing"] = {"evidence": round(float(p.facing_evidence), 4), "swapped": bool(p.facing_swapped)}
        if p.cut_by_frame:  # photo edges that cut the person: the body beyond them is guessed
            entry["cut_by_frame"] = list(p.cut_by_frame)
        err = keypoint_errors(p)
        if err is not None:
            size = float(max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]))
            entry["keypoint_error_px"] = {"median": float(np.median(err)), "max": float(np.max(err)),
                                          "within_10pct_box": float(np.mean(err <= 0.1 * size)), "n": int(len(err))}
        people.append(entry)
    out: dict[str, Any] = {"image": r.source, "status": r.status, "method": r.method,
                           "method_reason": r.method_reason, "image_size": list(r.image_size),
                           "camera": {"focal_length": r.focal_length, "principal_point": r.principal_point,
                                      "K": r.K.tolist(), "source": r.camera_source, "warnings": r.camera_warnings,
                                      "frame": "OpenCV (x right, y down, z forward), metres"},
                           "people": people, "timings_s": {k: round(v, 4) for k, v in r.timings.items()},
                           "occlusion_map": r.occlusion is not None, "warnings": r.warnings}
    if info is not None:
        out["settings"] = info.settings
        out["assets"] = info.assets
    return out


def write_image_fit(folder: str | os.PathLike, r: ImageFit, faces: np.ndarray | None = None,
                    info: RunInfo | None = None) -> Path:
    """Write one photo's outputs into ``folder`` atomically: params.npz, mesh(_i).obj and mesh.glb (with
    ``faces``), overlay.png + side.png (when rendered), occlusion.png (methods with an outlier process),
    fit.json."""
    from neuralfit.io.atomic import save_json, save_npz
    from neuralfit.io.folder import atomic_dir
    from neuralfit.io.images import occlusion_picture, save_png
    from neuralfit.io.mesh import camera_to_gltf, save_mesh

    with atomic_dir(folder) as tmp:
        save_npz(tmp / "params.npz", **r.params())
        if faces is not None and r.people:
            for i, p in enumerate(r.people):
                save_mesh(tmp / ("mesh.obj" if len(r.people) == 1 else f"mesh_{i}.obj"), p.vertices, faces)
            # One GLB with every person (viewers open one file), in glTF's y-up axes.
            nv = len(r.people[0].vertices)
            all_v = np.concatenate([camera_to_gltf(p.vertices) for p in r.people])
            all_f = np.concatenate([faces + i * nv for i in range(len(r.people))])
            save_mesh(tmp / "mesh.glb", all_v, all_f)
        if r.overlay is not None:
            save_png(tmp / "overlay.png", r.overlay)
            if r.side is not None:
                save_png(tmp / "side.png", r.side)
            if r.occlusion is not None and r.photo is not None:
                save_png(tmp / "occlusion.png", occlusion_picture(r.photo, r.occlusion, r.body_mask))
        save_json(tmp / "fit.json", fit_summary(r, info))
    return Path(folder)
