"""The photo pipeline on synthetic inputs (no mediapipe, no real photos): the photo camera seen in crops,
placing a start in it, method selection, outputs, atomic folders, bad input and the CLI's exit status."""

from __future__ import annotations

import json
import math
import sys

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.pipeline import (
    FitImageConfig,
    ImageFitter,
    crop_from_box,
    fit_image,
    parse_bbox,
    project_points,
)

RES = 224
F_CROP = 5000.0 * RES / 224.0


def _few_iters(**kw):
    from neuralfit.fitting import FitConfig

    return FitConfig.occluded(stage1_iters=kw.pop("s1", 15), stage2_iters=kw.pop("s2", 15), **kw)


# --------------------------------------------------------------------------------------- camera
def test_crop_camera_sees_exactly_what_the_photo_camera_sees():
    """The photo camera seen in a SPIN crop (f = F k, c = (p - center) k + res / 2, k = res / (200 scale))
    projects points to the crop pixels that the crop's affine makes of their photo projection: the same
    pinhole, resampled, so the only error is float round-off."""
    from neuralfit.data.crop import apply_affine, crop_transform
    from neuralfit.render.camera import CropCamera, crop_camera_from_photo, project

    rng = np.random.default_rng(0)
    pts = rng.normal(scale=[0.3, 0.5, 0.15], size=(24, 3)) + np.array([0.4, -0.2, 4.0])
    F, pp = 1650.0, np.array([960.0, 540.0])
    center, scale = np.array([1300.0, 420.0]), 3.1
    f, c = crop_camera_from_photo(F, pp, center, scale, RES)
    uv_crop = project(torch.tensor(pts)[None], CropCamera(RES, f, torch.tensor(c)))[0].numpy()
    want = apply_affine(crop_transform(center, scale, RES), project_points(pts, F, pp))
    assert np.abs(uv_crop - want).max() < 1e-3


def test_per_sample_crop_cameras_project_each_sample_with_its_own():
    from neuralfit.render.camera import CropCamera, project

    pts = torch.tensor([[[0.1, 0.2, 2.0]], [[0.1, 0.2, 2.0]]])
    cam = CropCamera(RES, torch.tensor([500.0, 1000.0]), torch.tensor([[100.0, 110.0], [120.0, 90.0]]))
    uv = project(pts, cam)
    assert torch.allclose(uv[0, 0], torch.tensor([500 * 0.05 + 100, 500 * 0.1 + 110]))
    assert torch.allclose(uv[1, 0], torch.tensor([1000 * 0.05 + 120, 1000 * 0.1 + 90]))


def test_crop_from_box_is_spin_style():
    center, scale = crop_from_box(np.array([10.0, 20.0, 110.0, 420.0]))
    assert center.tolist() == [60.0, 220.0]
    assert scale == pytest.approx(1.2 * 400 / 200)


@pytest.mark.parametrize("text", ["1,2,3", "a,b,c,d", "10,10,5,20", "0,0,10,nan"])
def test_bad_bbox_is_one_line_error(text):
    with pytest.raises(NeuralfitError, match="expected x0,y0,x1,y1"):
        parse_bbox(text)


# --------------------------------------------------------------------------------------- start
def test_a_start_is_placed_at_its_depth_in_an_off_centre_crop_camera(free_body):
    """Exact keypoints of the start's own pose seen by an off-centre crop camera: the linear least squares
    of the placement has the true translation as an exact solution (residual zero), so it comes back to
    float precision."""
    from neuralfit.init.types import StartParams
    from neuralfit.photo.start import place

    start = StartParams(torch.tensor([[math.pi, 0.0, 0.0]]), torch.zeros(1, 69), torch.zeros(1, 10))
    truth = torch.tensor([[0.3, 0.1, 4.5]])
    f, pp = 700.0, np.array([60.0, 150.0])
    with torch.no_grad():
        out = free_body(global_orient=start.global_orient, transl=truth, full=False)
        k3 = free_body.keypoints(out, "coco17")[0].numpy()
    kp = np.concatenate([project_points(k3, f, pp), np.ones((17, 1))], 1).astype(np.float32)
    t = place(free_body, start, kp, "coco17", f, pp, np.array([0, 0, RES, RES]))
    assert torch.allclose(t, truth, atol=2e-3)


def test_a_start_without_keypoints_fills_the_box(free_body):
    from neuralfit.init.types import StartParams
    from neuralfit.photo.start import place

    start = StartParams(torch.tensor([[math.pi, 0.0, 0.0]]), torch.zeros(1, 69), torch.zeros(1, 10))
    t = place(free_body, start, None, None, 700.0, np.array([112.0, 112.0]), np.array([62.0, 12.0, 162.0, 212.0]))
    assert float(t[0, 2]) == pytest.approx(700.0 * 1.7 / 200.0, rel=0.05)


