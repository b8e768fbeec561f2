"""Evaluation protocols under occlusion: samples, methods, occluders (random, AdvOcc@S) and the eval loop.

A *method* is any callable ``method(images, samples) -> Prediction``:

* ``images``: uint8 (B, R, R, 3) RGB crops (possibly occluded by the protocol);
* ``samples``: the B :class:`EvalSample` s (methods may read ``focal``/``res``; only stand-ins read
  ground truth);
* the :class:`Prediction` holds LSP-14 joints in the crop's camera frame (metres), optionally their
  2D projections, vertices and SMPL parameters.

Real methods (network regressor, keypoints-only fit, neural fit) are built in
:mod:`neuralfit.eval.methods`; the protocol code only needs callables, so it is testable with
stand-ins such as :func:`oracle_method`.

AdvOcc@S (NeuralSMPL, 3DPW-AdvOcc; docs/evaluation.md): an S x S textured patch, S and the
stride (10) in 224-pixel units, slides over the crop (fully inside it); the position where the
*regressor's* MPJPE (pelvis-aligned LSP-14) is worst is kept, and every method is evaluated on that
same occluded image. All positions go through the regressor in batches.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.eval import metrics as M

OCCLUDERS = ("none", "random", "adv40", "adv80")


@dataclass
class EvalSample:
    """One test crop with its ground truth (numpy, crop pixels, camera frame).

    Attributes:
        index: row in the dataset; name: image name.
        image: (R, R, 3) uint8 RGB crop.
        joints3d: (14, 3) LSP-14 ground-truth joints, camera frame, metres.
        keypoints2d: (14, 2) LSP-14 ground-truth projections in crop pixels.
        visible: (14,) bool, joint visible in the crop (not occluded, not self-occluded where the
            dataset says so, inside the crop).
        occluder: (R, R) bool pixels covered by an occluder (dataset's and the protocol's).
        focal: focal length in crop pixels; res: crop side.
        pose (72,), betas (10,), transl (3,): ground-truth SMPL parameters when known (else None).
        annotated: (14,) bool, the 2D keypoint is labelled (PCKh counts only these); None = all.
    """

    index: int
    name: str
    image: np.ndarray
    joints3d: np.ndarray
    keypoints2d: np.ndarray
    visible: np.ndarray
    occluder: np.ndarray
    focal: float
    res: int
    pose: np.ndarray | None = None
    betas: np.ndarray | None = None
    transl: np.ndarray | None = None
    annotated: np.ndarray | None = None

    def replace_image(self, image: np.ndarray, mask: np.ndarray) -> EvalSample:
        """A copy whose image is ``image`` and whose occluder mask / visibility also count ``mask``."""
        mask = mask.astype(bool)
        px = np.clip(np.rint(self.keypoints2d).astype(int), 0, self.res - 1)
        vis = self.visible & ~mask[px[:, 1], px[:, 0]]
        return EvalSample(self.index, self.name, image, self.joints3d, self.keypoints2d, vis,
                          self.occluder | mask, self.focal, self.res, self.pose, self.betas, self.transl,
                          self.annotated)


@dataclass
class Prediction:
    """What a method returns for a batch of B crops.

    Attributes:
        joints3d: (B, 14, 3) LSP-14 joints in the crop camera frame, metres.
        keypoints2d: (B, 14, 2) their projections in crop pixels, or None (then projected here).
        vertices: (B, V, 3) mesh vertices (camera frame) or None.
        smpl: dict of (B, ...) arrays ``global_orient``, ``body_pose``, ``betas``, ``transl`` or None.
    """

    joints3d: np.ndarray
    keypoints2d: np.ndarray | None = None
    vertices: np.ndarray | None = None
    smpl: dict[str, np.ndarray] | None = None


Method = Callable[[np.ndarray, Sequence[EvalSample]], Prediction]


def project(points: np.ndarray, focal: float, res: int) -> np.ndarray:
    """(..., N, 3) camera-frame points -> (..., N, 2) crop pixels (docs/architecture.md camera)."""
    z = np.clip(points[..., 2:3], 1e-6, None)
    return points[..., :2] / z * focal + res / 2.0


# --------------------------------------------------------------------------- data
def load_samples(data: str | os.PathLike, limit: int | None = None, body=None, res: int = 224) -> list[EvalSample]:
    """Read a test set: a folder with ``annotations.npz`` (``neuralfit synth``) or a SPIN/EFT ``.npz``.

    Ground-truth 3D joints come from ``S`` (first 14 = LSP-14); without ``S``, from the SMPL
    parameters posed with ``body`` (required then). Crops are SPIN test crops (no augmentation) of
    ``res`` pixels (the network's input size).
    """
    from neuralfit.data import DatasetConfig, NpzDataset

    path = Path(data)
    npz = path / "annotations.npz" if path.is_dir() else path
    if not npz.is_file():
        raise NeuralfitError(f"--data {data}: expected a folder with annotations.npz or an .npz file")
    ds = NpzDataset(npz, config=DatasetConfig(res=res, augment=None, normalize=False))
    n = len(ds) if limit is None else min(int(limit), len(ds))
    out = []
    for i in range(n):
        item = ds[i]
        res = int(item["img"].shape[-1])
        img = (item["img"].numpy().transpose(1, 2, 0) * 255.0 + 0.5).clip(0, 255).astype(np.uint8)
        K = item.get("cam_K")
        from neuralfit.render.camera import default_focal

        focal = float(K[0, 0]) if K is not None else default_focal(res)
        has_smpl = float(item["has_smpl"]) > 0
        pose = item["pose"].numpy().astype(np.float64) if has_smpl else None
        betas = item["betas"].numpy().astype(np.float64) if has_smpl else None
        transl = item["transl"].numpy().astype(np.float64) if "transl" in item else None
        if float(item["has_joints3d"]) > 0:
            j3d = item["joints3d"].numpy()[:14, :3].astype(np.float64)
        elif has_smpl and body is not None and transl is not None:
            j3d = _pose_lsp14(body, pose[None], betas[None], transl[None])[0]
        else:
            raise NeuralfitError(f"{npz}: item {i} has neither 3D joints (S) nor SMPL + camera to evaluate against")
        kp = item["keypoints"].numpy()[:14].astype(np.float64)
        # Synthetic sets (with a camera) label every keypoint and use the third column for visibility;
        # in SPIN/EFT files a zero confidence means "not annotated".
        synthetic = bool(item.get("has_camera", False))
        annotated = np.ones(14, bool) if synthetic else kp[:, 2] > 0
        visible = item["visible"].numpy()[:14].astype(bool)
        out.append(EvalSample(int(i), str(item["imgname"]), img, j3d, kp[:, :2], visible,
                              item["occluder"].numpy() > 0, focal, res, pose, betas, transl, annotated))
    return out


def _pose_lsp14(body, pose: np.ndarray, betas: np.ndarray, transl: np.ndarray) -> np.ndarray:
    import torch

    t = lambda a: torch.as_tensor(a, dtype=torch.float32, device=body.faces.device)  # noqa: E731
    with torch.no_grad():
        out = body(betas=t(betas), global_orient=t(pose[:, :3]), body_pose=t(pose[:, 3:]), transl=t(transl))
        return body.keypoints(out, "lsp14").double().cpu().numpy()


# --------------------------------------------------------------------------- occluders
def patch_texture(size: int, seed: int, index: int) -> np.ndarray:
    """(size, size, 3) uint8 textured patch, deterministic in (seed, index): the data engine's textures."""
    from neuralfit.data.occluders import occluder_texture

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index), 8]))
    return occluder_texture(rng, size, size, None)


