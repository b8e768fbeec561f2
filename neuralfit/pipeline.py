"""Photos in, fitted bodies out: image -> detect/crop -> nets -> fitting -> io.

``fit_image(...)`` (also ``neuralfit.fit_image``) and the ``neuralfit fit`` command run the same code:

1. **Detect**: mediapipe BlazePose-33 keypoints, box and mask per photo (one person), or the user's
   OpenPose/COCO keypoints (several people), or a user box (mediapipe then looks inside it).
2. **Crop**: a square SPIN-style crop per person, ``center`` = box centre, ``scale`` = 1.2 * box side / 200,
   resampled to ``res`` pixels (``neuralfit.data.crop``).
3. **Initialise**: the network's regressor (``--network``), or, without a network, a default
   initialisation: the mean (zero) pose facing the camera, placed so its torso matches the detected
   torso (SMPLify's similar-triangles depth), plus the same rotated 180 degrees as a second hypothesis.
4. **Fit** (``neuralfit.fitting.Fitter``): ``neural`` (features + outlier process + parts + keypoints
   + priors), ``keypoints`` (keypoints + priors) or ``regressor`` (no fitting).
5. **Write** ``DIR/<stem>/``: params.npz, mesh.obj, overlay.png, occlusion.png, fit.json, atomically.

Camera (docs/architecture.md): each crop sees the body through a pinhole with focal ``f = 5000 res / 224``
and principal point at the crop centre. In the original photo that crop camera has focal
``F = f * (200 scale) / res`` and principal point at the crop centre ``c``. The reported camera has the
same ``F`` but its principal point at the photo centre ``p``; the body is moved by ``d = (dx, dy, 0)``
so that its projection is unchanged. A point at depth ``z`` projects ``F d / z`` further, so the shift
needed for a point at depth ``z`` is ``(c - p) z / F``; the body spans a range of depths, and the
least-squares shift over its joints ``j`` (depths ``z_j``) is::

    d_xy = (c - p) / F * sum_j (1 / z_j) / sum_j (1 / z_j^2)

(the error is about ``|c - p| * depth spread / z``: ~1 px for a person 200 px off-centre, since SPIN's long
focal puts the body tens of metres away). With
several people the photo gets one focal (that of the largest box); a person whose crop focal ``F_i`` differs
is moved to depth ``z * F / F_i`` first, which keeps their size in the photo.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralfit import __version__
from neuralfit.errors import NeuralfitError

if TYPE_CHECKING:  # torch-free at import time: neuralfit.fitting imports torch
    from neuralfit.fitting import FitConfig

log = logging.getLogger("neuralfit.fit")

METHODS = ("neural", "keypoints", "regressor")

#: Package folders the default assets are shipped in (found when present; see default_assets()).
_NETS_ASSETS = Path(__file__).parent / "nets" / "assets"
_NEURAL_ASSETS = Path(__file__).parent / "neural" / "assets"

#: Torso keypoints by joint-set naming style: (left shoulder, right shoulder, left hip, right hip).
_TORSO_NAMES = {
    "snake": ("left_shoulder", "right_shoulder", "left_hip", "right_hip"),
    "openpose": ("LShoulder", "RShoulder", "LHip", "RHip"),
    "smpl": ("lshoulder", "rshoulder", "lhip", "rhip"),
}


@dataclass
class FitImageConfig:
    """Settings of :func:`fit_image` (defaults: what ``neuralfit fit`` does).

    Attributes:
        method: "neural", "keypoints", "regressor", or None = "neural" when the caller passes a neural
            model (and a network is given or shipped), else "keypoints" (initialised by the network's
            regressor when there is a network). ``--method neural`` alone uses the shipped neural model.
        res: crop size in pixels when no network fixes it (a network uses its checkpoint's input_res).
        box_padding: crop side = ``box_padding`` x the longer side of the person box (SPIN: 1.2).
        min_keypoint_confidence: detected keypoints below this get weight 0 in the keypoint term; above it
            the detector's confidence is the weight. Default 0: mediapipe's low-confidence guesses for hidden
            limbs still hold them near a plausible place with a small weight; with them cut off (e.g. 0.3)
            hidden legs follow the pose prior alone, which with the shipped default prior bends them
            into its crouching mean pose (hips ~45 deg, knees ~60 deg; measured on basketball1.png).
        second_hypothesis: also fit the initialisation rotated 180 degrees about the vertical and keep
            the better one (always on for the default initialisation, which cannot tell front from back).
        batch_size: crops fitted together (the fitter is batched; memory grows linearly).
        fit: fitter settings; None = the seed's occluded preset (``FitConfig.occluded()``).
        write_overlay: render overlay.png / occlusion.png (the slowest part of writing).
        regress_from_detections: with a keypoint regressor (``regressor_input="keypoints"``), initialise
            from the detector's or the user's keypoints instead of the network's heatmap keypoints.
    """

    method: str | None = None
    res: int = 224
    box_padding: float = 1.2
    min_keypoint_confidence: float = 0.0
    second_hypothesis: bool = True
    batch_size: int = 8
    fit: FitConfig | None = None
    write_overlay: bool = True
    regress_from_detections: bool = True

    def __post_init__(self) -> None:
        if self.method is not None and self.method not in METHODS:
            raise NeuralfitError(f"method {self.method!r} is unknown; expected one of {', '.join(METHODS)}")
        if self.res <= 0 or self.res % 32:
            raise NeuralfitError(f"crop res must be a positive multiple of 32, got {self.res}")
        if not self.box_padding >= 1.0:
            raise NeuralfitError(f"box_padding must be >= 1, got {self.box_padding}")
        if self.batch_size < 1:
            raise NeuralfitError(f"batch_size must be >= 1, got {self.batch_size}")


@dataclass
class PersonFit:
    """One fitted person, in the original photo's camera (OpenCV axes: x right, y down, z forward; metres).

    Attributes:
        betas (10,), global_orient (3,), body_pose (69,), transl (3,): SMPL-format parameters.
        joints3d: (24, 3) SMPL joints; vertices: (V, 3) mesh vertices.
        bbox: (4,) x0, y0, x1, y1 person box in photo pixels; center (2,), scale: the crop.
        keypoints: (J, 3) the 2D keypoints fitted (photo pixels, confidence), joint set ``joint_set``; or None.
        keypoints_fit: (J, 2) the body's projected keypoints of the same set (photo pixels; NaN where the
            body does not define the keypoint), or None.
        loss: total loss of the kept iterate; terms: its unweighted terms.
        hypothesis: 0 = as initialised, 1 = rotated 180 degrees.
        occlusion_fraction: share of rendered body pixels explained by clutter (neural method).
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    joints3d: np.ndarray
    vertices: np.ndarray
    bbox: np.ndarray
    center: np.ndarray
    scale: float
    keypoints: np.ndarray | None
    joint_set: str | None
    keypoints_fit: np.ndarray | None = None
    loss: float = float("nan")
    terms: dict[str, float] = field(default_factory=dict)
    hypothesis: int = 0
    occlusion_fraction: float = 0.0


