"""Build the free SMPL-format body ("neuralfit-free") from the ``anny`` package.

Run once by maintainers (needs the ``build`` extra: ``pip install -e '.[build]'``)::

    python -m neuralfit.body.build_free --out neuralfit/body/assets/neuralfit_free.npz

Recipe (see docs/body.md): sample adult phenotypes from anny's ``SimpleShapeDistribution``, bake each
into a T-pose, convert anny's Z-up axes to SMPL's Y-up ones, group anny's 104 bones into SMPL's 24
joints, take a 10-component PCA shape space, fit a signed least-squares joint regressor, find the
vertex ids of extra keypoints geometrically, and remesh the surface into the low-res neural mesh.
Everything is seeded, so two runs give the same file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from neuralfit.body.keypoints import LANDMARK_NAMES
from neuralfit.body.lowres import DEFAULT_LOWRES_VERTICES, build_lowres_geometry
from neuralfit.body.smpl_format import SMPL_JOINT_NAMES, SMPL_PARENTS
from neuralfit.io.atomic import atomic_path

# SMPL joint -> the anny bones whose skinning weights it collects. Any anny bone not listed goes to
# the joint of its nearest listed ancestor (e.g. eyes -> head), so every weight lands somewhere.
BONE_GROUPS: dict[str, list[str]] = {
    "pelvis": ["root", "pelvis.L", "pelvis.R", "spine05", "spine04"],
    "spine1": ["spine03"],
    "spine2": ["spine02"],
    "spine3": ["spine01"],
    "neck": ["neck01", "neck02", "neck03"],
    "head": ["head", "eye.L", "eye.R"],
    **{f"{s}_hip": [f"upperleg01.{c}", f"upperleg02.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{f"{s}_knee": [f"lowerleg01.{c}", f"lowerleg02.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{f"{s}_ankle": [f"foot.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{f"{s}_collar": [f"clavicle.{c}", f"shoulder01.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{f"{s}_shoulder": [f"upperarm01.{c}", f"upperarm02.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{f"{s}_elbow": [f"lowerarm01.{c}", f"lowerarm02.{c}"] for s, c in (("left", "L"), ("right", "R"))},
    **{
        f"{s}_wrist": [f"wrist.{c}"] + [f"metacarpal{k}.{c}" for k in range(1, 5)]
        for s, c in (("left", "L"), ("right", "R"))
    },
}
# Toes and fingers: every toeK-n bone is "foot", every fingerK-n bone is "hand".
_TOE_GROUP = {"L": "left_foot", "R": "right_foot"}
_FINGER_GROUP = {"L": "left_hand", "R": "right_hand"}


def _group_of_bone(labels: list[str], parents: list[int]) -> np.ndarray:
    """(104,) SMPL joint index of each anny bone."""
    direct: dict[str, int] = {}
    for joint, bones in BONE_GROUPS.items():
        for b in bones:
            direct[b] = SMPL_JOINT_NAMES.index(joint)
    for name in labels:
        side = name.rsplit(".", 1)[-1]
        if name.startswith("toe"):
            direct[name] = SMPL_JOINT_NAMES.index(_TOE_GROUP[side])
        elif name.startswith("finger"):
            direct[name] = SMPL_JOINT_NAMES.index(_FINGER_GROUP[side])
    out = np.full(len(labels), -1, dtype=np.int64)
    for i, name in enumerate(labels):
        j = i
        while labels[j] not in direct:
            j = parents[j]
            if j < 0:
                raise RuntimeError(f"anny bone {name!r} has no SMPL group")
        out[i] = direct[labels[j]]
    return out


def _rot_between(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Smallest rotation (B, 3, 3) taking unit vectors a (B, 3) to b (B, 3) (Rodrigues)."""
    a = a / a.norm(dim=-1, keepdim=True)
    b = b / b.norm(dim=-1, keepdim=True)
    v = torch.cross(a, b, dim=-1)
    c = (a * b).sum(-1)
    k = torch.zeros(a.shape[0], 3, 3, dtype=a.dtype)
    k[:, 0, 1], k[:, 0, 2], k[:, 1, 2] = -v[:, 2], v[:, 1], -v[:, 0]
    k = k - k.transpose(1, 2)
    eye = torch.eye(3, dtype=a.dtype).expand_as(k)
    return eye + k + k @ k / (1.0 + c)[:, None, None]


