"""Reading SMPL-format model files without chumpy, and writing the plain pickle ``smplx.SMPL`` reads.

An SMPL-format model is a dict with (V vertices, F faces, 24 joints):

- ``v_template`` (V, 3) rest vertices, metres; ``f`` (F, 3) triangles;
- ``shapedirs`` (V, 3, >=10) shape blend shapes; ``posedirs`` (V, 3, 207) pose-corrective blend shapes;
- ``J_regressor`` (24, V) joints from rest vertices (dense or scipy.sparse);
- ``weights`` (V, 24) skinning weights; ``kintree_table`` (2, 24), row 0 = parents (root: -1 or 2**32-1).

Official SMPL ``.pkl`` files store some arrays as chumpy objects. chumpy is unmaintained and does not
import on current numpy, so :class:`_ChumpyFreeUnpickler` maps every ``chumpy.*`` class to a stub
and :func:`_unchump` turns the stubs back into numpy arrays (a chumpy array keeps its value in ``x``).
"""

from __future__ import annotations

import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from neuralfit.errors import NeuralfitError

SMPL_JOINT_NAMES: list[str] = [
    "pelvis", "left_hip", "right_hip", "spine1", "left_knee", "right_knee", "spine2", "left_ankle",
    "right_ankle", "spine3", "left_foot", "right_foot", "neck", "left_collar", "right_collar", "head",
    "left_shoulder", "right_shoulder", "left_elbow", "right_elbow", "left_wrist", "right_wrist",
    "left_hand", "right_hand",
]  # fmt: skip
SMPL_PARENTS: list[int] = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
NUM_JOINTS = 24
REQUIRED_KEYS = ("v_template", "f", "shapedirs", "J_regressor", "weights", "kintree_table")


