"""DeepMimic retargeting checked by forward kinematics of both skeletons; mirroring; the shipped pose set."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from neuralfit.priors import load_mocap, mirror_pose
from neuralfit.priors import mocap as M
from neuralfit.priors.kinematics import APPROX_REST_JOINTS, forward_kinematics
from scipy.spatial.transform import Rotation

from neuralfit.errors import NeuralfitError

J = M.SMPL_JOINT_NAMES.index

# DeepMimic humanoid3d joint offsets from the parent joint (pybullet's humanoid.urdf; DeepMimic axes:
# Y up, facing +x, right = +z). "toe" is the foot box centre, used for the foot direction.
_DM_OFFSETS = {
    "chest": ("root", (0.0, 0.944604, 0.0)), "neck": ("chest", (0.0, 0.895576, 0.0)),
    "right_hip": ("root", (0.0, 0.0, 0.339548)), "right_knee": ("right_hip", (0.0, -1.686184, 0.0)),
    "right_ankle": ("right_knee", (0.0, -1.63948, 0.0)), "right_toe": ("right_ankle", (0.18, -0.09, 0.0)),
    "right_shoulder": ("chest", (-0.0962, 0.974, 0.73244)),
    "right_elbow": ("right_shoulder", (0.0, -1.099152, 0.0)),
    "right_wrist": ("right_elbow", (0.0, -1.035788, 0.0)),
}
for _k, (_p, _o) in list(_DM_OFFSETS.items()):
    if _k.startswith("right_"):
        _DM_OFFSETS["left_" + _k[6:]] = (_p.replace("right_", "left_"), (_o[0], _o[1], -_o[2]))
_DM_ORDER = ["chest", "neck"] + [f"{s}_{j}" for s in ("right", "left")
                                 for j in ("hip", "knee", "ankle", "toe", "shoulder", "elbow", "wrist")]


def _deepmimic_fk(clip: M.DeepMimicClip) -> dict[str, np.ndarray]:
    """World joint positions (T, 3) of the DeepMimic skeleton, written from the URDF, in DeepMimic axes."""
    def quat(k):
        return Rotation.from_quat(clip.field(k)[:, [1, 2, 3, 0]]).as_matrix()

    glob = {"root": quat("root")}
    pos = {"root": np.zeros((len(clip.frames), 3))}
    for k in _DM_ORDER:
        parent, off = _DM_OFFSETS[k]
        pos[k] = pos[parent] + glob[parent] @ np.array(off)
        if k.endswith(("knee", "elbow")):
            rv = np.zeros((len(clip.frames), 3))
            rv[:, 2] = clip.field(k)[:, 0]
            local = Rotation.from_rotvec(rv).as_matrix()
        elif k.endswith(("toe", "wrist")):
            local = np.eye(3)[None]
        else:
            local = quat(k)
        glob[k] = glob[parent] @ local
    return pos


def _ideal_smpl_rest() -> np.ndarray:
    """SMPL rest skeleton whose bones point exactly where DeepMimic's do once the arms are raised to a
    T-pose: limb directions then agree to rounding if and only if the retargeting is right."""
    rest = APPROX_REST_JOINTS.astype(np.float64).copy()
    rest[J("neck")] = [0.0, 0.5, 0.0]
    for side, sx in (("left", 1.0), ("right", -1.0)):
        hip = rest[J(f"{side}_hip")]
        rest[J(f"{side}_knee")] = hip + [0.0, -0.4, 0.0]
        rest[J(f"{side}_ankle")] = hip + [0.0, -0.8, 0.0]
        rest[J(f"{side}_foot")] = rest[J(f"{side}_ankle")] + [0.0, -0.045, 0.09]  # B @ (0.18, -0.09, 0) / 2
        sh = rest[J(f"{side}_shoulder")]
        rest[J(f"{side}_elbow")] = sh + [sx * 0.26, 0.0, 0.0]
        rest[J(f"{side}_wrist")] = sh + [sx * 0.5, 0.0, 0.0]
    return rest


def _dirs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = b - a
    return d / np.linalg.norm(d, axis=-1, keepdims=True)


@pytest.mark.parametrize("clip_name", ["cartwheel", "walk", "crawl"])
def test_retargeted_limbs_point_where_deepmimic_limbs_point(clip_name):
    pytest.importorskip("pybullet_data")
    clip = M.read_deepmimic_clip(M.pybullet_motion_dir() / f"humanoid3d_{clip_name}.txt")
    dm = _deepmimic_fk(clip)
    go, bp = M.retarget_deepmimic(clip)
    smpl = forward_kinematics(torch.from_numpy(np.concatenate([go, bp], 1)),
                              torch.from_numpy(_ideal_smpl_rest())).numpy()
    pairs = [(f"{s}_{a}", f"{s}_{b}") for s in ("left", "right")
             for a, b in (("hip", "knee"), ("knee", "ankle"), ("ankle", "toe"), ("shoulder", "elbow"),
                          ("elbow", "wrist"))]
    for a, b in pairs:
        d_dm = _dirs(dm[a], dm[b]) @ M.B_DM_TO_SMPL.T
        sb = b.replace("toe", "foot")
        d_smpl = _dirs(smpl[:, J(a)], smpl[:, J(sb)])
        err = np.degrees(np.arccos(np.clip((d_dm * d_smpl).sum(-1), -1.0, 1.0)))
        # Exact maths on both sides: only float64 rounding and rotvec round-trips remain (<< 0.1 deg).
        assert err.max() < 0.1, f"{clip_name} {a}->{b}: {err.max():.2f} deg"
    # The joints really move in this clip (so the check above is not vacuous).
    assert np.ptp(bp, axis=0).max() > 1.0


def test_mirror_is_an_involution_and_reflects_the_skeleton():
    rng = np.random.default_rng(0)
    pose = rng.uniform(-0.8, 0.8, size=(20, 72))
    assert np.allclose(mirror_pose(mirror_pose(pose)), pose)
    assert np.allclose(mirror_pose(mirror_pose(pose[:, 3:])), pose[:, 3:])
    # A symmetric rest skeleton posed with the mirrored pose = the original posed skeleton reflected in x.
    approx = APPROX_REST_JOINTS.astype(np.float64)
    rest = 0.5 * (approx + approx[M.SMPL_MIRROR_PERM] * [-1.0, 1.0, 1.0])  # exactly symmetric
    j = forward_kinematics(torch.from_numpy(pose), torch.from_numpy(rest)).numpy()
    jm = forward_kinematics(torch.from_numpy(mirror_pose(pose)), torch.from_numpy(rest)).numpy()
    assert np.allclose(jm, j[:, M.SMPL_MIRROR_PERM] * [-1.0, 1.0, 1.0], atol=1e-9)
    with pytest.raises(NeuralfitError):
        mirror_pose(pose[:, :60])


def test_shipped_pose_set_matches_a_fresh_extraction():
    pytest.importorskip("pybullet_data")
    shipped = load_mocap()
    fresh = M.extract_pybullet_mocap()
    assert shipped.clip_names == tuple(fresh["clip_names"])
    assert len(shipped) == len(fresh["body_pose"]) == 2 * sum(
        len(M.read_deepmimic_clip(p).frames) for p in sorted(M.pybullet_motion_dir().glob("humanoid3d_*.txt")))
    # float16 storage: relative step 2^-11, so |error| <= 2^-11 * 3.2 rad ~ 1.6e-3.
    assert np.abs(shipped.body_pose - fresh["body_pose"]).max() < 2e-3


def test_shipped_pose_set_is_mirror_balanced():
    mocap = load_mocap()
    orig = mocap.body_pose[~mocap.mirrored]
    mir = mocap.body_pose[mocap.mirrored]
    assert np.allclose(mirror_pose(orig.astype(np.float64)), mir, atol=2e-3)
    held = mocap.select(["run"])
    assert 0 < len(held) < len(mocap) and set(held.clip) == {mocap.clip_names.index("run")}
    with pytest.raises(NeuralfitError, match="unknown"):
        mocap.select(["moonwalk"])


def test_bad_clip_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "humanoid3d_bad.txt"
    bad.write_text('{"Frames": [[1, 2, 3]]}')
    with pytest.raises(NeuralfitError, match="44"):
        M.read_deepmimic_clip(bad)
    bad.write_text("not json")
    with pytest.raises(NeuralfitError, match="cannot read"):
        M.read_deepmimic_clip(bad)
