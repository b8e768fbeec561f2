"""People cut by the photo's edges (neuralfit.photo.people.cut_by_frame) and the warning the fit writes."""

from __future__ import annotations

import numpy as np

from neuralfit.photo.people import cut_by_frame

HW = (100, 80)


def _mask(y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    m = np.zeros(HW, np.float32)
    m[y0:y1, x0:x1] = 1.0
    return m


def test_a_person_inside_the_photo_is_not_cut():
    assert cut_by_frame(np.array([20, 10, 50, 90]), _mask(10, 90, 20, 50), HW) == []
    assert cut_by_frame(np.array([20, 10, 50, 90]), None, HW) == []


def test_a_mask_on_the_border_cuts_that_edge_even_when_the_box_stops_short():
    # The box (mediapipe's, around the keypoints it trusts) ends above the border; the mask reaches it.
    assert cut_by_frame(np.array([20, 10, 50, 90]), _mask(10, 100, 20, 50), HW) == ["bottom"]
    assert cut_by_frame(np.array([20, 10, 78, 90]), _mask(10, 90, 20, 80), HW) == ["right"]


def test_a_few_border_pixels_or_someone_else_on_the_border_do_not_cut():
    m = _mask(10, 90, 20, 50)
    m[99, 30] = 1.0  # one pixel on the bottom row: 1 of a 30 px wide box, under the 5 % share
    assert cut_by_frame(np.array([20, 10, 50, 90]), m, HW) == []
    m = _mask(10, 90, 20, 50)
    m[99, 60:80] = 1.0  # a mask on the bottom row, but beside the box: not this person
    assert cut_by_frame(np.array([20, 10, 50, 90]), m, HW) == []


def test_without_a_mask_the_box_on_the_edges_decides():
    assert cut_by_frame(np.array([0, 0, 80, 100]), None, HW) == ["top", "bottom", "left", "right"]
    assert cut_by_frame(np.array([0.5, 10, 50, 99.2]), None, HW) == ["bottom", "left"]