def _tpose_deltas(model, rest_heads: torch.Tensor) -> torch.Tensor:
    """Per-body 'local-ref' pose deltas (B, 104, 4, 4) that straighten both arms along +-x.

    In anny's 'local-ref' parameterisation a delta is a world-axis rotation about the bone head,
    composed with its parents' (world delta of a bone = parent's world delta @ its own delta). Each arm
    segment is rotated so that its direction (head to the next segment's head) points along +x (left)
    or -x (right): upper arm, forearm, then hand (wrist to the mean knuckle).
    """
    labels = model.bone_labels
    idx = {n: i for i, n in enumerate(labels)}
    b = rest_heads.shape[0]
    deltas = torch.eye(4, dtype=rest_heads.dtype).repeat(b, len(labels), 1, 1)
    for side, sign in (("L", 1.0), ("R", -1.0)):
        target = torch.tensor([sign, 0.0, 0.0], dtype=rest_heads.dtype).expand(b, 3)
        knuckles = rest_heads[:, [idx[f"finger{k}-1.{side}"] for k in range(2, 6)]].mean(1)
        chain = [
            (f"upperarm01.{side}", rest_heads[:, idx[f"lowerarm01.{side}"]]),
            (f"lowerarm01.{side}", rest_heads[:, idx[f"wrist.{side}"]]),
            (f"wrist.{side}", knuckles),
        ]
        acc = torch.eye(3, dtype=rest_heads.dtype).expand(b, 3, 3)
        for bone, end in chain:
            d = end - rest_heads[:, idx[bone]]
            # acc @ R @ d must point along target, so R takes d to acc^T target.
            r = _rot_between(d, (acc.transpose(1, 2) @ target[..., None])[..., 0])
            deltas[:, idx[bone], :3, :3] = r
            acc = acc @ r
    return deltas


def _to_smpl_axes(x: torch.Tensor) -> torch.Tensor:
    """anny (Z up, facing -y) -> SMPL (Y up, facing +z): (x, y, z) -> (x, z, -y)."""
    return torch.stack([x[..., 0], x[..., 2], -x[..., 1]], dim=-1)


def _smpl_joints_from_bones(heads: torch.Tensor, labels: list[str]) -> torch.Tensor:
    """SMPL-24 joint positions (B, 24, 3) from posed anny bone heads (B, 104, 3)."""
    idx = {n: i for i, n in enumerate(labels)}
    h = lambda n: heads[:, idx[n]]  # noqa: E731
    mean = lambda names: heads[:, [idx[n] for n in names]].mean(1)  # noqa: E731
    j = {
        "pelvis": h("root"),
        "spine1": h("spine03"),
        "spine2": h("spine02"),
        "spine3": h("spine01"),
        "neck": h("neck01"),
        "head": h("head"),
    }
    for s, c in (("left", "L"), ("right", "R")):
        j[f"{s}_hip"] = h(f"upperleg01.{c}")
        j[f"{s}_knee"] = h(f"lowerleg01.{c}")
        j[f"{s}_ankle"] = h(f"foot.{c}")
        j[f"{s}_foot"] = mean([f"toe{k}-1.{c}" for k in range(1, 6)])
        j[f"{s}_collar"] = h(f"clavicle.{c}")
        j[f"{s}_shoulder"] = h(f"upperarm01.{c}")
        j[f"{s}_elbow"] = h(f"lowerarm01.{c}")
        j[f"{s}_wrist"] = h(f"wrist.{c}")
        j[f"{s}_hand"] = mean([f"finger{k}-1.{c}" for k in range(2, 6)])
    return torch.stack([j[n] for n in SMPL_JOINT_NAMES], dim=1)


def _sample_tposed(model, n: int, seed: int, batch: int = 40):
    """T-posed, SMPL-axis vertices (n, V, 3) and joints (n, 24, 3) of n sampled adults."""
    from anny.shape_distribution import SimpleShapeDistribution

    torch.manual_seed(seed)
    dist = SimpleShapeDistribution(
        model,
        # Adults only: uniform over the whole 0-90 range would spend a fifth of the samples on children.
        morphological_age_distribution=torch.distributions.Uniform(
            torch.tensor(20.0, dtype=model.dtype), torch.tensor(70.0, dtype=model.dtype)
        ),
    )
    verts, joints = [], []
    for start in range(0, n, batch):
        m = min(batch, n - start)
        _, phen = dist.sample(m)
        with torch.no_grad():
            rest = model(phenotype_kwargs=phen)
            deltas = _tpose_deltas(model, rest["rest_bone_heads"])
            out = model(pose_parameters=deltas, phenotype_kwargs=phen)
        verts.append(_to_smpl_axes(out["vertices"]))
        joints.append(
            _smpl_joints_from_bones(_to_smpl_axes(out["bone_poses"][..., :3, 3]), model.bone_labels)
        )
    return torch.cat(verts).numpy(), torch.cat(joints).numpy()


