"""One way from observations to the fitter: ``eval``'s methods and ``fit``'s photo path give the same
parameters on the same crops and observations; composable terms; the ``--set`` parser."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError


@pytest.fixture(scope="module")
def tiny(free_body, tmp_path_factory):
    """An untrained 64-px network and a random neural mesh model (deterministic), and 2 crops."""
    from neuralfit.nets import MultiTaskNet, NetConfig, save_network
    from neuralfit.neural import NeuralMeshModel

    d = tmp_path_factory.mktemp("inputs")
    torch.manual_seed(0)
    save_network(d / "net.pt", MultiTaskNet(NetConfig(input_res=64, feature_dim=16, pretrained=False)).eval(),
                 free_body)
    NeuralMeshModel.random(int(free_body.lowres.part_labels.shape[0]), dim=16, body_name=free_body.name).save(d / "nm.pt")
    rng = np.random.default_rng(0)
    crops = rng.integers(0, 255, size=(2, 64, 64, 3), dtype=np.uint8)
    return d / "net.pt", d / "nm.pt", crops


@pytest.mark.parametrize("method", ["keypoints", "neural"])
def test_eval_and_fit_give_identical_parameters_on_the_same_crops(free_body, tiny, method):
    """``neuralfit eval --method M`` (eval.methods) and ``neuralfit fit --method M`` (photo.steps.fit_all,
    what ImageFitter runs) on the same crops, the same network observations, the same start and the
    convention crop camera. Both go through fitting.inputs.fit_batch; the only allowed difference is
    float round-off of a per-sample (tensor) vs a scalar focal, amplified over 10 Adam steps: 1e-4."""
    from neuralfit.eval.methods import build_methods
    from neuralfit.fitting import FitConfig
    from neuralfit.fitting.inputs import method_config, start_from_prediction
    from neuralfit.nets import load_network, predict
    from neuralfit.neural import NeuralMeshModel
    from neuralfit.photo.people import Crop
    from neuralfit.photo.start import PersonStart
    from neuralfit.photo.steps import PersonCrop, fit_all
    from neuralfit.render.camera import default_focal

    net_path, nm_path, crops = tiny
    overrides = {"stage1_iters": 5, "stage2_iters": 5}
    ev = build_methods([method], str(net_path), free_body, str(nm_path), prior=None, fit_overrides=overrides)[method]
    got = ev(crops, [None, None]).smpl

    net = load_network(net_path, free_body)
    pred = predict(net, crops)
    start = start_from_prediction(pred)
    res = int(pred["res"])
    pcs = [PersonCrop(Crop(np.zeros(2), 1.0, res), pred["keypoints"][j].numpy(), pred["joint_set"], None,
                      default_focal(res), np.array([res / 2, res / 2]), np.array([0, 0, res, res]))
           for j in range(2)]
    starts = [PersonStart(start.row(j), "network", True) for j in range(2)]
    nm = NeuralMeshModel.load(nm_path, body=free_body)
    cfg = method_config(method, FitConfig.occluded(**overrides))
    fitted = fit_all(method, pcs, starts, pred, free_body, nm, None, cfg, "cpu")
    for key in ("global_orient", "body_pose", "betas", "transl"):
        want = np.stack([getattr(f, key) for f in fitted])
        assert np.allclose(got[key], want, atol=1e-4), key
    # And the fit moved away from the start: equal answers are not just two unfitted starts.
    assert np.abs(got["body_pose"] - start.body_pose.numpy()).max() > 1e-3 or \
        np.abs(got["transl"] - start.transl.numpy()).max() > 1e-3


def test_a_new_term_joins_the_loss_without_touching_the_loop(free_body):
    """An extra Term (here: pull the translation toward a target depth, stage 2 only) appears in the
    result's terms and changes the answer; without it the default terms alone run."""
    from neuralfit.fitting import FitBatch, FitConfig, Fitter
    from neuralfit.fitting.terms import Term

    B = 1
    batch = FitBatch(torch.tensor([[np.pi, 0.0, 0.0]]), torch.zeros(B, 69), torch.tensor([[0.0, 0.0, 20.0]]),
                     keypoints=torch.zeros(B, 17, 3), joint_set="coco17")
    cfg = FitConfig.occluded(stage1_iters=0, stage2_iters=20, lr=0.05)
    plain = Fitter(free_body, None, None, cfg).fit(batch)
    depth = Term("depth", 1.0, lambda ctx: (ctx.params["transl"][:, 2] - 15.0) ** 2, stages=(2,))
    pulled = Fitter(free_body, None, None, cfg, extra_terms=[depth]).fit(batch)
    assert "depth" in pulled.terms and "depth" not in plain.terms
    assert float(pulled.transl[0, 2]) < float(plain.transl[0, 2]) - 0.5


def test_fitter_does_not_move_the_callers_modules(free_body):
    """A module on another device is copied to the fitter's device, never moved in place. Checked with
    the meta device standing in for a GPU."""
    from neuralfit.fitting.fitter import _on_device

    m = torch.nn.Linear(2, 2)
    moved = _on_device(m, torch.device("meta"))
    assert moved is not m and m.weight.device.type == "cpu" and moved.weight.device.type == "meta"
    assert _on_device(m, torch.device("cpu")) is m


def test_set_parser_types_values_by_the_fields():
    from neuralfit.fitting import FitConfig
    from neuralfit.fitting.config import parse_settings

    got = parse_settings(["w_partseg=0", "outlier=off", "stage1_iters=7", "stage2_params=global_orient,body_pose"])
    assert got == {"w_partseg": 0.0, "outlier": False, "stage1_iters": 7,
                   "stage2_params": ("global_orient", "body_pose")}
    assert FitConfig().with_settings(["stage2_params=global_orient,body_pose"]) == FitConfig.seed()
    for bad, msg in (("nope=1", "KEY=VALUE"), ("lr=fast", "float"), ("outlier=maybe", "true or false"),
                     ("lr=nan", "finite"), ("stage2_params=elbow", "stage parameters"), ("lr=-1", "positive")):
        with pytest.raises(NeuralfitError, match=msg):
            FitConfig().with_settings([bad])


@pytest.mark.parametrize("w", [0.0, 0.01])
def test_keypoints_fit_keeps_the_mask_for_the_occlusion_map(free_body, w):
    """Issue 16 d3: a keypoints-only fit given a person mask runs the mask-outlier term when its weight is
    positive, and so returns an occlusion map over the mask's grid; at weight 0 the mask is dropped."""
    from neuralfit.fitting import FitBatch, FitConfig, Fitter

    mask = torch.zeros(1, 16, 16)
    mask[:, 2:14, 5:11] = 1.0  # a standing person's probability, 1 inside and 0 outside
    batch = FitBatch(torch.tensor([[np.pi, 0.0, 0.0]]), torch.zeros(1, 69), torch.tensor([[0.0, 0.0, 20.0]]),
                     keypoints=torch.zeros(1, 17, 3), joint_set="coco17", mask=mask)
    cfg = FitConfig.photo(keypoints_only=True, w_mask_outlier=w, stage1_iters=0, stage2_iters=3)
    res = Fitter(free_body, None, None, cfg).fit(batch)
    if w == 0:
        assert res.occlusion is None
    else:
        assert res.occlusion is not None and tuple(res.occlusion.shape) == (1, 16, 16)
        # Posteriors, up to float32 rounding of 1 - p.
        assert float(res.occlusion.min()) >= -1e-6 and float(res.occlusion.max()) <= 1.0 + 1e-6
