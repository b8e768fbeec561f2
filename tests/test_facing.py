"""The part head's left/right check of a fit's facing (neuralfit.photo.facing, photo.steps.swap_sides)."""

from __future__ import annotations

import numpy as np
import pytest

from neuralfit.body.parts import NUM_PART_CLASSES, PART_NAMES
from neuralfit.detect.mediapipe_pose import BLAZEPOSE_FLIP
from neuralfit.errors import NeuralfitError
from neuralfit.photo.facing import lr_evidence, mirror_classes


def test_mirror_classes_exchange_left_and_right_only():
    m = mirror_classes()
    assert (m[m] == np.arange(NUM_PART_CLASSES)).all()  # an involution
    assert m[0] == 0
    for i, name in enumerate(PART_NAMES):
        other = PART_NAMES[m[1 + i] - 1]
        if name.startswith("left"):
            assert other == "right" + name[4:]
        elif name.startswith("right"):
            assert other == "left" + name[5:]
        else:
            assert other == name


def _soft(classes: np.ndarray, rng: np.random.Generator, sharp: float = 4.0) -> np.ndarray:
    """(25, H, W) softmax of random logits with the given classes raised by ``sharp``."""
    logits = rng.normal(size=(NUM_PART_CLASSES, *classes.shape))
    np.put_along_axis(logits, classes[None], np.take_along_axis(logits, classes[None], 0) + sharp, 0)
    e = np.exp(logits - logits.max(0))
    return (e / e.sum(0)).astype(np.float32)


def test_evidence_is_positive_when_the_head_agrees_and_flips_sign_with_the_sides():
    rng = np.random.default_rng(0)
    classes = rng.integers(0, NUM_PART_CLASSES, size=(16, 16))
    probs = _soft(classes, rng)
    e = lr_evidence(probs, classes)
    assert e > 1.0
    # A head that reads every part with its sides exchanged gives exactly the opposite evidence: the
    # central parts add 0 either way, the lateral ones swap their two log-probabilities.
    assert lr_evidence(probs[mirror_classes()], classes) == pytest.approx(-e, rel=1e-5, abs=1e-6)
    # Only central parts on the body: no left/right say.
    central = np.where(mirror_classes()[classes] == classes, classes, 0)
    assert lr_evidence(probs, central) == pytest.approx(0.0, abs=1e-6)
    assert lr_evidence(probs, np.zeros_like(classes)) == 0.0


def test_swap_sides_exchanges_labels_and_mirrors_the_3d_depth():
    from neuralfit.detect.mediapipe_pose import BLAZEPOSE33_NAMES
    from neuralfit.photo.people import Crop, Person
    from neuralfit.photo.steps import PersonCrop, swap_sides

    rng = np.random.default_rng(1)
    kp = rng.uniform(0, 100, size=(33, 3)).astype(np.float32)
    world = rng.normal(size=(33, 4)).astype(np.float32)
    person = Person(0, np.array([0, 0, 100, 100], np.float32), kp, "blazepose33", world_landmarks=world)
    crop = PersonCrop(Crop(np.array([50.0, 50.0]), 0.5, 224), kp * 2, "blazepose33", None, 500.0,
                      np.array([112.0, 112.0]), person.bbox)
    p2, c2 = swap_sides(person, crop)
    li, ri = BLAZEPOSE33_NAMES.index("left_wrist"), BLAZEPOSE33_NAMES.index("right_wrist")
    assert np.array_equal(p2.keypoints[li], kp[ri]) and np.array_equal(c2.keypoints[ri], 2 * kp[li])
    assert np.allclose(p2.world_landmarks[li, :2], world[ri, :2]) and p2.world_landmarks[li, 2] == -world[ri, 2]
    p3, c3 = swap_sides(p2, c2)  # twice: back where it started
    assert np.array_equal(p3.keypoints, kp) and np.array_equal(p3.world_landmarks, world)
    assert np.array_equal(c3.keypoints, crop.keypoints)
    with pytest.raises(NeuralfitError):
        swap_sides(Person(0, person.bbox, kp[:17], "coco17"), crop)


def test_facing_check_setting_is_validated():
    from neuralfit.pipeline import FitImageConfig

    assert FitImageConfig(facing_check=0.3).facing_check == 0.3
    for bad in (-0.1, float("nan")):
        with pytest.raises(NeuralfitError, match="facing_check"):
            FitImageConfig(facing_check=bad)