# --------------------------------------------------------------------------------------- fitting
@pytest.fixture(scope="module")
def synthetic_photo(free_body):
    """A 320x256 grey photo and COCO-17 keypoints of a known body seen with the photo's camera
    (focal matching the crop convention for the keypoint box)."""
    from neuralfit.fitting import rotate_about_vertical

    body = free_body
    go = rotate_about_vertical(torch.tensor([[math.pi, 0, 0]]), 0.4)[0].numpy()
    pose = np.zeros(69, dtype=np.float32)
    pose[3 * 15 + 2] = -0.9  # left shoulder down (arm at the side)
    pose[3 * 16 + 2] = 0.9
    pose[3 * 3 + 0] = 0.5  # left knee bent
    transl = np.array([0.05, 0.1, 30.0], dtype=np.float32)
    F, pp = 2500.0, np.array([128.0, 160.0])
    with torch.no_grad():
        out = body(global_orient=torch.tensor(go, dtype=torch.float32)[None],
                   body_pose=torch.tensor(pose)[None], transl=torch.tensor(transl)[None])
        k3 = body.keypoints(out, "coco17")[0].numpy()
    uv = project_points(k3, F, pp)
    kp = np.concatenate([uv, np.ones((17, 1))], 1).astype(np.float32)
    img = np.full((320, 256, 3), 120, np.uint8)
    return img, kp, go, pose


def test_keypoints_method_fits_user_keypoints_and_writes_outputs(free_body, synthetic_photo, tmp_path):
    from neuralfit.detect import PersonKeypoints

    img, kp, go, pose = synthetic_photo
    cfg = FitImageConfig(fit=_few_iters(s1=30, s2=40))
    r = fit_image(img, tmp_path / "out", body=free_body, keypoints=[[PersonKeypoints("coco17", kp)]],
                  method="keypoints", config=cfg)
    assert r.ok, r.message
    p = r.people[0]
    size = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
    err = np.linalg.norm(p.keypoints_fit - kp[:, :2], axis=1)
    # The keypoints come from this very body model, so a fit reaches a few pixels (the pose prior
    # and the fixed betas keep it from exact); 5 % of the box is a loose ceiling.
    assert np.median(err) < 0.05 * size
    # Front/back: the fitted body faces the camera like the truth (forward axis z < 0).
    from smplx.lbs import batch_rodrigues

    fwd = batch_rodrigues(torch.tensor(p.global_orient)[None])[0][:, 2]
    assert fwd[2] < 0
    folder = tmp_path / "out" / "image_0000"
    names = sorted(x.name for x in folder.iterdir())
    # no occlusion map: no outlier process
    assert names == ["fit.json", "mesh.glb", "mesh.obj", "overlay.png", "params.npz", "side.png"]
    d = np.load(folder / "params.npz")
    shapes = {k: d[k].shape for k in d.files}
    assert shapes["betas"] == (1, 10) and shapes["global_orient"] == (1, 3) and shapes["body_pose"] == (1, 69)
    assert shapes["transl"] == (1, 3) and shapes["joints3d"] == (1, 24, 3) and shapes["bbox"] == (1, 4)
    assert shapes["principal_point"] == (2,) and d["focal_length"] > 0
    # params.npz reproduces the mesh and the fitted keypoints in the photo camera.
    with torch.no_grad():
        out = free_body(**{k: torch.tensor(d[k]) for k in ("betas", "global_orient", "body_pose", "transl")})
        k3 = free_body.keypoints(out, "coco17")[0].numpy()
    assert np.allclose(project_points(k3, float(d["focal_length"]), d["principal_point"]), p.keypoints_fit, atol=0.05)
    assert np.allclose(out.joints[0].numpy(), d["joints3d"][0], atol=1e-4)
    info = json.loads((folder / "fit.json").read_text())
    assert info["method"] == "keypoints" and info["status"] == "ok"
    assert info["settings"]["fit"]["keypoints_only"] is True
    assert set(info["timings_s"]) >= {"detect", "fit", "render"}
    assert info["assets"]["body"]["name"]
    assert info["settings"]["image"]["lift_blend"] == FitImageConfig().lift_blend
    assert info["assets"]["lifter"] is None or info["assets"]["lifter"].endswith(".pt")
    assert info["camera"]["source"] and np.allclose(info["camera"]["K"], d["K"])
    assert not [x for x in (tmp_path / "out").iterdir() if x.name.startswith(".")]  # no temp folders left


