"""The photo fit's occlusion map read from the part head (``neuralfit.photo.occlusion``,
``FitImageConfig.occlusion_from_parts``)."""

import numpy as np
import pytest

from neuralfit.errors import NeuralfitError
from neuralfit.photo.occlusion import body_cells, dilate, extend, occlusion_from_parts, smooth_on
from neuralfit.pipeline import FitImageConfig


def _body_with_block(size: int = 32):
    body = np.zeros((size, size), bool)
    body[4:28, 10:22] = True  # a 24 x 12 "person"
    bg = np.full((size, size), 0.05, np.float32)
    bg[18:28, 10:22] = 0.9  # the head says "no body" over the lower part: an occluder
    bg[~body] = 1.0  # and background off the body
    return body, bg


def test_the_occluder_is_hidden_and_the_visible_body_is_not():
    body, bg = _body_with_block()
    occ = occlusion_from_parts(bg, body, (0.25, 0.45), smooth=3)
    assert occ.dtype == np.float32 and occ.shape == body.shape
    assert np.all(occ[~body] == 0.0)
    # Away from the block's edge the 3 x 3 mean is the block's value: (0.9 - 0.25) / 0.2 -> clipped to 1.
    np.testing.assert_allclose(occ[20:28, 11:21], 1.0)
    # The visible body, more than one cell from the block, reads 0.05 -> 0.
    np.testing.assert_allclose(occ[4:16, 10:22], 0.0)
    # Smoothing counts body cells only: the background off the body (1.0) does not leak onto the body's
    # edge (an unrestricted 3 x 3 mean would put 0.37 -> 0.6 on the visible edge cells).
    assert occ[4:16, 10].max() == 0.0 and occ[4, 10:22].max() == 0.0


def test_smoothing_averages_over_body_cells_only():
    where = np.zeros((5, 5), bool)
    where[1:4, 1:4] = True
    x = np.where(where, 0.2, 9.0).astype(np.float32)
    x[2, 2] = 1.1
    s = smooth_on(x, where, 3)
    assert s[2, 2] == pytest.approx((8 * 0.2 + 1.1) / 9)
    assert s[1, 1] == pytest.approx((3 * 0.2 + 1.1) / 4)  # 4 body cells in its 3 x 3 window
    assert s[0, 0] == 9.0  # cells outside keep their value
    np.testing.assert_array_equal(smooth_on(x, where, 1), x)


def test_another_person_in_front_hides_the_body_where_this_persons_mask_is_absent():
    body = np.ones((4, 4), bool)
    bg = np.zeros((4, 4), np.float32)  # the head sees body everywhere
    others = np.zeros((4, 4), np.float32)
    others[:, 2:] = 1.0  # someone else's mask over the right half
    mask = np.ones((4, 4), np.float32)
    mask[:, 3] = 0.0  # this person's mask misses the last column
    occ = occlusion_from_parts(bg, body, (0.25, 0.45), smooth=1, mask=mask, others=others)
    np.testing.assert_allclose(occ[:, :3], 0.0)  # seen, or nobody in front
    np.testing.assert_allclose(occ[:, 3], 1.0)  # not seen, someone else there
    # Without this person's mask, another person's mask alone counts.
    occ = occlusion_from_parts(bg, body, (0.25, 0.45), smooth=1, others=others)
    np.testing.assert_allclose(occ[:, 2:], 1.0)


def test_body_cells_cover_the_projected_mesh():
    # A square 1.04 m wide at 4 m in front of a 400 px focal camera: 104 x 104 photo pixels around the
    # principal point (300, 200). A grid of 50 cells over photo x in [200, 400), y in [100, 300): 4 px per cell.
    verts = np.array([[-0.52, -0.52, 4.0], [0.52, -0.52, 4.0], [0.52, 0.52, 4.0], [-0.52, 0.52, 4.0]])
    faces = np.array([[0, 1, 2], [0, 2, 3]])
    affine = np.array([[0.25, 0.0, -50.0], [0.0, 0.25, -25.0]])  # photo -> grid
    cells = body_cells(verts, faces, 400.0, np.array([300.0, 200.0]), affine, 50)
    # The square spans photo x, y in [248, 352) x [148, 252) -> grid [12, 38): cell centres 12.5 .. 37.5.
    want = np.zeros((50, 50), bool)
    want[12:38, 12:38] = True
    np.testing.assert_array_equal(cells, want)


def test_extend_and_dilate():
    where = np.zeros((3, 5), bool)
    where[1, 1] = where[1, 3] = True
    v = np.zeros((3, 5), np.float32)
    v[1, 1], v[1, 3] = 0.2, 0.8
    e = extend(v, where)
    assert e[0, 0] == pytest.approx(0.2) and e[2, 4] == pytest.approx(0.8)
    assert e[1, 1] == pytest.approx(0.2) and e[1, 3] == pytest.approx(0.8)
    d = dilate(where)
    assert d.sum() == 15 and d.dtype == np.float32  # two 3 x 3 squares fill the 3 x 5 grid
    np.testing.assert_array_equal(extend(v, np.zeros_like(where)), v)


