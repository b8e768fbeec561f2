"""The steps of the photo path between detection and writing, one function each (typed in and out).

``crop_people`` -> ``network_outputs`` -> ``start_people`` -> ``fit_all`` -> ``finish_image``; the
orchestrator (:class:`neuralfit.pipeline.ImageFitter`) calls them in that order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init.types import StartParams
from neuralfit.photo.people import Crop, Person, box_from_keypoints, crop_from_box, crop_mask, cut_by_frame
from neuralfit.photo.results import ImageFit, PersonFit
from neuralfit.photo.start import PersonStart, StartInputs

#: Feature-map stride of the network (the person mask is resampled to that grid).
_FEATURE_STRIDE = 4


@dataclass
class PersonCrop:
    """One person's SPIN crop and what was observed in it (crop pixels).

    Attributes:
        crop: centre, scale, res; keypoints: (J, 3) of ``joint_set`` or None; mask: (res/4, res/4) person
        probability or None; focal, principal_point: the photo camera seen in the crop; box: (4,) the
        person box; pixels: (res, res, 3) uint8 RGB or None (only kept when a network reads them);
        occluders: (res/4, res/4) the other people of the photo (their masks, max) over the crop, or None;
        image_index: the photo of the chunk. hidden: (res/4, res/4) evidence that a body pixel is hidden
        (:func:`hidden_from_parts`), or None; background: (res/4, res/4) the part head's raw background
        probability it came from (read by the occlusion map, ``neuralfit.photo.occlusion``), or None.
    """

    crop: Crop
    keypoints: np.ndarray | None
    joint_set: str | None
    mask: np.ndarray | None
    focal: float
    principal_point: np.ndarray
    box: np.ndarray
    pixels: np.ndarray | None = None
    occluders: np.ndarray | None = None
    image_index: int = 0
    hidden: np.ndarray | None = None
    background: np.ndarray | None = None


@dataclass
class FittedPerson:
    """The fitter's answer for one person (crop camera = photo camera, so transl is metric in the photo)."""

    global_orient: np.ndarray
    body_pose: np.ndarray
    betas: np.ndarray
    transl: np.ndarray
    joint_set: str | None
    loss: float = float("nan")
    terms: dict[str, float] = field(default_factory=dict)
    hypothesis: int = 0
    occlusion: np.ndarray | None = None
    occlusion_fraction: float = 0.0
    keypoint_outlier: np.ndarray | None = None  # (J,) p(outlier) per keypoint, NaN = not observed
    unsure_weight: float = 1.0  # weight of the keypoints below UNSURE_CONFIDENCE in the fit (fit_all)
    keypoint_weight: float = 1.0  # weight of the person's keypoint terms (fit_all)
    hidden_keypoint_weight: np.ndarray | None = None  # (J,) factor on each confidence from the hidden map (fit_all)
    facing_evidence: float | None = None  # the part head's left/right say on the fit (facing_evidence)
    facing_swapped: bool = False  # refitted from left/right-swapped observations (ImageFitter, facing_check)


