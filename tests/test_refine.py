"""``neuralfit refine``: npz validation, keypoints method end to end, resume, shards, errors."""

import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from fitting_scenes import mocap_poses

from neuralfit.errors import NeuralfitError
from neuralfit.fitting import FitBody, FitConfig
from neuralfit.refine import (
    RefineOptions,
    crop_keypoints,
    load_init,
    merge_shards,
    parse_shard,
    refine_npz,
)
from neuralfit.render import CropCamera, project

N = 5
FAST = FitConfig(stage1_iters=4, stage2_iters=6)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory, free_body):
    """An init npz in SPIN layout (image-pixel spin24 keypoints) for N crops, and dummy image files."""
    root = tmp_path_factory.mktemp("refine")
    fb = FitBody(free_body)
    go = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(N, 1)
    pose = mocap_poses(N, seed=5)
    tr = torch.tensor([[0.0, 0.2, 45.0]]).repeat(N, 1)
    with torch.no_grad():
        kp3d, valid = fb.keypoints(fb(torch.zeros(N, 10), go, pose, tr), "spin24")
    uv = project(kp3d, CropCamera(224)).numpy()
    center = np.tile([320.0, 240.0], (N, 1)) + np.arange(N)[:, None]
    scale = np.linspace(1.2, 1.6, N)
    img_uv = (uv - 112.0) * (200.0 * scale[:, None, None] / 224.0) + center[:, None, :]
    part = np.concatenate([img_uv, np.broadcast_to(valid.numpy()[None, :, None], (N, 24, 1))], -1)
    g = torch.Generator().manual_seed(0)
    init_pose = torch.cat([go, pose + 0.1 * torch.randn(N, 69, generator=g)], 1).numpy()
    names = np.array([f"img_{i}.jpg" for i in range(N)])
    (root / "images").mkdir()
    for name in names:
        (root / "images" / name).write_bytes(b"\xff\xd8")
    data = dict(imgname=names, center=center, scale=scale, pose=init_pose, shape=np.zeros((N, 10)), part=part,
                has_smpl=np.ones(N), S=np.zeros((N, 24, 4)))
    np.savez(root / "init.npz", **data)
    return root, data, pose


def _opts(**kw):
    return RefineOptions(**{"batch_size": 2, "fit": FAST, **kw})


def test_crop_keypoints_inverts_spin_crop():
    kp = np.array([[[100.0, 50.0, 1.0], [np.nan, 0.0, 1.0]]])
    out = crop_keypoints(kp, np.array([[100.0, 50.0]]), np.array([1.0]), 224)
    assert np.allclose(out[0, 0], [112.0, 112.0, 1.0])
    assert out[0, 1, 2] == 0.0  # NaN coordinates become undetected


def test_refine_keypoints_end_to_end(dataset, tmp_path):
    root, data, gt_pose = dataset
    out = tmp_path / "out.npz"
    s = refine_npz(root / "init.npz", root / "images", out, _opts(), progress=False)
    assert s.complete and s.rows == N and not (tmp_path / "out.npz.partial").exists()
    res = dict(np.load(out))
    for key in data:
        assert key in res and res[key].shape == data[key].shape
    assert np.array_equal(res["imgname"], data["imgname"])
    assert np.allclose(res["pose_init"], data["pose"])
    assert res["fit_loss"].shape == (N,) and np.isfinite(res["fit_loss"]).all()
    assert res["occlusion_fraction"].shape == (N,) and (res["occlusion_fraction"] == 0).all()
    assert res["cam"].shape == (N, 3) and res["transl"].shape == (N, 3)
    # The keypoint-derived camera puts the body ~45 m away (s = 2 f / (res tz) ~ 0.99).
    assert np.allclose(res["cam"][:, 0], 2 * 5000 / (224 * 45.0), rtol=0.1)
    assert not np.allclose(res["pose"], data["pose"])


