"""Occlusion protocols with stand-in methods: AdvOcc search, evaluation loop, resume, reports."""

import json

import numpy as np
import pytest

from neuralfit.errors import NeuralfitError
from neuralfit.eval import protocols as P
from neuralfit.eval.report import format_table, summarize


def make_sample(index=0, res=224, seed=0):
    """A synthetic sample: joints 5 m in front of the camera, projections inside the crop."""
    rng = np.random.default_rng(seed + index)
    j = np.c_[rng.uniform(-0.1, 0.1, (14, 2)), 5.0 + rng.uniform(-0.1, 0.1, 14)]
    f = 5000.0 * res / 224
    kp = P.project(j, f, res)
    img = rng.integers(0, 255, (res, res, 3), dtype=np.uint8)
    return P.EvalSample(index, f"s{index}", img, j, kp, np.ones(14, bool), np.zeros((res, res), bool), f, res)


def region_method(x0, y0, x1, y1, gain=0.5):
    """Stand-in whose error (in m, on joint 0) is proportional to the covered share of one image region."""
    def method(images, samples):
        out = []
        for img, s in zip(images, samples, strict=True):
            covered = np.any(img != s.image, -1) | s.occluder
            j = s.joints3d.copy()
            j[0, 0] += gain * covered[y0:y1, x0:x1].mean()
            out.append(j)
        return P.Prediction(np.stack(out))
    return method


def test_patch_positions_follow_the_protocol():
    pos = P.patch_positions(224, 80, 10)
    assert len(pos) == 15 * 15 and pos.max() == 140  # patch stays inside: 140 + 80 = 220 <= 224
    assert P.scaled(80, 448) == 160 and P.scaled(10, 112) == 5
    imgs, masks = P.paste_patches(np.zeros((224, 224, 3), np.uint8), np.full((80, 80, 3), 7, np.uint8), pos[:3])
    assert masks.sum(axis=(1, 2)).tolist() == [6400] * 3 and (imgs[masks] == 7).all()


def test_advocc_picks_the_worst_position_for_the_regressor():
    s = make_sample()
    # Worst when the 40 px patch covers the region [100, 140) x [60, 100) fully: position (100, 60).
    reg = region_method(100, 60, 140, 100)
    r = P.adversarial_occlusion(s, reg, size224=40, stride224=10, batch_size=50)
    assert r.position == (100, 60)
    assert len(r.errors) == 19 * 19
    # Error of the kept position: joint 0 moved 0.5 m -> MPJPE 500/14 mm minus the pelvis shift (0 here).
    assert r.errors.max() == pytest.approx(500 / 14, rel=1e-9)
    occluded = P.apply_patch(s, r.position, r.size, seed=0)
    assert occluded.occluder[60:100, 100:140].all() and occluded.occluder.sum() == 1600
    # Joints under the patch become invisible.
    px = np.rint(s.keypoints2d).astype(int)
    under = (px[:, 0] >= 100) & (px[:, 0] < 140) & (px[:, 1] >= 60) & (px[:, 1] < 100)
    assert (occluded.visible == ~under).all()


def test_coarse_to_fine_search_finds_a_smooth_maximum_with_fewer_calls():
    s = make_sample()
    reg = region_method(110, 70, 190, 150)  # an 80 px target off the coarse grid: the error surface is a smooth pyramid
    full = P.adversarial_occlusion(s, reg, size224=80, stride224=10)
    fast = P.adversarial_occlusion(s, reg, size224=80, stride224=10, coarse_to_fine=True)
    assert fast.position == full.position == (110, 70)
    assert len(fast.errors) < 0.5 * len(full.errors)


def test_evaluate_orders_protocols_and_shares_images(tmp_path):
    samples = [make_sample(i) for i in range(6)]
    methods = {"regressor": P.oracle_method(10, 400, seed=1), "other": P.oracle_method(10, 100, seed=2)}
    runs = {}
    for occ in ("none", "random", "adv80"):
        runs[occ] = P.evaluate(samples, methods, P.EvalConfig(occluder=occ, batch_size=4, adv_stride=20))
    mean = {k: summarize(r.records, list(methods)) for k, r in runs.items()}
    # The stand-in's noise grows with covered joints, and AdvOcc maximises covered joints: clean < adv80.
    assert mean["none"]["regressor"]["mpjpe"] < mean["adv80"]["regressor"]["mpjpe"]
    assert mean["adv80"]["other"]["mpjpe"] < mean["adv80"]["regressor"]["mpjpe"]
    assert all("adv_position" in r for r in runs["adv80"].records)
    # Same positions -> same images -> identical records without searching again.
    again = P.evaluate(samples, methods, P.EvalConfig(occluder="adv80", batch_size=4, adv_stride=20),
                       positions=P.positions_from_records(runs["adv80"].records))
    for a, b in zip(runs["adv80"].records, again.records, strict=True):
        assert a["methods"]["other"]["mpjpe"] == b["methods"]["other"]["mpjpe"]
    table = format_table(mean["adv80"])
    assert table.splitlines()[0].startswith("| method | MPJPE | PA-MPJPE")
    assert len(table.splitlines()) == 4


