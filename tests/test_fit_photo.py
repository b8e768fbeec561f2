"""``neuralfit fit`` on real photos (Debian's opencv-doc images; skipped where not installed).

Acceptance (issue 7): projected body keypoints within 10 % of the person's box size of mediapipe's
keypoints for >= 80 % of the visible ones; no body flipped back to front; with an occluder pasted over
the legs the legs stay within joint limits, and (neural method, needs the shipped network and neural
model) the occlusion map lights up the occluder.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
PHOTOS = ["basketball1.png", "basketball2.png", "messi5.jpg"]
LEG_JOINTS = [0, 1, 3, 4, 6, 7]  # body_pose joints: hips, knees, ankles (SMPL joints 1, 2, 4, 5, 7, 8)

pytestmark = [
    pytest.mark.skipif(not all((DATA / p).is_file() for p in PHOTOS), reason="opencv-doc photos not installed"),
    pytest.mark.slow,
]


def _visible_keypoint_agreement(p, min_conf=0.5):
    """Share of visible (confidence >= 0.5) keypoints the body defines that the fit projects within
    10 % of the box size of the detection."""
    ok = (p.keypoints[:, 2] >= min_conf) & np.isfinite(p.keypoints_fit).all(1)
    err = np.linalg.norm(p.keypoints_fit[ok] - p.keypoints[ok, :2], axis=1)
    size = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
    return float(np.mean(err <= 0.1 * size)), int(ok.sum())


def _faces_camera(global_orient) -> bool:
    """The body's forward axis (SMPL +z) points towards the camera (negative camera z)."""
    from smplx.lbs import batch_rodrigues

    return bool(batch_rodrigues(torch.tensor(global_orient, dtype=torch.float32)[None])[0][2, 2] < 0)


@pytest.fixture(scope="module")
def photo_fits(tmp_path_factory):
    from neuralfit.pipeline import fit_image

    out = tmp_path_factory.mktemp("fits")
    return fit_image([str(DATA / p) for p in PHOTOS], out, method="keypoints"), out


def test_keypoints_agree_with_mediapipe(photo_fits):
    results, _ = photo_fits
    for r in results:
        assert r.ok, r.message
        share, n = _visible_keypoint_agreement(r.people[0])
        assert n >= 10, f"{r.source}: only {n} visible keypoints"
        assert share >= 0.8, f"{r.source}: {share:.0%} of {n} visible keypoints within 10 % of the box"


def test_no_body_is_flipped_back_to_front(photo_fits):
    """Where the shoulders are not edge-on and the nose is seen, the photo shows the person's front
    exactly when their left shoulder appears right of their right shoulder; the fit must agree."""
    from neuralfit.detect import BLAZEPOSE33_NAMES as N

    results, _ = photo_fits
    checked = 0
    for r in results:
        p = r.people[0]
        kp = p.keypoints
        ls, rs, nose = kp[N.index("left_shoulder")], kp[N.index("right_shoulder")], kp[N.index("nose")]
        size = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
        if abs(ls[0] - rs[0]) < 0.05 * size or min(ls[2], rs[2], nose[2]) < 0.5:
            continue
        checked += 1
        assert _faces_camera(p.global_orient) == bool(ls[0] > rs[0]), r.source
    assert checked >= 2