@dataclass
class ImageFit:
    """The result for one photo.

    Attributes:
        source: the file path (or ``"<array i>"``); stem: its output folder name.
        status: "ok", "no_person" or "failed"; message: one line when not ok.
        method: the method used; method_reason: why (auto-selection, user choice).
        image_size: (H, W); focal_length, principal_point (2,): the photo's camera in pixels.
        people: the fitted people (empty unless ok).
        occlusion: (H, W) float32 occlusion posterior over the photo (neural method), else None.
        overlay: (H, W, 3) uint8 picture of the bodies over the photo, or None (not rendered).
        body_mask: (H, W) bool, where the bodies project (with overlay).
        timings: seconds per stage (shared stages are split evenly over the batch).
        out_dir: the folder written, or None.
        photo: (H, W, 3) uint8 RGB photo as read.
    """

    source: str
    stem: str
    status: str = "ok"
    message: str = ""
    method: str = ""
    method_reason: str = ""
    image_size: tuple[int, int] = (0, 0)
    focal_length: float = float("nan")
    principal_point: np.ndarray | None = None
    people: list[PersonFit] = field(default_factory=list)
    occlusion: np.ndarray | None = None
    overlay: np.ndarray | None = None
    body_mask: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    photo: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    def params(self) -> dict[str, np.ndarray]:
        """The arrays of params.npz (P people): betas (P,10), global_orient (P,3), body_pose (P,69),
        transl (P,3), joints3d (P,24,3), bbox (P,4), focal_length (), principal_point (2,), image_size (2,)."""
        ps = self.people

        def stack(name: str) -> np.ndarray:
            return np.stack([np.asarray(getattr(p, name), dtype=np.float32) for p in ps]).astype(np.float32)

        return {
            "betas": stack("betas"), "global_orient": stack("global_orient"), "body_pose": stack("body_pose"),
            "transl": stack("transl"), "joints3d": stack("joints3d"), "bbox": stack("bbox"),
            "focal_length": np.float32(self.focal_length),
            "principal_point": np.asarray(self.principal_point, dtype=np.float32),
            "image_size": np.asarray(self.image_size, dtype=np.int32),
        }  # fmt: skip


# ---------------------------------------------------------------------------------------------- assets
def default_assets() -> tuple[Path | None, Path | None]:
    """The shipped default network and neural model, or None where not shipped.

    Looks for ``neuralfit/nets/assets/*.pt`` and ``neuralfit/neural/assets/*.pt``: a file named
    ``default.pt`` wins; otherwise the only ``.pt`` there.
    """

    def find(folder: Path) -> Path | None:
        if not folder.is_dir():
            return None
        if (folder / "default.pt").is_file():
            return folder / "default.pt"
        pts = sorted(folder.glob("*.pt"))
        return pts[0] if len(pts) == 1 else None

    return find(_NETS_ASSETS), find(_NEURAL_ASSETS)


def parse_bbox(text: str) -> np.ndarray:
    """``"x0,y0,x1,y1"`` -> (4,) float32; one-line error otherwise."""
    try:
        vals = [float(v) for v in str(text).split(",")]
    except ValueError:
        vals = []
    if len(vals) != 4 or not all(math.isfinite(v) for v in vals) or vals[2] <= vals[0] or vals[3] <= vals[1]:
        raise NeuralfitError(f"--bbox {text!r} is not a box; expected x0,y0,x1,y1 in pixels with x1 > x0, y1 > y0")
    return np.asarray(vals, dtype=np.float32)


# ---------------------------------------------------------------------------------------------- camera
def crop_from_box(bbox: np.ndarray, padding: float = 1.2) -> tuple[np.ndarray, float]:
    """SPIN-style crop of a box: ``center`` (2,) and ``scale`` = padding * longer side / 200."""
    x0, y0, x1, y1 = (float(v) for v in bbox)
    center = np.array([(x0 + x1) / 2.0, (y0 + y1) / 2.0])
    return center, padding * max(x1 - x0, y1 - y0, 1.0) / 200.0


def crop_focal_to_image(f_crop: float, scale: float, res: int) -> float:
    """Focal in photo pixels of a crop camera: ``f * (200 scale) / res``."""
    return float(f_crop) * 200.0 * float(scale) / float(res)


