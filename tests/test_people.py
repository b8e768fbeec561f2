"""Several people per photo (issue 17): finding everyone, boxes, and the terms between people."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from neuralfit.detect import Detection
from neuralfit.detect.everyone import box_iou, find_everyone
from neuralfit.fitting.people import DepthOrderTerm, InterpenetrationTerm, group_pairs
from neuralfit.fitting.posing import FitBody
from neuralfit.photo.people import find_people
from neuralfit.render.camera import CropCamera


def _person(x0: int, y0: int, x1: int, y1: int, hw: tuple[int, int]) -> Detection:
    """A standing stick person filling the box: BlazePose keypoints, a box mask."""
    kp = np.zeros((33, 3), np.float32)
    cx, w, h = (x0 + x1) / 2, x1 - x0, y1 - y0
    spots = {0: (cx, y0 + 0.08 * h), 11: (cx - 0.2 * w, y0 + 0.2 * h), 12: (cx + 0.2 * w, y0 + 0.2 * h),
             23: (cx - 0.12 * w, y0 + 0.55 * h), 24: (cx + 0.12 * w, y0 + 0.55 * h),
             25: (cx - 0.12 * w, y0 + 0.75 * h), 26: (cx + 0.12 * w, y0 + 0.75 * h),
             27: (cx - 0.12 * w, y0 + 0.95 * h), 28: (cx + 0.12 * w, y0 + 0.95 * h)}
    for j, (x, y) in spots.items():
        kp[j] = (x, y, 0.99)
    mask = np.zeros(hw, np.float32)
    mask[y0:y1, x0:x1] = 1.0
    return Detection(kp, np.array([x0, y0, x1, y1], np.float32), mask, 0.99)


class SceneDetector:
    """mediapipe's behaviour on a photo of coloured boxes (:func:`_photo`): the largest person of which
    more than half is visible (not cut off by a crop, not painted grey) in the image it is given, in that
    image's pixels, or None. Counts its calls."""

    def __init__(self, people: list[tuple[int, int, int, int]], leak: tuple[int, int, int, int] | None = None) -> None:
        self.people = people
        self.calls = 0
        self.leak = leak  # the largest person's mask also covers this box (a segmenter's spill)

    def __call__(self, image: np.ndarray) -> Detection | None:
        self.calls += 1
        best = None
        for i, (x0, y0, x1, y1) in enumerate(self.people):
            ys, xs = np.nonzero(image[..., 0] == 200 + i)
            if len(xs) <= 0.5 * (x1 - x0) * (y1 - y0):
                continue
            box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
            area = (box[2] - box[0]) * (box[3] - box[1])
            if best is None or area > best[0]:
                best = (area, box)
        if best is None:
            return None
        d = _person(*best[1], image.shape[:2])
        if self.leak is not None and image.shape[:2] == (400, 600) and best[1] == max(
                self.people, key=lambda b: (b[2] - b[0]) * (b[3] - b[1])):
            x0, y0, x1, y1 = self.leak
            d.mask[y0:y1, x0:x1] = 1.0
        return d


def _photo(people: list[tuple[int, int, int, int]], hw=(400, 600)) -> np.ndarray:
    img = np.full((*hw, 3), 30, np.uint8)
    for i, (x0, y0, x1, y1) in enumerate(people):
        img[y0:y1, x0:x1, 0] = 200 + i
    return img


def test_find_everyone_finds_both_people_largest_first_and_max_one_is_one_call():
    scene = [(20, 100, 120, 380), (300, 40, 460, 390)]  # the second is larger
    img = _photo(scene)
    det = SceneDetector(scene)
    found = find_everyone(det, img, max_people=4)
    assert [tuple(int(v) for v in d.bbox) for d in found] == [scene[1], scene[0]]
    det1 = SceneDetector(scene)
    one = find_everyone(det1, img, max_people=1)
    assert det1.calls == 1 and len(one) == 1 and tuple(int(v) for v in one[0].bbox) == scene[1]


def test_find_everyone_one_person_gives_one_and_nobody_gives_none():
    one = [(200, 50, 330, 380)]
    assert len(find_everyone(SceneDetector(one), _photo(one), max_people=4)) == 1
    assert find_everyone(SceneDetector([]), _photo([]), max_people=4) == []


