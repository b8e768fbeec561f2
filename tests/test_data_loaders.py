"""SPIN/EFT npz datasets: validation errors, crops, flips, augmentation consistency."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from neuralfit.data import AugmentConfig, DatasetConfig, NpzDataset, SynthConfig, generate_dataset
from neuralfit.data.crop import (
    SPIN24_FLIP,
    apply_affine,
    crop_transform,
    flip_joints3d,
    flip_keypoints,
    flip_partseg,
    flip_pose,
)
from neuralfit.data.toybody import ToyBody
from neuralfit.errors import NeuralfitError

os.environ.setdefault("OMP_NUM_THREADS", "1")


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth")
    generate_dataset(out, 4, seed=3, config=SynthConfig(body="toy", occlusion="test-clean"), progress=False)
    return out


def _spin_style(tmp_path: Path, n: int = 3) -> Path:
    """A small real-dataset-style npz (no camera, no masks) with images of 300 x 400 pixels."""
    rng = np.random.default_rng(0)
    (tmp_path / "imgs").mkdir()
    names = []
    for i in range(n):
        name = f"imgs/im{i}.jpg"
        cv2.imwrite(str(tmp_path / name), rng.integers(0, 255, (300, 400, 3), dtype=np.uint8))
        names.append(name)
    part = np.concatenate([rng.uniform(100, 250, (n, 24, 2)), np.ones((n, 24, 1))], 2)
    np.savez(tmp_path / "set.npz", imgname=np.array(names), center=np.full((n, 2), 170.0), scale=np.full(n, 1.1),
             part=part, pose=rng.normal(0, 0.2, (n, 72)), shape=rng.normal(0, 1, (n, 10)), has_smpl=np.ones(n))
    return tmp_path / "set.npz"


# -- flips ----------------------------------------------------------------------------------------

def test_flips_are_involutions():
    rng = np.random.default_rng(1)
    kp = np.concatenate([rng.uniform(0, 224, (24, 2)), rng.integers(0, 2, (24, 1))], 1)
    np.testing.assert_allclose(flip_keypoints(flip_keypoints(kp, 224), 224), kp)
    pose = rng.normal(0, 0.5, 72)
    np.testing.assert_allclose(flip_pose(flip_pose(pose)), pose)
    j = rng.normal(0, 1, (24, 4))
    np.testing.assert_allclose(flip_joints3d(flip_joints3d(j)), j)
    m = rng.integers(0, 25, (16, 16)).astype(np.uint8)
    np.testing.assert_array_equal(flip_partseg(flip_partseg(m)), m)
    assert sorted(SPIN24_FLIP) == list(range(24))


def test_flipped_pose_gives_mirrored_joints():
    # ToyBody is exactly left/right symmetric, so flip_pose must produce the mirror image.
    body = ToyBody()
    pose = torch.tensor(np.random.default_rng(2).normal(0, 0.4, (1, 72)), dtype=torch.float32)
    a = body.keypoints(body(global_orient=pose[:, :3], body_pose=pose[:, 3:]), "spin24")[0].numpy()
    fp = torch.tensor(flip_pose(pose[0].numpy())[None], dtype=torch.float32)
    b = body.keypoints(body(global_orient=fp[:, :3], body_pose=fp[:, 3:]), "spin24")[0].numpy()
    # Mirror about the root joint's x (rotations act about it).
    root = body(global_orient=pose[:, :3], body_pose=pose[:, 3:]).joints[0, 0].numpy()
    m = flip_joints3d(a - root) + root * [-1, 1, 1]
    np.testing.assert_allclose(b, m, atol=1e-5)


def test_crop_transform_maps_box_to_crop():
    aff = crop_transform(np.array([100.0, 50.0]), 1.0, 224)  # box side 200 around (100, 50)
    np.testing.assert_allclose(apply_affine(aff, np.array([[0.0, -50.0], [100.0, 50.0]])), [[0, 0], [112, 112]], atol=1e-9)


# -- validation errors ----------------------------------------------------------------------------

def test_missing_image_is_named(tmp_path):
    p = _spin_style(tmp_path)
    (tmp_path / "imgs/im1.jpg").unlink()
    with pytest.raises(NeuralfitError, match="im1.jpg"):
        NpzDataset(p)


def test_corrupt_image_is_named(tmp_path):
    p = _spin_style(tmp_path)
    (tmp_path / "imgs/im2.jpg").write_bytes(b"not an image at all")
    with pytest.raises(NeuralfitError, match="im2.jpg"):
        NpzDataset(p)  # caught by the signature check
    # A valid signature with a garbage body passes the cheap check but not decoding.
    (tmp_path / "imgs/im2.jpg").write_bytes(b"\xff\xd8\xff" + b"\x00" * 50)
    with pytest.raises(NeuralfitError, match="im2.jpg"):
        NpzDataset(p, config=DatasetConfig(validate="decode"))
    ds = NpzDataset(p)
    with pytest.raises(NeuralfitError, match="im2.jpg"):
        ds[2]


def test_bad_npz_contents_are_reported(tmp_path):
    p = _spin_style(tmp_path)
    d = dict(np.load(p))
    np.savez(tmp_path / "noscale.npz", **{k: v for k, v in d.items() if k != "scale"})
    with pytest.raises(NeuralfitError, match="scale"):
        NpzDataset(tmp_path / "noscale.npz", img_root=tmp_path)
    np.savez(tmp_path / "badpart.npz", **{**d, "part": d["part"][:, :14]})
    with pytest.raises(NeuralfitError, match="part"):
        NpzDataset(tmp_path / "badpart.npz", img_root=tmp_path)
    (tmp_path / "junk.npz").write_bytes(b"junk")
    with pytest.raises(NeuralfitError, match="junk.npz"):
        NpzDataset(tmp_path / "junk.npz")
    with pytest.raises(NeuralfitError, match="nothere.npz"):
        NpzDataset(tmp_path / "nothere.npz")


# -- items ----------------------------------------------------------------------------------------

def test_real_style_item_crop_and_keypoints(tmp_path):
    p = _spin_style(tmp_path)
    ds = NpzDataset(p, config=DatasetConfig(augment=None, normalize=False))
    it = ds[0]
    assert it["img"].shape == (3, 224, 224) and it["has_camera"] is False and not it["has_partseg"]
    d = np.load(p)
    expected = apply_affine(crop_transform(d["center"][0], d["scale"][0], 224), d["part"][0, :, :2])
    np.testing.assert_allclose(it["keypoints"][:, :2].numpy(), expected, atol=1e-3)
    # The crop transform maps original pixels to crop pixels: check it on the image content.
    img = cv2.imread(str(tmp_path / d["imgname"][0]))
    u, v = 120, 90
    src = apply_affine(np.linalg.inv(np.vstack([it["crop_transform"].numpy(), [0, 0, 1]]))[:2], np.array([u, v]))
    crop = (it["img"].numpy().transpose(1, 2, 0)[..., ::-1] * 255)
    assert np.abs(crop[v, u] - img[int(round(src[1])), int(round(src[0]))]).max() < 60  # bilinear + jpeg


def test_augmented_items_keep_camera_body_and_keypoints_consistent(synth_set):
    body = ToyBody()
    aug = AugmentConfig(flip_prob=0.5, rot_prob=1.0, occluder_prob=1.0, centre_std=0.05)
    ds = NpzDataset(synth_set / "annotations.npz", config=DatasetConfig(augment=aug), seed=4)
    flips = set()
    for i in range(len(ds)):
        it = ds[i]
        flips.add(it["flip"])
        k = it["cam_K"].double()
        out = body(betas=it["betas"][None], global_orient=it["pose"][None, :3], body_pose=it["pose"][None, 3:],
                   transl=it["transl"][None])
        j = body.keypoints(out, "spin24")[0].double()
        np.testing.assert_allclose(j.numpy(), it["joints3d"][:, :3].numpy(), atol=2e-3)
        uv = j @ k.T
        uv = uv[:, :2] / uv[:, 2:]
        assert (uv - it["keypoints"][:, :2]).abs().max() < 0.5
        # Visible keypoints lie on labelled body pixels of the (flipped/rotated) part mask.
        vis = it["visible"].numpy()
        px = np.rint(it["keypoints"][vis, :2].numpy()).astype(int)
        assert (it["partseg"].numpy()[px[:, 1], px[:, 0]] > 0).mean() > 0.8  # nearest-neighbour warp
    assert flips == {True, False}


def test_items_are_reproducible_per_seed_and_epoch(synth_set):
    cfg = DatasetConfig(augment=AugmentConfig(occluder_prob=0.5))
    a = NpzDataset(synth_set / "annotations.npz", config=cfg, seed=1)
    b = NpzDataset(synth_set / "annotations.npz", config=cfg, seed=1)
    assert torch.equal(a[2]["img"], b[2]["img"])
    b.set_epoch(1)
    assert not torch.equal(a[2]["img"], b[2]["img"])


def test_dataloader_collates(synth_set, tmp_path):
    shutil.copytree(synth_set, tmp_path / "copy")
    ds = NpzDataset(tmp_path / "copy/annotations.npz")
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=2)))
    assert batch["img"].shape == (2, 3, 224, 224) and batch["lowres_vis"].shape[0] == 2


def test_bytes_names_and_unused_pickled_keys_are_accepted(tmp_path):
    p = _spin_style(tmp_path)
    d = dict(np.load(p))
    np.savez(tmp_path / "eft.npz", **{**d, "imgname": d["imgname"].astype("S")},
             extra=np.array([{"a": 1}], dtype=object))
    ds = NpzDataset(tmp_path / "eft.npz", config=DatasetConfig(augment=None))
    assert ds[0]["imgname"] == "imgs/im0.jpg"
