"""The batched two-stage Adam fitter (NeuralSMPL inference).

``Fitter(body, neural_model, prior, config).fit(batch)`` refines B crops at once. Every loss term is
per sample and Adam's update is elementwise, so samples do not influence each other: a batch of B
gives the same result as B separate fits (up to float round-off), just faster.

Stages: 1) ``FitConfig.stage1_params`` (global orientation + translation); 2) ``stage2_params``
(default global orientation + body pose + translation; the seed froze translation, ``FitConfig.seed()``),
+ betas with ``optimize_betas``. The loss is a sum of :class:`~neuralfit.fitting.terms.Term` objects.
Each stage starts from the previous stage's best iterate and keeps, per sample, the parameters with
the lowest total loss seen (evaluated before each step and after the last one).

Non-finite values: a NaN/inf in the initial parameters or observations raises NeuralfitError. If a
sample's loss becomes non-finite during optimisation, that sample is rolled back to its best finite
iterate and frozen for the rest of the stage (``FitResult.rolled_back`` says which); other samples
continue unaffected.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.fitting.config import FitConfig
from neuralfit.fitting.losses import log_part_probs
from neuralfit.fitting.posing import FitBody
from neuralfit.fitting.terms import (
    Term,
    TermContext,
    default_terms,
    pelvis_relative_depth,
    pelvis_relative_keypoints,
)
from neuralfit.render.camera import CropCamera
from neuralfit.render.raster import VisibilityCache


@dataclass
class FitBatch:
    """Per-crop observations and the initial SMPL estimate (all tensors batched over B crops).

    Attributes:
        global_orient: (B, 3) axis-angle, camera frame (OpenCV: x right, y down, z forward).
        body_pose: (B, 69) axis-angle.
        transl: (B, 3) metres, camera frame.
        betas: (B, S) or None (zeros).
        res: crop resolution in pixels.
        features: (B, D, H, W) unit-norm feature map (any stride), or None (feature term off).
        part_probs: (B, 25, H, W) part probabilities, class 0 background, or None (part term off).
        keypoints: (B, J, 3) ``(u, v, confidence)`` in crop pixels, or None (keypoint term off).
        joint_set: name of the keypoints' joint set (e.g. "spin24", "coco17", "smpl24").
        mask: (B, H, W) person probability in [0, 1] at the feature-map resolution: the optional silhouette
            term and a second observation of the outlier process (``FitConfig.person_mask``), or None.
        focal: focal length in crop pixels, a number or (B,) per sample; None = the convention 5000 * res / 224.
        principal_point: (B, 2) principal point in crop pixels (a photo's camera seen in its crops,
            ``neuralfit.render.camera.crop_camera_from_photo``); None = the crop centre.
        group: (B,) long, the photo of each sample: samples of one group are people of one photo, fitted
            together (depth order, interpenetration: ``neuralfit.fitting.people``); None = all independent.
        occluders: (B, H, W) in [0, 1], the other people's masks in each crop, at the mask's resolution:
            pixels where someone else is seen (an occluder of this person), or None.
        hidden: (B, H, W) in [0, 1], the image's own evidence that a body pixel there is hidden (a part
            head's calibrated background probability, ``neuralfit.photo.steps.hidden_from_parts``), at the
            mask's resolution; read by the mask-outlier term's occlusion prior and map; or None.
        keypoint_weight: (B,) in [0, 1], a per-sample factor on the keypoint terms (how far this person's
            2D keypoints are trusted as a whole; ``neuralfit.photo.steps.fit_all``), or None (1).
        keypoint_visibility: (B, J) in [0, 1], the detector's own say on whether each keypoint is visible,
            read by the occlusion prior and map instead of the keypoints' confidences when the caller has
            lowered those for the fit on evidence the map counts already (``FitBatch.hidden``); or None.
        keypoint_anchor: (B, J) in [0, 1], how far each keypoint's 3D position (relative to the pelvis) is
            held where stage 1 left it in stage 2 (``FitConfig.w_hidden_anchor``): 1 for a keypoint the
            caller knows is hidden (its 2D position is the detector's guess; the start's 3D is better), 0 to
            leave it to the 2D fit; or None (no anchor).
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    transl: torch.Tensor
    betas: torch.Tensor | None = None
    res: int = 224
    features: torch.Tensor | None = None
    part_probs: torch.Tensor | None = None
    keypoints: torch.Tensor | None = None
    joint_set: str = "smpl24"
    mask: torch.Tensor | None = None
    focal: float | torch.Tensor | None = None
    principal_point: torch.Tensor | None = None
    group: torch.Tensor | None = None
    occluders: torch.Tensor | None = None
    hidden: torch.Tensor | None = None
    keypoint_weight: torch.Tensor | None = None
    keypoint_visibility: torch.Tensor | None = None
    keypoint_anchor: torch.Tensor | None = None

    @property
    def batch_size(self) -> int:
        return int(self.global_orient.shape[0]) if self.global_orient.ndim == 2 else -1

    def camera(self) -> CropCamera:
        """The crop camera of this batch."""
        return CropCamera(self.res, self.focal, self.principal_point)


