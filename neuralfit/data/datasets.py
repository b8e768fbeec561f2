"""Torch datasets over SPIN/EFT-style ``.npz`` files: real (3DPW, H36M, COCO-EFT...) and synthetic.

The file holds ``imgname`` (N,), ``center`` (N, 2), ``scale`` (N,) and any of ``part`` (N, 24, 3),
``pose`` (N, 72), ``shape`` (N, 10), ``has_smpl`` (N,), ``S`` (N, 24, 4); neuralfit's synthetic sets
add ``cam_f``, ``transl``, ``joint0``, ``partseg``/``occluder`` mask file names, ``lowres_uv``/``lowres_vis``
and ``part_coco17``. Everything is validated when the dataset is built: missing keys, wrong shapes,
non-finite numbers and missing or non-image files raise :class:`NeuralfitError` naming the file.

Each item is a SPIN crop (``center``/``scale`` -> ``res`` pixels) with, when augmenting, scale /
rotation / centre jitter, a horizontal flip (left/right keypoints, parts and pose swapped),
per-channel colour noise and a synthetic occluder (SynthOcc), plus the crop transform so that
outputs can be mapped back to the original image.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch

from neuralfit.data.crop import (
    COCO17_FLIP,
    apply_affine,
    compose,
    crop_transform,
    flip_joints3d,
    flip_keypoints,
    flip_partseg,
    flip_pose,
    flip_transform,
    rot_z,
    rotate_global_orient,
    warp,
)
from neuralfit.data.occluders import random_occlusion
from neuralfit.errors import NeuralfitError

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)

_SIGNATURES = {".jpg": (b"\xff\xd8\xff",), ".jpeg": (b"\xff\xd8\xff",), ".png": (b"\x89PNG\r\n\x1a\n",)}


@dataclass
class AugmentConfig:
    """On-the-fly augmentation; defaults follow SPIN (flip 0.5, rot 30 deg w.p. 0.4, scale 0.25, noise 0.4)."""

    flip_prob: float = 0.5
    rot_std_deg: float = 30.0  # clipped to 2 std
    rot_prob: float = 0.4
    scale_std: float = 0.25  # clipped to 1 std
    centre_std: float = 0.0  # centre jitter, fraction of the box side
    colour_noise: float = 0.4  # per-channel gain in [1 - n, 1 + n]
    occluder_prob: float = 0.3  # SynthOcc-style pasted occluder
    occluder_size: tuple[float, float] = (0.1, 0.35)  # radius / crop side


@dataclass
class DatasetConfig:
    """How items are produced. ``augment=None`` gives the deterministic test-time crop."""

    res: int = 224
    augment: AugmentConfig | None = field(default_factory=AugmentConfig)
    normalize: bool = True  # ImageNet mean/std, as the backbones expect
    validate: str = "header"  # "exists", "header" (also checks the JPEG/PNG signature) or "decode"


def _fail(msg: str) -> NeuralfitError:
    return NeuralfitError(msg)


class NpzDataset(torch.utils.data.Dataset):
    """A SPIN/EFT-style ``.npz`` dataset (real or synthetic) yielding network/fitter tensors.

    Args:
        npz_path: the annotation file.
        img_root: folder that ``imgname`` entries are relative to (default: the npz's folder).
        config: crop resolution, augmentation, validation.
        seed: augmentation seed; item ``i`` of epoch ``e`` uses ``SeedSequence([seed, e, i])``, so
            loading is reproducible whatever the number of DataLoader workers. Call
            :meth:`set_epoch` to get new augmentations each epoch.
    """

    def __init__(self, npz_path: str | os.PathLike, img_root: str | os.PathLike | None = None,
                 config: DatasetConfig | None = None, seed: int = 0):
        self.path = Path(npz_path)
        self.config = config or DatasetConfig()
        self.seed = int(seed)
        self.epoch = 0
        self.root = Path(img_root) if img_root is not None else self.path.parent
        self.data = self._load()
        self.n = len(self.data["imgname"])
        self._check_files()

    # -- validation ---------------------------------------------------------------------------

    def _load(self) -> dict[str, np.ndarray]:
        if not self.path.is_file():
            raise _fail(f"dataset file {self.path} does not exist")
        known = {"imgname", "center", "scale", "part", "pose", "shape", "has_smpl", "S", "cam_f", "transl",
                 "joint0", "part_coco17", "partseg", "occluder", "lowres_uv", "lowres_vis"}
        data: dict[str, np.ndarray] = {}
        try:
            with np.load(self.path, allow_pickle=False) as z:
                for k in z.files:
                    try:
                        data[k] = z[k]
                    except ValueError as exc:  # a pickled object array: fine for keys we do not use
                        if k in known:
                            raise _fail(f"{self.path}: key {k!r} is a pickled object array; expected numbers or "
                                        "strings") from exc
        except NeuralfitError:
            raise
        except Exception as exc:  # noqa: BLE001 - any decoding failure means a corrupt file
            raise _fail(f"dataset file {self.path} is not a readable npz ({type(exc).__name__}: {exc})") from exc
        for k in ("imgname", "partseg", "occluder"):
            if k in data and data[k].dtype.kind == "S":  # some preprocessing scripts store bytes
                data[k] = np.char.decode(data[k], "utf-8")
        for key in ("imgname", "center", "scale"):
            if key not in data:
                raise _fail(f"dataset file {self.path} lacks the required key {key!r}")
        n = len(data["imgname"])
        shapes = {"center": (2,), "scale": (), "part": (24, 3), "pose": (72,), "shape": (10,),
                  "has_smpl": (), "S": (24, 4), "cam_f": (), "transl": (3,), "joint0": (3,),
                  "part_coco17": (17, 3)}
        for key, shp in shapes.items():
            if key not in data:
                continue
            a = data[key]
            if key == "scale" and a.ndim == 2 and a.shape[1] == 1:
                a = data[key] = a[:, 0]
            if a.shape != (n, *shp):
                raise _fail(f"{self.path}: key {key!r} has shape {a.shape}, expected {(n, *shp)}")
            if not np.isfinite(a).all():
                raise _fail(f"{self.path}: key {key!r} contains NaN or inf")
        if (data["scale"] <= 0).any():
            raise _fail(f"{self.path}: 'scale' must be > 0 (box side / 200)")
        return data

    def _resolve(self, name: Any) -> Path:
        return self.root / str(name)

    def _check_files(self) -> None:
        mode = self.config.validate
        if mode not in ("exists", "header", "decode"):
            raise _fail(f"DatasetConfig.validate must be 'exists', 'header' or 'decode', got {mode!r}")
        keys = ["imgname"] + [k for k in ("partseg", "occluder") if k in self.data]
        for key in keys:
            missing = []
            for i, name in enumerate(self.data[key]):
                p = self._resolve(name)
                if not p.is_file():
                    missing.append(p)
                    continue
                if mode == "header":
                    sig = _SIGNATURES.get(p.suffix.lower())
                    with open(p, "rb") as fh:
                        head = fh.read(8)
                    if not head or (sig and not any(head.startswith(s) for s in sig)):
                        raise _fail(f"image {p} (item {i} of {self.path}) is empty or not a {p.suffix} file")
                elif mode == "decode":
                    self._read(p, i, cv2.IMREAD_UNCHANGED)
            if missing:
                more = f" and {len(missing) - 1} more" if len(missing) > 1 else ""
                raise _fail(f"{key} file {missing[0]} listed in {self.path} does not exist{more}")

    def _read(self, p: Path, i: int, flags: int = cv2.IMREAD_COLOR) -> np.ndarray:
        img = cv2.imread(str(p), flags)
        if img is None:
            raise _fail(f"cannot decode image {p} (item {i} of {self.path})")
        return img

    # -- items --------------------------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int) -> dict[str, Any]:
        cfg, aug, d = self.config, self.config.augment, self.data
        res = cfg.res
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, int(i)]))
        img = self._read(self._resolve(d["imgname"][i]), i)
        center = d["center"][i].astype(np.float64)
        scale = float(d["scale"][i])
        rot, flip, gain = 0.0, False, np.ones(3)
        if aug is not None:
            scale *= float(np.clip(rng.normal(1, aug.scale_std), 1 - aug.scale_std, 1 + aug.scale_std))
            if rng.random() < aug.rot_prob:
                rot = float(np.clip(rng.normal(0, aug.rot_std_deg), -2 * aug.rot_std_deg, 2 * aug.rot_std_deg))
            center = center + rng.normal(0, aug.centre_std, 2) * 200 * scale
            flip = rng.random() < aug.flip_prob
            gain = rng.uniform(1 - aug.colour_noise, 1 + aug.colour_noise, 3)
        aff = crop_transform(center, scale, res, rot)
        full = compose(flip_transform(res), aff) if flip else aff
        crop = warp(img, full, res)

        out: dict[str, Any] = {"index": int(i), "imgname": str(d["imgname"][i]),
                               "center": torch.tensor(center, dtype=torch.float32),
                               "scale": torch.tensor(scale, dtype=torch.float32),
                               "rot": torch.tensor(rot, dtype=torch.float32), "flip": bool(flip),
                               "crop_transform": torch.tensor(full, dtype=torch.float32)}
        kp = np.zeros((24, 3))
        if "part" in d:
            kp = d["part"][i].astype(np.float64).copy()
            kp[:, :2] = apply_affine(aff, kp[:, :2])
            if flip:
                kp = flip_keypoints(kp, res)
        inside = (kp[:, 0] >= 0) & (kp[:, 0] <= res - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= res - 1)
        visible = (kp[:, 2] > 0) & inside
        if "part_coco17" in d:
            c = d["part_coco17"][i].astype(np.float64).copy()
            c[:, :2] = apply_affine(aff, c[:, :2])
            if flip:
                c = flip_keypoints(c, res, COCO17_FLIP)
            out["keypoints_coco17"] = torch.tensor(c, dtype=torch.float32)

        partseg = np.zeros((res, res), np.uint8)
        has_partseg = "partseg" in d
        if has_partseg:
            m = warp(self._read(self._resolve(d["partseg"][i]), i, cv2.IMREAD_GRAYSCALE), aff, res, nearest=True)
            partseg = flip_partseg(m) if flip else m
        occ = np.zeros((res, res), np.uint8)
        if "occluder" in d:
            m = warp(self._read(self._resolve(d["occluder"][i]), i, cv2.IMREAD_GRAYSCALE), aff, res, nearest=True)
            occ = m[:, ::-1].copy() if flip else m

        # Synthetic occluder pasted over the person's keypoint box.
        if aug is not None and rng.random() < aug.occluder_prob:
            pts = kp[visible, :2] if visible.any() else np.array([[res / 2, res / 2]])
            x0, y0 = pts.min(0)
            x1, y1 = pts.max(0)
            crop, m = random_occlusion(rng, crop, None, (x0, y0, x1 + 1, y1 + 1), aug.occluder_size)
            covered = m.astype(bool)
            occ = np.where(covered, np.uint8(1), occ)
            partseg = np.where(covered, np.uint8(0), partseg)
            px = np.clip(np.rint(kp[:, :2]).astype(int), 0, res - 1)
            visible &= ~covered[px[:, 1], px[:, 0]]
        else:
            covered = None

        x = crop[..., ::-1].astype(np.float32) / 255.0  # BGR -> RGB
        x = np.clip(x * gain.astype(np.float32), 0, 1)
        if cfg.normalize:
            x = (x - IMAGENET_MEAN) / IMAGENET_STD
        out["img"] = torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)))
        out["keypoints"] = torch.tensor(kp, dtype=torch.float32)
        out["visible"] = torch.tensor(visible)
        out["partseg"] = torch.from_numpy(partseg.astype(np.int64))
        out["has_partseg"] = has_partseg
        out["occluder"] = torch.from_numpy(occ)

        pose = d["pose"][i].astype(np.float64).copy() if "pose" in d else np.zeros(72)
        betas = d["shape"][i].astype(np.float64) if "shape" in d else np.zeros(10)
        has_smpl = float(d["has_smpl"][i]) if "has_smpl" in d else float("pose" in d)
        joints = d["S"][i].astype(np.float64).copy() if "S" in d else np.zeros((24, 4))
        rz = rot_z(rot)
        if rot:
            pose[:3] = rotate_global_orient(pose[:3], rot)
            joints[:, :3] = joints[:, :3] @ rz.T
        if flip:
            pose = flip_pose(pose)
            joints = flip_joints3d(joints)
        out["pose"] = torch.tensor(pose, dtype=torch.float32)
        out["betas"] = torch.tensor(betas, dtype=torch.float32)
        out["has_smpl"] = torch.tensor(has_smpl, dtype=torch.float32)
        out["joints3d"] = torch.tensor(joints, dtype=torch.float32)
        out["has_joints3d"] = torch.tensor(float("S" in d), dtype=torch.float32)

        # Camera of the crop. Known for synthetic sets (cam_f, transl); else the default crop camera.
        from neuralfit.render.camera import default_focal

        f_default = default_focal(res)
        has_cam = "cam_f" in d and "transl" in d
        transl = np.zeros(3)
        k = np.array([[f_default, 0, res / 2], [0, f_default, res / 2], [0, 0, 1.0]])
        if has_cam:
            img_res = float(img.shape[1])
            s = res / (200.0 * scale)
            pp = apply_affine(aff, np.array([img_res / 2, img.shape[0] / 2.0]))
            k = np.array([[d["cam_f"][i] * s, 0, pp[0]], [0, d["cam_f"][i] * s, pp[1]], [0, 0, 1.0]])
            transl = d["transl"][i].astype(np.float64)
            j0 = d["joint0"][i].astype(np.float64) if "joint0" in d else np.zeros(3)
            # SMPL rotates about the root joint j0: R' (v - j0) + j0 + t' = Rz (R (v - j0) + j0 + t).
            transl = rz @ (j0 + transl) - j0
            if flip:
                k[0, 2] = res - 1 - k[0, 2]
                transl = np.array([-(transl[0] + j0[0]) - j0[0], transl[1], transl[2]])
        out["cam_K"] = torch.tensor(k, dtype=torch.float32)
        out["transl"] = torch.tensor(transl, dtype=torch.float32)
        out["has_camera"] = has_cam

        if "lowres_uv" in d and "lowres_vis" in d and not flip:
            # The mirror of a low-res vertex is another vertex; without its map, flipped items drop these.
            out["lowres_uv"] = torch.tensor(apply_affine(aff, d["lowres_uv"][i].astype(np.float64)),
                                            dtype=torch.float32)
            lv = d["lowres_vis"][i].astype(bool)
            if covered is not None:
                pv = np.clip(np.rint(out["lowres_uv"].numpy()).astype(int), 0, res - 1)
                lv = lv & ~covered[pv[:, 1], pv[:, 0]]
            out["lowres_vis"] = torch.tensor(lv)
            out["has_lowres"] = True
        elif "lowres_uv" in d:
            out["lowres_uv"] = torch.zeros(d["lowres_uv"].shape[1:], dtype=torch.float32)
            out["lowres_vis"] = torch.zeros(d["lowres_vis"].shape[1:], dtype=torch.bool)
            out["has_lowres"] = False
        return out