def test_resume_after_interruption_gives_identical_output(dataset, tmp_path):
    root, _, _ = dataset
    full = tmp_path / "full.npz"
    refine_npz(root / "init.npz", root / "images", full, _opts(), progress=False)
    part = tmp_path / "part.npz"
    s1 = refine_npz(root / "init.npz", root / "images", part, _opts(), progress=False, max_batches=1)
    assert not s1.complete and not part.exists()
    assert sorted(p.name for p in (tmp_path / "part.npz.partial").iterdir()) == ["batch_000000.npz", "meta.json"]
    with pytest.raises(NeuralfitError, match="--resume"):
        refine_npz(root / "init.npz", root / "images", part, _opts(), progress=False)
    with pytest.raises(NeuralfitError, match="different input or settings"):
        refine_npz(root / "init.npz", root / "images", part, _opts(batch_size=3), resume=True, progress=False)
    s2 = refine_npz(root / "init.npz", root / "images", part, _opts(), resume=True, progress=False)
    assert s2.complete and s2.batches_done == s2.batches_total == 3
    a, b = dict(np.load(full)), dict(np.load(part))
    assert a.keys() == b.keys()
    for key in a:
        assert np.array_equal(a[key], b[key]), key


def test_shards_merge_to_the_full_run(dataset, tmp_path):
    root, _, _ = dataset
    full = tmp_path / "full.npz"
    refine_npz(root / "init.npz", root / "images", full, _opts(batch_size=1), progress=False)
    paths = []
    for i in range(2):
        p = tmp_path / f"s{i}.npz"
        refine_npz(root / "init.npz", root / "images", p, _opts(batch_size=1), shard=(i, 2), progress=False)
        assert np.array_equal(np.load(p)["row_index"], np.arange(i, N, 2))
        paths.append(p)
    merged = merge_shards(paths, tmp_path / "merged.npz")
    a, b = dict(np.load(full)), dict(np.load(merged))
    for key in a:
        # Batch size 1 everywhere, so shard fits are the same computations as the full run's.
        assert np.array_equal(a[key], b[key]), key
    with pytest.raises(NeuralfitError, match="exactly once"):
        merge_shards(paths[:1], tmp_path / "bad.npz")


def test_bad_inputs_write_nothing(dataset, tmp_path):
    root, data, _ = dataset
    out = tmp_path / "out.npz"
    missing = dict(data, imgname=np.array(["img_0.jpg", "img_1.jpg", "nope.jpg", "img_3.jpg", "img_4.jpg"]))
    np.savez(tmp_path / "missing.npz", **missing)
    with pytest.raises(NeuralfitError, match="image not found: .*nope.jpg"):
        refine_npz(tmp_path / "missing.npz", root / "images", out, _opts(), progress=False)
    bad = dict(data, pose=data["pose"][:, :69])
    np.savez(tmp_path / "bad.npz", **bad)
    with pytest.raises(NeuralfitError, match=r"'pose' has shape \(5, 69\), expected \(5, 72\)"):
        load_init(tmp_path / "bad.npz")
    nan = dict(data, pose=data["pose"].copy())
    nan["pose"][2, 5] = np.nan
    np.savez(tmp_path / "nan.npz", **nan)
    with pytest.raises(NeuralfitError, match="'pose' contains NaN"):
        refine_npz(tmp_path / "nan.npz", root / "images", out, _opts(), progress=False)
    nokp = {k: v for k, v in data.items() if k != "part"}
    np.savez(tmp_path / "nokp.npz", **nokp)
    with pytest.raises(NeuralfitError, match="no keypoints"):
        refine_npz(tmp_path / "nokp.npz", root / "images", out, _opts(), progress=False)
    with pytest.raises(NeuralfitError, match="network file not found"):
        refine_npz(root / "init.npz", root / "images", out, _opts(method="neural", network=str(tmp_path / "no.pt")),
                   progress=False)
    with pytest.raises(NeuralfitError):
        parse_shard("2/2")
    assert not out.exists() and not (tmp_path / "out.npz.partial").exists()


