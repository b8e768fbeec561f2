"""A tiny procedural body with the `neuralfit.body.BodyModel` interface, for tests and offline demos.

Capsules on an SMPL-like 24-joint skeleton, rigidly skinned (each capsule follows its parent
joint). It lets the data engine and its tests run in seconds and without any body asset; it is
*not* a human model (no shape space worth the name, crude proportions). Use
``neuralfit.body.load_body_model("free")`` for real data.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

# SMPL kinematic tree and rough rest offsets (metres, Y up, subject faces +Z, subject's left = +X).
_PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21]
_OFFSETS = [
    (0, 0.95, 0), (0.07, -0.09, 0), (-0.07, -0.09, 0), (0, 0.11, -0.01), (0.03, -0.38, 0.0),
    (-0.03, -0.38, 0.0), (0, 0.13, 0), (0, -0.40, -0.04), (0, -0.40, -0.04), (0, 0.05, 0.02),
    (0.0, -0.05, 0.12), (0.0, -0.05, 0.12), (0, 0.21, -0.03), (0.08, 0.11, 0), (-0.08, 0.11, 0),
    (0, 0.09, 0.04), (0.10, 0.03, 0), (-0.10, 0.03, 0), (0.26, 0, 0), (-0.26, 0, 0), (0.25, 0, 0),
    (-0.25, 0, 0), (0.08, 0, 0), (-0.08, 0, 0),
]
# Capsule radius of the bone ending at each joint (the capsule belongs to the parent joint's part).
_RADII = {1: 0.08, 2: 0.08, 3: 0.12, 4: 0.07, 5: 0.07, 6: 0.13, 7: 0.05, 8: 0.05, 9: 0.14, 10: 0.04,
          11: 0.04, 12: 0.06, 13: 0.06, 14: 0.06, 15: 0.05, 16: 0.05, 17: 0.05, 18: 0.045, 19: 0.045,
          20: 0.035, 21: 0.035, 22: 0.03, 23: 0.03}
# spin24 -> SMPL joint for joints; None = a head surface point added below.
_SPIN24_FROM_SMPL = [8, 5, 2, 1, 4, 7, 21, 19, 17, 16, 18, 20, 12, None, 0, 9, 6, 15, 15, None, None, None,
                     None, None]
_HEAD_RADIUS = 0.10
_HEAD_POINTS = {13: (0, 1.0, 0), 19: (0, 0.1, 1.0), 20: (0.35, 0.3, 0.9), 21: (-0.35, 0.3, 0.9),
                22: (0.98, 0.1, 0), 23: (-0.98, 0.1, 0)}
_COCO17_FROM_SPIN24 = [19, 20, 21, 22, 23, 9, 8, 10, 7, 11, 6, 3, 2, 4, 1, 5, 0]


def _rodrigues(aa: torch.Tensor) -> torch.Tensor:
    """(..., 3) axis-angle -> (..., 3, 3) rotation matrices."""
    angle = aa.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    k = aa / angle
    kx, ky, kz = k.unbind(-1)
    zero = torch.zeros_like(kx)
    kmat = torch.stack([zero, -kz, ky, kz, zero, -kx, -ky, kx, zero], -1).reshape(*aa.shape[:-1], 3, 3)
    eye = torch.eye(3, dtype=aa.dtype).expand_as(kmat)
    s = torch.sin(angle)[..., None]
    c = torch.cos(angle)[..., None]
    return eye + s * kmat + (1 - c) * kmat @ kmat


@dataclass
class _Output:
    vertices: torch.Tensor  # (B, V, 3)
    joints: torch.Tensor  # (B, 24, 3)
    head_points: torch.Tensor  # (B, 6, 3)


class _KeypointSet:
    def __init__(self, names: list[str]):
        self.names = names


class _LowRes:
    """Every ``stride``-th vertex of the toy mesh: the part of the LowResMesh interface the engine uses."""

    def __init__(self, n_verts: int, part_labels: torch.Tensor, stride: int = 8):
        self.index = torch.arange(0, n_verts, stride)
        self.part_labels = part_labels[self.index]
        self.faces = torch.zeros((0, 3), dtype=torch.long)

    def vertices(self, verts: torch.Tensor) -> torch.Tensor:
        return verts[:, self.index]


class ToyBody:
    """Procedural capsule body with the subset of the BodyModel interface the data engine uses."""

    name = "toy"
    spec = "toy"

    def __init__(self, sections: int = 12):
        import trimesh

        parents = torch.tensor(_PARENTS)
        rest = torch.zeros(24, 3, dtype=torch.float64)
        for j in range(24):
            rest[j] = torch.tensor(_OFFSETS[j], dtype=torch.float64) + (rest[_PARENTS[j]] if j else 0)
        verts, faces, labels = [], [], []
        n = 0
        for j in range(1, 24):
            p = _PARENTS[j]
            if p == 9 and j != 12:  # collars: fold into the chest capsule
                pass
            a, b = rest[p].numpy(), rest[j].numpy()
            seg = b - a
            length = float(np.linalg.norm(seg))
            cap = trimesh.creation.capsule(height=length, radius=_RADII[j], count=[sections, sections])
            # trimesh's capsule runs along +Z centred at the origin: rotate onto the bone.
            zaxis = np.array([0, 0, 1.0])
            d = seg / length
            rot = trimesh.geometry.align_vectors(zaxis, d)
            v = cap.vertices @ rot[:3, :3].T + (a + b) / 2
            verts.append(v)
            faces.append(cap.faces + n)
            labels.append(np.full(len(v), p))
            n += len(v)
        head = trimesh.creation.icosphere(subdivisions=2, radius=_HEAD_RADIUS)
        hc = rest[15].numpy() + np.array([0, 0.06, 0])
        verts.append(head.vertices + hc)
        faces.append(head.faces + n)
        labels.append(np.full(len(head.vertices), 15))
        self._rest_verts = torch.tensor(np.concatenate(verts), dtype=torch.float32)
        self.faces = torch.tensor(np.concatenate(faces), dtype=torch.long)
        self.part_labels = torch.tensor(np.concatenate(labels), dtype=torch.long)
        self._rest_joints = rest.float()
        self._head_centre = torch.tensor(hc, dtype=torch.float32)
        self.parents = parents
        self.part_colors = torch.tensor(
            np.concatenate([[[0, 0, 0]], (np.random.default_rng(0).random((24, 3)) * 200 + 55)]).astype(np.uint8))
        self.lowres = _LowRes(len(self._rest_verts), self.part_labels)
        self.keypoint_sets = {"spin24": _KeypointSet([f"spin{i}" for i in range(24)]),
                              "coco17": _KeypointSet([f"coco{i}" for i in range(17)]),
                              "smpl24": _KeypointSet([f"smpl{i}" for i in range(24)])}

    def __call__(self, betas=None, global_orient=None, body_pose=None, transl=None) -> _Output:
        tensors = [t for t in (betas, global_orient, body_pose, transl) if t is not None]
        b = tensors[0].shape[0] if tensors else 1
        go = global_orient if global_orient is not None else torch.zeros(b, 3)
        bp = body_pose if body_pose is not None else torch.zeros(b, 69)
        aa = torch.cat([go, bp], dim=1).reshape(b, 24, 3).float()
        rots = _rodrigues(aa)  # (B, 24, 3, 3)
        scale = torch.ones(b, 1, 1)
        if betas is not None:
            scale = (1 + 0.04 * betas[:, :1].float()).reshape(b, 1, 1)
        rj = self._rest_joints[None] * scale
        glob = [rots[:, 0]]
        joints = [rj[:, 0]]
        for j in range(1, 24):
            p = _PARENTS[j]
            glob.append(glob[p] @ rots[:, j])
            joints.append(joints[p] + (glob[p] @ (rj[:, j] - rj[:, p])[..., None])[..., 0])
        g = torch.stack(glob, 1)
        jt = torch.stack(joints, 1)
        lab = self.part_labels
        rv = self._rest_verts[None] * scale
        local = rv - rj[:, lab]
        verts = (g[:, lab] @ local[..., None])[..., 0] + jt[:, lab]
        hp = torch.tensor([_HEAD_POINTS[k] for k in sorted(_HEAD_POINTS)], dtype=torch.float32)
        hp = hp / hp.norm(dim=1, keepdim=True) * _HEAD_RADIUS + self._head_centre
        hp_local = hp[None] * scale - rj[:, 15:16]
        head_points = (g[:, 15:16] @ hp_local[..., None])[..., 0] + jt[:, 15:16]
        if transl is not None:
            t = transl.float()[:, None]
            verts, jt, head_points = verts + t, jt + t, head_points + t
        return _Output(verts, jt, head_points)

    def keypoints(self, out: _Output, name: str) -> torch.Tensor:
        b = out.joints.shape[0]
        spin = torch.zeros(b, 24, 3)
        keys = sorted(_HEAD_POINTS)
        for i, s in enumerate(_SPIN24_FROM_SMPL):
            spin[:, i] = out.head_points[:, keys.index(i)] if s is None else out.joints[:, s]
        if name == "spin24":
            return spin
        if name == "coco17":
            return spin[:, _COCO17_FROM_SPIN24]
        if name == "smpl24":
            return out.joints
        raise KeyError(name)
