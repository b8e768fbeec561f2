"""CMU retargeting checked by forward kinematics of both skeletons; the shipped CMU pose set; user pose sets.

Needs ``../shared/data/mocap/cmu_free_subset_v1.npz`` for the FK checks (skipped without it).
The data used in this project was obtained from mocap.cs.cmu.edu (NSF EIA-0196217).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from neuralfit.priors import JointLimitPrior, load_mocap
from neuralfit.priors import cmu as C
from neuralfit.priors.mocap import SMPL_JOINT_NAMES, SMPL_PARENTS, concat_mocap, split_clips, with_mirrors
from scipy.spatial.transform import Rotation

from neuralfit.errors import NeuralfitError

J = SMPL_JOINT_NAMES.index
# One clip of each part, chosen for motion that exercises the hinges (jumping, salsa, playground).
CLIPS = {"A": 0, "B": 100, "C": 140}


@pytest.fixture(scope="module")
def archive():
    if not C.DEFAULT_ARCHIVE.is_file():
        pytest.skip("../shared/data/mocap/cmu_free_subset_v1.npz not available")
    return C.open_archive()


@pytest.fixture(scope="module")
def rest():
    return C.default_rest_joints()


def _source_positions(d, clip):
    part = str(d["clip_part"][clip])
    mask = d[f"{part}_clip_id"] == clip
    offs = d[f"{part}_clip_offsets"][clip - int(d[f"{part}_clip_start"])].astype(np.float64)
    _, x = C.source_fk(d[f"{part}_parents"], offs, C.quat_wxyz_to_matrix(d[f"{part}_quat"][mask]),
                       d[f"{part}_root_trans"][mask].astype(np.float64))
    return part, {str(n): i for i, n in enumerate(d[f"{part}_joint_names"])}, x


def _angle_deg(a, b):
    cos = (a * b).sum(-1) / np.linalg.norm(a, axis=-1) / np.linalg.norm(b, axis=-1)
    return np.degrees(np.arccos(np.clip(cos, -1.0, 1.0)))


def _limb_errors(d, clip, local, rest):
    part, idx, xs = _source_positions(d, clip)
    _, xm = C.smpl_fk(local, rest)
    out = {}
    for j in C.AIMED_JOINTS:
        seg, end = C.SEGMENTS[part][j]
        child = next(c for c in range(24) if SMPL_PARENTS[c] == J(j))
        out[j] = _angle_deg(xs[:, idx[end]] - xs[:, idx[seg]], xm[:, child] - xm[:, J(j)])
    return out


@pytest.mark.parametrize("part", ["A", "B", "C"])
def test_retargeted_limbs_point_where_the_source_limbs_point(archive, rest, part):
    clip = CLIPS[part]
    got_part, _, local = C.clip_rotations(archive, clip, rest)
    assert got_part == part
    errs = _limb_errors(archive, clip, local, rest)
    # float64 all the way: exact up to rounding (1e-3 deg is far below any retargeting error).
    assert max(e.max() for e in errs.values()) < 1e-3, {k: float(e.max()) for k, e in errs.items()}
    # The test can fail: dropping the rest alignment (C_j = identity) leaves the rest-pose mismatch
    # (thighs splayed ~20 deg in A/C, B's arms), far above the tolerance.
    c = C.rest_alignment(part, [str(n) for n in archive[f"{part}_joint_names"]], archive[f"{part}_parents"],
                         archive[f"{part}_clip_offsets"][clip - int(archive[f"{part}_clip_start"])].astype(float),
                         rest)
    assert max(np.degrees(Rotation.from_matrix(c[j]).magnitude()) for j in C.AIMED_JOINTS) > 5.0


def test_shipped_cmu_set_matches_the_archive_by_fk(archive, rest):
    s = load_mocap(C.default_cmu_path())
    for clip in CLIPS.values():
        m = s.clip == clip
        aa = np.concatenate([s.global_orient[m], s.body_pose[m]], 1).astype(np.float64).reshape(-1, 3)
        local = Rotation.from_rotvec(aa).as_matrix().reshape(-1, 24, 3, 3)
        errs = _limb_errors(archive, clip, local, rest)
        # float16 storage: 1e-3 rad steps over a 3-4 joint chain; measured max 0.12 deg.
        assert max(e.max() for e in errs.values()) < 0.5
        assert max(e.mean() for e in errs.values()) < 0.05


def test_hinges_bend_about_smpl_axes_and_never_backwards(archive, rest):
    s = load_mocap(C.default_cmu_path())
    a = torch.from_numpy(s.body_pose).reshape(-1, 23, 3)
    for j, comp, sign in (("left_knee", 0, 1), ("right_knee", 0, 1), ("left_elbow", 1, -1), ("right_elbow", 1, 1)):
        x = a[:, J(j) - 1]
        flex = x[:, comp] * sign
        # Backwards = the knee's ankle / the elbow's wrist moving the wrong way by more than 0.2 rad
        # (SMPL knees hyper-extend up to ~0.2 rad in the joint limits). Measured minimum: -0.14 rad.
        assert (flex < -0.2).float().mean() == 0.0, j
        bent = x.norm(dim=1) > 0.5
        axis = x[bent] / x[bent].norm(dim=1, keepdim=True)
        # The hinge axis after the twist correction: within 8 deg of SMPL's (measured: 1 deg elbows,
        # 5-7 deg knees, whose leftover tilt lies along the thigh and cannot be twisted away).
        assert (axis[:, comp] * sign).mean() > np.cos(np.radians(8)), j
    lim = JointLimitPrior()
    v = lim.violations(torch.from_numpy(s.body_pose), tolerance=0.05)
    knees_elbows = [J(n) - 1 for n in ("left_knee", "right_knee", "left_elbow", "right_elbow")]
    assert v[:, knees_elbows].any(1).float().mean() < 0.01


def test_feet_stay_on_the_floor(archive, rest):
    """The SMPL skeleton placed at the source's root height (scaled by the leg length) keeps its lowest
    foot joint as high above the floor as the source's (A/C feet sit 3 cm lower in the source's ASF
    tree: the measured median difference is 3 cm, p95 6 cm)."""
    s = load_mocap(C.default_cmu_path())
    with np.load(C.default_cmu_path()) as z:
        transl = z["transl"].astype(np.float64)
    feet = [J(n) for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
    for clip in CLIPS.values():
        part, idx, xs = _source_positions(archive, clip)
        m = s.clip == clip
        aa = np.concatenate([s.global_orient[m], s.body_pose[m]], 1).astype(np.float64).reshape(-1, 3)
        _, xm = C.smpl_fk(Rotation.from_rotvec(aa).as_matrix().reshape(-1, 24, 3, 3), rest)
        src_feet = [idx[C.SEGMENTS[part][n][0]] for n in ("left_ankle", "right_ankle", "left_foot", "right_foot")]
        offs = archive[f"{part}_clip_offsets"][clip - int(archive[f"{part}_clip_start"])].astype(np.float64)
        _, xr = C.source_fk(archive[f"{part}_parents"], offs, np.tile(np.eye(3), (1, len(idx), 1, 1)))
        scale = (rest[0, 1] - rest[feet[:2], 1].mean()) / (xr[0, 0, 1] - xr[0, src_feet[:2], 1].mean())
        diff = (transl[m, 1] * scale + xm[:, feet, 1].min(1)) - xs[:, src_feet, 1].min(1) * scale
        assert abs(np.median(diff)) < 0.05 and np.percentile(np.abs(diff), 95) < 0.08, (part, np.median(diff))


def test_shipped_set_layout_and_credit():
    path = C.default_cmu_path()
    assert path.stat().st_size <= 10e6
    with np.load(path) as z:
        assert "mocap.cs.cmu.edu" in str(z["credit"]) and "NSF EIA-0196217" in str(z["credit"])
        assert z["body_pose"].dtype == np.float16
    s = load_mocap(path)
    assert len(s) == 66474 and len(s.clip_names) == 231 and s.body_pose.shape == (66474, 69)
    held = split_clips(s.clip_names, 0.1)
    assert 10 <= len(held) <= 40  # ~10 % of 231 clips, by name hash
    # Adding clips (DeepMimic, a user's) never moves a clip across the split.
    assert set(held) <= set(split_clips(list(s.clip_names) + [f"extra{i}" for i in range(50)], 0.1))


def test_user_pose_sets_load_and_bad_ones_say_why(tmp_path):
    g = np.random.default_rng(0)
    ok = tmp_path / "amass_like.npz"
    np.savez(ok, body_pose=g.normal(0, 0.1, (10, 69)), global_orient=np.zeros((10, 3)), clip_id=np.repeat([0, 1], 5))
    s = load_mocap(ok)
    assert len(s) == 10 and s.clip_names == ("0", "1") and not s.mirrored.any()
    both = with_mirrors(concat_mocap([s, s]))
    assert len(both) == 40 and len(both.clip_names) == 4 and both.mirrored.sum() == 20
    bad = tmp_path / "bad.npz"
    np.savez(bad, body_pose=np.zeros((10, 72)), global_orient=np.zeros((10, 3)))
    with pytest.raises(NeuralfitError, match=r"\(N, 69\)"):
        load_mocap(bad)
    np.savez(bad, poses=np.zeros((10, 72)))
    with pytest.raises(NeuralfitError, match="needs 'body_pose'"):
        load_mocap(bad)
    bad.write_text("not a zip")
    with pytest.raises(NeuralfitError, match="readable"):
        load_mocap(bad)