def _fit_joint_regressor(
    v_template: np.ndarray, shapedirs: np.ndarray, j_mean: np.ndarray, j_dirs: np.ndarray, radius: float
) -> np.ndarray:
    """Signed joint regressor (24, V): exact on the shape space, rows sum to 1, local support.

    For joint j only vertices within ``radius`` of the template joint get weights. Among all weight
    vectors that reproduce the joint's template position and its 10 shape directions exactly and sum to
    1 (34 linear equations), take the one closest to uniform weights over the support (a smooth,
    local solution). Non-negative weights cannot reach the joints inside the limbs (9-37 mm errors in
    the prototype), hence signed ones.
    """
    nv = v_template.shape[0]
    reg = np.zeros((24, nv))
    for j in range(24):
        support = np.flatnonzero(np.linalg.norm(v_template - j_mean[j], axis=1) < radius)
        # Constraint rows: x/y/z of the template, x/y/z of each shape direction, and the sum.
        a = np.concatenate(
            [v_template[support].T, shapedirs[support].transpose(1, 2, 0).reshape(-1, len(support))]
        )
        a = np.concatenate([a, np.ones((1, len(support)))])
        b = np.concatenate([j_mean[j], j_dirs[j].reshape(-1), [1.0]])
        w0 = np.full(len(support), 1.0 / len(support))
        w = w0 + a.T @ np.linalg.lstsq(a @ a.T, b - a @ w0, rcond=None)[0]
        reg[j, support] = w
    return reg


def _anny_dominant_bones(model) -> np.ndarray:
    w = model.vertex_bone_weights.numpy()
    i = model.vertex_bone_indices.numpy()
    return i[np.arange(len(w)), w.argmax(1)]


def _find_landmarks(model, v: np.ndarray, dominant: np.ndarray) -> dict[str, int]:
    """Vertex ids of the extra keypoints on the T-posed mean body (SMPL axes: +y up, +z front, +x left)."""
    idx = {n: i for i, n in enumerate(model.bone_labels)}

    def verts_of(*bones: str) -> np.ndarray:
        return np.flatnonzero(np.isin(dominant, [idx[b] for b in bones]))

    out: dict[str, int] = {}
    head = verts_of("head")
    mid = head[np.abs(v[head, 0]) < 0.006]
    out["nose"] = int(mid[np.argmax(v[mid, 2])])
    out["head_top"] = int(head[np.argmax(v[head, 1])])
    nose = v[out["nose"]]
    # Chin: the lowest midline point of the face (front half of the head).
    front = mid[v[mid, 2] > nose[2] - 0.07]
    out["chin"] = int(front[np.argmin(v[front, 1])])
    eye_y = 0.0
    for s, c in (("l", "L"), ("r", "R")):
        eye = verts_of(f"eye.{c}")
        out[f"{s}eye"] = int(eye[np.argmax(v[eye, 2])])
        eye_y = v[out[f"{s}eye"], 1]
    # Ears stick out: the most lateral head point a little below eye level.
    band = head[(v[head, 1] > eye_y - 0.05) & (v[head, 1] < eye_y)]
    out["lear"] = int(band[np.argmax(v[band, 0])])
    out["rear"] = int(band[np.argmin(v[band, 0])])
    # Mouth corners: the most lateral vertices of the front face band 2-5 cm below the nose tip that
    # lie in the lip crease, approximated by the most recessed point (min z) at |x| ~ 2.4 cm.
    for s, sign in (("l", 1.0), ("r", -1.0)):
        cand = head[
            (np.abs(v[head, 1] - (nose[1] - 0.035)) < 0.012)
            & (np.abs(v[head, 0] - sign * 0.024) < 0.006)
            & (v[head, 2] > nose[2] - 0.05)
        ]
        out[f"mouth_{s}"] = int(cand[np.argmin(v[cand, 2])]) if len(cand) else out["nose"]
    for s, c in (("l", "L"), ("r", "R")):
        big = verts_of(*[b for b in model.bone_labels if b.startswith("toe1-") and b.endswith(c)])
        small = verts_of(*[b for b in model.bone_labels if b.startswith("toe5-") and b.endswith(c)])
        out[f"{s}bigtoe"] = int(big[np.argmax(v[big, 2])])
        out[f"{s}smalltoe"] = int(small[np.argmax(v[small, 2])])
        foot = verts_of(f"foot.{c}")
        out[f"{s}heel"] = int(foot[np.argmin(v[foot, 2] + 0.3 * v[foot, 1])])
        for k, finger in enumerate(("thumb", "index", "middle", "ring", "pinky"), start=1):
            tip = verts_of(f"finger{k}-3.{c}")
            # Fingers point along +-x in the T-pose; the thumb also forward, so use the tip bone's own
            # direction: the vertex furthest along it from the tip bone's head.
            d = v[tip].mean(0) - v[verts_of(f"finger{k}-2.{c}")].mean(0)
            out[f"{s}{finger}"] = int(tip[np.argmax(v[tip] @ d)])
    missing = set(LANDMARK_NAMES) - set(out)
    if missing:
        raise RuntimeError(f"landmarks not found: {sorted(missing)}")
    return {n: out[n] for n in LANDMARK_NAMES}


