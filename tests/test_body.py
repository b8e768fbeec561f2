"""Body models: posing (free body and a synthetic SMPL-format file), keypoint sets, parts, loading errors."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pytest
import torch
from smplx.lbs import lbs

from neuralfit.body import LANDMARK_NAMES, SMPL_JOINT_NAMES, load_body_model
from neuralfit.errors import NeuralfitError


def _height(v: torch.Tensor) -> torch.Tensor:
    return v[..., 1].max(-1).values - v[..., 1].min(-1).values


def _random_pose(bsz: int, seed: int, scale: float = 0.3) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return scale * torch.randn(bsz, 69, generator=g)


# ---- the free body -----------------------------------------------------------------------------------------


def test_free_body_rest_pose_is_human_sized(free_body):
    out = free_body()
    assert out.vertices.shape == (1, free_body.num_vertices, 3)
    assert out.joints.shape == (1, 24, 3)
    assert 1.5 <= float(_height(out.vertices)) <= 1.9
    # SMPL frame: y up, body faces +z, the body's left is +x.
    j = out.joints[0]
    names = SMPL_JOINT_NAMES
    assert j[names.index("head"), 1] > j[names.index("pelvis"), 1] > j[names.index("left_ankle"), 1]
    assert j[names.index("left_shoulder"), 0] > 0 > j[names.index("right_shoulder"), 0]
    nose = out.landmarks[0, LANDMARK_NAMES.index("nose")]
    assert nose[2] > j[names.index("head"), 2]
    # T-pose: wrists level with the shoulders (within 5 cm) and far out to the side.
    for side in ("left", "right"):
        sh, wr = j[names.index(f"{side}_shoulder")], j[names.index(f"{side}_wrist")]
        assert abs(float(wr[1] - sh[1])) < 0.05 and abs(float(wr[0])) > abs(float(sh[0])) + 0.3


def test_free_body_height_increases_with_beta0(free_body):
    betas = torch.zeros(5, 10)
    betas[:, 0] = torch.linspace(-2, 2, 5)
    h = _height(free_body(betas=betas).vertices)
    assert torch.all(h[1:] > h[:-1] + 0.01), h


def test_joints_move_with_pose_and_bones_stay_rigid(free_body):
    names = SMPL_JOINT_NAMES
    pose = torch.zeros(1, 69)
    elbow = names.index("left_elbow")
    pose[0, 3 * (elbow - 1) : 3 * elbow] = torch.tensor([0.0, 0.0, 1.2])  # bend the left elbow
    rest, bent = free_body(), free_body(body_pose=pose)
    moved = (bent.joints - rest.joints).norm(dim=-1)[0]
    downstream = [names.index(n) for n in ("left_wrist", "left_hand")]
    assert torch.all(moved[downstream] > 0.05)
    others = [i for i in range(24) if i not in downstream]
    assert torch.all(moved[others] < 1e-6)
    # Forearm length is unchanged by a rotation.
    wrist = names.index("left_wrist")
    d0 = (rest.joints[0, wrist] - rest.joints[0, elbow]).norm()
    d1 = (bent.joints[0, wrist] - bent.joints[0, elbow]).norm()
    assert torch.isclose(d0, d1, atol=1e-5)


@pytest.mark.parametrize("which", ["free", "synthetic"])
def test_forward_matches_smplx_lbs(which, free_body, synthetic_body):
    """Our LBS (precomputed joint shape space, optional pose correctives) equals smplx's own ``lbs``."""
    body = free_body if which == "free" else synthetic_body
    g = torch.Generator().manual_seed(1)
    betas, go, bp = torch.randn(3, 10, generator=g), 0.5 * torch.randn(3, 3, generator=g), _random_pose(3, 2)
    transl = torch.randn(3, 3, generator=g)
    out = body(betas=betas, global_orient=go, body_pose=bp, transl=transl)
    s = body.smpl
    ref_v, ref_j = lbs(betas, torch.cat([go, bp], 1), s.v_template, s.shapedirs, s.posedirs, s.J_regressor,
                       s.parents, s.lbs_weights)  # fmt: skip
    # float32 round-off over sums of ~10 terms of size ~1 m: 1e-5 m is generous and still 0.01 mm.
    assert torch.allclose(out.vertices, ref_v + transl[:, None], atol=1e-5)
    assert torch.allclose(out.joints, ref_j + transl[:, None], atol=1e-5)


def test_rotation_matrix_input_equals_axis_angle(free_body):
    from smplx.lbs import batch_rodrigues

    bp, go = _random_pose(2, 3), torch.tensor([[0.1, 2.0, -0.3], [0.0, 0.0, 0.5]])
    a = free_body(global_orient=go, body_pose=bp)
    b = free_body(
        global_orient=batch_rodrigues(go).reshape(2, 1, 3, 3),
        body_pose=batch_rodrigues(bp.reshape(-1, 3)).reshape(2, 23, 3, 3),
    )
    assert torch.allclose(a.vertices, b.vertices, atol=1e-6)


