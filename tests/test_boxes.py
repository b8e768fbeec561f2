"""``neuralfit fit --boxes FILE`` and ``--max-people`` (issue 17): the boxes-file parser, its matching
to the input photos, and the CLI's handling (one ``error:`` line, nothing written).

No test here runs mediapipe or a real fit: the CLI tests stop at a bad file or use a stand-in
``ImageFitter`` that records what the CLI passes. The one end-to-end test is ``slow``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from neuralfit.errors import NeuralfitError
from neuralfit.photo.boxes import boxes_for_images, load_boxes_file
from neuralfit.pipeline import FitImageConfig

needs_max_people = pytest.mark.skipif(not hasattr(FitImageConfig(), "max_people"),
                                      reason="FitImageConfig.max_people (issue 17, neuralfit/pipeline.py) not landed")


def write(tmp_path: Path, content, name: str = "b.json") -> Path:
    """A boxes file: ``content`` as JSON, or a str written as is (for broken files)."""
    p = tmp_path / name
    p.write_text(content if isinstance(content, str) else json.dumps(content))
    return p


def load_error(path: Path) -> str:
    """The message of the NeuralfitError that loading ``path`` raises; it must be one line."""
    with pytest.raises(NeuralfitError) as info:
        load_boxes_file(path)
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"boxes file {path}: "), msg
    return msg


# ---------------------------------------------------------------------------------------------- parser


def test_good_file_list_and_object_forms(tmp_path: Path):
    p = write(tmp_path, {"img1.jpg": [[10, 20, 200, 400], {"bbox": [220.5, 15, 380, 390], "score": 0.9, "id": 3}],
                         "img2.jpg": [[-5, -5, 30, 40]]})  # partly off the photo is allowed
    table = load_boxes_file(p)
    assert list(table) == ["img1.jpg", "img2.jpg"]
    assert table["img1.jpg"].dtype == np.float32 and table["img1.jpg"].shape == (2, 4)
    np.testing.assert_array_equal(table["img1.jpg"], [[10, 20, 200, 400], [220.5, 15, 380, 390]])
    np.testing.assert_array_equal(table["img2.jpg"], [[-5, -5, 30, 40]])


def test_empty_list_is_kept_as_no_person(tmp_path: Path):
    table = load_boxes_file(write(tmp_path, {"empty.jpg": [], "one.jpg": [[0, 0, 1, 1]]}))
    assert table["empty.jpg"].shape == (0, 4) and table["empty.jpg"].dtype == np.float32
    assert load_boxes_file(write(tmp_path, {}, "none.json")) == {}


@pytest.mark.parametrize("content, needles", [
    ({"img1.jpg": [[1, 1, 5, 5], [50, 0, 10, 40]]}, ['"img1.jpg" box 2: x1 <= x0 (inverted box [50, 0, 10, 40])']),
    ({"img1.jpg": [[1, 9, 5, 5]]}, ['"img1.jpg" box 1: y1 <= y0', "inverted"]),
    ({"img1.jpg": [[3, 1, 3, 5]]}, ['"img1.jpg" box 1: x1 <= x0', "zero-area"]),
    ({"img1.jpg": [[1, 4, 5, 4]]}, ['"img1.jpg" box 1: y1 <= y0', "zero-area"]),
    ({"img1.jpg": [["1", 1, 5, 5]]}, ['"img1.jpg" box 1', '"1" is not a finite number']),
    ({"img1.jpg": [[None, 1, 5, 5]]}, ['"img1.jpg" box 1', "null is not a finite number"]),
    ({"img1.jpg": [[True, 1, 5, 5]]}, ['"img1.jpg" box 1', "true is not a finite number"]),
    ('{"img1.jpg": [[NaN, 1, 5, 5]]}', ['"img1.jpg" box 1', "NaN is not a finite number"]),
    ('{"img1.jpg": [[0, 0, Infinity, 5]]}', ['"img1.jpg" box 1', "Infinity is not a finite number"]),
    ('{"img1.jpg": [[0, 0, 1e39, 5]]}', ['"img1.jpg" box 1', "not a finite number"]),  # inf as float32
    ({"a.jpg": [], "img1.jpg": [[1, 1, 5]]}, ['"img1.jpg" box 1: expected [x0, y0, x1, y1], got [1, 1, 5]']),
    ({"img1.jpg": [[1, 1, 5, 5, 6]]}, ['"img1.jpg" box 1: expected [x0, y0, x1, y1]']),
    ({"img1.jpg": [[[1, 1], [5, 5]]]}, ['"img1.jpg" box 1: expected [x0, y0, x1, y1]']),
    ({"img1.jpg": [{"box": [1, 1, 5, 5]}]}, ['"img1.jpg" box 1: an object without a "bbox" key']),
    ({"img1.jpg": [{"bbox": "1,1,5,5"}]}, ['"img1.jpg" box 1: expected [x0, y0, x1, y1], got "1,1,5,5"']),
    ({"img1.jpg": [1, 1, 5, 5]}, ['"img1.jpg" box 1: expected [x0, y0, x1, y1], got 1']),  # one box, unwrapped
    ({"img1.jpg": {"bbox": [1, 1, 5, 5]}}, ['"img1.jpg": expected a list of boxes', "got an object"]),
    ({"img1.jpg": None}, ['"img1.jpg": expected a list of boxes', "got null"]),
    ({"img\n1.jpg": 5}, ['"img\\n1.jpg": expected a list of boxes']),  # a newline in a name stays one line
    ([[1, 1, 5, 5]], ["expected a JSON object mapping image names to lists of boxes, got a list"]),
    ('"img1.jpg"', ["expected a JSON object", "got a string"]),
    ('{"img1.jpg": [[1, 1, 5, 5]]', ["not JSON ("]),
    ("", ["not JSON ("]),
    ('{"img1.jpg": [], "img1.jpg": [[1, 1, 5, 5]]}', ['"img1.jpg" appears twice']),
])
def test_bad_file_is_one_line_naming_the_entry(tmp_path: Path, content, needles):
    msg = load_error(write(tmp_path, content))
    for n in needles:
        assert n in msg, msg


def test_missing_file_folder_and_binary(tmp_path: Path):
    assert load_error(tmp_path / "nope.json").endswith(": no such file")
    assert load_error(tmp_path).endswith(": is not a file")
    p = tmp_path / "bin.json"
    p.write_bytes(b"\xff\xfe\x00\x81garbage")
    assert "cannot be read" in load_error(p)


# ---------------------------------------------------------------------------------------------- matching


def test_boxes_for_images_matches_name_path_and_stem(tmp_path: Path):
    table = load_boxes_file(write(tmp_path, {"a.jpg": [[0, 0, 10, 10]], "photos/b.png": [[1, 1, 5, 5]],
                                             "c": [], "gone.jpg": [[0, 0, 1, 1]], "x/y.jpg": []}))
    boxes, warnings = boxes_for_images(table, ["in/a.jpg", "photos/b.png", "c.jpeg", Path("d.jpg")],
                                       path="b.json")
    np.testing.assert_array_equal(boxes[0], [[0, 0, 10, 10]])  # by file name
    np.testing.assert_array_equal(boxes[1], [[1, 1, 5, 5]])  # by the path as given
    assert boxes[2].shape == (0, 4)  # by stem; an empty list stays an empty array
    assert boxes[3] is None  # not in the file: the normal search
    assert warnings == ['boxes file b.json: no image named "gone.jpg" among the inputs; its boxes are ignored',
                        'boxes file b.json: no image named "x/y.jpg" among the inputs; its boxes are ignored']


def test_boxes_for_images_refuses_ambiguous_keys():
    box = np.zeros((1, 4), np.float32)
    with pytest.raises(NeuralfitError, match=r'"x.jpg" matches 2 different images \(a/x.jpg, b/x.jpg\)'):
        boxes_for_images({"x.jpg": box}, ["a/x.jpg", "b/x.jpg"])
    with pytest.raises(NeuralfitError, match='"x.jpg" and "x" both match image x.jpg'):
        boxes_for_images({"x.jpg": box, "x": box}, ["x.jpg"])
    # The same photo given twice is one image, not an ambiguity; distinct paths as keys resolve it.
    assert len(boxes_for_images({"x.jpg": box}, ["a/x.jpg", "a/x.jpg"])[0]) == 2
    boxes, warnings = boxes_for_images({"a/x.jpg": box, "b/x.jpg": box[:0]}, ["a/x.jpg", "b/x.jpg"])
    assert boxes[0].shape == (1, 4) and boxes[1].shape == (0, 4) and warnings == []


# ---------------------------------------------------------------------------------------------- CLI


def run_cli(args: list, capsys, monkeypatch) -> tuple[int | None, str]:
    """``neuralfit ARGS`` through ``main()`` (what the console script runs): (exit code, stderr).
    ``main`` turns NeuralfitError into the ``error:`` line, which click's bare runner would not."""
    from neuralfit.cli.main import main

    monkeypatch.setattr(sys, "argv", ["neuralfit", *map(str, args)])
    code: int | None = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    captured = capsys.readouterr()
    assert "Traceback" not in captured.err + captured.out
    return code, captured.err