@dataclass
class FitResult:
    """Result of :meth:`Fitter.fit` (all per sample, on the fitter's device, detached).

    Attributes:
        global_orient (B, 3), body_pose (B, 69), betas (B, S), transl (B, 3): the kept (best) iterate.
        loss: (B,) total loss of the kept iterate (final stage's weighting).
        terms: term name -> (B,) unweighted value at the kept iterate.
        history: (n_evals, B) total loss at every evaluation, stage 1 then stage 2 (hypothesis kept).
        occlusion: (B, H, W) clutter posterior on rendered body pixels, or None without features.
        occlusion_fraction: (B,) mean occlusion over rendered body pixels (0 without features).
        hypothesis: (B,) 0 = as initialised, 1 = rotated 180 deg about the vertical axis.
        rolled_back: (B,) bool, a non-finite loss occurred and the sample was rolled back.
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor
    loss: torch.Tensor
    terms: dict[str, torch.Tensor] = field(default_factory=dict)
    history: torch.Tensor | None = None
    occlusion: torch.Tensor | None = None
    occlusion_fraction: torch.Tensor | None = None
    hypothesis: torch.Tensor | None = None
    rolled_back: torch.Tensor | None = None

    @property
    def pose(self) -> torch.Tensor:
        """(B, 72) SMPL pose: global orientation then body pose."""
        return torch.cat([self.global_orient, self.body_pose], dim=1)


def _shape_error(name: str, t, expected: str) -> NeuralfitError:
    got = tuple(t.shape) if hasattr(t, "shape") else type(t).__name__
    return NeuralfitError(f"{name} has shape {got}; expected {expected}")


def rotate_about_vertical(global_orient: torch.Tensor, angle: float = math.pi) -> torch.Tensor:
    """Pre-multiply axis-angle orientations (B, 3) by a rotation of ``angle`` about the camera y axis."""
    from smplx.lbs import batch_rodrigues

    R = batch_rodrigues(global_orient)
    axis = torch.tensor([[0.0, angle, 0.0]], dtype=global_orient.dtype, device=global_orient.device)
    Ry = batch_rodrigues(axis)
    return matrix_to_axis_angle(Ry @ R)


def matrix_to_axis_angle(R: torch.Tensor) -> torch.Tensor:
    """(B, 3, 3) rotations -> (B, 3) axis-angle (via PyTorch3D's quaternion route, stable near pi)."""
    from pytorch3d.transforms import matrix_to_axis_angle as _m2aa

    return _m2aa(R)


class Fitter:
    """Batched two-stage Adam fitting of SMPL-format bodies to per-crop observations.

    Args:
        body: a ``neuralfit.body`` model (or a prepared :class:`FitBody`).
        neural_model: a :class:`neuralfit.neural.NeuralMeshModel` for the body's low-res mesh, or None
            (then the feature term is off).
        prior: pose prior with ``penalty(body_pose (B, 69)) -> (B,)`` (e.g. ``neuralfit.priors``), or None.
        config: :class:`FitConfig` (defaults: the occluded preset, translation free in both stages).
        shape_prior: object with ``penalty(betas) -> (B,)``; None uses ``0.5 |betas|^2``.
        joint_prior: optional extra joint-angle prior with ``penalty(body_pose) -> (B,)``.
        device: where to fit ("cpu" default; inputs are moved there). Modules on another device are
            copied there, never moved: the caller's objects stay where they are.
        extra_terms: more :class:`~neuralfit.fitting.terms.Term` objects added to the config's terms.
    """

    def __init__(self, body, neural_model=None, prior=None, config: FitConfig | None = None, *,
                 shape_prior=None, joint_prior=None, device: str | torch.device = "cpu",
                 extra_terms: Sequence[Term] = ()):
        self.device = torch.device(device)
        self.config = config or FitConfig()
        self.body = FitBody.from_body(_on_device(body, self.device))
        self.neural_model = _on_device(neural_model, self.device)
        if self.neural_model is not None and self.neural_model.n_vertices != self.body.n_lowres:
            raise NeuralfitError(f"neural model has {self.neural_model.n_vertices} vertices but the body's "
                                 f"low-res mesh has {self.body.n_lowres}")
        self.prior = _on_device(prior, self.device)
        self.terms: list[Term] = default_terms(self.config, self.neural_model, self.prior,
                                               _on_device(joint_prior, self.device),
                                               _on_device(shape_prior, self.device)) + list(extra_terms)
        self._log_parts: torch.Tensor | None = None  # per-fit cache (one fit at a time per Fitter)
        self._init_pose: torch.Tensor | None = None  # per-fit: the body pose the fit started from
        self._init_depth: torch.Tensor | None = None  # per-fit: joint depths after stage 1 (w_init_depth)
        self._init_keypoints: torch.Tensor | None = None  # per-fit: keypoints after stage 1 (w_hidden_anchor)

    # ------------------------------------------------------------------ validation
    def _prepare(self, batch: FitBatch) -> tuple[FitBatch, int | None]:
        """Check shapes and finiteness; move to device. Returns the batch and the map size (or None)."""
        dev = self.device
        go = batch.global_orient
        if not torch.is_tensor(go) or go.ndim != 2 or go.shape[1] != 3:
            raise _shape_error("global_orient", go, "(B, 3) axis-angle")
        B = go.shape[0]
        if B == 0:
            raise NeuralfitError("fit batch is empty (global_orient has 0 rows)")
        checks = {"body_pose": (batch.body_pose, (B, 69)), "transl": (batch.transl, (B, 3))}
        for name, (t, shape) in checks.items():
            if not torch.is_tensor(t) or tuple(t.shape) != shape:
                raise _shape_error(name, t, str(shape))
        betas = batch.betas
        if betas is None:
            betas = torch.zeros(B, self.body.n_betas)
        if not torch.is_tensor(betas) or betas.ndim != 2 or betas.shape[0] != B:
            raise _shape_error("betas", betas, f"(B={B}, S)")
        out = FitBatch(go.float().to(dev), batch.body_pose.float().to(dev), batch.transl.float().to(dev),
                       betas.float().to(dev), int(batch.res), joint_set=batch.joint_set)
        out.focal, out.principal_point = _prepare_camera(batch.focal, batch.principal_point, B, dev)
        for name in ("global_orient", "body_pose", "transl", "betas"):
            if not torch.isfinite(getattr(out, name)).all():
                raise NeuralfitError(f"initial {name} contains NaN or inf")
        size = None
        if batch.features is not None and not self.config.keypoints_only:
            f = batch.features
            if not torch.is_tensor(f) or f.ndim != 4 or f.shape[0] != B:
                raise _shape_error("features", f, f"(B={B}, D, H, W)")
            if self.neural_model is not None and f.shape[1] != self.neural_model.dim:
                raise _shape_error("features", f, f"(B, D={self.neural_model.dim}, H, W) to match the neural model")
            if f.shape[2] != f.shape[3]:
                raise _shape_error("features", f, "a square (B, D, H, H) map of a square crop")
            out.features = f.float().to(dev)
            size = int(f.shape[2])
        if batch.part_probs is not None and not self.config.keypoints_only:
            p = batch.part_probs
            want = f"(B={B}, 25, H, W)" if size is None else f"(B={B}, 25, {size}, {size})"
            if not torch.is_tensor(p) or p.ndim != 4 or p.shape[0] != B or p.shape[1] != 25 or \
                    p.shape[2] != p.shape[3] or (size is not None and p.shape[2] != size):
                raise _shape_error("part_probs", p, want)
            out.part_probs = p.float().to(dev)
            size = int(p.shape[2])
        wants_mask = self.config.w_silhouette > 0 or (self.config.person_mask and self.neural_model is not None
                                                       and self.config.outlier and self.config.w_feature > 0)
        # The mask-outlier term runs for the keypoints fit too (docs/occlusion.md); the mask's size then sets
        # the rasterisation grid.
        wants_mask = (wants_mask and not self.config.keypoints_only) or self.config.w_mask_outlier > 0 or \
            self.config.w_depth_order > 0 or self.config.w_interpenetration > 0
        if batch.mask is not None and wants_mask:
            m = batch.mask
            if not torch.is_tensor(m) or m.ndim != 3 or m.shape[0] != B or m.shape[1] != m.shape[2] or \
                    (size is not None and m.shape[1] != size):
                raise _shape_error("mask", m, f"(B={B}, H, H) matching the feature map")
            out.mask = m.float().to(dev)
            size = int(m.shape[1])
            o = batch.occluders
            if o is not None:
                if not torch.is_tensor(o) or tuple(o.shape) != tuple(m.shape):
                    raise _shape_error("occluders", o, f"(B={B}, {m.shape[1]}, {m.shape[2]}) like the mask")
                out.occluders = o.float().to(dev)
            h = batch.hidden
            if h is not None:
                if not torch.is_tensor(h) or tuple(h.shape) != tuple(m.shape):
                    raise _shape_error("hidden", h, f"(B={B}, {m.shape[1]}, {m.shape[2]}) like the mask")
                out.hidden = h.float().clamp(0.0, 1.0).to(dev)
        if batch.group is not None:
            g = batch.group
            if not torch.is_tensor(g) or tuple(g.shape) != (B,):
                raise _shape_error("group", g, f"(B={B},) photo index per sample")
            out.group = g.long().to(dev)
        if batch.keypoints is not None:
            k = batch.keypoints
            ks = self.body.keypoint_sets.get(batch.joint_set)
            if ks is None:
                raise NeuralfitError(f"unknown joint set {batch.joint_set!r}; expected one of "
                                     f"{sorted(self.body.keypoint_sets)}")
            J = len(ks)
            if not torch.is_tensor(k) or tuple(k.shape) != (B, J, 3):
                raise _shape_error("keypoints", k, f"(B={B}, J={J}, 3) for joint set {batch.joint_set!r}")
            k = k.float().to(dev)
            # A NaN keypoint with zero confidence is "not detected"; a NaN with confidence is bad input.
            bad = ~torch.isfinite(k[..., :2]).all(-1) & (torch.nan_to_num(k[..., 2]) > 0)
            if bad.any() or not torch.isfinite(torch.nan_to_num(k[..., 2], nan=0.0)).all():
                raise NeuralfitError("keypoints contain NaN or inf for joints with positive confidence")
            k = torch.where(torch.isfinite(k), k, torch.zeros_like(k))
            if self.config.min_keypoint_confidence > 0:
                low = k[..., 2] < self.config.min_keypoint_confidence
                k = torch.cat([k[..., :2], k[..., 2:].masked_fill(low[..., None], 0.0)], dim=-1)
            out.keypoints = k
            w = batch.keypoint_weight
            if w is not None:
                if not torch.is_tensor(w) or tuple(w.shape) != (B,) or not torch.isfinite(w).all() or \
                        (w < 0).any() or (w > 1).any():
                    raise _shape_error("keypoint_weight", w, f"(B={B},) finite, in [0, 1]")
                out.keypoint_weight = w.float().to(dev)
            for name in ("keypoint_visibility", "keypoint_anchor"):  # (B, J) in [0, 1] per keypoint
                v = getattr(batch, name)
                if v is None:
                    continue
                if not torch.is_tensor(v) or tuple(v.shape) != (B, J) or not torch.isfinite(v).all() or \
                        (v < 0).any() or (v > 1).any():
                    raise _shape_error(name, v, f"(B={B}, J={J}) finite, in [0, 1]")
                v = v.float().to(dev)
                if name == "keypoint_visibility" and self.config.min_keypoint_confidence > 0:
                    v = v.masked_fill(v < self.config.min_keypoint_confidence, 0.0)  # gated like the confidences
                setattr(out, name, v)
        for name in ("features", "part_probs", "mask", "occluders", "hidden"):
            t = getattr(out, name)
            if t is not None and not torch.isfinite(t).all():
                raise NeuralfitError(f"{name} contains NaN or inf")
        return out, size

    # ------------------------------------------------------------------ losses
    def _terms(self, params: dict[str, torch.Tensor], batch: FitBatch, cam: CropCamera, size: int | None,
               cache: VisibilityCache | None, stage: int, want_occlusion: bool = False):
        posed = self.body(params["betas"], params["global_orient"], params["body_pose"], params["transl"],
                          lowres=size is not None)
        ctx = TermContext(params, posed, batch, self.body, cam, size, cache, self._init_pose, self._log_parts,
                          want_occlusion, init_depth=self._init_depth, init_keypoints=self._init_keypoints)
        total = torch.zeros(params["global_orient"].shape[0], device=self.device)
        values: dict[str, torch.Tensor] = {}
        for term in self.terms:
            if stage not in term.stages:
                continue
            value = term.fn(ctx)
            if value is not None:
                values[term.name] = value
                total = total + term.weight * value
        return total, values, ctx.occlusion

    # ------------------------------------------------------------------ optimisation
    def _run_stage(self, params, names, iters, batch, cam, size, cache, stage, history, rolled_back):
        if iters == 0:
            return params
        cfg = self.config
        B = params["global_orient"].shape[0]
        leaves = {k: v.detach().clone().requires_grad_(k in names) for k, v in params.items()}
        opt = torch.optim.Adam([leaves[k] for k in names], lr=cfg.lr)
        best = {k: v.detach().clone() for k, v in leaves.items()}
        best_loss = torch.full((B,), float("inf"), device=self.device)
        frozen = torch.zeros(B, dtype=torch.bool, device=self.device)
        if cache is not None:
            cache.invalidate()
        for it in range(iters + 1):
            total, _, _ = self._terms(leaves, batch, cam, size, cache, stage)
            finite = torch.isfinite(total)
            newly_bad = ~finite & ~frozen
            frozen |= newly_bad
            rolled_back |= newly_bad
            better = finite & ~frozen & (total.detach() < best_loss)
            best_loss = torch.where(better, total.detach(), best_loss)
            for k in leaves:
                sel = better.view(B, *([1] * (leaves[k].ndim - 1)))
                best[k] = torch.where(sel, leaves[k].detach(), best[k])
            history.append(torch.where(frozen, best_loss, total.detach()))
            if it == iters or frozen.all():
                break
            opt.zero_grad(set_to_none=True)
            torch.where(frozen, torch.zeros_like(total), total).sum().backward()
            opt.step()
            if frozen.any():
                with torch.no_grad():
                    for k in names:
                        sel = frozen.view(B, *([1] * (leaves[k].ndim - 1)))
                        leaves[k].copy_(torch.where(sel, best[k], leaves[k]))
        no_best = ~torch.isfinite(best_loss)
        if no_best.any():
            # Never finite even at the start: keep the stage's input (already validated as finite).
            for k in best:
                sel = no_best.view(B, *([1] * (best[k].ndim - 1)))
                best[k] = torch.where(sel, params[k].detach(), best[k])
        return best

    def fit(self, batch: FitBatch) -> FitResult:
        """Fit B crops. See :class:`FitBatch` for inputs and :class:`FitResult` for outputs."""
        cfg = self.config
        batch, size = self._prepare(batch)
        B = batch.global_orient.shape[0]
        if cfg.second_hypothesis:
            batch = _duplicate_batch(batch)
        cam = batch.camera()
        params = {"global_orient": batch.global_orient, "body_pose": batch.body_pose,
                  "betas": batch.betas, "transl": batch.transl}
        nb = params["global_orient"].shape[0]
        self._log_parts = log_part_probs(batch.part_probs) if batch.part_probs is not None else None
        self._init_pose = batch.body_pose.detach().clone()
        cache = None
        if size is not None and any(t.needs_render for t in self.terms):
            cache = VisibilityCache(self.body.faces, cam, size, every=cfg.cache_every, backend=cfg.raster_backend)
        history: list[torch.Tensor] = []
        rolled_back = torch.zeros(nb, dtype=torch.bool, device=self.device)
        betas = ("betas",) if cfg.optimize_betas else ()
        stage1, stage2 = tuple(cfg.stage1_params), tuple(cfg.stage2_params) + betas
        params = self._run_stage(params, stage1, cfg.stage1_iters, batch, cam, size, cache, 1, history, rolled_back)
        self._init_depth = self._init_keypoints = None
        anchor = cfg.w_hidden_anchor > 0 and batch.keypoint_anchor is not None and batch.keypoints is not None
        if cfg.w_init_depth > 0 or anchor:
            with torch.no_grad():
                placed = self.body(params["betas"], params["global_orient"], params["body_pose"], params["transl"],
                                   lowres=False)
                if cfg.w_init_depth > 0:
                    self._init_depth = pelvis_relative_depth(placed.joints[:, :24]).clone()
                if anchor:
                    self._init_keypoints = pelvis_relative_keypoints(self.body, placed, batch.joint_set).clone()
        params = self._run_stage(params, stage2, cfg.stage2_iters, batch, cam, size, cache, 2, history, rolled_back)
        # Final evaluation of the kept iterate with exact (freshly rasterised) visibility.
        if cache is not None:
            cache.invalidate()
        with torch.no_grad():
            total, terms, occlusion = self._terms(params, batch, cam, size, cache, 2, want_occlusion=True)
        if self.neural_model is not None:
            self.neural_model.clear_cache()
        self._log_parts = None
        self._init_depth = self._init_keypoints = None
        hist = torch.stack(history) if history else torch.zeros(0, nb, device=self.device)
        hypothesis = torch.zeros(B, dtype=torch.long, device=self.device)
        if cfg.second_hypothesis:
            t = torch.where(torch.isfinite(total), total, torch.full_like(total, float("inf")))
            hypothesis = (t[B:] < t[:B]).long()
            idx = torch.arange(B, device=self.device) + B * hypothesis
            params = {k: v[idx] for k, v in params.items()}
            total, terms = total[idx], {k: v[idx] for k, v in terms.items()}
            occlusion = (occlusion[0][idx], occlusion[1][idx]) if occlusion is not None else None
            hist = hist[:, idx]
            rolled_back = rolled_back[idx]
        if occlusion is not None:
            occlusion, fg = occlusion
            frac = occlusion.flatten(1).sum(1) / fg.flatten(1).sum(1).clamp(min=1)
        else:
            frac = torch.zeros(B, device=self.device)
        return FitResult(params["global_orient"].detach(), params["body_pose"].detach(), params["betas"].detach(),
                         params["transl"].detach(), total.detach(), {k: v.detach() for k, v in terms.items()},
                         hist, occlusion, frac, hypothesis, rolled_back)


def _duplicate_batch(batch: FitBatch) -> FitBatch:
    """2B batch: the original hypotheses, then the same rotated 180 deg about the vertical axis."""
    def dup(t):
        return None if t is None else torch.cat([t, t], dim=0)

    go2 = torch.cat([batch.global_orient, rotate_about_vertical(batch.global_orient)], dim=0)
    focal = dup(batch.focal) if torch.is_tensor(batch.focal) else batch.focal
    # The rotated copies form groups of their own: a hypothesis only meets the same hypothesis of the others.
    group = None if batch.group is None else torch.cat([batch.group, batch.group + int(batch.group.max()) + 1])
    return FitBatch(go2, dup(batch.body_pose), dup(batch.transl), dup(batch.betas), batch.res, dup(batch.features),
                    dup(batch.part_probs), dup(batch.keypoints), batch.joint_set, dup(batch.mask), focal,
                    dup(batch.principal_point), group, dup(batch.occluders), dup(batch.hidden),
                    dup(batch.keypoint_weight), dup(batch.keypoint_visibility))


def _on_device(module, device: torch.device):
    """``module`` on ``device``: itself when it is there already (or not a module), else a moved copy."""
    if not isinstance(module, torch.nn.Module):
        return module
    tensors = list(module.parameters()) + list(module.buffers())
    if all(t.device == device for t in tensors):
        return module
    return copy.deepcopy(module).to(device)


def _prepare_camera(focal, principal_point, B: int, dev: torch.device):
    """Validated focal (number or (B,) tensor) and principal point ((B, 2) tensor or None) on ``dev``."""
    if torch.is_tensor(focal):
        if focal.ndim == 0:
            focal = float(focal)
        elif tuple(focal.shape) != (B,):
            raise _shape_error("focal", focal, f"a number or (B={B},)")
        else:
            focal = focal.float().to(dev)
    if focal is not None and not (torch.as_tensor(focal) > 0).all() or \
            (focal is not None and not torch.isfinite(torch.as_tensor(focal)).all()):
        raise NeuralfitError(f"camera focal must be positive and finite, got {focal}")
    if principal_point is not None:
        pp = torch.as_tensor(principal_point, dtype=torch.float32)
        if pp.ndim == 1:
            pp = pp.expand(B, 2)
        if tuple(pp.shape) != (B, 2) or not torch.isfinite(pp).all():
            raise _shape_error("principal_point", pp, f"finite (B={B}, 2) crop pixels")
        principal_point = pp.to(dev)
    return focal, principal_point

