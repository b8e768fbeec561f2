"""Terms between people of one photo, fitted together in its camera (issue 17).

A batch may hold several people of the same photo: ``FitBatch.group`` (B,) gives each sample its photo
(samples of different groups never interact), and since every crop camera is the photo camera seen in
that crop, all bodies live in one metric camera frame. Two terms couple them:

* **Depth order** (:class:`DepthOrderTerm`, ``w_depth_order``), from the masks, in the spirit of the
  depth-ordering loss of Jiang et al. (CVPR 2020) but without a second renderer: ``FitBatch.occluders``
  holds, in each person's crop, the other people's masks. Where another person's mask owns a pixel
  (occluder > 0.5 > own mask) and a vertex of this body projects there, that person is in front: the
  vertex must lie behind the other body's front surface at that pixel (the nearest depth of its
  low-res vertices projecting within ``1.5`` mask cells). Per vertex the violation ``e = relu(z_front_other
  - z_v)`` (metres) costs ``e^2 / (e^2 + 0.1^2)`` (Geman-McClure: bounded, so a body misplaced in 2D onto
  someone else's pixels, or a second person put metres too far, is not dragged through the scene), averaged
  over the body's low-res vertices. Each ordered pair is scored in the first person's crop, so both
  directions are covered. Which vertices meet which pixels is found every ``_REFRESH`` evaluations.
* **Interpenetration** (:class:`InterpenetrationTerm`, ``w_interpenetration``): every low-res vertex of
  one body against capsules around the other body's bones (one per SMPL bone, radius = 0.8 x the median
  distance of the rest-pose vertices nearest that bone, so touching costs nothing);
  ``mean_v sum_k relu(r_k - d_vk)^2`` in cm^2.

Each person's mask as an occluder of the others also enters the mask outlier process
(:class:`neuralfit.fitting.robust.MaskOutlierTerm` raises a body pixel's occlusion prior to the
occluder probability there), so a body hidden behind someone is not pulled out of hiding.
"""

from __future__ import annotations

import torch

from neuralfit.fitting.posing import FitBody, Posed

#: Radius (in mask cells) within which another body's vertex counts as "at the same pixel".
_SPLAT_CELLS = 1.5
#: Ownership of a pixel: the other person's mask above this, this person's below 1 - it.
_OWN = 0.5
#: Scale (metres) of the depth-order violation's robust cost.
_DEPTH_SIGMA = 0.1
#: Evaluations between searches of which vertices share pixels (the gradient flows every evaluation).
_REFRESH = 5
#: Capsule radius as a share of the median rest-pose vertex distance to the bone.
_RADIUS_SHRINK = 0.8


