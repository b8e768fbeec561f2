"""Loss terms of the fitter as small objects: a name, a weight, the stages it runs in, and a function.

The fitter's loop only sums ``weight * term(context)`` over the terms active in a stage, so a new term
(a silhouette variant, 3D landmarks, keypoint outliers, inter-person penetration) is a new :class:`Term`
passed to ``Fitter(..., extra_terms=[...])``; nothing in the loop changes. A term returns a (B,)
per-sample value, or None when its observation is missing from the batch (then it is skipped).

:func:`default_terms` builds the seed's terms from a :class:`~neuralfit.fitting.FitConfig`: data terms
(features, parts, silhouette, keypoints) in every stage, priors in stage 2 only (the seed's stage 1
only places the body).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from neuralfit.fitting.config import FitConfig
from neuralfit.fitting.losses import keypoint_loss, l2_shape_penalty, partseg_loss, silhouette_loss
from neuralfit.fitting.people import people_terms
from neuralfit.fitting.posing import FitBody, Posed
from neuralfit.fitting.robust import robust_terms
from neuralfit.render.camera import CropCamera
from neuralfit.render.raster import Fragments, VisibilityCache, soft_silhouette

ALL_STAGES = (1, 2)


@dataclass
class TermContext:
    """What a term may look at for one evaluation of the loss (all batched over B samples).

    Attributes:
        params: the current SMPL parameters by name (global_orient, body_pose, betas, transl).
        posed: the body posed with them (joints, low-res vertices, landmarks).
        batch: the prepared :class:`~neuralfit.fitting.FitBatch` (observations on the fitter's device).
        body: the fitter's body adapter; cam: the crop camera; size: feature-map size, or None.
        init_pose: (B, 69) the body pose the fit started from.
        init_depth: (B, 24) each joint's depth relative to the pelvis (camera z, metres) after stage 1, or None.
        init_keypoints: (B, J, 3) the batch's keypoints in 3D relative to the pelvis after stage 1, or None.
        log_parts: cached log part probabilities, or None.
        want_occlusion: the final evaluation asks terms with an outlier process for their occlusion map.
        occlusion: set by a term that has one: (occlusion (B, H, W), rendered foreground (B, H, W)).
    """

    params: dict[str, torch.Tensor]
    posed: Posed
    batch: object
    body: FitBody
    cam: CropCamera
    size: int | None
    cache: VisibilityCache | None
    init_pose: torch.Tensor | None
    log_parts: torch.Tensor | None = None
    want_occlusion: bool = False
    occlusion: tuple[torch.Tensor, torch.Tensor] | None = None
    init_depth: torch.Tensor | None = None
    init_keypoints: torch.Tensor | None = None
    _frags: Fragments | None = field(default=None, repr=False)

    @property
    def fragments(self) -> Fragments | None:
        """Rasterised low-res mesh at the feature-map size (computed once per evaluation), or None."""
        if self._frags is None and self.cache is not None and self.posed.lowres is not None:
            self._frags = self.cache(self.posed.lowres)
        return self._frags


@dataclass(frozen=True)
class Term:
    """One weighted loss term.

    Attributes:
        name: key in ``FitResult.terms``.
        weight: multiplies the per-sample value; 0 switches the term off.
        fn: ``context -> (B,) tensor`` or None (observation missing).
        stages: the stages (1-based) it runs in.
        needs_render: it reads ``context.fragments`` (so the fitter keeps a visibility cache).
    """

    name: str
    weight: float
    fn: Callable[[TermContext], torch.Tensor | None]
    stages: tuple[int, ...] = ALL_STAGES
    needs_render: bool = False


def _feature_term(neural_model, cfg: FitConfig) -> Callable[[TermContext], torch.Tensor | None]:
    def fn(ctx: TermContext) -> torch.Tensor | None:
        b = ctx.batch
        frags = ctx.fragments if b.features is not None else None
        if frags is None:
            return None
        alpha = neural_model.part_orientation(ctx.posed.joints, ctx.body.parents)
        person = b.mask if cfg.person_mask else None
        fl = neural_model.loss(b.features, frags, alpha, ctx.body.part_labels, p_fg=cfg.p_fg, outlier=cfg.outlier,
                               mode=cfg.likelihood, want_occlusion=ctx.want_occlusion, person_prob=person,
                               person_eps=cfg.person_eps)
        if ctx.want_occlusion:
            ctx.occlusion = (fl.occlusion, fl.fg_mask)
        return fl.loss

    return fn


def _partseg(ctx: TermContext) -> torch.Tensor | None:
    frags = ctx.fragments if ctx.batch.part_probs is not None else None
    if frags is None:
        return None
    return partseg_loss(frags, ctx.body.part_labels, ctx.batch.part_probs, log_probs=ctx.log_parts)


def _silhouette_term(sigma: float) -> Callable[[TermContext], torch.Tensor | None]:
    def fn(ctx: TermContext) -> torch.Tensor | None:
        if ctx.batch.mask is None or ctx.size is None:
            return None
        sil = soft_silhouette(ctx.posed.lowres, ctx.body.faces, ctx.cam, ctx.size, sigma=sigma)
        return silhouette_loss(sil, ctx.batch.mask)

    return fn


def _keypoint_term(sigma: float) -> Callable[[TermContext], torch.Tensor | None]:
    def fn(ctx: TermContext) -> torch.Tensor | None:
        if ctx.batch.keypoints is None:
            return None
        kp3d, valid = ctx.body.keypoints(ctx.posed, ctx.batch.joint_set)
        return weighted_per_sample(keypoint_loss(kp3d, valid, ctx.batch.keypoints, ctx.cam, sigma),
                                   ctx.batch.keypoint_weight)

    return fn


def weighted_per_sample(value: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """(B,) term value times a (B,) per-sample weight (None: as it is)."""
    return value if weight is None else value * weight


def _penalty_of(name: str, penalty: Callable[[torch.Tensor], torch.Tensor]) -> Callable:
    return lambda ctx: penalty(ctx.params[name])


def _init_pose(ctx: TermContext) -> torch.Tensor | None:
    if ctx.init_pose is None:
        return None
    return ((ctx.params["body_pose"] - ctx.init_pose) ** 2).reshape(-1, 23, 3).sum(-1).mean(-1)


#: Depth change (metres) that costs as much as a keypoint term at its worst: 5 cm, about the depth error
#: of mediapipe's 3D per joint on Demo_MultiPerson after Procrustes (43 mm).
DEPTH_SCALE = 0.05


def pelvis_relative_depth(joints: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) camera-frame joints -> (B, J) depth of each joint behind (+) or before (-) the pelvis (0)."""
    return joints[..., 2] - joints[:, :1, 2]


def pelvis_relative_keypoints(body, posed, joint_set: str) -> torch.Tensor:
    """(B, J, 3) the body's 3D keypoints of ``joint_set`` minus its pelvis (camera frame, metres); 0 for a
    keypoint the body does not define."""
    kp3d, valid = body.keypoints(posed, joint_set)
    return (kp3d - posed.joints[:, :1]) * valid[None, :, None]


def _hidden_anchor(ctx: TermContext) -> torch.Tensor | None:
    """Weighted mean squared 3D move (units of ``DEPTH_SCALE``) of the hidden keypoints from stage 1."""
    a = ctx.batch.keypoint_anchor
    if ctx.init_keypoints is None or a is None:
        return None
    d = (pelvis_relative_keypoints(ctx.body, ctx.posed, ctx.batch.joint_set) - ctx.init_keypoints) / DEPTH_SCALE
    return (a * d.pow(2).sum(-1)).mean(-1)


def _init_depth(ctx: TermContext) -> torch.Tensor | None:
    if ctx.init_depth is None:
        return None
    d = (pelvis_relative_depth(ctx.posed.joints[:, :24]) - ctx.init_depth) / DEPTH_SCALE
    return (d ** 2).mean(-1)


def default_terms(cfg: FitConfig, neural_model=None, prior=None, joint_prior=None, shape_prior=None) -> list[Term]:
    """The seed's terms with ``cfg``'s weights (terms with weight 0 or a missing model are left out)."""
    terms: list[Term] = []
    if neural_model is not None and not cfg.keypoints_only:
        terms.append(Term("feature", cfg.w_feature, _feature_term(neural_model, cfg), needs_render=True))
    if not cfg.keypoints_only:
        terms.append(Term("partseg", cfg.w_partseg, _partseg, needs_render=True))
        terms.append(Term("silhouette", cfg.w_silhouette, _silhouette_term(cfg.silhouette_sigma)))
    terms.append(Term("keypoints", cfg.w_keypoints, _keypoint_term(cfg.gmof_sigma)))
    if prior is not None:
        terms.append(Term("pose_prior", cfg.w_pose_prior, _penalty_of("body_pose", prior.penalty), stages=(2,)))
    if joint_prior is not None:
        terms.append(Term("joint_prior", cfg.w_joint_prior, _penalty_of("body_pose", joint_prior.penalty),
                          stages=(2,)))
    if cfg.optimize_betas:
        sp = shape_prior.penalty if shape_prior is not None else l2_shape_penalty
        terms.append(Term("shape_prior", cfg.w_shape_prior, _penalty_of("betas", sp), stages=(2,)))
    terms.append(Term("init_pose", cfg.w_init_pose, _init_pose, stages=(2,)))
    terms.append(Term("init_depth", cfg.w_init_depth, _init_depth, stages=(2,)))
    terms.append(Term("hidden_anchor", cfg.w_hidden_anchor, _hidden_anchor, stages=(2,)))
    terms += robust_terms(cfg)  # issue 16: keypoint outliers, mask silhouette (weight 0 = off)
    terms += people_terms(cfg)  # issue 17: depth order and interpenetration between people of one photo
    return [t for t in terms if t.weight > 0]