def test_back_facing_keypoints_pick_the_second_hypothesis(free_body, tmp_path, monkeypatch):
    """Keypoints of a body seen from behind: the mean-pose start (no network, no 3D landmarks) faces the
    camera, so only the 180-degree second hypothesis can explain the swapped left/right sides."""
    import neuralfit.pipeline as pl
    from neuralfit.detect import PersonKeypoints

    monkeypatch.setattr(pl, "default_assets", lambda: (None, None))
    from neuralfit.fitting import rotate_about_vertical

    go = rotate_about_vertical(torch.tensor([[math.pi, 0, 0]]), math.pi)[0].numpy()
    F, pp = 2500.0, np.array([128.0, 160.0])
    with torch.no_grad():
        out = free_body(global_orient=torch.tensor(go, dtype=torch.float32)[None],
                        transl=torch.tensor([[0.0, 0.1, 30.0]]))
        k3 = free_body.keypoints(out, "coco17")[0].numpy()
    kp = np.concatenate([project_points(k3, F, pp), np.ones((17, 1))], 1).astype(np.float32)
    img = np.full((320, 256, 3), 120, np.uint8)
    r = fit_image(img, body=free_body, keypoints=[[PersonKeypoints("coco17", kp)]], method="keypoints",
                  config=FitImageConfig(fit=_few_iters(), write_overlay=False))
    assert r.people[0].hypothesis == 1 and r.people[0].start == "mean"
    from smplx.lbs import batch_rodrigues

    assert batch_rodrigues(torch.tensor(r.people[0].global_orient)[None])[0][2, 2] > 0  # faces away


# --------------------------------------------------------------------------------------- networks
@pytest.fixture(scope="module")
def tiny_assets(free_body, tmp_path_factory):
    """An untrained 64-px network checkpoint and a random neural mesh model for the free body."""
    from neuralfit.nets import MultiTaskNet, NetConfig, save_network
    from neuralfit.neural import NeuralMeshModel

    d = tmp_path_factory.mktemp("assets")
    torch.manual_seed(0)
    net = MultiTaskNet(NetConfig(input_res=64, feature_dim=16, pretrained=False)).eval()
    save_network(d / "net.pt", net, free_body)
    n_low = int(free_body.lowres.part_labels.shape[0])
    NeuralMeshModel.random(n_low, dim=16, body_name=free_body.name).save(d / "nm.pt")
    return d / "net.pt", d / "nm.pt"