def transl_to_image_camera(
    transl: np.ndarray, joints_rel: np.ndarray, center: np.ndarray, principal_point: np.ndarray,
    focal_crop_img: float, focal_image: float,
) -> np.ndarray:
    """Translation in the photo's camera (focal ``focal_image``, principal point ``principal_point``)
    that reproduces the crop camera's projection (focal ``focal_crop_img`` in photo pixels, principal
    point ``center``). See the module docstring for the formula.

    Args:
        transl: (3,) crop-camera translation; joints_rel: (24, 3) joints minus transl (body frame at the
            camera's orientation).
    """
    t = np.asarray(transl, dtype=np.float64).copy()
    t[2] *= focal_image / focal_crop_img  # same size in the photo with the photo's focal
    # Scaling the depth by k also needs x, y scaled by k to keep the projection of the body centre.
    t[:2] *= focal_image / focal_crop_img
    z = joints_rel[:, 2] + t[2]
    w = np.sum(1.0 / z) / np.sum(1.0 / z**2)
    t[:2] += (np.asarray(center, dtype=np.float64) - np.asarray(principal_point, dtype=np.float64)) / focal_image * w
    return t


def project_points(points: np.ndarray, focal: float, principal_point: np.ndarray) -> np.ndarray:
    """(..., 3) camera-frame points -> (..., 2) pixels."""
    z = np.maximum(points[..., 2:3], 1e-6)
    return points[..., :2] / z * focal + np.asarray(principal_point)


# ---------------------------------------------------------------------------------------------- detect
@dataclass
class _Person:
    """Internal: one person to fit (photo pixels)."""

    image_index: int
    bbox: np.ndarray
    keypoints: np.ndarray | None  # (J, 3)
    joint_set: str | None
    center: np.ndarray = field(default_factory=lambda: np.zeros(2))
    scale: float = 1.0
    mask: np.ndarray | None = None  # (H, W) float32 person probability in photo pixels (mediapipe)


def _box_from_keypoints(kp: np.ndarray, image_hw: tuple[int, int], min_conf: float) -> np.ndarray | None:
    pts = kp[kp[:, 2] >= min_conf, :2]
    if len(pts) < 2:
        return None
    h, w = image_hw
    (x0, y0), (x1, y1) = pts.min(0), pts.max(0)
    pad = 0.1 * max(x1 - x0, y1 - y0)  # joint centres -> outline (head top, hands, feet)
    return np.array([max(x0 - pad, 0), max(y0 - pad, 0), min(x1 + pad, w), min(y1 + pad, h)], dtype=np.float32)


def _detect_in_box(detector, image: np.ndarray, bbox: np.ndarray):
    """Run the detector on a padded region around a user box; keypoints back in photo pixels."""
    h, w = image.shape[:2]
    bw, bh = bbox[2] - bbox[0], bbox[3] - bbox[1]
    x0, y0 = int(max(bbox[0] - 0.1 * bw, 0)), int(max(bbox[1] - 0.1 * bh, 0))
    x1, y1 = int(min(bbox[2] + 0.1 * bw, w)), int(min(bbox[3] + 0.1 * bh, h))
    if x1 - x0 < 8 or y1 - y0 < 8:
        return None
    det = detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
    if det is None:
        return None
    det.keypoints[:, 0] += x0
    det.keypoints[:, 1] += y0
    if det.mask is not None:
        full = np.zeros((h, w), np.float32)
        full[y0:y1, x0:x1] = det.mask
        det.mask = full
    return det


def _crop_mask(mask: np.ndarray, aff: np.ndarray, res: int, size: int) -> np.ndarray:
    """A photo's (H, W) person probability -> (size, size) over the crop ``aff`` (the feature map's grid).

    Outside the photo the probability is 0.5 (unknown), not 0: the crop's padding says nothing."""
    import cv2

    from neuralfit.data.crop import warp

    inside = warp(np.ones(mask.shape, np.float32), aff, res)
    m = warp(mask.astype(np.float32), aff, res) + 0.5 * (1.0 - inside)
    return cv2.resize(m, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32)


# ---------------------------------------------------------------------------------------------- init
def _torso_indices(kset) -> tuple[int, int, int, int] | None:
    names = list(kset.names)
    for style in _TORSO_NAMES.values():
        if all(n in names for n in style):
            return tuple(names.index(n) for n in style)  # type: ignore[return-value]
    return None