def patch_positions(res: int, size: int, stride: int) -> np.ndarray:
    """(P, 2) top-left (x, y) corners of a ``size`` patch slid with ``stride`` fully inside a ``res`` crop."""
    if not 0 < size <= res or stride < 1:
        raise NeuralfitError(f"patch size must be in 1..{res} and stride >= 1, got size {size}, stride {stride}")
    xs = np.arange(0, res - size + 1, stride)
    yy, xx = np.meshgrid(xs, xs, indexing="ij")
    return np.stack([xx.ravel(), yy.ravel()], 1)


def paste_patches(image: np.ndarray, texture: np.ndarray, positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Paste ``texture`` at each top-left position: (P, R, R, 3) images and (P, R, R) bool masks."""
    s = texture.shape[0]
    P = len(positions)
    imgs = np.repeat(image[None], P, axis=0)
    masks = np.zeros((P,) + image.shape[:2], bool)
    for k, (x, y) in enumerate(positions):
        imgs[k, y:y + s, x:x + s] = texture
        masks[k, y:y + s, x:x + s] = True
    return imgs, masks


def scaled(px224: float, res: int) -> int:
    """A length in 224-pixel units at crop resolution ``res`` (at least 1 pixel)."""
    return max(1, int(round(px224 * res / 224.0)))


@dataclass
class AdvOccResult:
    """The worst patch position for one sample."""

    position: tuple[int, int]  # top-left (x, y) in crop pixels
    size: int  # patch side in crop pixels
    errors: np.ndarray  # (P,) regressor MPJPE (mm) per position
    positions: np.ndarray  # (P, 2)


def adversarial_occlusion(sample: EvalSample, regressor: Method, size224: int = 80, stride224: int = 10,
                          seed: int = 0, batch_size: int = 64, coarse_to_fine: bool = False) -> AdvOccResult:
    """AdvOcc@S search: the patch position maximising the regressor's pelvis-aligned LSP-14 MPJPE.

    ``coarse_to_fine`` (not the seed's protocol; ~2.5x fewer regressor calls): search the grid at twice
    the stride, then every stride position within one coarse step of the 3 worst coarse positions.
    It finds the full search's maximum whenever the error surface has no peak narrower than the coarse
    step; ``errors``/``positions`` then hold only the evaluated positions.
    """
    size, stride = scaled(size224, sample.res), scaled(stride224, sample.res)
    tex = patch_texture(size, seed, sample.index)
    grid = patch_positions(sample.res, size, stride)

    def run(pos: np.ndarray) -> np.ndarray:
        errs = []
        for a in range(0, len(pos), batch_size):
            imgs, _ = paste_patches(sample.image, tex, pos[a:a + batch_size])
            pred = regressor(imgs, [sample] * len(imgs))
            gt = np.repeat(sample.joints3d[None], len(imgs), 0)
            errs.append(1000.0 * M.mpjpe(np.asarray(pred.joints3d, np.float64), gt, root=M.LSP14_PELVIS))
        return np.concatenate(errs)

    if coarse_to_fine:
        coarse = grid[((grid // stride) % 2 == 0).all(1)]
        ce = run(coarse)
        best = coarse[np.argsort(-ce)[:3]]
        near = (np.abs(grid[:, None, :] - best[None]) <= 2 * stride).all(-1).any(1)
        is_coarse = ((grid // stride) % 2 == 0).all(1)
        fine = grid[near & ~is_coarse]
        pos = np.concatenate([coarse, fine])
        errors = np.concatenate([ce, run(fine) if len(fine) else np.zeros(0)])
    else:
        pos, errors = grid, run(grid)
    k = int(np.argmax(errors))
    return AdvOccResult((int(pos[k, 0]), int(pos[k, 1])), size, errors, pos)


def apply_patch(sample: EvalSample, position: Sequence[int], size: int, seed: int) -> EvalSample:
    """The sample with the AdvOcc texture pasted at ``position`` (top-left x, y)."""
    imgs, masks = paste_patches(sample.image, patch_texture(size, seed, sample.index), np.asarray([position]))
    return sample.replace_image(imgs[0], masks[0])


def apply_random_occluder(sample: EvalSample, seed: int) -> EvalSample:
    """The data engine's random textured occluder over the keypoint box, deterministic in (seed, index)."""
    from neuralfit.data.occluders import random_occlusion

    rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(sample.index), 7]))
    pts = np.clip(sample.keypoints2d, 0, sample.res - 1)  # keypoints outside the crop: the box stays inside
    x0, y0 = pts.min(0)
    x1, y1 = pts.max(0)
    img, mask = random_occlusion(rng, sample.image, None, (x0, y0, x1 + 1, y1 + 1), (0.1, 0.35))
    return sample.replace_image(img, mask)


