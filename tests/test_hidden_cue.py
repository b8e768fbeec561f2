"""The part head's occlusion cue (``FitImageConfig.hidden_from_parts``, ``photo.steps.hidden_from_parts``).

The fitter's side (noisy-or with the mask / keypoint map, the prior floor) is tested in
tests/test_fitting_robust.py; here the photo side: calibration, grids, who gets a cue, and when the
network runs for it.
"""

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.photo import steps
from neuralfit.photo.steps import PersonCrop, hidden_from_parts, network_outputs
from neuralfit.pipeline import FitImageConfig


def _crop(mask: np.ndarray | None, keypoints: bool = True) -> PersonCrop:
    kp = np.zeros((33, 3), np.float32) if keypoints else None
    return PersonCrop(crop=None, keypoints=kp, joint_set="blazepose33" if keypoints else None, mask=mask,
                      focal=500.0, principal_point=np.zeros(2), box=np.zeros(4), pixels=np.zeros((8, 8, 3), np.uint8))


def _pred(bg: np.ndarray) -> dict:
    B, S, _ = bg.shape
    parts = np.zeros((B, 25, S, S), np.float32)
    parts[:, 0] = bg
    parts[:, 1] = 1.0 - bg
    return {"part_probs": torch.tensor(parts)}


def test_the_cue_is_the_background_probability_mapped_linearly_and_clipped():
    rng = np.random.default_rng(0)
    bg = rng.uniform(0, 1, (2, 16, 16)).astype(np.float32)
    crops = [_crop(np.ones((16, 16), np.float32)), _crop(None)]
    hidden_from_parts(crops, _pred(bg), (0.35, 0.65))
    want = np.clip((bg[0] - 0.35) / 0.3, 0.0, 1.0)
    np.testing.assert_allclose(crops[0].hidden, want, atol=1e-6)
    assert crops[0].hidden.dtype == np.float32
    assert crops[1].hidden is None  # no mask (user keypoints): no pixel evidence is added
    # below lo: 0, above hi: 1, exactly linear between
    assert np.all(crops[0].hidden[bg[0] <= 0.35] == 0) and np.all(crops[0].hidden[bg[0] >= 0.65] == 1)


def test_a_cue_on_another_grid_is_resampled_to_the_mask():
    bg = np.zeros((1, 32, 32), np.float32)
    bg[:, :, 16:] = 1.0  # right half "background"
    crops = [_crop(np.ones((16, 16), np.float32))]
    hidden_from_parts(crops, _pred(bg), (0.0, 1.0))
    h = crops[0].hidden
    assert h.shape == (16, 16)
    np.testing.assert_allclose(h[:, :8], 0.0, atol=1e-6)  # area resampling keeps the two halves exact
    np.testing.assert_allclose(h[:, 8:], 1.0, atol=1e-6)


@pytest.mark.parametrize("value", [(0.6, 0.3), (0.5, 0.5), (-0.1, 0.5), (0.2, 1.5)])
def test_a_bad_range_is_refused(value):
    with pytest.raises(NeuralfitError, match="hidden_from_parts"):
        FitImageConfig(hidden_from_parts=value)


def test_the_cue_can_be_switched_off_and_a_valid_range_is_kept():
    assert FitImageConfig(hidden_from_parts=None).hidden_from_parts is None
    assert FitImageConfig(hidden_from_parts=[0.2, 0.7]).hidden_from_parts == (0.2, 0.7)


class _Net:
    class config:  # noqa: N801 - stands in for NetConfig
        regressor_input = "keypoints"


def test_the_network_runs_for_the_cue_only_when_someone_has_a_mask(monkeypatch):
    calls = []
    monkeypatch.setattr("neuralfit.nets.predict", lambda net, x: calls.append(len(x)) or {"n": len(x)})

    class P:
        world_landmarks = np.zeros((33, 4))

    masked, bare = _crop(np.ones((4, 4), np.float32)), _crop(None)
    # keypoints method, mediapipe3d start, keypoint regressor: nothing else reads the network
    assert network_outputs(_Net(), [bare], [P()], "keypoints", "mediapipe3d", parts_cue=True) is None
    assert network_outputs(_Net(), [masked], [P()], "keypoints", "mediapipe3d", parts_cue=False) is None
    assert network_outputs(_Net(), [masked, bare], [P(), P()], "keypoints", "mediapipe3d", parts_cue=True) == {"n": 2}
    assert calls == [2]
    assert steps.network_outputs(None, [masked], [P()], "keypoints", "mediapipe3d", parts_cue=True) is None
