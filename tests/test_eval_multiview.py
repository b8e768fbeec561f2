"""Multi-view pseudo-GT: calibration reader, triangulation, refinement, association and scoring.

Synthetic cameras (a ring of 4 looking at the origin, as in the Pose2Sim demo) give exact answers;
the demo's own calibration is checked only when pose2sim is installed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import cv2
import numpy as np
import pytest

from neuralfit.detect import Detection
from neuralfit.detect.mediapipe_pose import flip_blazepose
from neuralfit.errors import NeuralfitError
from neuralfit.eval.multiview import (
    Camera,
    leave_one_view_out,
    pa_joint_errors,
    read_qca,
    refine_rotations,
    score_limb12,
    triangulate,
)
from neuralfit.eval.people import associate, fix_side_swaps
from neuralfit.eval.real_methods import CALIBRATED, MethodSpec, occlusion_score, parse_method, unsupported


def look_at(pos: np.ndarray, target: np.ndarray) -> np.ndarray:
    """World-to-camera rotation (OpenCV axes) of a camera at ``pos`` looking at ``target``, world z up."""
    z = target - pos
    z /= np.linalg.norm(z)
    x = np.cross(z, [0.0, 0.0, 1.0])
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z])


def ring(n: int = 4, radius: float = 4.0, height: float = 1.9) -> list[Camera]:
    cams = []
    K = np.array([[1680.0, 0, 540], [0, 1680.0, 960], [0, 0, 1]])
    for i in range(n):
        a = 2 * np.pi * i / n + 0.3
        pos = np.array([radius * np.cos(a), radius * np.sin(a), height])
        R = look_at(pos, np.array([0.0, 0.0, 1.0]))
        cams.append(Camera(f"cam{i + 1:02d}", K, np.array([-0.047, 0.137, 0.0006, 0.0007]), R, -R @ pos, (1088, 1920)))
    return cams


def skeleton(rng: np.random.Generator, centre=(0.0, 0.0)) -> np.ndarray:
    """(33, 3) world points: a person-sized cloud (x, y around ``centre``, z 0..1.8 m)."""
    pts = np.column_stack([rng.uniform(-0.3, 0.3, 33) + centre[0], rng.uniform(-0.2, 0.2, 33) + centre[1],
                           rng.uniform(0.0, 1.8, 33)])
    # Left/right pairs 0.3 m apart across x so that a swap is visible from every view.
    for a, b in ((11, 12), (13, 14), (15, 16), (23, 24), (25, 26), (27, 28)):
        pts[b] = pts[a] + np.array([0.35, 0.1, 0.05])
    return pts


def observe(cams: list[Camera], X: np.ndarray, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    kp = np.ones((len(cams), len(X), 3))
    for v, c in enumerate(cams):
        kp[v, :, :2] = c.project(X) + rng.normal(0, noise, (len(X), 2)) if noise else c.project(X)
    return kp


def test_read_qca_conventions(tmp_path: Path) -> None:
    # A camera at (1, -2, 1.5) m whose qca matrix M is chosen so that R = diag(1,-1,-1) M is a known rotation.
    R = look_at(np.array([1.0, -2.0, 1.5]), np.zeros(3))
    M = np.diag([1.0, -1.0, -1.0]) @ R
    attrs = " ".join(f'r{i + 1}{j + 1}="{float(M[i, j])!r}"' for i in range(3) for j in range(3))
    text = f"""<calibration><cameras><camera serial="cam01">
      <fov_video bottom="1919" left="4" right="1087" top="0"/>
      <transform {attrs} x="1000" y="-2000" z="1500"/>
      <intrinsic centerPointU="34110.3" centerPointV="60680.8" focalLengthU="107599.7" focalLengthV="107588.8"
        radialDistortion1="-0.046" radialDistortion2="0.14" tangentalDistortion1="0.0006" tangentalDistortion2="0.0007"/>
    </camera></cameras></calibration>"""
    path = tmp_path / "Calib.qca.txt"
    path.write_text(text)
    (cam,) = read_qca(path)
    assert cam.name == "cam01" and cam.size == (1084, 1920)
    assert cam.K[0, 0] == pytest.approx(107599.7 / 64) and cam.K[1, 1] == pytest.approx(107588.8 / 64)
    assert cam.K[0, 2] == pytest.approx(34110.3 / 64 - 4) and cam.K[1, 2] == pytest.approx(60680.8 / 64)
    np.testing.assert_allclose(cam.R, R, atol=1e-12)
    np.testing.assert_allclose(cam.center, [1.0, -2.0, 1.5], atol=1e-12)
    np.testing.assert_allclose(cam.dist, [-0.046, 0.14, 0.0006, 0.0007])
    # The origin it looks at projects near the image centre region and lies in front of it.
    assert cam.to_camera(np.zeros(3))[2] > 0


def test_read_qca_bad_file(tmp_path: Path) -> None:
    (tmp_path / "x.qca.txt").write_text("<calibration><cameras/></calibration>")
    with pytest.raises(NeuralfitError, match="no <camera>"):
        read_qca(tmp_path / "x.qca.txt")
    (tmp_path / "y.qca.txt").write_text("not xml")
    with pytest.raises(NeuralfitError, match="cannot read"):
        read_qca(tmp_path / "y.qca.txt")


def test_triangulate_exact_and_robust() -> None:
    cams = ring()
    X = skeleton(np.random.default_rng(1))
    kp = observe(cams, X)
    tri = triangulate(cams, kp)
    # Undistortion round-trips to ~1e-6 px, so the points come back to well under a millimetre.
    np.testing.assert_allclose(tri.points, X, atol=1e-4)
    assert np.nanmax(tri.reproj) < 0.05
    # A gross error in one view (a 150 px jump, like a detector's swap) is dropped once.
    bad = kp.copy()
    bad[2, 5, :2] += 150.0
    tri_bad = triangulate(cams, bad)
    assert not tri_bad.used[2, 5] and tri_bad.used[:, 5].sum() == 3
    np.testing.assert_allclose(tri_bad.points[5], X[5], atol=1e-3)
    # Zero-confidence views do not count; with one view left there is no point.
    one = kp.copy()
    one[1:, 7, 2] = 0.0
    assert np.all(np.isnan(triangulate(cams, one).points[7]))


def test_leave_one_view_out_scales_with_noise() -> None:
    cams = ring()
    X = skeleton(np.random.default_rng(2))
    exact = observe(cams, X)
    assert np.nanmax(leave_one_view_out(cams, exact, triangulate(cams, exact))) < 1e-3
    noisy = observe(cams, X, noise=3.0, seed=3)
    d = leave_one_view_out(cams, noisy, triangulate(cams, noisy))
    # 3 px at f = 1680 and ~4 m is ~7 mm per view: the disagreement must be mm-sized, not zero or metres.
    assert 1.0 < 1000 * np.nanmean(d) < 30.0


def test_refine_rotations_removes_a_rotation_error() -> None:
    cams = ring()
    rng = np.random.default_rng(4)
    obs = [observe(cams, skeleton(rng, centre=rng.uniform(-0.5, 0.5, 2))) for _ in range(6)]
    # Calibration rotations off by ~0.5 deg (the demo's are off by up to ~0.7 deg).
    wrong = [c.rotated(np.radians(0.5) * rng.normal(size=3) / np.sqrt(3)) for c in cams]
    before = np.nanmedian(np.concatenate([triangulate(wrong, o).reproj.ravel() for o in obs]))
    fixed, deltas = refine_rotations(wrong, obs)
    after = np.nanmedian(np.concatenate([triangulate(fixed, o).reproj.ravel() for o in obs]))
    assert before > 3.0 and after < 0.3 * before
    assert np.degrees(np.linalg.norm(deltas, axis=1)).max() < 2.0


def test_score_limb12_invariances() -> None:
    rng = np.random.default_rng(5)
    gt = rng.normal(size=(12, 3)) * 0.3 + np.array([0, 0, 3.0])
    R, _ = cv2.Rodrigues(np.array([0.2, -0.4, 0.1]))
    pred = 1.1 * gt @ R.T + np.array([0.5, -0.2, 10.0])
    s = score_limb12(pred, gt)
    assert s.pa_mpjpe < 1e-6 and s.pa_mpjpe_nohips < 1e-6
    assert s.mpjpe > 10.0  # root alignment does not undo rotation or scale
    shifted = score_limb12(gt + np.array([1.0, 2.0, 3.0]), gt)
    assert shifted.mpjpe < 1e-6 and shifted.pa_mpjpe < 1e-6
    # A 10 cm error on one knee: PA <= MPJPE-style mean of 100/12 mm, MPJPE = 100/12 mm.
    bent = gt.copy()
    bent[8, 0] += 0.1
    assert score_limb12(bent, gt).mpjpe == pytest.approx(100 / 12, rel=1e-6)
    assert np.isnan(score_limb12(np.full((12, 3), np.nan), gt).pa_mpjpe)
    with pytest.raises(NeuralfitError):
        score_limb12(gt[:10], gt[:10])


def test_pa_joint_errors_are_the_per_joint_terms_of_pa_mpjpe() -> None:
    """Their mean is PA-MPJPE; one knee 10 cm off carries most of the error (the alignment of all 12 spreads
    a little of it onto the others), and a missing prediction gives NaN."""
    rng = np.random.default_rng(6)
    gt = rng.normal(size=(12, 3)) * 0.3
    bent = gt.copy()
    bent[8, 0] += 0.1
    e = pa_joint_errors(bent, gt)
    assert e.shape == (12,)
    assert e.mean() == pytest.approx(score_limb12(bent, gt).pa_mpjpe, rel=1e-9)
    assert e[8] == e.max() and 50 < e[8] <= 100
    assert np.isnan(pa_joint_errors(np.full((12, 3), np.nan), gt)).all()


def _det(kp2d: np.ndarray) -> Detection:
    kp = np.column_stack([kp2d, np.ones(len(kp2d))]).astype(np.float32)
    box = np.array([*kp2d.min(0), *kp2d.max(0)], np.float32)
    return Detection(kp, box, None, 1.0)


def test_associate_and_fix_swaps() -> None:
    cams = ring()
    rng = np.random.default_rng(6)
    A, B = skeleton(rng, centre=(-0.8, 0.2)), skeleton(rng, centre=(0.9, -0.3))
    dets = []
    for v, c in enumerate(cams):
        pair = [_det(c.project(A)), _det(c.project(B))]
        dets.append(pair[::-1] if v % 2 else pair)  # detection order differs between views
    dets[3] = dets[3][:1]  # one person missed in the last view
    tracks = associate(cams, dets)
    assert len(tracks) == 2
    for t in tracks:
        pts = triangulate(cams, np.stack([d.keypoints if d is not None else np.zeros((33, 3))
                                          for d in t.detections])).points
        err_a, err_b = np.abs(pts - A).max(), np.abs(pts - B).max()
        assert min(err_a, err_b) < 1e-3
    assert sum(d is None for t in tracks for d in t.detections) == 1
    kp = observe(cams, A)
    kp[1] = flip_blazepose(kp[1])
    fixed, flipped = fix_side_swaps(cams, kp)
    assert flipped == [1]
    np.testing.assert_allclose(fixed, observe(cams, A))


def test_method_specs_and_unsupported_kwargs() -> None:
    assert parse_method("default") == MethodSpec("default")
    assert dict(parse_method("focal").kwargs) == {"focal": CALIBRATED}
    spec = parse_method("lift:init=lifter,method=regressor,w=0.5,second=false")
    assert dict(spec.kwargs) == {"init": "lifter", "method": "regressor", "w": 0.5, "second": False}
    assert spec.key != parse_method("lift:init=lifter").key
    with pytest.raises(NeuralfitError):
        parse_method("nonesuch")
    with pytest.raises(NeuralfitError):
        parse_method("x:novalue")
    # A keyword fit_image does not take is reported by name, never dropped.
    problems = unsupported(parse_method("x:surely_not_a_kwarg=1"), {})
    assert problems and "surely_not_a_kwarg" in problems[0]
    assert unsupported(parse_method("kp:method=keypoints"), {}) == []
    assert unsupported(MethodSpec("default"), {"no_such_setting": 1})


def test_occlusion_score() -> None:
    occ = np.zeros((10, 10))
    occ[:, :5] = 0.8
    body = np.zeros((10, 10), bool)
    body[2:8, 2:8] = True
    occluder = np.zeros((10, 10), bool)
    occluder[:, :5] = True
    inside, visible = occlusion_score(occ, body, occluder)
    assert inside == pytest.approx(0.8) and visible == pytest.approx(0.0)
    assert all(np.isnan(occlusion_score(None, body, occluder)))
    # Someone in front over the body's right two columns (x 6, 7), where the map also says hidden: those
    # pixels leave the visible body, so it reads 0 again instead of 12 / 18 x 0.8.
    occ[:, 6:] = 0.8
    in_front = np.zeros((10, 10), bool)
    in_front[:, 6:] = True
    assert occlusion_score(occ, body, occluder)[1] == pytest.approx(12 / 18 * 0.8)
    inside, visible = occlusion_score(occ, body, occluder, in_front)
    assert inside == pytest.approx(0.8) and visible == pytest.approx(0.0)


@pytest.mark.skipif(importlib.util.find_spec("Pose2Sim") is None, reason="pose2sim not installed")
def test_demo_calibration_is_consistent() -> None:
    from neuralfit.eval.real_data import find_demo

    cams = read_qca(find_demo() / "calibration" / "Calib.qca.txt")
    assert [c.name for c in cams] == ["cam01", "cam02", "cam03", "cam04"]
    for c in cams:
        assert c.size == (1088, 1920) and 1600 < c.K[0, 0] < 1750
        # Cameras stand ~2-4.5 m from the capture volume's centre and ~1.7-2.1 m high, looking at it.
        assert 1.5 < c.center[2] < 2.5
        assert c.to_camera(np.array([0.0, 0.0, 1.0]))[2] > 1.0
        assert np.allclose(c.R @ c.R.T, np.eye(3), atol=1e-6) and np.linalg.det(c.R) == pytest.approx(1, abs=1e-6)


def _standing_keypoints() -> np.ndarray:
    """(33, 3) a standing person facing the camera in a 400 x 1000 px box at (100, 100)."""
    kp = np.zeros((33, 3))
    kp[:, 2] = 1.0
    kp[:] = [300, 200, 1.0]
    pos = {11: (360, 300), 12: (240, 300), 13: (390, 450), 14: (210, 450), 15: (400, 580), 16: (200, 580),
           23: (340, 600), 24: (260, 600), 25: (345, 800), 26: (255, 800), 27: (350, 1000), 28: (250, 1000)}
    for j, (x, y) in pos.items():
        kp[j, :2] = (x, y)
    return kp


def test_occluder_placements() -> None:
    from neuralfit.eval.multiview import BLAZEPOSE_LIMB12
    from neuralfit.eval.real_occluders import adv_candidates, place, worst_position

    kp, box = _standing_keypoints(), np.array([100, 100, 500, 1100], np.float32)
    hw = (1200, 600)

    def hidden(o) -> set[int]:
        m = o.mask(hw)
        return {j for j in BLAZEPOSE_LIMB12 if m[int(kp[j, 1]), int(kp[j, 0])]}

    # Lower body: knees and ankles hidden, the arms and shoulders not.
    assert hidden(place("lower", kp, box, 0, 0)) >= {25, 26, 27, 28}
    assert not hidden(place("lower", kp, box, 0, 0)) & {11, 12, 13, 14, 15, 16}
    # One arm + that side of the torso: the left arm in even frames, the right in odd ones.
    assert {11, 13, 15, 23} <= hidden(place("arm_torso", kp, box, 0, 0)) and not {14, 16} & hidden(
        place("arm_torso", kp, box, 0, 0))
    assert {12, 14, 16, 24} <= hidden(place("arm_torso", kp, box, 0, 1))
    sq = place("squares", kp, box, 3, 0)
    assert len(sq.rects) == 4 and sq.mask(hw)[:, :90].sum() == 0  # inside the box
    # The same seed gives the same occluder (the benchmark regenerates frames from stored rectangles).
    np.testing.assert_array_equal(place("squares", kp, box, 3, 0).rects, sq.rects)
    image = np.zeros((1200, 600, 3), np.uint8)
    pasted = sq.paste(image)
    assert (pasted.sum(-1) > 0).sum() > 0 and np.all(pasted[~sq.mask(hw)] == 0)
    cands = adv_candidates(box, 0)
    assert len(cands) == 20
    errs = {id(c): float(i) for i, c in enumerate(cands)}
    errs[id(cands[-1])] = float("inf")  # the method loses the person there: not chosen, but counted
    worst, err, lost = worst_position(cands, lambda c: errs[id(c)])
    assert worst is cands[-2] and err == 18.0 and lost == pytest.approx(1 / 20)


def test_the_occluded_splits_are_disjoint_and_evenly_spaced() -> None:
    from neuralfit.eval.real_data import occluded_split

    frames = list(range(0, 100, 4))  # 25 frames
    test, dev = occluded_split(frames, 6, False), occluded_split(frames, 6, True)
    assert len(test) == len(dev) == 6 and not test & dev and test | dev <= set(frames)
    assert sorted(test) == [0, 16, 36, 56, 76, 96]  # linspace over the 25 frames' indices 0 .. 24
    assert occluded_split(frames[:3], 6, True) == set()  # no frame left for a dev split
