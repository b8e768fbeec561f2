"""The keypoint regressor: synthetic keypoint sets, detector-like corruption, training, keypoint transfer."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuralfit.body.keypoints import keypoint_correspondence, transfer_keypoints
from neuralfit.errors import NeuralfitError
from neuralfit.nets import MultiTaskNet, NetConfig, decode_heatmaps, regress
from neuralfit.render.camera import default_focal
from neuralfit.training.regressor import (
    NOT_IN_COCO,
    RegressorConfig,
    corrupt_keypoints,
    regressor_terms,
    sample_keypoint_set,
    train_regressor,
)

RES = 224


@pytest.fixture(scope="module")
def keypoint_sets(free_body):
    return sample_keypoint_set(free_body, 600, RES, RegressorConfig(seed=3))


def test_sampled_keypoints_are_the_projected_joints_of_an_upright_person(free_body, keypoint_sets):
    d = keypoint_sets
    f = default_focal(RES)
    pc = d["joints3d"][..., :3]
    uv = f * pc[..., :2] / pc[..., 2:] + RES / 2
    assert torch.allclose(uv, d["keypoints"][..., :2], atol=1e-3)
    names = list(free_body.keypoint_sets["spin24"].names)
    head, ankle = names.index("head_top"), names.index("right_ankle")
    # Elevation is clipped at 45 deg and roll ~ N(0, 5 deg): the head is above the ankles in (almost) every crop.
    up = (d["keypoints"][:, head, 1] < d["keypoints"][:, ankle, 1]).float().mean()
    assert up > 0.85
    # The person's long side spans at most 90 % of the crop (fill), so joints (inside the body) do too
    # unless the sample was truncated (10 %).
    span = (d["keypoints"][..., :2].amax(1) - d["keypoints"][..., :2].amin(1)).amax(-1)
    assert (span <= 0.9 * RES + 1).float().mean() > 0.97
    # Yaw is uniform: the person faces the camera (nose in front of the head joint) about half the time.
    nose_visible = d["face_visible"][:, 0].float().mean()
    assert 0.4 < nose_visible < 0.7


def test_global_orientation_matches_the_image_engine_convention(free_body, keypoint_sets):
    # A rotation of pi about x (SMPL y-up -> camera y-down) composed with a yaw about the body's vertical:
    # the body's vertical axis R[:, :, 1] points to camera -y up to elevation (<= 45 deg) and roll.
    r = keypoint_sets["rotmat"][:, 0]
    cos_up = -r[:, 1, 1]  # y-component of the body's up axis, negated (camera y points down)
    assert (cos_up > math.cos(math.radians(46))).float().mean() > 0.99


def test_corruption_noise_follows_confidence_and_coco_pattern_drops_keypoints(free_body, keypoint_sets):
    names = list(free_body.keypoint_sets["spin24"].names)
    kp = keypoint_sets["keypoints"].clone()
    kp[..., 2] = 1.0
    cfg = RegressorConfig(noise_px=(3.0, 3.0), p_region=0.0, p_drop=0.0, p_outlier=0.0, p_coco_only=0.0)
    out = corrupt_keypoints(kp, names, RES, cfg, torch.Generator().manual_seed(0))
    assert (out[..., 2] > 0).all()
    # err * conf / sigma is standard normal per coordinate: its std over 600 x 24 x 2 draws is 1 +- ~1 %.
    z = (out[..., :2] - kp[..., :2]) * out[..., 2:3] / 3.0
    assert abs(float(z.std()) - 1.0) < 0.05
    cfg = RegressorConfig(p_region=0.0, p_drop=0.0, p_outlier=0.0, p_coco_only=1.0)
    out = corrupt_keypoints(kp, names, RES, cfg, torch.Generator().manual_seed(0))
    missing = [names.index(k) for k in NOT_IN_COCO]
    assert (out[:, missing, 2] == 0).all() and (out[:, missing, :2] == 0).all()
    kept = [i for i in range(24) if i not in missing]
    assert (out[:, kept, 2] > 0).all()


def test_correlated_confidences_share_a_per_sample_level(free_body, keypoint_sets):
    names = list(free_body.keypoint_sets["spin24"].names)
    kp = keypoint_sets["keypoints"].clone()
    kp[..., 2] = 1.0
    base = dict(noise_px=(3.0, 3.0), p_region=0.0, p_drop=0.0, p_outlier=0.0, p_coco_only=0.0)
    spread = {}
    for a in (0.0, 0.8):
        out = corrupt_keypoints(kp, names, RES, RegressorConfig(confidence_correlation=a, **base),
                                torch.Generator().manual_seed(0))
        c = out[..., 2]
        assert (c >= 0.15).all() and (c <= 1.0).all()
        # Noise still scales as 1 / confidence.
        z = (out[..., :2] - kp[..., :2]) * out[..., 2:3] / 3.0
        assert abs(float(z.std()) - 1.0) < 0.05
        spread[a] = float(c.std(dim=1).mean())
    # Within a sample, confidence = 0.15 + 0.85 ((1 - a) u_j + a v): std 0.85 (1 - a) / sqrt(12) over joints,
    # 0.245 independent and 0.049 at a = 0.8 (the sample std over 24 joints is ~2 % low).
    assert abs(spread[0.0] - 0.245) < 0.02 and abs(spread[0.8] - 0.049) < 0.006


def test_face_keypoints_are_hidden_when_the_face_looks_away(free_body, keypoint_sets):
    names = list(free_body.keypoint_sets["spin24"].names)
    kp = keypoint_sets["keypoints"].clone()
    kp[..., 2] = 1.0
    cfg = RegressorConfig(p_region=0.0, p_drop=0.0, p_outlier=0.0, p_coco_only=0.0)
    out = corrupt_keypoints(kp, names, RES, cfg, torch.Generator().manual_seed(1), keypoint_sets["face_visible"])
    nose = names.index("nose")
    away = ~keypoint_sets["face_visible"][:, 0].bool()
    # Hidden keypoints are dropped or kept with confidence < 0.3; visible ones have confidence >= 0.15.
    assert (out[away, nose, 2] < 0.3).all()


def test_keypoint_transfer_between_sets_by_definition(free_body):
    sets = free_body.keypoint_sets
    idx = keypoint_correspondence(sets["body25"], sets["spin24"])
    names = list(sets["spin24"].names)
    assert idx[names.index("right_shoulder")] == sets["body25"].names.index("RShoulder")
    assert idx[names.index("pelvis")] == -1  # body25's MidHip is not SPIN's pelvis joint
    assert (idx >= 0).sum() == 18
    kp = np.random.default_rng(0).uniform(0, 100, (2, 25, 3)).astype(np.float32)
    out = transfer_keypoints(kp, sets["body25"], sets["spin24"])
    assert out.shape == (2, 24, 3)
    assert np.array_equal(out[:, names.index("left_knee")], kp[:, sets["body25"].names.index("LKnee")])
    assert (out[:, idx < 0] == 0).all()
    with pytest.raises(NeuralfitError, match="shape"):
        transfer_keypoints(kp[:, :10], sets["body25"], sets["spin24"])


@pytest.fixture(scope="module")
def keypoint_net():
    torch.manual_seed(0)
    return MultiTaskNet(NetConfig(input_res=RES, feature_dim=16, pretrained=False, regressor_input="keypoints",
                                  regressor_hidden=256, regressor_dropout=0.0)).eval()


def test_keypoint_regressor_reads_the_decoded_heatmaps_or_given_keypoints(keypoint_net):
    x = torch.rand(2, 3, RES, RES)
    with torch.no_grad():
        out = keypoint_net(x)
        assert torch.equal(out["regressor_keypoints"], decode_heatmaps(out["heatmaps"], 4))
        kp = torch.rand(2, 24, 3) * torch.tensor([RES, RES, 1.0])
        given = keypoint_net(x, keypoints=kp)
    smpl = regress(keypoint_net, kp)
    assert torch.allclose(smpl["betas"], given["betas"], atol=1e-5)
    assert smpl["global_orient"].shape == (2, 3) and smpl["body_pose"].shape == (2, 69)
    with pytest.raises(NeuralfitError, match="shape"):
        regress(keypoint_net, kp[:, :10])
    with pytest.raises(NeuralfitError, match="regressor_input"):
        NetConfig(regressor_input="pixels")


def test_training_lowers_held_out_joint_error(free_body, keypoint_net, keypoint_sets):
    """A few hundred steps on exact keypoints must beat the mean-pose start on held-out sets.

    The mean pose ignores the input, so its root-relative joint error is the pose spread of the data
    (~0.1 m^2 summed over xyz per joint); a regressor that reads the keypoints must go clearly below it.
    """
    cfg = RegressorConfig(samples=2000, steps=150, batch_size=64, lr=1e-3, p_region=0.0, p_drop=0.0,
                          p_outlier=0.0, p_coco_only=0.0, noise_px=(0.5, 0.5), seed=5, camera="crop")
    held = {k: v[:200] for k, v in keypoint_sets.items()}
    kp_in = held["keypoints"].clone()
    kp_in[..., 2] = 1.0

    def held_out_error() -> float:
        from neuralfit.nets import keypoint_vector

        with torch.no_grad():
            out = keypoint_net.regressor.eval()(keypoint_vector(kp_in, RES))
            has = torch.ones(len(kp_in), dtype=torch.bool)
            return float(regressor_terms(free_body, out, held["rotmat"], has, RES, held["betas"],
                                         held["joints3d"])["joints3d"])

    torch.manual_seed(0)
    history = train_regressor(keypoint_net, free_body, cfg, progress=False)
    after = held_out_error()
    first = history[0]["joints3d"]
    assert after < 0.6 * first, (first, after)
    assert keypoint_net.regressor_training["final"]["step"] == cfg.steps - 1


def test_advocc_fast_path_of_a_keypoint_regressor_matches_predict(free_body, keypoint_net):
    from neuralfit.eval.methods import regressor_method

    imgs = (np.random.default_rng(0).uniform(0, 255, (2, RES, RES, 3))).astype(np.uint8)
    fast = regressor_method(keypoint_net, free_body, fast=True)(imgs, [None, None]).joints3d
    full = regressor_method(keypoint_net, free_body, fast=False)(imgs, [None, None]).joints3d
    assert np.allclose(np.asarray(fast), np.asarray(full), atol=1e-5)


# -- photo cameras (the default training data) ---------------------------------------------------------

@pytest.fixture(scope="module")
def photo_sets(free_body):
    from neuralfit.priors import load_mocap
    from neuralfit.priors.cmu import default_cmu_path

    from neuralfit.training.regressor_data import sample_photo_keypoint_set

    return sample_photo_keypoint_set(free_body, load_mocap(default_cmu_path()), 800, RES, seed=4)


def test_photo_crops_are_consistent_with_their_virtual_camera(photo_sets):
    d = photo_sets
    pv, f, kp = d["joints3d"][..., :3], d["focal"], d["keypoints"]
    uv = f[:, None, None] * pv[..., :2] / pv[..., 2:] + RES / 2
    vis = kp[..., 2] > 0
    err = (uv - kp[..., :2]).norm(dim=-1)[vis]
    # The crop of an off-centre person is not exactly the view of a camera turned toward it (a
    # homography): measured median 0.3 px, p95 3 px. A wrong focal or axis gives tens of pixels.
    assert float(err.median()) < 1.0 and float(err.quantile(0.95)) < 6.0
    # Crop focal spread of photos: person 2-10 m away, focal 0.6-1.6 x diagonal -> roughly 1-6 x res,
    # far from the 5000 px convention (22 x res at 224 px).
    q = f.quantile(torch.tensor([0.05, 0.95])) / RES
    assert 0.8 < float(q[0]) < 2.5 and 3.0 < float(q[1]) < 8.0
    # Mostly upright people (elevation -10..40 deg; CMU has some climbing and falls), from every side.
    r = d["rotmat"][:, 0]
    assert (-r[:, 1, 1] > 0).float().mean() > 0.9
    assert 0.35 < d["face_visible"][:, 0].float().mean() < 0.75


def test_detector_keypoints_follow_the_joint_set_and_swap_sides(free_body, photo_sets):
    from neuralfit.training.regressor_data import DETECTOR_JOINTS, PhotoCameraConfig, detector_keypoints

    names = list(free_body.keypoint_sets["spin24"].names)
    clean = RegressorConfig(noise_px=(0.0, 0.0), p_region=0.0, p_drop=0.0, p_outlier=0.0, p_coco_only=0.0)
    idx = torch.arange(len(photo_sets["keypoints"]))
    for fmt in ("blazepose33", "body25"):
        cam = PhotoCameraConfig(formats=(fmt,), format_probs=(1.0,), p_swap_all=0.0, p_swap_pair=0.0)
        out = detector_keypoints(photo_sets, idx, names, RES, clean, cam, torch.Generator().manual_seed(0))
        have = (out[..., 2] > 0).any(0)
        assert {names[i] for i in range(24) if have[i]} <= set(DETECTOR_JOINTS[fmt])
        assert not have[names.index("pelvis")] and have[names.index("neck")] == (fmt == "body25")
        # BODY-25's hips come out wider than the body's (by 2 x 1.5 cm x U(0.5, 1.5) in 3D; the free
        # body's spin24 hips are ~23 cm apart, so the ratio is ~1.03-1.2 in the image). BlazePose's are the
        # body's calibrated BlazePose hips, which mediapipe puts ~2.5 cm inside each joint (docs/body.md):
        # ~17.5 / 22.5 = 0.78 in 3D, less foreshortened in the image.
        rh, lh = names.index("right_hip"), names.index("left_hip")
        gt = photo_sets["keypoints"]
        ok = (out[:, [rh, lh], 2] > 0).all(1) & (gt[:, [rh, lh], 2] > 0).all(1)
        wide = (out[ok, lh, :2] - out[ok, rh, :2]).norm(dim=-1) / (gt[ok, lh, :2] - gt[ok, rh, :2]).norm(dim=-1)
        if fmt == "body25":
            assert float(wide.median()) > 1.03
        else:
            assert 0.6 < float(wide.median()) < 0.9
            bp = photo_sets["keypoints_bp"]
            assert torch.allclose(out[ok][:, [rh, lh], :2], bp[ok][:, [rh, lh], :2])
    cam = PhotoCameraConfig(formats=("spin24",), format_probs=(1.0,), p_swap_all=1.0, p_swap_pair=0.0)
    out = detector_keypoints(photo_sets, idx, names, RES, clean, cam, torch.Generator().manual_seed(0))
    la, ra = names.index("left_ankle"), names.index("right_ankle")
    ok = (photo_sets["keypoints"][:, [la, ra], 2] > 0).all(1)
    assert torch.allclose(out[ok, la, :2], photo_sets["keypoints"][ok, ra, :2])


def test_lifter_pose_sets_split_whole_clips(tmp_path):
    from neuralfit.training.regressor import lifter_pose_sets

    g = np.random.default_rng(0)
    path = tmp_path / "mine.npz"
    np.savez(path, body_pose=g.normal(0, 0.1, (400, 69)), global_orient=np.zeros((400, 3)),
             clip_id=np.arange(400) // 20)
    train, held = lifter_pose_sets(RegressorConfig(poses=(str(path),), holdout_fraction=0.3))
    assert len(held) > 0 and len(train) + len(held) == 800  # mirrors added
    assert not set(train.clip.tolist()) & set(held.clip.tolist())
