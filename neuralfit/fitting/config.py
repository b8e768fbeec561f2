"""Fitting configuration. Defaults: the released NeuralSMPL fitter's weights and lr, with translation also
optimised in stage 2 (measured on real photos: docs/fitting.md); ``FitConfig.seed()`` is the seed exactly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

from neuralfit.errors import NeuralfitError

#: The SMPL parameters a stage can optimise.
PARAM_NAMES = ("global_orient", "body_pose", "betas", "transl")


@dataclass
class FitConfig:
    """Settings of :class:`neuralfit.fitting.Fitter`.

    Schedule: stage 1 optimises ``stage1_params`` (global orientation + translation) for ``stage1_iters``
    Adam steps, stage 2 ``stage2_params`` (global orientation + body pose + translation; + betas if
    ``optimize_betas``) for ``stage2_iters``. The seed froze translation in stage 2 (:meth:`seed`); on a
    real multi-view photo test freeing it gained ~19 mm PA-MPJPE with the true focal, because in a
    photo's own camera depth and pose are coupled. lr 0.02 under occlusion (:meth:`occluded`, the default), 0.002 on clean images (:meth:`clean`).
    The best iterate (lowest total loss) is kept per sample and per stage.

    Loss weights multiply per-sample terms that are all O(1):

    * ``w_feature``: neural-mesh feature NLL (T-scaled, mean over feature-map pixels).
    * ``w_keypoints``: 2D reprojection, per joint ``c * r^2 / (sigma^2 + r^2)`` (Geman-McClure, as in
      SMPLify; ``r`` in 224-px units, ``gmof_sigma`` = 100 px), averaged over joints (0..1).
    * ``w_partseg``: cross-entropy of predicted part probabilities under the rendered parts (per pixel mean).
    * ``w_silhouette``: squared error of a SoftRas silhouette against the observed mask (off by default:
      it rasterises with PyTorch3D every iteration).
    * ``w_pose_prior``: ``prior.penalty(body_pose)`` (VPoser latent NLL + joint-limit excess).
    * ``w_joint_prior``: an optional separate joint-angle prior's ``penalty(body_pose)``.
    * ``w_shape_prior``: ``shape_prior.penalty(betas)`` or ``0.5 |betas|^2`` when no shape prior is given.
    * ``w_init_pose``: mean squared axis-angle distance (rad^2 per joint) of ``body_pose`` from its
      initial value: a Gaussian prior centred on the regressor's answer (MAP refinement, as when the
      regressor is trusted more than weak image evidence). 0 = off, the seed's setting.
    * ``w_init_depth``: mean squared change (in units of 5 cm) of each joint's depth relative to the
      pelvis from where stage 1 left it: the start's 3D knows the depths, the 2D keypoints do not; the
      body pose stays free to follow the keypoints in the image plane. 0 = off.
    * ``w_hidden_anchor``: mean over keypoints of ``a_j |k_j - k_j^1|^2`` (units of 5 cm), ``k_j`` a keypoint
      of the batch's joint set in 3D relative to the pelvis, ``k_j^1`` where stage 1 left it and ``a_j``
      ``FitBatch.keypoint_anchor``: a keypoint the caller knows is hidden stays where the start put it in
      3D instead of following the detector's 2D guess. 0 = off.

    ``min_keypoint_confidence``: detections below this confidence get no weight in the keypoint term
    (0 = use all, the seed's setting). The shipped network's heatmap keypoints below 0.6 have median
    errors of 10-27 px and 8-24 % left/right swaps; gating them at 0.6 cuts a keypoints fit's damage
    (docs/network.md, "How good must the keypoints be?").

    Outlier process: ``outlier`` on/off, ``p_fg`` = p(z = 1) (a body pixel is not occluded),
    ``likelihood`` "mixture" (proper NLL) or "surrogate" (seed code's cosine max). ``person_mask``: when
    the batch carries a person mask (photos: mediapipe's), it is a second observation of the outlier
    process with ``person_eps`` as its error rate (:meth:`neuralfit.neural.NeuralMeshModel.loss`); the
    seed has no mask, and without one nothing changes.

    Occlusion-robust terms (issue 16, :mod:`neuralfit.fitting.robust`, docs/occlusion.md), off at weight 0:
    ``w_keypoint_outlier``: keypoint body-or-outlier mixture NLL (inlier sigma ``keypoint_outlier_sigma``
    x crop size, prior p(inlier) = eps + (1 - 2 eps) confidence with eps ``keypoint_outlier_eps``); use it
    with ``w_keypoints=0`` (the plain term would still drag). ``w_mask_outlier``: person-mask silhouette
    through the cached rasterisation, body pixels off the mask explained as occluded at prior
    ``mask_occlusion_prior`` (raised by hidden keypoints) or pulled in at scale ``mask_outlier_sigma`` x map
    size; uncovered mask pixels pull the body out unless explained as mask false positives
    (``mask_false_positive``). It needs ``FitBatch.mask`` and yields the occlusion map without features.

    Several people of one photo fitted together (issue 17, :mod:`neuralfit.fitting.people`; only where
    ``FitBatch.group`` puts samples in one photo): ``w_depth_order``: a vertex where another person's mask
    owns the pixel must lie behind that person's front surface (metres, mean over low-res vertices);
    ``w_interpenetration``: low-res vertices inside the other body's bone capsules (cm^2, mean over vertices).

    Rendering: rasterise every ``cache_every`` iterations (1 = exact every step), ``raster_backend``
    "auto" | "torch" | "pytorch3d" (see neuralfit.render.raster).
    """

    stage1_iters: int = 40
    stage2_iters: int = 80
    stage1_params: tuple[str, ...] = ("global_orient", "transl")
    stage2_params: tuple[str, ...] = ("global_orient", "body_pose", "transl")
    lr: float = 0.02
    optimize_betas: bool = False
    second_hypothesis: bool = False
    keypoints_only: bool = False

    w_feature: float = 1.0
    w_keypoints: float = 10.0
    w_partseg: float = 0.2
    w_silhouette: float = 0.0
    w_pose_prior: float = 1e-4
    w_joint_prior: float = 0.0
    w_shape_prior: float = 1e-2
    w_init_pose: float = 0.0
    w_init_depth: float = 0.0
    w_hidden_anchor: float = 0.0
    gmof_sigma: float = 100.0
    min_keypoint_confidence: float = 0.0

    outlier: bool = True
    p_fg: float = 0.5
    likelihood: str = "mixture"
    person_mask: bool = True
    person_eps: float = 0.05

    w_keypoint_outlier: float = 0.0
    keypoint_outlier_sigma: float = 0.03
    keypoint_outlier_eps: float = 0.05
    w_mask_outlier: float = 0.0
    mask_outlier_sigma: float = 0.03
    mask_occlusion_prior: float = 0.3
    mask_false_positive: float = 0.1

    w_depth_order: float = 0.0
    w_interpenetration: float = 0.0

    cache_every: int = 5
    raster_backend: str = "auto"
    silhouette_sigma: float = 1e-4

    def __post_init__(self) -> None:
        if self.stage1_iters < 0 or self.stage2_iters < 0:
            raise NeuralfitError(f"iteration counts must be >= 0, got {self.stage1_iters}, {self.stage2_iters}")
        for stage in (self.stage1_params, self.stage2_params):
            bad = [n for n in stage if n not in PARAM_NAMES]
            if bad or not isinstance(stage, tuple):
                raise NeuralfitError(f"stage parameters {stage!r}: expected a tuple of {', '.join(PARAM_NAMES)}")
        if not self.lr > 0:
            raise NeuralfitError(f"learning rate must be positive, got {self.lr}")
        if self.likelihood not in ("mixture", "surrogate"):
            raise NeuralfitError(f"likelihood must be 'mixture' or 'surrogate', got {self.likelihood!r}")
        if not 0.0 < self.p_fg < 1.0:
            raise NeuralfitError(f"p_fg must be in (0, 1), got {self.p_fg}")
        if not 0.0 <= self.min_keypoint_confidence < 1.0:
            raise NeuralfitError(f"min_keypoint_confidence must be in [0, 1), got {self.min_keypoint_confidence}")
        if not 0.0 < self.person_eps < 0.5:
            raise NeuralfitError(f"person_eps must be in (0, 0.5), got {self.person_eps}")
        if not 0.0 < self.keypoint_outlier_eps < 0.5 or not self.keypoint_outlier_sigma > 0:
            raise NeuralfitError(f"keypoint_outlier_eps must be in (0, 0.5) and keypoint_outlier_sigma positive, "
                                 f"got {self.keypoint_outlier_eps}, {self.keypoint_outlier_sigma}")
        if not (0.0 < self.mask_occlusion_prior < 1.0 and 0.0 < self.mask_false_positive < 1.0
                and self.mask_outlier_sigma > 0):
            raise NeuralfitError(f"mask_occlusion_prior and mask_false_positive must be in (0, 1) and "
                                 f"mask_outlier_sigma positive, got {self.mask_occlusion_prior}, "
                                 f"{self.mask_false_positive}, {self.mask_outlier_sigma}")
        if self.cache_every < 1:
            raise NeuralfitError(f"cache_every must be >= 1, got {self.cache_every}")

    @classmethod
    def seed(cls, **overrides) -> FitConfig:
        """The seed's released fitter exactly: translation frozen in stage 2, lr 0.02."""
        return cls(**{"stage2_params": ("global_orient", "body_pose"), **overrides})

    @classmethod
    def photo(cls, **overrides) -> FitConfig:
        """The photo path's default (``neuralfit fit``): the occluded preset with a 10x stronger pose prior
        (``w_pose_prior`` 1e-3). Chosen on the real multi-view benchmark (docs/fit.md): mediapipe's 2D
        keypoints are noisier than the synthetic ones the seed weight was set on; over 1e-5 / 1e-4 / 1e-3 /
        3e-3 / 1e-2 the front person's PA-MPJPE was 80.4 / 79.5 / 77.3 / 78.2 / 81.5 mm. The person-mask outlier
        term at ``w_mask_outlier`` 0.01 gives the default fit its occlusion map and leaves its accuracy as it
        was on held-out real occluded frames (docs/occlusion.md); larger weights lost PA-MPJPE there.
        Between people of one photo (issue 17): ``w_depth_order`` 0.05 and ``w_interpenetration`` 0.01, set by
        scale, not tuned: a violation over a fifth of a body costs about what the keypoints of a good fit do
        (0.01), so a term corrects near-misses without overriding the 2D evidence (docs/fit.md).
        ``w_init_depth`` 0.03 keeps the start's pelvis-relative joint depths (mediapipe's 3D knows them, the 2D
        keypoints do not): on the same benchmark the 2D fit had moved them and lost 1.8 mm against its own
        start; over 0 / 0.03 / 0.1 / 0.3 / 1 / 3 / 30 the front person scored 65.6 / 61.9 / 62.1 / 62.5 / 62.9 /
        63.3 / 64.4 mm (``w_init_pose`` 3 / 30 / 100, the articulation held instead: 64.5 / 63.5 / 63.7)."""
        return cls(**{"lr": 0.02, "w_pose_prior": 1e-3, "w_mask_outlier": 0.01, "w_depth_order": 0.05,
                      "w_interpenetration": 0.01, "w_init_depth": 0.03, **overrides})

    @classmethod
    def occluded(cls, **overrides) -> FitConfig:
        """Seed preset for occluded images: lr 0.02."""
        return cls(**{"lr": 0.02, **overrides})

    @classmethod
    def clean(cls, **overrides) -> FitConfig:
        """Seed preset for unoccluded images: lr 0.002."""
        return cls(**{"lr": 0.002, **overrides})

    def with_(self, **changes) -> FitConfig:
        """A copy with some fields changed."""
        return replace(self, **changes)

    def with_settings(self, items: Sequence[str]) -> FitConfig:
        """A copy with ``KEY=VALUE`` overrides applied (the ``--set`` option of fit / eval / refine)."""
        return replace(self, **parse_settings(items))


def parse_settings(items: Sequence[str]) -> dict[str, Any]:
    """``["w_partseg=0", "outlier=false", "stage2_params=global_orient,body_pose"]`` -> typed FitConfig fields.

    Values are typed by the field's default: booleans take true/false/1/0/on/off, tuples take comma-separated
    names. Unknown keys and unparsable values are one-line errors naming the setting.
    """
    defaults = {f.name: getattr(FitConfig, f.name) for f in fields(FitConfig)}
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in defaults:
            raise NeuralfitError(f"--set {item!r}: expected KEY=VALUE with KEY one of the fitter settings "
                                 f"({', '.join(defaults)})")
        kind = type(defaults[key])
        if kind is bool:
            if value.lower() not in ("true", "false", "1", "0", "on", "off"):
                raise NeuralfitError(f"--set {item!r}: expected true or false")
            out[key] = value.lower() in ("true", "1", "on")
        elif kind is tuple:
            out[key] = tuple(v.strip() for v in value.split(",") if v.strip())
        else:
            try:
                out[key] = kind(value)
            except ValueError:
                raise NeuralfitError(f"--set {item!r}: expected a {kind.__name__}") from None
            if kind is float and not math.isfinite(out[key]):
                raise NeuralfitError(f"--set {item!r}: expected a finite number")
    return out