# --------------------------------------------------------------------------- scoring
def smpl_scores(pred: Prediction, samples: Sequence[EvalSample], body) -> dict[str, np.ndarray]:
    """SMPL-24 joint errors and PVE (mm) when the method returns SMPL params and the samples have them.

    Both meshes are posed with ``body``; MPJPE/PVE align the SMPL pelvis (joint 0) of each.
    Returns {} when not applicable.
    """
    if body is None or pred.smpl is None or any(s.pose is None or s.transl is None for s in samples):
        return {}
    import torch

    dev = body.faces.device  # follow the body's device
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32, device=dev)  # noqa: E731
    gt_pose = np.stack([s.pose for s in samples])
    with torch.no_grad():
        g = body(betas=t(np.stack([s.betas for s in samples])), global_orient=t(gt_pose[:, :3]),
                 body_pose=t(gt_pose[:, 3:]), transl=t(np.stack([s.transl for s in samples])))
        p = body(**{k: t(pred.smpl[k]) for k in ("betas", "global_orient", "body_pose", "transl")})
    gj, pj = g.joints.double().cpu().numpy(), p.joints.double().cpu().numpy()
    gv, pv = g.vertices.double().cpu().numpy(), p.vertices.double().cpu().numpy()
    return {
        "mpjpe_smpl24": 1000 * M.mpjpe(pj, gj, root=M.SMPL24_PELVIS),
        "pa_mpjpe_smpl24": 1000 * M.pa_mpjpe(pj, gj),
        "pve": 1000 * M.pve(pv, gv, pj[:, 0], gj[:, 0]),
    }


