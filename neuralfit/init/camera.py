"""Put a posed body into a photo's pinhole camera: the translation that lands its keypoints on 2D detections.

With the body's keypoints ``X_j`` (camera axes, before translation) and detections ``(u_j, v_j)``, the
pinhole model ``u = f (X + t_x) / (Z + t_z) + c_x`` rearranges to two equations *linear* in ``t``:

    t_x - x_j t_z = x_j Z_j - X_j,      t_y - y_j t_z = y_j Z_j - Y_j,      x_j = (u_j - c_x) / f, ...

so a confidence-weighted least-squares solve gives ``t`` in closed form (exact for noise-free keypoints).
The equations' residuals are image-plane errors times depth, i.e. nearly proportional to pixel errors for
a person far from the camera compared with their depth extent; a few iteratively re-weighted passes with
Cauchy weights on the pixel reprojection error then discount keypoints that disagree with the rest (a
wrong detection, a limb the start got wrong).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init.types import StartParams


@dataclass
class PlaceConfig:
    """Settings of :func:`place_in_camera`.

    Attributes:
        min_confidence: detections below this are unusable.
        min_keypoints: with fewer usable keypoints the least-squares solve is not trusted and the
            similar-triangles fallback is used (3 unknowns; 4 points give 8 equations and some redundancy).
        robust_passes: Cauchy re-weighting passes after the first solve.
        robust_scale: pixel residual at which a keypoint's weight halves, as a fraction of the keypoints'
            2D spread (so it scales with the person's size in the image).
        min_depth: metres; a solution closer than this (or behind the camera) falls back.
        default_depth: metres, used when nothing else fixes the depth (no usable keypoint, no box).
    """

    min_confidence: float = 0.1
    min_keypoints: int = 4
    robust_passes: int = 3
    robust_scale: float = 0.05
    min_depth: float = 0.3
    default_depth: float = 5.0


def _as_batch(x: float | torch.Tensor, b: int, n: int, what: str, like: torch.Tensor) -> torch.Tensor:
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    if n == 1:
        t = t.reshape(-1)
        if t.numel() == 1:
            t = t.expand(b)
        if t.shape != (b,):
            raise NeuralfitError(f"{what} has shape {tuple(t.shape)}; expected a number or ({b},)")
    else:
        if t.ndim == 1:
            t = t.expand(b, n) if t.shape == (n,) else t
        if t.shape != (b, n):
            raise NeuralfitError(f"{what} has shape {tuple(t.shape)}; expected ({n},) or ({b}, {n})")
    if not bool(torch.isfinite(t).all()):
        raise NeuralfitError(f"{what} must be finite")
    return t


def _weighted_solve(xn: torch.Tensor, yn: torch.Tensor, pts: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Least-squares t (B, 3) of the linear pinhole equations; xn, yn (B, J) normalised coordinates,
    pts (B, J, 3) body keypoints, w (B, J) weights."""
    zeros, ones = torch.zeros_like(xn), torch.ones_like(xn)
    a = torch.cat([torch.stack([ones, zeros, -xn], -1), torch.stack([zeros, ones, -yn], -1)], dim=1)  # (B, 2J, 3)
    rhs = torch.cat([xn * pts[..., 2] - pts[..., 0], yn * pts[..., 2] - pts[..., 1]], dim=1)
    ww = torch.cat([w, w], dim=1)
    ata = torch.einsum("bn,bni,bnj->bij", ww, a, a) + 1e-9 * torch.eye(3, dtype=a.dtype, device=a.device)
    atb = torch.einsum("bn,bni,bn->bi", ww, a, rhs)
    # A singular system (no usable keypoint, or weights blown up by a depth near 0) gives NaN rows, which the
    # caller replaces with its fallback placement; torch.linalg.solve would raise for the whole batch.
    t, info = torch.linalg.solve_ex(ata, atb)
    return torch.where((info == 0)[:, None] & torch.isfinite(t), t, torch.full_like(t, float("nan")))


def _similar_triangles(xn: torch.Tensor, yn: torch.Tensor, pts: torch.Tensor, w: torch.Tensor,
                       focal: torch.Tensor, box_h: torch.Tensor | None, body_h: torch.Tensor,
                       cfg: PlaceConfig) -> torch.Tensor:
    """Fallback t (B, 3): depth from the ratio of the 3D to the 2D spread of the usable keypoints (two or
    more), else from the box height against the body's height, else ``default_depth``; then x, y so that
    the keypoints' (or box's) centre lands where it was seen."""
    m = (w > 0).to(pts.dtype)
    k = m.sum(1)
    denom = k.clamp_min(1.0)
    c3 = (m[..., None] * pts).sum(1) / denom[:, None]
    cx, cy = (m * xn).sum(1) / denom, (m * yn).sum(1) / denom
    # RMS distance from the centroid, in the image (normalised units) and in the plane of the body.
    s2 = ((m * ((xn - cx[:, None]) ** 2 + (yn - cy[:, None]) ** 2)).sum(1) / denom).sqrt()
    s3 = ((m * (pts[..., :2] - c3[:, None, :2]).pow(2).sum(-1)).sum(1) / denom).sqrt()
    depth = torch.full_like(k, cfg.default_depth)
    if box_h is not None:
        depth = torch.where(box_h > 0, body_h * focal / box_h.clamp_min(1e-6), depth)
    spread_ok = (k >= 2) & (s2 > 1e-6) & (s3 > 1e-3)
    depth = torch.where(spread_ok, s3 / s2.clamp_min(1e-9), depth).clamp_min(cfg.min_depth)
    tz = depth - c3[:, 2]
    tx = cx * depth - c3[:, 0]
    ty = cy * depth - c3[:, 1]
    return torch.stack([tx, ty, tz], dim=1)


def place_in_camera(body: torch.nn.Module, start: StartParams, keypoints: torch.Tensor, joint_set: str,
                    focal: float | torch.Tensor, principal_point: torch.Tensor | tuple[float, float],
                    config: PlaceConfig | None = None, bbox: torch.Tensor | None = None) -> torch.Tensor:
    """The camera translation that puts the posed body onto 2D keypoints.

    Args:
        body: a :class:`neuralfit.body.BodyModel`.
        start: the pose (``global_orient`` in camera axes, OpenCV: x right, y down, z forward), ``body_pose``
            and ``betas``; ``start.transl`` is ignored.
        keypoints: (B, J, 3) detections ``u, v, confidence`` in photo pixels, in ``joint_set`` order.
        joint_set: a name in ``body.keypoint_sets`` (``"blazepose33"``, ``"coco17"``, ...); keypoints the body
            does not define are ignored.
        focal: pixels, a number or (B,).
        principal_point: (2,) or (B, 2) pixels.
        config: :class:`PlaceConfig`.
        bbox: optional (B, 4) ``x0, y0, x1, y1`` person boxes, used only by the fallback.

    Returns:
        (B, 3) ``transl`` such that ``body(betas, global_orient, body_pose, transl)`` projects onto the
        keypoints; depth ``t_z`` is always such that the pelvis is at least ``min_depth`` in front of the
        camera. Least squares + robust re-weighting with ``min_keypoints`` or more usable keypoints,
        otherwise the similar-triangles fallback (keypoint spread, box height, or ``default_depth``).
    """
    cfg = config or PlaceConfig()
    if not torch.is_tensor(keypoints) or keypoints.ndim != 3 or keypoints.shape[-1] != 3:
        raise NeuralfitError(f"keypoints have shape {tuple(getattr(keypoints, 'shape', ()))}; expected (B, J, 3) u, v, confidence")
    if joint_set not in body.keypoint_sets:
        raise NeuralfitError(f"unknown joint set {joint_set!r}; expected one of {sorted(body.keypoint_sets)}")
    ks = body.keypoint_sets[joint_set]
    b, j = keypoints.shape[:2]
    if j != len(ks) or len(start) != b:
        raise NeuralfitError(f"keypoints have shape {tuple(keypoints.shape)}; expected ({len(start)}, {len(ks)}, 3) for {joint_set!r}")
    kp = keypoints.to(torch.float32)
    f = _as_batch(focal, b, 1, "focal", kp)
    if bool((f <= 0).any()):
        raise NeuralfitError("focal must be > 0 pixels")
    pp = _as_batch(principal_point, b, 2, "principal_point", kp)

    with torch.no_grad():
        out = body(start.betas.to(kp), start.global_orient.to(kp), start.body_pose.to(kp), full=False)
        pts = body.keypoints(out, joint_set)
        body_h = out.joints[:, :, 1].amax(1) - out.joints[:, :, 1].amin(1) + 0.25  # joints miss head top, heels
    uv_ok = torch.isfinite(kp).all(-1)
    conf = torch.where(uv_ok, kp[..., 2], torch.zeros_like(kp[..., 2]))
    w = torch.where((conf >= cfg.min_confidence) & ks.valid.to(kp.device), conf, torch.zeros_like(conf))
    uv = torch.where(uv_ok[..., None], kp[..., :2], torch.zeros_like(kp[..., :2]))
    xn = (uv[..., 0] - pp[:, None, 0]) / f[:, None]
    yn = (uv[..., 1] - pp[:, None, 1]) / f[:, None]

    t = _weighted_solve(xn, yn, pts, w)
    spread = ((w > 0) * ((xn - xn.mean(1, keepdim=True)) ** 2 + (yn - yn.mean(1, keepdim=True)) ** 2)).sum(1)
    spread = (spread / (w > 0).sum(1).clamp_min(1)).sqrt().clamp_min(1e-6)  # normalised units
    for _ in range(cfg.robust_passes):
        p = pts + t[:, None]
        z = p[..., 2].clamp_min(1e-6)
        err = ((p[..., 0] / z - xn) ** 2 + (p[..., 1] / z - yn) ** 2).sqrt()  # normalised image units
        c = cfg.robust_scale * spread[:, None]
        rw = w / (1.0 + (err / c) ** 2)
        # Depth matters in the equations: weighting by 1/z^2 turns algebraic into image-plane errors.
        t_new = _weighted_solve(xn, yn, pts, rw / z.detach() ** 2)
        t = torch.where(torch.isfinite(t_new).all(1, keepdim=True), t_new, t)

    enough = (w > 0).sum(1) >= cfg.min_keypoints
    pelvis_z = out.joints[:, 0, 2]
    good = enough & torch.isfinite(t).all(1) & (t[:, 2] + pelvis_z >= cfg.min_depth)
    if not bool(good.all()):
        box_h = None
        cx = torch.zeros_like(f)
        cy = torch.zeros_like(f)
        if bbox is not None:
            bb = torch.as_tensor(bbox, dtype=kp.dtype, device=kp.device)
            if bb.shape != (b, 4) or not bool(torch.isfinite(bb).all()):
                raise NeuralfitError(f"bbox has shape {tuple(bb.shape)} or non-finite values; expected ({b}, 4) x0, y0, x1, y1")
            box_h = bb[:, 3] - bb[:, 1]
            cx = (0.5 * (bb[:, 0] + bb[:, 2]) - pp[:, 0]) / f
            cy = (0.5 * (bb[:, 1] + bb[:, 3]) - pp[:, 1]) / f
        # Without usable keypoints, aim the pelvis at the box centre (or the principal point).
        none = (w > 0).sum(1) == 0
        first = torch.arange(j, device=kp.device) == 0
        xn = torch.where(none[:, None], cx[:, None].expand_as(xn), xn)
        yn = torch.where(none[:, None], cy[:, None].expand_as(yn), yn)
        w = torch.where(none[:, None] & first, torch.ones_like(w), w)
        pts = torch.where(none[:, None, None], out.joints[:, :1].expand(-1, j, -1), pts)
        fb = _similar_triangles(xn, yn, pts, w, f, box_h, body_h, cfg)
        t = torch.where(good[:, None], t, fb)
    # Whatever happened, keep the body in front of the camera.
    tz = torch.maximum(t[:, 2], cfg.min_depth - pelvis_z)
    return torch.stack([t[:, 0], t[:, 1], tz], dim=1)
