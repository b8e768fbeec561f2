"""Photos in, fitted bodies out: the orchestrator of the photo path (``neuralfit fit``, ``neuralfit.fit_image``).

Per chunk of photos, top to bottom (each step is one module of :mod:`neuralfit.photo`):

1. **People** (``photo.people``): mediapipe BlazePose-33 keypoints, mask and metric world landmarks per
   photo (one person), or the user's OpenPose/COCO keypoints (several people), or a user box.
2. **Camera** (``photo.camera``): the photo's own pinhole camera (``--focal`` / ``--fov`` / ``K`` >
   EXIF > focal = image diagonal), principal point at the photo centre unless given.
3. **Crops** (``photo.people.Crop``): a SPIN crop per person; the photo camera seen in it
   (``render.camera.crop_camera_from_photo``), so fitting in crop pixels is fitting in the photo camera.
4. **Network** (only when something needs it): features, parts, heatmap keypoints, regressor.
5. **Start** (``photo.start``): ``--init`` mediapipe3d (IK to mediapipe's 3D; default), lifter, network or
   FILE.npz, placed in each crop camera by least squares on the keypoints.
6. **Fit**: :func:`neuralfit.fitting.inputs.fit_batch` (the function ``eval`` and ``refine`` use too) ->
   :class:`neuralfit.fitting.Fitter`, one batch per joint set.
7. **Results and outputs** (``photo.results``, ``photo.outputs``): bodies in the photo camera,
   overlay.png, side.png, occlusion.png, meshes, params.npz, fit.json.
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from neuralfit import __version__
from neuralfit.assets import default_assets
from neuralfit.errors import NeuralfitError
from neuralfit.photo.outputs import RunInfo, keypoint_errors, project_points, write_image_fit
from neuralfit.photo.people import Person, box_in_photo, crop_from_box, find_people, parse_bbox
from neuralfit.photo.results import ImageFit, PersonFit

if TYPE_CHECKING:  # torch-free at import time: neuralfit.fitting imports torch
    from neuralfit.fitting import FitConfig

__all__ = ["METHODS", "FitImageConfig", "ImageFit", "ImageFitter", "PersonFit", "crop_from_box", "default_assets",
           "fit_image", "keypoint_errors", "parse_bbox", "project_points", "write_image_fit"]

log = logging.getLogger("neuralfit.fit")

METHODS = ("neural", "keypoints", "regressor")


@dataclass
class FitImageConfig:
    """Settings of :func:`fit_image` (defaults: what ``neuralfit fit`` does).

    Attributes:
        method: "neural", "keypoints", "regressor", or None = "neural" when the caller passes a neural
            model (and a network is given or shipped), else "keypoints".
        init: where fits start: "mediapipe3d", "lifter", "network" or a FILE.npz (``neuralfit.photo.start``).
        focal, fov: the photo camera's focal in pixels, or its horizontal field of view in degrees;
            None = EXIF, else focal = image diagonal (``neuralfit.init.photo_intrinsics``).
        res: crop size in pixels when no network fixes it (a network uses its checkpoint's input_res).
        box_padding: crop side = ``box_padding`` x the longer side of the person box (SPIN: 1.2).
        batch_size: photos per chunk (all people of a chunk are fitted together).
        max_people: at most this many people per photo, found by :func:`neuralfit.detect.everyone.find_everyone`
            (mediapipe repeated with found people masked out, then overlapping crops) and ordered by box area,
            largest first; 1 = one mediapipe call, the single-person result. People of one photo are fitted
            together in its camera (depth order and interpenetration terms, ``neuralfit.fitting.people``).
        flip_test: average each mediapipe detection (2D keypoints and 3D landmarks) with its answer on the
            mirrored person region; one more mediapipe call per person (``detect.mediapipe_pose.flip_averaged``).
        lift_blend: with ``init="mediapipe3d"``, the share of the keypoint lifter's 3D landmarks in the IK
            target (0 = mediapipe's alone; ``neuralfit.photo.start.start_people``). 0.5, chosen on the real
            multi-view benchmark's front person (docs/real_benchmark.md, session 11): with the lifter of
            2026-12-03 (correlated training confidences, inputs capped at 0.3) 0.3 / 0.5 / 0.7 gave PA-MPJPE
            (as BlazePose keypoints) 60.6 / 60.2 / 60.9 mm; the two 3D guesses err differently.
        lift_blend_hidden: raises a person's blend toward the lifter when mediapipe is unsure of their limbs:
            ``a + (1 - a) min(1, lift_blend_hidden x s)``, ``s`` the share of the 12 limb keypoints below
            confidence 0.5. Under an occluder mediapipe's 3D follows the keypoints it hallucinates; the lifter
            reads them capped at low confidence and leans on its mocap prior (docs/occlusion.md, session 11).
            1.5, chosen on the real occluded benchmark's development frames; 0 = off.
        lift_blend_inconsistent: (r0, r1): raises the blend further, ``a + (1 - a) w``, when mediapipe's 3D
            landmarks do not project onto its own 2D keypoints: ``w`` ramps from 0 to 1 as their residual
            (``photo.start.landmark_reprojection_residual``, a share of the person's size; ~0.07 at the
            median on clean and occluded photos alike) goes from r0 to r1. An occluder that confuses mediapipe
            often breaks its 3D head's answer without moving the 2D one. (0.08, 0.16), chosen on the real
            occluded benchmark's development frames (docs/occlusion.md, session 13); None = off.
        unsure_hidden: the same cue in the 2D fit: a person's keypoints below confidence 0.5 get weight
            ``1 - min(1, unsure_hidden x s)`` (``photo.steps.fit_all``). Under an occluder the fit otherwise
            drags the start's (lifter-led) hidden limbs onto the keypoints mediapipe guesses for them; one or
            two unsure limbs of a clean photo (far-side, self-occluded) keep most of their weight. 3, chosen on
            the real occluded benchmark's development frames over 0 / 1.5 / 3 / 6 (docs/occlusion.md, session
            12): 6 cost the clean front person 1.5 mm; 0 = off.
        inconsistent_keypoints: c: a person's keypoint terms get weight ``1 - min(1, c w)``, ``w`` the
            ``lift_blend_inconsistent`` ramp of their start (``photo.steps.fit_all``): when mediapipe's 3D does
            not match its 2D, the network was confused and its 2D keypoints are suspect too, so the fit
            leans on the (lifter-led) start and the priors. On the occluded development frames the fit lost
            39 mm to its start under the adversarial square in the third of person-views with the highest
            residual, and gained 1-4 mm in the lowest third. 2, chosen there over 1 / 2 / 4 (docs/occlusion.md,
            session 13): 4 was better under occluders but cost the clean front person 0.2 mm; 0 = off.
        hidden_keypoints: k: in the 2D fit each keypoint's confidence is scaled by ``1 - min(1, k h)``, ``h``
            the crop's ``hidden`` map (``hidden_from_parts``) where the keypoint lies
            (``photo.steps.hidden_at``): where the part head sees no body, mediapipe guessed the keypoint.
            The occlusion map keeps reading the unscaled confidences (``FitBatch.keypoint_visibility``), as it
            counts the part head's say directly. 2, chosen on the real occluded benchmark's development frames
            over 0 / 1 / 2 (docs/occlusion.md, session 14): the man behind 12.5 mm better summed over the
            placements and clean, the woman in front level (-0.2); 0 = off.
        hidden_keypoints_start: the same factor with this k on the keypoints the start reads (the lifter's input
            confidences, the IK weights, the hidden-limb share of ``lift_blend_hidden``), as the lifter was
            trained with hidden joints at low confidence. 0 = off: k = 2 on the occluded development frames
            helped under the squares and the adversarial square (front 90.0 -> 85.4, back 196.6 -> 188.3 mm) but
            cost the legs and arm + torso blocks 0.6-3.5 mm, and the lifter alone lost 5-10 mm there
            (docs/occlusion.md, session 14).
        hidden_from_parts: the network's part head also says where the body is hidden: its background
            probability on the person, mapped linearly from ``[lo, hi]`` to [0, 1] (clipped), becomes the
            fitter's ``FitBatch.hidden`` (``photo.steps.hidden_from_parts``). mediapipe's segmentation fills
            a person in through an occluder; a part head trained with occluded pixels labelled background
            (the shipped GHUM network) does not. None = off. Needs a network with such a part head; costs one
            network pass per person (~25 ms). The range was chosen on the real occluded benchmark's
            development frames (docs/occlusion.md).
        occlusion_from_parts: the occlusion map (occlusion.png, params.npz ``occlusion``) of a person the part
            head saw: its background probability over the fitted body (averaged over ``occlusion_smooth`` x
            ``occlusion_smooth`` body cells of the crop's grid; 1 = per cell), mapped linearly from ``[lo, hi]``
            to [0, 1] (``photo.occlusion.occlusion_from_parts``); other people's masks count as hidden where
            this person's does not. None: the fitter's mask + keypoint map. (0.25, 0.45) and 1 were chosen on
            the real occluded benchmark's development frames by the worst margin to issue 16's gate over
            placements and people (``benchmarks/occlusion_map_grid.py --dev``: -0.11; smoothing over 3 x 3
            cells -0.12). The fitter's map there was as high on the visible body as on the occluder once its
            edges were counted (docs/occlusion.md, session 15). Needs ``hidden_from_parts`` on.
        facing_check: a person whose fit the part head reads the other way round (left/right evidence
            ``photo.facing.lr_evidence`` below ``-facing_check``) is fitted again from left/right-swapped
            keypoints and 3D landmarks (``photo.steps.swap_sides``); the second fit is kept when the head
            agrees with it more. None = off. Needs a network with a part head and BlazePose keypoints. The
            refit runs the flagged person alone (without the depth-order and interpenetration terms of the
            others). 0.3 was chosen on the real occluded benchmark's development frames (docs/fit.md, session
            16): there the evidence of fits facing the wrong way (> 90 deg from the pseudo-GT) went down to
            -0.65 and that of fits facing the right way to -0.27; the check refitted 3 of 205 person-views
            (adversarial square: 129.0 -> 125.5 mm PA on the woman) and changed nothing else.
        fit: fitter settings; None = ``FitConfig.photo()``. Keypoint gating is its
            ``min_keypoint_confidence``; its ``second_hypothesis`` is also forced on for people whose
            start cannot tell front from back (the mean-pose start).
        write_overlay: render overlay.png / side.png / occlusion.png (the slowest part of writing).
    """

    method: str | None = None
    init: str = "mediapipe3d"
    focal: float | None = None
    fov: float | None = None
    res: int = 224
    box_padding: float = 1.2
    batch_size: int = 8
    max_people: int = 4
    flip_test: bool = True
    lift_blend: float = 0.5
    lift_blend_hidden: float = 1.5
    lift_blend_inconsistent: tuple[float, float] | None = (0.08, 0.16)
    unsure_hidden: float = 3.0
    inconsistent_keypoints: float = 2.0
    hidden_keypoints: float = 2.0
    hidden_keypoints_start: float = 0.0
    hidden_from_parts: tuple[float, float] | None = (0.35, 0.65)
    occlusion_from_parts: tuple[float, float] | None = (0.25, 0.45)
    occlusion_smooth: int = 1
    facing_check: float | None = 0.3
    fit: FitConfig | None = None
    write_overlay: bool = True

    def __post_init__(self) -> None:
        from neuralfit.photo.camera import check_focal_options
        from neuralfit.photo.start import check_init

        if self.method is not None and self.method not in METHODS:
            raise NeuralfitError(f"method {self.method!r} is unknown; expected one of {', '.join(METHODS)}")
        self.init = check_init(self.init)
        check_focal_options(self.focal, self.fov)
        if self.res <= 0 or self.res % 32:
            raise NeuralfitError(f"crop res must be a positive multiple of 32, got {self.res}")
        if not self.box_padding >= 1.0:
            raise NeuralfitError(f"box_padding must be >= 1, got {self.box_padding}")
        if self.batch_size < 1:
            raise NeuralfitError(f"batch_size must be >= 1, got {self.batch_size}")
        if not isinstance(self.max_people, int) or self.max_people < 1:
            raise NeuralfitError(f"max_people must be an integer >= 1, got {self.max_people!r}")
        if not 0.0 <= self.lift_blend <= 1.0:
            raise NeuralfitError(f"lift_blend must be in [0, 1], got {self.lift_blend}")
        if not self.lift_blend_hidden >= 0.0:
            raise NeuralfitError(f"lift_blend_hidden must be >= 0, got {self.lift_blend_hidden}")
        if self.lift_blend_inconsistent is not None:
            r0, r1 = (float(v) for v in self.lift_blend_inconsistent)
            if not 0.0 <= r0 < r1:
                raise NeuralfitError(f"lift_blend_inconsistent must be (r0, r1) with 0 <= r0 < r1, got "
                                     f"{self.lift_blend_inconsistent}")
        for name in ("inconsistent_keypoints", "hidden_keypoints", "hidden_keypoints_start", "unsure_hidden"):
            if not getattr(self, name) >= 0.0:  # NaN fails too
                raise NeuralfitError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("hidden_from_parts", "occlusion_from_parts"):
            if getattr(self, name) is not None:
                lo, hi = (float(v) for v in getattr(self, name))
                if not 0.0 <= lo < hi <= 1.0:
                    raise NeuralfitError(f"{name} must be (lo, hi) with 0 <= lo < hi <= 1, got {getattr(self, name)}")
                setattr(self, name, (lo, hi))
        if self.facing_check is not None and not self.facing_check >= 0.0:
            raise NeuralfitError(f"facing_check must be >= 0 or None, got {self.facing_check}")
        if not isinstance(self.occlusion_smooth, int) or self.occlusion_smooth < 1:
            raise NeuralfitError(f"occlusion_smooth must be an integer >= 1, got {self.occlusion_smooth!r}")


def _choose_method(method: str | None, net_path: Path | None, nm_path: Path | None,
                   neural_model_given: bool) -> tuple[str, str]:
    """(method, why). The shipped neural model is not automatic: with the CPU-trained default network
    its features do not improve fits (docs/network.md), so "neural" is automatic only for a model the user gives."""
    if method is None:
        if net_path is not None and neural_model_given:
            return "neural", "auto: a network and a neural model were given"
        return "keypoints", "auto: keypoints + priors (pass --neural-model or --method neural for the neural fit)"
    if method == "neural" and net_path is None:
        raise NeuralfitError("--method neural needs a network: pass --network CKPT (no default network is "
                             "shipped with this install)")
    if method == "neural" and nm_path is None:
        raise NeuralfitError("--method neural needs a neural mesh model: pass --neural-model NM.pt "
                             "(no default neural model is shipped with this install)")
    return method, "chosen by the user"


class ImageFitter:
    """Loaded assets (body, prior, detector, network, neural model) reused over many photos.

    Args:
        body: ``"free"`` or a path to SMPL files (or a loaded body model).
        prior: ``"default"``, a VPoser path, or None (no pose prior).
        network: network checkpoint path, or None = the shipped default (if any).
        neural_model: neural mesh model ``.pt``, or None = the shipped default (if any).
        config: :class:`FitImageConfig`.
        device: "cpu" or "cuda[:i]".
        K: (3, 3) intrinsics for every photo (overrides ``config.focal`` / ``fov`` and EXIF).
    """

    def __init__(self, body: Any = "free", prior: str | os.PathLike | None = "default",
                 network: str | os.PathLike | None = None, neural_model: str | os.PathLike | None = None,
                 config: FitImageConfig | None = None, device: str = "cpu", K: Any = None,
                 lifter: str | os.PathLike | None = None) -> None:
        import torch

        from neuralfit.body import load_body_model
        from neuralfit.fitting import FitConfig
        from neuralfit.fitting.inputs import method_config

        self.config = config or FitImageConfig()
        self.device = str(device)
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise NeuralfitError(f"--device {device}: no CUDA GPU is available here; use --device cpu")
        self.K = None if K is None else np.asarray(K, dtype=np.float64)
        t0 = time.perf_counter()
        self.body = load_body_model(body, device=self.device) if isinstance(body, (str, os.PathLike)) else body
        self.body_spec = str(body) if isinstance(body, (str, os.PathLike)) else str(getattr(body, "spec", ""))
        self.prior = self.prior_name = None
        if prior is not None:
            from neuralfit.priors import load_pose_prior

            self.prior = load_pose_prior(prior, device=self.device)
            self.prior_name = str(getattr(self.prior, "name", prior))
        default_net, default_nm = default_assets()
        self.network_path = Path(network) if network is not None else default_net
        nm_path = Path(neural_model) if neural_model is not None else default_nm
        self.method, self.method_reason = _choose_method(self.config.method, self.network_path, nm_path,
                                                         neural_model is not None)
        self.neural_model_path = nm_path if self.method == "neural" else None
        self.net = self.neural_model = None
        if self.network_path is not None:
            from neuralfit.nets import load_network

            self.net = load_network(self.network_path, self.body, device=self.device)
        if self.neural_model_path is not None:
            from neuralfit.neural import NeuralMeshModel

            self.neural_model = NeuralMeshModel.load(self.neural_model_path, body=self.body, device=self.device)
            if self.net is not None and self.neural_model.dim != self.net.config.feature_dim:
                raise NeuralfitError(f"neural model {self.neural_model_path} has {self.neural_model.dim}-d features "
                                     f"but network {self.network_path} makes {self.net.config.feature_dim}-d ones")
        self.res = int(self.net.config.input_res) if self.net is not None else int(self.config.res)
        from neuralfit.assets import default_lifter
        from neuralfit.nets.lifter import load_lifter

        self.lifter_path = Path(lifter) if lifter is not None else default_lifter()
        self.lifter = load_lifter(self.lifter_path, device=self.device) if self.lifter_path is not None else None
        base = self.config.fit or FitConfig.photo()
        self.fit_config = method_config(self.method, base) if self.method != "regressor" else None
        self._detector = None
        self.load_seconds = time.perf_counter() - t0

    # ------------------------------------------------------------------ lifecycle and provenance
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

    def run_info(self) -> RunInfo:
        """Settings and assets for fit.json."""
        settings = {"method": self.method, "method_reason": self.method_reason, "res": self.res,
                    "device": self.device, "image": {k: v for k, v in asdict(self.config).items() if k != "fit"},
                    "fit": asdict(self.fit_config) if self.fit_config is not None else None}
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
        assets = {"neuralfit": __version__, "body": {"spec": self.body_spec, "name": getattr(self.body, "name", "")},
                  "pose_prior": self.prior_name, "network": net_info, "neural_model": nm_info,
                  "lifter": str(self.lifter_path) if self.lifter is not None else None,
                  "detector": "mediapipe BlazePose (model_complexity=1)"}
        return RunInfo(settings, assets)

    # ------------------------------------------------------------------ main entry
    def fit(self, images: list[Any], keypoints: list[list | None] | None = None,
            bboxes: list[np.ndarray | None] | None = None, progress: bool = False,
            out: str | os.PathLike | None = None) -> list[ImageFit]:
        """Fit every photo; see :func:`fit_image` for the arguments. Photos are processed in chunks of
        ``config.batch_size`` (all people of a chunk fitted in one batch per joint set)."""
        n = len(images)
        keypoints = keypoints or [None] * n
        bboxes = bboxes or [None] * n
        if out is not None:
            from neuralfit.io.folder import check_writable

            check_writable(out)
        results: list[ImageFit] = []
        bar, redirect = None, contextlib.nullcontext()
        if progress:
            from tqdm import tqdm
            from tqdm.contrib.logging import logging_redirect_tqdm

            bar = tqdm(total=n, unit="photo", desc="fit", leave=False)
            redirect = logging_redirect_tqdm([log])  # warnings print above the bar, not through it
        stems_used: set[str] = set()
        info = self.run_info() if out is not None else None
        faces = self.body.faces.cpu().numpy()
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
                                r.out_dir = write_image_fit(Path(out) / r.stem, r, faces, info)
                            except NeuralfitError as exc:
                                r.status, r.message = "failed", str(exc)
                            r.timings["write"] = time.perf_counter() - t0
                        if not r.ok:
                            log.warning("%s: %s", r.source, r.message)
                        for w in [*r.camera_warnings, *r.warnings]:
                            log.warning("%s: %s", r.source, w)
                        if bar is not None:
                            bar.update(1)
                    results.extend(chunk)
            finally:
                if bar is not None:
                    bar.close()
        return results

    def _fit_chunk(self, images, keypoints, bboxes, indices, stems_used) -> list[ImageFit]:
        """Read, detect and set up the camera of each photo, then fit all their people together."""
        from neuralfit.init import photo_intrinsics
        from neuralfit.io.images import check_image_array, read_image

        results: list[ImageFit] = []
        pics: list[np.ndarray | None] = []
        people: list[Person] = []
        for image, kp, box, i in zip(images, keypoints, bboxes, indices, strict=True):
            is_path = isinstance(image, (str, os.PathLike))
            source = str(image) if is_path else f"<array {i}>"
            stem = _unique_stem(Path(source).stem if is_path else f"image_{i:04d}", stems_used)
            r = ImageFit(source=source, stem=stem, method=self.method, method_reason=self.method_reason)
            results.append(r)
            t0 = time.perf_counter()
            try:
                pic = read_image(image) if is_path else check_image_array(image, source)
            except NeuralfitError as exc:
                r.status, r.message = "failed", str(exc)
                pics.append(None)
                continue
            pics.append(pic)
            r.image_size = pic.shape[:2]
            boxes = None if box is None else np.asarray(box, np.float32).reshape(-1, 4)
            off = [b for b in (boxes if boxes is not None else []) if not box_in_photo(b, r.image_size)]
            if off:
                # A box off the photo would "fit" a body to padding and report success.
                r.status = "failed"
                r.message = (f"bbox {','.join(f'{v:g}' for v in off[0])} lies outside the "
                             f"{r.image_size[1]}x{r.image_size[0]} photo")
                continue
            if boxes is not None and len(boxes) == 0:
                r.status, r.message = "no_person", "no person: the boxes given for this photo are an empty list"
                continue
            cam = photo_intrinsics(r.image_size, image if is_path else None, focal=self.config.focal,
                                   fov=self.config.fov, K=self.K)
            r.focal_length, r.principal_point = float(cam.focal), np.asarray(cam.principal_point, np.float64)
            r.camera_source, r.camera_warnings = cam.source, list(cam.warnings)
            found = find_people(self._get_detector, pic, kp, boxes, len(results) - 1, self.net is not None,
                                self.config.max_people, self.config.flip_test)
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

    def _start_and_fit(self, crops, people: list[Person], names: list[str], pred, timer: _Timer | None = None):
        """Starts and fits of the people of ``crops`` (one batch per joint set; several people of a photo
        together)."""
        from neuralfit.photo import steps

        starts = steps.start_people(self.config.init, crops, people, names, self.body, self.prior, self.net, pred,
                                    self.lifter, self.config.lift_blend, self.config.lift_blend_hidden,
                                    self.config.lift_blend_inconsistent, self.config.hidden_keypoints_start)
        if timer is not None:
            timer.lap("start")
        fitted = steps.fit_all(self.method, crops, starts, pred, self.body, self.neural_model, self.prior,
                               self.fit_config, self.device, self.config.unsure_hidden,
                               self.config.inconsistent_keypoints, self.config.hidden_keypoints)
        if timer is not None:
            timer.lap("fit")
        return starts, fitted

    def _recheck_facing(self, crops, people: list[Person], names: list[str], pred, starts, fitted) -> None:
        """Refit, from left/right-swapped observations, the people the part head reads the other way round;
        keep the refit where the head agrees with it more. Updates the lists in place."""
        from neuralfit.photo import steps

        evidence = steps.facing_evidence(crops, pred, fitted, self.body)
        for j, e in enumerate(evidence):
            fitted[j].facing_evidence = e
        redo = [j for j, e in enumerate(evidence) if e is not None and e < -self.config.facing_check
                and people[j].joint_set == "blazepose33" and people[j].keypoints is not None]
        if not redo:
            return
        swapped = [steps.swap_sides(people[j], crops[j]) for j in redo]
        sub_people, sub_crops = [p for p, _ in swapped], [c for _, c in swapped]
        sub_pred = steps.take(pred, redo)
        sub_starts, sub_fitted = self._start_and_fit(sub_crops, sub_people, [names[j] for j in redo], sub_pred)
        for k, (j, e2) in enumerate(zip(redo, steps.facing_evidence(sub_crops, sub_pred, sub_fitted, self.body),
                                        strict=True)):
            if e2 is not None and e2 > evidence[j]:
                sub_fitted[k].facing_evidence, sub_fitted[k].facing_swapped = e2, True
                people[j], crops[j], starts[j], fitted[j] = sub_people[k], sub_crops[k], sub_starts[k], sub_fitted[k]

    def _fit_people(self, pics, people: list[Person], results: list[ImageFit]) -> None:
        """Crops -> network (when needed) -> starts -> fit -> results in the photo camera."""
        from neuralfit.photo import steps

        timer = _Timer()
        crops = steps.crop_people(pics, people, results, self.res, self.config.box_padding,
                                  keep_pixels=self.net is not None)
        timer.lap("crop")
        cue = self.config.hidden_from_parts
        pred = steps.network_outputs(self.net, crops, people, self.method, self.config.init, cue is not None)
        if cue is not None and pred is not None:
            steps.hidden_from_parts(crops, pred, cue)
        timer.lap("network")
        names = [Path(results[p.image_index].source).name for p in people]
        starts, fitted = self._start_and_fit(crops, people, names, pred, timer)
        if self.config.facing_check is not None:
            self._recheck_facing(crops, people, names, pred, starts, fitted)
            timer.lap("facing")
        for ii, r in enumerate(results):
            members = [j for j, p in enumerate(people) if p.image_index == ii]
            if members:
                steps.finish_image(pics[ii], r, [people[j] for j in members], [crops[j] for j in members],
                                   [fitted[j] for j in members], [starts[j] for j in members], self.body,
                                   self.config.write_overlay, self.config.occlusion_from_parts,
                                   self.config.occlusion_smooth)
        timer.lap("render")
        timer.spread(people, results)


class _Timer:
    """Seconds per stage of a chunk, spread evenly over its people."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.seconds: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.seconds[name] = self.seconds.get(name, 0.0) + now - self.t0
        self.t0 = now

    def spread(self, people: list[Person], results: list[ImageFit]) -> None:
        for p in people:
            r = results[p.image_index]
            for k, v in self.seconds.items():
                r.timings[k] = r.timings.get(k, 0.0) + v / len(people)


def _unique_stem(stem: str, used: set[str]) -> str:
    s, k = stem or "image", 1
    while s in used:
        k += 1
        s = f"{stem}_{k}"
    used.add(s)
    return s


# ---------------------------------------------------------------------------------------------- API
def fit_image(
    images: Any,
    out: str | os.PathLike | None = None,
    *,
    body: Any = "free",
    prior: str | os.PathLike | None = "default",
    network: str | os.PathLike | None = None,
    neural_model: str | os.PathLike | None = None,
    lifter: str | os.PathLike | None = None,
    keypoints: str | os.PathLike | list | None = None,
    bbox: Any = None,
    method: str | None = None,
    init: str | None = None,
    focal: float | None = None,
    fov: float | None = None,
    K: Any = None,
    max_people: int | None = None,
    device: str = "cpu",
    config: FitImageConfig | None = None,
    progress: bool = False,
) -> ImageFit | list[ImageFit]:
    """Fit SMPL-format bodies to people in photos (the Python side of ``neuralfit fit``).

    Args:
        images: a path, an (H, W, 3) uint8 RGB array, or a list of them.
        out: folder for ``<stem>/`` outputs (params.npz, mesh.obj, mesh.glb, overlay.png, side.png,
            occlusion.png, fit.json); None writes nothing.
        body: "free" or a path to SMPL files.
        prior: "default", a VPoser path, or None.
        network, neural_model: checkpoint paths; None uses the shipped defaults when present.
        lifter: a keypoint lifter (``neuralfit train lifter``); None uses the shipped one when present.
        keypoints: an OpenPose BODY-25 / COCO-17 JSON file (applies to every image; COCO files are
            matched by file name), or per image a list of ``neuralfit.detect.PersonKeypoints``.
        bbox: person box(es) in pixels: "x0,y0,x1,y1" or (4,) for every image, or per image a list of
            them, one entry per image: None, a (4,) box or an (n, 4) array of boxes (one person each; n = 0:
            no person). With one image, an (n, 4) array is that image's boxes.
        max_people: without boxes, at most this many people per photo (default ``FitImageConfig.max_people``
            = 4; 1 = the single-person search).
        method: "neural", "keypoints", "regressor", or None (auto: neural when a neural model is passed).
        init: "mediapipe3d" (default), "lifter", "network" or a FILE.npz of regressor outputs.
        focal: the photos' focal length in pixels; fov: their horizontal field of view in degrees;
            K: a full (3, 3) intrinsic matrix. None: EXIF, else focal = image diagonal.
        device: "cpu" or "cuda".
        config: :class:`FitImageConfig` (``method``, ``init``, ``focal``, ``fov`` here override it).

    Returns:
        One :class:`ImageFit` for a single image, else a list (same order). ``people[i].transl``,
        ``.joints3d`` and ``.vertices`` are metric in the photo's camera. Photos without a person or
        that cannot be read come back with ``status`` "no_person" / "failed" and a one-line ``message``.
    """
    single = not isinstance(images, (list, tuple))
    items = [images] if single else list(images)
    if not items:
        raise NeuralfitError("no images given; expected at least one photo")
    cfg = config or FitImageConfig()
    given = {k: v for k, v in (("method", method), ("init", init), ("focal", focal), ("fov", fov),
                               ("max_people", max_people)) if v is not None}
    if given:
        cfg = replace(cfg, **given)
    if len(items) == 1 and isinstance(bbox, np.ndarray) and bbox.ndim == 2:
        bbox = [bbox]  # one image, its (n, 4) boxes
    boxes = _per_image(bbox, len(items), "bbox")
    boxes = [parse_bbox(b) if isinstance(b, str) else (None if b is None else _boxes_array(b)) for b in boxes]
    kps: list = [None] * len(items)
    if isinstance(keypoints, (str, os.PathLike)):
        from neuralfit.detect import load_keypoints_json

        for i, im in enumerate(items):
            name = Path(im).name if isinstance(im, (str, os.PathLike)) else None
            kps[i] = load_keypoints_json(keypoints, image_name=name)
    elif keypoints is not None:
        kps = _per_image(keypoints, len(items), "keypoints")
    with ImageFitter(body, prior, network, neural_model, cfg, device, K=K, lifter=lifter) as fitter:
        results = fitter.fit(items, kps, boxes, progress=progress, out=out)
    return results[0] if single else results


def _boxes_array(b: Any) -> np.ndarray:
    """A (4,) box or an (n, 4) list of boxes as float32; one-line error otherwise."""
    arr = np.asarray(b, dtype=np.float32)
    if arr.size == 0:
        return arr.reshape(0, 4)
    if arr.shape[-1] != 4 or arr.ndim > 2 or not np.isfinite(arr).all() or \
            (arr.reshape(-1, 4)[:, 2:] <= arr.reshape(-1, 4)[:, :2]).any():
        raise NeuralfitError(f"bbox {b!r} is not a box or a list of boxes x0,y0,x1,y1 with x1 > x0, y1 > y0")
    return arr


def _per_image(value: Any, n: int, name: str) -> list:
    if value is None or isinstance(value, str) or (isinstance(value, np.ndarray) and value.ndim == 1):
        return [value] * n
    value = list(value)
    if len(value) == 4 and all(np.isscalar(v) for v in value):
        return [np.asarray(value, np.float32)] * n
    if len(value) != n:
        raise NeuralfitError(f"{name} has {len(value)} entries for {n} images; expected one per image")
    return value