def build(out_path: Path, num_samples: int = 400, seed: int = 0, radius: float = 0.2) -> dict:
    """Build the asset; returns the build report (also stored in the asset as JSON)."""
    import anny

    t0 = time.time()
    model = anny.Anny()  # float64, 'local-ref' pose deltas, 104 bones, 13,718 vertices
    labels = list(model.bone_labels)
    parents = [int(p) for p in model.bone_parents]
    faces = model.get_triangular_faces().numpy().astype(np.int64)

    verts, joints = _sample_tposed(model, num_samples, seed)
    # Align every body on its pelvis joint: translations are not shape.
    verts = verts - joints[:, :1]
    joints = joints - joints[:, :1]

    n, nv, _ = verts.shape
    x = verts.reshape(n, -1)
    mean = x.mean(0)
    u, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    std = s / np.sqrt(n - 1)
    explained = float((s[:10] ** 2).sum() / (s**2).sum())
    comps = vt[:10] * std[:10, None]  # scaled so that betas ~ N(0, 1) over the population
    betas = (x - mean) @ vt[:10].T / std[:10]  # (n, 10)
    v_template = mean.reshape(nv, 3)
    shapedirs = comps.reshape(10, nv, 3).transpose(1, 2, 0)  # (V, 3, 10)
    # Sign convention: positive beta_0 makes the body taller (body height = y extent).
    height = lambda vv: vv[..., 1].max(-1) - vv[..., 1].min(-1)  # noqa: E731
    if height(v_template + shapedirs[:, :, 0]) < height(v_template):
        shapedirs[:, :, 0] *= -1
        betas[:, 0] *= -1

    # Joints as an affine function of betas (least squares over the samples), then the regressor.
    design = np.concatenate([np.ones((n, 1)), betas], axis=1)
    coef = np.linalg.lstsq(design, joints.reshape(n, -1), rcond=None)[0]
    j_mean = coef[0].reshape(24, 3)
    j_dirs = coef[1:].reshape(10, 24, 3).transpose(1, 2, 0)  # (24, 3, 10)
    j_reg = _fit_joint_regressor(v_template, shapedirs, j_mean, j_dirs, radius)

    # Skinning weights: anny's sparse (V, 9) bone weights summed per SMPL joint.
    group = _group_of_bone(labels, parents)
    bw = model.vertex_bone_weights.numpy()
    bi = model.vertex_bone_indices.numpy()
    weights = np.zeros((nv, 24))
    np.add.at(weights, (np.repeat(np.arange(nv), bw.shape[1]), group[bi.reshape(-1)]), bw.reshape(-1))
    weights /= weights.sum(1, keepdims=True)

    dominant = _anny_dominant_bones(model)
    landmarks = _find_landmarks(model, v_template, dominant)
    lowres = build_lowres_geometry(v_template, faces, DEFAULT_LOWRES_VERTICES)

    # Quality numbers for the report.
    recon = (v_template[None] + np.einsum("vck,nk->nvc", shapedirs, betas)).astype(np.float64)
    j_err_recon = np.linalg.norm(np.einsum("jv,nvc->njc", j_reg, recon) - joints, axis=-1)
    j_err_raw = np.linalg.norm(np.einsum("jv,nvc->njc", j_reg, verts) - joints, axis=-1)
    v_err = np.linalg.norm(recon - verts, axis=-1)
    report = {
        "anny_version": anny.__version__,
        "num_samples": n,
        "seed": seed,
        "regressor_radius_m": radius,
        "explained_variance_10": explained,
        "template_height_m": float(height(v_template)),
        "beta0_height_per_unit_m": float(height(v_template + shapedirs[:, :, 0]) - height(v_template)),
        "pca_vertex_error_mean_mm": float(v_err.mean() * 1000),
        "joint_regressor_error_mean_mm": float(j_err_raw.mean() * 1000),
        "joint_regressor_error_on_shape_space_mean_mm": float(j_err_recon.mean() * 1000),
        "lowres_vertices": int(lowres.bary.shape[0]),
    }

    arrays = {
        "v_template": v_template.astype(np.float32),
        # float16 keeps shape offsets to ~0.05 mm per unit beta (offsets are < 0.1 m).
        "shapedirs": shapedirs.astype(np.float16),
        "J_regressor": j_reg.astype(np.float32),
        # Weights only need ~1e-3 precision; rows are renormalised on load.
        "weights": weights.astype(np.float16),
        "faces": faces.astype(np.int32),
        "parents": np.asarray(SMPL_PARENTS, dtype=np.int32),
        "landmark_names": np.asarray(LANDMARK_NAMES),
        "landmark_ids": np.asarray([landmarks[k] for k in LANDMARK_NAMES], dtype=np.int32),
        "lowres_tri_vertex_ids": lowres.tri_vertex_ids.astype(np.int32),
        "lowres_bary": lowres.bary.astype(np.float32),
        "lowres_faces": lowres.faces.astype(np.int32),
    }
    # The stored report has no timings, so that the file is byte-for-byte reproducible.
    arrays["build_report"] = np.asarray(json.dumps(report, sort_keys=True))
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)
    report["build_seconds"] = round(time.time() - t0, 1)
    report["size_bytes"] = out_path.stat().st_size
    report["sha256_16"] = hashlib.sha256(out_path.read_bytes()).hexdigest()[:16]
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "assets" / "neuralfit_free.npz")
    parser.add_argument("--samples", type=int, default=400, help="adult bodies in the PCA (default 400)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--radius", type=float, default=0.2, help="joint regressor support radius, metres")
    args = parser.parse_args(argv)
    report = build(args.out, args.samples, args.seed, args.radius)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()