def test_method_selection(free_body, tiny_assets, monkeypatch):
    import neuralfit.pipeline as pl

    monkeypatch.setattr(pl, "default_assets", lambda: (None, None))
    f = ImageFitter(free_body, prior=None)
    assert f.method == "keypoints" and f.net is None
    net, nm = tiny_assets
    assert ImageFitter(free_body, prior=None, network=net, neural_model=nm).method == "neural"
    monkeypatch.setattr(pl, "default_assets", lambda: (net, nm))  # as if shipped
    # Shipped assets: the network initialises a keypoints fit; the neural fit needs asking for.
    f = ImageFitter(free_body, prior=None)
    assert f.method == "keypoints" and f.net is not None and "auto" in f.method_reason
    assert ImageFitter(free_body, prior=None, neural_model=nm).method == "neural"
    f = ImageFitter(free_body, prior=None, config=FitImageConfig(method="neural"))
    assert f.method == "neural" and f.neural_model is not None
    monkeypatch.setattr(pl, "default_assets", lambda: (None, None))
    with pytest.raises(NeuralfitError, match="needs a network"):
        ImageFitter(free_body, prior=None, config=FitImageConfig(method="neural"))
    with pytest.raises(NeuralfitError, match="needs a neural mesh model"):
        ImageFitter(free_body, prior=None, network=net, config=FitImageConfig(method="neural"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on machines without a GPU")
def test_cuda_without_gpu_is_one_line_error(free_body):
    with pytest.raises(NeuralfitError, match="no CUDA GPU"):
        ImageFitter(free_body, prior=None, device="cuda")


@pytest.mark.parametrize("method", ["neural", "regressor"])
def test_network_methods_run_end_to_end(free_body, tiny_assets, synthetic_photo, tmp_path, method):
    """Plumbing with an untrained network: outputs exist with the right shapes; the neural method
    writes the occlusion map, whose values are posteriors in [0, 1]."""
    from neuralfit.detect import PersonKeypoints

    img, kp, _, _ = synthetic_photo
    net, nm = tiny_assets
    r = fit_image([img], tmp_path, body=free_body, prior=None, network=net, neural_model=nm, method=method,
                  keypoints=[[PersonKeypoints("coco17", kp)]], config=FitImageConfig(fit=_few_iters(s1=3, s2=3)))[0]
    assert r.ok and r.method == method
    names = {x.name for x in (tmp_path / "image_0000").iterdir()}
    assert {"params.npz", "mesh.obj", "overlay.png", "fit.json"} <= names
    assert ("occlusion.png" in names) == (method == "neural")
    if method == "neural":
        import cv2

        assert r.occlusion.shape == img.shape[:2]
        assert 0.0 <= r.occlusion.min() and r.occlusion.max() <= 1.0
        assert r.occlusion.sum() > 0
        # The map lives on the rendered body: warped back to the photo it must lie on the overlay's body
        # silhouette, up to one feature-map pixel (crop side / 16 here) of resampling and mesh decimation.
        p = r.people[0]
        cell = int(np.ceil(200 * p.scale / 16)) + 1
        near_body = cv2.dilate(r.body_mask.astype(np.uint8), np.ones((2 * cell + 1, 2 * cell + 1), np.uint8)) > 0
        assert r.occlusion[~near_body].sum() <= 0.02 * r.occlusion.sum()
    info = json.loads((tmp_path / "image_0000" / "fit.json").read_text())
    assert info["assets"]["network"]["path"] == str(net)


def test_crop_mask_resamples_the_person_mask_onto_the_feature_grid():
    """The detector's (H, W) person probability, cropped like the image and area-averaged to the
    feature map; pixels outside the photo are unknown (0.5), not background."""
    from neuralfit.data.crop import crop_transform
    from neuralfit.photo.people import crop_mask

    mask = np.zeros((200, 100), np.float32)
    mask[50:150, 25:75] = 1.0
    # A crop of side 400 px centred on the photo: the photo fills the middle quarter-width.
    m = crop_mask(mask, crop_transform(np.array([50.0, 100.0]), 400 / 200.0, 64), 64, 16)
    assert m.shape == (16, 16) and m.dtype == np.float32
    assert np.allclose(m[:, 0], 0.5) and np.allclose(m[0, :], 0.5)  # outside the photo
    assert np.allclose(m[8, 8], 1.0)  # the person
    assert np.allclose(m[4, 8], 0.0)  # inside the photo, not the person


def test_neural_method_gives_the_fitter_the_detector_mask(free_body, tiny_assets, synthetic_photo, tmp_path,
                                                         monkeypatch):
    """With mediapipe's mask, the neural fit's batch carries it on the feature grid (FitConfig.person_mask)."""
    import neuralfit.pipeline as pl
    from neuralfit.detect import Detection
    from neuralfit.fitting import Fitter

    img, kp, _, _ = synthetic_photo
    net, nm = tiny_assets
    mask = np.zeros(img.shape[:2], np.float32)
    mask[40:280, 60:200] = 1.0
    sets = free_body.keypoint_sets
    from neuralfit.body.keypoints import keypoint_correspondence

    idx = keypoint_correspondence(sets["coco17"], sets["blazepose33"])
    bp = np.zeros((33, 3), np.float32)
    bp[idx >= 0] = kp[idx[idx >= 0]]

    class FakeDetector:  # one person, seen only in the whole photo (find_everyone also searches crops)
        def __call__(self, image):
            if image.shape != img.shape:
                return None
            return Detection(keypoints=bp.copy(), bbox=np.array([60, 40, 200, 280], np.float32), mask=mask, score=1.0)

        def close(self):
            pass

    monkeypatch.setattr(pl.ImageFitter, "_get_detector", lambda self: FakeDetector())
    seen = []
    real_fit = Fitter.fit
    monkeypatch.setattr(Fitter, "fit", lambda self, batch: seen.append(batch.mask) or real_fit(self, batch))
    r = fit_image([img], tmp_path, body=free_body, prior=None, network=net, neural_model=nm, method="neural",
                  config=FitImageConfig(fit=_few_iters(s1=2, s2=2)))[0]
    assert r.ok and len(seen) == 1 and seen[0] is not None
    size = 64 // 4  # the tiny network's feature map
    assert tuple(seen[0].shape) == (1, size, size)
    assert float(seen[0].max()) > 0.9 and float(seen[0].min()) < 0.1


def test_keypoint_regressor_starts_from_the_detected_keypoints(free_body, synthetic_photo, tmp_path):
    """With a keypoint regressor, the init (= the regressor method's answer) comes from the user's COCO
    keypoints transferred to spin24, not from the network's own heatmaps."""
    from neuralfit.body.keypoints import transfer_keypoints
    from neuralfit.data.crop import apply_affine, crop_transform
    from neuralfit.detect import PersonKeypoints
    from neuralfit.nets import MultiTaskNet, NetConfig, regress, save_network
    from neuralfit.photo.people import box_from_keypoints, crop_from_box

    torch.manual_seed(1)
    net = MultiTaskNet(NetConfig(input_res=64, feature_dim=16, pretrained=False, regressor_input="keypoints",
                                 regressor_hidden=64)).eval()
    save_network(tmp_path / "kpnet.pt", net, free_body)
    img, kp, _, _ = synthetic_photo
    r = fit_image([img], tmp_path / "out", body=free_body, prior=None, network=tmp_path / "kpnet.pt",
                  method="regressor", keypoints=[[PersonKeypoints("coco17", kp)]])[0]
    assert r.ok
    box = box_from_keypoints(kp, img.shape[:2], 0.3)
    center, scale = crop_from_box(box)
    k = kp.copy()
    k[:, :2] = apply_affine(crop_transform(center, scale, 64), k[:, :2])
    sets = free_body.keypoint_sets
    want = regress(net, transfer_keypoints(k, sets["coco17"], sets["spin24"])[None])
    assert np.allclose(r.people[0].body_pose, want["body_pose"][0].numpy(), atol=1e-4)
    assert np.allclose(r.people[0].betas, want["betas"][0].numpy(), atol=1e-4)


# --------------------------------------------------------------------------------------- bad input
def test_unreadable_images_fail_one_by_one(free_body, tmp_path, synthetic_photo):
    from neuralfit.detect import PersonKeypoints

    img, kp, _, _ = synthetic_photo
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image\n")
    paths = [tmp_path / "empty.jpg", tmp_path / "text.png", tmp_path / "missing.jpg"]
    rs = fit_image(paths + [img], tmp_path / "out", body=free_body, method="keypoints",
                   keypoints=[None, None, None, [PersonKeypoints("coco17", kp)]],
                   config=FitImageConfig(fit=_few_iters(s1=2, s2=2), write_overlay=False))
    assert [r.status for r in rs] == ["failed", "failed", "failed", "ok"]
    for r in rs[:3]:
        assert "\n" not in r.message and str(r.source) in r.message
    assert sorted(x.name for x in (tmp_path / "out").iterdir()) == ["image_0003"]


def test_failed_write_leaves_no_folder_and_keeps_the_old_one(free_body, tmp_path, synthetic_photo, monkeypatch):
    from neuralfit.detect import PersonKeypoints
    from neuralfit.io import mesh

    img, kp, _, _ = synthetic_photo
    args = dict(body=free_body, method="keypoints", keypoints=[[PersonKeypoints("coco17", kp)]],
                config=FitImageConfig(fit=_few_iters(s1=2, s2=2), write_overlay=False))
    fit_image([img], tmp_path, **args)
    before = sorted(x.name for x in (tmp_path / "image_0000").iterdir())

    def boom(*a, **k):
        raise NeuralfitError("disk full (simulated)")

    monkeypatch.setattr(mesh, "save_mesh", boom)
    r = fit_image([img], tmp_path, **args)[0]
    assert r.status == "failed" and "simulated" in r.message
    assert sorted(x.name for x in (tmp_path / "image_0000").iterdir()) == before  # old result intact
    assert [x.name for x in tmp_path.iterdir()] == ["image_0000"]  # no temp folder left


def _run_cli(monkeypatch, capsys, *args):
    from neuralfit.cli.main import main

    monkeypatch.setattr(sys, "argv", ["neuralfit", "fit", *map(str, args)])
    try:
        main()
        code = 0  # success returns normally
    except SystemExit as exc:
        code = exc.code
    return code, capsys.readouterr().err


def test_cli_exit_status_and_one_line_messages(tmp_path, monkeypatch, capsys):
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("hello")
    code, err = _run_cli(monkeypatch, capsys, tmp_path / "empty.jpg", tmp_path / "text.png", "--out",
                         tmp_path / "out", "-q")
    assert code == 3
    warn = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warn) == 2 and "empty file" in warn[0] and "cannot be decoded" in warn[1]
    assert list((tmp_path / "out").iterdir()) == []

    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = _run_cli(monkeypatch, capsys, tmp_path / "text.png", "--out", blocker / "sub")
    assert code == 1 and err.strip().startswith("error: --out") and "is not a folder" in err
    assert len(err.strip().splitlines()) == 1

    code, err = _run_cli(monkeypatch, capsys, tmp_path / "text.png", "--out", tmp_path / "o2", "--bbox", "1,2")
    assert code == 1 and "--bbox" in err and not (tmp_path / "o2").exists()


def test_cli_fits_a_photo_with_a_coco_keypoint_file(tmp_path, monkeypatch, capsys, synthetic_photo):
    import cv2

    img, kp, _, _ = synthetic_photo
    cv2.imwrite(str(tmp_path / "person.png"), img[:, :, ::-1])
    coco = {"images": [{"id": 7, "file_name": "person.png"}],
            "annotations": [{"image_id": 7, "keypoints": np.concatenate([kp[:, :2], 2 * np.ones((17, 1))], 1)
                             .reshape(-1).tolist()}]}
    (tmp_path / "kp.json").write_text(json.dumps(coco))
    code, err = _run_cli(monkeypatch, capsys, tmp_path / "person.png", "--out", tmp_path / "out", "--keypoints",
                         tmp_path / "kp.json", "--prior", "none", "--no-overlay")
    assert code == 0, err
    assert "method: keypoints" in err
    d = np.load(tmp_path / "out" / "person" / "params.npz")
    assert d["body_pose"].shape == (1, 69)
    info = json.loads((tmp_path / "out" / "person" / "fit.json").read_text())
    assert info["people"][0]["joint_set"] == "coco17"
    assert info["people"][0]["keypoint_error_px"]["within_10pct_box"] >= 0.8


def test_two_people_share_one_camera(free_body, tmp_path):
    """Two people at different depths in one photo (OpenPose BODY-25 file): one mesh each, and both
    reproject onto their keypoints with the photo's single camera (each crop sees that camera)."""

    F, pp = 3000.0, np.array([200.0, 150.0])
    people = []
    for tx, tz in ((-0.6, 12.0), (0.7, 20.0)):
        with torch.no_grad():
            out = free_body(global_orient=torch.tensor([[math.pi, 0, 0]]), transl=torch.tensor([[tx, 0.0, tz]]))
            k3 = free_body.keypoints(out, "body25")[0].numpy()
        valid = free_body.keypoint_sets["body25"].valid.numpy()
        kp = np.concatenate([project_points(k3, F, pp), valid[:, None].astype(np.float64)], 1)
        people.append({"pose_keypoints_2d": kp.reshape(-1).tolist()})
    (tmp_path / "op.json").write_text(json.dumps({"people": people}))
    img = np.full((300, 400, 3), 100, np.uint8)
    r = fit_image(img, tmp_path / "out", body=free_body, keypoints=tmp_path / "op.json", method="keypoints",
                  config=FitImageConfig(fit=_few_iters(s1=30, s2=30), write_overlay=False))
    assert r.ok and len(r.people) == 2
    names = sorted(x.name for x in (tmp_path / "out" / "image_0000").iterdir())
    assert names == ["fit.json", "mesh.glb", "mesh_0.obj", "mesh_1.obj", "params.npz"]
    d = np.load(tmp_path / "out" / "image_0000" / "params.npz")
    assert d["transl"].shape == (2, 3) and d["bbox"].shape == (2, 4)
    for i, p in enumerate(r.people):
        ok = np.isfinite(p.keypoints_fit).all(1) & (p.keypoints[:, 2] > 0)
        with torch.no_grad():
            out = free_body(**{k: torch.tensor(d[k][i : i + 1]) for k in ("betas", "global_orient", "body_pose",
                                                                            "transl")})
            k3 = free_body.keypoints(out, "body25")[0].numpy()
        uv = project_points(k3, float(d["focal_length"]), d["principal_point"])
        size = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
        assert np.median(np.linalg.norm(uv[ok] - p.keypoints[ok, :2], axis=1)) < 0.05 * size


# --------------------------------------------------------------------------------------- photo camera
def test_a_known_camera_gives_back_the_depth(free_body, synthetic_photo, monkeypatch):
    """The synthetic photo's body stands 30 m from a 2500-px camera. Fitted with that focal from the
    mean-pose start (no network: betas stay at the true zeros), its depth comes back within 3 %: the
    keypoints are the body's own, so only the pose prior's pull and the fit's residual pose error
    separate it from the truth, and depth error is relative size error. With a 10x shorter focal the
    same pixels mean a body ~10x closer: the fit really runs in the photo's camera."""
    import neuralfit.pipeline as pl
    from neuralfit.detect import PersonKeypoints

    monkeypatch.setattr(pl, "default_assets", lambda: (None, None))
    img, kp, _, _ = synthetic_photo
    args = dict(body=free_body, keypoints=[[PersonKeypoints("coco17", kp)]], method="keypoints",
                config=FitImageConfig(fit=_few_iters(s1=30, s2=30), write_overlay=False))
    r = fit_image(img, focal=2500.0, **args)
    assert r.camera_source == "--focal" and r.focal_length == 2500.0
    assert float(r.people[0].transl[2]) == pytest.approx(30.0, rel=0.03)
    near = fit_image(img, focal=250.0, **args)
    assert float(near.people[0].transl[2]) == pytest.approx(3.0, rel=0.1)


@pytest.mark.parametrize(("flags", "needle"), [
    (["--focal", "0"], "--focal"), (["--focal", "-3"], "--focal"), (["--focal", "nan"], "--focal"),
    (["--fov", "500"], "--fov"), (["--fov", "0"], "--fov"), (["--focal", "900", "--fov", "50"], "not both"),
    (["--init", "sideways"], "--init"), (["--set", "stage2_iters=lots"], "--set"),
])
def test_cli_camera_and_start_options_are_one_line_errors(tmp_path, monkeypatch, capsys, flags, needle):
    (tmp_path / "a.png").write_text("x")
    code, err = _run_cli(monkeypatch, capsys, tmp_path / "a.png", "--out", tmp_path / "o", *flags)
    assert code == 1 and needle in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "o").exists()