def test_outputs_on_disk(photo_fits):
    results, out = photo_fits
    for r in results:
        names = sorted(x.name for x in (out / r.stem).iterdir())
        # The default keypoints fit makes an occlusion map too (mediapipe's person mask, issue 16).
        assert {"fit.json", "overlay.png", "params.npz", "occlusion.png", "mesh.glb", "side.png"} <= set(names)
        # One person: mesh.obj; several (basketball2 has two): mesh_<i>.obj each.
        n = len(r.people)
        assert ({"mesh.obj"} if n == 1 else {f"mesh_{i}.obj" for i in range(n)}) <= set(names)
        assert r.overlay.shape == r.photo.shape and r.body_mask.mean() > 0.01
        occ = np.load(out / r.stem / "params.npz")["occlusion"]
        assert occ.shape == r.photo.shape[:2] and occ.dtype == np.float16
        assert np.isfinite(occ).all() and 0.0 <= occ.min() and occ.max() <= 1.0
        info = json.loads((out / r.stem / "fit.json").read_text())
        post = info["people"][0]["keypoint_outlier"]
        assert len(post) == len(r.people[0].keypoints)
        seen = [v for v in post if v is not None]
        # Clean photos: mediapipe's keypoints are mostly inliers of the fit.
        assert len(seen) >= 10 and all(0.0 <= v <= 1.0 for v in seen) and np.median(seen) < 0.5
        # The start's consistency cue and the keypoint term's weight it gives (1 - min(1, c w)).
        from neuralfit.pipeline import FitImageConfig

        for p in info["people"]:
            assert 0.0 <= p["landmark_inconsistency"] <= 1.0
            c = FitImageConfig().inconsistent_keypoints
            assert p["keypoint_term_weight"] == pytest.approx(1.0 - min(1.0, c * p["landmark_inconsistency"]), abs=1e-3)
            # The part head's say per keypoint (default on): factors in [0, 1], one per keypoint; a clean
            # photo's body is seen, so most keypoints keep most of their confidence.
            w = p["hidden_keypoint_weight"]
            assert len(w) == len(p["keypoint_outlier"]) and all(0.0 <= v <= 1.0 for v in w)
            assert np.median(w) > 0.5
            # The occlusion map is the part head's (neuralfit.photo.occlusion); on clean photos most of the
            # body is seen.
            assert p["occlusion_source"] == "part head" and 0.0 <= p["occlusion_fraction"] < 0.3, p


def _occluded_legs(img: np.ndarray, kp: np.ndarray) -> tuple[np.ndarray, tuple[int, int, int, int]]:
    """Paste a random-noise block (our own texture) over both legs from above the knees to the feet."""
    from neuralfit.detect import BLAZEPOSE33_NAMES as N

    legs = kp[[N.index(n) for n in ("left_knee", "right_knee", "left_ankle", "right_ankle",
                                       "left_hip", "right_hip")], :2]
    hip_y = legs[4:, 1].mean()
    knee_y = legs[:2, 1].mean()
    y0 = int(hip_y + 0.5 * (knee_y - hip_y))
    y1 = int(min(img.shape[0], legs[2:4, 1].max() + 0.1 * (knee_y - hip_y)))
    x0 = int(max(0, legs[:, 0].min() - 0.3 * (knee_y - hip_y)))
    x1 = int(min(img.shape[1], legs[:, 0].max() + 0.3 * (knee_y - hip_y)))
    rng = np.random.default_rng(0)
    out = img.copy()
    block = rng.integers(0, 255, size=(y1 - y0, x1 - x0, 1), dtype=np.uint8)
    out[y0:y1, x0:x1] = np.repeat(block, 3, axis=2) // 2 + np.array([90, 60, 30], np.uint8)
    return out, (x0, y0, x1, y1)


def _same_person(r, box: np.ndarray):
    """The fitted person of ``r`` whose box overlaps ``box`` most (the occluded player: the block shrinks his
    box, so he need not be the largest person any more)."""
    from neuralfit.detect.everyone import box_iou

    return max(r.people, key=lambda p: box_iou(np.asarray(p.bbox, np.float32), np.asarray(box, np.float32)))