def _anny_deltas_for_smpl_pose(model, rest_heads: torch.Tensor, body_pose: torch.Tensor) -> torch.Tensor:
    """anny 'local-ref' deltas (B, 104, 4, 4) that pose a T-posed anny body like SMPL ``body_pose`` (B, 69).

    SMPL composes world rotations G_j = G_parent R_j about the joints; anny composes A_c = A_parent D_c
    about bone heads. With T, the T-pose deltas and Tacc their accumulation, the wanted world delta of the
    first bone c of joint j's group is G_j Tacc_c, hence D_c = Tacc_p^T R_j Tacc_p T_c (rotations expressed
    in anny axes). Other bones keep their T-pose delta.
    """
    from smplx.lbs import batch_rodrigues

    labels = model.bone_labels
    idx = {n: i for i, n in enumerate(labels)}
    bsz = body_pose.shape[0]
    tpose = _tpose_deltas(model, rest_heads)[..., :3, :3]  # (B, 104, 3, 3)
    # SMPL axes -> anny axes: p_anny = C p_smpl with C the inverse of (x, y, z) -> (x, z, -y).
    c = torch.tensor([[1.0, 0, 0], [0, 0, -1.0], [0, 1.0, 0]], dtype=rest_heads.dtype)
    rot = batch_rodrigues(body_pose.reshape(-1, 3).to(rest_heads.dtype)).reshape(bsz, 23, 3, 3)
    rot = c @ rot @ c.T
    first: dict[str, list[str]] = {
        "spine1": ["spine03"], "spine2": ["spine02"], "spine3": ["spine01"], "neck": ["neck01"], "head": ["head"],
    }  # fmt: skip
    for s, side in (("left", "L"), ("right", "R")):
        first[f"{s}_hip"] = [f"upperleg01.{side}"]
        first[f"{s}_knee"] = [f"lowerleg01.{side}"]
        first[f"{s}_ankle"] = [f"foot.{side}"]
        first[f"{s}_foot"] = [f"toe{k}-1.{side}" for k in range(1, 6)]
        first[f"{s}_collar"] = [f"clavicle.{side}"]
        first[f"{s}_shoulder"] = [f"upperarm01.{side}"]
        first[f"{s}_elbow"] = [f"lowerarm01.{side}"]
        first[f"{s}_wrist"] = [f"wrist.{side}"]
        first[f"{s}_hand"] = [f"finger{k}-1.{side}" for k in range(1, 6)]
    # Accumulated T-pose rotation of every bone (parents come before children in anny's order).
    parents = [int(p) for p in model.bone_parents]
    acc = torch.empty_like(tpose)
    for i, p in enumerate(parents):
        acc[:, i] = tpose[:, i] if p < 0 else acc[:, p] @ tpose[:, i]
    deltas = torch.eye(4, dtype=rest_heads.dtype).repeat(bsz, len(labels), 1, 1)
    deltas[..., :3, :3] = tpose
    for joint, bones in first.items():
        r = rot[:, SMPL_JOINT_NAMES.index(joint) - 1]
        for b in bones:
            p = parents[idx[b]]
            deltas[:, idx[b], :3, :3] = acc[:, p].transpose(1, 2) @ r @ acc[:, p] @ tpose[:, idx[b]]
    return deltas