def cli_config(tmp_path: Path, capsys, monkeypatch, flags: list[str]):
    """The FitImageConfig ``neuralfit fit IMG --out OUT FLAGS -q`` hands the (stand-in) fitter."""
    import neuralfit.pipeline

    FakeFitter.calls = []
    monkeypatch.setattr(neuralfit.pipeline, "ImageFitter", FakeFitter)
    img = tmp_path / "p.jpg"
    img.write_bytes(b"not read")
    code, err = run_cli(["fit", img, "--out", tmp_path / "out", *flags, "-q"], capsys, monkeypatch)
    assert code == 0, err
    return FakeFitter.calls[0]["config"]


def one_line(err: str, level: str) -> str:
    lines = [ln for ln in err.splitlines() if ln.startswith(f"{level}:")]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def photos(tmp_path: Path) -> list[Path]:
    """Two photo paths (never read: these runs stop, or use a stand-in fitter, before any image is opened)."""
    out = []
    for name in ("img1.jpg", "img2.jpg"):
        (tmp_path / name).write_bytes(b"not read")
        out.append(tmp_path / name)
    return out


class FakeFitter:
    """Stands in for ``ImageFitter``: records the config and what ``fit`` gets; fits and writes nothing."""

    calls: list[dict] = []

    def __init__(self, body_spec, prior, network, neural_model, config, device, **kwargs) -> None:
        self.config, self.method, self.method_reason = config, "keypoints", "test"
        self.kwargs = kwargs

    def __enter__(self) -> FakeFitter:
        return self

    def __exit__(self, *exc) -> None:
        return None

    def fit(self, images, keypoints, bboxes, progress=False, out=None):
        FakeFitter.calls.append({"images": images, "bboxes": bboxes, "config": self.config, "kwargs": self.kwargs})
        return [SimpleNamespace(ok=True) for _ in images]