def test_occluded_legs_stay_plausible():
    """A noise block over basketball1's player's legs, from mid-thigh to below the feet: his fitted legs stay
    within the joint limits and upright (hip above knee above ankle in the photo)."""
    from neuralfit.priors import JointLimitPrior

    from neuralfit.io.images import read_image
    from neuralfit.pipeline import FitImageConfig, fit_image

    img = read_image(DATA / "basketball1.png")
    clean = fit_image(img, method="keypoints", config=FitImageConfig(write_overlay=False))
    occluded, _ = _occluded_legs(img, clean.people[0].keypoints)
    r = fit_image(occluded, method="keypoints", config=FitImageConfig(write_overlay=False))
    assert r.ok
    p = _same_person(r, clean.people[0].bbox)
    viol = JointLimitPrior().violations(torch.tensor(p.body_pose)[None])[0]
    assert not viol[LEG_JOINTS].any()
    # The player stands: in the photo each hip is above its knee, each knee above its ankle (a folded-up
    # leg, as the pose prior's crouching mean would give, puts the ankle at or above the knee).
    from neuralfit.pipeline import project_points

    uv = project_points(p.joints3d.astype(np.float64), r.focal_length, r.principal_point)
    for hip, knee, ankle in ((1, 4, 7), (2, 5, 8)):
        assert uv[hip, 1] < uv[knee, 1] < uv[ankle, 1]


def _default_assets_exist() -> bool:
    from neuralfit.pipeline import default_assets

    return all(p is not None for p in default_assets())


@pytest.mark.skipif(not _default_assets_exist(), reason="no shipped network + neural model yet")
def test_occlusion_map_lights_up_the_occluder(tmp_path):
    """The default fit's occlusion map over the noise block pasted on the player's legs: high on his body
    under the block, clearly lower on the rest of his body.

    Measured 2026-12-07 (session 15): 0.93 under the block, 0.20 elsewhere on him (his head top and one
    thigh's edge, where the fitted mesh is wider than he is). Issue 16's gate (>= 0.6 / <= 0.15) is over
    many frames (benchmarks/real_occluded.py); on one photo the test asks for the occluder's level and a
    separation of 0.5."""
    from neuralfit.io.images import read_image, render_people
    from neuralfit.pipeline import FitImageConfig, fit_image

    img = read_image(DATA / "basketball1.png")
    clean = fit_image(img, method="keypoints", config=FitImageConfig(write_overlay=False))
    occluded, (x0, y0, x1, y1) = _occluded_legs(img, clean.people[0].keypoints)
    r = fit_image(occluded, tmp_path)
    assert r.ok and (tmp_path / "image_0000" / "occlusion.png").is_file()
    p = _same_person(r, clean.people[0].bbox)
    from neuralfit.body import load_body_model

    faces = load_body_model("free").faces.cpu().numpy()
    _, body = render_people(occluded, [p.vertices], faces, r.focal_length, tuple(r.principal_point))
    inside = np.zeros(img.shape[:2], bool)
    inside[y0:y1, x0:x1] = True
    occ_in = r.occlusion[body & inside].mean()
    occ_out = r.occlusion[body & ~inside].mean()
    print(f"occlusion under the block {occ_in:.2f}, elsewhere on him {occ_out:.2f}")
    assert occ_in > 0.6 and occ_in - occ_out > 0.5, (occ_in, occ_out)


def test_box_where_mediapipe_finds_nobody_still_fits(tmp_path):
    """Issue 16 d4 (no lost frames): a --bbox on a photo region without a person (aloeL.jpg: plants) still
    gives a fitted body, started from the network's heatmap keypoints, and fit.json says so."""
    from neuralfit.pipeline import fit_image

    photo = DATA / "aloeL.jpg"
    if not photo.is_file():
        pytest.skip("aloeL.jpg not installed")
    box = np.array([100, 50, 300, 400], np.float32)
    assert fit_image([str(photo)], tmp_path / "probe", method="keypoints")[0].status == "no_person"
    r = fit_image([str(photo)], tmp_path / "out", method="keypoints", bbox=box)[0]
    assert r.ok and len(r.people) == 1
    info = json.loads((tmp_path / "out" / "aloeL" / "fit.json").read_text())
    assert info["status"] == "ok" and info["people"][0]["observations"] == "network"
    assert info["people"][0]["start"] in {"lifter", "network", "mean"}
    assert np.isfinite(r.people[0].vertices).all()
