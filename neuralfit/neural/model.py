"""The neural mesh model: per-vertex, orientation-conditioned feature distributions + clutter + outliers.

Generative model of a unit feature map ``F`` (B, D, H, W) given a rendered body (seed eqs. 1-2):

* a body pixel ``i`` whose centre falls in face ``(r0, r1, r2)`` with barycentrics ``b`` draws its
  feature from one of the face's vertices (prob. ``b_j``), and that vertex's orientation component ``k``
  (prob. ``alpha_{r_j k}``, from the limb angle, :mod:`neuralfit.neural.orientation`), from a von
  Mises-Fisher distribution ``vMF(f | phi_{rk}, kappa = 1 / T)``;
* a background pixel draws from the clutter model: a mixture of vMFs around ``clutter`` (M, D);
* the **outlier process**: a body pixel is explained by the body (``z = 1``, prior ``p_fg``) or, if
  occluded, by clutter (``z = 0``). The occlusion map is the posterior ``p(z = 0 | f)``.

All vMFs share one concentration, so their normalisers cancel and only ``kappa * cos`` terms remain.
Losses are multiplied by ``T`` (so a perfectly matched pixel costs about ``-1`` and clutter-like pixels
cost about ``-cos``), and averaged over all ``H * W`` pixels, background pixels included, so that
losses of different poses (different rendered masks) are comparable when the fitter keeps its best iterate.

Two likelihood modes (``mode``):

* ``"mixture"``: the proper mixture NLL above, ``-T log(p_fg p(f | body) + (1 - p_fg) p(f | clutter))``.
* ``"surrogate"``: the seed code's cosine surrogate, ``1 - softmax_T(cos(f, phi_i), cos(f, clutter))``
  (``softmax_T(a, b) = T log(e^{a/T} + e^{b/T})``, a soft maximum) with
  ``phi_i = sum_j sum_k b_j alpha_jk phi_{r_j k}`` (the interpolated mean feature, not renormalised).

With ``outlier=False`` every body pixel must be explained by the body (``-T log p(f | body)`` or
``1 - cos(f, phi_i)``), which is what the seed ablates against.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch
import torch.nn.functional as Fn

from neuralfit.errors import NeuralfitError
from neuralfit.neural.orientation import limb_angles, limb_pairs, orientation_weights
from neuralfit.render.raster import Fragments

MODEL_FORMAT_VERSION = 1
MODES = ("mixture", "surrogate")


@dataclass
class FeatureLoss:
    """Output of :meth:`NeuralMeshModel.loss`.

    Attributes:
        loss: (B,) per-sample loss (T-scaled NLL averaged over the H*W pixels).
        occlusion: (B, H, W) posterior probability that a rendered body pixel is occluded (0 off the
            body), or None when not requested.
        fg_mask: (B, H, W) bool, rendered body pixels.
    """

    loss: torch.Tensor
    occlusion: torch.Tensor | None
    fg_mask: torch.Tensor


class NeuralMeshModel(torch.nn.Module):
    """Feature bank of the low-res neural mesh: ``features`` (V, K, D) unit vectors + clutter (M, D).

    Args:
        features: (V, K, D) per-vertex, per-orientation mean directions (normalised here).
        clutter: (M, D) clutter mean directions (normalised here); M = 1 is the seed's single mean.
        clutter_weights: (M,) mixture weights (default uniform).
        temperature: T; the vMF concentration is ``1 / T`` (seed: 0.07).
        tau: softness of the orientation assignment (seed: 10).
        body_name, body_spec: the body this model was built for (checked on load).
    """

    def __init__(self, features: torch.Tensor, clutter: torch.Tensor, clutter_weights: torch.Tensor | None = None,
                 temperature: float = 0.07, tau: float = 10.0, body_name: str = "", body_spec: str = ""):
        super().__init__()
        if features.ndim != 3:
            raise NeuralfitError(f"neural model features must have shape (V, K, D), got {tuple(features.shape)}")
        if clutter.ndim == 1:
            clutter = clutter[None]
        if clutter.ndim != 2 or clutter.shape[1] != features.shape[2]:
            raise NeuralfitError(f"clutter features must have shape (M, D={features.shape[2]}), "
                                 f"got {tuple(clutter.shape)}")
        if not torch.isfinite(features).all() or not torch.isfinite(clutter).all():
            raise NeuralfitError("neural model features contain NaN or inf")
        if not temperature > 0:
            raise NeuralfitError(f"neural model temperature must be positive, got {temperature}")
        M = clutter.shape[0]
        w = torch.full((M,), 1.0 / M) if clutter_weights is None else torch.as_tensor(clutter_weights, dtype=torch.float32)
        if w.shape != (M,) or (w < 0).any() or not w.sum() > 0:
            raise NeuralfitError(f"clutter weights must be {M} non-negative numbers, got {tuple(w.shape)}")
        self.register_buffer("features", Fn.normalize(features.float(), dim=-1))
        self.register_buffer("clutter", Fn.normalize(clutter.float(), dim=-1))
        self.register_buffer("clutter_weights", (w / w.sum()).to(self.features.device))
        self.temperature, self.tau = float(temperature), float(tau)
        self.body_name, self.body_spec = body_name, body_spec
        self._sim_cache: tuple | None = None
        self._feat_cache: tuple | None = None

    # ----------------------------------------------------------------- constructors
    @property
    def n_vertices(self) -> int:
        return self.features.shape[0]

    @property
    def n_orientations(self) -> int:
        return self.features.shape[1]

    @property
    def dim(self) -> int:
        return self.features.shape[2]

    @classmethod
    def from_vertex_features(cls, features: torch.Tensor, clutter: torch.Tensor | None = None, K: int = 3,
                             **kwargs) -> NeuralMeshModel:
        """From (V, D) features (copied to all K orientations) or (V, K, D); clutter defaults to the
        normalised negative mean vertex feature (as far from the body as one direction can be)."""
        if features.ndim == 2:
            features = features[:, None].expand(-1, K, -1)
        if clutter is None:
            clutter = -Fn.normalize(features.float(), dim=-1).mean(dim=(0, 1))
        return cls(features, clutter, **kwargs)

    @classmethod
    def random(cls, n_vertices: int, K: int = 3, dim: int = 128, n_clutter: int = 1, seed: int = 0,
               **kwargs) -> NeuralMeshModel:
        """Random unit features: in D = 128 dimensions independent Gaussian directions are nearly
        orthogonal (|cos| ~ 1/sqrt(D) ~ 0.09), i.e. well separated. For tests and oracles."""
        g = torch.Generator().manual_seed(seed)
        feats = torch.randn(n_vertices, K, dim, generator=g)
        clutter = torch.randn(n_clutter, dim, generator=g)
        return cls(feats, clutter, **kwargs)

    @classmethod
    def from_statistics(cls, feature_sums: torch.Tensor, counts: torch.Tensor, clutter_sum: torch.Tensor,
                        allow_unseen: bool = False, **kwargs) -> NeuralMeshModel:
        """Maximum-likelihood model from accumulated statistics (seed: ``phi_rk = sum_j a_jrk f_j / sum_j a_jrk``).

        The vMF mean direction's MLE is the normalised alpha-weighted sum of unit features.

        Args:
            feature_sums: (V, K, D) sum over training pixels of ``alpha_jrk * f_j``.
            counts: (V, K) sum of ``alpha_jrk``.
            clutter_sum: (D,) or (M, D) sum of background features (per clutter component).
            allow_unseen: a vertex with no observation gets the clutter mean (uninformative) instead of
                raising. Orientation components with no data always fall back to the vertex's pooled mean.
        """
        if feature_sums.ndim != 3 or counts.shape != feature_sums.shape[:2]:
            raise NeuralfitError(f"feature sums must be (V, K, D) and counts (V, K), got "
                                 f"{tuple(feature_sums.shape)} and {tuple(counts.shape)}")
        clutter = clutter_sum[None] if clutter_sum.ndim == 1 else clutter_sum
        pooled = feature_sums.sum(1)  # (V, D)
        unseen = counts.sum(1) <= 0
        if unseen.any() and not allow_unseen:
            raise NeuralfitError(f"{int(unseen.sum())} of {counts.shape[0]} vertices have no training "
                                 "observations (pass allow_unseen=True to give them the clutter mean)")
        pooled = torch.where(unseen[:, None], clutter.mean(0).expand_as(pooled), pooled)
        empty = counts <= 0
        sums = torch.where(empty[..., None], pooled[:, None].expand_as(feature_sums), feature_sums)
        return cls(sums, clutter, **kwargs)

    # ----------------------------------------------------------------- save / load
    def metadata(self) -> dict:
        return {"format_version": MODEL_FORMAT_VERSION, "n_vertices": self.n_vertices, "K": self.n_orientations,
                "dim": self.dim, "temperature": self.temperature, "tau": self.tau,
                "body_name": self.body_name, "body_spec": self.body_spec}

    def save(self, path: str | os.PathLike) -> None:
        """Write a ``.pt`` with tensors and metadata, atomically."""
        from neuralfit.io.atomic import atomic_path

        state = {"metadata": self.metadata(), "features": self.features.cpu(), "clutter": self.clutter.cpu(),
                 "clutter_weights": self.clutter_weights.cpu()}
        with atomic_path(path) as tmp:
            torch.save(state, tmp)

    @classmethod
    def load(cls, path: str | os.PathLike, body=None, device: str | torch.device = "cpu") -> NeuralMeshModel:
        """Load a model written by :meth:`save`; with ``body`` given, check it was built for that body."""
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            meta = state["metadata"]
        except FileNotFoundError:
            raise NeuralfitError(f"neural model file not found: {path}") from None
        except Exception as exc:  # corrupt / foreign file
            raise NeuralfitError(f"cannot read neural model {path}: expected a .pt written by "
                                 f"NeuralMeshModel.save ({type(exc).__name__})") from None
        if meta.get("format_version") != MODEL_FORMAT_VERSION:
            raise NeuralfitError(f"neural model {path} has format version {meta.get('format_version')}, "
                                 f"expected {MODEL_FORMAT_VERSION}")
        model = cls(state["features"], state["clutter"], state["clutter_weights"], temperature=meta["temperature"],
                    tau=meta["tau"], body_name=meta["body_name"], body_spec=meta["body_spec"])
        if body is not None:
            model.check_body(body, str(path))
        return model.to(device)

    def check_body(self, body, what: str = "neural model") -> None:
        """Raise if this model does not fit ``body``'s low-res mesh (vertex count, body name)."""
        n_low = int(body.lowres.part_labels.shape[0])
        name = getattr(body, "name", "")
        if n_low != self.n_vertices:
            raise NeuralfitError(f"{what} has {self.n_vertices} vertices but body {name!r} has a "
                                 f"{n_low}-vertex low-res mesh")
        if self.body_name and name and self.body_name != name:
            raise NeuralfitError(f"{what} was built for body {self.body_name!r}, not {name!r}")

    def clear_cache(self) -> None:
        """Drop the per-feature-map / per-rasterisation caches (they hold references to the inputs)."""
        self._sim_cache = None
        self._feat_cache = None

    # ----------------------------------------------------------------- likelihood
    def part_orientation(self, joints: torch.Tensor, parents: torch.Tensor | list[int]) -> torch.Tensor:
        """(B, J, K) orientation weights of each part's limb from camera-frame joints (B, J, 3)."""
        pairs = limb_pairs(parents).to(joints.device)
        gamma = limb_angles(joints, pairs)  # (B, J)
        return orientation_weights(gamma, self.n_orientations, self.tau)

    def vertex_orientation(self, joints: torch.Tensor, vertex_parts: torch.Tensor,
                           parents: torch.Tensor | list[int]) -> torch.Tensor:
        """(B, V, K) orientation weights of each low-res vertex (its part's limb)."""
        return self.part_orientation(joints, parents)[:, vertex_parts]

    def expected_features(self, frags: Fragments, vertex_alpha: torch.Tensor) -> torch.Tensor:
        """Noise-free feature map (B, D, H, W) of a rendered body: at each body pixel the normalised
        barycentric blend of the face's orientation-mixed vertex features; zeros off the body.
        (For synthetic oracles and visualisation; fitting never needs it.)"""
        from neuralfit.render.raster import interpolate

        mixed = torch.einsum("bvk,vkd->bvd", vertex_alpha, self.features.to(vertex_alpha.dtype))
        out = Fn.normalize(interpolate(mixed, frags), dim=-1) * frags.mask[..., None]
        return out.permute(0, 3, 1, 2)

    def clutter_loglik(self, feats: torch.Tensor) -> torch.Tensor:
        """(B, H, W): ``log sum_m w_m exp(kappa cos(f, c_m))`` (up to the shared vMF normaliser)."""
        kappa = 1.0 / self.temperature
        sim = torch.einsum("bdhw,md->bhwm", feats, self.clutter.to(feats.dtype))
        return torch.logsumexp(kappa * sim + self.clutter_weights.log().to(feats.dtype), dim=-1)

    def _per_raster(self, feats: torch.Tensor, frags: Fragments, vertex_parts: torch.Tensor, n_parts: int) -> dict:
        """Pose-independent per-pixel quantities, computed once per rasterisation (cached on raster_id).

        Between rasterisations the pixel -> face assignment is fixed, so the cosines between a pixel's
        feature and its face's vertex features are constants; the pose enters only through barycentrics
        and orientation weights. Returns, for the n covered pixels: cosines ``S`` (n, 3, K), the shift
        ``m = max kappa S`` (n,), ``E = exp(kappa S - m)``, clutter log-likelihood ``Lc`` (n,), part
        indices (n, 3) into the flattened (B * J) part weights; and per sample the background sums.
        """
        # Keys hold the tensors themselves (compared with `is`), so a freed tensor's id cannot be reused.
        key = (feats, feats._version, frags.pix_to_face, frags.raster_id, vertex_parts)
        if self._sim_cache is not None and _same_key(self._sim_cache[0], key):
            return self._sim_cache[1]
        B, H, W = frags.pix_to_face.shape
        T, kappa = self.temperature, 1.0 / self.temperature
        with torch.no_grad():
            fkey = (feats, feats._version)
            if self._feat_cache is None or not _same_key(self._feat_cache[0], fkey):
                # Per feature map (not per rasterisation): pixel-major features and clutter likelihood.
                flat = feats.permute(0, 2, 3, 1).reshape(B * H * W, -1)
                self._feat_cache = (fkey, flat, self.clutter_loglik(feats).reshape(-1))
            _, flat, clutter = self._feat_cache
            b_idx = frags.batch_index
            f = flat.index_select(0, frags.pix)  # (n, D)
            phi = self.features.to(feats.dtype)[frags.face_verts]  # (n, 3, K, D)
            S = torch.einsum("nd,njkd->njk", f, phi)
            m = (kappa * S).flatten(1).max(1).values
            bg = torch.ones(B * H * W, dtype=torch.bool, device=feats.device)
            bg[frags.pix] = False
            bg_b = torch.div(torch.nonzero(bg, as_tuple=True)[0], H * W, rounding_mode="floor")
            lc_bg = clutter[bg]
            out = {
                "b": b_idx, "S": S, "m": m, "E": torch.exp(kappa * S - m[:, None, None]),
                "Lc": clutter.index_select(0, frags.pix),
                "parts": b_idx[:, None] * n_parts + vertex_parts.to(frags.face_verts.device)[frags.face_verts],
                "bg_nll": feats.new_zeros(B).index_add(0, bg_b, -T * lc_bg),
                "bg_cos": feats.new_zeros(B).index_add(0, bg_b, 1.0 - T * lc_bg),
            }
        self._sim_cache = (key, out)
        return out

    def loss(self, feats: torch.Tensor, frags: Fragments, part_alpha: torch.Tensor, vertex_parts: torch.Tensor,
             p_fg: float = 0.5, outlier: bool = True, mode: str = "mixture",
             want_occlusion: bool = True, person_prob: torch.Tensor | None = None,
             person_eps: float = 0.05) -> FeatureLoss:
        """Per-sample feature loss of a rendered body against an observed feature map.

        Args:
            feats: (B, D, H, W) unit-norm observed features (same H, W as ``frags``).
            frags: rasterised low-res mesh at the feature-map resolution.
            part_alpha: (B, J, K) orientation weights of the parts, from :meth:`part_orientation`.
            vertex_parts: (V,) part of each low-res vertex.
            p_fg: prior p(z = 1) that a body pixel is not occluded (outlier process).
            outlier: use the outlier process (False: every body pixel is explained by the body).
            mode: "mixture" (proper NLL) or "surrogate" (seed code's cosine max).
            person_prob: optional (B, H, W) probability that each pixel shows the person, from a separate
                segmenter (on photos: mediapipe's mask). In "mixture" mode with the outlier process it is a
                second observation, independent of the features given z: ``p(m | body) = eps + (1 - 2 eps) m``,
                ``p(m | clutter) = eps + (1 - 2 eps) (1 - m)``, on covered and uncovered pixels alike, so a
                covered pixel the segmenter calls "not person" leans to clutter (occluded). Ignored otherwise.
            person_eps: how much the segmenter is distrusted (0 < eps < 0.5).
        """
        if mode not in MODES:
            raise NeuralfitError(f"feature loss mode must be one of {MODES}, got {mode!r}")
        if not 0.0 < p_fg < 1.0:
            raise NeuralfitError(f"outlier prior p(z=1) must be in (0, 1), got {p_fg}")
        B, H, W = frags.pix_to_face.shape
        if feats.ndim != 4 or feats.shape[0] != B or feats.shape[1] != self.dim or feats.shape[2:] != (H, W):
            raise NeuralfitError(f"feature map must have shape (B={B}, D={self.dim}, {H}, {W}), "
                                 f"got {tuple(feats.shape)}")
        K = self.n_orientations
        if part_alpha.ndim != 3 or part_alpha.shape[0] != B or part_alpha.shape[2] != K:
            raise NeuralfitError(f"orientation weights must have shape (B={B}, J, K={K}), got "
                                 f"{tuple(part_alpha.shape)}")
        T = self.temperature
        c = self._per_raster(feats, frags, vertex_parts, part_alpha.shape[1])
        # Mixing weights over the face's 3 vertices x K orientations (differentiable in the pose).
        bary = frags.bary_fg.clamp(min=0.0)
        bary = bary / bary.sum(-1, keepdim=True).clamp(min=1e-8)
        alpha = part_alpha.reshape(-1, K).index_select(0, c["parts"].reshape(-1)).view(-1, 3, K)
        weights = bary[..., None] * alpha  # (n, 3, K), sums to 1 per pixel
        Lc = c["Lc"]
        use_person = person_prob is not None and mode == "mixture" and outlier
        if use_person:
            if tuple(person_prob.shape) != (B, H, W):
                raise NeuralfitError(f"person mask must have shape (B={B}, {H}, {W}), got {tuple(person_prob.shape)}")
            if not 0.0 < person_eps < 0.5:
                raise NeuralfitError(f"person_eps must be in (0, 0.5), got {person_eps}")
            m = person_prob.reshape(-1).to(Lc.dtype).clamp(0.0, 1.0)
            log_m_body = (person_eps + (1.0 - 2.0 * person_eps) * m).log()
            log_m_clutter = (person_eps + (1.0 - 2.0 * person_eps) * (1.0 - m)).log()
        if mode == "mixture":
            log_body = (weights * c["E"]).sum(dim=(1, 2)).clamp(min=1e-30).log() + c["m"]
            if outlier:
                a, b = log_body + math.log(p_fg), Lc + math.log(1.0 - p_fg)
                if use_person:
                    a = a + log_m_body.index_select(0, frags.pix)
                    b = b + log_m_clutter.index_select(0, frags.pix)
                pix_loss = -T * torch.logaddexp(a, b)
                occ = torch.sigmoid(b - a)
            else:
                pix_loss = -T * log_body
                occ = torch.sigmoid(Lc - log_body)
            bg = c["bg_nll"]
            if use_person:
                # Uncovered pixels are clutter: they also explain the segmenter's answer there.
                uncovered = (~frags.mask).reshape(-1).to(Lc.dtype)
                bg = bg - T * (uncovered * log_m_clutter).view(B, -1).sum(1)
        else:
            cos_body = (weights * c["S"]).sum(dim=(1, 2))
            cos_clutter = T * Lc  # = max cosine to the clutter mean for a single component
            occ = torch.sigmoid((cos_clutter - cos_body) / T)
            # Soft maximum of the two cosines at temperature T (-> max as T -> 0); its gradient weights the
            # body cosine by 1 - occlusion, so clutter-like pixels stop pulling the body.
            soft_max = T * torch.logaddexp(cos_body / T, cos_clutter / T)
            pix_loss = 1.0 - (soft_max if outlier else cos_body)
            bg = c["bg_cos"]
        loss = (bg + pix_loss.new_zeros(B).index_add(0, c["b"], pix_loss)) / (H * W)
        occlusion = frags.to_dense(occ.detach()) if want_occlusion else None
        return FeatureLoss(loss=loss, occlusion=occlusion, fg_mask=frags.mask)


def _same_key(a: tuple, b: tuple) -> bool:
    return len(a) == len(b) and all(x is y if torch.is_tensor(x) else x == y for x, y in zip(a, b, strict=True))