class _ChumpyStub:
    """Stands in for any chumpy class while unpickling; keeps the pickled state."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._state: Any = None

    def __setstate__(self, state: Any) -> None:
        self._state = state


class _ChumpyFreeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if module == "chumpy" or module.startswith("chumpy."):
            return _ChumpyStub
        return super().find_class(module, name)


def _unchump(obj: Any, key: str, path: Path) -> Any:
    if isinstance(obj, _ChumpyStub):
        state = getattr(obj, "_state", None)
        if isinstance(state, dict) and "x" in state:
            return np.asarray(state["x"])
        raise NeuralfitError(f"{path}: entry {key!r} is a chumpy expression, expected a stored array")
    return obj


def read_smpl_file(path: str | os.PathLike) -> dict[str, Any]:
    """Read an SMPL-format ``.pkl`` (chumpy or plain) or ``.npz`` into a dict of numpy arrays.

    Raises:
        NeuralfitError: unreadable file, or a key of :data:`REQUIRED_KEYS` missing / malformed.
    """
    path = Path(path)
    try:
        if path.suffix == ".npz":
            with np.load(path, allow_pickle=True) as z:
                data = {k: z[k] for k in z.files}
        else:
            with open(path, "rb") as fh:
                data = _ChumpyFreeUnpickler(fh, encoding="latin1").load()
    except (OSError, pickle.UnpicklingError, EOFError, ValueError, ImportError, AttributeError) as exc:
        raise NeuralfitError(
            f"cannot read SMPL model file {path} ({type(exc).__name__}), expected an SMPL .pkl or .npz"
        ) from None
    if not isinstance(data, dict):
        raise NeuralfitError(f"{path} holds a {type(data).__name__}, expected an SMPL model dict")
    data = {k: _unchump(v, k, path) for k, v in data.items()}
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise NeuralfitError(f"{path} lacks {', '.join(missing)}, expected an SMPL-format model")
    _check_shapes(data, path)
    return data


def _dense(a: Any) -> np.ndarray:
    if hasattr(a, "toarray"):  # scipy.sparse
        return np.asarray(a.toarray())
    return np.asarray(a)


def _check_shapes(data: dict[str, Any], path: Path) -> None:
    v = np.asarray(data["v_template"])
    if v.ndim != 2 or v.shape[1] != 3:
        raise NeuralfitError(f"{path}: v_template has shape {v.shape}, expected (V, 3)")
    nv = v.shape[0]
    checks = {
        "shapedirs": (np.asarray(data["shapedirs"]).shape[:2], (nv, 3)),
        "J_regressor": (tuple(data["J_regressor"].shape), (NUM_JOINTS, nv)),
        "weights": (np.asarray(data["weights"]).shape, (nv, NUM_JOINTS)),
        "kintree_table": (np.asarray(data["kintree_table"]).shape, (2, NUM_JOINTS)),
    }
    for key, (got, want) in checks.items():
        if tuple(got) != tuple(want):
            raise NeuralfitError(f"{path}: {key} has shape {tuple(got)}, expected {want}")
    if "posedirs" in data and np.asarray(data["posedirs"]).shape != (nv, 3, 207):
        raise NeuralfitError(
            f"{path}: posedirs has shape {np.asarray(data['posedirs']).shape}, expected ({nv}, 3, 207)"
        )


def to_plain_smpl_dict(data: dict[str, Any]) -> dict[str, np.ndarray]:
    """The arrays ``smplx.SMPL`` needs, as plain dense numpy (no chumpy, no sparse), float32."""
    nv = np.asarray(data["v_template"]).shape[0]
    posedirs = data.get("posedirs")
    kintree = np.asarray(data["kintree_table"]).astype(np.int64)
    kintree[0, 0] = -1  # official files store the root's parent as 2**32 - 1
    return {
        "v_template": np.asarray(data["v_template"], dtype=np.float32),
        "f": np.asarray(data["f"], dtype=np.int64),
        "shapedirs": np.asarray(data["shapedirs"], dtype=np.float32),
        "posedirs": (
            np.zeros((nv, 3, 207), np.float32) if posedirs is None else np.asarray(posedirs, np.float32)
        ),
        "J_regressor": _dense(data["J_regressor"]).astype(np.float32),
        "weights": np.asarray(data["weights"], dtype=np.float32),
        "kintree_table": kintree,
    }


def resolve_smpl_path(spec: str | os.PathLike, gender: str = "neutral") -> Path:
    """Find the model file for ``spec`` the way ``smplx.create`` lays files out.

    Accepts a ``.pkl`` / ``.npz`` file, or a folder holding ``SMPL_{NEUTRAL,MALE,FEMALE}.{pkl,npz}``
    (also the official ``basicmodel_neutral_lbs_10_207_0_v1.1.0.pkl`` names) directly or under ``smpl/``.
    """
    path = Path(spec).expanduser()
    g = gender.lower()
    if g not in ("neutral", "male", "female"):
        raise NeuralfitError(f"gender {gender!r} is not one of neutral, male, female")
    if path.is_file():
        if path.suffix not in (".pkl", ".npz"):
            raise NeuralfitError(f"SMPL model file {path} has suffix {path.suffix!r}, expected .pkl or .npz")
        return path
    if path.is_dir():
        short = {"neutral": "neutral", "male": "m", "female": "f"}[g]
        names = [f"SMPL_{g.upper()}.pkl", f"SMPL_{g.upper()}.npz", f"basicmodel_{short}_lbs_10_207_0_v1.1.0.pkl",
                 f"basicModel_{short}_lbs_10_207_0_v1.0.0.pkl"]  # fmt: skip
        for folder in (path, path / "smpl", path / "SMPL"):
            for name in names:
                if (folder / name).is_file():
                    return folder / name
        raise NeuralfitError(
            f"no SMPL_{g.upper()}.pkl or .npz in {path} or {path / 'smpl'}, expected an SMPL model folder"
        )
    raise NeuralfitError(
        f"SMPL model path {path} does not exist, expected 'free' or an SMPL .pkl/.npz file or folder"
    )


def write_plain_pickle(data: dict[str, np.ndarray], path: str | os.PathLike) -> None:
    """Write the plain (chumpy-free) SMPL pickle that ``smplx.SMPL(model_path=path)`` reads, atomically."""
    from neuralfit.io.atomic import atomic_path

    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        pickle.dump(dict(data), fh, protocol=4)