def test_a_body_turned_round_reads_as_swapped_on_the_part_grid():
    """The free body at rest, seen from the front and from behind: the silhouette is nearly the same, and a
    head that reads the front view's parts gives the turned body clearly negative evidence."""
    import torch

    from neuralfit.body import load_body_model
    from neuralfit.photo.facing import rendered_parts

    body = load_body_model("free")
    faces = body.faces.numpy()
    face_class = body.part_labels.numpy()[faces[:, 0]] + 1
    size, focal = 64, 120.0

    def classes(yaw: float) -> np.ndarray:
        # Upright in OpenCV axes (x right, y down, z forward): pi about x, then the turn about the vertical.
        from scipy.spatial.transform import Rotation

        rot = Rotation.from_rotvec([0.0, yaw, 0.0]) * Rotation.from_rotvec([np.pi, 0.0, 0.0])
        with torch.no_grad():
            v = body(global_orient=torch.tensor(rot.as_rotvec()[None], dtype=torch.float32),
                     transl=torch.tensor([[0.0, 0.2, 4.0]])).vertices[0].numpy()
        return rendered_parts(v, faces, face_class, focal, np.array([32.0, 32.0]), np.eye(2, 3), size)

    front, back = classes(0.0), classes(np.pi)
    overlap = ((front > 0) & (back > 0)).sum() / max(1, ((front > 0) | (back > 0)).sum())
    assert overlap > 0.8  # the turned body covers nearly the same cells
    probs = _soft(front, np.random.default_rng(2))
    assert lr_evidence(probs, front) > 1.0
    assert lr_evidence(probs, back) < -0.5


@pytest.mark.parametrize("flag, want", [("0.5", 0.5), ("off", None), ("OFF", None)])
def test_cli_facing_check_flag_reaches_the_config(tmp_path, capsys, monkeypatch, flag, want):
    from test_boxes import cli_config

    assert cli_config(tmp_path, capsys, monkeypatch, ["--facing-check", flag]).facing_check == want


@pytest.mark.parametrize("flag, msg", [("high", "expected a number or off"), ("-1", "facing_check must be >= 0")])
def test_cli_bad_facing_check_is_one_line_error_writing_nothing(tmp_path, capsys, monkeypatch, flag, msg):
    from test_boxes import one_line, run_cli

    img = tmp_path / "p.jpg"
    img.write_bytes(b"not read")
    out = tmp_path / "out"
    code, err = run_cli(["fit", img, "--out", out, f"--facing-check={flag}"], capsys, monkeypatch)
    assert code == 1 and msg in one_line(err, "error"), err
    assert not out.exists()


@pytest.mark.parametrize("second, kept", [(0.4, True), (-2.0, False)])
def test_recheck_refits_only_flagged_people_and_keeps_the_better_read(monkeypatch, second, kept):
    """Person 0 reads swapped (-1), person 1 agrees (+1): only person 0 is refitted, from swapped keypoints,
    and the refit is kept only where the part head agrees with it more."""
    import torch

    from neuralfit.photo import steps
    from neuralfit.photo.people import Crop, Person
    from neuralfit.photo.steps import FittedPerson, PersonCrop
    from neuralfit.pipeline import FitImageConfig, ImageFitter

    kp = np.random.default_rng(3).uniform(0, 100, size=(33, 3)).astype(np.float32)
    people = [Person(0, np.array([0, 0, 100, 100], np.float32), kp.copy(), "blazepose33") for _ in range(2)]
    crops = [PersonCrop(Crop(np.array([50.0, 50.0]), 0.5, 224), kp.copy(), "blazepose33", None, 500.0,
                        np.array([112.0, 112.0]), p.bbox) for p in people]
    fitted = [FittedPerson(np.zeros(3), np.zeros(69), np.zeros(10), np.zeros(3), "blazepose33") for _ in people]
    starts = ["start0", "start1"]
    refits = []

    def fake_start_and_fit(self, sub_crops, sub_people, names, pred, timer=None):
        refits.append((sub_people, pred["part_probs"].shape[0]))
        return ["refit-start"], [FittedPerson(np.ones(3), np.zeros(69), np.zeros(10), np.zeros(3), "blazepose33")]

    calls = iter([[-1.0, 1.0], [second]])
    monkeypatch.setattr(steps, "facing_evidence", lambda *a: next(calls))
    monkeypatch.setattr(ImageFitter, "_start_and_fit", fake_start_and_fit)
    fitter = ImageFitter.__new__(ImageFitter)  # no assets: only the decision logic runs
    fitter.config, fitter.body = FitImageConfig(facing_check=0.3), None
    pred = {"part_probs": torch.zeros(2, 25, 4, 4)}
    fitter._recheck_facing(crops, people, ["a", "b"], pred, starts, fitted)
    assert len(refits) == 1 and len(refits[0][0]) == 1 and refits[0][1] == 1  # person 0 alone
    assert np.array_equal(refits[0][0][0].keypoints, kp[list(BLAZEPOSE_FLIP)])
    assert fitted[1].facing_evidence == 1.0 and not fitted[1].facing_swapped and starts[1] == "start1"
    if kept:
        assert fitted[0].facing_swapped and fitted[0].facing_evidence == second and starts[0] == "refit-start"
        assert np.array_equal(people[0].keypoints, refits[0][0][0].keypoints)
    else:
        assert not fitted[0].facing_swapped and fitted[0].facing_evidence == -1.0 and starts[0] == "start0"
        assert np.array_equal(people[0].keypoints, kp)