def score(pred: Prediction, samples: Sequence[EvalSample], body=None) -> list[dict[str, float]]:
    """Per-sample metrics (mm, PCKh in %): all-joint and visible-joint variants on LSP-14.

    With ``body`` (and SMPL params from the method and the dataset) also SMPL-24 MPJPE / PA-MPJPE and PVE.
    """
    B = len(samples)
    pj = np.asarray(pred.joints3d, np.float64)
    if pj.shape != (B, 14, 3):
        raise NeuralfitError(f"method returned joints3d of shape {pj.shape}; expected ({B}, 14, 3) LSP-14")
    gt = np.stack([s.joints3d for s in samples])
    vis = np.stack([s.visible for s in samples])
    if pred.keypoints2d is not None:
        p2 = np.asarray(pred.keypoints2d, np.float64)[..., :2]
    else:
        p2 = np.stack([project(pj[b], samples[b].focal, samples[b].res) for b in range(B)])
    g2 = np.stack([s.keypoints2d for s in samples])
    ann = np.stack([np.ones(14, bool) if s.annotated is None else s.annotated for s in samples])
    out = {
        "mpjpe": 1000 * M.mpjpe(pj, gt, root=M.LSP14_PELVIS),
        "pa_mpjpe": 1000 * M.pa_mpjpe(pj, gt),
        "pckh": 100 * M.pckh(p2, g2, mask=ann),
        "mpjpe_vis": 1000 * M.mpjpe(pj, gt, mask=vis, root=M.LSP14_PELVIS),
        "pa_mpjpe_vis": 1000 * M.pa_mpjpe(pj, gt, mask=vis),
        "pckh_vis": 100 * M.pckh(p2, g2, mask=vis & ann),
        "mpjpe_occ": 1000 * M.mpjpe(pj, gt, mask=~vis, root=M.LSP14_PELVIS),
        **smpl_scores(pred, samples, body),
    }
    return [{k: float(v[b]) for k, v in out.items()} for b in range(B)]


