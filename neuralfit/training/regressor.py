"""Training the keypoint regressor (``neuralfit train regressor``): SMPL from 2D keypoints, no images.

A network with ``regressor_input="keypoints"`` initialises the fit by lifting the heatmap head's
2D keypoints to SMPL with HMR's iterative regressor. That regressor needs no pixels to train:

1. **Synthetic keypoints** (:func:`sample_keypoint_set`): poses and shapes from the same sources as
   the synthetic images (mocap + pose prior, shape prior), the same camera distribution (yaw uniform,
   elevation/roll jitter, the person filling 60-90 % of the crop), projected through the crop camera.
   Thousands per second on a CPU, so the regressor sees far more views than the image set holds.
2. **Corruption** (:func:`corrupt_keypoints`), the detector's failure modes: pixel noise, confidence
   spread, a random region of occluded keypoints (dropped, or kept with low confidence and large
   error), face keypoints hidden when the head looks away, random outliers and drops, and the
   COCO-only pattern of a detector that has no neck/pelvis/head-top.
3. Optionally **the network's own predictions** on a labelled image set (:func:`predicted_keypoint_set`),
   mixed into every batch, so the regressor also learns the real error distribution of the heatmaps.

Losses are the network's regressor losses (:func:`regressor_terms`, shared with ``train network``).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.render.camera import default_focal
from neuralfit.training import losses as L
from neuralfit.training.regressor_data import PhotoCameraConfig, detector_keypoints, sample_photo_keypoint_set

#: spin24 keypoints a COCO-style detector does not predict (neck, head top, pelvis, thorax, spine, jaw, head).
NOT_IN_COCO = ("neck", "head_top", "pelvis", "thorax", "spine", "jaw", "head")
#: Face keypoints hidden when the face looks away from the camera, and the head joint they are compared with.
FACE = ("nose", "left_eye", "right_eye", "left_ear", "right_ear")


# -- losses shared with the network's training loop --------------------------------------------------

def regressor_terms(body: Any, out: dict[str, torch.Tensor], gt_rotmat: torch.Tensor, has_smpl: torch.Tensor,
                    res: int, betas: torch.Tensor | None = None, joints3d: torch.Tensor | None = None,
                    keypoints: torch.Tensor | None = None, focal: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """SPIN-style losses of a regressor output ``out`` (``rotmat`` (B, 24, 3, 3), ``betas``, ``cam`` (B, 3)).

    Args:
        gt_rotmat: (B, 24, 3, 3) ground-truth rotations; ``has_smpl`` (B,) bool marks valid ones.
        betas: (B, >= nb) ground-truth shape, optional.
        joints3d: (B, 24, 4) spin24 joints + confidence (any frame; compared root-relative), optional.
        keypoints: (B, 24, 3) spin24 crop pixels + confidence, optional; the prediction is projected with
            the convention camera (focal ``5000 R / 224``, transl ``[tx, ty, 2 f / (R s)]``).
        focal: (B,) per-sample crop focal in pixels for that projection (photo crops), optional.

    Returns the terms ``pose``, ``betas``, ``joints3d``, ``keypoints2d``, ``cam`` (zero with a graph when
    unsupervised).
    """
    from neuralfit.training.batch import pose_body

    terms: dict[str, torch.Tensor] = {"pose": L.pose_loss(out["rotmat"], gt_rotmat, has_smpl)}
    terms["betas"] = L.betas_loss(out["betas"], betas, has_smpl) if betas is not None else terms["pose"] * 0
    pred_body, _ = pose_body(body, out["betas"], out["rotmat"])
    # Datasets annotate 2D/3D joints in SPIN's 24-joint order, whatever the heatmap head predicts.
    j3d = body.keypoints(pred_body, "spin24")[..., :3]  # (B, 24, 3)
    terms["joints3d"] = L.joints3d_loss(j3d, joints3d) if joints3d is not None else j3d.sum() * 0.0
    f = default_focal(res) if focal is None else focal.reshape(-1, 1, 1).to(j3d)
    cam = out["cam"]
    fz = f if focal is None else f[:, 0, 0]
    transl = torch.stack([cam[:, 1], cam[:, 2], 2.0 * fz / (res * cam[:, 0].clamp(min=1e-2))], dim=-1)
    pc = j3d + transl[:, None]
    uv = f * pc[..., :2] / pc[..., 2:].clamp(min=1e-3) + res / 2.0
    terms["keypoints2d"] = L.keypoints2d_loss(uv, keypoints, res) if keypoints is not None else uv.sum() * 0.0
    terms["cam"] = L.camera_scale_loss(cam)
    return terms


# -- data ----------------------------------------------------------------------------------------------

@dataclass
class RegressorConfig:
    """Settings of ``neuralfit train regressor``; camera and placement defaults match ``SynthConfig``.

    Attributes:
        samples: synthetic keypoint sets drawn once (each batch re-corrupts them).
        steps / batch_size / lr: Adam steps on batches of ``batch_size``.
        pose_source: ``sample_poses`` source. elevation_std_deg / roll_std_deg / fill / centre_jitter /
            p_truncation: camera and placement, as in the synthetic images.
        noise_px: range of the per-sample keypoint noise std at confidence 1 (crop pixels at 224 px, scaled
            with res); a keypoint of confidence c gets std noise / c. Measured on the default network's heatmaps
            (test-occluded): median error 4 px at confidence > 0.7, 10 px at 0.3-0.5, 19 px at 0.1-0.3.
        confidence_correlation: share of each keypoint's confidence drawn once per sample (0 = every
            keypoint's independently, uniform in [0.15, 1]). Independent draws never show the all-confident
            keypoints of a clean view that mediapipe gives (median visibility 0.99 on the real benchmark), and the
            lifter trained on them narrowed the shoulders of such inputs by a quarter (docs/network.md).
        p_region: chance of an occluded region per sample; region_size: its half-size / box size.
        p_drop / p_outlier: per keypoint chance of a dropped keypoint / a confident one in a random place.
        p_coco_only: chance that a sample has only the COCO keypoints.
        predicted_fraction: share of each batch taken from network predictions (when given).
        w_*: loss weights (``TrainConfig``'s, with betas raised from SPIN's 0.001 to 0.1: at 0.01 the
            regressor traded shape for joint fit and its betas MSE rose from 1.0 (the mean) to 1.36).
    """

    samples: int = 60_000
    steps: int = 6_000
    batch_size: int = 256
    lr: float = 2e-4
    pose_source: str = "mixed"
    elevation_std_deg: float = 15.0
    roll_std_deg: float = 5.0
    fill: tuple[float, float] = (0.6, 0.9)
    centre_jitter: float = 0.05
    p_truncation: float = 0.1
    noise_px: tuple[float, float] = (2.0, 4.5)
    confidence_correlation: float = 0.0
    p_region: float = 0.5
    region_size: tuple[float, float] = (0.15, 0.4)
    p_drop: float = 0.08
    p_outlier: float = 0.04
    p_coco_only: float = 0.2
    predicted_fraction: float = 0.5
    w_pose: float = 1.0
    w_betas: float = 0.1
    w_joints3d: float = 5.0
    w_keypoints2d: float = 5.0
    w_cam: float = 1.0
    seed: int = 0
    #: "photo": CMU/DeepMimic training clips through photo cameras (:mod:`.regressor_data`), detector
    #: joint sets, hip widening, swaps; "crop": the image engine's crop camera (the first default's data).
    camera: str = "photo"
    #: Pose-set files for "photo" (``--poses``; see ``neuralfit.priors.mocap.load_mocap``); empty = the
    #: shipped DeepMimic + CMU sets. Clips are split as the prior's are (``holdout_fraction``).
    poses: tuple[str, ...] = ()
    holdout_fraction: float = 0.1
    #: With "photo": share of each batch drawn from the crop-camera data instead (the synthetic images'
    #: camera and the network's own 24 heatmap joints), so the image path does not regress.
    crop_fraction: float = 0.3
    photo: PhotoCameraConfig = field(default_factory=PhotoCameraConfig)


def _rot(axis: int, angle: torch.Tensor) -> torch.Tensor:
    """(N,) angles -> (N, 3, 3) rotations about coordinate axis 0/1/2."""
    c, s = angle.cos(), angle.sin()
    o, z = torch.ones_like(c), torch.zeros_like(c)
    if axis == 0:
        m = [o, z, z, z, c, -s, z, s, c]
    elif axis == 1:
        m = [c, z, s, z, o, z, -s, z, c]
    else:
        m = [c, -s, z, s, c, z, z, z, o]
    return torch.stack(m, -1).reshape(-1, 3, 3)


def sample_keypoint_set(body: Any, n: int, res: int, config: RegressorConfig | None = None,
                        chunk: int = 2000, progress: bool = False) -> dict[str, torch.Tensor]:
    """Draw ``n`` posed, placed and projected bodies (no rendering).

    Returns float32 tensors: ``rotmat`` (n, 24, 3, 3), ``betas`` (n, 10), ``joints3d`` (n, 24, 4) camera
    frame + confidence 1, ``keypoints`` (n, 24, 3) crop pixels + in-crop flag, ``face_visible`` (n, 5) for
    :data:`FACE`.
    """
    from tqdm import tqdm

    from neuralfit.nets.rotations import axis_angle_to_matrix
    from neuralfit.priors import ShapePrior, load_mocap, load_pose_prior, sample_poses

    cfg = config or RegressorConfig()
    gen = torch.Generator().manual_seed(cfg.seed)
    prior, mocap, shape_prior = load_pose_prior("default"), load_mocap(), ShapePrior()
    names = list(body.keypoint_sets["spin24"].names)
    face_idx = [names.index(k) for k in FACE]
    head_idx = names.index("head")
    f = default_focal(res)
    outs: dict[str, list[torch.Tensor]] = {k: [] for k in ("rotmat", "betas", "joints3d", "keypoints", "face_visible")}
    for start in tqdm(range(0, n, chunk), desc="keypoint sets", disable=not progress):
        m = min(chunk, n - start)
        seed = int(torch.randint(0, 2**31 - 1, (), generator=gen))
        pose = sample_poses(m, seed=seed, source=cfg.pose_source, prior=prior, mocap=mocap).reshape(m, 23, 3)
        betas = shape_prior.sample(m, seed=seed + 1).float()[:, :10]
        u = torch.rand(m, 8, generator=gen)
        yaw = (u[:, 0] * 2 - 1) * math.pi
        elev = (torch.randn(m, generator=gen) * math.radians(cfg.elevation_std_deg)).clamp(-math.pi / 4, math.pi / 4)
        roll = torch.randn(m, generator=gen) * math.radians(cfg.roll_std_deg)
        # Same chain as the image engine: camera roll/elevation, then SMPL's Y-up to the camera's y-down, then yaw.
        r0 = _rot(2, roll) @ _rot(0, elev) @ _rot(0, torch.full((m,), math.pi)) @ _rot(1, yaw)
        rot = torch.cat([r0[:, None], axis_angle_to_matrix(pose)], dim=1)  # (m, 24, 3, 3)
        with torch.no_grad():
            out = body(betas=betas, global_orient=rot[:, :1], body_pose=rot[:, 1:], full=False, lowres=True)
            kp = body.keypoints(out, "spin24")[..., :3]
        verts = out.lowres_vertices
        lo, hi = verts[..., :2].amin(1), verts[..., :2].amax(1)
        size = (hi - lo).amax(-1)
        fill = cfg.fill[0] + (cfg.fill[1] - cfg.fill[0]) * u[:, 1]
        tz = f * size / (res * fill)
        shift = torch.randn(m, 2, generator=gen) * cfg.centre_jitter * size[:, None]
        trunc = u[:, 2] < cfg.p_truncation
        ang = u[:, 3] * 2 * math.pi
        amount = (0.2 + 0.25 * u[:, 4]) * res * tz / f
        shift = shift + trunc[:, None] * torch.stack([ang.cos(), ang.sin()], -1) * amount[:, None]
        transl = torch.cat([-(lo + hi) / 2 + shift, tz[:, None]], dim=-1)
        pc = kp + transl[:, None]
        uv = f * pc[..., :2] / pc[..., 2:] + res / 2
        inside = ((uv >= 0) & (uv < res)).all(-1).float()
        face_vis = pc[:, face_idx, 2] < pc[:, head_idx : head_idx + 1, 2] + 0.02
        outs["rotmat"].append(rot)
        outs["betas"].append(betas)
        outs["joints3d"].append(torch.cat([pc, torch.ones_like(pc[..., :1])], -1))
        outs["keypoints"].append(torch.cat([uv, inside[..., None]], -1))
        outs["face_visible"].append(face_vis)
    return {k: torch.cat(v).float() for k, v in outs.items()}


def corrupt_keypoints(kp: torch.Tensor, names: list[str], res: int, config: RegressorConfig,
                      gen: torch.Generator, face_visible: torch.Tensor | None = None) -> torch.Tensor:
    """Detector-like (B, J, 3) keypoints from exact ones (crop pixels + in-crop flag); see the module doc."""
    cfg = config
    b, j, _ = kp.shape
    scale = res / 224.0
    uv, ok = kp[..., :2].clone(), kp[..., 2] > 0
    u = torch.rand(b, j, generator=gen)
    if cfg.confidence_correlation > 0:
        # A real detector is sure of a clean view everywhere at once: share a per-sample level.
        u = (1 - cfg.confidence_correlation) * u + cfg.confidence_correlation * torch.rand(b, 1, generator=gen)
    conf = 0.15 + 0.85 * u
    sigma = (cfg.noise_px[0] + (cfg.noise_px[1] - cfg.noise_px[0]) * torch.rand(b, 1, 1, generator=gen)) * scale
    uv = uv + torch.randn(b, j, 2, generator=gen) * sigma / conf[..., None]
    hidden = torch.zeros(b, j, dtype=torch.bool)
    if face_visible is not None:
        face = torch.tensor([names.index(k) for k in FACE])
        hidden[:, face] |= ~face_visible.bool()
    # An occluded region: an axis-aligned box around a random keypoint.
    lo, hi = kp[..., :2].amin(1), kp[..., :2].amax(1)
    size = (hi - lo).amax(-1, keepdim=True)
    centre = kp[torch.arange(b), torch.randint(0, j, (b,), generator=gen), :2]
    centre = centre + torch.randn(b, 2, generator=gen) * 0.1 * size
    half = (cfg.region_size[0] + (cfg.region_size[1] - cfg.region_size[0]) * torch.rand(b, 2, generator=gen)) * size
    in_region = ((kp[..., :2] - centre[:, None]).abs() < half[:, None]).all(-1)
    hidden |= in_region & (torch.rand(b, 1, generator=gen) < cfg.p_region)
    # Hidden keypoints: half dropped, half guessed (low confidence, large error), as heatmaps do.
    guessed = hidden & (torch.rand(b, j, generator=gen) < 0.5)
    uv = torch.where(guessed[..., None], uv + torch.randn(b, j, 2, generator=gen) * 20 * scale, uv)
    conf = torch.where(guessed, 0.3 * torch.rand(b, j, generator=gen), conf)
    dropped = (hidden & ~guessed) | (torch.rand(b, j, generator=gen) < cfg.p_drop) | ~ok
    outlier = (torch.rand(b, j, generator=gen) < cfg.p_outlier) & ~dropped
    uv = torch.where(outlier[..., None], torch.rand(b, j, 2, generator=gen) * res, uv)
    conf = torch.where(outlier, 0.1 + 0.4 * torch.rand(b, j, generator=gen), conf)
    coco_only = torch.rand(b, 1, generator=gen) < cfg.p_coco_only
    missing = torch.zeros(j, dtype=torch.bool)
    missing[[names.index(k) for k in NOT_IN_COCO if k in names]] = True
    dropped |= coco_only & missing
    conf = torch.where(dropped, torch.zeros_like(conf), conf)
    uv = torch.where(dropped[..., None], torch.zeros_like(uv), uv)
    return torch.cat([uv, conf[..., None]], -1)


def predicted_keypoint_set(net: Any, folder: str | os.PathLike, max_images: int | None = None,
                           batch_size: int = 32, progress: bool = True) -> dict[str, torch.Tensor]:
    """Run ``net`` on a ``neuralfit synth`` folder; return its decoded keypoints with the ground truth.

    Returns the ground truth as :func:`sample_keypoint_set` does (``rotmat``, ``betas``, ``joints3d``,
    ``keypoints``; no ``face_visible``) plus ``transl`` (n, 3) and ``predicted`` (n, J, 3), the network's
    decoded heatmap keypoints, which :func:`train_regressor` uses as they are (no corruption).
    """
    import cv2
    from tqdm import tqdm

    from neuralfit.nets.model import predict
    from neuralfit.nets.rotations import axis_angle_to_matrix

    folder = Path(folder)
    ann_path = folder / "annotations.npz"
    if not ann_path.is_file():
        raise NeuralfitError(f"{folder} has no annotations.npz (expected a `neuralfit synth` folder)")
    ann = np.load(ann_path)
    n = len(ann["imgname"]) if max_images is None else min(max_images, len(ann["imgname"]))
    res = net.config.input_res
    preds = []
    for start in tqdm(range(0, n, batch_size), desc="network keypoints", disable=not progress):
        imgs = []
        for name in ann["imgname"][start:start + batch_size]:
            img = cv2.imread(str(folder / str(name)), cv2.IMREAD_COLOR)
            if img is None or img.shape[:2] != (res, res):
                raise NeuralfitError(f"{folder / str(name)}: unreadable or not {res}x{res}")
            imgs.append(img[..., ::-1])
        preds.append(predict(net, np.stack(imgs))["keypoints"].cpu())
    pose = torch.as_tensor(ann["pose"][:n], dtype=torch.float32).reshape(n, 24, 3)
    transl = torch.as_tensor(ann["transl"][:n], dtype=torch.float32)
    s3 = torch.as_tensor(ann["S"][:n], dtype=torch.float32)
    return {"rotmat": axis_angle_to_matrix(pose), "betas": torch.as_tensor(ann["shape"][:n], dtype=torch.float32),
            "joints3d": s3, "keypoints": torch.as_tensor(ann["part"][:n], dtype=torch.float32),
            "transl": transl, "predicted": torch.cat(preds)}


# -- training ------------------------------------------------------------------------------------------

def train_regressor(net: Any, body: Any, config: RegressorConfig | None = None,
                    predicted: dict[str, torch.Tensor] | None = None, progress: bool = True,
                    log: list[dict[str, float]] | None = None) -> list[dict[str, float]]:
    """Train ``net.regressor`` (a ``regressor_input="keypoints"`` network) in place; returns the loss history.

    Only the regressor's weights change; the rest of the network is untouched. ``predicted`` is
    :func:`predicted_keypoint_set`'s output (optional).
    """
    from tqdm import tqdm

    from neuralfit.nets.model import keypoint_vector
    from neuralfit.nets.rotations import mean_rotation

    cfg = config or RegressorConfig()
    if net.config.regressor_input != "keypoints":
        raise NeuralfitError("train regressor needs a network whose regressor reads keypoints "
                             "(NetConfig.regressor_input='keypoints'); this one reads image features")
    if net.config.joint_set != "spin24":
        raise NeuralfitError(f"train regressor supports the spin24 joint set, not {net.config.joint_set!r}")
    res = net.config.input_res
    names = list(body.keypoint_sets["spin24"].names)
    photo = cfg.camera == "photo"
    if photo:
        train_poses, _ = lifter_pose_sets(cfg)
        data = sample_photo_keypoint_set(body, train_poses, cfg.samples, res, cfg.photo, seed=cfg.seed)
        n_crop_samples = int(round(cfg.samples * cfg.crop_fraction))
        crop_data = sample_keypoint_set(body, n_crop_samples, res, cfg) if n_crop_samples else None
    elif cfg.camera == "crop":
        data = sample_keypoint_set(body, cfg.samples, res, cfg, progress=progress)
    else:
        raise NeuralfitError(f"regressor camera {cfg.camera!r} unknown; expected 'photo' or 'crop'")
    # The regressor starts from the mean of the data it learns (HMR's mean-parameter initialisation).
    net.regressor.set_init(mean_rotation(data["rotmat"]), data["betas"].mean(0)[: net.config.num_betas])
    gen = torch.Generator().manual_seed(cfg.seed + 1)
    # Detector joint sets replace the "COCO only" pattern of the crop-camera data.
    photo_corruption = replace(cfg, p_coco_only=0.0)
    opt = torch.optim.Adam(net.regressor.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, cfg.steps, eta_min=cfg.lr * 0.05)
    w = {"pose": cfg.w_pose, "betas": cfg.w_betas, "joints3d": cfg.w_joints3d, "keypoints2d": cfg.w_keypoints2d,
         "cam": cfg.w_cam}
    n_pred = 0 if predicted is None else int(round(cfg.batch_size * cfg.predicted_fraction))
    n_crop = int(round((cfg.batch_size - n_pred) * cfg.crop_fraction)) if photo and crop_data is not None else 0
    history = log if log is not None else []
    net.regressor.train()
    bar = tqdm(range(cfg.steps), desc="train regressor", disable=not progress, dynamic_ncols=True)
    t0 = time.time()
    for step in bar:
        idx = torch.randint(0, len(data["rotmat"]), (cfg.batch_size - n_pred - n_crop,), generator=gen)
        batch = {k: v[idx] for k, v in data.items()}
        if photo:
            inp = detector_keypoints(data, idx, names, res, photo_corruption, cfg.photo, gen)
        else:
            inp = corrupt_keypoints(batch["keypoints"], names, res, cfg, gen, batch["face_visible"])
        focal = batch.get("focal")
        if n_crop:
            ci = torch.randint(0, len(crop_data["rotmat"]), (n_crop,), generator=gen)
            cb = {k: v[ci] for k, v in crop_data.items()}
            for k in ("rotmat", "betas", "joints3d", "keypoints"):
                batch[k] = torch.cat([batch[k], cb[k]])
            inp = torch.cat([inp, corrupt_keypoints(cb["keypoints"], names, res, cfg, gen, cb["face_visible"])])
            focal = torch.cat([focal, torch.full((n_crop,), default_focal(res))])
        if n_pred:
            pi = torch.randint(0, len(predicted["rotmat"]), (n_pred,), generator=gen)
            for k in ("rotmat", "betas", "joints3d", "keypoints"):
                batch[k] = torch.cat([batch[k], predicted[k][pi]])
            inp = torch.cat([inp, predicted["predicted"][pi]])
            if focal is not None:
                focal = torch.cat([focal, torch.full((n_pred,), default_focal(res))])
        out = net.regressor(keypoint_vector(inp, res))
        has = torch.ones(len(inp), dtype=torch.bool)
        terms = regressor_terms(body, out, batch["rotmat"], has, res, batch["betas"], batch["joints3d"],
                                batch["keypoints"], focal=focal)
        loss = sum(w[k] * v for k, v in terms.items())
        if not torch.isfinite(loss):
            raise NeuralfitError(f"regressor loss became {float(loss)}; lower --lr")
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
        rec = {k: float(v.detach()) for k, v in terms.items()}
        rec["total"] = float(loss.detach())
        rec["step"] = step
        history.append(rec)
        if step % 20 == 0:
            bar.set_postfix({k: f"{rec[k]:.3g}" for k in ("total", "pose", "joints3d", "keypoints2d")})
    net.regressor.eval()
    net.regressor_training = {"config": asdict(cfg), "seconds": round(time.time() - t0, 1),
                              "predicted_samples": 0 if predicted is None else len(predicted["rotmat"]),
                              "final": history[-1] if history else {}}
    return history


def lifter_pose_sets(cfg: RegressorConfig) -> tuple[Any, Any]:
    """(training, held-out) pose sets, split by whole clips exactly as ``neuralfit train prior`` splits them."""
    from neuralfit.priors.train import TrainPriorConfig, training_sets

    pcfg = TrainPriorConfig(data=tuple(cfg.poses), holdout_fraction=cfg.holdout_fraction)
    if cfg.poses:
        pcfg = replace(pcfg, holdout_clips=())
    data, held = training_sets(pcfg)
    return data.select(list(held), keep=False), data.select(list(held))


def heldout_keypoint_set(body: Any, res: int, cfg: RegressorConfig | None = None, n: int = 4000,
                         seed: int = 9001) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """A fixed validation set on the held-out clips: (photo keypoint set, detector keypoints (n, 24, 3))."""
    cfg = cfg or RegressorConfig()
    _, held = lifter_pose_sets(cfg)
    data = sample_photo_keypoint_set(body, held, n, res, cfg.photo, seed=seed)
    gen = torch.Generator().manual_seed(seed + 1)
    names = list(body.keypoint_sets["spin24"].names)
    inp = detector_keypoints(data, torch.arange(n), names, res, replace(cfg, p_coco_only=0.0), cfg.photo, gen)
    return data, inp


@torch.no_grad()
def lifter_pa_mpjpe(net: Any, body: Any, data: dict[str, torch.Tensor], inputs: torch.Tensor,
                    batch_size: int = 500) -> torch.Tensor:
    """(n,) PA-MPJPE in mm on the 14 LSP joints (spin24's first 14) of ``net``'s lifter on ``inputs``."""
    from neuralfit.nets.model import regress
    from neuralfit.nets.rotations import axis_angle_to_matrix
    from neuralfit.training.batch import pose_body
    from neuralfit.training.metrics import pa_mpjpe

    errs = []
    for s in range(0, len(inputs), batch_size):
        out = regress(net, inputs[s : s + batch_size])
        rot = axis_angle_to_matrix(torch.cat([out["global_orient"], out["body_pose"]], 1).reshape(-1, 24, 3).cpu())
        pred, _ = pose_body(body, out["betas"].cpu()[:, :10].float(), rot)
        j = body.keypoints(pred, "spin24")[:, :14, :3]
        errs.append(pa_mpjpe(j * 1000, data["joints3d"][s : s + batch_size, :14, :3] * 1000))
    return torch.cat(errs)


def convert_to_keypoint_regressor(net: Any) -> Any:
    """A copy of ``net`` whose regressor reads keypoints (fresh regressor weights, everything else shared)."""
    from neuralfit.nets.model import MultiTaskNet, NetConfig

    cfg = NetConfig.from_dict(net.config.to_dict())
    cfg.regressor_input = "keypoints"
    cfg.pretrained = False
    cfg.backbone_weights = None
    new = MultiTaskNet(cfg)
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("regressor.")}
    missing, unexpected = new.load_state_dict(state, strict=False)
    if unexpected or any(not k.startswith("regressor.") for k in missing):
        raise NeuralfitError(f"cannot convert the network: unexpected {unexpected[:3]}, missing {missing[:3]}")
    new.checkpoint_info = getattr(net, "checkpoint_info", {})
    return new.to(next(net.parameters()).device)
