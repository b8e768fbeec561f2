"""Inverse kinematics of the body's BlazePose-33 keypoints onto mediapipe's metric world landmarks.

mediapipe's ``pose_world_landmarks`` are metres with the origin at the midpoint of the two hip
landmarks and the camera's axes (x right, y down, z away from the camera; checked on real photos, see
docs/init.md). Fitting the body to them gives a start whose depth ordering (which arm is in front, how
far the torso leans) comes from a 3D estimate rather than from 2D keypoints alone.

BlazePose's hip landmarks are not SMPL's hip joints (19 cm apart on the multi-view benchmark, 23 cm on
two opencv-doc photos; the free body's hip joints are 22.6 cm apart, real SMPL's ~12 cm): positions
alone would bend the legs to close such a gap, so the objective also compares bone *directions* (unit
vectors between keypoints), which do not care about a constant offset, and down-weights the hip
positions.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from smplx.lbs import batch_rodrigues

from neuralfit.errors import NeuralfitError
from neuralfit.init.kinematics import KeypointPoser, analytic_start, weighted_kabsch
from neuralfit.init.types import StartParams
from neuralfit.priors import JointLimitPrior

#: BlazePose-33 indices used below (mediapipe's order).
_NOSE, _LEAR, _REAR, _LSH, _RSH, _LHIP, _RHIP = 0, 7, 8, 11, 12, 23, 24

# "Bones": each row is a list of (keypoint, coefficient) whose weighted sum is a direction to compare.
# Limbs, hands and feet are plain differences; the torso and head use midpoints so that the hip-width
# mismatch cancels.
_BONES: list[list[tuple[int, float]]] = [
    [(13, 1), (11, -1)], [(15, 1), (13, -1)], [(14, 1), (12, -1)], [(16, 1), (14, -1)],  # arms
    [(25, 1), (23, -1)], [(27, 1), (25, -1)], [(26, 1), (24, -1)], [(28, 1), (26, -1)],  # legs
    [(29, 1), (27, -1)], [(31, 1), (27, -1)], [(30, 1), (28, -1)], [(32, 1), (28, -1)],  # feet
    [(17, 1), (15, -1)], [(19, 1), (15, -1)], [(21, 1), (15, -1)],  # left hand
    [(18, 1), (16, -1)], [(20, 1), (16, -1)], [(22, 1), (16, -1)],  # right hand
    [(11, 1), (12, -1)], [(23, 1), (24, -1)], [(7, 1), (8, -1)],  # shoulder, hip and ear lines
    [(11, 0.5), (12, 0.5), (23, -0.5), (24, -0.5)],  # spine: hip centre -> shoulder centre
    [(11, 1), (23, -1)], [(12, 1), (24, -1)],  # torso sides (twist of the trunk)
    [(0, 1), (11, -0.5), (12, -0.5)], [(7, 0.5), (8, 0.5), (11, -0.5), (12, -0.5)],  # head
    [(0, 1), (7, -0.5), (8, -0.5)],  # face direction
]  # fmt: skip


@dataclass
class IKConfig:
    """Weights and solver settings of :func:`fit_world_landmarks`.

    The data terms are in units of their expected noise, so the weights are near 1: a keypoint
    ``position_sigma`` metres off costs ``position_weight`` (times its confidence), a bone direction off
    by ``direction_sigma`` (chord of the unit sphere, ~radians) costs ``direction_weight``. The pose prior
    term is ``pose_prior_weight * prior.penalty(body_pose)`` (a negative log-density, ~0.5 per latent
    unit), the shape prior ``shape_prior_weight * 0.5 |betas|^2`` (3: at 1 the betas absorbed the
    skeleton mismatch and reached 5 sd on real photos, at 0.01 20 sd). An L2 term
    ``pose_l2_weight * |body_pose|^2`` (rad^2) keeps unobserved joints (spine split) near rest.

    Attributes:
        position_sigma: metres; mediapipe's world landmarks are off by several cm on real photos.
        hip_position_scale: multiplies the position weight of the two hip keypoints (BlazePose puts them
            ~4 cm closer together than the free body's hip joints).
        direction_sigma: unit-vector difference that costs one unit.
        lm_iters: at most this many Levenberg-Marquardt iterations on the sum-of-squares part (data,
            ``pose_l2_weight`` on the pose, shape prior), from a closed-form start (torso Kabsch, then each
            limb joint); a sample stops when an accepted step gains less than 1e-6 of its cost.
        polish_iters: L-BFGS iterations that add ``prior.penalty`` afterwards (skipped without a prior;
            the limit and L2 terms already keep the pose plausible, the polish changes little).
        min_confidence: landmarks below this count as missing.
        end_l2_weight: L2 weight (rad^-2) on the toe and hand joints instead of ``pose_l2_weight``: one
            landmark each (foot index; finger tips sit on the wrist's landmarks too) leaves their twist
            free, and BlazePose's feet are not the body's, so a weak pull let them spin by radians.
        limit_weight: weight (rad^-2) of the squared joint-limit excess (``JointLimitPrior``, or the
            prior's own limits) in the Levenberg-Marquardt stage: 0.1 rad past a limit costs one unit.

    Not observable from the 33 landmarks, so set by the regularisers: the pelvis tilt about the hip axis
    (traded against hips and spine), how the trunk's bend splits over the three spine joints and the
    collars, limb twist split between a joint and the next (e.g. knee vs ankle), and betas that move no
    keypoint. The keypoints themselves, and the global orientation of hands, feet and head, are.
    """

    position_weight: float = 1.0
    position_sigma: float = 0.03
    hip_position_scale: float = 0.25
    direction_weight: float = 1.0
    direction_sigma: float = 0.1
    pose_prior_weight: float = 0.1
    pose_l2_weight: float = 0.01
    end_l2_weight: float = 1.0
    limit_weight: float = 100.0
    shape_prior_weight: float = 3.0
    lm_iters: int = 30
    polish_iters: int = 3
    min_confidence: float = 0.05


def _bone_matrix(device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    m = torch.zeros(len(_BONES), 33, dtype=dtype, device=device)
    for i, row in enumerate(_BONES):
        for j, c in row:
            m[i, j] = c
    return m



def _levenberg_marquardt(residuals, x: torch.Tensor, data: tuple[torch.Tensor, ...], iters: int,
                         rtol: float = 1e-6, step: float = 1e-6) -> torch.Tensor:
    """Batched Levenberg-Marquardt: x (B, P) minimising ``|residuals(x, *data)[b]|^2`` for each sample b.

    ``residuals`` maps rows to rows: (N, P) and per-row data -> (N, R). The Jacobian is taken by forward
    differences in float64 (relative error ~``step``), all P perturbations of the active samples in one
    batched call: on a CPU that is several times cheaper than vmapped forward-mode autodiff, whose
    per-op overhead dominates at these sizes. Each sample keeps its own damping, only takes steps that
    lower its own cost, and drops out once an accepted step lowers its cost by less than ``rtol``
    (relative), so easy samples cost nothing while hard ones take up to ``iters`` iterations.
    """
    b, p = x.shape
    x = x.double()
    data = tuple(d.double() for d in data)
    eye = torch.eye(p, dtype=x.dtype, device=x.device)
    mu = torch.full((b,), 1e-3, dtype=x.dtype, device=x.device)
    active = torch.ones(b, dtype=torch.bool, device=x.device)
    with torch.no_grad():
        r = residuals(x, *data)
        for _ in range(iters):
            idx = torch.nonzero(active).flatten()
            if idx.numel() == 0:
                break
            n = idx.numel()
            xa, ra, da = x[idx], r[idx], tuple(d[idx] for d in data)
            rep = tuple(d.repeat_interleave(p, dim=0) for d in da)
            rp = residuals((xa[:, None, :] + step * eye).reshape(n * p, p), *rep).reshape(n, p, -1)
            j = ((rp - ra[:, None]) / step).transpose(1, 2)  # (n, R, P)
            jtj = j.transpose(1, 2) @ j
            g = (j.transpose(1, 2) @ ra[..., None])[..., 0]
            diag = torch.diagonal(jtj, dim1=1, dim2=2).clamp_min(1e-9)
            a = jtj + mu[idx, None, None] * torch.diag_embed(diag) + 1e-12 * eye
            cand = xa + torch.linalg.solve(a, -g)
            r_cand = residuals(cand, *da)
            cost, new = ra.pow(2).sum(1), r_cand.pow(2).sum(1)
            better = new < cost
            x[idx] = torch.where(better[:, None], cand, xa)
            r[idx] = torch.where(better[:, None], r_cand, ra)
            mu[idx] = torch.where(better, mu[idx] * 0.3, mu[idx] * 10.0).clamp(1e-9, 1e9)
            done = (better & (cost - new <= rtol * cost)) | (mu[idx] >= 1e9)
            active[idx[done]] = False
    return x


def _polish_with_prior(residuals, x: torch.Tensor, data: tuple[torch.Tensor, ...], prior: torch.nn.Module,
                       weight: float, iters: int) -> torch.Tensor:
    """A few L-BFGS iterations of the Levenberg-Marquardt objective plus ``weight * prior.penalty`` (a
    learned negative log-density, not a sum of squares, so Levenberg-Marquardt cannot take it), from the
    Levenberg-Marquardt optimum. x (B, P) float64."""
    data = tuple(d.double() for d in data)
    x = x.double().detach().clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], lr=1.0, max_iter=iters, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        e = residuals(x, *data).pow(2).sum() + weight * prior.penalty(x[:, 6:75]).sum()
        e.backward()
        return e

    with torch.enable_grad():
        opt.step(closure)
    return x.detach()


# For the closed-form start only: a missing limb landmark guessed from its neighbours, so that the start
# still points the limb roughly the right way (a wrist from the finger tips, an elbow halfway along the
# arm, ...). In order: a later rule may use what an earlier one filled.
_IMPUTE: list[tuple[int, list[int], str]] = [
    (15, [17, 19, 21], "mean"), (16, [18, 20, 22], "mean"), (27, [29, 31], "mean"), (28, [30, 32], "mean"),
    (13, [11, 15], "mid"), (14, [12, 16], "mid"), (25, [23, 27], "mid"), (26, [24, 28], "mid"),
]  # fmt: skip


def _impute_for_start(target: torch.Tensor, conf: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 33, 3), (B, 33) -> the same with missing limb landmarks guessed (confidence 0.5) where possible."""
    target, conf = target.clone(), conf.clone()
    for k, src, how in _IMPUTE:
        w = (conf[:, src] > 0).to(target.dtype)
        have = w.sum(1) >= (len(src) if how == "mid" else 1)
        guess = (w[..., None] * target[:, src]).sum(1) / w.sum(1).clamp_min(1.0)[:, None]
        fill = (conf[:, k] <= 0) & have
        target[:, k] = torch.where(fill[:, None], guess, target[:, k])
        conf[:, k] = torch.where(fill, torch.full_like(conf[:, k], 0.5), conf[:, k])
    return target, conf


def _check_inputs(landmarks: torch.Tensor, confidence: torch.Tensor) -> None:
    if not torch.is_tensor(landmarks) or landmarks.ndim != 3 or landmarks.shape[1:] != (33, 3):
        raise NeuralfitError(f"landmarks have shape {tuple(getattr(landmarks, 'shape', ()))}; expected (B, 33, 3) metres")
    b = landmarks.shape[0]
    if not torch.is_tensor(confidence) or tuple(confidence.shape) != (b, 33):
        raise NeuralfitError(f"confidence has shape {tuple(getattr(confidence, 'shape', ()))}; expected ({b}, 33)")
    if not bool(torch.isfinite(confidence).all()) or bool((confidence < 0).any()):
        raise NeuralfitError("landmark confidence must be finite and >= 0")


def fit_world_landmarks(body: torch.nn.Module, landmarks: torch.Tensor, confidence: torch.Tensor,
                        prior: torch.nn.Module | None = None, config: IKConfig | None = None) -> StartParams:
    """Fit rotation, pose and shape so that the body's BlazePose-33 keypoints match metric 3D landmarks.

    Args:
        body: a :class:`neuralfit.body.BodyModel`.
        landmarks: (B, 33, 3) metres in mediapipe's world frame (origin at the hip centre, x right, y down,
            z away from the camera), e.g. ``Detection.world_landmarks[:, :3]``.
        confidence: (B, 33) in [0, 1]; 0 (or below ``config.min_confidence``) = missing, also for NaN
            landmarks. Keypoints the body does not define are ignored.
        prior: a :class:`neuralfit.priors.PosePrior` (``load_pose_prior("default")``), added in the final
            L-BFGS polish; or None. The L2 pull toward the rest pose (``pose_l2_weight``) is always on in
            the Levenberg-Marquardt stage, where it settles the joints the landmarks do not observe.
        config: :class:`IKConfig`.

    Returns:
        :class:`StartParams` with ``global_orient`` in the landmarks' (camera) axes, ``body_pose``,
        ``betas`` and ``transl``: the body posed with these and ``transl`` puts its keypoints on the
        landmarks, i.e. the landmarks' hip centre (not the pelvis joint) is at the origin. Samples with
        fewer than three usable landmarks get the rest pose facing the camera.

    Runs on the landmarks' device; the body must be on that device too. Batched: every sample is its own
    problem (own Levenberg-Marquardt damping and step acceptance). The solution is translation-free in
    the sense that ``transl`` only undoes the body's pelvis offset from the landmarks' hip centre:
    :func:`neuralfit.init.place_in_camera` computes the camera translation.
    """
    cfg = config or IKConfig()
    _check_inputs(landmarks, confidence)
    dev, dtype = landmarks.device, torch.float32
    poser = KeypointPoser(body, dtype)
    b = landmarks.shape[0]
    finite = torch.isfinite(landmarks).all(-1)
    target = torch.where(finite[..., None], landmarks, torch.zeros_like(landmarks)).to(dtype)
    conf = torch.where(finite & (confidence >= cfg.min_confidence), confidence, torch.zeros_like(confidence))
    conf = (conf * poser.valid.to(dev)).to(dtype)

    pos_w = torch.ones(33, dtype=dtype, device=dev)
    pos_w[[_LHIP, _RHIP]] = cfg.hip_position_scale
    pos_w = conf * pos_w * (cfg.position_weight / cfg.position_sigma**2)
    bones = _bone_matrix(dev, dtype)
    involved = bones != 0
    # A direction is as trustworthy as its least confident end.
    bone_conf = torch.where(involved[None], conf[:, None, :], torch.full_like(conf[:, None, :], 2.0)).amin(-1)
    bone_conf = bone_conf.clamp(max=1.0) * (cfg.direction_weight / cfg.direction_sigma**2)
    dir_target = torch.nn.functional.normalize(torch.einsum("nj,bjc->bnc", bones, target), dim=-1, eps=1e-9)

    # Rigid start: rotate the rest pose's torso onto the landmarks' torso (Kabsch), pose and shape zero.
    rest = poser(torch.zeros(1, poser.num_betas, dtype=dtype, device=dev),
                 torch.eye(3, dtype=dtype, device=dev).expand(1, 24, 3, 3)).expand(b, -1, -1)
    torso = [_LSH, _RSH, _LHIP, _RHIP, _LEAR, _REAR, _NOSE]
    r0, t0 = weighted_kabsch(rest[:, torso], target[:, torso], conf[:, torso])
    usable = (conf > 0).sum(1) >= 3
    facing = torch.diag(torch.tensor([1.0, -1.0, -1.0], dtype=dtype, device=dev))  # rest pose facing the camera
    torso_ok = ((conf[:, torso] > 0).sum(1) >= 3) & usable
    r0 = torch.where(torso_ok[:, None, None], r0, facing.expand(b, 3, 3)).detach()
    t0 = torch.where(torso_ok[:, None], t0, torch.zeros_like(t0)).detach()

    from pytorch3d.transforms import matrix_to_axis_angle

    with torch.no_grad():
        start = matrix_to_axis_angle(analytic_start(poser, *_impute_for_start(target, conf), r0, t0)).reshape(b, 69)
    x = torch.cat([torch.zeros(b, 3, dtype=dtype, device=dev), t0, start,
                   torch.zeros(b, 10, dtype=dtype, device=dev)], dim=1)
    sw_pos, sw_dir = pos_w.sqrt(), bone_conf.sqrt()
    poser64, bones64 = KeypointPoser(body, torch.float64), bones.double()
    l2 = torch.full((23, 3), cfg.pose_l2_weight, dtype=torch.float64, device=dev)
    l2[[9, 10, 21, 22]] = cfg.end_l2_weight  # body_pose rows of the toes (10, 11) and hands (22, 23)
    l2 = l2.reshape(69).sqrt()
    sh = (0.5 * cfg.shape_prior_weight) ** 0.5
    limits = prior.limits if prior is not None and hasattr(prior, "limits") else JointLimitPrior()
    lo = limits.lo.to(device=dev, dtype=torch.float64).reshape(69)
    hi = limits.hi.to(device=dev, dtype=torch.float64).reshape(69)
    sl = cfg.limit_weight**0.5

    def residuals(xs: torch.Tensor, r0s: torch.Tensor, tgt: torch.Tensor, swp: torch.Tensor, swd: torch.Tensor,
                  dtg: torch.Tensor) -> torch.Tensor:
        # Rows x (N, 85) = root delta, translation, body pose, betas -> (N, R) weighted residuals.
        n = xs.shape[0]
        rot = batch_rodrigues(torch.cat([xs[:, :3], xs[:, 6:75]], dim=1).reshape(-1, 3)).reshape(n, 24, 3, 3)
        rot = torch.cat([(r0s @ rot[:, 0])[:, None], rot[:, 1:]], dim=1)
        kp = poser64(xs[:, 75:], rot) + xs[:, None, 3:6]
        d = torch.nn.functional.normalize(torch.einsum("mj,njc->nmc", bones64, kp), dim=-1, eps=1e-12)
        return torch.cat([(swp[..., None] * (kp - tgt)).reshape(n, -1), (swd[..., None] * (d - dtg)).reshape(n, -1),
                          l2 * xs[:, 6:75], sh * xs[:, 75:],
                          sl * (torch.relu(lo - xs[:, 6:75]) + torch.relu(xs[:, 6:75] - hi))], dim=1)

    data = (r0, target, sw_pos, sw_dir, dir_target)
    x = _levenberg_marquardt(residuals, x, data, cfg.lm_iters)
    if prior is not None and cfg.polish_iters > 0 and cfg.pose_prior_weight > 0:
        x = _polish_with_prior(residuals, x, data, prior, cfg.pose_prior_weight, cfg.polish_iters)
    x = x.to(dtype)
    delta, transl, body_pose, betas = x[:, :3], x[:, 3:6], x[:, 6:75], x[:, 75:]

    with torch.no_grad():
        root = r0 @ batch_rodrigues(delta)
        go = matrix_to_axis_angle(root)
        out_pose, out_betas, out_t = body_pose.detach().clone(), betas.detach().clone(), transl.detach().clone()
        # A sample with nothing to fit keeps the rest pose facing the camera.
        go = torch.where(usable[:, None], go, matrix_to_axis_angle(facing).expand(b, 3))
        out_pose[~usable], out_betas[~usable], out_t[~usable] = 0.0, 0.0, 0.0
    return StartParams(go, out_pose, out_betas, out_t)


def world_landmark_tensors(world_landmarks: list, device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """Stack ``Detection.world_landmarks`` arrays (each (33, 4): x, y, z, confidence) into the
    ``landmarks`` (B, 33, 3) and ``confidence`` (B, 33) that :func:`fit_world_landmarks` takes."""
    import numpy as np

    arr = [np.asarray(w, dtype=np.float32) for w in world_landmarks]
    if not arr or any(a.shape != (33, 4) for a in arr):
        raise NeuralfitError(f"world landmarks must be a non-empty list of (33, 4) arrays, got {[a.shape for a in arr]}")
    t = torch.as_tensor(np.stack(arr), device=device)
    return t[..., :3].contiguous(), t[..., 3].clamp(0.0, 1.0).nan_to_num(0.0)
