"""Scoring whole-frame multi-person fits on the real benchmark (issue 17), on synthetic stand-ins.

No mediapipe, no fitting: ``neuralfit.fit_image`` is replaced by a stub returning hand-made
:class:`ImageFit` / :class:`PersonFit` objects, and the ground-truth people are hand-made
:class:`PersonView` s.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import neuralfit
from neuralfit.errors import NeuralfitError
from neuralfit.eval.multiview import SMPL_LIMB12
from neuralfit.eval.real_data import PersonView, RealSet
from neuralfit.eval.real_methods import (
    BUILTIN,
    MULTI_MAX_PEOPLE,
    MethodSpec,
    MultiResult,
    Runner,
    match_people,
    parse_method,
    project_torso,
    unsupported,
)
from neuralfit.eval.real_report import (
    both_found,
    found_lines,
    match_rows,
    method_folder,
    person_table,
    relative_lines,
    run_multi,
    score_rows,
)
from neuralfit.photo.results import ImageFit, PersonFit

F, CX, CY = 1680.0, 540.0, 960.0


def joints_at(centre: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(24, 3) SMPL-like joints around a 3D ``centre`` (camera frame): shoulders above, hips below."""
    j = centre + rng.normal(0, 0.05, (24, 3))
    j[16] = centre + [0.18, -0.45, 0.0]   # left shoulder (subject's left: image right as seen from the front)
    j[17] = centre + [-0.18, -0.45, 0.0]
    j[1] = centre + [0.06, 0.05, 0.0]
    j[2] = centre + [-0.06, 0.05, 0.0]
    return j