def crop_people(pics: list, people: list[Person], results: list[ImageFit], res: int, padding: float,
                keep_pixels: bool, mask_size: int | None = None) -> list[PersonCrop]:
    """A SPIN crop per person with its keypoints, mask and camera (the photo's, seen in the crop).

    Without a user box the crop spans the person's box and all its keypoints, at any confidence: a found
    box holds what is seen, but the fit puts the hidden limbs where mediapipe guessed them, and the part
    head and the occlusion map only speak for the body inside the crop. A user box is kept as given (on the
    occluded benchmark's development frames, whose boxes span the whole person, growing them to the guessed
    keypoints cost 0.3-1.5 mm PA-MPJPE under 5 of 8 occluder rows, docs/occlusion.md)."""
    from neuralfit.data.crop import apply_affine, warp
    from neuralfit.render.camera import crop_camera_from_photo

    size = mask_size or res // _FEATURE_STRIDE
    out = []
    for p in people:
        center, scale = crop_from_box(_crop_box(p, pics[p.image_index].shape[:2]), padding)
        crop = Crop(center, scale, res)
        aff = crop.affine()
        r = results[p.image_index]
        f, pp = crop_camera_from_photo(r.focal_length, r.principal_point, center, scale, res)
        kp = None
        if p.keypoints is not None:
            kp = p.keypoints.copy()
            kp[:, :2] = apply_affine(aff, kp[:, :2])
        box = apply_affine(aff, np.array([[p.bbox[0], p.bbox[1]], [p.bbox[2], p.bbox[3]]])).reshape(-1)
        mask = None if p.mask is None else crop_mask(p.mask, aff, res, size)
        pixels = warp(pics[p.image_index], aff, res) if keep_pixels else None
        others = [q.mask for q in people if q is not p and q.image_index == p.image_index and q.mask is not None]
        occluders = None
        if others:
            occluders = crop_mask(np.maximum.reduce(others), aff, res, size, outside=0.0)
        out.append(PersonCrop(crop, kp, p.joint_set if kp is not None else None, mask, f, pp, box, pixels,
                              occluders, p.image_index))
    return out


def _crop_box(p: Person, image_hw: tuple[int, int]) -> np.ndarray:
    """(4,) the person's box grown to the box of all its keypoints inside the photo (any confidence); a user
    box as given."""
    if p.keypoints is None or p.box_given:
        return p.bbox
    h, w = image_hw
    kp = p.keypoints
    inside = (kp[:, 0] >= 0) & (kp[:, 0] < w) & (kp[:, 1] >= 0) & (kp[:, 1] < h)
    kb = box_from_keypoints(kp[inside], image_hw, 0.0)
    if kb is None:
        return p.bbox
    return np.array([min(p.bbox[0], kb[0]), min(p.bbox[1], kb[1]), max(p.bbox[2], kb[2]), max(p.bbox[3], kb[3])],
                    np.float32)


def network_outputs(net, crops: list[PersonCrop], people: list[Person], method: str, init: str,
                    parts_cue: bool = False) -> Any:
    """The network's prediction for the crops when something will read it, else None.

    Read by: the neural method (features, parts), ``--init network``, people without detected keypoints
    (heatmap keypoints), an image regressor standing in for a missing mediapipe3d / lifter start, and the
    part head's occlusion cue (``parts_cue``, :func:`hidden_from_parts`) for people with a mask.
    """
    if net is None:
        return None
    image_regressor = getattr(net.config, "regressor_input", "image") != "keypoints"
    no_3d = any(p.world_landmarks is None for p in people) or init != "mediapipe3d"
    need = method == "neural" or init == "network" or any(c.keypoints is None for c in crops) or \
        (image_regressor and no_3d) or (parts_cue and any(c.mask is not None for c in crops))
    if not need:
        return None
    from neuralfit.nets import predict

    return predict(net, np.stack([c.pixels for c in crops]))