# --------------------------------------------------------------------------- the loop
@dataclass
class EvalConfig:
    """Settings of :func:`evaluate` (defaults: the seed's AdvOcc protocol)."""

    occluder: str = "none"  # none | random | adv40 | adv80 (| advS for any S)
    seed: int = 0  # textures and random occluders
    adv_stride: int = 10  # in 224-px units
    batch_size: int = 8  # samples per method call
    adv_batch_size: int = 64  # patch positions per regressor call
    adv_coarse_to_fine: bool = False  # faster, approximate AdvOcc search (see adversarial_occlusion)

    def __post_init__(self) -> None:
        if self.occluder not in ("none", "random") and not (
                self.occluder.startswith("adv") and self.occluder[3:].isdigit() and int(self.occluder[3:]) > 0):
            raise NeuralfitError(f"occluder must be one of {', '.join(OCCLUDERS)} (or advS), got {self.occluder!r}")
        if self.batch_size < 1 or self.adv_batch_size < 1 or self.adv_stride < 1:
            raise NeuralfitError("batch sizes and adv_stride must be >= 1")

    @property
    def adv_size(self) -> int | None:
        return int(self.occluder[3:]) if self.occluder.startswith("adv") else None


@dataclass
class EvalRun:
    """Result of :func:`evaluate`: per-sample records and the config; see :func:`summarize`."""

    config: dict[str, Any]
    methods: list[str]
    records: list[dict[str, Any]] = field(default_factory=list)


def _occlude(sample: EvalSample, cfg: EvalConfig, regressor: Method | None,
             positions: dict[int, list[int]] | None) -> tuple[EvalSample, dict[str, Any]]:
    info: dict[str, Any] = {}
    if cfg.occluder == "random":
        sample = apply_random_occluder(sample, cfg.seed)
    elif cfg.adv_size is not None:
        t0 = time.perf_counter()
        if positions is not None and sample.index in positions:
            pos, size = positions[sample.index], scaled(cfg.adv_size, sample.res)
        else:
            if regressor is None:
                raise NeuralfitError(f"occluder {cfg.occluder} needs the regressor (method 'regressor' or a network)")
            res = adversarial_occlusion(sample, regressor, cfg.adv_size, cfg.adv_stride, cfg.seed, cfg.adv_batch_size,
                                        cfg.adv_coarse_to_fine)
            pos, size = res.position, res.size
            info["adv_regressor_mpjpe"] = float(res.errors.max())
        sample = apply_patch(sample, pos, size, cfg.seed)
        info["adv_position"] = [int(pos[0]), int(pos[1])]
        info["adv_search_s"] = time.perf_counter() - t0
    info["occluded_fraction_px"] = float(sample.occluder.mean())
    info["visible_joints"] = int(sample.visible.sum())
    return sample, info


def _read_cache(path: Path, header: dict[str, Any]) -> dict[int, dict[str, Any]]:
    done: dict[int, dict[str, Any]] = {}
    lines = path.read_text().splitlines()
    if not lines:
        return done
    try:
        first = json.loads(lines[0])
    except json.JSONDecodeError as exc:
        raise NeuralfitError(f"resume cache {path} is unreadable; delete it to start over") from exc
    if first.get("header") != header:
        raise NeuralfitError(f"resume cache {path} was made with other settings ({first.get('header')}); "
                             "delete it or use another --out")
    for line in lines[1:]:
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a torn last line from an interrupted run: that sample is redone
        done[int(rec["index"])] = rec
    return done


