"""``load_body_model``: the free body or real SMPL files -> :class:`BodyModel`.

Cache layout under ``neuralfit_home()`` (created on demand, safe to delete):

- ``bodies/neuralfit_free_<hash>.pkl``: the free asset converted to the plain pickle ``smplx.SMPL`` reads.
- ``lowres/<hash>_<n>.npz``: low-res neural mesh of a real SMPL model (the free body ships its own).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralfit.body.keypoints import LANDMARK_NAMES, landmark_ids_for_smpl
from neuralfit.body.lowres import DEFAULT_LOWRES_VERTICES, LowResGeometry, build_lowres_geometry
from neuralfit.body.model import BodyModel
from neuralfit.body.smpl_format import (
    SMPL_PARENTS,
    read_smpl_file,
    resolve_smpl_path,
    to_plain_smpl_dict,
    write_plain_pickle,
)
from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path
from neuralfit.paths import neuralfit_home

FREE_ASSET = "neuralfit_free.npz"
FREE_KEYPOINTS = "neuralfit_free_keypoints.json"
FREE_NAME = "neuralfit-free"


def free_asset_path() -> Path:
    """Path of the shipped free-body asset inside the installed package."""
    return Path(str(resources.files("neuralfit.body").joinpath("assets", FREE_ASSET)))


def free_calibration_path() -> Path:
    """Path of the free body's shipped detector-keypoint calibration (``scripts/calibrate_keypoints.py``)."""
    return Path(str(resources.files("neuralfit.body").joinpath("assets", FREE_KEYPOINTS)))


