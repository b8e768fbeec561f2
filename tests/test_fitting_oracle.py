"""Oracle acceptance tests of the neural fit (no network: features come from a known neural model).

Scenes (tests/fitting_scenes.py): mocap poses of the free body rendered at 56 px, smooth well-separated
vertex features + noise, initialised 25 degrees off at every joint. The fit uses the feature term and
the shipped pose prior only (no keypoints, no part segmentation).
"""

import pytest
import torch
from fitting_scenes import RES, SIZE, make_scene, oracle_model

from neuralfit.eval.metrics import pa_mpjpe
from neuralfit.fitting import FitBatch, FitBody, FitConfig, Fitter
from neuralfit.render import CropCamera, rasterize


@pytest.fixture(scope="module")
def setup(free_body):
    from neuralfit.priors.default import load_pose_prior

    fb = FitBody(free_body)
    return fb, oracle_model(fb), load_pose_prior("default")


def _fit(fb, model, prior, scene, **cfg):
    r = Fitter(fb, model, prior, FitConfig(**cfg)).fit(
        FitBatch(scene.init_go, scene.init_pose, scene.init_transl, res=RES, features=scene.features))
    with torch.no_grad():
        joints = fb(r.betas, r.global_orient, r.body_pose, r.transl).joints
    return r, 1000 * pa_mpjpe(joints, scene.gt_joints)


def _init_error(fb, scene):
    with torch.no_grad():
        j = fb(torch.zeros(len(scene.init_go), 10), scene.init_go, scene.init_pose, scene.init_transl).joints
    return 1000 * pa_mpjpe(j, scene.gt_joints)


def _occlusion_iou(fb, r, scene):
    """IoU of {occlusion posterior > 0.5} with the occluder box, both on the fitted body's rendered pixels
    (the only pixels where the occlusion map is defined)."""
    with torch.no_grad():
        low = fb(r.betas, r.global_orient, r.body_pose, r.transl).lowres
    fg = rasterize(low, fb.faces, CropCamera(RES), SIZE).mask
    pred = r.occlusion > 0.5
    target = scene.box & fg
    return (pred & target).flatten(1).sum(1).float() / (pred | target).flatten(1).sum(1).clamp(min=1).float()


def test_oracle_neural_fit_halves_error_fast(setup):
    """Default-suite version: 2 crops."""
    fb, model, prior = setup
    scene = make_scene(fb, model, 2, seed=0)
    e0 = _init_error(fb, scene)
    r, e1 = _fit(fb, model, prior, scene)
    print(f"oracle unoccluded (fast): init {e0.mean():.1f} mm -> fit {e1.mean():.1f} mm")
    assert not r.rolled_back.any()
    # Acceptance: PA-MPJPE reduced by at least half (mean over the crops).
    assert float(e1.mean()) <= 0.5 * float(e0.mean()), (e0.tolist(), e1.tolist())


@pytest.mark.slow
def test_oracle_neural_fit_halves_error(setup):
    fb, model, prior = setup
    scene = make_scene(fb, model, 6, seed=1)
    e0 = _init_error(fb, scene)
    _, e1 = _fit(fb, model, prior, scene)
    print(f"oracle unoccluded: init {e0.mean():.1f} mm -> fit {e1.mean():.1f} mm")
    assert float(e1.mean()) <= 0.5 * float(e0.mean()), (e0.tolist(), e1.tolist())


def _occluded_check(setup, n, seed):
    fb, model, prior = setup
    scene = make_scene(fb, model, n, seed=seed, occluder=0.4)
    e0 = _init_error(fb, scene)
    r_on, e_on = _fit(fb, model, prior, scene, outlier=True)
    _, e_off = _fit(fb, model, prior, scene, outlier=False)
    iou = _occlusion_iou(fb, r_on, scene)
    print(f"oracle occluded: init {e0.mean():.1f} mm, outlier on {e_on.mean():.1f} mm, off {e_off.mean():.1f} mm, "
          f"IoU {iou.mean():.2f}")
    assert float(e_on.mean()) < float(e_off.mean()), (e_on.tolist(), e_off.tolist())
    assert float(iou.mean()) >= 0.5, iou.tolist()


def test_oracle_outlier_process_under_occlusion_fast(setup):
    _occluded_check(setup, 2, seed=3)


@pytest.mark.slow
def test_oracle_outlier_process_under_occlusion(setup):
    _occluded_check(setup, 6, seed=4)