def test_find_everyone_paints_only_near_the_found_skeleton():
    """The front person's mask spills over the other's upper half (mediapipe's segmentation covers everyone
    in its region): painting the whole mask would hide them; painting near the skeleton does not."""
    scene = [(300, 40, 460, 390), (470, 60, 560, 380)]
    det = SceneDetector(scene, leak=(470, 60, 560, 240))
    found = find_everyone(det, _photo(scene), max_people=4)
    assert sorted(tuple(int(v) for v in d.bbox) for d in found) == sorted(scene)


def test_find_everyone_drops_the_same_person_found_again():
    """A detector that keeps returning the same person (painting does not hide it) gives one person."""
    img = _photo([])
    p = _person(100, 50, 250, 380, img.shape[:2])

    def stubborn(image):
        return p if image.shape == img.shape else None

    assert len(find_everyone(stubborn, img, max_people=4)) == 1


def test_box_iou():
    a = np.array([0, 0, 10, 10], np.float32)
    assert box_iou(a, a) == pytest.approx(1.0)
    assert box_iou(a, np.array([5, 0, 15, 10], np.float32)) == pytest.approx(50 / 150)
    assert box_iou(a, np.array([20, 20, 30, 30], np.float32)) == 0.0


def test_find_people_matches_each_box_to_its_person():
    """Two boxes: each gets the person it holds (not the most prominent one), in the boxes' order."""
    scene = [(20, 100, 120, 380), (300, 40, 460, 390)]
    img = _photo(scene)
    det = SceneDetector(scene)
    boxes = np.array([[15, 95, 125, 385], [295, 35, 465, 395]], np.float32)
    people = find_people(lambda: det, img, None, boxes, 0, False, max_people=4)
    assert len(people) == 2
    for p, b in zip(people, boxes, strict=True):
        np.testing.assert_allclose(p.bbox, b)
        centre = p.keypoints[[11, 12, 23, 24], :2].mean(0)
        assert b[0] <= centre[0] <= b[2] and b[1] <= centre[1] <= b[3]
    assert find_people(lambda: det, img, None, np.zeros((0, 4), np.float32), 0, False) == []


# ---------------------------------------------------------------------------------------------- terms
def test_group_pairs_only_within_a_photo():
    ia, ib = group_pairs(torch.tensor([0, 0, 1, 2, 2]))
    pairs = set(zip(ia.tolist(), ib.tolist(), strict=True))
    assert pairs == {(0, 1), (1, 0), (3, 4), (4, 3)}
    assert group_pairs(torch.tensor([0, 1, 2])) is None
    assert group_pairs(None) is None


def _posed(fb: FitBody, transl: list[list[float]]):
    B = len(transl)
    return fb(torch.zeros(B, fb.n_betas), torch.tensor([[math.pi, 0.0, 0.0]] * B), torch.zeros(B, 69),
              torch.tensor(transl), lowres=True)


def test_interpenetration_is_zero_apart_positive_overlapping_and_pushes_apart(free_body):
    fb = FitBody.from_body(free_body)
    term = InterpenetrationTerm()
    batch = SimpleNamespace(group=torch.tensor([0, 0]))
    apart = term(SimpleNamespace(batch=batch, posed=_posed(fb, [[-1.0, 0, 3], [1.0, 0, 3]]), body=fb))
    assert torch.all(apart == 0)
    t = torch.tensor([[-0.1, 0.0, 3.0], [0.1, 0.0, 3.0]], requires_grad=True)
    B = 2
    posed = fb(torch.zeros(B, fb.n_betas), torch.tensor([[math.pi, 0.0, 0.0]] * B), torch.zeros(B, 69), t,
               lowres=True)
    inside = term(SimpleNamespace(batch=batch, posed=posed, body=fb))
    assert torch.all(inside > 1.0)  # 20 cm apart: torsos deep inside each other (cm^2 per vertex)
    inside.sum().backward()
    # Descending the penalty moves the left body left and the right body right.
    assert t.grad[0, 0] > 0 and t.grad[1, 0] < 0
    # Other photos' bodies never interact.
    alone = term(SimpleNamespace(batch=SimpleNamespace(group=torch.tensor([0, 1])), posed=posed, body=fb))
    assert alone is None