def default_init(body, keypoints: np.ndarray | None, joint_set: str | None, res: int, focal: float,
                 box_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Initial SMPL parameters without a network: mean pose facing the camera, placed on the torso.

    The mean (zero) pose is rotated 180 degrees about x (SMPL's y-up, facing +z -> the camera's y-down,
    facing the camera). Depth by similar triangles (SMPLify): the model's shoulder-centre to hip-centre
    length ``L`` over the detected one ``l`` (crop pixels) gives ``z = f L / l``; the hip centre is then
    placed on the detected hip centre. Without torso keypoints, a 1.7 m tall body fills the box height.

    Args:
        keypoints: (J, 3) crop-pixel keypoints of ``joint_set`` (or None); box_crop: (4,) box in crop pixels.

    Returns:
        global_orient (3,), body_pose (69,), transl (3,).
    """
    import torch

    go = np.array([math.pi, 0.0, 0.0])
    pose = np.zeros(69)
    with torch.no_grad():
        dev = body.faces.device
        out = body(global_orient=torch.tensor(go, dtype=torch.float32, device=dev)[None], full=False, lowres=True)
    c = res / 2.0
    anchor3d = out.joints[0, 0].cpu().numpy().astype(np.float64)  # pelvis
    anchor2d = np.array([(box_crop[0] + box_crop[2]) / 2, (box_crop[1] + box_crop[3]) / 2])
    z = focal * 1.7 / max(float(box_crop[3] - box_crop[1]), 1.0)
    if keypoints is not None and joint_set is not None:
        kset = body.keypoint_sets[joint_set]
        idx = _torso_indices(kset)
        if idx is not None:
            k3 = body.keypoints(out, joint_set)[0].cpu().numpy().astype(np.float64)
            conf = keypoints[list(idx), 2]
            valid = kset.valid.cpu().numpy()[list(idx)]
            if (conf > 0).all() and valid.all():
                sh2, hip2 = keypoints[list(idx[:2]), :2].mean(0), keypoints[list(idx[2:]), :2].mean(0)
                sh3, hip3 = k3[list(idx[:2])].mean(0), k3[list(idx[2:])].mean(0)
                l2 = float(np.linalg.norm(sh2 - hip2))
                if l2 > 2.0:
                    z = focal * float(np.linalg.norm(sh3 - hip3)) / l2
                    anchor3d, anchor2d = hip3, hip2
    t = np.array([(anchor2d[0] - c) * z / focal, (anchor2d[1] - c) * z / focal, z]) - anchor3d
    t[2] = z - anchor3d[2]
    return go, pose, t


# ---------------------------------------------------------------------------------------------- fitter
class ImageFitter:
    """Loaded assets (body, prior, detector, network, neural model) reused over many photos.

    Args:
        body: ``"free"`` or a path to SMPL files (or a loaded body model).
        prior: ``"default"``, a VPoser path, or None (no pose prior).
        network: network checkpoint path, or None = the shipped default (if any).
        neural_model: neural mesh model ``.pt``, or None = the shipped default (if any).
        config: :class:`FitImageConfig`.
        device: "cpu" or "cuda[:i]".
    """

    def __init__(self, body: Any = "free", prior: str | os.PathLike | None = "default",
                 network: str | os.PathLike | None = None, neural_model: str | os.PathLike | None = None,
                 config: FitImageConfig | None = None, device: str = "cpu") -> None:
        import torch

        from neuralfit.body import load_body_model

        self.config = config or FitImageConfig()
        self.device = str(device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NeuralfitError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        t0 = time.perf_counter()
        self.body = load_body_model(body, device=self.device) if isinstance(body, (str, os.PathLike)) else body
        self.body_spec = str(body) if isinstance(body, (str, os.PathLike)) else str(getattr(body, "spec", ""))
        self.prior = None
        self.prior_name = None
        if prior is not None:
            from neuralfit.priors import load_pose_prior

            self.prior = load_pose_prior(prior, device=self.device)
            self.prior_name = str(getattr(self.prior, "name", prior))

        default_net, default_nm = default_assets()
        net_path = Path(network) if network is not None else default_net
        nm_path = Path(neural_model) if neural_model is not None else default_nm
        method = self.config.method
        if method is None:
            # The shipped neural model is not the default: with the CPU-trained default network its features
            # do not improve fits (docs/network.md), so "neural" is automatic only for a model the user gives.
            if net_path is not None and neural_model is not None:
                method, reason = "neural", "auto: a network and a neural model were given"
            elif net_path is not None:
                method, reason = "keypoints", ("auto: keypoints fit initialised by the network's regressor "
                                               "(pass --neural-model or --method neural for the neural fit)")
            else:
                method, reason = "keypoints", "auto: no network given or shipped, so keypoints only"
        else:
            reason = "chosen by the user"
            if method in ("neural", "regressor") and net_path is None:
                raise NeuralfitError(f"--method {method} needs a network: pass --network CKPT (no default "
                                     "network is shipped with this install)")
            if method == "neural" and nm_path is None:
                raise NeuralfitError("--method neural needs a neural mesh model: pass --neural-model NM.pt "
                                     "(no default neural model is shipped with this install)")
        self.method, self.method_reason = method, reason
        # The keypoints method uses a network (given or shipped) for its initialisation when there is one.
        self.network_path = net_path
        self.neural_model_path = nm_path if method == "neural" else None

        self.net = None
        if self.network_path is not None:
            from neuralfit.nets import load_network

            self.net = load_network(self.network_path, self.body, device=self.device)
        self.neural_model = None
        if self.neural_model_path is not None:
            from neuralfit.neural import NeuralMeshModel

            self.neural_model = NeuralMeshModel.load(self.neural_model_path, body=self.body, device=self.device)
            if self.net is not None and self.neural_model.dim != self.net.config.feature_dim:
                raise NeuralfitError(f"neural model {self.neural_model_path} has {self.neural_model.dim}-d features "
                                     f"but network {self.network_path} makes {self.net.config.feature_dim}-d ones")
        self.res = int(self.net.config.input_res) if self.net is not None else int(self.config.res)
        self._detector = None
        self._fit_config_used = None
        self.load_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ helpers
    def _get_detector(self):
        if self._detector is None:
            from neuralfit.detect import PersonDetector

            self._detector = PersonDetector()
        return self._detector

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()
            self._detector = None

    def __enter__(self) -> ImageFitter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def settings(self) -> dict[str, Any]:
        from neuralfit.fitting import FitConfig

        cfg = self._fit_config_used or self.config.fit or FitConfig.occluded()
        return {"method": self.method, "method_reason": self.method_reason, "res": self.res,
                "device": self.device, "image": {k: v for k, v in asdict(self.config).items() if k != "fit"},
                "fit": asdict(cfg) if self.method != "regressor" else None}

    def assets(self) -> dict[str, Any]:
        net_info = None
        if self.net is not None:
            info = getattr(self.net, "checkpoint_info", {})
            prov = info.get("provenance", {})
            net_info = {"path": str(self.network_path), "joint_set": info.get("joint_set"),
                        "provenance": {k: prov[k] for k in list(prov)[:20]
                                       if isinstance(prov[k], (str, int, float, bool))}}
        nm_info = None
        if self.neural_model is not None:
            nm_info = {"path": str(self.neural_model_path), **self.neural_model.metadata()}
        return {"neuralfit": __version__, "body": {"spec": self.body_spec, "name": getattr(self.body, "name", "")},
                "pose_prior": self.prior_name, "network": net_info, "neural_model": nm_info,
                "detector": "mediapipe BlazePose (model_complexity=1)"}

    # ------------------------------------------------------------------ main entry
    def fit(self, images: list[Any], keypoints: list[list | None] | None = None,
            bboxes: list[np.ndarray | None] | None = None, progress: bool = False,
            out: str | os.PathLike | None = None) -> list[ImageFit]:
        """Fit every photo; see :func:`fit_image` for the arguments. Photos are processed in chunks of
        ``config.batch_size`` (all people of a chunk fitted in one batch)."""
        n = len(images)
        keypoints = keypoints or [None] * n
        bboxes = bboxes or [None] * n
        if out is not None:
            from neuralfit.io.folder import check_writable

            check_writable(out)
        results: list[ImageFit] = []
        bar = None
        redirect = contextlib.nullcontext()
        if progress:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = tqdm(total=n, unit="photo", desc="fit", leave=False)
            redirect = logging_redirect_tqdm([log])  # warnings print above the bar, not through it
        stems_used: set[str] = set()
        with redirect:
            try:
                for start in range(0, n, self.config.batch_size):
                    idx = list(range(start, min(start + self.config.batch_size, n)))
                    chunk = self._fit_chunk([images[i] for i in idx], [keypoints[i] for i in idx],
                                            [bboxes[i] for i in idx], idx, stems_used)
                    for r in chunk:
                        if out is not None and r.ok:
                            t0 = time.perf_counter()
                            try:
                                r.out_dir = write_image_fit(Path(out) / r.stem, r, self)
                            except NeuralfitError as exc:
                                r.status, r.message = "failed", str(exc)
                            r.timings["write"] = time.perf_counter() - t0
                        if not r.ok:
                            log.warning("%s: %s", r.source, r.message)
                        if bar is not None:
                            bar.update(1)
                    results.extend(chunk)
            finally:
                if bar is not None:
                    bar.close()
        return results

    def _fit_chunk(self, images, keypoints, bboxes, indices, stems_used) -> list[ImageFit]:
        results: list[ImageFit] = []
        pics: list[np.ndarray | None] = []
        people: list[_Person] = []
        from neuralfit.io.images import check_image_array, read_image

        for image, kp, box, i in zip(images, keypoints, bboxes, indices, strict=True):
            source = str(image) if isinstance(image, (str, os.PathLike)) else f"<array {i}>"
            stem = _unique_stem(Path(source).stem if isinstance(image, (str, os.PathLike)) else f"image_{i:04d}",
                                stems_used)
            r = ImageFit(source=source, stem=stem, method=self.method, method_reason=self.method_reason)
            results.append(r)
            t0 = time.perf_counter()
            try:
                pic = read_image(image) if isinstance(image, (str, os.PathLike)) else check_image_array(image, source)
            except NeuralfitError as exc:
                r.status, r.message = "failed", str(exc)
                pics.append(None)
                continue
            pics.append(pic)
            h, w = pic.shape[:2]
            r.image_size = (h, w)
            r.principal_point = np.array([w / 2.0, h / 2.0])
            found = self._people_in(pic, kp, box, len(results) - 1)
            r.timings["detect"] = time.perf_counter() - t0
            if not found:
                r.status = "no_person"
                r.message = ("no person found (mediapipe BlazePose)" if kp is None else
                             "no person with enough confident keypoints in the keypoint file")
                continue
            people.extend(found)
        if people:
            self._fit_people(pics, people, results)
        return results

    def _people_in(self, pic: np.ndarray, kp, box, image_index: int) -> list[_Person]:
        """People of one photo: from user keypoints, else mediapipe (inside the user box if given)."""
        h, w = pic.shape[:2]
        cmin = 0.3  # keypoints that count for a person's box and for "enough keypoints"
        found: list[_Person] = []
        if kp is not None:
            for pk in kp:
                k = np.asarray(pk.keypoints, dtype=np.float32)
                pbox = box if box is not None else _box_from_keypoints(k, (h, w), cmin)
                if pbox is not None and (k[:, 2] >= cmin).sum() >= 4:
                    found.append(_Person(image_index, np.asarray(pbox, np.float32), k, pk.joint_set))
            return found
        det = self._get_detector()
        d = _detect_in_box(det, pic, box) if box is not None else det(pic)
        if d is None:
            if box is not None and self.net is not None:
                # A user box and a network: the network's keypoints will do.
                return [_Person(image_index, np.asarray(box, np.float32), None, None)]
            return []
        return [_Person(image_index, np.asarray(box if box is not None else d.bbox, np.float32),
                        d.keypoints.astype(np.float32), "blazepose33", mask=d.mask)]

    def _fit_people(self, pics, people: list[_Person], results: list[ImageFit]) -> None:
        from neuralfit.data.crop import apply_affine, crop_transform, warp
        from neuralfit.nets.model import STRIDE
        from neuralfit.render.camera import default_focal

        res = self.res
        f_crop = default_focal(res)  # docs/architecture.md: 5000 * res / 224
        t0 = time.perf_counter()
        crops, kps, masks = [], [], []
        for p in people:
            p.center, p.scale = crop_from_box(p.bbox, self.config.box_padding)
            aff = crop_transform(p.center, p.scale, res)
            if self.net is not None:
                crops.append(warp(pics[p.image_index], aff, res))
            masks.append(None if p.mask is None else _crop_mask(p.mask, aff, res, res // STRIDE))
            if p.keypoints is not None:
                k = p.keypoints.copy()
                k[:, :2] = apply_affine(aff, k[:, :2])
                k[:, 2] = np.where(k[:, 2] >= self.config.min_keypoint_confidence, k[:, 2], 0.0)
                kps.append(k)
            else:
                kps.append(None)
        t_crop = time.perf_counter() - t0

        # Initialisation: network regressor, or the default init.
        t0 = time.perf_counter()
        obs = None
        if self.net is not None:
            from neuralfit.nets import predict

            obs = predict(self.net, np.stack(crops), focal=f_crop)
            if self.net.config.regressor_input == "keypoints" and self.config.regress_from_detections:
                self._regress_from_detections(obs, people, kps, f_crop)
        t_net = time.perf_counter() - t0

        # Group by keypoint set (the fitter takes one joint set per batch).
        groups: dict[str | None, list[int]] = {}
        for j, p in enumerate(people):
            js = p.joint_set if kps[j] is not None else (obs["joint_set"] if obs is not None else None)
            groups.setdefault(js, []).append(j)

        fitted: dict[int, dict[str, Any]] = {}
        t0 = time.perf_counter()
        for js, members in groups.items():
            fitted.update(self._fit_group(people, members, kps, obs, js, res, f_crop, masks))
        t_fit = time.perf_counter() - t0

        # Back to the photo's camera, meshes, pictures.
        n_people = len(people)
        for p in people:
            r = results[p.image_index]
            r.timings["crop"] = r.timings.get("crop", 0.0) + t_crop / n_people
            r.timings["network"] = r.timings.get("network", 0.0) + t_net / n_people
            r.timings["fit"] = r.timings.get("fit", 0.0) + t_fit / n_people
        by_image: dict[int, list[int]] = {}
        for j, p in enumerate(people):
            by_image.setdefault(p.image_index, []).append(j)
        for ii, members in by_image.items():
            t0 = time.perf_counter()
            self._finish_image(pics[ii], results[ii], [people[j] for j in members], [fitted[j] for j in members],
                               res, f_crop)
            results[ii].timings["render"] = time.perf_counter() - t0

    def _regress_from_detections(self, obs: dict[str, Any], people: list[_Person], kps: list, f_crop: float) -> None:
        """Re-run a keypoint regressor on the detector's (or the user's) keypoints where a person has them.

        A photo detector's keypoints are more reliable than heatmaps trained on synthetic renders; the
        regressor was trained with COCO-only keypoint sets (no neck, pelvis, head top), which is what a
        BlazePose/COCO/BODY-25 detection gives after :func:`transfer_keypoints`.
        """
        import torch

        from neuralfit.body.keypoints import transfer_keypoints
        from neuralfit.nets.model import regress

        dst = self.body.keypoint_sets[self.net.config.joint_set]
        rows = [j for j, p in enumerate(people) if kps[j] is not None and p.joint_set in self.body.keypoint_sets]
        if not rows:
            return
        kp_in = obs["keypoints"][rows].clone()
        for r, j in enumerate(rows):
            t = transfer_keypoints(kps[j], self.body.keypoint_sets[people[j].joint_set], dst)
            if (t[:, 2] > 0).sum() >= 6:
                kp_in[r] = torch.as_tensor(t, device=kp_in.device)
        smpl = regress(self.net, kp_in, focal=f_crop)
        idx = torch.tensor(rows, device=kp_in.device)
        for k, v in smpl.items():
            obs[k] = obs[k].clone()
            obs[k][idx] = v

    def _fit_group(self, people, members, kps, obs, joint_set, res, f_crop, masks) -> dict[int, dict[str, Any]]:
        """Fit the people ``members`` (all with keypoints of ``joint_set``) in one batch."""
        import torch

        from neuralfit.fitting import FitBatch, FitConfig, Fitter

        dev = self.device
        B = len(members)
        sel = torch.tensor(members)
        if obs is not None:
            go = obs["global_orient"][sel].float().cpu()
            bp = obs["body_pose"][sel].float().cpu()
            tr = obs["transl"][sel].float().cpu()
            betas = obs["betas"][sel].float().cpu()
        else:
            from neuralfit.data.crop import apply_affine, crop_transform

            inits = []
            for j in members:
                p = people[j]
                aff = crop_transform(p.center, p.scale, res)
                corners = apply_affine(aff, np.array([[p.bbox[0], p.bbox[1]], [p.bbox[2], p.bbox[3]]]))
                inits.append(default_init(self.body, kps[j], joint_set, res, f_crop, corners.reshape(-1)))
            go = torch.tensor(np.stack([i[0] for i in inits]), dtype=torch.float32)
            bp = torch.tensor(np.stack([i[1] for i in inits]), dtype=torch.float32)
            tr = torch.tensor(np.stack([i[2] for i in inits]), dtype=torch.float32)
            betas = torch.zeros(B, int(self.body.num_betas))
        if betas.shape[1] != int(self.body.num_betas):
            betas = torch.nn.functional.pad(betas, (0, max(0, int(self.body.num_betas) - betas.shape[1])))
            betas = betas[:, : int(self.body.num_betas)]
        keypoints = None
        if joint_set is not None:
            if all(kps[j] is not None for j in members):
                keypoints = torch.tensor(np.stack([kps[j] for j in members]), dtype=torch.float32)
            elif obs is not None and joint_set == obs["joint_set"]:
                keypoints = obs["keypoints"][sel].float().cpu()
        out: dict[int, dict[str, Any]] = {}
        if self.method == "regressor":
            for b, j in enumerate(members):
                out[j] = {"global_orient": go[b], "body_pose": bp[b], "transl": tr[b], "betas": betas[b],
                          "loss": float("nan"), "terms": {}, "hypothesis": 0, "occlusion": None, "occ_frac": 0.0,
                          "joint_set": joint_set}
            return out
        cfg = self.config.fit or FitConfig.occluded()
        cfg = cfg.with_(second_hypothesis=cfg.second_hypothesis or self.config.second_hypothesis or obs is None,
                        keypoints_only=self.method == "keypoints")
        if keypoints is None and self.method == "keypoints":
            raise NeuralfitError("the keypoints method needs 2D keypoints (mediapipe found none and no --keypoints "
                                 "file was given)")
        batch = FitBatch(go, bp, tr, betas, res=res, keypoints=keypoints, joint_set=joint_set or "smpl24",
                         focal=f_crop)
        if self.method == "neural":
            batch.features = obs["features"][sel]
            batch.part_probs = obs["part_probs"][sel]
            if any(masks[j] is not None for j in members):
                # A person without a mask (user keypoints) gets 0.5 everywhere: no evidence either way.
                size = int(batch.features.shape[-1])
                batch.mask = torch.tensor(np.stack([masks[j] if masks[j] is not None else
                                                    np.full((size, size), 0.5, np.float32) for j in members]))
        self._fit_config_used = cfg
        fitter = Fitter(self.body, self.neural_model if self.method == "neural" else None, self.prior, cfg,
                        device=dev)
        result = fitter.fit(batch)
        for b, j in enumerate(members):
            occ = None
            if result.occlusion is not None:
                occ = result.occlusion[b].float().cpu().numpy()
            out[j] = {"global_orient": result.global_orient[b].cpu(), "body_pose": result.body_pose[b].cpu(),
                      "transl": result.transl[b].cpu(), "betas": result.betas[b].cpu(),
                      "loss": float(result.loss[b]), "terms": {k: float(v[b]) for k, v in result.terms.items()},
                      "hypothesis": int(result.hypothesis[b]) if result.hypothesis is not None else 0,
                      "occlusion": occ, "occ_frac": float(result.occlusion_fraction[b])
                      if result.occlusion_fraction is not None else 0.0, "joint_set": joint_set}
        return out

    def _finish_image(self, pic, r: ImageFit, people: list[_Person], fits: list[dict], res: int,
                      f_crop: float) -> None:
        import cv2
        import torch

        from neuralfit.data.crop import crop_transform

        h, w = pic.shape[:2]
        pp = np.array([w / 2.0, h / 2.0])
        focals = [crop_focal_to_image(f_crop, p.scale, res) for p in people]
        F = max(focals)  # the largest box's camera (largest scale -> largest focal)
        r.focal_length, r.principal_point = F, pp
        occ_img = np.zeros((h, w), np.float32) if any(f["occlusion"] is not None for f in fits) else None
        for p, fit, fi in zip(people, fits, focals, strict=True):
            dev = self.body.faces.device  # the fitter may have moved the body to the GPU
            betas = fit["betas"][None].float().to(dev)
            go, bp = fit["global_orient"][None].float().to(dev), fit["body_pose"][None].float().to(dev)
            with torch.no_grad():
                rel = self.body(betas=betas, global_orient=go, body_pose=bp)
            joints_rel = rel.joints[0].cpu().numpy().astype(np.float64)
            t = transl_to_image_camera(fit["transl"].numpy(), joints_rel, p.center, pp, fi, F)
            verts = rel.vertices[0].cpu().numpy().astype(np.float64) + t
            joints = joints_rel + t
            kp_fit = None
            kp = p.keypoints
            js = p.joint_set if kp is not None else None
            if js is not None:
                with torch.no_grad():
                    k3 = self.body.keypoints(rel, js)[0].cpu().numpy().astype(np.float64) + t
                kp_fit = project_points(k3, F, pp)
                kp_fit[~self.body.keypoint_sets[js].valid.cpu().numpy()] = np.nan  # keypoints this body lacks
            r.people.append(PersonFit(
                betas=fit["betas"].numpy(), global_orient=fit["global_orient"].numpy(),
                body_pose=fit["body_pose"].numpy(), transl=t.astype(np.float32), joints3d=joints.astype(np.float32),
                vertices=verts.astype(np.float32), bbox=p.bbox, center=p.center, scale=float(p.scale),
                keypoints=kp, joint_set=js, keypoints_fit=kp_fit, loss=fit["loss"], terms=fit["terms"],
                hypothesis=fit["hypothesis"], occlusion_fraction=fit["occ_frac"]))
            if fit["occlusion"] is not None and occ_img is not None:
                m = fit["occlusion"]
                aff = crop_transform(p.center, p.scale, m.shape[0])  # photo -> occlusion-map coordinates
                # warpAffine works on pixel indices whose centres are at index + 0.5 in both images.
                aff[:, 2] += 0.5 * aff[:, :2].sum(1) - 0.5
                back = cv2.warpAffine(m.astype(np.float32), aff, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)
                occ_img = np.maximum(occ_img, back)
        r.occlusion = occ_img
        if self.config.write_overlay:
            from neuralfit.io.images import render_people

            r.overlay, r.body_mask = render_people(pic, [q.vertices for q in r.people], self.body.faces.cpu().numpy(),
                                                   F, (pp[0], pp[1]))
        r.photo = pic


def _unique_stem(stem: str, used: set[str]) -> str:
    s, k = stem or "image", 1
    while s in used:
        k += 1
        s = f"{stem}_{k}"
    used.add(s)
    return s


# ---------------------------------------------------------------------------------------------- writing
def fit_summary(r: ImageFit, fitter: ImageFitter | None = None) -> dict[str, Any]:
    """The content of fit.json."""
    people = []
    for p in r.people:
        entry: dict[str, Any] = {"bbox": p.bbox, "crop_center": p.center, "crop_scale": p.scale, "loss": p.loss,
                                 "terms": p.terms, "hypothesis": p.hypothesis,
                                 "occlusion_fraction": p.occlusion_fraction, "joint_set": p.joint_set}
        err = keypoint_errors(p)
        if err is not None:
            size = float(max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1]))
            entry["keypoint_error_px"] = {"median": float(np.median(err)), "max": float(np.max(err)),
                                          "within_10pct_box": float(np.mean(err <= 0.1 * size)), "n": int(len(err))}
        people.append(entry)
    out: dict[str, Any] = {"image": r.source, "status": r.status, "method": r.method,
                           "method_reason": r.method_reason, "image_size": list(r.image_size),
                           "camera": {"focal_length": r.focal_length, "principal_point": r.principal_point,
                                      "frame": "OpenCV (x right, y down, z forward), metres"},
                           "people": people, "timings_s": {k: round(v, 4) for k, v in r.timings.items()},
                           "occlusion_map": r.occlusion is not None}
    if fitter is not None:
        out["settings"] = fitter.settings()
        out["assets"] = fitter.assets()
    return out


def keypoint_errors(p: PersonFit, min_conf: float = 0.5) -> np.ndarray | None:
    """Pixel distances between fitted and detected keypoints over confident keypoints the body defines."""
    if p.keypoints is None or p.keypoints_fit is None:
        return None
    ok = p.keypoints[:, 2] >= min_conf
    ok &= np.isfinite(p.keypoints_fit).all(1)
    if not ok.any():
        return None
    return np.linalg.norm(p.keypoints_fit[ok] - p.keypoints[ok, :2], axis=1)


def write_image_fit(folder: str | os.PathLike, r: ImageFit, fitter: ImageFitter | None = None) -> Path:
    """Write one photo's outputs into ``folder`` atomically (params.npz, mesh(_i).obj, overlay.png,
    occlusion.png when the method has an outlier process, fit.json)."""
    from neuralfit.io.atomic import save_json, save_npz
    from neuralfit.io.folder import atomic_dir
    from neuralfit.io.images import occlusion_picture, save_png
    from neuralfit.io.mesh import save_obj

    faces = fitter.body.faces.cpu().numpy() if fitter is not None else None
    with atomic_dir(folder) as tmp:
        save_npz(tmp / "params.npz", **r.params())
        if faces is not None:
            for i, p in enumerate(r.people):
                save_obj(tmp / ("mesh.obj" if len(r.people) == 1 else f"mesh_{i}.obj"), p.vertices, faces)
        if r.overlay is not None:
            save_png(tmp / "overlay.png", r.overlay)
            if r.occlusion is not None and r.photo is not None:
                save_png(tmp / "occlusion.png", occlusion_picture(r.photo, r.occlusion, r.body_mask))
        save_json(tmp / "fit.json", fit_summary(r, fitter))
    return Path(folder)


# ---------------------------------------------------------------------------------------------- API
def fit_image(
    images: Any,
    out: str | os.PathLike | None = None,
    *,
    body: Any = "free",
    prior: str | os.PathLike | None = "default",
    network: str | os.PathLike | None = None,
    neural_model: str | os.PathLike | None = None,
    keypoints: str | os.PathLike | list | None = None,
    bbox: Any = None,
    method: str | None = None,
    device: str = "cpu",
    config: FitImageConfig | None = None,
    progress: bool = False,
) -> ImageFit | list[ImageFit]:
    """Fit SMPL-format bodies to people in photos (the Python side of ``neuralfit fit``).

    Args:
        images: a path, an (H, W, 3) uint8 RGB array, or a list of them.
        out: folder for ``<stem>/`` outputs (params.npz, mesh.obj, overlay.png, occlusion.png, fit.json);
            None writes nothing.
        body: "free" or a path to SMPL files.
        prior: "default", a VPoser path, or None.
        network, neural_model: checkpoint paths; None uses the shipped defaults when present.
        keypoints: an OpenPose BODY-25 / COCO-17 JSON file (applies to every image; COCO files are
            matched by file name), or per image a list of ``neuralfit.detect.PersonKeypoints``.
        bbox: "x0,y0,x1,y1" or (4,) array for every image, or a list with one per image.
        method: "neural", "keypoints", "regressor", or None (auto: neural when a neural model is passed).
        device: "cpu" or "cuda".
        config: :class:`FitImageConfig` (``method`` here overrides its method).

    Returns:
        One :class:`ImageFit` for a single image, else a list (same order). Photos without a person
        or that cannot be read come back with ``status`` "no_person" / "failed" and a one-line ``message``.
    """
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        raise NeuralfitError("no images given; expected at least one photo")
    cfg = config or FitImageConfig()
    if method is not None:
        cfg = FitImageConfig(**{**{k: getattr(cfg, k) for k in cfg.__dataclass_fields__}, "method": method})
    boxes = _per_image(bbox, len(items), "bbox")
    boxes = [parse_bbox(b) if isinstance(b, str) else (None if b is None else np.asarray(b, np.float32))
             for b in boxes]
    kps: list = [None] * len(items)
    if isinstance(keypoints, (str, os.PathLike)):
        from neuralfit.detect import load_keypoints_json

        for i, im in enumerate(items):
            name = Path(im).name if isinstance(im, (str, os.PathLike)) else None
            kps[i] = load_keypoints_json(keypoints, image_name=name)
    elif keypoints is not None:
        kps = _per_image(keypoints, len(items), "keypoints")
    with ImageFitter(body, prior, network, neural_model, cfg, device) as fitter:
        results = fitter.fit(items, kps, boxes, progress=progress, out=out)
    return results[0] if single else results


def _per_image(value: Any, n: int, name: str) -> list:
    if value is None or isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [value] * n
    value = list(value)
    if len(value) == 4 and all(np.isscalar(v) for v in value):
        return [np.asarray(value, np.float32)] * n
    if len(value) != n:
        raise NeuralfitError(f"{name} has {len(value)} entries for {n} images; expected one per image")
    return value
