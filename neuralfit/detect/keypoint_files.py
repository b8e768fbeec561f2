"""User-supplied 2D keypoints: OpenPose BODY-25 JSON and COCO keypoint JSON.

Both return, per person, the keypoint-set name (``"body25"`` or ``"coco17"``, as in
``body.keypoint_sets``) and a (J, 3) array of ``x, y, confidence`` in image pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError


@dataclass
class PersonKeypoints:
    """Keypoints of one person: ``joint_set`` names the order, ``keypoints`` is (J, 3) x, y, conf."""

    joint_set: str
    keypoints: np.ndarray


def load_keypoints_json(path: str | Path, image_name: str | None = None) -> list[PersonKeypoints]:
    """Read an OpenPose (``{"people": [{"pose_keypoints_2d": ...}]}``) or COCO
    (``{"annotations": [{"keypoints": ...}], "images": [...]}`` or a bare list of annotations) file.

    For COCO files with several images, ``image_name`` selects the annotations of that file name;
    COCO visibility flags (0, 1, 2) become confidences (0, 1, 1).
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NeuralfitError(f"keypoint file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NeuralfitError(f"keypoint file {path} is not valid JSON ({exc})") from None

    if isinstance(data, dict) and "people" in data:
        people = []
        for i, person in enumerate(data["people"]):
            flat = np.asarray(person.get("pose_keypoints_2d", []), dtype=np.float32)
            if flat.size != 75:
                raise NeuralfitError(
                    f"{path}: person {i} has {flat.size} pose_keypoints_2d values, expected 75 (OpenPose BODY-25)"
                )
            people.append(PersonKeypoints("body25", flat.reshape(25, 3)))
        return people

    annotations = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(annotations, list):
        raise NeuralfitError(f"{path}: expected OpenPose JSON ('people') or COCO JSON ('annotations')")
    if isinstance(data, dict) and image_name is not None and "images" in data:
        ids = {im["id"] for im in data["images"] if Path(im.get("file_name", "")).name == Path(image_name).name}
        annotations = [a for a in annotations if a.get("image_id") in ids]
    people = []
    for i, ann in enumerate(annotations):
        flat = np.asarray(ann.get("keypoints", []), dtype=np.float32)
        if flat.size != 51:
            raise NeuralfitError(f"{path}: annotation {i} has {flat.size} keypoint values, expected 51 (COCO-17)")
        kp = flat.reshape(17, 3)
        kp[:, 2] = (kp[:, 2] > 0).astype(np.float32)
        people.append(PersonKeypoints("coco17", kp))
    return people