def test_cli_init_file_with_wrong_keys_is_a_one_line_error(tmp_path, monkeypatch, capsys):
    np.savez(tmp_path / "init.npz", poses=np.zeros((2, 72)))
    (tmp_path / "a.png").write_text("x")
    code, err = _run_cli(monkeypatch, capsys, tmp_path / "a.png", "--out", tmp_path / "o", "--init",
                         tmp_path / "init.npz")
    assert code == 1 and "init.npz" in err and len(err.strip().splitlines()) == 1, err


def _exact_detector(body, synthetic_photo, swap: bool = False):
    """A stand-in for mediapipe that returns exact BlazePose-33 keypoints and metric (hip-centred) world
    landmarks of the synthetic photo's body; ``swap``: read the other way round, as mediapipe does when it
    takes a back view for a front view (labels exchanged, depths mirrored). Returns (detector, body
    output of the truth, focal, principal point)."""
    from neuralfit.detect import Detection
    from neuralfit.detect.mediapipe_pose import flip_blazepose

    img, _, go, pose = synthetic_photo
    F, pp = 2500.0, np.array([128.0, 160.0])
    with torch.no_grad():
        out = body(global_orient=torch.tensor(go, dtype=torch.float32)[None],
                   body_pose=torch.tensor(pose)[None], transl=torch.tensor([[0.05, 0.1, 30.0]]))
        k3 = body.keypoints(out, "blazepose33")[0].numpy()
    valid = body.keypoint_sets["blazepose33"].valid.numpy()
    names = list(body.keypoint_sets["blazepose33"].names)
    hips = k3[[names.index("left_hip"), names.index("right_hip")]].mean(0)
    world = np.concatenate([k3 - hips, valid[:, None].astype(np.float64)], 1).astype(np.float32)
    kp2 = np.concatenate([project_points(k3, F, pp), valid[:, None]], 1).astype(np.float32)
    if swap:
        kp2, world = flip_blazepose(kp2).copy(), flip_blazepose(world).copy()
        world[:, 2] *= -1.0

    class FakeDetector:  # one person, seen only in the whole photo (find_everyone also searches crops)
        def __call__(self, image):
            if image.shape != img.shape:
                return None
            return Detection(keypoints=kp2.copy(), bbox=np.array([60, 40, 200, 280], np.float32), mask=None,
                             score=1.0, world_landmarks=world)

        def close(self):
            pass

    return FakeDetector(), out, F, pp


