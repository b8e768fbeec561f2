"""Detector keypoints calibrated on the body: definitions, loading, and the calibration solver."""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralfit.body.keypoints import _J, LANDMARK_NAMES, build_keypoint_sets, keypoint_correspondence
from neuralfit.body.loader import free_calibration_path, read_keypoint_calibration
from neuralfit.errors import NeuralfitError

ROOT = Path(__file__).resolve().parents[1]
ALL_LANDMARKS = {n: True for n in LANDMARK_NAMES}


def _tool():
    spec = importlib.util.spec_from_file_location("calibrate_keypoints", ROOT / "tools" / "calibrate_keypoints.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_a_calibrated_keypoint_is_its_weighted_joints_and_still_stands_for_its_joint():
    cal = {"blazepose33": {"left_ankle": {"lankle": 0.9, "lknee": 0.1}}}
    sets = build_keypoint_sets(ALL_LANDMARKS, cal)
    bp = sets["blazepose33"]
    row = bp.weights[bp.index("left_ankle")]
    assert row[_J["lankle"]] == pytest.approx(0.9) and row[_J["lknee"]] == pytest.approx(0.1)
    assert float(row.sum()) == pytest.approx(1.0)
    assert int(bp.joint_index[bp.index("left_ankle")]) == _J["lankle"]
    # Detections still transfer to the sets that name the joint (the lifter reads spin24).
    spin = sets["spin24"]
    corr = keypoint_correspondence(bp, spin)
    assert corr[spin.index("left_ankle")] == bp.index("left_ankle")
    assert corr[spin.index("nose")] == bp.index("nose")
    # Uncalibrated keypoints keep their plain definition.
    assert torch.equal(bp.weights[bp.index("left_knee")], build_keypoint_sets(ALL_LANDMARKS)["blazepose33"].weights[
        bp.index("left_knee")])


@pytest.mark.parametrize("cal, words", [
    ({"nosuchset": {}}, "unknown sets"),
    ({"blazepose33": {"left_tail": {"lankle": 1.0}}}, "unknown keypoints"),
    ({"blazepose33": {"left_ankle": {"lankle": 0.9, "lfin": 0.1}}}, "unknown joint"),
])
def test_a_calibration_that_names_nothing_known_is_refused(cal, words):
    with pytest.raises(NeuralfitError, match=words):
        build_keypoint_sets(ALL_LANDMARKS, cal)


@pytest.mark.parametrize("text, words", [
    ("{", "cannot read"),
    ('{"no": 1}', "cannot read"),
    ('{"sets": {"blazepose33": {"left_ankle": [1, 2]}}}', "must map"),
    ('{"sets": {"blazepose33": {"left_ankle": {"lankle": 0.5}}}}', "do not sum to 1"),
])
def test_a_malformed_calibration_file_is_one_clear_error(tmp_path, text, words):
    p = tmp_path / "cal.json"
    p.write_text(text)
    with pytest.raises(NeuralfitError, match=words):
        read_keypoint_calibration(p)


def test_the_shipped_calibration_moves_limb_keypoints_by_centimetres_and_with_the_limb(free_body):
    sets = read_keypoint_calibration(free_calibration_path())
    assert set(sets["blazepose33"]) == set(_tool().LIMBS)
    bp = free_body.keypoint_sets["blazepose33"]
    plain = build_keypoint_sets(ALL_LANDMARKS)["blazepose33"]
    pose = torch.zeros(1, 69)
    pose[0, 3 * (_J["lknee"] - 1)] = 1.2  # bend the left knee
    for body_pose in (torch.zeros(1, 69), pose):
        out = free_body(betas=torch.zeros(1, 10), body_pose=body_pose, full=False)
        src = torch.cat([out.joints, out.landmarks], 1)[0]
        cal_kp, raw_kp = bp.weights @ src, plain.weights @ src
        i = bp.index("left_ankle")
        shift = float((cal_kp[i] - raw_kp[i]).norm())
        # A definition offset of a detector, not a different joint: 0.5-6 cm.
        assert 0.005 < shift < 0.06
        # It stays on the shin (between knee and ankle) whatever the knee does.
        shin = out.joints[0, _J["lknee"]] - out.joints[0, _J["lankle"]]
        along = float((cal_kp[i] - raw_kp[i]) @ shin / shin.norm())
        assert along > 0.8 * shift


def test_the_solver_recovers_a_known_keypoint_definition_from_noisy_projections(free_body):
    """Fake detections: a known joint combination, projected through the crop camera, plus 1 cm noise and
    10 % gross outliers; the solver must find the point back to a fraction of the noise. (The weights
    themselves are not identifiable where neighbours are nearly collinear, e.g. collar / neck / spine3.)"""
    tool = _tool()
    rng = np.random.default_rng(0)
    n, f, c = 1500, 5000.0 * 512 / 224, 256.0
    truth = {k: {j: 0.0 for j in (base,) + cand} for k, (base, cand) in tool.NEIGHBOURS.items()}
    for k, (base, cand) in tool.NEIGHBOURS.items():
        beta = rng.uniform(-0.08, 0.08, len(cand))
        truth[k].update({cc: float(b) for cc, b in zip(cand, beta, strict=True)})
        truth[k][base] = 1.0 - float(beta.sum())
    poses = torch.from_numpy(rng.normal(0, 0.25, (n, 69))).float()
    orient = torch.from_numpy(np.stack([np.full(n, math.pi), rng.uniform(-math.pi, math.pi, n), np.zeros(n)], 1))
    with torch.no_grad():
        out = free_body(betas=torch.zeros(n, 10), global_orient=orient.float(), body_pose=poses, full=False)
    points = torch.cat([out.joints, out.landmarks], 1).double().numpy() + np.array([0.0, 0.0, 40.0])
    col = {name: i for i, name in enumerate(tool.POINT_NAMES)}
    kp = np.zeros((n, 33, 3))
    kp[..., 2] = 0.9
    names = tool.BP_NAMES
    for k, w in truth.items():
        x = sum(v * points[:, col[j]] for j, v in w.items())
        noise = rng.normal(0, 0.01, (n, 2))
        gross = rng.random(n) < 0.1
        noise[gross] += rng.normal(0, 0.1, (int(gross.sum()), 2))
        kp[:, names.index(k), :2] = (x[:, :2] + noise) * f / points[:, :1, 2] + c
    weights, stats = tool.solve({"kp": kp, "points": points, "focal": f, "centre": c})
    for k, w in truth.items():
        x_true = sum(v * points[:, col[j]] for j, v in w.items())
        x_fit = sum(v * points[:, col[j]] for j, v in weights[k].items())
        err = np.linalg.norm(x_fit - x_true, axis=1)
        # 1 cm noise over ~1500 samples: the mean is pinned to ~1 mm; 3 mm allows the ridge's pull.
        assert err.mean() < 0.003, (k, err.mean())
        assert stats[k]["median_cm_after"] == pytest.approx(np.sqrt(2 * np.log(2)) * 1.0, abs=0.25)


def test_the_free_body_loads_a_users_calibration_file(tmp_path):
    from neuralfit.body import load_body_model

    p = tmp_path / "cal.json"
    p.write_text(json.dumps({"sets": {"blazepose33": {"left_hip": {"lhip": 0.5, "pelvis": 0.5}}}}))
    body = load_body_model("free", keypoint_calibration=p)
    bp = body.keypoint_sets["blazepose33"]
    row = bp.weights[bp.index("left_hip")]
    assert row[_J["pelvis"]] == pytest.approx(0.5)
    # The user's file replaces the shipped one: the ankle is back to the plain joint.
    assert row.sum() == pytest.approx(1.0) and bp.weights[bp.index("left_ankle"), _J["lankle"]] == 1.0