def test_batch_items_are_independent(free_body):
    bp = _random_pose(3, 4)
    betas = torch.randn(3, 10, generator=torch.Generator().manual_seed(5))
    batched = free_body(betas=betas, body_pose=bp)
    single = free_body(betas=betas[1:2], body_pose=bp[1:2])
    assert torch.allclose(batched.vertices[1], single.vertices[0], atol=1e-6)


def test_bad_shapes_raise(free_body):
    with pytest.raises(NeuralfitError, match="body_pose"):
        free_body(body_pose=torch.zeros(2, 68))
    with pytest.raises(NeuralfitError, match="betas"):
        free_body(betas=torch.zeros(1, 11))
    with pytest.raises(NeuralfitError, match="batch size"):
        free_body(betas=torch.zeros(2, 10), body_pose=torch.zeros(3, 69))


# ---- keypoint sets -----------------------------------------------------------------------------------------


def test_keypoint_sets_have_expected_sizes_and_lsp_is_spin_prefix(free_body):
    sizes = {"smpl24": 24, "coco17": 17, "body25": 25, "blazepose33": 33, "lsp14": 14, "spin24": 24}
    assert {k: len(v) for k, v in free_body.keypoint_sets.items()} == sizes
    lsp, spin = free_body.keypoint_sets["lsp14"], free_body.keypoint_sets["spin24"]
    assert lsp.names == spin.names[:14]
    assert torch.equal(lsp.weights, spin.weights[:14])
    # Each row is a convex combination (keypoints move rigidly with the body) or undefined (zero row).
    for ks in free_body.keypoint_sets.values():
        sums = ks.weights.sum(1)
        assert torch.allclose(sums[ks.valid], torch.ones(int(ks.valid.sum())))
        assert torch.all(sums[~ks.valid] == 0)
    blaze = free_body.keypoint_sets["blazepose33"]
    undefined = {n for n, ok in zip(blaze.names, blaze.valid.tolist(), strict=True) if not ok}
    assert undefined == {"left_eye_inner", "left_eye_outer", "right_eye_inner", "right_eye_outer"}


@pytest.mark.parametrize("which", ["free", "synthetic"])
def test_coco_hips_and_shoulders_are_smpl_joints(which, free_body, synthetic_body):
    """COCO/LSP hips and shoulders are defined as the SMPL hip and shoulder joints themselves, so under
    any pose and shape they coincide to float round-off (1e-6 m)."""
    body = free_body if which == "free" else synthetic_body
    out = body(betas=torch.randn(2, 10), body_pose=_random_pose(2, 6))
    coco = body.keypoints(out, "coco17")
    names = body.keypoint_sets["coco17"].names
    for part in ("hip", "shoulder"):
        for side in ("left", "right"):
            kp = coco[:, names.index(f"{side}_{part}")]
            j = out.joints[:, SMPL_JOINT_NAMES.index(f"{side}_{part}")]
            assert torch.allclose(kp, j, atol=1e-6)


def test_free_body_surface_keypoints_are_anatomically_placed(free_body):
    """Rest pose checks with margins well inside human proportions (head ~25 cm tall, foot ~25 cm long)."""
    out = free_body()
    kp = free_body.keypoints(out, "body25")[0]
    n = free_body.keypoint_sets["body25"].names
    head = out.joints[0, SMPL_JOINT_NAMES.index("head")]
    for name in ("Nose", "LEye", "REye", "LEar", "REar"):
        assert (kp[n.index(name)] - head).norm() < 0.2, name
        assert kp[n.index(name), 1] > kp[n.index("Neck"), 1], name
    for side in "LR":
        sign = 1.0 if side == "L" else -1.0
        assert sign * kp[n.index(f"{side}Eye"), 0] > 0 and sign * kp[n.index(f"{side}Ear"), 0] > 0
        ankle = kp[n.index(f"{side}Ankle")]
        assert kp[n.index(f"{side}BigToe"), 2] > ankle[2] + 0.1  # toes in front of the ankle
        assert kp[n.index(f"{side}Heel"), 2] < ankle[2]  # heel behind it
        assert kp[n.index(f"{side}BigToe"), 1] < ankle[1]  # and below
    blaze = free_body.keypoints(out, "blazepose33")[0]
    bn = free_body.keypoint_sets["blazepose33"].names
    for side, sign in (("left", 1.0), ("right", -1.0)):
        wrist = blaze[bn.index(f"{side}_wrist"), 0] * sign
        for finger in ("pinky", "index", "thumb"):
            assert (
                blaze[bn.index(f"{side}_{finger}"), 0] * sign > wrist + 0.05
            )  # T-pose: fingers beyond wrist
    mouth = blaze[bn.index("mouth_left")]
    assert blaze[bn.index("nose"), 1] - 0.1 < mouth[1] < blaze[bn.index("nose"), 1]