def test_mediapipe3d_start_wires_the_world_landmarks_into_the_fit(free_body, synthetic_photo, monkeypatch):
    """A detector that returns exact BlazePose-33 keypoints and metric world landmarks (hip-centred) of a
    known body: the photo path starts from the IK fit to the landmarks (start "mediapipe3d", no second
    hypothesis needed) and ends near the true body in 3D. Exact landmarks of the same body model leave
    only the IK's priors and the fit's pose prior between fit and truth: root-aligned joint error under
    4 cm (a quarter of a typical limb-joint error on real photos)."""
    import neuralfit.pipeline as pl

    img = synthetic_photo[0]
    detector, out, F, _ = _exact_detector(free_body, synthetic_photo)
    truth = out.joints[0].numpy()
    monkeypatch.setattr(pl.ImageFitter, "_get_detector", lambda self: detector)
    r = fit_image(img, body=free_body, method="keypoints", focal=F,
                  config=FitImageConfig(fit=_few_iters(s1=20, s2=30), write_overlay=False, lift_blend=0.0))
    p = r.people[0]
    assert p.start == "mediapipe3d" and p.hypothesis == 0
    err = np.linalg.norm((p.joints3d - p.joints3d[0]) - (truth - truth[0]), axis=1)
    assert err.mean() < 0.04, err.mean()


