"""Synthetic data engine: rasteriser, annotations, visibility, determinism, resume, CLI.

Uses the procedural ToyBody so the tests run in seconds without the free-body asset; one test
also runs the real free body when its asset is installed.
"""

from __future__ import annotations

import filecmp
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from neuralfit.data.synth import SynthConfig, SynthEngine
from neuralfit.data.toybody import ToyBody
from neuralfit.data.writer import generate_dataset
from neuralfit.errors import NeuralfitError
from neuralfit.render.zbuffer import rasterize, vertex_visibility

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def toy():
    return ToyBody()


@pytest.fixture(scope="module")
def train_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("train")
    generate_dataset(out, 6, seed=5, config=SynthConfig(body="toy", occlusion="train"), progress=False)
    return out


# -- rasteriser ---------------------------------------------------------------------------------

def test_raster_covers_pixel_centres_of_a_square():
    # Square [10.5, 50.5] x [20.5, 40.5] (two triangles) contains pixel centres 11..50 x 21..40.
    uv = np.array([[10.5, 20.5], [50.5, 20.5], [50.5, 40.5], [10.5, 40.5]])
    r = rasterize(uv, np.full(4, 2.0), np.array([[0, 1, 2], [0, 2, 3]]), 64, 64)
    assert (r.face >= 0).sum() == 40 * 20
    assert (r.face[21:41, 11:51] >= 0).all()


def test_raster_depth_is_perspective_correct_and_nearest_wins():
    # A slanted plane z = 2 + x (camera frame, f = 50, c = 32) and a nearer small triangle.
    f, c = 50.0, 32.0
    pts = np.array([[-0.5, -0.5, 1.5], [0.5, -0.5, 2.5], [0.5, 0.5, 2.5], [-0.5, 0.5, 1.5],
                    [-0.1, -0.1, 1.0], [0.1, -0.1, 1.0], [0.0, 0.1, 1.0]])
    uv = pts[:, :2] / pts[:, 2:] * f + c
    faces = np.array([[0, 1, 2], [0, 2, 3], [4, 5, 6]])
    r = rasterize(uv, pts[:, 2], faces, 64, 64)
    ys, xs = np.nonzero(r.face >= 0)
    plane = np.isin(r.face[ys, xs], [0, 1])
    # Ray through pixel (u, v): (a, b, 1) * z with a = (u - c) / f; on the plane z = 2 + a z.
    a = (xs[plane] - c) / f
    np.testing.assert_allclose(r.depth[ys[plane], xs[plane]], 2 / (1 - a), rtol=1e-5)
    assert (r.face[ys[~plane], xs[~plane]] == 2).all() and (~plane).sum() > 0
    assert np.allclose(r.depth[ys[~plane], xs[~plane]], 1.0)
    vis = vertex_visibility(r, uv[:4], pts[:4, 2], tol=1e-3)
    assert vis.dtype == bool and vis.shape == (4,)


# -- annotations --------------------------------------------------------------------------------

def test_stored_3d_joints_reproject_onto_stored_keypoints(train_set):
    a = np.load(train_set / "annotations.npz")
    f = a["cam_f"][:, None, None]
    c = a["center"][:, None, :]
    S = a["S"][..., :3].astype(np.float64)
    uv = S[..., :2] / S[..., 2:] * f + c
    assert np.abs(uv - a["part"][..., :2]).max() < 1.0
    # The images are the crops: center = image centre, scale = res / 200.
    np.testing.assert_allclose(a["scale"] * 200, 224)
    assert a["pose"].shape == (6, 72) and a["shape"].shape == (6, 10) and a["S"].shape == (6, 24, 4)
    assert set(np.unique(a["part"][..., 2])) <= {0.0, 1.0}


def test_annotations_match_the_body_model(train_set, toy):
    a = np.load(train_set / "annotations.npz")
    out = toy(betas=torch.tensor(a["shape"]), global_orient=torch.tensor(a["pose"][:, :3]),
              body_pose=torch.tensor(a["pose"][:, 3:]), transl=torch.tensor(a["transl"]))
    kp = toy.keypoints(out, "spin24").numpy()
    np.testing.assert_allclose(kp, a["S"][..., :3], atol=1e-4)  # float32 storage at z ~ 40 m
    low = toy.lowres.vertices(out.vertices).numpy()
    uv = low[..., :2] / low[..., 2:] * a["cam_f"][:, None, None] + 112
    assert np.abs(uv - a["lowres_uv"]).max() < 0.05