def group_pairs(group: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(ia, ib) index tensors of every ordered pair of different samples in the same group, or None."""
    if group is None:
        return None
    same = (group[:, None] == group[None, :]) & ~torch.eye(len(group), dtype=torch.bool, device=group.device)
    ia, ib = torch.nonzero(same, as_tuple=True)
    return (ia, ib) if ia.numel() else None


def _project(points: torch.Tensor, focal: torch.Tensor, pp: torch.Tensor) -> torch.Tensor:
    """(N, 3) camera points -> (N, 2) pixels of a camera with focal () and principal point (2,)."""
    return points[:, :2] / points[:, 2:3].clamp(min=1e-3) * focal + pp


class DepthOrderTerm:
    """``context -> (B,)`` mask-based depth-order loss (module docstring); None without groups or masks."""

    def __init__(self) -> None:
        self._cache: tuple[tuple, int, list] | None = None

    def _meetings(self, ctx, pairs, verts: torch.Tensor, focal: torch.Tensor, pp: torch.Tensor, cell: float) -> list:
        """Per ordered pair (a, o): a's vertices on pixels o's mask owns, and for each the (n, V) mask of o's
        vertices projecting near it; recomputed every ``_REFRESH`` calls on one batch."""
        b = ctx.batch
        key = (b.occluders, b.mask, tuple(verts.shape))  # the tensors themselves: ids of freed ones are reused
        if self._cache is not None and self._cache[1] < _REFRESH and self._cache[0][0] is key[0] and \
                self._cache[0][1] is key[1] and self._cache[0][2] == key[2]:
            self._cache = (key, self._cache[1] + 1, self._cache[2])
            return self._cache[2]
        S = b.occluders.shape[-1]
        out = []
        with torch.no_grad():
            for a, o in zip(*pairs, strict=True):
                a, o = int(a), int(o)
                uv_a = _project(verts[a], focal[a], pp[a])  # this body in its own crop
                uv_o = _project(verts[o], focal[a], pp[a])  # the other body in the same crop
                g = (uv_a / cell - 0.5).round().long().clamp(0, S - 1)
                owned = (b.occluders[a, g[:, 1], g[:, 0]] > _OWN) & (b.mask[a, g[:, 1], g[:, 0]] < 1.0 - _OWN)
                owned &= verts[a, :, 2] > 0
                idx = torch.nonzero(owned, as_tuple=True)[0]
                if not idx.numel():
                    continue
                near = torch.cdist(uv_a[idx], uv_o) < _SPLAT_CELLS * cell  # (n, V)
                has = near.any(1)
                if has.any():
                    out.append((a, o, idx[has], near[has]))
        self._cache = (key, 1, out)
        return out

    def __call__(self, ctx) -> torch.Tensor | None:
        b = ctx.batch
        pairs = group_pairs(getattr(b, "group", None))
        occ = getattr(b, "occluders", None)
        if pairs is None or occ is None or b.mask is None or ctx.posed.lowres is None:
            return None
        verts = ctx.posed.lowres  # (B, V, 3)
        B, V = verts.shape[:2]
        S = occ.shape[-1]
        cam = ctx.cam
        f = cam.focal if cam.focal is not None else 5000.0 * cam.res / 224.0
        focal = torch.as_tensor(f, dtype=verts.dtype, device=verts.device).expand(B)
        c = cam.principal_point if cam.principal_point is not None else (cam.res / 2.0, cam.res / 2.0)
        pp = torch.as_tensor(c, dtype=verts.dtype, device=verts.device).expand(B, 2)
        loss = verts.new_zeros(B)
        for a, o, idx, near in self._meetings(ctx, pairs, verts.detach(), focal, pp, cam.res / S):
            z_o = verts[o, :, 2][None].expand(len(idx), V).masked_fill(~near, float("inf")).amin(1)
            e2 = torch.relu(z_o - verts[a, idx, 2]).pow(2)
            loss[a] = loss[a] + (e2 / (e2 + _DEPTH_SIGMA ** 2)).sum() / V
        return loss


class InterpenetrationTerm:
    """``context -> (B,)`` vertex-in-capsule penalty between bodies of one group (module docstring)."""

    def __init__(self) -> None:
        self._bones: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def bones(self, body: FitBody, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(child (K,), parent (K,), radius (K,) metres) of the capsules, from the body at rest."""
        if self._bones is None:
            with torch.no_grad():
                z = torch.zeros(1, 3, device=device)
                rest = body(torch.zeros(1, body.n_betas, device=device), z, torch.zeros(1, 69, device=device), z)
                parents = body.parents.to(device)
                child = torch.arange(1, len(parents), device=device)
                parent = parents[1:].long()
                d = _segment_distance(rest.lowres[0], rest.joints[0, parent], rest.joints[0, child])  # (V, K)
                nearest = d.argmin(1)
                radius = torch.zeros(len(child), device=device)
                for k in range(len(child)):
                    mine = d[nearest == k, k]
                    if mine.numel() >= 5:
                        radius[k] = _RADIUS_SHRINK * mine.median()
            self._bones = (child, parent, radius)
        return self._bones

    def __call__(self, ctx) -> torch.Tensor | None:
        pairs = group_pairs(getattr(ctx.batch, "group", None))
        posed: Posed = ctx.posed
        if pairs is None or posed.lowres is None:
            return None
        child, parent, radius = self.bones(ctx.body, posed.joints.device)
        ia, ib = pairs
        with torch.no_grad():  # only pairs whose boxes (grown by the thickest capsule) meet can touch
            lo, hi = posed.lowres.amin(1) - radius.max(), posed.lowres.amax(1) + radius.max()
            meet = ((lo[ia] <= hi[ib]) & (lo[ib] <= hi[ia])).all(-1)
        if not meet.any():
            return posed.lowres.new_zeros(posed.lowres.shape[0])
        ia, ib = ia[meet], ib[meet]
        # Vertices of a against the capsules of b, all pairs at once: (P, V, K).
        d = _segment_distance(posed.lowres[ia], posed.joints[ib][:, parent], posed.joints[ib][:, child])
        pen = torch.relu(radius - d) * (radius > 0) / 0.01  # centimetres
        per_pair = pen.pow(2).sum(-1).mean(-1)
        return posed.lowres.new_zeros(posed.lowres.shape[0]).index_add(0, ia, per_pair)


def _segment_distance(p: torch.Tensor, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Distances (..., N, K) of points p (..., N, 3) to segments a-b (..., K, 3)."""
    ab = b - a  # (..., K, 3)
    ap = p[..., :, None, :] - a[..., None, :, :]  # (..., N, K, 3)
    t = ((ap * ab[..., None, :, :]).sum(-1) / ab.pow(2).sum(-1)[..., None, :].clamp(min=1e-10)).clamp(0.0, 1.0)
    return (ap - t[..., None] * ab[..., None, :, :]).norm(dim=-1)


def people_terms(cfg) -> list:
    """The terms between people with ``cfg``'s weights (weight 0 left out), for ``default_terms``."""
    from neuralfit.fitting.terms import Term

    terms = []
    if cfg.w_depth_order > 0:
        terms.append(Term("depth_order", cfg.w_depth_order, DepthOrderTerm()))
    if cfg.w_interpenetration > 0:
        terms.append(Term("interpenetration", cfg.w_interpenetration, InterpenetrationTerm()))
    return terms