@pytest.fixture
def fake_fitter(monkeypatch) -> type[FakeFitter]:
    import neuralfit.pipeline

    FakeFitter.calls = []
    monkeypatch.setattr(neuralfit.pipeline, "ImageFitter", FakeFitter)
    return FakeFitter


@pytest.mark.parametrize("content, needle", [
    ({"img1.jpg": [[50, 0, 10, 40]]}, '"img1.jpg" box 1: x1 <= x0 (inverted box [50, 0, 10, 40])'),
    ("{not json", "not JSON"),
])
def test_cli_bad_boxes_file_is_one_error_and_writes_nothing(tmp_path: Path, photos, content, needle, capsys,
                                                            monkeypatch, fake_fitter):
    boxes, out = write(tmp_path, content), tmp_path / "out"
    code, err = run_cli(["fit", *photos, "--out", out, "--boxes", boxes, "-q"], capsys, monkeypatch)
    assert code == 1, err
    line = one_line(err, "error")
    assert needle in line and str(boxes) in line, line
    assert not out.exists() and fake_fitter.calls == []


def test_cli_missing_boxes_file(tmp_path: Path, photos, capsys, monkeypatch, fake_fitter):
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--boxes", tmp_path / "nope.json"],
                        capsys, monkeypatch)
    assert code == 1 and "nope.json: no such file" in one_line(err, "error")
    assert not (tmp_path / "out").exists()


