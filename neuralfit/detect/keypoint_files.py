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
    COCO visibility flags (0, 1, 2) become confidences (0, 1, 1). A joint with confidence 0 is
    "missing" whatever its coordinates (some tools write NaN there): its x, y become 0. A NaN or
    infinite value anywhere else is refused with the file, person and joint named, since it would
    otherwise surface as a NaN deep inside the fit.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise NeuralfitError(f"keypoint file not found: {path}") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise NeuralfitError(f"keypoint file {path} is not valid JSON ({exc})") from None
    except OSError as exc:
        raise NeuralfitError(f"keypoint file {path} cannot be read ({exc.strerror})") from None

    if isinstance(data, dict) and "people" in data:
        if not isinstance(data["people"], list):
            raise NeuralfitError(f"{path}: 'people' must be a list of persons (OpenPose JSON)")
        people = []
        for i, person in enumerate(data["people"]):
            if not isinstance(person, dict):
                raise NeuralfitError(f"{path}: person {i} is a {type(person).__name__}, expected an object")
            flat = _numbers(path, f"person {i} pose_keypoints_2d", person.get("pose_keypoints_2d", []))
            if flat.size != 75:
                raise NeuralfitError(
                    f"{path}: person {i} has {flat.size} pose_keypoints_2d values, expected 75 (OpenPose BODY-25)"
                )
            people.append(PersonKeypoints("body25", _finite(path, f"person {i}", "body25", flat.reshape(25, 3))))
        return people

    annotations = data.get("annotations") if isinstance(data, dict) else data
    if not isinstance(annotations, list) or not all(isinstance(a, dict) for a in annotations):
        raise NeuralfitError(f"{path}: expected OpenPose JSON (an object with 'people') or COCO JSON "
                             "(an object with 'annotations', or a list of annotation objects)")
    if isinstance(data, dict) and image_name is not None and "images" in data:
        images = data["images"] if isinstance(data["images"], list) else []
        ids = {im.get("id") for im in images
               if isinstance(im, dict) and Path(str(im.get("file_name", ""))).name == Path(image_name).name}
        annotations = [a for a in annotations if a.get("image_id") in ids]
    people = []
    for i, ann in enumerate(annotations):
        flat = _numbers(path, f"annotation {i} keypoints", ann.get("keypoints", []))
        if flat.size != 51:
            raise NeuralfitError(f"{path}: annotation {i} has {flat.size} keypoint values, expected 51 (COCO-17)")
        kp = flat.reshape(17, 3)
        if np.isfinite(kp[:, 2]).all():
            kp[:, 2] = (kp[:, 2] > 0).astype(np.float32)
        people.append(PersonKeypoints("coco17", _finite(path, f"annotation {i}", "coco17", kp)))
    return people


def _numbers(path: Path, what: str, values: object) -> np.ndarray:
    """A flat float32 array of ``values``, or a one-line error naming the file and the field."""
    try:
        return np.asarray(values, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise NeuralfitError(f"{path}: {what} must be a flat list of numbers") from None


def _finite(path: Path, who: str, joint_set: str, kp: np.ndarray) -> np.ndarray:
    """Zero the coordinates of missing joints (confidence 0); refuse any other NaN/inf, naming the joint."""
    missing = kp[:, 2] == 0
    kp[missing, :2] = np.where(np.isfinite(kp[missing, :2]), kp[missing, :2], 0.0)
    bad = ~np.isfinite(kp).all(axis=1)
    if bad.any():
        from neuralfit.body.keypoints import BODY25, COCO17  # names only for the message

        j = int(np.flatnonzero(bad)[0])
        name = (BODY25 if joint_set == "body25" else COCO17)[j][0]
        raise NeuralfitError(f"{path}: {who} joint {j} ({name}) has a non-finite value {kp[j].tolist()}; "
                             "expected x, y, confidence numbers (confidence 0 for a missing joint)")
    return kp