def test_keypoints_are_differentiable(free_body):
    bp = torch.zeros(1, 69, requires_grad=True)
    out = free_body(body_pose=bp)
    free_body.keypoints(out, "coco17").sum().backward()
    assert bp.grad is not None and bp.grad.abs().sum() > 0


def test_real_smpl_landmarks_use_published_vertex_ids(synthetic_body):
    body = synthetic_body
    out = body()
    assert torch.equal(out.landmarks[0, LANDMARK_NAMES.index("nose")], out.vertices[0, 332])
    assert torch.equal(out.landmarks[0, LANDMARK_NAMES.index("lheel")], out.vertices[0, 3387])
    coco = body.keypoint_sets["coco17"]
    assert bool(coco.valid.all())
    blaze = body.keypoint_sets["blazepose33"]
    assert not blaze.valid[blaze.index("mouth_left")]  # no published SMPL id


# ---- parts -------------------------------------------------------------------------------------------------


def test_parts_cover_every_vertex(free_body):
    labels = free_body.part_labels
    assert labels.shape == (free_body.num_vertices,)
    assert int(labels.min()) >= 0 and int(labels.max()) <= 23
    assert set(labels.tolist()) == set(range(24))
    # The label is the joint with the largest skinning weight.
    w = free_body.smpl.lbs_weights
    assert torch.all(w[torch.arange(len(labels)), labels] >= w.max(1).values - 1e-7)
    colors = free_body.part_colors
    assert colors.shape == (25, 3) and colors.dtype == np.uint8
    assert (colors[0] == 0).all()
    assert len({tuple(c) for c in colors}) == 25


# ---- loading -----------------------------------------------------------------------------------------------


def test_free_body_pickle_is_plain_and_cached(free_body):
    """The converted pickle loads with the plain unpickler (no chumpy) and in smplx.SMPL directly."""
    import smplx

    from neuralfit.body.loader import free_smpl_pickle

    path = free_smpl_pickle()
    assert path.exists() and path.name.startswith("neuralfit_free_")
    with open(path, "rb") as fh:
        data = pickle.load(fh)
    assert all(isinstance(v, np.ndarray) for v in data.values())
    model = smplx.SMPL(model_path=str(path))
    assert torch.allclose(model.v_template, free_body.smpl.v_template)


def test_synthetic_smpl_loads_from_folder_file_and_npz(synthetic_smpl_dir, synthetic_smpl_data):
    neutral = load_body_model(synthetic_smpl_dir)
    assert neutral.name == "smpl" and neutral.num_vertices == 6890
    ref = synthetic_smpl_data
    assert np.allclose(neutral.smpl.v_template.numpy(), ref["v_template"], atol=1e-6)
    assert neutral.has_posedirs
    by_file = load_body_model(synthetic_smpl_dir / "SMPL_NEUTRAL.pkl")
    assert torch.equal(by_file.smpl.shapedirs, neutral.smpl.shapedirs)
    male = load_body_model(synthetic_smpl_dir, gender="male")  # found under smpl/
    assert not torch.allclose(male.smpl.v_template, neutral.smpl.v_template)
    by_npz = load_body_model(synthetic_smpl_dir / "smpl" / "SMPL_MALE.npz")
    assert torch.equal(by_npz.smpl.v_template, male.smpl.v_template)
    out = male(body_pose=_random_pose(2, 7))
    assert out.vertices.shape == (2, 6890, 3) and torch.isfinite(out.vertices).all()


def test_loading_errors_are_one_line_and_name_the_path(tmp_path, synthetic_smpl_dir):
    cases = {}
    cases["missing"] = tmp_path / "nope"
    empty = tmp_path / "empty"
    empty.mkdir()
    cases["empty folder"] = empty
    corrupt = tmp_path / "SMPL_NEUTRAL.pkl"
    corrupt.write_bytes(b"not a pickle")
    cases["corrupt"] = corrupt
    wrong = tmp_path / "model.txt"
    wrong.write_text("x")
    cases["suffix"] = wrong
    notdict = tmp_path / "list.pkl"
    notdict.write_bytes(pickle.dumps([1, 2]))
    cases["not a dict"] = notdict
    partial = tmp_path / "partial.npz"
    np.savez(partial, v_template=np.zeros((10, 3)))
    cases["missing keys"] = partial
    for what, path in cases.items():
        with pytest.raises(NeuralfitError) as info:
            load_body_model(path)
        msg = str(info.value)
        assert "\n" not in msg and str(path) in msg, (what, msg)
    with pytest.raises(NeuralfitError, match="gender"):
        load_body_model(synthetic_smpl_dir, gender="robot")
    with pytest.raises(NeuralfitError, match="neutral"):
        load_body_model("free", gender="male")


def test_full_turn_is_identity(free_body):
    """Axis-angle of length 2*pi is the identity rotation."""
    body = free_body
    pose = torch.zeros(1, 69)
    pose[0, 15:18] = torch.tensor([0.0, 2 * math.pi, 0.0])
    assert torch.allclose(body(body_pose=pose).vertices, body().vertices, atol=1e-5)