def evaluate(samples: Sequence[EvalSample], methods: dict[str, Method], config: EvalConfig | None = None,
             regressor: Method | None = None, cache: str | os.PathLike | None = None, resume: bool = False,
             positions: dict[int, list[int]] | None = None, progress: bool = False,
             tag: dict[str, Any] | None = None, body=None) -> EvalRun:
    """Evaluate every method on every sample under one occluder protocol.

    Args:
        samples: the test set (:func:`load_samples`).
        methods: name -> method; all see the same (occluded) image of each sample.
        config: :class:`EvalConfig`.
        regressor: the method AdvOcc searches with (default ``methods["regressor"]`` when present).
        cache: JSON-lines file of finished per-sample records (appended, flushed per batch);
            with ``resume`` its samples are skipped. Its first line holds the settings, checked on resume.
        positions: precomputed AdvOcc positions {index: [x, y]} (e.g. from an earlier run's records), so
            other methods (ablations) see exactly the same images without repeating the search.
        tag: extra settings that must match on resume (data path, checkpoints).
        body: body model; with it, methods that return SMPL params also get SMPL-24 MPJPE / PA-MPJPE and PVE
            on samples with ground-truth SMPL (:func:`smpl_scores`).
    """
    cfg = config or EvalConfig()
    if not methods:
        raise NeuralfitError("no methods to evaluate")
    regressor = regressor if regressor is not None else methods.get("regressor")
    header = {"config": asdict(cfg), "methods": sorted(methods), **(tag or {})}
    done: dict[int, dict[str, Any]] = {}
    cache_path = Path(cache) if cache is not None else None
    if cache_path is not None:
        if resume and cache_path.exists():
            done = _read_cache(cache_path, header)
        else:
            cache_path.parent.mkdir(parents=True, exist_ok=True)
            cache_path.write_text(json.dumps({"header": header}) + "\n")
    todo = [s for s in samples if s.index not in done]
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), initial=len(samples) - len(todo), desc=f"eval {cfg.occluder}", unit="img")
    for a in range(0, len(todo), cfg.batch_size):
        chunk = todo[a:a + cfg.batch_size]
        occluded, infos = zip(*[_occlude(s, cfg, regressor, positions) for s in chunk], strict=True)
        images = np.stack([s.image for s in occluded])
        recs = [{"index": s.index, "name": s.name, **info, "methods": {}} for s, info in zip(chunk, infos, strict=True)]
        for name, method in methods.items():
            t0 = time.perf_counter()
            pred = method(images, list(occluded))
            per = (time.perf_counter() - t0) / len(chunk)
            for rec, sc in zip(recs, score(pred, occluded, body), strict=True):
                rec["methods"][name] = {**sc, "seconds": per}
        for rec in recs:
            done[rec["index"]] = rec
        if cache_path is not None:
            with open(cache_path, "a") as fh:
                fh.write("".join(json.dumps(r) + "\n" for r in recs))
                fh.flush()
                os.fsync(fh.fileno())
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()
    wanted = [s.index for s in samples]
    return EvalRun(header, list(methods), [done[i] for i in wanted])


def positions_from_records(records: Iterable[dict[str, Any]]) -> dict[int, list[int]]:
    """{index: [x, y]} AdvOcc positions stored in evaluation records."""
    return {int(r["index"]): list(r["adv_position"]) for r in records if "adv_position" in r}


def oracle_method(noise_mm: float = 20.0, occlusion_gain_mm: float = 300.0, seed: int = 0) -> Method:
    """Stand-in method: ground truth + Gaussian noise whose std grows with the occluded joints.

    Joint noise std (mm) = ``noise_mm + occlusion_gain_mm * (share of LSP-14 keypoints under an occluder)``,
    deterministic in (seed, sample index, occluder mask). For testing protocols without a trained network.
    """
    def method(images: np.ndarray, samples: Sequence[EvalSample]) -> Prediction:
        out = []
        for img, s in zip(images, samples, strict=True):
            # During an AdvOcc search the sample is the clean one and only the image carries the patch:
            # pixels that differ from the sample's own image count as covered.
            covered = np.any(img != s.image, axis=-1) | s.occluder
            px = np.clip(np.rint(s.keypoints2d).astype(int), 0, s.res - 1)
            frac = float(covered[px[:, 1], px[:, 0]].mean())
            key = int(np.flatnonzero(covered.ravel()).sum() % (2**31))
            rng = np.random.default_rng(np.random.SeedSequence([seed, s.index, key]))
            std = (noise_mm + occlusion_gain_mm * frac) / 1000.0
            out.append(s.joints3d + rng.normal(0, std, s.joints3d.shape))
        return Prediction(np.stack(out))

    return method
