"""Placing a posed body in a photo's camera, and the photo's intrinsics (neuralfit.init.camera / .intrinsics)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init import PlaceConfig, StartParams, photo_intrinsics, place_in_camera
from neuralfit.init.intrinsics import FULL_FRAME_DIAGONAL_MM

F, PP = 1200.0, torch.tensor([640.0, 360.0])


def _scene(body, b: int = 4, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    go = torch.tensor([[math.pi, 0.0, 0.0]]).expand(b, 3) + 0.3 * torch.randn(b, 3, generator=g)
    s = StartParams(go.contiguous(), 0.25 * torch.randn(b, 69, generator=g), 0.5 * torch.randn(b, 10, generator=g))
    t = torch.stack([torch.linspace(-0.8, 0.8, b), torch.linspace(0.3, -0.3, b), torch.linspace(2.5, 9.0, b)], 1)
    x = body.keypoints(body(s.betas, s.global_orient, s.body_pose, t, full=False), "coco17")
    uv = F * x[..., :2] / x[..., 2:] + PP
    return s, t, torch.cat([uv, torch.ones_like(uv[..., :1])], -1)


def test_exact_projections_give_the_translation(free_body):
    s, t, kp = _scene(free_body)
    est = place_in_camera(free_body, s, kp, "coco17", F, PP)
    # The pinhole equations are linear in t and exact here; float32 posing leaves ~micrometres.
    assert (est - t).abs().max() < 1e-4


def test_pixel_noise_gives_the_predicted_error(free_body):
    s, t, kp = _scene(free_body, b=6, seed=1)
    sigma = 2.0
    g = torch.Generator().manual_seed(2)
    noisy = kp.clone()
    noisy[..., :2] += sigma * torch.randn(kp[..., :2].shape, generator=g)
    est = place_in_camera(free_body, s, noisy, "coco17", F, PP)
    # First-order error of a similar-triangles depth: dz / z = (spread error) / spread, with the RMS
    # spread S of the J keypoints in pixels and each coordinate off by sigma: dz ~ z sigma / (S sqrt(2J));
    # sideways dx ~ z sigma / (f sqrt(J)). Allow 4 of those standard errors.
    uv = kp[..., :2]
    spread = (uv - uv.mean(1, keepdim=True)).pow(2).sum(-1).mean(1).sqrt()
    j = kp.shape[1]
    dz = t[:, 2] * sigma / (spread * math.sqrt(2 * j))
    dxy = t[:, 2] * sigma / (F * math.sqrt(j))
    assert ((est[:, 2] - t[:, 2]).abs() < 4 * dz + 1e-3).all()
    assert ((est[:, :2] - t[:, :2]).abs() < 4 * dxy[:, None] + 1e-3).all()


def test_one_wrong_keypoint_is_discounted(free_body):
    s, t, kp = _scene(free_body)
    bad = kp.clone()
    bad[:, 9, :2] += 250.0  # a wrist detected a quarter of the image away
    plain = place_in_camera(free_body, s, bad, "coco17", F, PP, config=PlaceConfig(robust_passes=0))
    robust = place_in_camera(free_body, s, bad, "coco17", F, PP)
    assert ((robust - t).norm(dim=1) < 0.2 * (plain - t).norm(dim=1)).all()


def test_fallbacks_stay_in_front_of_the_camera(free_body):
    s, t, kp = _scene(free_body)
    few = kp.clone()
    few[:, 3:, 2] = 0.0  # three usable keypoints: similar triangles from their spread
    est = place_in_camera(free_body, s, few, "coco17", F, PP)
    assert torch.isfinite(est).all() and (est[:, 2] > 0).all()
    none = kp.clone()
    none[..., 2] = 0.0
    box = torch.tensor([[540.0, 100.0, 740.0, 620.0]]).expand(len(s), 4)
    est = place_in_camera(free_body, s, none, "coco17", F, PP, bbox=box)
    out = free_body(s.betas, s.global_orient, s.body_pose, est, full=False)
    # The box's centre lies on the ray through the pelvis.
    pel = out.joints[:, 0]
    assert torch.allclose(F * pel[:, :2] / pel[:, 2:] + PP, torch.tensor([640.0, 360.0]).expand(len(s), 2), atol=1.0)
    est = place_in_camera(free_body, s, none, "coco17", F, PP)
    pel = free_body(s.betas, s.global_orient, s.body_pose, est, full=False).joints[:, 0]
    # Nothing to go by: the pelvis on the optical axis at the configured default depth.
    assert torch.allclose(pel, torch.tensor([0.0, 0.0, PlaceConfig().default_depth]).expand(len(s), 3), atol=1e-4)
    mirrored = kp.clone()
    mirrored[..., 0] = 2 * PP[0] - mirrored[..., 0]  # no translation explains this: still in front
    est = place_in_camera(free_body, s, mirrored, "coco17", F, PP)
    assert (free_body(s.betas, s.global_orient, s.body_pose, est, full=False).joints[:, 0, 2] >= 0.3 - 1e-5).all()


@pytest.mark.parametrize("focal", [0.0, -5.0, float("nan"), float("inf")])
def test_place_rejects_bad_focal(free_body, focal):
    s, _, kp = _scene(free_body, b=1)
    with pytest.raises(NeuralfitError, match="focal"):
        place_in_camera(free_body, s, kp, "coco17", focal, PP)


# ---- intrinsics ----------------------------------------------------------------------------------------


def _jpeg(path, size=(600, 800), **tags) -> str:
    from PIL import Image
    from PIL.TiffImagePlugin import IFDRational

    im = Image.fromarray(np.zeros((size[0], size[1], 3), np.uint8))
    ex = Image.Exif()
    ifd = ex.get_ifd(0x8769)
    codes = {"focal": 0x920A, "focal35": 0xA405, "xres": 0xA20E, "unit": 0xA210, "width": 0xA002}
    for k, v in tags.items():
        ifd[codes[k]] = IFDRational(int(round(v * 1000)), 1000) if isinstance(v, float) else v
    im.save(path, exif=ex)
    return str(path)


def test_exif_35mm_equivalent(tmp_path):
    p = _jpeg(tmp_path / "a.jpg", focal35=26)
    cam = photo_intrinsics((600, 800), p)
    assert cam.source == "exif:35mm" and not cam.warnings
    assert cam.focal == pytest.approx(26 / FULL_FRAME_DIAGONAL_MM * 1000.0)  # diagonal of 600 x 800 = 1000 px
    assert np.allclose(cam.principal_point, [400.0, 300.0])


def test_exif_focal_and_sensor_scaled_to_the_image(tmp_path):
    # 4.2 mm lens, 1000 px per cm on the sensor, written for a 1600 px wide original, fitted at 800 px.
    p = _jpeg(tmp_path / "b.jpg", focal=4.2, xres=1000.0, unit=3, width=1600)
    cam = photo_intrinsics((600, 800), p)
    assert cam.source == "exif:focal+sensor"
    assert cam.focal == pytest.approx(4.2 * 100.0 * 0.5, rel=1e-3)


@pytest.mark.parametrize("tags, why", [
    ({"focal": 0.0}, "FocalLength"),
    ({"focal": 4.2}, "sensor"),  # no FocalPlaneXResolution
    ({"focal35": 5000}, "implausible"),
    ({"focal": 4.2, "xres": 1.0, "unit": 2}, "implausible"),  # 1 px per inch: a 0.03 mm full-frame lens
])  # fmt: skip
def test_lying_exif_falls_back_with_a_warning(tmp_path, tags, why):
    p = _jpeg(tmp_path / "c.jpg", **tags)
    cam = photo_intrinsics((600, 800), p)
    assert cam.source == "default:diagonal" and cam.focal == pytest.approx(1000.0)
    assert any(why in w for w in cam.warnings) and all("\n" not in w for w in cam.warnings)


def test_order_and_rules(tmp_path):
    p = _jpeg(tmp_path / "d.jpg", focal35=26)
    k = np.array([[900.0, 0, 410], [0, 900.0, 290], [0, 0, 1]])
    cam = photo_intrinsics((600, 800), p, focal=1500.0, fov=60.0, K=k)
    assert cam.source == "K" and cam.focal == 900.0 and np.allclose(cam.principal_point, [410, 290])
    assert photo_intrinsics((600, 800), p, focal=1500.0, fov=60.0).source == "--focal"
    cam = photo_intrinsics((600, 800), p, fov=90.0)
    assert cam.source == "--fov" and cam.focal == pytest.approx(400.0)  # tan(45 deg) = 1: f = W / 2
    assert photo_intrinsics((600, 800), None).source == "default:diagonal"
    assert photo_intrinsics((600, 800), default="width").focal == 800.0
    cam = photo_intrinsics((600, 800), default="1.5")
    assert cam.focal == pytest.approx(1500.0) and cam.source == "default:1.5xdiagonal"
    plain = tmp_path / "plain.png"
    from PIL import Image

    Image.fromarray(np.zeros((6, 8, 3), np.uint8)).save(plain)
    cam = photo_intrinsics((6, 8), plain)
    assert cam.source == "default:diagonal" and not cam.warnings


@pytest.mark.parametrize("kw", [
    {"focal": 0}, {"focal": -100.0}, {"focal": float("nan")}, {"focal": float("inf")}, {"focal": "wide"},
    {"fov": 0.5}, {"fov": 179.5}, {"fov": float("nan")}, {"fov": -30.0},
    {"K": np.eye(2)}, {"K": np.array([[-900.0, 0, 400], [0, 900, 300], [0, 0, 1]])},
    {"K": np.array([[900.0, 0, 400], [0, 900, 300], [0, 0, np.nan]])}, {"default": "fisheye"},
])  # fmt: skip
def test_bad_camera_values_raise_one_line(kw):
    with pytest.raises(NeuralfitError) as e:
        photo_intrinsics((600, 800), **kw)
    assert "\n" not in str(e.value)


def test_weighted_solve_gives_nan_rows_not_an_exception_when_singular():
    """A sample whose system is singular (weights blown up to inf by a depth near 0) gets NaN, so
    place_in_camera falls back for it; the other samples are solved as usual."""
    import torch

    from neuralfit.init.camera import _weighted_solve

    g = torch.Generator().manual_seed(0)
    pts = torch.randn(2, 8, 3, generator=g)
    t_true = torch.tensor([0.1, -0.2, 4.0])
    p = pts + t_true
    xn, yn = p[..., 0] / p[..., 2], p[..., 1] / p[..., 2]
    w = torch.ones(2, 8)
    w[1] = float("inf")
    t = _weighted_solve(xn, yn, pts, w)
    assert torch.allclose(t[0], t_true, atol=1e-4)
    assert torch.isnan(t[1]).all()