def keypoints_of(joints: np.ndarray, noise: float = 0.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """(33, 3) BlazePose-like 2D keypoints whose torso is the joints' projected torso."""
    kp = np.zeros((33, 3))
    kp[:, 2] = 1.0
    torso = project_torso(joints, F, (CX, CY))
    kp[[11, 12, 23, 24], :2] = torso
    centre = torso.mean(0)
    others = [i for i in range(33) if i not in (11, 12, 23, 24)]
    kp[others, :2] = centre
    if noise and rng is not None:
        kp[:, :2] += rng.normal(0, noise, (33, 2))
    return kp


def person_fit(joints: np.ndarray, keypoints: np.ndarray | None = None) -> PersonFit:
    torso = project_torso(joints, F, (CX, CY))
    box = np.array([*(torso.min(0) - 100), *(torso.max(0) + 300)])
    return PersonFit(np.zeros(10), np.zeros(3), np.zeros(69), joints[0], joints, np.zeros((10, 3)), box,
                     box.reshape(2, 2).mean(0), 1.0, keypoints, "blazepose33" if keypoints is not None else None)


def image_fit(people: list[PersonFit], status: str = "ok") -> ImageFit:
    return ImageFit("<array 0>", "a0", status=status, message="" if status == "ok" else status,
                    image_size=(1920, 1088), focal_length=F, principal_point=np.array([CX, CY]), people=people)


def gt_view(frame: int, view: int, person: str, joints: np.ndarray) -> PersonView:
    kp = keypoints_of(joints)
    t = kp[[11, 12, 23, 24], :2]
    box = np.array([*(t.min(0) - 150), *(t.max(0) + 500)])
    gt = joints[list(SMPL_LIMB12)]
    return PersonView(frame, view, person, box, kp, gt, gt.copy(), F)


def realset(items: list[PersonView]) -> RealSet:
    z = np.zeros(0)
    return RealSet(items, [], sorted({it.frame for it in items}), z, z, z, np.zeros(4), 0, 0)


WOMAN = np.array([-0.4, 0.0, 2.3])
MAN = np.array([0.5, -0.1, 3.4])


@pytest.fixture
def people() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return joints_at(WOMAN, rng), joints_at(MAN, rng)


@pytest.fixture
def runner(monkeypatch: pytest.MonkeyPatch) -> Runner:
    r = Runner()
    monkeypatch.setattr(r, "_blazepose", lambda joints, vertices: np.full((12, 3), np.nan))
    return r


def multi_of(runner: Runner, monkeypatch: pytest.MonkeyPatch, fit: ImageFit,
             spec: MethodSpec | None = None) -> MultiResult:
    calls = []

    def fake_fit_image(image, **kwargs):
        calls.append(kwargs)
        return fit

    monkeypatch.setattr(neuralfit, "fit_image", fake_fit_image)
    res = runner.fit_multi(spec or BUILTIN["multi"], np.zeros((8, 8, 3), np.uint8), 1675.0)
    assert "bbox" not in calls[0] and calls[0]["max_people"] == MULTI_MAX_PEOPLE
    return res


def test_parse_multi_specs() -> None:
    assert BUILTIN["multi"].kind == "multi" and dict(BUILTIN["multi"].kwargs) == {"max_people": 3}
    s = parse_method("m2:multi=1,max_people=2,focal=calib")
    assert s.kind == "multi" and dict(s.kwargs) == {"max_people": 2, "focal": "calib"}
    s = parse_method("m3:multi=true")
    assert s.kind == "multi" and dict(s.kwargs) == {"max_people": MULTI_MAX_PEOPLE}
    s = parse_method("one:multi=0,focal=calib")
    assert s.kind == "fit" and dict(s.kwargs) == {"focal": "calib"}
    assert parse_method("a:multi=1").key != parse_method("a:x=1").key
    with pytest.raises(NeuralfitError, match="multi takes"):
        parse_method("bad:multi=2")
    # Multi fits are cached under the code tag like the other fits; mediapipe's own 3D is not.
    assert method_folder(Path("c"), BUILTIN["multi"], [], "abcd1234").name.endswith("-abcd1234")
    assert method_folder(Path("c"), BUILTIN["mediapipe3d"], [], "abcd1234").name == BUILTIN["mediapipe3d"].key


def test_unsupported_multi(monkeypatch: pytest.MonkeyPatch) -> None:
    def old_fit_image(images, *, bbox=None, focal=None):
        return None

    monkeypatch.setattr(neuralfit, "fit_image", old_fit_image)
    assert any("max_people" in w for w in unsupported(BUILTIN["multi"], {}))
    assert unsupported(BUILTIN["mediapipe3d"], {}) == []

    def new_fit_image(images, *, bbox=None, focal=None, max_people=None):
        return None

    monkeypatch.setattr(neuralfit, "fit_image", new_fit_image)
    assert unsupported(BUILTIN["multi"], {}) == []
    assert any("bbox" in w for w in unsupported(parse_method("x:multi=1,bbox=1"), {}))


def test_project_torso_matches_pinhole(people) -> None:
    woman, _ = people
    t = project_torso(woman, F, (CX, CY))
    assert t.shape == (4, 2)
    np.testing.assert_allclose(t[0], F * woman[16, :2] / woman[16, 2] + [CX, CY])
    behind = woman.copy()
    behind[:, 2] *= -1
    assert np.all(np.isnan(project_torso(behind, F, (CX, CY))))


def test_fit_multi_and_cache_roundtrip(runner, monkeypatch, people, tmp_path: Path) -> None:
    woman, man = people
    fit = image_fit([person_fit(woman, keypoints_of(woman)), person_fit(man)])
    res = multi_of(runner, monkeypatch, fit)
    assert res.ok and res.n == 2
    np.testing.assert_allclose(res.limb12[1], man[list(SMPL_LIMB12)])
    np.testing.assert_allclose(res.torso2d[0], project_torso(woman, F, (CX, CY)))
    assert np.all(np.isfinite(res.keypoints[0])) and np.all(np.isnan(res.keypoints[1]))
    res.save(tmp_path / "r.npz")
    back = MultiResult.load(tmp_path / "r.npz")
    assert back.ok and back.n == 2
    np.testing.assert_allclose(back.torso2d, res.torso2d)
    np.testing.assert_array_equal(np.isnan(back.keypoints), np.isnan(res.keypoints))
    one = back.person(1)
    assert one.ok and np.isclose(one.seconds, back.seconds / 2)

    nobody = multi_of(runner, monkeypatch, image_fit([], status="no_person"))
    assert nobody.ok and nobody.n == 0
    failed = multi_of(runner, monkeypatch, image_fit([], status="failed"))
    assert not failed.ok
    nobody.save(tmp_path / "n.npz")
    assert MultiResult.load(tmp_path / "n.npz").n == 0


def test_match_people_one_to_one(runner, monkeypatch, people) -> None:
    woman, man = people
    gts = [gt_view(0, 0, "front", woman), gt_view(0, 0, "back", man)]
    kps, boxes = [g.keypoints for g in gts], [g.box for g in gts]
    # Found in the other order (the man's box is the larger one): still matched to the right people.
    res = multi_of(runner, monkeypatch, image_fit([person_fit(man), person_fit(woman)]))
    m, d = match_people(res, kps, boxes)
    assert m == [1, 0] and d.shape == (2, 2) and d[0, 1] < 0.01 and d[1, 0] < 0.01
    # Only the woman fitted: the man is not found (her torso is far from his); the woman is matched.
    res1 = multi_of(runner, monkeypatch, image_fit([person_fit(woman)]))
    assert match_people(res1, kps, boxes)[0] == [0, None]
    # A huge threshold gives the only fit to the nearer person, never to both.
    assert match_people(res1, kps, boxes, max_dist=10.0)[0] == [0, None]
    # Two fits on the woman (a doubled person): one is hers, the other matches nobody within the threshold.
    rng = np.random.default_rng(1)
    res2 = multi_of(runner, monkeypatch, image_fit([person_fit(woman), person_fit(woman + rng.normal(0, 0.01, (24, 3)))]))
    m2, _ = match_people(res2, kps, boxes)
    assert m2[1] is None and m2[0] in (0, 1)
    # No GT people, or no fits.
    assert match_people(res, [], [])[0] == []
    assert match_people(MultiResult(True), kps, boxes)[0] == [None, None]


def test_match_people_sides_and_keypoints(runner, monkeypatch, people) -> None:
    woman, man = people
    gts = [gt_view(0, 0, "front", woman), gt_view(0, 0, "back", man)]
    kps, boxes = [g.keypoints for g in gts], [g.box for g in gts]
    # A fit seen from behind (left and right swapped) still matches: the distance is side-agnostic.
    turned = woman.copy()
    turned[[16, 17, 1, 2]] = woman[[17, 16, 2, 1]]
    res = multi_of(runner, monkeypatch, image_fit([person_fit(turned)]))
    assert match_people(res, kps, boxes)[0] == [0, None]
    # use="keypoints": matched on the keypoints the fit was given, not on where its body landed.
    off = woman + np.array([0.9, 0.0, 0.0])  # the body drifted onto the man's side
    res = multi_of(runner, monkeypatch, image_fit([person_fit(off, keypoints_of(woman))]))
    assert match_people(res, kps, boxes, use="keypoints")[0] == [0, None]
    assert match_people(res, kps, boxes, use="torso")[0][0] is None
    # A projection that is not finite falls back to the fitted keypoints.
    res.torso2d[:] = np.nan
    assert match_people(res, kps, boxes, use="torso")[0] == [0, None]
    with pytest.raises(NeuralfitError):
        match_people(res, kps, boxes, use="nose")


def test_rows_tables_and_both_found(runner, monkeypatch, people, tmp_path: Path) -> None:
    woman, man = people
    rng = np.random.default_rng(2)
    items = []
    for f in range(3):
        for v in range(2):
            items += [gt_view(f, v, "front", woman), gt_view(f, v, "back", man)]
    items.append(gt_view(3, 0, "front", woman))  # the man has no GT in this frame-view
    rset = realset(items)
    # Frame-view answers: both fitted (also with a bystander); only the woman; only the man; nobody; a failure.
    near_man = man + rng.normal(0, 0.005, (24, 3))
    answers = {
        (0, 0): image_fit([person_fit(woman), person_fit(man)]),
        (0, 1): image_fit([person_fit(man), person_fit(woman), person_fit(woman + [3.0, 0, 0])]),  # + a bystander
        (1, 0): image_fit([person_fit(woman)]),
        (1, 1): image_fit([person_fit(near_man)]),
        (2, 0): image_fit([], status="no_person"),
        (2, 1): image_fit([], status="failed"),
        (3, 0): image_fit([person_fit(woman)]),
    }
    calls = []

    def fake_fit_image(image, **kwargs):
        calls.append(image[0, 0, 0])
        return answers[int(image[0, 0, 0]), int(image[0, 0, 1])]

    monkeypatch.setattr(neuralfit, "fit_image", fake_fit_image)

    def image_of(f: int, v: int) -> np.ndarray:
        im = np.zeros((4, 4, 3), np.uint8)
        im[0, 0] = (f, v, 0)
        return im

    fvs = sorted(answers)
    spec = BUILTIN["multi"]
    folder = tmp_path / "multi"
    multi = run_multi(spec, fvs, runner, folder, image_of, lambda v: F)
    assert len(calls) == len(fvs) and len(list(folder.glob("*.npz"))) == len(fvs)
    again = run_multi(spec, fvs, runner, folder, image_of, lambda v: F)  # resumes from the cache
    assert len(calls) == len(fvs) and again[0, 1].n == 3

    results, matches = match_rows(items, multi, rset)
    by = {(it.frame, it.view, it.person): r for it, r in zip(items, results, strict=True)}
    assert by[0, 0, "front"].ok and by[0, 0, "back"].ok
    np.testing.assert_allclose(by[0, 1, "back"].limb12, man[list(SMPL_LIMB12)])
    assert by[1, 0, "front"].ok and not by[1, 0, "back"].ok and by[1, 0, "back"].message == "not found"
    assert by[1, 1, "back"].ok and not by[1, 1, "front"].ok
    assert not by[2, 0, "front"].ok and by[2, 1, "front"].message == "failed"
    assert matches[0, 1].extra == 1 and matches[0, 1].n_fitted == 3 and matches[2, 0].n_fitted == 0

    rows = score_rows(items, results, rset)
    row = {(r.item.frame, r.item.view, r.item.person): r for r in rows}
    assert row[0, 0, "front"].identity == "self" and row[0, 0, "front"].scores.pa_mpjpe < 1.0
    assert row[1, 0, "back"].identity == "none"
    assert both_found(rows) == (2, 2, 6)

    # The box method alongside: every body came back, but in (1, 0) the man's box returned the woman.
    box_results = [runner_result(it, woman if (it.frame, it.view) == (1, 0) else None) for it in items]
    box_rows = score_rows(items, box_results, rset)
    assert both_found(box_rows) == (6, 5, 6)

    per_method = {"mediapipe3d": box_rows, "multi": rows}
    table = person_table(per_method, ["front", "back"], found=True)
    assert "| found |" in table
    front_multi = next(line for line in table.splitlines() if line.startswith("| front | multi |"))
    assert "| 4/7 |" in front_multi  # found in (0,0), (0,1), (1,0), (3,0) of 7 front person-views
    back_multi = next(line for line in table.splitlines() if line.startswith("| back | multi |"))
    assert "| 3/6 | 0/6 |" in back_multi
    back_box = next(line for line in table.splitlines() if line.startswith("| back | mediapipe3d |"))
    assert "| 6/6 | 1/6 |" in back_box
    text = found_lines(per_method, {"multi": matches}, {"multi": multi})
    assert "`multi`: both found in 2 of 6 frame-views where both have GT (33 %)" in text
    assert "`mediapipe3d`: both found in 6 of 6" in text and "right person: 5 of 6" in text
    assert "fits matched to no GT person: 1" in text and "failed calls: 1" in text
    assert "0: 2, 1: 3, 2: 1, 3: 1" in text


def runner_result(it: PersonView, instead: np.ndarray | None):
    """A per-box result: the person's own GT joints, or another person's (``instead``) when given."""
    from neuralfit.eval.real_methods import MethodResult

    if instead is None:
        return MethodResult(True, "", it.gt.copy(), torso2d=it.keypoints[[11, 12, 23, 24], :2].copy(), seconds=0.1)
    return MethodResult(True, "", instead[list(SMPL_LIMB12)], torso2d=project_torso(instead, F, (CX, CY)),
                        seconds=0.1)


def test_who_by_mask_reads_the_torso_against_the_person_masks():
    from neuralfit.eval.real_methods import who_by_mask

    step = 4
    own = np.zeros((100, 200), bool)
    own[:, :100] = True  # the expected person: left half of an 800 x 400 photo (subsampled by 4)
    other = ~own
    left = np.array([[100, 100], [300, 100], [100, 300], [300, 300]], float)  # l/r shoulder, l/r hip
    right = left + [450, 0]
    assert who_by_mask(left, own, [other], step) == "self"
    assert who_by_mask(right, own, [other], step) == "other"
    # On nobody's mask (background) it is not called someone else.
    assert who_by_mask(right, own, [np.zeros_like(own)], step) == "self"
    assert who_by_mask(np.full((4, 2), np.nan), own, [other], step) == "none"
    assert who_by_mask(left, None, [other], step) == "none"


def test_relative_lines_compare_means_on_the_person_views_every_method_fitted():
    """The camera issue's gates as printed: 1 - mean(method) / mean(mediapipe3d) of the PA as BlazePose points,
    over the person-views both fitted. View 2 failed for the fit, so mediapipe's 200 mm there is left out:
    1 - (90 + 70) / (100 + 80) = 11.11 %."""
    from neuralfit.eval.multiview import Scores
    from neuralfit.eval.real_methods import MethodResult
    from neuralfit.eval.real_report import Row

    def row(view: int, pa: float, ok: bool = True) -> Row:
        it = PersonView(0, view, "front", np.zeros(4), np.zeros((33, 3)), np.zeros((12, 3)), np.zeros((12, 3)), 1.0)
        s = Scores(pa, pa, pa, pa)
        return Row(it, MethodResult(ok), s, s, s, "self")

    per_method = {"mediapipe3d": [row(0, 100.0), row(1, 80.0), row(2, 200.0)],
                  "default": [row(0, 90.0), row(1, 70.0), row(2, float("nan"), ok=False)]}
    assert relative_lines(per_method, ["front"]) == (
        "- front, `default`: 80.00 vs 90.00 mm PA as BlazePose points, +11.111 % better than `mediapipe3d`")
    assert relative_lines({"default": per_method["default"]}, ["front"]) == ""