def test_cli_bbox_and_boxes_together_are_refused(tmp_path: Path, photos, capsys, monkeypatch, fake_fitter):
    boxes = write(tmp_path, {"img1.jpg": [[0, 0, 10, 10]]})
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--boxes", boxes, "--bbox", "0,0,10,10"],
                        capsys, monkeypatch)
    assert code == 1
    assert "--bbox and --boxes cannot be used together" in one_line(err, "error")
    assert not (tmp_path / "out").exists() and fake_fitter.calls == []


@pytest.mark.parametrize("value", ["0", "-2"])
def test_cli_max_people_must_be_positive(tmp_path: Path, photos, value, capsys, monkeypatch, fake_fitter):
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--max-people", value], capsys, monkeypatch)
    assert code == 1 and f"--max-people must be >= 1, got {value}" in one_line(err, "error")
    assert fake_fitter.calls == []


def test_cli_passes_boxes_per_image_and_warns_about_unknown_names(tmp_path: Path, photos, capsys, monkeypatch,
                                                                  fake_fitter):
    boxes = write(tmp_path, {"img1.jpg": [[1, 2, 30, 40], {"bbox": [50, 2, 90, 40]}], "other.jpg": []})
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--boxes", boxes, "-q"], capsys, monkeypatch)
    assert code == 0, err
    warning = one_line(err, "warning")
    assert warning == (f'warning: boxes file {boxes}: no image named "other.jpg" among the inputs; '
                       "its boxes are ignored")
    (call,) = fake_fitter.calls
    np.testing.assert_array_equal(call["bboxes"][0], [[1, 2, 30, 40], [50, 2, 90, 40]])
    assert call["bboxes"][1] is None  # img2.jpg: not in the file, the normal search


def test_cli_bbox_alone_still_gives_every_photo_the_box(tmp_path: Path, photos, capsys, monkeypatch,
                                                        fake_fitter):
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--bbox", "1,2,30,40", "-q"],
                        capsys, monkeypatch)
    assert code == 0, err
    (call,) = fake_fitter.calls
    assert len(call["bboxes"]) == 2
    for b in call["bboxes"]:
        np.testing.assert_array_equal(b, [1, 2, 30, 40])


def test_cli_max_people_default_is_the_librarys(tmp_path: Path, photos, capsys, monkeypatch, fake_fitter):
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "-q"], capsys, monkeypatch)
    assert code == 0, err
    (call,) = fake_fitter.calls
    assert call["bboxes"] == [None, None]
    assert getattr(call["config"], "max_people", None) == getattr(FitImageConfig(), "max_people", None)


@needs_max_people
def test_cli_max_people_reaches_the_config(tmp_path: Path, photos, capsys, monkeypatch, fake_fitter):
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--max-people", "2", "-q"], capsys,
                        monkeypatch)
    assert code == 0, err
    assert fake_fitter.calls[0]["config"].max_people == 2