def test_facing_check_turns_round_a_body_mediapipe_read_the_wrong_way(free_body, synthetic_photo, monkeypatch):
    """mediapipe's answer read the other way round (labels swapped, depths mirrored) and a part head that
    sees the true body's parts: without the check the fit faces away from the truth; with it the part
    head's evidence is negative, the person is refitted from swapped observations and ends facing within
    45 deg of the truth, with positive evidence."""
    import neuralfit.pipeline as pl
    from neuralfit.photo import steps
    from neuralfit.photo.facing import rendered_parts

    img = synthetic_photo[0]
    detector, out, F, _ = _exact_detector(free_body, synthetic_photo, swap=True)
    monkeypatch.setattr(pl.ImageFitter, "_get_detector", lambda self: detector)
    faces = free_body.faces.numpy()
    face_class = free_body.part_labels.numpy()[faces[:, 0]] + 1

    def true_parts(net, crops, people, method, init, parts_cue=False):
        probs = []
        for c in crops:  # the truth rendered on each crop's 56 x 56 part grid, softened
            k = 56 / c.crop.res
            q = rendered_parts(out.vertices[0].numpy(), faces, face_class, c.focal * k,
                               np.asarray(c.principal_point) * k, np.eye(2, 3), 56)
            p = np.full((25, 56, 56), 0.02, np.float32)
            np.put_along_axis(p, q[None], 0.98, 0)
            probs.append(p / p.sum(0))
        return {"part_probs": torch.tensor(np.stack(probs))}

    monkeypatch.setattr(steps, "network_outputs", true_parts)

    def facing(joints):  # forward direction from the hips and shoulders, horizontal (OpenCV y down)
        across = joints[16] + joints[1] - joints[17] - joints[2]
        f = np.cross(across, joints[16] + joints[17] - joints[1] - joints[2])
        f[1] = 0.0
        return f / np.linalg.norm(f)

    truth = facing(out.joints[0].numpy())
    runs = {}
    for check in (None, 0.3):
        cfg = FitImageConfig(fit=_few_iters(s1=20, s2=30), write_overlay=False, lift_blend=0.0, facing_check=check)
        p = fit_image(img, body=free_body, method="keypoints", focal=F, config=cfg).people[0]
        runs[check] = (np.degrees(np.arccos(np.clip(facing(p.joints3d) @ truth, -1, 1))), p)
    angle, p = runs[None]
    assert angle > 135 and p.facing_evidence is None, angle
    angle, p = runs[0.3]
    assert p.facing_swapped and p.facing_evidence > 0.3 and angle < 45, (angle, p.facing_evidence)