def test_resume_skips_finished_samples(tmp_path):
    samples = [make_sample(i) for i in range(5)]
    calls = []

    def counting(images, ss):
        calls.extend(s.index for s in ss)
        return P.oracle_method()(images, ss)

    cache = tmp_path / "r.cache.jsonl"
    cfg = P.EvalConfig(occluder="random", batch_size=2)
    first = P.evaluate(samples[:3], {"m": counting}, cfg, cache=cache)
    # Simulate an interrupted write: a torn last line is ignored and that sample is redone.
    with open(cache, "a") as fh:
        fh.write('{"index": 4, "meth')
    calls.clear()
    full = P.evaluate(samples, {"m": counting}, cfg, cache=cache, resume=True)
    assert sorted(calls) == [3, 4]
    assert [r["index"] for r in full.records] == [0, 1, 2, 3, 4]
    assert json.dumps(full.records[:3]) == json.dumps(first.records)  # (NaN-safe comparison)
    assert all(r["occluded_fraction_px"] > 0 for r in full.records)
    with pytest.raises(NeuralfitError, match="other settings"):
        P.evaluate(samples, {"m": counting}, P.EvalConfig(occluder="none"), cache=cache, resume=True)
    assert json.loads(cache.read_text().splitlines()[0])["header"]["config"]["occluder"] == "random"


def test_bad_inputs():
    with pytest.raises(NeuralfitError):
        P.EvalConfig(occluder="adv")
    with pytest.raises(NeuralfitError):
        P.evaluate([make_sample()], {})
    with pytest.raises(NeuralfitError, match="joints3d"):
        P.evaluate([make_sample()], {"m": lambda im, s: P.Prediction(np.zeros((1, 24, 3)))})
    with pytest.raises(NeuralfitError, match="regressor"):
        P.evaluate([make_sample()], {"m": P.oracle_method()}, P.EvalConfig(occluder="adv40"))


def test_load_samples_from_synthetic_set(tmp_path):
    from neuralfit.data import SynthConfig, generate_dataset

    generate_dataset(tmp_path / "d", 2, 0, SynthConfig(res=64, occlusion="test-occluded", body="toy", photos=False))
    ss = P.load_samples(tmp_path / "d", res=64)
    assert len(ss) == 2 and ss[0].image.shape == (64, 64, 3) and ss[0].image.dtype == np.uint8
    # Ground-truth 2D keypoints are the projections of the 3D joints (synthetic camera, < 0.5 px).
    for s in ss:
        np.testing.assert_allclose(P.project(s.joints3d, s.focal, s.res), s.keypoints2d, atol=0.5)
    with pytest.raises(NeuralfitError):
        P.load_samples(tmp_path / "missing")


def test_pckh_counts_only_annotated_keypoints():
    s = make_sample()
    pred = P.Prediction(s.joints3d[None].copy())
    assert P.score(pred, [s])[0]["pckh"] == 100.0
    # An unannotated keypoint (SPIN files: confidence 0, coordinates 0) must not count as a miss.
    s.keypoints2d = s.keypoints2d.copy()
    s.keypoints2d[0] = 0.0
    assert P.score(pred, [s])[0]["pckh"] == pytest.approx(100 * 13 / 14)
    s.annotated = np.ones(14, bool)
    s.annotated[0] = False
    assert P.score(pred, [s])[0]["pckh"] == 100.0


def test_smpl24_and_pve_scores_with_a_body():
    import torch

    from neuralfit.body import load_body_model

    body = load_body_model("free")
    rng = np.random.default_rng(0)
    pose = np.r_[np.pi, 0, 0, rng.normal(0, 0.2, 69)]
    betas, transl = rng.normal(0, 0.5, 10), np.array([0.0, 0.2, 6.0])
    with torch.no_grad():
        o = body(betas=torch.tensor(betas[None]).float(), global_orient=torch.tensor(pose[None, :3]).float(),
                 body_pose=torch.tensor(pose[None, 3:]).float(), transl=torch.tensor(transl[None]).float())
        j = body.keypoints(o, "lsp14")[0].double().numpy()
    s = make_sample()
    s = P.EvalSample(0, "x", s.image, j, P.project(j, s.focal, s.res), s.visible, s.occluder, s.focal, s.res,
                     pose, betas, transl)
    smpl = {"global_orient": pose[None, :3], "body_pose": pose[None, 3:], "betas": betas[None],
            "transl": transl[None] + 0.3}  # shifted: pelvis alignment removes it
    sc = P.score(P.Prediction(j[None] + 0.3, smpl=smpl), [s], body)[0]
    # float32 body posing: errors at the micrometre level.
    assert sc["mpjpe_smpl24"] < 1e-2 and sc["pve"] < 1e-2 and sc["pa_mpjpe_smpl24"] < 1e-2 and sc["mpjpe"] < 1e-2
    bent = dict(smpl, body_pose=smpl["body_pose"] + 0.3)
    sc = P.score(P.Prediction(j[None], smpl=bent), [s], body)[0]
    assert sc["mpjpe_smpl24"] > 10 and sc["pve"] > 10
    assert "pve" not in P.score(P.Prediction(j[None]), [s], body)[0]  # no SMPL from the method