def test_cli_lifter_and_lift_blend_reach_the_fitter(tmp_path: Path, photos, capsys, monkeypatch, fake_fitter):
    lifter = tmp_path / "my_lifter.pt"
    lifter.write_bytes(b"read by the fitter, not here")
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out", "--lifter", lifter, "--lift-blend", "0",
                         "--lift-blend-hidden", "0", "--lift-blend-inconsistent", "off", "--inconsistent-keypoints", "0",
                         "--unsure-hidden", "0", "--hidden-keypoints", "0.5", "-q"],
                        capsys, monkeypatch)
    assert code == 0, err
    assert fake_fitter.calls[0]["config"].lift_blend_inconsistent is None
    assert fake_fitter.calls[0]["config"].inconsistent_keypoints == 0.0
    assert fake_fitter.calls[0]["config"].lift_blend == 0.0
    assert fake_fitter.calls[0]["config"].lift_blend_hidden == 0.0
    assert fake_fitter.calls[0]["config"].unsure_hidden == 0.0
    assert fake_fitter.calls[0]["config"].hidden_keypoints == 0.5
    assert fake_fitter.calls[0]["kwargs"] == {"lifter": lifter}
    code, err = run_cli(["fit", *photos, "--out", tmp_path / "out2", "-q"], capsys, monkeypatch)
    assert code == 0, err
    from neuralfit.pipeline import FitImageConfig

    assert fake_fitter.calls[1]["config"].lift_blend == FitImageConfig().lift_blend
    assert fake_fitter.calls[1]["config"].lift_blend_hidden == FitImageConfig().lift_blend_hidden
    assert fake_fitter.calls[1]["config"].unsure_hidden == FitImageConfig().unsure_hidden
    assert fake_fitter.calls[1]["config"].hidden_keypoints == FitImageConfig().hidden_keypoints
    assert fake_fitter.calls[1]["config"].lift_blend_inconsistent == FitImageConfig().lift_blend_inconsistent
    assert fake_fitter.calls[1]["config"].inconsistent_keypoints == FitImageConfig().inconsistent_keypoints
    assert fake_fitter.calls[1]["kwargs"] == {}


# ---------------------------------------------------------------------------------------------- end to end


@pytest.mark.slow
@needs_max_people
def test_fit_with_boxes_file_end_to_end(tmp_path: Path, capsys, monkeypatch):
    """A real (regressor) fit: a photo with ``[]`` comes back no_person (exit 3) while one with a box, and
    one with two, are fitted one person per box (on noise: mediapipe finds nobody in a box, so the
    network's keypoints stand in)."""
    from neuralfit.io.images import save_png

    rng = np.random.default_rng(0)
    names = ("empty.png", "boxed.png", "two.png")
    for name in names:
        save_png(tmp_path / name, rng.integers(0, 255, (240, 320, 3), dtype=np.uint8))
    boxes = write(tmp_path, {"empty.png": [], "boxed.png": [[100, 20, 220, 230]],
                             "two.png": [[10, 20, 120, 230], {"bbox": [130, 20, 240, 230], "score": 0.5}]})
    out = tmp_path / "out"
    code, err = run_cli(["fit", *(tmp_path / n for n in names), "--out", out, "--boxes", boxes,
                         "--method", "regressor", "--no-overlay", "-q"], capsys, monkeypatch)
    assert code == 3, err
    assert any(ln.startswith("warning:") and "empty.png" in ln for ln in err.splitlines()), err
    assert not (out / "empty" / "fit.json").exists()
    result = json.loads((out / "boxed" / "fit.json").read_text())
    assert result["status"] == "ok" and len(result["people"]) == 1
    assert len(json.loads((out / "two" / "fit.json").read_text())["people"]) == 2  # one person per box


def test_a_found_box_grows_to_the_guessed_keypoints_and_a_user_box_is_kept():
    """The crop spans the hidden limbs mediapipe guessed below a found box (issue 16: the occlusion map and
    the part head can only speak for the body inside the crop); a user's box is the person's extent."""
    from neuralfit.photo.people import Person
    from neuralfit.photo.steps import _crop_box

    kp = np.array([[100, 50, 0.9], [140, 60, 0.9], [110, 150, 0.9], [120, 300, 0.1], [130, 310, 0.1],
                   [900, 320, 0.05]], np.float32)  # two guessed ankles below the box; one point off the photo
    box = np.array([90, 40, 150, 160], np.float32)  # around the seen keypoints
    grown = _crop_box(Person(0, box, kp, "blazepose33"), (400, 600))
    # All keypoints inside the 600 x 400 photo: x 100..140, y 50..310, padded by 10 % of the longer side (26).
    np.testing.assert_allclose(grown, [74, 24, 166, 336])
    kept = _crop_box(Person(0, box, kp, "blazepose33", box_given=True), (400, 600))
    np.testing.assert_array_equal(kept, box)
    np.testing.assert_array_equal(_crop_box(Person(0, box, None, None), (400, 600)), box)