def test_torso_outside_the_box_is_a_warning(free_body, synthetic_photo, tmp_path):
    """Issue 16 d4: a --bbox that does not hold the person the keypoints are on gives a fit whose torso lies
    off the box: kept, but flagged with a warning in the result and fit.json; the matching box is not."""
    from neuralfit.detect import PersonKeypoints

    img, kp, _, _ = synthetic_photo
    cfg = FitImageConfig(fit=_few_iters(s1=30, s2=10))
    # Near a corner of the photo, away from the keypoints (not on the edges: that would add the cut-by-frame warning).
    far = np.array([2, 2, 40, 40], np.float32)
    r = fit_image([img], tmp_path / "far", body=free_body, prior=None, method="keypoints", bbox=far,
                  keypoints=[[PersonKeypoints("coco17", kp)]], config=cfg)[0]
    assert r.ok and len(r.warnings) == 1 and "outside its box 2,2,40,40" in r.warnings[0]
    assert json.loads((tmp_path / "far" / "image_0000" / "fit.json").read_text())["warnings"] == r.warnings
    ok = fit_image([img], tmp_path / "ok", body=free_body, prior=None, method="keypoints",
                   keypoints=[[PersonKeypoints("coco17", kp)]], config=cfg)[0]
    assert ok.ok and ok.warnings == []


def test_the_fit_warns_and_records_the_edges_that_cut_a_person(free_body, synthetic_photo, tmp_path):
    """A user box on the photo's bottom edge (``photo.people.cut_by_frame``): fit.json lists the edge and
    the result carries one warning line."""
    from neuralfit.detect import PersonKeypoints

    img, kp, _, _ = synthetic_photo
    h = img.shape[0]
    box = np.array([kp[:, 0].min() - 5, kp[:, 1].min() - 5, kp[:, 0].max() + 5, h], np.float32)
    r = fit_image([img], tmp_path / "cut", body=free_body, prior=None, method="keypoints", bbox=box,
                  keypoints=[[PersonKeypoints("coco17", kp)]], config=FitImageConfig(fit=_few_iters(s1=5, s2=5)))[0]
    assert r.ok and r.people[0].cut_by_frame == ("bottom",)
    assert r.warnings == ["person 0: cut by the photo's bottom edge; the body beyond the frame is guessed"]
    entry = json.loads((tmp_path / "cut" / "image_0000" / "fit.json").read_text())["people"][0]
    assert entry["cut_by_frame"] == ["bottom"]
