"""``FitImageConfig.unsure_hidden``: an occluded person's unsure keypoints are left to the start in the 2D fit
(``photo.steps.fit_all``), a person seen whole is fitted as before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError

RES = 224
FOCAL = 600.0


def _person(body):
    """A posed body 6 m in front of a 224-px crop camera, its exact spin24 keypoints (confidence 0.9) and a
    start at the truth."""
    from neuralfit.init.types import StartParams
    from neuralfit.photo.outputs import project_points

    torch.manual_seed(0)
    pose = 0.15 * torch.randn(1, 69)
    orient, transl = torch.tensor([[np.pi, 0.0, 0.0]]), torch.tensor([[0.0, 0.2, 6.0]])
    with torch.no_grad():
        posed = body(betas=torch.zeros(1, 10), global_orient=orient, body_pose=pose, transl=transl)
        k3 = body.keypoints(posed, "spin24")[0].numpy().astype(np.float64)
    uv = project_points(k3, FOCAL, np.array([RES / 2, RES / 2]))
    kp = np.concatenate([uv, np.full((len(uv), 1), 0.9)], 1).astype(np.float32)
    kp[~body.keypoint_sets["spin24"].valid.numpy()] = 0.0
    return kp, StartParams(orient, pose, torch.zeros(1, 10), transl)


def _fit(body, kps: list[np.ndarray], start, k: float, inconsistent: float = 0.0, c: float = 0.0,
         hidden: np.ndarray | None = None, hk: float = 0.0):
    from neuralfit.fitting import FitConfig
    from neuralfit.photo.people import Crop
    from neuralfit.photo.start import PersonStart
    from neuralfit.photo.steps import PersonCrop, fit_all

    crops = [PersonCrop(Crop(np.array([RES / 2, RES / 2]), 1.0, RES), kp, "spin24", None, FOCAL,
                        np.array([RES / 2, RES / 2]), np.array([20.0, 10.0, 200.0, 214.0]), hidden=hidden)
             for kp in kps]
    starts = [PersonStart(start, "mediapipe3d", True, inconsistent) for _ in kps]
    cfg = FitConfig.photo(stage1_iters=5, stage2_iters=30)
    return fit_all("keypoints", crops, starts, None, body, None, None, cfg, "cpu", unsure_hidden=k,
                   inconsistent_keypoints=c, hidden_keypoints=hk)


def test_an_occluded_persons_unsure_keypoints_stop_dragging_the_fit(free_body):
    """Half the limb keypoints (the legs) unsure (0.3) and 40 px off: with k = 2, min(1, 2 x 0.5) = 1, so they
    get weight 0 and the fit equals the fit with them removed, while with k = 0 they pull the legs; a person
    with every keypoint sure (s = 0) is fitted the same for any k."""
    names = list(free_body.keypoint_sets["spin24"].names)
    legs = [names.index(f"{s}_{j}") for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    clean, start = _person(free_body)
    occluded = clean.copy()
    occluded[legs, 0] += 40.0
    occluded[legs, 2] = 0.3
    removed = occluded.copy()
    removed[legs, 2] = 0.0

    off, on = _fit(free_body, [occluded, clean], start, 0.0), _fit(free_body, [occluded, clean], start, 2.0)
    ref = _fit(free_body, [removed], start, 0.0)[0]
    assert on[0].unsure_weight == 0.0 and off[0].unsure_weight == 1.0 and on[1].unsure_weight == 1.0
    np.testing.assert_allclose(on[0].body_pose, ref.body_pose, atol=1e-6)
    np.testing.assert_allclose(on[0].transl, ref.transl, atol=1e-6)
    np.testing.assert_allclose(on[1].body_pose, off[1].body_pose, atol=1e-6)
    # The dragged fit really moved: its legs' joints (SMPL hips, knees: body_pose rows 0-4) left the truth more.
    drag = np.abs(off[0].body_pose[:15] - start.body_pose[0, :15].numpy()).max()
    kept = np.abs(on[0].body_pose[:15] - start.body_pose[0, :15].numpy()).max()
    assert drag > kept + 0.02


def test_a_person_whose_3d_and_2d_disagree_has_their_keypoint_terms_weighted_down(free_body):
    """``inconsistent_keypoints`` c with a start's ``inconsistent`` w: the person's keypoint terms get weight
    1 - min(1, c w). Weight 0 fits as if no keypoint were detected; w = 0 or c = 0 changes nothing; half
    weight lands in between (the terms are confidence-weighted means, so scaling confidences would not)."""
    kp, start = _person(free_body)
    kp = kp.copy()
    kp[:, 0] += np.where(np.arange(len(kp)) % 2, 15.0, -10.0)  # off the start, so the weight matters
    none = kp.copy()
    none[:, 2] = 0.0
    plain = _fit(free_body, [kp], start, 0.0)[0].body_pose
    off = _fit(free_body, [none], start, 0.0)[0].body_pose
    np.testing.assert_allclose(_fit(free_body, [kp], start, 0.0, 1.0, 1.0)[0].body_pose, off, atol=1e-6)
    np.testing.assert_allclose(_fit(free_body, [kp], start, 0.0, 0.0, 1.0)[0].body_pose, plain, atol=1e-6)
    np.testing.assert_allclose(_fit(free_body, [kp], start, 0.0, 1.0, 0.0)[0].body_pose, plain, atol=1e-6)
    half = _fit(free_body, [kp], start, 0.0, 0.5, 1.0)[0].body_pose
    assert np.abs(plain - off).max() > 1e-2
    assert np.abs(half - plain).max() > 1e-3 and np.abs(half - off).max() > 1e-3


def test_hidden_weight_is_the_clipped_share_of_unsure_limbs(free_body):
    from neuralfit.photo.start import hidden_weight

    kp, _ = _person(free_body)
    names = list(free_body.keypoint_sets["spin24"].names)
    kp[[names.index("left_knee"), names.index("left_ankle"), names.index("right_wrist")], 2] = 0.2
    assert hidden_weight(free_body, kp, "spin24", 1.5) == pytest.approx(1.5 * 3 / 12)
    assert hidden_weight(free_body, kp, "spin24", 10.0) == 1.0
    assert hidden_weight(free_body, kp, "spin24", 0.0) == 0.0
    assert hidden_weight(free_body, None, None, 1.5) == 0.0


@pytest.mark.parametrize("name", ["unsure_hidden", "inconsistent_keypoints", "hidden_keypoints",
                                  "hidden_keypoints_start"])
@pytest.mark.parametrize("value", [-1.0, float("nan")])
def test_negative_keypoint_trust_settings_are_refused(name, value):
    from neuralfit.pipeline import FitImageConfig

    with pytest.raises(NeuralfitError, match=name):
        FitImageConfig(**{name: value})




def test_hidden_at_samples_the_hidden_map_where_each_keypoint_lies():
    """A 56 x 56 map over a 224-px crop (4 px per cell): 1 inside a block, 0 elsewhere. A keypoint at a cell
    centre inside reads 1; on the border between a 0 and a 1 cell, 0.5 (bilinear); off the crop or NaN, 0."""
    from neuralfit.photo.steps import hidden_at

    h = np.zeros((56, 56), np.float32)
    h[10:20, 30:40] = 1.0
    kp = np.array([[35 * 4 + 2, 15 * 4 + 2, 0.9],  # cell (15, 35): inside
                   [30 * 4, 15 * 4 + 2, 0.9],  # between cells 29 (0) and 30 (1)
                   [2.0, 2.0, 0.9],  # cell (0, 0): visible
                   [300.0, 60.0, 0.9],  # off the crop
                   [np.nan, np.nan, 0.0]], np.float32)
    np.testing.assert_allclose(hidden_at(h, kp, 224), [1.0, 0.5, 0.0, 0.0, 0.0], atol=1e-6)


def test_keypoints_where_the_part_head_sees_no_body_stop_dragging_the_fit(free_body):
    """``hidden_keypoints`` k: a keypoint's confidence is scaled by 1 - min(1, k h), h the crop's hidden map
    at the keypoint. The legs' keypoints, confident but 40 px off, lie in a block the map calls hidden (h = 1):
    with k = 1 the fit equals the fit with them removed; with k = 0.5 their confidence halves (0.9 -> 0.45),
    as given that way; k = 0 ignores the map."""
    names = list(free_body.keypoint_sets["spin24"].names)
    legs = [names.index(f"{s}_{j}") for s in ("left", "right") for j in ("hip", "knee", "ankle")]
    clean, start = _person(free_body)
    moved = clean.copy()
    moved[legs, 0] += 40.0
    hidden = np.zeros((RES // 4, RES // 4), np.float32)
    cells = np.clip((moved[legs, :2] / 4).astype(int), 0, RES // 4 - 1)
    for x, y in cells:
        hidden[max(0, y - 2):y + 3, max(0, x - 2):x + 3] = 1.0
    removed, half = moved.copy(), moved.copy()
    removed[legs, 2] = 0.0
    half[legs, 2] *= 0.5
    assert hidden[(clean[:, 1] / 4).astype(int), (clean[:, 0] / 4).astype(int)][
        [i for i in range(len(clean)) if i not in legs and clean[i, 2] > 0]].max() == 0.0  # the rest is seen
    fitted = _fit(free_body, [moved], start, 0.0, hidden=hidden, hk=1.0)[0]
    on = fitted.body_pose
    # The factor is reported per keypoint: 0 on the legs (inside the block), 1 on keypoints the map calls seen.
    seen = [i for i in range(len(clean)) if i not in legs and clean[i, 2] > 0]
    np.testing.assert_allclose(fitted.hidden_keypoint_weight[legs], 0.0, atol=1e-6)
    np.testing.assert_allclose(fitted.hidden_keypoint_weight[seen], 1.0, atol=1e-6)
    assert _fit(free_body, [moved], start, 0.0, hidden=hidden, hk=0.0)[0].hidden_keypoint_weight is None
    np.testing.assert_allclose(on, _fit(free_body, [removed], start, 0.0)[0].body_pose, atol=1e-6)
    np.testing.assert_allclose(_fit(free_body, [moved], start, 0.0, hidden=hidden, hk=0.5)[0].body_pose,
                               _fit(free_body, [half], start, 0.0)[0].body_pose, atol=1e-6)
    off = _fit(free_body, [moved], start, 0.0, hidden=hidden, hk=0.0)[0].body_pose
    np.testing.assert_allclose(off, _fit(free_body, [moved], start, 0.0)[0].body_pose, atol=1e-6)
    assert np.abs(off - on).max() > 0.02


def test_the_start_reads_the_part_heads_say_when_asked(monkeypatch):
    """``hidden_keypoints`` of ``steps.start_people``: the start (lifter, IK weights, hidden-limb share) gets each
    keypoint's confidence x ``1 - min(1, k h)``; k = 0 passes the detections through unchanged."""
    from neuralfit.photo import start as start_mod
    from neuralfit.photo.people import Crop
    from neuralfit.photo.steps import PersonCrop, start_people

    seen = []
    monkeypatch.setattr(start_mod, "start_people", lambda init, inputs, body, **kw: seen.append(inputs) or [])
    kp = np.array([[20.0, 20.0, 0.9], [200.0, 200.0, 0.8]], np.float32)  # a crop pixel in each corner
    hidden = np.zeros((56, 56), np.float32)
    hidden[45:, 45:] = 0.4  # the second keypoint lies where the part head sees little body
    crop = PersonCrop(Crop(np.array([112.0, 112.0]), 1.0, 224), kp, "blazepose33", None, 500.0,
                      np.array([112.0, 112.0]), np.array([0.0, 0.0, 224.0, 224.0]), hidden=hidden)

    class _P:
        world_landmarks = None

    start_people("mediapipe3d", [crop], [_P()], [None], None, None, None, None, hidden_keypoints=2.0)
    np.testing.assert_allclose(seen[-1].keypoints[0][:, 2], [0.9, 0.8 * (1 - 0.8)], rtol=1e-6)
    start_people("mediapipe3d", [crop], [_P()], [None], None, None, None, None)
    np.testing.assert_array_equal(seen[-1].keypoints[0], kp)
    assert crop.keypoints[1, 2] == np.float32(0.8)  # the crop's own detections are never changed
