"""Person detection (mediapipe) and user keypoint files."""

import json
from pathlib import Path

import numpy as np
import pytest

from neuralfit.detect import PersonDetector, load_keypoints_json
from neuralfit.errors import NeuralfitError

OPENCV_DATA = Path("/usr/share/doc/opencv-doc/examples/data")


@pytest.fixture(scope="module")
def detector():
    with PersonDetector() as det:
        yield det


def test_no_person_in_flat_image(detector):
    assert detector(np.full((240, 320, 3), 127, np.uint8)) is None


def test_rejects_wrong_image_shape(detector):
    with pytest.raises(NeuralfitError, match="uint8 RGB"):
        detector(np.zeros((240, 320), np.uint8))


@pytest.mark.skipif(not (OPENCV_DATA / "basketball1.png").exists(), reason="Debian opencv-doc not installed")
def test_finds_the_player_in_a_real_photo(detector):
    import cv2

    image = cv2.imread(str(OPENCV_DATA / "basketball1.png"))[:, :, ::-1].copy()
    det = detector(image)
    assert det is not None
    x0, y0, x1, y1 = det.bbox
    # The player stands in the left third of the frame and is taller than wide.
    assert 0 <= x0 < x1 <= image.shape[1] * 0.5
    assert (y1 - y0) > 1.5 * (x1 - x0)
    visible = det.keypoints[det.keypoints[:, 2] > 0.5]
    assert len(visible) >= 20
    # Every confident keypoint lies inside the box.
    assert np.all((visible[:, 0] >= x0) & (visible[:, 0] <= x1) & (visible[:, 1] >= y0) & (visible[:, 1] <= y1))


def test_openpose_json(tmp_path):
    kp = np.arange(75, dtype=np.float32)
    path = tmp_path / "kp.json"
    path.write_text(json.dumps({"people": [{"pose_keypoints_2d": kp.tolist()}]}))
    (person,) = load_keypoints_json(path)
    assert person.joint_set == "body25"
    np.testing.assert_array_equal(person.keypoints, kp.reshape(25, 3))


def test_coco_json_selects_image_and_maps_visibility(tmp_path):
    kp_a = np.tile([10.0, 20.0, 2.0], 17)
    kp_b = np.tile([1.0, 2.0, 0.0], 17)
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}, {"id": 2, "file_name": "b.jpg"}],
        "annotations": [{"image_id": 1, "keypoints": kp_a.tolist()}, {"image_id": 2, "keypoints": kp_b.tolist()}],
    }
    path = tmp_path / "coco.json"
    path.write_text(json.dumps(data))
    (person,) = load_keypoints_json(path, image_name="/x/b.jpg")
    assert person.joint_set == "coco17"
    assert np.all(person.keypoints[:, 2] == 0)
    (person,) = load_keypoints_json(path, image_name="a.jpg")
    assert np.all(person.keypoints[:, 2] == 1)


@pytest.mark.parametrize(
    ("content", "match"),
    [(None, "not found"), ("{not json", "not valid JSON"), ('{"people": [{"pose_keypoints_2d": [1, 2]}]}', "expected 75")],
)
def test_bad_keypoint_files(tmp_path, content, match):
    path = tmp_path / "kp.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(NeuralfitError, match=match):
        load_keypoints_json(path)