@pytest.mark.parametrize("kwargs", [{"occlusion_from_parts": (0.5, 0.2)}, {"occlusion_from_parts": (-0.1, 0.4)},
                                    {"occlusion_smooth": 0}, {"occlusion_smooth": 2.5}])
def test_bad_settings_are_one_line_errors(kwargs):
    with pytest.raises(NeuralfitError) as e:
        FitImageConfig(**kwargs)
    assert "\n" not in str(e.value)


def test_settings_are_normalised_and_can_be_turned_off():
    c = FitImageConfig(occlusion_from_parts=[0.2, 0.6])
    assert c.occlusion_from_parts == (0.2, 0.6)
    assert FitImageConfig(occlusion_from_parts=None).occlusion_from_parts is None


def test_finish_image_writes_the_part_head_map_over_the_whole_fitted_body(free_body):
    """The photo path end to end from a fitted person to ``ImageFit.occlusion``: the map is the part head's
    over the body (1 where the head says background everywhere, 0 where it sees body), 0 off the body, and
    ``occlusion_source`` says where it came from; without the cue the fitter's map (here none) is kept."""
    import torch

    from neuralfit.init.types import StartParams
    from neuralfit.photo.people import Crop, Person
    from neuralfit.photo.results import ImageFit
    from neuralfit.photo.start import PersonStart
    from neuralfit.photo.steps import FittedPerson, PersonCrop, finish_image

    h, w, f = 240, 320, 300.0
    pic = np.zeros((h, w, 3), np.uint8)
    # A standing body 3 m in front of the camera, facing it (SMPL's y up -> the camera's y down).
    fit = FittedPerson(np.array([np.pi, 0.0, 0.0], np.float32), np.zeros(69, np.float32), np.zeros(10, np.float32),
                       np.array([0.0, 0.3, 3.0], np.float32), "blazepose33")
    start = PersonStart(StartParams(torch.zeros(1, 3), torch.zeros(1, 69), torch.zeros(1, 10), torch.zeros(1, 3)),
                        "mediapipe3d", True)
    crop = Crop(np.array([160.0, 120.0]), 1.2, 256)  # 240 px square crop around the photo centre
    size = 64
    person = Person(0, np.array([100, 10, 220, 230], np.float32), None, None)

    def run(background, cue):
        r = ImageFit(source="<array 0>", stem="x", image_size=(h, w), focal_length=f,
                     principal_point=np.array([160.0, 120.0]))
        c = PersonCrop(crop, None, None, np.ones((size, size), np.float32), f, np.zeros(2), person.bbox,
                       background=background)
        finish_image(pic, r, [person], [c], [fit], [start], free_body, render=True, occlusion_cue=cue)
        return r

    r = run(np.ones((size, size), np.float32), (0.25, 0.45))
    body = r.body_mask
    assert body.sum() > 2000 and r.people[0].occlusion_source == "part head"
    assert r.occlusion[body].mean() > 0.99 and np.all(r.occlusion[~body] == 0.0)
    assert r.people[0].occlusion_fraction == pytest.approx(1.0)
    r = run(np.zeros((size, size), np.float32), (0.25, 0.45))
    assert r.occlusion.max() == 0.0 and r.people[0].occlusion_fraction == 0.0
    r = run(np.ones((size, size), np.float32), None)  # the cue off: the fitter's map, which this fit has none of
    assert r.occlusion is None and r.people[0].occlusion_source == ""


@pytest.mark.parametrize("flag, want", [("0.2,0.5", (0.2, 0.5)), ("fitter", None), ("FITTER", None)])
def test_cli_occlusion_map_flag_reaches_the_config(tmp_path, capsys, monkeypatch, flag, want):
    from test_boxes import cli_config

    assert cli_config(tmp_path, capsys, monkeypatch, ["--occlusion-map", flag]).occlusion_from_parts == want


@pytest.mark.parametrize("flag, msg", [("high", "expected LO,HI (two numbers) or fitter"),
                                       ("0.6,0.2", "occlusion_from_parts must be (lo, hi)")])
def test_cli_bad_occlusion_map_is_one_line_error_writing_nothing(tmp_path, capsys, monkeypatch, flag, msg):
    from test_boxes import one_line, run_cli

    img = tmp_path / "p.jpg"
    img.write_bytes(b"not read")
    out = tmp_path / "out"
    code, err = run_cli(["fit", img, "--out", out, "--occlusion-map", flag], capsys, monkeypatch)
    assert code == 1 and msg in one_line(err, "error"), err
    assert not out.exists()
