"""The 2D-to-3D keypoint lifter: input normalisation, mirror symmetry, checkpoints, training, the start."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from neuralfit.errors import NeuralfitError
from neuralfit.nets.lifter import KeypointLifter, LifterConfig, load_lifter, normalise_keypoints, save_lifter


def _lifter(free_body, hidden: int = 64) -> KeypointLifter:
    torch.manual_seed(0)
    return KeypointLifter(LifterConfig("spin24", tuple(free_body.keypoint_sets["spin24"].names),
                                       tuple(free_body.keypoint_sets["blazepose33"].names), hidden, 1, 0.0)).eval()


def _keypoints(n: int = 6, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.cat([torch.rand(n, 24, 2, generator=g) * 150 + 40, 0.2 + 0.8 * torch.rand(n, 24, 1, generator=g)], -1)
    kp[:, 13:15] = 0.0  # two missing keypoints: all zero, whatever the frame
    return kp


def test_normalisation_ignores_where_and_how_big_the_person_is():
    """The lifter reads a person-normalised input, so shifting and scaling the pixels (another crop of
    the same photo, or the photo itself) changes nothing; missing keypoints stay exactly zero."""
    kp = _keypoints()
    moved = kp.clone()
    ok = kp[..., 2] > 0
    moved[..., :2] = torch.where(ok[..., None], kp[..., :2] * 3.7 + torch.tensor([812.0, -95.0]), kp[..., :2])
    a, b = normalise_keypoints(kp), normalise_keypoints(moved)
    assert torch.allclose(a, b, atol=1e-5)
    assert (a[:, 13:15] == 0).all()
    assert a[..., :2].abs().max() <= 0.5 + 1e-6  # centred on the box, divided by its long side


def test_lifter_reads_the_focal_relative_to_the_person_size(free_body):
    """Photo pixels or crop pixels give the same answer when the focal is in the same pixels (only
    focal / box size is read), and the focal does change the answer (perspective)."""
    model = _lifter(free_body)
    kp = _keypoints()
    ok = kp[..., 2] > 0
    scaled = kp.clone()
    scaled[..., :2] = torch.where(ok[..., None], kp[..., :2] * 2.5 + 40.0, kp[..., :2])
    f = torch.full((len(kp),), 600.0)
    assert torch.allclose(model.lift(kp, f), model.lift(scaled, f * 2.5), atol=1e-5)
    assert not torch.allclose(model.lift(kp, f), model.lift(kp, f * 4), atol=1e-4)


def test_lift_reads_detector_confidences_above_the_cap_as_the_cap(free_body):
    """``max_input_confidence``: confidences 0.5 and 1 read the same (both are the cap, 0.3), one below the
    cap is read as it is, and forward() (training) sees the raw value."""
    model = _lifter(free_body)
    assert model.config.max_input_confidence == 0.3
    kp = _keypoints()
    ok = kp[..., 2] > 0
    hi, mid = kp.clone(), kp.clone()
    hi[..., 2] = torch.where(ok, torch.ones_like(kp[..., 2]), kp[..., 2])
    mid[..., 2] = torch.where(ok, torch.full_like(kp[..., 2], 0.5), kp[..., 2])
    assert torch.equal(model.lift(hi), model.lift(mid))
    low = hi.clone()
    low[:, 0, 2] = 0.1
    assert not torch.allclose(model.lift(low), model.lift(hi), atol=1e-6)
    with torch.no_grad():
        assert not torch.allclose(model(hi), model(mid), atol=1e-6)


def test_flip_averaged_lift_is_exactly_mirror_symmetric(free_body):
    """lift(mirror(x)) = mirror(lift(x)) for any weights: the two passes are averaged with sides exchanged,
    so a mirrored photo gives the mirrored body (no left/right bias of the training survives)."""
    model = _lifter(free_body)
    kp = _keypoints()
    in_perm, out_perm = model.in_mirror, model.out_mirror
    mirrored = kp[:, in_perm].clone()
    mirrored[..., 0] = -mirrored[..., 0]
    a = model.lift(kp)
    b = model.lift(mirrored)[:, out_perm]
    b[..., 0] = -b[..., 0]
    assert torch.allclose(a, b, atol=1e-5)
    names = model.config.out_names
    assert names[int(out_perm[names.index("left_knee")])] == "right_knee"
    assert not torch.allclose(model.lift(kp, flip=False), a)  # a random net is not symmetric by itself


def test_checkpoint_round_trip_and_refusals(free_body, tmp_path):
    model = _lifter(free_body)
    path = tmp_path / "lifter.pt"
    save_lifter(model, path, {"note": "test"})
    back = load_lifter(path)
    kp = _keypoints()
    # float16 weights: relative error ~1e-3 of the output scale
    assert torch.allclose(back.lift(kp), model.lift(kp), atol=2e-3 * float(model.lift(kp).abs().max()))
    assert back.info["note"] == "test"
    torch.save({"something": 1}, tmp_path / "other.pt")
    with pytest.raises(NeuralfitError, match="not a keypoint lifter"):
        load_lifter(tmp_path / "other.pt")


def test_training_beats_the_mean_pose_on_held_out_clips(free_body):
    """A short run on a few thousand bodies already beats predicting the mean landmarks for everyone on the
    held-out clips (a lifter that learned nothing scores the mean's PA-MPJPE)."""
    from neuralfit.training.lifter import LifterTrainConfig, limb_pa_mpjpe, train_lifter
    from neuralfit.training.regressor import RegressorConfig, lifter_pose_sets
    from neuralfit.training.regressor_data import sample_photo_keypoint_set

    train_poses, held_poses = lifter_pose_sets(RegressorConfig())
    # Small and short: no dropout and a higher rate (at 1e-3 with dropout 300 steps are not enough).
    cfg = LifterTrainConfig(samples=3000, heldout_samples=300, steps=400, batch_size=128, hidden=128,
                            dropout=0.0, lr=3e-3, eval_every=400)
    tr = sample_photo_keypoint_set(free_body, train_poses, cfg.samples, 224, cfg.keypoints.photo, seed=1)
    he = sample_photo_keypoint_set(free_body, held_poses, cfg.heldout_samples, 224, cfg.keypoints.photo, seed=2)
    torch.manual_seed(0)
    model, rows = train_lifter(free_body, tr, he, cfg, log=lambda s: None)
    names = model.config.out_names
    mean = tr["landmarks3d"].mean(0, keepdim=True).expand_as(he["landmarks3d"])
    baseline = float(limb_pa_mpjpe(mean, he["landmarks3d"], names).mean())
    # measured: 220 mm for the mean, ~143 mm after 400 steps
    assert rows[-1]["heldout_pa"] < 0.8 * baseline, (rows, baseline)


def _exact_keypoints(free_body, n: int = 40):
    from neuralfit.training.regressor import RegressorConfig, lifter_pose_sets
    from neuralfit.training.regressor_data import PhotoCameraConfig, sample_photo_keypoint_set

    _, held = lifter_pose_sets(RegressorConfig())
    cam = PhotoCameraConfig(p_truncation=0.0)
    data = sample_photo_keypoint_set(free_body, held, n, 224, cam, seed=3, jitter=0.0)
    return data


def test_shipped_lifter_recovers_held_out_poses_from_exact_keypoints(free_body):
    """The shipped lifter on exact keypoints of held-out mocap clips (clips it never saw) through photo
    cameras: limb PA-MPJPE well below the mean pose's, and the IK start made from its landmarks agrees
    with them (the same route as mediapipe's 3D)."""
    from neuralfit.assets import default_lifter
    from neuralfit.init.lift import lift_landmarks, lift_start
    from neuralfit.training.lifter import limb_pa_mpjpe

    path = default_lifter()
    if path is None:
        pytest.skip("no shipped lifter")
    lifter = load_lifter(path)
    data = _exact_keypoints(free_body)
    kp = data["keypoints"].numpy()
    names = lifter.config.out_names
    lm, ok = lift_landmarks(lifter, free_body, kp, "spin24")
    assert ok.all()
    err = float(limb_pa_mpjpe(lm, data["landmarks3d"], names).mean())
    mean = data["landmarks3d"].mean(0, keepdim=True).expand_as(lm)
    assert err < 0.6 * float(limb_pa_mpjpe(mean, data["landmarks3d"], names).mean())
    sp, _ = lift_start(lifter, free_body, kp[:8], "spin24")
    out = free_body(betas=sp.betas, global_orient=sp.global_orient, body_pose=sp.body_pose, transl=sp.transl)
    posed = free_body.keypoints(out, "blazepose33")[..., :3]
    # The IK reproduces the lifter's landmarks to within a few cm (it also keeps the pose plausible).
    assert float(limb_pa_mpjpe(posed, lm[:8], names).mean()) < 40.0


def test_start_people_uses_the_lifter_for_init_lifter_and_as_fallback(free_body):
    """``init="lifter"`` starts from the lifter (``mediapipe3d`` without world landmarks does not use it yet)."""
    from neuralfit.photo.start import StartInputs, start_people

    lifter = _lifter(free_body)
    data = _exact_keypoints(free_body, 2)
    kp = [data["keypoints"][i].numpy() for i in range(2)]
    inputs = StartInputs(keypoints=kp, joint_sets=["spin24", "spin24"], world_landmarks=[None, None],
                         image_names=[None, None], focal=np.array([500.0, 500.0]),
                         principal_point=np.array([[112.0, 112.0]] * 2), boxes=np.array([[20, 20, 200, 200]] * 2))
    for init in ("lifter",):
        starts = start_people(init, inputs, free_body, lifter=lifter)
        assert [s.source for s in starts] == ["lifter", "lifter"]
        assert all(s.knows_facing for s in starts)
    assert [s.source for s in start_people("lifter", inputs, free_body)] == ["mean", "mean"]


def _record_ik_targets(monkeypatch) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Every (landmarks, confidences) target that ``fit_world_landmarks`` is given from now on."""
    import neuralfit.init as init_pkg

    real, seen = init_pkg.fit_world_landmarks, []

    def spy(body, lm, conf, prior=None, config=None):
        seen.append((lm.clone(), conf.clone()))
        return real(body, lm, conf, prior=prior, config=config)

    monkeypatch.setattr(init_pkg, "fit_world_landmarks", spy)
    return seen


def test_lift_blend_mixes_the_lifters_landmarks_into_the_mediapipe3d_target(free_body, monkeypatch):
    """``lift_blend`` a: the IK target is (1 - a) mediapipe + a lifter where the person has keypoints, and
    mediapipe's alone where not; confidences stay mediapipe's; a = 0 leaves mediapipe's target untouched."""
    from neuralfit.init.lift import lift_landmarks
    from neuralfit.photo.start import StartInputs, start_people

    lifter = _lifter(free_body)
    data = _exact_keypoints(free_body, 2)
    kp = data["keypoints"][0].numpy()
    world = np.concatenate([data["landmarks3d"][1].numpy(), np.full((33, 1), 0.9, np.float32)], 1)
    seen = _record_ik_targets(monkeypatch)
    inputs = StartInputs(keypoints=[kp, None], joint_sets=["spin24", None], world_landmarks=[world, world],
                         image_names=[None, None], focal=np.array([500.0, 500.0]),
                         principal_point=np.array([[112.0, 112.0]] * 2), boxes=np.array([[20, 20, 200, 200]] * 2))
    lifted, ok = lift_landmarks(lifter, free_body, kp[None], "spin24", 500.0)
    assert ok[0]
    starts = start_people("mediapipe3d", inputs, free_body, lifter=lifter, lift_blend=0.3)
    assert [s.source for s in starts] == ["mediapipe3d", "mediapipe3d"]
    lm, conf = seen[-1]
    w = torch.as_tensor(world[:, :3])
    torch.testing.assert_close(lm[0], 0.7 * w + 0.3 * lifted[0], atol=1e-6, rtol=0)
    torch.testing.assert_close(lm[1], w)  # no keypoints: mediapipe's landmarks as they are
    torch.testing.assert_close(conf, torch.full((2, 33), 0.9))
    start_people("mediapipe3d", inputs, free_body, lifter=lifter, lift_blend=0.0)
    torch.testing.assert_close(seen[-1][0][0], w)


def test_lift_blend_leans_on_the_lifter_when_limb_keypoints_are_unsure(free_body, monkeypatch):
    """``lift_blend_hidden`` k: with a share s of the 12 limb keypoints below confidence 0.5 the blend is
    a + (1 - a) min(1, k s); a person mediapipe saw whole keeps a."""
    from neuralfit.init.lift import lift_landmarks
    from neuralfit.photo.start import StartInputs, hidden_limb_share, start_people

    lifter = _lifter(free_body)
    data = _exact_keypoints(free_body, 2)
    names = list(free_body.keypoint_sets["spin24"].names)
    clean = data["keypoints"][0].numpy().copy()
    legs = clean.copy()
    legs[[names.index(n) for n in ("left_knee", "right_knee", "left_ankle", "right_ankle")], 2] = 0.1
    assert hidden_limb_share(free_body, clean, "spin24") == 0.0
    assert hidden_limb_share(free_body, legs, "spin24") == pytest.approx(1 / 3)
    world = np.concatenate([data["landmarks3d"][1].numpy(), np.full((33, 1), 0.9, np.float32)], 1)
    seen = _record_ik_targets(monkeypatch)
    inputs = StartInputs(keypoints=[clean, legs], joint_sets=["spin24", "spin24"], world_landmarks=[world, world],
                         image_names=[None, None], focal=np.array([500.0, 500.0]),
                         principal_point=np.array([[112.0, 112.0]] * 2), boxes=np.array([[20, 20, 200, 200]] * 2))
    start_people("mediapipe3d", inputs, free_body, lifter=lifter, lift_blend=0.3, lift_blend_hidden=1.5)
    w = torch.as_tensor(world[:, :3])
    for row, kp, a in ((0, clean, 0.3), (1, legs, 0.3 + 0.7 * 0.5)):
        lifted, _ = lift_landmarks(lifter, free_body, kp[None], "spin24", 500.0)
        torch.testing.assert_close(seen[-1][0][row], (1 - a) * w + a * lifted[0], atol=1e-6, rtol=0)


def test_landmark_reprojection_residual_measures_how_far_3d_landmarks_are_from_their_2d_keypoints():
    """Keypoints that are a scaled, shifted orthographic view of the landmarks give 0 whatever the scale;
    2D noise of rms sigma (per axis) gives about sigma sqrt(2) over the keypoints' rms radius (the scale and
    shift fit absorbs 3 of the 2n residual dimensions, so a little less); unsure keypoints are ignored, and
    fewer than 6 sure ones give NaN."""
    from neuralfit.photo.start import landmark_reprojection_residual

    g = np.random.default_rng(0)
    world = g.normal(0, 0.3, (33, 3))
    for scale, shift in ((400.0, (120.0, 80.0)), (37.0, (-5.0, 900.0))):
        kp = np.concatenate([scale * world[:, :2] + shift, np.full((33, 1), 0.9)], 1)
        assert landmark_reprojection_residual(world, kp) == pytest.approx(0.0, abs=1e-9)
    kp = np.concatenate([400 * world[:, :2], np.full((33, 1), 0.9)], 1)
    size = np.sqrt(((kp[:, :2] - kp[:, :2].mean(0)) ** 2).sum(1).mean())
    sigma = 0.05 * size
    ratios = []
    for _ in range(50):
        noisy = kp.copy()
        noisy[:, :2] += g.normal(0, sigma, (33, 2))
        ratios.append(landmark_reprojection_residual(world, noisy) / (sigma * np.sqrt(2) / size))
    assert 0.9 < np.mean(ratios) < 1.02  # sqrt((66 - 3) / 66) = 0.977 expected
    wild = kp.copy()
    wild[:5, :2] += 1e4  # far off, but unsure: not counted
    wild[:5, 2] = 0.2
    assert landmark_reprojection_residual(world, wild) == pytest.approx(0.0, abs=1e-9)
    wild[5:-5, 2] = 0.2
    assert np.isnan(landmark_reprojection_residual(world, wild))


def test_lift_blend_leans_on_the_lifter_when_mediapipes_3d_does_not_fit_its_2d(free_body, monkeypatch):
    """``lift_blend_inconsistent`` (r0, r1): landmarks whose view is the keypoints keep the blend a;
    landmarks with the wrists and ankles swapped left for right (a residual far above r1) go to the
    lifter's alone; None turns the cue off."""
    from neuralfit.init.lift import lift_landmarks
    from neuralfit.photo.start import StartInputs, landmark_reprojection_residual, start_people

    lifter = _lifter(free_body)
    data = _exact_keypoints(free_body, 1)
    world = data["landmarks3d"][0].numpy().astype(np.float64)
    kp = np.concatenate([300 * world[:, :2] + 112, np.full((33, 1), 0.9)], 1).astype(np.float32)
    names = list(free_body.keypoint_sets["blazepose33"].names)
    swapped = world.copy()
    for part in ("wrist", "ankle"):
        li, ri = names.index(f"left_{part}"), names.index(f"right_{part}")
        swapped[[li, ri]] = swapped[[ri, li]]
    assert landmark_reprojection_residual(world, kp) < 1e-6
    assert landmark_reprojection_residual(swapped, kp) > 0.2
    seen = _record_ik_targets(monkeypatch)
    lm4 = [np.concatenate([w, np.full((33, 1), 0.9)], 1).astype(np.float32) for w in (world, swapped)]
    inputs = StartInputs(keypoints=[kp, kp], joint_sets=["blazepose33"] * 2, world_landmarks=lm4,
                         image_names=[None, None], focal=np.array([500.0, 500.0]),
                         principal_point=np.array([[112.0, 112.0]] * 2), boxes=np.array([[20, 20, 200, 200]] * 2))
    lifted, ok = lift_landmarks(lifter, free_body, kp[None], "blazepose33", 500.0)
    assert ok[0]
    start_people("mediapipe3d", inputs, free_body, lifter=lifter, lift_blend=0.3,
                 lift_blend_inconsistent=(0.08, 0.16))
    for row, a in ((0, 0.3), (1, 1.0)):
        w = torch.as_tensor(lm4[row][:, :3])
        torch.testing.assert_close(seen[-1][0][row], (1 - a) * w + a * lifted[0], atol=1e-5, rtol=0)
    start_people("mediapipe3d", inputs, free_body, lifter=lifter, lift_blend=0.3)
    torch.testing.assert_close(seen[-1][0][1], 0.7 * torch.as_tensor(lm4[1][:, :3]) + 0.3 * lifted[0],
                               atol=1e-5, rtol=0)


@pytest.mark.parametrize("value", [(0.2, 0.1), (-0.1, 0.2), (0.1, float("nan"))])
def test_a_bad_lift_blend_inconsistent_ramp_is_refused(value):
    from neuralfit.pipeline import FitImageConfig

    with pytest.raises(NeuralfitError, match="lift_blend_inconsistent"):
        FitImageConfig(lift_blend_inconsistent=value)


@pytest.mark.parametrize("value", [-0.5, float("nan")])
def test_negative_lift_blend_hidden_is_refused(value):
    from neuralfit.pipeline import FitImageConfig

    with pytest.raises(NeuralfitError, match="lift_blend_hidden"):
        FitImageConfig(lift_blend_hidden=value)


@pytest.mark.parametrize("value", [-0.1, 1.5, float("nan")])
def test_lift_blend_outside_zero_one_is_refused(value):
    from neuralfit.pipeline import FitImageConfig

    with pytest.raises(NeuralfitError, match="lift_blend"):
        FitImageConfig(lift_blend=value)


def test_fit_cli_refuses_a_bad_lift_blend_or_lifter_in_one_line_writing_nothing(tmp_path, capsys, monkeypatch):
    """``neuralfit fit --lift-blend 2`` / ``--lifter`` pointing at a missing or non-lifter file: one
    ``error:`` line, exit 1, no output folder (checked before any photo is read)."""
    from test_boxes import one_line, run_cli

    img = tmp_path / "p.png"
    img.write_bytes(b"not read")
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    out = tmp_path / "out"
    for extra, msg in ((["--lift-blend", "2"], "lift_blend must be in [0, 1]"),
                       (["--lift-blend-inconsistent", "0.3,0.1"], "lift_blend_inconsistent must be"),
                       (["--lift-blend-inconsistent", "high"], "expected R0,R1"),
                       (["--lifter", tmp_path / "none.pt"], "does not exist"),
                       (["--lifter", junk], "cannot read the lifter")):
        code, err = run_cli(["fit", img, "--out", out, *extra], capsys, monkeypatch)
        assert code == 1, (extra, err)
        assert msg in one_line(err, "error"), (extra, err)
        assert not out.exists()


def test_train_lifter_cli_writes_a_loadable_lifter_and_refuses_bad_settings(tmp_path):
    from neuralfit.cli.main import cli

    out = tmp_path / "l.pt"
    r = CliRunner().invoke(cli, ["train", "lifter", "--out", str(out), "--samples", "2000", "--steps", "20",
                                 "--hidden", "32", "--quiet"])
    assert r.exit_code == 0, r.output
    assert "held-out limb PA-MPJPE" in r.output
    assert load_lifter(out).config.hidden == 32
    assert (tmp_path / "l.json").is_file()
    r = CliRunner().invoke(cli, ["train", "lifter", "--out", str(tmp_path / "x.pt"), "--steps", "0"])
    assert r.exit_code != 0 and not (tmp_path / "x.pt").exists()