def test_cli_one_line_error_and_help(dataset, tmp_path):
    root, data, _ = dataset
    missing = dict(data, imgname=np.array(["img_0.jpg", "x.jpg", "y.jpg", "img_3.jpg", "img_4.jpg"]))
    np.savez(tmp_path / "missing.npz", **missing)
    out = tmp_path / "o.npz"
    proc = subprocess.run([sys.executable, "-m", "neuralfit.cli.main", "refine", str(tmp_path / "missing.npz"),
                           "--images", str(root / "images"), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [f"error: image not found: {root / 'images' / 'x.jpg'} "
                                                "(listed in imgname)"]
    assert not out.exists()
    from neuralfit.cli.refine import refine

    result = CliRunner().invoke(refine, ["--help"])
    assert result.exit_code == 0 and "--resume" in result.output and "--shard" in result.output


def test_refine_neural_method_with_a_network(dataset, tmp_path, free_body):
    """Plumbing of --method neural: SPIN crops of real image files -> network -> fitter (untrained weights,
    so only shapes, keys and finiteness are checked)."""
    import cv2

    from neuralfit.nets import MultiTaskNet, NetConfig
    from neuralfit.nets.checkpoint import save_network
    from neuralfit.neural import NeuralMeshModel

    root, data, _ = dataset
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    for name in data["imgname"]:
        cv2.imwrite(str(images / name), rng.integers(0, 255, (480, 640, 3), dtype=np.uint8))
    torch.manual_seed(0)
    net = MultiTaskNet(NetConfig(input_res=64, feature_dim=16, pretrained=False)).eval()
    save_network(tmp_path / "net.pt", net, free_body)
    NeuralMeshModel.random(free_body.lowres.num_vertices, K=3, dim=16, body_name=free_body.name).save(tmp_path / "nm.pt")
    out = tmp_path / "neural.npz"
    s = refine_npz(root / "init.npz", images, out,
                   _opts(method="neural", network=str(tmp_path / "net.pt"), neural_model=str(tmp_path / "nm.pt"),
                         fit=FitConfig(stage1_iters=2, stage2_iters=2)), progress=False)
    assert s.complete
    res = dict(np.load(out))
    assert np.isfinite(res["pose"]).all() and np.isfinite(res["fit_loss"]).all()
    assert ((res["occlusion_fraction"] >= 0) & (res["occlusion_fraction"] <= 1)).all()
    with pytest.raises(NeuralfitError, match="neural model file not found"):
        refine_npz(root / "init.npz", images, tmp_path / "x.npz", _opts(method="neural", network=str(tmp_path / "net.pt"),
                                                                        neural_model=str(tmp_path / "no.pt")),
                   progress=False)


def test_refine_init_lifter_starts_from_the_lifter_on_the_rows_keypoints(dataset, tmp_path, free_body):
    """``init="lifter"``: each row's fit starts from the shipped keypoint lifter on that row's keypoints
    (``pose_init`` records it), not from the file's pose; the same numbers as calling the lifter directly."""
    from neuralfit.priors import load_pose_prior

    from neuralfit.assets import default_lifter
    from neuralfit.init.lift import lift_start
    from neuralfit.nets.lifter import load_lifter

    if default_lifter() is None:
        pytest.skip("no shipped lifter")
    root, data, _ = dataset
    out = tmp_path / "lifted.npz"
    s = refine_npz(root / "init.npz", root / "images", out, _opts(init="lifter"), progress=False)
    assert s.complete
    res = dict(np.load(out))
    kp = crop_keypoints(data["part"], data["center"], data["scale"], 224)
    sp, ok = lift_start(load_lifter(default_lifter()), free_body, kp, "spin24", prior=load_pose_prior("default"))
    assert ok.all()
    want = torch.cat([sp.global_orient, sp.body_pose], -1).numpy()
    # refine lifts in batches of 2; the IK's prior polish (L-BFGS) is batched, so rows differ by ~1e-3 rad
    np.testing.assert_allclose(res["pose_init"], want, atol=3e-3)
    assert not np.allclose(res["pose_init"], data["pose"], atol=1e-2)
    assert np.isfinite(res["pose"]).all() and not np.allclose(res["pose"], res["pose_init"])


def test_refine_init_errors(dataset, tmp_path):
    root, data, _ = dataset
    with pytest.raises(NeuralfitError, match="does not apply to refine"):
        RefineOptions(init="mediapipe3d")
    with pytest.raises(NeuralfitError, match="refine init must be one of file, lifter"):
        RefineOptions(init="regressor")
    nokp = {k: v for k, v in data.items() if k != "part"}
    np.savez(tmp_path / "nokp.npz", **nokp)
    with pytest.raises(NeuralfitError, match="--init lifter needs the rows' 2D keypoints"):
        refine_npz(tmp_path / "nokp.npz", root / "images", tmp_path / "o.npz",
                   _opts(init="lifter"), progress=False)
    with pytest.raises(NeuralfitError, match="lifter not found"):
        refine_npz(root / "init.npz", root / "images", tmp_path / "o.npz",
                   _opts(init="lifter", lifter=str(tmp_path / "none.pt")), progress=False)
    assert not (tmp_path / "o.npz").exists()