def hidden_from_parts(crops: list[PersonCrop], pred, value_range: tuple[float, float]) -> None:
    """Set each masked crop's ``hidden`` map from the network's part head, in place.

    ``hidden = clip((P(background) - lo) / (hi - lo), 0, 1)`` with ``(lo, hi) = value_range``: a calibration
    of the head's soft, boundary-blurred output (on the visible body of the real occluded benchmark's frames
    its mean is ~0.2, on a pasted occluder ~0.5-0.9). The fitter reads it only on pixels the body covers (a
    noisy-or with the mask and keypoint cues). People without a mask get none.
    ``pred["part_probs"]``: (B, P, R/4, R/4), class 0 = background, on the crops' mask grid.
    """
    import cv2

    lo, hi = value_range
    bg = pred["part_probs"][:, 0].float().cpu().numpy()
    for c, b in zip(crops, bg, strict=True):
        if c.mask is None:
            continue
        if b.shape != c.mask.shape:  # same crop at another resolution: resample (both span the crop)
            b = cv2.resize(b, c.mask.shape[::-1], interpolation=cv2.INTER_AREA)
        # Not multiplied by mediapipe's mask ("it sees the person, the head sees no body"): measured on the
        # development frames that lost more under the lower-body block (mediapipe's mask does not fill
        # legs in) than it saved at the body's edge (docs/occlusion.md).
        c.hidden = np.clip((b - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
        c.background = b.astype(np.float32)


def hidden_at(hidden: np.ndarray, keypoints: np.ndarray, res: int) -> np.ndarray:
    """(J,) the (h, w) ``hidden`` map (spanning a ``res``-pixel crop) bilinearly sampled at the (J, 2+) keypoints'
    crop pixels; 0 off the crop or at a non-finite keypoint."""
    from scipy.ndimage import map_coordinates

    h, w = hidden.shape
    uv = np.nan_to_num(np.asarray(keypoints, np.float64)[:, :2], nan=-1e9)
    x, y = uv[:, 0] * w / res - 0.5, uv[:, 1] * h / res - 0.5  # in cells, 0 = the first cell's centre
    inside = (x > -0.5) & (x < w - 0.5) & (y > -0.5) & (y < h - 0.5)
    v = map_coordinates(hidden.astype(np.float64), [np.clip(y, 0, h - 1), np.clip(x, 0, w - 1)], order=1)
    return np.where(inside, v, 0.0)


def hidden_factor(c: PersonCrop, keypoints: np.ndarray | None, k: float) -> np.ndarray | None:
    """(J,) ``1 - min(1, k h)``, ``h`` the crop's ``hidden`` map at each keypoint; None when off (k = 0, no
    keypoints or no map)."""
    if k <= 0 or keypoints is None or c.hidden is None:
        return None
    return 1.0 - np.minimum(1.0, k * hidden_at(c.hidden, keypoints, c.crop.res))


def _scaled(keypoints: np.ndarray | None, factor: np.ndarray | None) -> np.ndarray | None:
    if keypoints is None or factor is None:
        return keypoints
    out = keypoints.copy()
    out[:, 2] *= factor
    return out


def start_people(init: str, crops: list[PersonCrop], people: list[Person], image_names: list[str | None],
                 body, prior, net, pred, lifter=None, lift_blend: float = 0.0,
                 lift_blend_hidden: float = 0.0,
                 lift_blend_inconsistent: tuple[float, float] | None = None,
                 hidden_keypoints: float = 0.0) -> list[PersonStart]:
    """Each person's start placed in their crop camera (:func:`neuralfit.photo.start.start_people`).
    ``hidden_keypoints`` = k: the start reads each keypoint's confidence x :func:`hidden_factor` (the lifter,
    the IK weights and the hidden-limb share see the part head's say)."""
    from neuralfit.photo import start

    kps = [_keypoints_of(c, pred, j) for j, c in enumerate(crops)]
    inputs = StartInputs(
        keypoints=[_scaled(kp, hidden_factor(c, kp, hidden_keypoints)) for (kp, _), c in zip(kps, crops, strict=True)],
        joint_sets=[js for _, js in kps],
        world_landmarks=[p.world_landmarks for p in people], image_names=image_names,
        focal=np.array([c.focal for c in crops]), principal_point=np.stack([c.principal_point for c in crops]),
        boxes=np.stack([c.box for c in crops]), prediction=pred)
    return start.start_people(init, inputs, body, prior=prior, net=net, lifter=lifter, lift_blend=lift_blend,
                              lift_blend_hidden=lift_blend_hidden, lift_blend_inconsistent=lift_blend_inconsistent)


def _keypoints_of(c: PersonCrop, pred, j: int) -> tuple[np.ndarray | None, str | None]:
    """The detected keypoints, else the network's heatmap keypoints, else none."""
    if c.keypoints is not None:
        return c.keypoints, c.joint_set
    if pred is not None:
        return pred["keypoints"][j].float().cpu().numpy(), pred["joint_set"]
    return None, None


def fit_all(method: str, crops: list[PersonCrop], starts: list[PersonStart], pred, body, neural_model, prior,
            config, device: str, unsure_hidden: float = 0.0, inconsistent_keypoints: float = 0.0,
            hidden_keypoints: float = 0.0) -> list[FittedPerson]:
    """Fit everyone: one batch per (joint set, needs a second hypothesis), through ``fit_batch``.

    ``unsure_hidden`` = k: a person's keypoints below :data:`~neuralfit.photo.start.UNSURE_CONFIDENCE` are
    weighted by ``1 - min(1, k s)`` in the 2D fit (:func:`~neuralfit.photo.start.hidden_weight`), so the
    keypoints of an occluded person's hidden limbs (mediapipe guesses them) are left to the start.
    ``inconsistent_keypoints`` = c: the keypoint terms of a person are weighted by ``1 - min(1, c w)``, ``w``
    their start's ``inconsistent`` (mediapipe's 3D and 2D disagree, so its 2D is suspect too: the fit leans
    on the start and the priors). ``hidden_keypoints`` = k: each keypoint's confidence is scaled by
    ``1 - min(1, k h)``, ``h`` the crop's ``hidden`` map where the keypoint lies (:func:`hidden_at`): the part
    head sees no body there, so the detector guessed it.
    """
    from neuralfit.fitting import Fitter
    from neuralfit.fitting.inputs import Observations, fit_batch
    from neuralfit.photo.start import UNSURE_CONFIDENCE, hidden_weight

    kps = [_keypoints_of(c, pred, j) for j, c in enumerate(crops)]
    if method == "regressor":
        return [_fitted_from_start(s, kps[j][1]) for j, s in enumerate(starts)]
    unsure_weight = [1.0 - hidden_weight(body, kp, js, unsure_hidden) for kp, js in kps]
    for j, (kp, js) in enumerate(kps):
        if kp is not None and unsure_weight[j] < 1.0:
            kp = kp.copy()
            kp[kp[:, 2] < UNSURE_CONFIDENCE, 2] *= unsure_weight[j]
            kps[j] = (kp, js)
    # The occlusion map reads the confidences before the part head's say, which reaches it directly.
    visibility = [None if kp is None else np.nan_to_num(kp[:, 2], nan=0.0) for kp, _ in kps]
    factors = [hidden_factor(c, kp, hidden_keypoints) for c, (kp, _) in zip(crops, kps, strict=True)]
    kps = [(_scaled(kp, f), js) for (kp, js), f in zip(kps, factors, strict=True)]
    scaled = any(f is not None for f in factors)
    # The keypoint terms are confidence-weighted means, so a person's trust as a whole is a term weight.
    kp_weight = [1.0 - min(1.0, inconsistent_keypoints * s.inconsistent) for s in starts]
    # How hidden the part head judged each keypoint (the share of its confidence hidden_keypoints took away),
    # read by the 3D anchor of hidden keypoints (FitConfig.w_hidden_anchor). Not the unsure rule: on clean
    # frames a self-occluded limb is unsure, and its 2D keypoint still carries the pose.
    anchor = [None if kp is None else np.zeros(len(kp), np.float32) if f is None else (1.0 - f).astype(np.float32)
              for (kp, _), f in zip(kps, factors, strict=True)]
    groups: dict[tuple[str | None, bool], list[int]] = {}
    for j, s in enumerate(starts):
        groups.setdefault((kps[j][1], s.knows_facing), []).append(j)
    out: list[FittedPerson | None] = [None] * len(crops)
    for (joint_set, knows_facing), members in groups.items():
        if joint_set is None and method == "keypoints":
            raise NeuralfitError("the keypoints method needs 2D keypoints (mediapipe found none and no --keypoints "
                                 "file was given)")
        sel = torch.tensor(members)
        keypoints = None if joint_set is None else torch.tensor(np.stack([kps[j][0] for j in members]),
                                                                dtype=torch.float32)
        obs = Observations(res=crops[members[0]].crop.res, keypoints=keypoints, joint_set=joint_set or "smpl24",
                           focal=torch.tensor([crops[j].focal for j in members], dtype=torch.float32),
                           principal_point=torch.tensor(np.stack([crops[j].principal_point for j in members]),
                                                        dtype=torch.float32),
                           keypoint_weight=torch.tensor([kp_weight[j] for j in members], dtype=torch.float32),
                           keypoint_visibility=None if keypoints is None or not scaled else
                           torch.tensor(np.stack([visibility[j] for j in members]), dtype=torch.float32),
                           keypoint_anchor=None if keypoints is None else
                           torch.tensor(np.stack([anchor[j] for j in members])))
        if method == "neural":
            obs.features, obs.part_probs = pred["features"][sel], pred["part_probs"][sel]
        masks = [crops[j].mask for j in members]
        if any(m is not None for m in masks):
            # Both methods read the person mask (the keypoints fit through the mask-outlier term, which gives
            # the default its occlusion map). Without a mask (user keypoints): 0.5, no evidence either way.
            size = next(m for m in masks if m is not None).shape[0]
            obs.mask = torch.tensor(np.stack([m if m is not None else np.full((size, size), 0.5, np.float32)
                                              for m in masks]))
            # Several people of one photo in this batch: fitted together (depth order, interpenetration),
            # each one's mask an occluder of the others (neuralfit.fitting.people).
            obs.group = torch.tensor([crops[j].image_index for j in members])
            obs.hidden = _stack_maps([crops[j].hidden for j in members], size)
            obs.occluders = _stack_maps([crops[j].occluders for j in members], size)
        start = StartParams.cat([starts[j].params for j in members])
        cfg = config if knows_facing else config.with_(second_hypothesis=True)
        fitter = Fitter(body, neural_model if method == "neural" else None, prior, cfg, device=device)
        batch = fit_batch(start, obs, method)
        res = fitter.fit(batch)
        outlier = None
        if batch.keypoints is not None:
            from neuralfit.fitting.robust import keypoint_outlier_posteriors

            outlier = keypoint_outlier_posteriors(body, batch, res, cfg).cpu().numpy()
        for b, j in enumerate(members):
            out[j] = FittedPerson(
                res.global_orient[b].cpu().numpy(), res.body_pose[b].cpu().numpy(), res.betas[b].cpu().numpy(),
                res.transl[b].cpu().numpy(), joint_set, float(res.loss[b]),
                {k: float(v[b]) for k, v in res.terms.items()},
                int(res.hypothesis[b]) if res.hypothesis is not None else 0,
                None if res.occlusion is None else res.occlusion[b].float().cpu().numpy(),
                float(res.occlusion_fraction[b]) if res.occlusion_fraction is not None else 0.0,
                None if outlier is None else outlier[b], unsure_weight[j], kp_weight[j], factors[j])
    return out  # type: ignore[return-value]


def facing_evidence(crops: list[PersonCrop], pred, fitted: list[FittedPerson], body) -> list[float | None]:
    """Per person, the part head's left/right evidence on the fitted body (:func:`neuralfit.photo.facing.lr_evidence`:
    negative = the head reads the other facing); None without a part head."""
    from neuralfit.photo.facing import lr_evidence, rendered_parts

    if pred is None or "part_probs" not in pred:
        return [None] * len(crops)
    faces = body.faces.cpu().numpy()
    face_class = body.part_labels.cpu().numpy()[faces[:, 0]] + 1

    def t(a):
        return torch.as_tensor(a, dtype=torch.float32, device=body.faces.device)[None]

    out: list[float | None] = []
    for j, (c, f) in enumerate(zip(crops, fitted, strict=True)):
        probs = pred["part_probs"][j].float().cpu().numpy()
        size = probs.shape[-1]
        with torch.no_grad():
            v = body(betas=t(f.betas), global_orient=t(f.global_orient), body_pose=t(f.body_pose),
                     transl=t(f.transl)).vertices[0].cpu().numpy()
        k = size / c.crop.res  # the crop camera (crop pixels) seen on the part head's grid
        classes = rendered_parts(v, faces, face_class, c.focal * k, np.asarray(c.principal_point) * k,
                                 np.eye(2, 3), size)
        out.append(lr_evidence(probs, classes))
    return out


def swap_sides(person: Person, crop: PersonCrop) -> tuple[Person, PersonCrop]:
    """The person as seen the other way round: BlazePose keypoints with left and right exchanged, and
    mediapipe's 3D landmarks exchanged too and mirrored in depth (a body read from the front when seen from
    behind has the right 2D points under the wrong labels and its depths reversed)."""
    from dataclasses import replace

    from neuralfit.detect.mediapipe_pose import flip_blazepose

    if person.joint_set != "blazepose33" or person.keypoints is None:
        raise NeuralfitError("swap_sides needs BlazePose-33 keypoints")
    world = person.world_landmarks
    if world is not None:
        world = flip_blazepose(world).copy()
        world[:, 2] = -world[:, 2]
    return (replace(person, keypoints=flip_blazepose(person.keypoints), world_landmarks=world),
            replace(crop, keypoints=flip_blazepose(crop.keypoints)))


def take(pred, idx: list[int]):
    """The network outputs of the people ``idx`` (batched tensors indexed, the rest kept)."""
    if pred is None:
        return None
    n = pred["part_probs"].shape[0] if "part_probs" in pred else None
    return {k: v[idx] if torch.is_tensor(v) and v.ndim > 0 and v.shape[0] == n else v for k, v in pred.items()}


def _stack_maps(maps: list[np.ndarray | None], size: int) -> torch.Tensor | None:
    """(B, size, size) of per-crop maps, zeros (no evidence) where a crop has none; None if none has one."""
    if all(m is None for m in maps):
        return None
    return torch.tensor(np.stack([m if m is not None else np.zeros((size, size), np.float32) for m in maps]))


def _fitted_from_start(s: PersonStart, joint_set: str | None) -> FittedPerson:
    p = s.params
    return FittedPerson(p.global_orient[0].numpy(), p.body_pose[0].numpy(), p.betas[0].numpy(),
                        p.transl[0].numpy(), joint_set)


def finish_image(pic: np.ndarray, r: ImageFit, people: list[Person], crops: list[PersonCrop],
                 fitted: list[FittedPerson], starts: list[PersonStart], body, render: bool,
                 occlusion_cue: tuple[float, float] | None = None, occlusion_smooth: int = 1) -> None:
    """Bodies in the photo camera (meshes, joints, projected keypoints), the occlusion map warped back
    onto the photo, and the overlay and side pictures.

    The occlusion map of a person whose crop has the part head's ``background``: read from it over the
    fitted body (:func:`neuralfit.photo.occlusion.occlusion_from_parts` with ``occlusion_cue`` = (lo, hi)
    and ``occlusion_smooth``); otherwise (no network, or ``occlusion_cue`` None) the fitter's map."""
    import cv2

    from neuralfit.photo.occlusion import body_cells, dilate, extend, occlusion_from_parts
    from neuralfit.photo.outputs import project_points, side_view

    h, w = pic.shape[:2]
    F, pp = r.focal_length, np.asarray(r.principal_point)
    read_parts = [occlusion_cue is not None and c.background is not None for c in crops]
    occ_img = np.zeros((h, w), np.float32) if any(f.occlusion is not None for f in fitted) or any(read_parts) \
        else None
    dev = body.faces.device
    faces_np = body.faces.cpu().numpy()
    for p, c, fit, s, parts in zip(people, crops, fitted, starts, read_parts, strict=True):
        def t(a):
            return torch.as_tensor(a, dtype=torch.float32, device=dev)[None]

        with torch.no_grad():
            posed = body(betas=t(fit.betas), global_orient=t(fit.global_orient), body_pose=t(fit.body_pose),
                         transl=t(fit.transl))
            k3 = body.keypoints(posed, p.joint_set)[0].cpu().numpy() if p.keypoints is not None else None
        occ_map, occ_frac, occ_source = fit.occlusion, fit.occlusion_fraction, "fitter"
        if parts:
            size = c.background.shape[0]
            cells = body_cells(posed.vertices[0].cpu().numpy(), faces_np, F, pp, c.crop.affine(size), size)
            occ_map = occlusion_from_parts(c.background, cells, occlusion_cue, occlusion_smooth, c.mask,
                                           c.occluders)
            occ_frac, occ_source = float(occ_map[cells].mean()) if cells.any() else 0.0, "part head"
        elif occ_map is None:
            occ_source = ""
        kp_fit = None
        if k3 is not None:
            kp_fit = project_points(k3.astype(np.float64), F, pp)
            kp_fit[~body.keypoint_sets[p.joint_set].valid.cpu().numpy()] = np.nan  # keypoints this body lacks
        # The fitted torso (pelvis + shoulders, SMPL joints 0, 16, 17) off the person's box: mediapipe
        # (or the heatmaps) found someone else than the box holds; the fit is kept but flagged.
        torso = project_points(posed.joints[0, [0, 16, 17]].cpu().numpy().astype(np.float64), F, pp).mean(0)
        x0, y0, x1, y1 = (float(v) for v in p.bbox)
        if not (x0 <= torso[0] <= x1 and y0 <= torso[1] <= y1):
            r.warnings.append(f"person {len(r.people)}: the fitted torso ({torso[0]:.0f}, {torso[1]:.0f}) lies "
                              f"outside its box {x0:g},{y0:g},{x1:g},{y1:g}")
        cut = cut_by_frame(p.bbox, p.mask, (h, w))
        if cut:
            r.warnings.append(f"person {len(r.people)}: cut by the photo's {' and '.join(cut)} "
                              f"edge{'s' if len(cut) > 1 else ''}; the body beyond the frame is guessed")
        r.people.append(PersonFit(
            betas=fit.betas, global_orient=fit.global_orient, body_pose=fit.body_pose,
            transl=fit.transl.astype(np.float32), joints3d=posed.joints[0].cpu().numpy().astype(np.float32),
            vertices=posed.vertices[0].cpu().numpy().astype(np.float32), bbox=p.bbox, center=c.crop.center,
            scale=float(c.crop.scale), keypoints=p.keypoints, joint_set=p.joint_set if p.keypoints is not None
            else None, keypoints_fit=kp_fit, loss=fit.loss, terms=fit.terms, hypothesis=fit.hypothesis,
            occlusion_fraction=occ_frac, start=s.source, occlusion=occ_map, occlusion_source=occ_source,
            keypoint_outlier=fit.keypoint_outlier, unsure_keypoint_weight=fit.unsure_weight,
            landmark_inconsistency=s.inconsistent, keypoint_term_weight=fit.keypoint_weight,
            hidden_keypoint_weight=fit.hidden_keypoint_weight, facing_evidence=fit.facing_evidence,
            facing_swapped=fit.facing_swapped, cut_by_frame=tuple(cut),
            # No detected keypoints: a --bbox where mediapipe found nobody, fitted to the network's heatmaps.
            observations="keypoints" if p.keypoints is not None else "network"))
        if occ_map is not None and occ_img is not None:
            m = occ_map
            aff = c.crop.affine(m.shape[0])  # photo -> occlusion-map coordinates
            # warpAffine works on pixel indices whose centres are at index + 0.5 in both images.
            aff[:, 2] += 0.5 * aff[:, :2].sum(1) - 0.5

            def warp(a, aff=aff):
                return cv2.warpAffine(a.astype(np.float32), aff, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
                                      borderMode=cv2.BORDER_CONSTANT, borderValue=0)

            if parts:
                # The photo-size silhouette reaches past the grid's covered cells: it reads the nearest cell's
                # value there, not a blend with the zeros off the body.
                back = warp(extend(m, cells)) * (warp(dilate(cells)) > 0)
            else:
                back = warp(m)
            occ_img = np.maximum(occ_img, back)
    r.occlusion = occ_img
    if render:
        from neuralfit.io.images import render_people

        r.overlay, r.body_mask = render_people(pic, [q.vertices for q in r.people], faces_np, F, (pp[0], pp[1]))
        r.side = side_view(r, faces_np)
        if r.occlusion is not None:
            r.occlusion = r.occlusion * r.body_mask
    r.photo = pic