def test_visibility_is_consistent_with_masks(train_set):
    import cv2

    a = np.load(train_set / "annotations.npz")
    for i, (pn, on) in enumerate(zip(a["partseg"], a["occluder"], strict=True)):
        part = cv2.imread(str(train_set / pn), cv2.IMREAD_GRAYSCALE)
        occ = cv2.imread(str(train_set / on), cv2.IMREAD_GRAYSCALE)
        assert part.max() <= 24 and set(np.unique(occ)) <= {0, 1, 2}
        assert not ((part > 0) & (occ > 0)).any()  # occluded pixels are not labelled as body
        for uv_set, vis in ((a["part"][i, :, :2], a["part"][i, :, 2] > 0), (a["lowres_uv"][i], a["lowres_vis"][i])):
            px = np.rint(uv_set[vis]).astype(int)
            assert (part[px[:, 1], px[:, 0]] > 0).all()  # visible points land on visible body pixels
        assert (a["part_inimage"][i] | (a["part"][i, :, 2] == 0)).all()


def test_occluded_preset_spans_invisible_fractions(toy):
    eng = SynthEngine(SynthConfig(body="toy", occlusion="test-occluded"), body=toy)
    inv, occ_frac, types = [], [], []
    for i in range(24):
        r = eng.sample(i, seed=11).record
        inv.append(1 - r["part"][:, 2].mean())
        occ_frac.append(r["occ_fraction"])
        types.append(r["occ_type"])
    inv = np.array(inv)
    assert inv.min() >= 0 and inv.max() <= 0.6 + 1e-9
    assert inv.max() - inv.min() > 0.2 and inv.std() > 0.05  # real spread, not a constant
    assert all(t in (1, 2) for t in types)  # every test-occluded image has an occluder
    assert max(occ_frac) > 0.2


def test_clean_preset_has_no_occluders(toy):
    eng = SynthEngine(SynthConfig(body="toy", occlusion="test-clean"), body=toy)
    for i in range(4):
        s = eng.sample(i, seed=1)
        assert s.record["occ_type"] == 0 and not s.occluder.any() and not s.record["truncated"]


# -- determinism, resume, CLI ---------------------------------------------------------------------

def _same_tree(a: Path, b: Path) -> None:
    fa = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    fb = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    assert fa == fb
    _, mismatch, errors = filecmp.cmpfiles(a, b, [str(p) for p in fa], shallow=False)
    assert not mismatch and not errors


def test_same_seed_same_bytes_with_one_and_two_workers(tmp_path):
    # Stand-in poses: the workers then skip loading the pose prior, which keeps start-up short.
    cfg = SynthConfig(body="toy", occlusion="train", pose_source="standin")
    generate_dataset(tmp_path / "w1", 4, seed=7, config=cfg, workers=1, progress=False)
    generate_dataset(tmp_path / "w2", 4, seed=7, config=cfg, workers=2, progress=False)
    _same_tree(tmp_path / "w1", tmp_path / "w2")
    generate_dataset(tmp_path / "other", 1, seed=8, config=cfg, progress=False)
    assert (tmp_path / "other/images/000000.jpg").read_bytes() != (tmp_path / "w1/images/000000.jpg").read_bytes()


def test_resume_gives_the_same_dataset_and_refuses_other_settings(tmp_path):
    cfg = SynthConfig(body="toy", occlusion="test-occluded")
    generate_dataset(tmp_path / "full", 3, seed=2, config=cfg, progress=False)
    generate_dataset(tmp_path / "part", 2, seed=2, config=cfg, progress=False)
    (tmp_path / "part/records/000001.npz").unlink()  # as if interrupted before image 1 finished
    generate_dataset(tmp_path / "part", 3, seed=2, config=cfg, progress=False)
    _same_tree(tmp_path / "full", tmp_path / "part")
    with pytest.raises(NeuralfitError, match="other settings"):
        generate_dataset(tmp_path / "part", 3, seed=3, config=cfg, progress=False)


def test_cli_synth(tmp_path):
    from click.testing import CliRunner
    from neuralfit.cli.synth import synth

    res = CliRunner().invoke(synth, ["--out", str(tmp_path / "d"), "--count", "2", "--body", "toy",
                                     "--occlusion", "test-clean", "--res", "128"])
    assert res.exit_code == 0, res.output
    a = np.load(tmp_path / "d/annotations.npz")
    assert len(a["imgname"]) == 2 and np.allclose(a["cam_f"], 5000 * 128 / 224)
    res = CliRunner().invoke(synth, ["--out", str(tmp_path / "e"), "--count", "0", "--body", "toy"])
    assert res.exit_code != 0 and isinstance(res.exception, NeuralfitError)


def test_free_body_sample_if_available():
    pytest.importorskip("neuralfit.body")
    from neuralfit.body import load_body_model

    try:
        body = load_body_model("free")
    except (NeuralfitError, AttributeError, ImportError) as exc:
        pytest.skip(f"free body not available: {exc}")
    eng = SynthEngine(SynthConfig(occlusion="train"), body=body)
    r = eng.sample(0, seed=0).record
    S = r["S"][:, :3]
    uv = S[:, :2] / S[:, 2:] * r["cam_f"] + 112
    assert np.abs(uv - r["part"][:, :2]).max() < 1e-6
    assert r["lowres_vis"].shape[0] == body.lowres.part_labels.shape[0]