def pose_agreement(num_poses: int = 8, seed: int = 0, scale: float = 0.3) -> dict:
    """How closely the free body reproduces anny posed alike (build-time check, needs anny).

    Takes anny's default adult (all phenotypes 0.5), T-poses it, fits the free body's betas to it
    (least squares), then poses both with the same random SMPL body poses and reports mean vertex
    distances in mm: ``shape_fit_mm`` (rest pose) and ``posed_mm`` (mean over poses).
    """
    import anny

    from neuralfit.body.loader import load_body_model

    body = load_body_model("free")  # the installed asset
    model = anny.Anny()
    with torch.no_grad():
        rest = model()
        heads = rest["rest_bone_heads"]
        t_out = model(pose_parameters=_tpose_deltas(model, heads))
        pelvis = _to_smpl_axes(t_out["bone_poses"][0, 0, :3, 3])
        target = (_to_smpl_axes(t_out["vertices"][0]) - pelvis).float()
        sd = body.smpl.shapedirs  # (V, 3, 10)
        a = sd.reshape(-1, sd.shape[-1])
        betas = torch.linalg.lstsq(a, (target - body.smpl.v_template).reshape(-1, 1)).solution.T
        fitted = body(betas=betas).vertices[0]
        shape_err = (fitted - target).norm(dim=-1).mean()
        g = torch.Generator().manual_seed(seed)
        pose = scale * torch.randn(num_poses, 69, generator=g)
        ours = body(betas=betas.expand(num_poses, -1), body_pose=pose).vertices
        deltas = _anny_deltas_for_smpl_pose(model, heads.expand(num_poses, -1, -1), pose)
        theirs = _to_smpl_axes(model(pose_parameters=deltas)["vertices"]) - pelvis
        posed_err = (ours - theirs.float()).norm(dim=-1).mean()
        # Rig-only difference: skin anny's own T-posed vertices with the free body's weights and joints.
        from smplx.lbs import lbs

        s = body.smpl
        full_pose = torch.cat([torch.zeros(num_poses, 3), pose], dim=1)
        rig_only, _ = lbs(torch.zeros(num_poses, 10), full_pose, target, s.shapedirs, s.posedirs,
                          s.J_regressor, s.parents, s.lbs_weights)  # fmt: skip
        rig_err = (rig_only - theirs.float()).norm(dim=-1).mean()
    return {
        "shape_fit_mm": float(shape_err) * 1000,
        "posed_mm": float(posed_err) * 1000,
        "rig_only_posed_mm": float(rig_err) * 1000,
        "poses": num_poses,
    }
