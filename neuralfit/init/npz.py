"""A user's regressor outputs (SPIN / EFT / PARE style ``.npz``) as starts for fitting.

Keys (N rows, one per person crop):

- pose: ``pose`` (N, 72) axis-angle (global orient first), or ``global_orient`` (N, 3) + ``body_pose`` (N, 69);
  (N, 24, 3, 3) rotation matrices are accepted for ``pose`` too.
- shape: ``shape`` or ``betas`` (N, K); K < 10 is zero-padded, K > 10 keeps the first 10 components.
- optional: ``imgname`` (N,) file names (matched by basename), ``center`` (N, 2) and ``scale`` (N,) (SPIN
  crops: box size = 200 * scale), ``pred_cam`` or ``cam`` (N, 3) weak perspective ``[s, tx, ty]``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init.types import StartParams


@dataclass
class InitTable:
    """Regressor outputs, one row per person.

    Attributes:
        global_orient: (N, 3), body_pose: (N, 69), betas: (N, 10) float32 axis-angle / shape.
        imgname: (N,) basenames, or None when the file has none.
        center: (N, 2) or None; scale: (N,) or None; cam: (N, 3) weak-perspective camera or None.
        path: the file it came from.
    """

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    imgname: np.ndarray | None = None
    center: np.ndarray | None = None
    scale: np.ndarray | None = None
    cam: np.ndarray | None = None
    path: str = ""

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    def start(self, index: int | list[int] | np.ndarray, device: str | torch.device = "cpu") -> StartParams:
        """Rows ``index`` as one :class:`StartParams` batch (``transl`` None)."""
        idx = np.atleast_1d(np.asarray(index, dtype=np.int64))
        if idx.size and (idx.min() < -len(self) or idx.max() >= len(self)):
            raise NeuralfitError(f"row {idx.tolist()} out of range for {len(self)} rows of {self.path}")
        return StartParams(*(torch.as_tensor(a[idx], device=device) for a in (self.global_orient, self.body_pose, self.betas)))

    def indices(self, image_name: str | os.PathLike) -> list[int]:
        """Rows whose ``imgname`` has the basename of ``image_name``. Without ``imgname`` in the file, a
        one-row table matches any image and a longer one raises (rows cannot be told apart)."""
        if self.imgname is None:
            if len(self) == 1:
                return [0]
            raise NeuralfitError(f"{self.path} has {len(self)} rows but no 'imgname'; cannot tell which row is which photo")
        base = Path(str(image_name)).name
        return [int(i) for i in np.flatnonzero(self.imgname == base)]

    def lookup(self, image_name: str | os.PathLike, device: str | torch.device = "cpu") -> list[StartParams]:
        """One single-row :class:`StartParams` per person recorded for this image (empty if none)."""
        return [self.start(i, device) for i in self.indices(image_name)]


def _array(data: np.lib.npyio.NpzFile, key: str, path: str, shape: tuple[int | None, ...]) -> np.ndarray:
    try:
        a = np.asarray(data[key])
    except Exception as e:  # noqa: BLE001 - a corrupt member or a pickled object array
        raise NeuralfitError(f"{path}: key {key!r} cannot be read ({type(e).__name__})") from e
    if a.ndim != len(shape) or any(s is not None and s != d for s, d in zip(shape, a.shape, strict=True)):
        want = "(" + ", ".join("N" if s is None else str(s) for s in shape) + ")"
        raise NeuralfitError(f"{path}: key {key!r} has shape {a.shape}; expected {want}")
    if a.dtype.kind not in "fiu":
        raise NeuralfitError(f"{path}: key {key!r} has dtype {a.dtype}; expected numbers")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise NeuralfitError(f"{path}: key {key!r} has NaN or infinite values")
    return a


def _array_ndim(data: np.lib.npyio.NpzFile, key: str, path: str) -> int:
    try:
        return int(np.asarray(data[key]).ndim)
    except Exception as e:  # noqa: BLE001 - a corrupt member or a pickled object array
        raise NeuralfitError(f"{path}: key {key!r} cannot be read ({type(e).__name__})") from e


def _rotmats_to_axis_angle(m: np.ndarray) -> np.ndarray:
    from pytorch3d.transforms import matrix_to_axis_angle

    return matrix_to_axis_angle(torch.as_tensor(m)).numpy().reshape(m.shape[0], -1)


def load_init_npz(path: str | os.PathLike) -> InitTable:
    """Read and validate a regressor-output ``.npz`` (see the module docstring); one-line errors name the key."""
    p = str(path)
    if not Path(p).is_file():
        raise NeuralfitError(f"init file {p} not found")
    try:
        data = np.load(p, allow_pickle=False)
    except Exception as e:  # noqa: BLE001 - not a zip/npz at all
        raise NeuralfitError(f"{p} is not a readable .npz file ({type(e).__name__})") from e
    if not hasattr(data, "files"):
        raise NeuralfitError(f"{p} holds a single array; expected an .npz with 'pose' and 'shape' keys")
    keys = set(data.files)
    if "pose" in keys:
        if _array_ndim(data, "pose", p) == 4:
            pose = _rotmats_to_axis_angle(_array(data, "pose", p, (None, 24, 3, 3)))
        else:
            pose = _array(data, "pose", p, (None, 72))
        go, bp = pose[:, :3], pose[:, 3:]
    elif {"global_orient", "body_pose"} <= keys:
        go = _array(data, "global_orient", p, (None, 3))
        bp = _array(data, "body_pose", p, (None, 69))
    else:
        raise NeuralfitError(f"{p} has keys {sorted(keys)}; expected 'pose' (N, 72) or 'global_orient' + 'body_pose'")
    n = go.shape[0]
    skey = "shape" if "shape" in keys else "betas" if "betas" in keys else None
    if skey is None:
        raise NeuralfitError(f"{p} has no 'shape' or 'betas' key; expected (N, 10) shape coefficients")
    betas = _array(data, skey, p, (None, None))
    betas = np.pad(betas, ((0, 0), (0, max(0, 10 - betas.shape[1]))))[:, :10]

    def rows(key: str, a: np.ndarray) -> np.ndarray:
        if a.shape[0] != n:
            raise NeuralfitError(f"{p}: key {key!r} has {a.shape[0]} rows; expected {n} like the pose")
        return a

    rows("global_orient" if "pose" not in keys else "pose", bp)
    rows(skey, betas)
    imgname = None
    if "imgname" in keys:
        names = np.asarray(data["imgname"])
        if names.ndim != 1 or names.dtype.kind not in "US":
            raise NeuralfitError(f"{p}: key 'imgname' has shape {names.shape} dtype {names.dtype}; expected (N,) strings")
        rows("imgname", names)
        imgname = np.array([Path(str(s.decode() if isinstance(s, bytes) else s)).name for s in names])
    center = rows("center", _array(data, "center", p, (None, 2))) if "center" in keys else None
    scale = None
    if "scale" in keys:
        scale = rows("scale", _array(data, "scale", p, (None,)))
        if (scale <= 0).any():
            raise NeuralfitError(f"{p}: key 'scale' has values <= 0; expected box size / 200 > 0")
    ckey = "pred_cam" if "pred_cam" in keys else "cam" if "cam" in keys else None
    cam = rows(ckey, _array(data, ckey, p, (None, 3))) if ckey else None
    return InitTable(go, bp, betas, imgname, center, scale, cam, p)