def test_depth_order_penalises_the_body_in_front_where_the_other_owns_the_pixels(free_body):
    """Two bodies on one line of sight: where b's mask owns the pixels, a must be behind b."""
    fb = FitBody.from_body(free_body)
    S, res = 56, 224
    cam = CropCamera(res, torch.tensor([600.0, 600.0]), torch.tensor([[112.0, 112.0], [112.0, 112.0]]))
    own = torch.zeros(2, S, S)
    others = torch.ones(2, S, S)  # a's crop: b everywhere; b's crop: a everywhere
    others[1] = 0.0
    own[1] = 1.0
    batch = SimpleNamespace(group=torch.tensor([0, 0]), occluders=others, mask=own)
    term = DepthOrderTerm()
    wrong = term(SimpleNamespace(batch=batch, posed=_posed(fb, [[0, 0, 3.0], [0, 0, 4.0]]), cam=cam))
    right = term(SimpleNamespace(batch=batch, posed=_posed(fb, [[0, 0, 4.0], [0, 0, 3.0]]), cam=cam))
    # a in front by 1 m where b owns everything: its vertices are ~1 m in front of b's front surface.
    assert 0.3 < float(wrong[0]) < 1.5 and float(wrong[1]) == 0.0
    assert float(right.abs().max()) < 0.05


def test_side_view_keeps_people_far_apart_in_depth_in_the_picture(free_body):
    """Two people 4 m apart in depth sit side by side in the side view; both must stay in the picture."""
    from neuralfit.photo.outputs import _SIDE_BACKGROUND, side_view
    from neuralfit.photo.results import ImageFit, PersonFit

    fb = FitBody.from_body(free_body)
    posed = free_body(betas=torch.zeros(2, fb.n_betas), global_orient=torch.tensor([[math.pi, 0.0, 0.0]] * 2),
                      body_pose=torch.zeros(2, 69), transl=torch.tensor([[0.0, 0.0, 3.0], [-0.8, 0.0, 7.0]]))
    faces = free_body.faces.cpu().numpy()
    r = ImageFit(source="x", stem="x", image_size=(480, 360), focal_length=500.0,
                 principal_point=np.array([180.0, 240.0]))
    for k in range(2):
        v = posed.vertices[k].numpy()
        r.people.append(PersonFit(np.zeros(10), np.zeros(3), np.zeros(69), np.zeros(3), posed.joints[k].numpy(), v,
                                  np.zeros(4), np.zeros(2), 1.0, None, None))
    pic = side_view(r, faces)
    body = (pic != _SIDE_BACKGROUND).any(-1)
    cols = np.nonzero(body.any(0))[0]
    # Both bodies drawn: two separate runs of columns, neither touching the picture's border.
    gaps = np.nonzero(np.diff(cols) > 1)[0]
    assert len(gaps) >= 1 and cols.min() > 0 and cols.max() < pic.shape[1] - 1
    assert body[0].sum() == 0 and body[-1].sum() == 0


def test_redetection_paints_the_others_but_never_this_persons_own_skeleton(monkeypatch):
    """Found again inside their box, a person sees the others painted grey, except where the others overlap
    this person's own skeleton region (someone behind would otherwise hide this person's limbs)."""
    import neuralfit.photo.people as people_mod
    from neuralfit.detect.everyone import body_region, painted_region

    hw = (400, 600)
    front, back = (150, 60, 330, 380), (260, 20, 420, 300)  # overlapping boxes
    pic = _photo([front, back], hw)
    d_front, d_back = _person(*front, hw), _person(*back, hw)
    seen = {}

    def capture(detector, image, bbox, flip=False):
        seen["image"] = image
        return None  # nobody found: the first answer is kept

    monkeypatch.setattr(people_mod, "detect_in_box", capture)
    assert people_mod._redetect(lambda im: None, pic, d_front, [d_back]) is d_front
    img = seen["image"]
    own = body_region(d_front, hw)
    other = painted_region(d_back, hw, 1)
    assert (other & own).any() and (other & ~own).any()  # the test needs both kinds of overlap
    assert np.array_equal(img[own], pic[own])
    assert (img[other & ~own] == 127).all()
