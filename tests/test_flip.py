"""Test-time flip of mediapipe detections (``detect.mediapipe_pose.flip_averaged``)."""

from __future__ import annotations

import numpy as np

from neuralfit.detect import Detection
from neuralfit.detect.mediapipe_pose import BLAZEPOSE_FLIP, flip_averaged
from neuralfit.photo.people import find_people

W, H = 200, 300


def _truth() -> tuple[np.ndarray, np.ndarray]:
    """A person filling the photo: (33, 3) keypoints (px, confidence), (33, 4) world landmarks, left != right."""
    rng = np.random.default_rng(0)
    kp = np.column_stack([rng.uniform(5, 195, 33), rng.uniform(5, 295, 33), rng.uniform(0.6, 1.0, 33)])
    world = np.column_stack([rng.normal(0, 0.3, (33, 3)), kp[:, 2]])
    return kp.astype(np.float32), world.astype(np.float32)


def _image() -> np.ndarray:
    """A photo that brightens from left to right, so a detector can tell it from its mirror image."""
    return np.repeat(np.linspace(0, 255, W, dtype=np.uint8)[None, :, None], H, 0).repeat(3, 2)


class BiasedDetector:
    """Sees the true person, with a bias that is the same in every image it is given (+5 px in x, +2 cm in
    world x): what a network that is not mirror-symmetric does. In a mirror image it reports the person
    mirrored, with left and right exchanged, as BlazePose does."""

    def __init__(self, shift: float = 0.0, nobody_when_mirrored: bool = False) -> None:
        self.kp, self.world = _truth()
        self.shift, self.nobody_when_mirrored, self.calls = shift, nobody_when_mirrored, 0

    def __call__(self, image: np.ndarray) -> Detection | None:
        self.calls += 1
        mirrored = image[0, 0, 0] > image[0, -1, 0]
        kp, world = self.kp.copy(), self.world.copy()
        if mirrored:
            if self.nobody_when_mirrored:
                return None
            kp = kp[list(BLAZEPOSE_FLIP)]
            kp[:, 0] = image.shape[1] - kp[:, 0] + self.shift
            world = world[list(BLAZEPOSE_FLIP)]
            world[:, 0] *= -1
        kp[:, 0] += 5.0
        world[:, 0] += 0.02
        box = np.array([*kp[:, :2].min(0), *kp[:, :2].max(0)], np.float32)
        return Detection(kp, box, None, 0.9, world)


def test_flip_average_cancels_a_mirror_consistent_bias():
    det = BiasedDetector()
    img = _image()
    d = det(img)
    out = flip_averaged(det, img, d)
    truth_kp, truth_world = _truth()
    # The bias is +5 px in the original frame and -5 px once the mirrored answer is mapped back: the mean
    # is the truth to float32 rounding, with the sides matched up (a wrong side would be ~60 px off).
    np.testing.assert_allclose(out.keypoints[:, :2], truth_kp[:, :2], atol=1e-3)
    np.testing.assert_allclose(out.world_landmarks[:, :3], truth_world[:, :3], atol=1e-6)
    np.testing.assert_allclose(out.keypoints[:, 2], truth_kp[:, 2], atol=1e-6)
    assert det.calls == 2
    assert np.abs(d.keypoints[:, 0] - truth_kp[:, 0]).mean() > 4.9  # the input itself is left as it was


def test_flip_keeps_the_detection_when_the_mirror_finds_nobody_or_someone_else():
    img = _image()
    det = BiasedDetector(nobody_when_mirrored=True)
    d = det(img)
    assert flip_averaged(det, img, d) is d
    det = BiasedDetector(shift=80.0)  # the mirrored pass lands 80 px away: another person
    d = det(img)
    assert flip_averaged(det, img, d) is d


def test_find_people_with_flip_is_one_more_call_per_person():
    img = _image()
    det = BiasedDetector()
    people = find_people(lambda: det, img, None, None, 0, False, max_people=1, flip=True)
    assert len(people) == 1 and det.calls == 2
    truth_kp, _ = _truth()
    assert np.abs(people[0].keypoints[:, 0] - truth_kp[:, 0]).max() < 1e-3
    det = BiasedDetector()
    box = np.array([0, 0, W, H], np.float32)  # the whole photo, so the box search sees photo pixels
    people = find_people(lambda: det, img, None, box[None], 0, False, max_people=4, flip=True)
    # One box: one search in it and one mirrored pass, whose bias cancels the first one's.
    assert len(people) == 1 and det.calls == 2
    assert np.abs(people[0].keypoints[:, 0] - truth_kp[:, 0]).max() < 1e-3