def read_keypoint_calibration(path: str | os.PathLike) -> dict[str, dict[str, dict[str, float]]]:
    """``{set: {keypoint: {joint: weight}}}`` from a calibration JSON (its ``"sets"`` entry)."""
    try:
        sets = json.loads(Path(path).read_text())["sets"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise NeuralfitError(f"cannot read the keypoint calibration {path} ({exc!r})") from None
    ok = isinstance(sets, dict) and all(
        isinstance(kps, dict) and all(isinstance(src, dict) and src and all(
            isinstance(w, (int, float)) for w in src.values()) for src in kps.values()) for kps in sets.values())
    if not ok:
        raise NeuralfitError(f"keypoint calibration {path}: 'sets' must map set -> keypoint -> {{joint: weight}}")
    for kps in sets.values():
        for name, src in kps.items():
            if abs(sum(src.values()) - 1.0) > 1e-4:
                raise NeuralfitError(f"keypoint calibration {path}: the weights of {name!r} do not sum to 1")
    return sets


def _sha(*arrays: np.ndarray) -> str:
    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _lowres_arrays(geo: LowResGeometry) -> tuple[np.ndarray, ...]:
    return (geo.tri_vertex_ids.astype(np.int64), geo.bary.astype(np.float32), geo.faces.astype(np.int64))


def read_free_asset(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The free body's arrays (float32 / int64), its landmark ids and low-res geometry."""
    path = Path(path) if path is not None else free_asset_path()
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise NeuralfitError(f"cannot read the free body asset {path} ({exc}), reinstall neuralfit") from None
    names = [str(n) for n in a["landmark_names"]]
    if names != LANDMARK_NAMES:
        raise NeuralfitError(f"free body asset {path} has landmarks {names}, expected {LANDMARK_NAMES}")
    weights = a["weights"].astype(np.float32)
    weights /= weights.sum(1, keepdims=True)  # stored as float16
    parents = a["parents"].astype(np.int64)
    smpl = {
        "v_template": a["v_template"].astype(np.float32),
        "f": a["faces"].astype(np.int64),
        "shapedirs": a["shapedirs"].astype(np.float32),
        "J_regressor": a["J_regressor"].astype(np.float32),
        "weights": weights,
        "kintree_table": np.stack([parents, np.arange(24)]),
    }
    return {
        "smpl": smpl,
        "landmark_ids": a["landmark_ids"].astype(np.int64),
        "lowres": LowResGeometry(
            a["lowres_tri_vertex_ids"].astype(np.int64),
            a["lowres_bary"].astype(np.float32),
            a["lowres_faces"].astype(np.int64),
        ),
        # Key of the converted pickle: the SMPL arrays only.
        "hash": _sha(*(smpl[k] for k in sorted(smpl))),
        "report": str(a["build_report"]) if "build_report" in a else "{}",
    }


def free_smpl_pickle(asset: dict[str, Any] | None = None) -> Path:
    """Convert the free asset to the plain SMPL pickle on first use; returns its cached path.

    The file name carries the asset's content hash, so a new neuralfit version never reads a stale one.
    """
    asset = asset or read_free_asset()
    out = neuralfit_home() / "bodies" / f"neuralfit_free_{asset['hash']}.pkl"
    if not out.exists():
        out.parent.mkdir(parents=True, exist_ok=True)
        write_plain_pickle(to_plain_smpl_dict(asset["smpl"]), out)
    return out


def _lowres_for(v_template: np.ndarray, faces: np.ndarray, target: int) -> LowResGeometry:
    """Remesh (or read from the cache) the low-res mesh of a body, keyed by its geometry."""
    key = _sha(v_template.astype(np.float32), faces.astype(np.int64))
    path = neuralfit_home() / "lowres" / f"{key}_{target}.npz"
    if path.exists():
        try:
            with np.load(path) as z:
                return LowResGeometry(z["tri_vertex_ids"], z["bary"], z["faces"])
        except (OSError, ValueError, KeyError):
            pass  # a damaged cache entry is rebuilt below
    geo = build_lowres_geometry(v_template, faces, target)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez(tmp, tri_vertex_ids=geo.tri_vertex_ids, bary=geo.bary, faces=geo.faces)
    return geo


def load_body_model(
    spec: str | os.PathLike = "free",
    gender: str = "neutral",
    device: str | torch.device = "cpu",
    num_betas: int = 10,
    lowres_vertices: int = DEFAULT_LOWRES_VERTICES,
    keypoint_calibration: str | os.PathLike | None = None,
) -> BodyModel:
    """Load a body model.

    Args:
        spec: ``"free"`` (the shipped neuralfit-free body) or a path to real SMPL files: a ``.pkl`` /
            ``.npz`` file, or a folder with ``SMPL_{NEUTRAL,MALE,FEMALE}.{pkl,npz}`` directly or under ``smpl/``.
        gender: ``"neutral"``, ``"male"`` or ``"female"`` (the free body is neutral only).
        device: where the model's tensors live.
        num_betas: shape coefficients used (at most what the model has; the free body has 10).
        lowres_vertices: target size of the low-res neural mesh for real SMPL (the free body ships its own).
        keypoint_calibration: a JSON file from ``scripts/calibrate_keypoints.py``: where a detector puts its
            keypoints on this body (docs/body.md). Default: the free body's shipped file; none for real SMPL.

    Raises:
        NeuralfitError: a wrong path, an unreadable / malformed model file, or an unknown gender.
    """
    import smplx
    from smplx.utils import Struct

    spec_str = str(spec)
    if spec_str == "free":
        if gender.lower() != "neutral":
            raise NeuralfitError(f"the free body has one neutral model, got gender {gender!r}; use 'neutral'")
        asset = read_free_asset()
        pkl = free_smpl_pickle(asset)
        with contextlib.redirect_stdout(io.StringIO()):  # smplx prints a warning for < 300 betas
            layer = smplx.SMPLLayer(model_path=str(pkl), num_betas=num_betas)
        body = BodyModel(
            layer,
            asset["landmark_ids"],
            np.ones(len(LANDMARK_NAMES), bool),
            asset["lowres"],
            spec="free",
            name=FREE_NAME,
            keypoint_calibration=read_keypoint_calibration(keypoint_calibration or free_calibration_path()),
            model_hash=_sha(
                *(asset["smpl"][k] for k in sorted(asset["smpl"])),
                asset["landmark_ids"],
                *_lowres_arrays(asset["lowres"]),
            ),
        )
        return body.to(device)

    path = resolve_smpl_path(spec_str, gender)
    data = to_plain_smpl_dict(read_smpl_file(path))
    if list(data["kintree_table"][0]) != SMPL_PARENTS:
        raise NeuralfitError(f"{path} has kinematic tree {list(data['kintree_table'][0])}, expected SMPL's")
    with contextlib.redirect_stdout(io.StringIO()):
        layer = smplx.SMPLLayer(model_path=str(path), data_struct=Struct(**data), num_betas=num_betas)
    ids, ok = landmark_ids_for_smpl(data["v_template"].shape[0])
    lowres = _lowres_for(data["v_template"], data["f"], lowres_vertices)
    body = BodyModel(
        layer,
        ids,
        ok,
        lowres,
        spec=spec_str,
        name="smpl",
        model_hash=_sha(*(data[k] for k in sorted(data)), ids, *_lowres_arrays(lowres)),
        keypoint_calibration=read_keypoint_calibration(keypoint_calibration) if keypoint_calibration else None,
    )
    return body.to(device)
