"""Occlusion-robust fitting terms (issue 16): a keypoint outlier process and a person-mask silhouette term
read through the same outlier idea, and the occlusion map they make together without any features.

Keypoint outlier process (:func:`keypoint_mixture`, term ``keypoint_outlier``). Each detected 2D keypoint
``x_j`` (crop pixels, confidence ``c_j``) is explained either by the body, an isotropic Gaussian around
the body's projected keypoint ``u_j`` with ``sigma = keypoint_outlier_sigma * res``, or by an outlier
(hidden, hallucinated or another person's joint), uniform over the ``res x res`` crop::

    pi_j = eps + (1 - 2 eps) c_j                      # prior p(inlier), in [eps, 1 - eps]
    p(x_j) = pi_j N(x_j; u_j, sigma^2 I) + (1 - pi_j) / res^2
    loss = sum_j c_j [-log p(x_j) + log p(x_j | r = 0)] / sum_j c_j      (per sample, >= 0)

The ``eps`` floor is what lets a confident keypoint be rejected when it is far off: with sigma = 11 px a
keypoint 60 px away has likelihood ratio N / U ~ 1e-5, far below ``eps / (1 - eps)``. The confidence also
weights each keypoint's NLL (a tempered likelihood, as SMPLify weights its Geman-McClure term), so a
low-visibility joint pulls weakly even when it happens to look like an inlier. The posterior
``p(inlier | r_j)`` is returned per keypoint (:func:`keypoint_outlier_posteriors` for fit.json).

Mask silhouette (:class:`MaskOutlierTerm`, term ``mask_outlier``), through the cached rasterisation at
feature-map size (``TermContext.fragments``), no soft rasteriser. With ``m`` the person mask:

* a rendered body pixel ``i`` the mask calls background is either visible (then its surface point,
  projected at ``p_i``, should lie on the person: Gaussian in its distance ``d_i`` to the nearest mask
  pixel, scale ``s = mask_outlier_sigma * H``) or occluded (uniform over the ``H x W`` map), with prior
  ``rho_i``. ``rho_i = rho_0 + (1 - rho_0) h_i``: the base rate ``mask_occlusion_prior`` raised by how
  hidden the nearest keypoints are (``h_j = 1 - c_j p(inlier_j)``: the detector does not see the joint,
  or the body disagrees with it). Far outside the mask (``d_i`` beyond a few ``s``) the occluder explains
  the pixel and the body is not forced out; just outside, it is misalignment and is pulled in.
* a mask pixel ``u`` the body does not cover pulls the nearest visible low-res vertex (found at the
  last rasterisation) toward it, robustly (a mask false positive, rate ``mask_false_positive``, is the
  outlier): this is what fixes width, shape and depth.

``p_i`` is the perspective projection of the barycentric surface point of the cached face, so it moves
with the vertices between rasterisations and carries the gradient. The occlusion posterior of the body
pixels (``(1 - 2 m)_+`` times the occluder posterior) goes into ``TermContext.occlusion`` when the final
evaluation asks for it, averaged with the neural term's map when both run. docs/occlusion.md has the
maths and what the pipeline must pass.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.render.camera import project
from neuralfit.render.raster import Fragments, screen_vertices

#: Upper bound of the occlusion prior of a body pixel (keeps its log finite for fully hidden parts).
_RHO_MAX = 1.0 - 1e-3


@dataclass
class KeypointMixture:
    """Output of :func:`keypoint_mixture`.

    Attributes:
        loss: (B,) confidence-weighted mean of the per-keypoint NLL (offset so a perfect fit costs 0).
        inlier: (B, J) posterior p(keypoint explained by the body); 0 where ``active`` is False.
        active: (B, J) bool, keypoints the body defines and the detector reported (confidence > 0).
    """

    loss: torch.Tensor
    inlier: torch.Tensor
    active: torch.Tensor


def keypoint_mixture(uv: torch.Tensor, observed: torch.Tensor, valid: torch.Tensor, res: int,
                     sigma: float = 0.03, eps: float = 0.05) -> KeypointMixture:
    """Body-or-outlier mixture NLL of 2D keypoints (see the module docstring).

    Args:
        uv: (B, J, 2) the body's projected keypoints in crop pixels.
        observed: (B, J, 3) detected ``(u, v, confidence)`` in crop pixels, confidence in [0, 1].
        valid: (J,) bool, keypoints the body defines.
        res: crop size in pixels (the outlier density is uniform over ``res x res``).
        sigma: inlier standard deviation as a fraction of ``res`` (the person's box size in a SPIN crop).
        eps: floor of both p(inlier) and p(outlier) (0 < eps < 0.5).
    """
    if not 0.0 < eps < 0.5:
        raise NeuralfitError(f"keypoint outlier eps must be in (0, 0.5), got {eps}")
    if not sigma > 0:
        raise NeuralfitError(f"keypoint outlier sigma must be positive, got {sigma}")
    s = sigma * float(res)
    conf = observed[..., 2].clamp(0.0, 1.0)
    active = (conf > 0) & valid.to(torch.bool)[None]
    r2 = (uv - observed[..., :2]).pow(2).sum(-1)
    log_norm = -math.log(2.0 * math.pi * s * s)
    pi = eps + (1.0 - 2.0 * eps) * conf
    a = pi.log() + log_norm - r2 / (2.0 * s * s)  # log pi N(r)
    b = (1.0 - pi).log() - 2.0 * math.log(float(res))  # log (1 - pi) U
    a0 = pi.log() + log_norm
    nll = torch.logaddexp(a0, b) - torch.logaddexp(a, b)  # -log p(r) + log p(0) >= 0
    w = conf * active
    loss = (w * nll).sum(-1) / w.sum(-1).clamp(min=1e-6)
    inlier = torch.sigmoid(a - b) * active
    return KeypointMixture(loss, inlier, active)


def keypoint_term_fn(cfg):
    """``context -> (B,)`` keypoint outlier loss with ``cfg``'s sigma and eps (None without keypoints)."""
    def fn(ctx) -> torch.Tensor | None:
        b = ctx.batch
        if b.keypoints is None:
            return None
        from neuralfit.fitting.terms import weighted_per_sample

        kp3d, valid = ctx.body.keypoints(ctx.posed, b.joint_set)
        return weighted_per_sample(keypoint_mixture(project(kp3d, ctx.cam), b.keypoints, valid, ctx.cam.res,
                                                    cfg.keypoint_outlier_sigma, cfg.keypoint_outlier_eps).loss,
                                   b.keypoint_weight)

    return fn


def keypoint_outlier_posteriors(body, batch, result, config) -> torch.Tensor:
    """(B, J) posterior probability that each keypoint is an outlier at a fit's kept iterate.

    Args:
        body: the body (``neuralfit.body`` model or :class:`~neuralfit.fitting.FitBody`) the fit used.
        batch: the :class:`~neuralfit.fitting.FitBatch` given to ``Fitter.fit`` (keypoints, camera).
        result: its :class:`~neuralfit.fitting.FitResult`.
        config: the :class:`~neuralfit.fitting.FitConfig` of the fit (sigma, eps, confidence gating).

    Returns:
        ``1 - p(inlier)`` per keypoint; NaN where there is no observation (the body does not define the
        keypoint, its confidence is 0, or it is below ``min_keypoint_confidence``): write those as null.
    """
    from neuralfit.fitting.posing import FitBody

    if batch.keypoints is None:
        raise NeuralfitError("keypoint outlier posteriors need the batch's keypoints (none were given)")
    fb = FitBody.from_body(body)
    dev = result.global_orient.device
    kp = torch.nan_to_num(batch.keypoints.float().to(dev), nan=0.0)
    if config.min_keypoint_confidence > 0:
        kp = torch.cat([kp[..., :2], kp[..., 2:].masked_fill(kp[..., 2:] < config.min_keypoint_confidence, 0.0)],
                       dim=-1)
    cam = batch.camera().to(dev)
    with torch.no_grad():
        posed = fb(result.betas, result.global_orient, result.body_pose, result.transl, lowres=False)
        kp3d, valid = fb.keypoints(posed, batch.joint_set)
        mix = keypoint_mixture(project(kp3d, cam), kp, valid, int(batch.res), config.keypoint_outlier_sigma,
                               config.keypoint_outlier_eps)
    out = 1.0 - mix.inlier
    return torch.where(mix.active, out, torch.full_like(out, float("nan")))


def vertex_keypoints(fit_body, joint_set: str) -> torch.Tensor:
    """(V_low,) long: for each low-res vertex, the nearest keypoint of ``joint_set`` the body defines,
    in the rest pose (3D, so a hand in front of the torso does not claim torso pixels)."""
    z = torch.zeros(1, 3, device=fit_body.faces.device)
    with torch.no_grad():
        rest = fit_body(torch.zeros(1, fit_body.n_betas, device=z.device), z, torch.zeros(1, 69, device=z.device),
                        z, lowres=True)
        kp, valid = fit_body.keypoints(rest, joint_set)
        d = torch.cdist(rest.lowres[0], kp[0])
        d[:, ~valid] = float("inf")
    return d.argmin(1)


def _dense_coords(H: int, W: int, device) -> torch.Tensor:
    """(H * W, 2) pixel centres ``(x + 0.5, y + 0.5)`` in row-major order."""
    ys, xs = torch.meshgrid(torch.arange(H, device=device), torch.arange(W, device=device), indexing="ij")
    return torch.stack([xs, ys], -1).reshape(-1, 2).float() + 0.5


def _plateau_mixture(d2: torch.Tensor, rho: torch.Tensor, s: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-pixel ``-log((1 - rho) g + rho)`` with ``g = exp(-d^2 / 2 s^2)``, and the outlier posterior
    ``rho / ((1 - rho) g + rho)``: 0 at d = 0, saturating at ``-log rho`` far away (d2: squared pixels)."""
    a = (1.0 - rho).log() - d2 / (2.0 * s * s)
    b = rho.log()
    return -torch.logaddexp(a, b), torch.sigmoid(b - a)


class MaskOutlierTerm:
    """``context -> (B,)`` person-mask silhouette loss with an occluder outlier process (module docstring).

    Per-mask work (nearest mask pixel of every pixel) is cached on the mask tensor, per-rasterisation work
    (nearest visible vertex of every uncovered mask pixel) on the fragments' ``raster_id``; between
    rasterisations an evaluation costs a few gathers over the covered and the uncovered mask pixels.
    """

    def __init__(self, cfg):
        # cfg: a FitConfig (validated there): mask_outlier_sigma, mask_occlusion_prior, mask_false_positive.
        self.cfg = cfg
        self._mask_cache: tuple | None = None
        self._raster_cache: tuple | None = None
        self._assign: dict[tuple[str, int], torch.Tensor] = {}

    # ------------------------------------------------------------------ caches
    def _per_mask(self, mask: torch.Tensor) -> dict:
        """Nearest confident mask pixel (m > 0.5) of every pixel, per sample (once per mask tensor)."""
        key = (mask, mask._version)
        if self._mask_cache is not None and self._mask_cache[0][0] is mask and self._mask_cache[0][1] == key[1]:
            return self._mask_cache[1]
        B, H, W = mask.shape
        with torch.no_grad():
            xy = _dense_coords(H, W, mask.device)
            flat = mask.reshape(B, -1).clamp(0.0, 1.0)
            nearest = xy[None].repeat(B, 1, 1)  # (B, HW, 2); pixels with m > 0.5 are their own nearest
            has = torch.zeros(B, dtype=torch.bool, device=mask.device)
            for k in range(B):
                inside = flat[k] > 0.5
                out = ~inside
                if inside.any() and out.any():
                    pm = xy[inside]
                    q = torch.cat([pm[torch.cdist(chunk, pm).argmin(1)] for chunk in xy[out].split(2048)])
                    nearest[k, out] = q
                has[k] = bool(inside.any())
            data = {"nearest": nearest.reshape(B * H * W, 2), "out_w": (1.0 - 2.0 * flat).clamp(min=0.0).reshape(-1),
                    "in_w": (2.0 * flat - 1.0).clamp(min=0.0).reshape(-1), "has": has,
                    "area": (2.0 * flat - 1.0).clamp(min=0.0).sum(1).clamp(min=1.0), "xy": xy}
        self._mask_cache = (key, data)
        return data

    def _per_raster(self, ctx, frags: Fragments, scr: torch.Tensor, md: dict) -> dict:
        """Once per rasterisation: uncovered mask pixels and the nearest visible vertex of each; covered
        pixels off the mask with their surface points and occlusion priors."""
        key = (frags.pix_to_face, frags.raster_id)
        if self._raster_cache is not None and self._raster_cache[0][0] is key[0] and \
                self._raster_cache[0][1] == key[1]:
            return self._raster_cache[1]
        B, H, W = frags.pix_to_face.shape
        V = scr.shape[1]
        with torch.no_grad():
            pix_list, vert_list = [], []
            uncovered = (md["in_w"] > 0) & ~frags.mask.reshape(-1)
            bi = frags.batch_index
            for k in range(B):
                pix_k = torch.nonzero(uncovered[k * H * W:(k + 1) * H * W], as_tuple=True)[0]
                vis = torch.unique(frags.face_verts[bi == k])
                if pix_k.numel() == 0 or vis.numel() == 0:
                    continue
                d = torch.cdist(md["xy"][pix_k], scr[k, vis, :2].detach())
                pix_list.append(pix_k + k * H * W)
                vert_list.append(vis[d.argmin(1)] + k * V)
            empty = torch.zeros(0, dtype=torch.long, device=scr.device)
            # Only covered pixels the mask calls background carry loss: select them once. The barycentrics
            # of this (rasterising) call fix each one's surface point; later calls recompute barycentrics
            # of the same pixel centre, whose projection never moves.
            w_out = md["out_w"].index_select(0, frags.pix)
            sel = torch.nonzero(w_out > 0, as_tuple=True)[0]
            pix = frags.pix[sel]
            b_out = torch.div(pix, H * W, rounding_mode="floor")
            bary = frags.bary_fg.detach()[sel].clamp(min=0.0)
            data = {"pix": torch.cat(pix_list) if pix_list else empty,
                    "vert": torch.cat(vert_list) if vert_list else empty,
                    "sel": sel, "b_out": b_out, "w_out": w_out[sel], "bary": bary,
                    "corner_idx": (b_out[:, None] * V + frags.face_verts[sel]).reshape(-1),
                    "nearest": md["nearest"].index_select(0, pix),
                    "rho": self.pixel_prior(ctx, bary, b_out, frags.face_verts[sel], pix)}
        self._raster_cache = (key, data)
        return data

    def _assignment(self, ctx) -> torch.Tensor:
        key = (ctx.batch.joint_set, ctx.body.n_lowres)
        if key not in self._assign:
            self._assign[key] = vertex_keypoints(ctx.body, ctx.batch.joint_set)
        return self._assign[key]

    # ------------------------------------------------------------------ loss
    def hidden_pixels(self, ctx, bary: torch.Tensor, b_idx: torch.Tensor, face_verts: torch.Tensor) -> torch.Tensor | None:
        """(n,) how hidden the keypoints nearest the surface points of n covered pixels are (barycentrics
        (n, 3), sample (n,), face vertices (n, 3)): ``h_j = 1 - c_j p(inlier_j)`` blended over the face's
        vertices; detached. None without keypoints."""
        b = ctx.batch
        if b.keypoints is None:
            return None
        with torch.no_grad():
            kp = b.keypoints
            if b.keypoint_visibility is not None:
                kp = torch.cat([kp[..., :2], b.keypoint_visibility[..., None]], -1)
            kp3d, valid = ctx.body.keypoints(ctx.posed, b.joint_set)
            mix = keypoint_mixture(project(kp3d, ctx.cam), kp, valid, ctx.cam.res,
                                   self.cfg.keypoint_outlier_sigma, self.cfg.keypoint_outlier_eps)
            hidden = 1.0 - kp[..., 2].clamp(0.0, 1.0) * mix.inlier  # (B, J); 1 when undetected
            h_v = hidden[:, self._assignment(ctx)]  # (B, V)
            V = h_v.shape[1]
            w = bary / bary.sum(-1, keepdim=True).clamp(min=1e-8)
            return (w * h_v.reshape(-1)[b_idx[:, None] * V + face_verts]).sum(-1)

    def pixel_prior(self, ctx, bary: torch.Tensor, b_idx: torch.Tensor, face_verts: torch.Tensor,
                    pix: torch.Tensor | None = None) -> torch.Tensor:
        """(n,) occlusion prior ``rho_i = rho_0 + (1 - rho_0) h_i`` of n covered pixels (see
        :meth:`hidden_pixels`), evaluated at the rasterising iterate (a prior weight; it moves slowly).
        Where another person is seen (``FitBatch.occluders`` at the flat pixel indices ``pix``), the prior
        is at least that person's mask probability: someone in front explains the missing body; likewise
        where the image itself says the body is hidden (``FitBatch.hidden``)."""
        rho0 = self.cfg.mask_occlusion_prior
        h = self.hidden_pixels(ctx, bary, b_idx, face_verts)
        rho = torch.full(b_idx.shape, rho0, device=b_idx.device) if h is None else rho0 + (1.0 - rho0) * h
        if pix is not None:
            for occ in (ctx.batch.occluders, ctx.batch.hidden):
                if occ is not None:
                    rho = torch.maximum(rho, occ.reshape(-1).index_select(0, pix))
        return rho.clamp(max=_RHO_MAX)

    def __call__(self, ctx) -> torch.Tensor | None:
        mask = ctx.batch.mask
        if mask is None or ctx.size is None:
            return None
        frags = ctx.fragments
        if frags is None:
            return None
        B, H, W = frags.pix_to_face.shape
        if tuple(mask.shape) != (B, H, W):
            raise NeuralfitError(f"person mask must have shape (B={B}, {H}, {W}), got {tuple(mask.shape)}")
        cfg = self.cfg
        md = self._per_mask(mask)
        verts = ctx.posed.lowres
        V = verts.shape[1]
        scr = screen_vertices(verts, ctx.cam, H).reshape(B * V, 3)  # (u, v, z) per vertex
        rd = self._per_raster(ctx, frags, scr.view(B, V, 3), md)
        s = cfg.mask_outlier_sigma * H
        # Covered pixels the mask calls background: p_i is the projection of the surface point the pixel
        # showed at the last rasterisation (fixed 3D barycentrics b; sum b z u / sum b z), which moves
        # with the vertices.
        corners = scr.index_select(0, rd["corner_idx"]).view(-1, 3, 3)
        bz = rd["bary"] * corners[..., 2]
        p = (bz[..., None] * corners[..., :2]).sum(1) / bz.sum(-1, keepdim=True).clamp(min=1e-8)
        d2 = (p - rd["nearest"]).pow(2).sum(-1)
        nll_out, occ = _plateau_mixture(d2, rd["rho"], s)
        loss = nll_out.new_zeros(B).index_add(0, rd["b_out"], rd["w_out"] * nll_out)
        # Mask pixels the body does not cover pull their nearest visible vertex out to them.
        if rd["pix"].numel():
            e2 = (md["xy"][rd["pix"] % (H * W)] - scr.index_select(0, rd["vert"])[:, :2]).pow(2).sum(-1)
            beta = torch.full_like(e2, cfg.mask_false_positive)
            nll_in, _ = _plateau_mixture(e2, beta, s)
            w_in = md["in_w"].index_select(0, rd["pix"])
            loss = loss.index_add(0, torch.div(rd["pix"], H * W, rounding_mode="floor"), w_in * nll_in)
        loss = loss / md["area"] * md["has"]
        if ctx.want_occlusion:
            # Where the mask says "person" it has no evidence of an occluder (a segmenter often fills a
            # person in through an occluder): there the keypoints decide, p(occluded) = h; off the mask
            # the two blend by the mask's confidence, (1 - 2 m)_+ occluder posterior + the rest h.
            h = self.hidden_pixels(ctx, frags.bary_fg.detach().clamp(min=0.0), frags.batch_index, frags.face_verts)
            occ_pix = torch.zeros_like(frags.depth_fg) if h is None else h
            w_sel = rd["w_out"]
            occ_pix = occ_pix.index_put((rd["sel"],), (w_sel * occ.detach() + (1.0 - w_sel) * occ_pix[rd["sel"]]))
            occ_map = frags.to_dense(occ_pix)
            if ctx.batch.hidden is not None:
                # The image's own evidence (a part head sees no body here), independent of the keypoints'
                # and the mask's: either explains a hidden pixel (noisy-or), on the rendered body only.
                occ_map = 1.0 - (1.0 - occ_map) * (1.0 - ctx.batch.hidden * frags.mask)
            if ctx.occlusion is not None:  # the neural term's map: average the two opinions
                occ_map = 0.5 * (occ_map + ctx.occlusion[0])
            ctx.occlusion = (occ_map, frags.mask)
        return loss


def robust_terms(cfg) -> list:
    """The issue-16 terms with ``cfg``'s weights (those with weight 0 are left out), for ``default_terms``."""
    from neuralfit.fitting.terms import Term

    terms = []
    if cfg.w_keypoint_outlier > 0:
        terms.append(Term("keypoint_outlier", cfg.w_keypoint_outlier, keypoint_term_fn(cfg)))
    if cfg.w_mask_outlier > 0:
        terms.append(Term("mask_outlier", cfg.w_mask_outlier, MaskOutlierTerm(cfg), needs_render=True))
    return terms

