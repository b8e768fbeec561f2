"""Batch refinement of regressor outputs stored as SPIN/EFT/PARE-style ``.npz`` files (``neuralfit refine``).

A pipeline over the fitter (it reads images and runs the network), so it lives outside ``fitting``; the
observations reach the fitter through :func:`neuralfit.fitting.inputs.fit_batch`, as in ``fit`` and ``eval``.

Input keys: ``imgname`` (N,), ``center`` (N, 2), ``scale`` (N,), ``pose`` (N, 72), ``shape`` (N, 10);
optional ``cam`` (N, 3) weak perspective ``[s, tx, ty]`` of the 224-style crop, ``part`` (N, 24, 3)
2D keypoints in ``spin24`` order and ``openpose`` (N, 25, 3) in BODY-25 order, both in *original image*
pixels with confidence (as in SPIN's dataset files).

Output: every input key (rows in the same order), with ``pose``/``shape``/``cam`` replaced by the refined
values, plus ``pose_init`` (N, 72: the pose each fit started from, the row's own or the lifter's), ``fit_loss`` (N,), ``occlusion_fraction`` (N,), ``transl`` (N, 3)
(crop-camera translation) and, for a shard, ``row_index`` (rows of the input it holds).

Resumability: each finished batch is written atomically to ``OUT.partial/batch_XXXXXX.npz`` next to a
``meta.json`` describing the run. ``resume=True`` skips the batches already there (refusing a sidecar made
by a different input or settings); the final file is written atomically from the batch files, and the
sidecar removed. Batches are fixed by position, so a resumed run gives the same output as an
uninterrupted one. Sharding: ``shard=(i, n)`` processes rows ``i::n``; under ``torchrun`` (``RANK`` /
``WORLD_SIZE`` set, no explicit shard) each rank writes ``OUT`` with a ``.shardIofN`` suffix; combine
shard files with :func:`merge_shards`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.fitting.config import FitConfig

REQUIRED = {"imgname": (), "center": (2,), "scale": (), "pose": (72,), "shape": (10,)}
OPTIONAL = {"cam": (3,), "part": (24, 3), "openpose": (25, 3)}
KEYPOINT_SETS = {"part": "spin24", "openpose": "body25"}
METHODS = ("keypoints", "neural")
#: Where a row's fit starts: its own ``pose``/``shape`` (the regressor outputs being refined) or the shipped
#: keypoint lifter on its keypoints. ``mediapipe3d`` and ``network`` are photo starts (``neuralfit fit``).
INITS = ("file", "lifter")


@dataclass
class RefineOptions:
    """Settings of one refinement run.

    Attributes:
        method: "keypoints" (SMPLify-style: 2D keypoints + priors) or "neural" (needs ``network`` and
            ``neural_model``: features, part segmentation, keypoints + priors).
        batch_size: crops fitted at once.
        res: crop resolution of the camera model (the network's input size when one is used).
        keypoints: which npz keypoints to use: "part", "openpose", "auto" (part, else openpose) or "none".
        body: body spec ("free" or a path to SMPL files).
        prior: pose prior spec ("default", a VPoser path, or "none").
        network, neural_model: paths for the neural method.
        device: "cpu" or "cuda[:i]".
        init: "file" (each row's ``pose``/``shape``) or "lifter" (the shipped keypoint lifter, or ``lifter``,
            on each row's keypoints; rows with fewer than 6 confident keypoints keep their own pose).
        lifter: a ``regressor_input="keypoints"`` network checkpoint for ``init="lifter"`` (None = shipped).
        fit: the fitter settings.
    """

    method: str = "keypoints"
    batch_size: int = 16
    res: int = 224
    keypoints: str = "auto"
    body: str = "free"
    prior: str = "default"
    network: str | None = None
    neural_model: str | None = None
    device: str = "cpu"
    init: str = "file"
    lifter: str | None = None
    fit: FitConfig = field(default_factory=FitConfig)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise NeuralfitError(f"refine method must be one of {METHODS}, got {self.method!r}")
        if self.batch_size < 1:
            raise NeuralfitError(f"batch size must be >= 1, got {self.batch_size}")
        if self.keypoints not in ("auto", "none", *KEYPOINT_SETS):
            raise NeuralfitError(f"keypoints must be auto, none, part or openpose; got {self.keypoints!r}")
        if self.init in ("mediapipe3d", "network"):
            raise NeuralfitError(f"--init {self.init} does not apply to refine: it starts from a photo's detection or "
                                 "network crop; refine starts from the rows (file) or the keypoint lifter (lifter)")
        if self.init not in INITS:
            raise NeuralfitError(f"refine init must be one of {', '.join(INITS)}, got {self.init!r}")


@dataclass
class RefineSummary:
    """What :func:`refine_npz` did."""

    out: Path
    rows: int
    batches_done: int
    batches_total: int
    complete: bool


# --------------------------------------------------------------------------- input checks
def load_init(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read and validate an init ``.npz``; returns all its arrays (validated shapes)."""
    p = Path(path)
    if not p.is_file():
        raise NeuralfitError(f"init file not found: {p}")
    try:
        with np.load(p, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except Exception as exc:
        raise NeuralfitError(f"cannot read {p} as an .npz ({type(exc).__name__}); expected SPIN/EFT-style arrays") \
            from None
    for key in REQUIRED:
        if key not in data:
            raise NeuralfitError(f"{p} has no '{key}' array; expected keys {sorted(REQUIRED)}")
    n = int(data["imgname"].shape[0]) if data["imgname"].ndim == 1 else -1
    if n <= 0:
        raise NeuralfitError(f"{p}: 'imgname' must be a non-empty (N,) array of file names, "
                             f"got shape {data['imgname'].shape}")
    for key, tail in {**REQUIRED, **OPTIONAL}.items():
        if key in data and tuple(data[key].shape) != (n, *tail):
            raise NeuralfitError(f"{p}: '{key}' has shape {tuple(data[key].shape)}, expected {(n, *tail)}")
    for key in ("center", "scale", "pose", "shape", "cam"):
        if key in data and not np.isfinite(data[key].astype(np.float64)).all():
            raise NeuralfitError(f"{p}: '{key}' contains NaN or inf")
    if (data["scale"] <= 0).any():
        raise NeuralfitError(f"{p}: 'scale' must be positive (box size / 200)")
    return data


def check_images(imgnames: np.ndarray, images_dir: str | os.PathLike) -> None:
    """Raise naming the first image of ``imgnames`` that does not exist under ``images_dir``."""
    root = Path(images_dir)
    if not root.is_dir():
        raise NeuralfitError(f"images folder not found: {root}")
    for name in imgnames:
        if not (root / str(name)).is_file():
            raise NeuralfitError(f"image not found: {root / str(name)} (listed in imgname)")


def parse_shard(text: str) -> tuple[int, int]:
    """``"i/n"`` -> (i, n) with 0 <= i < n."""
    try:
        i, n = (int(x) for x in text.split("/"))
    except ValueError:
        raise NeuralfitError(f"shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not (n >= 1 and 0 <= i < n):
        raise NeuralfitError(f"shard {text!r} is out of range; expected 0 <= i < n")
    return i, n


def env_shard() -> tuple[int, int] | None:
    """(RANK, WORLD_SIZE) from torchrun's environment, or None when not distributed."""
    if "WORLD_SIZE" in os.environ and "RANK" in os.environ:
        world, rank = int(os.environ["WORLD_SIZE"]), int(os.environ["RANK"])
        if world > 1:
            return rank, world
    return None


def shard_out_path(out: Path, shard: tuple[int, int]) -> Path:
    """``OUT.npz`` -> ``OUT.shardIofN.npz`` (per-rank output under torchrun)."""
    return out.with_name(f"{out.stem}.shard{shard[0]}of{shard[1]}{out.suffix or '.npz'}")


# --------------------------------------------------------------------------- conversion
def crop_keypoints(kp: np.ndarray, center: np.ndarray, scale: np.ndarray, res: int) -> np.ndarray:
    """(B, J, 3) image-pixel keypoints -> crop pixels (SPIN crop: box 200*scale around center -> res)."""
    s = res / (200.0 * scale)  # (B,)
    out = kp.astype(np.float32).copy()
    out[..., :2] = (kp[..., :2] - center[:, None, :]) * s[:, None, None] + res / 2.0
    out[..., 2] = np.where(np.isfinite(kp[..., :2]).all(-1), kp[..., 2], 0.0)
    out[..., :2] = np.nan_to_num(out[..., :2])
    return out


# --------------------------------------------------------------------------- observations
ObservationProvider = Callable[[np.ndarray], dict[str, Any]]


def _keypoint_source(data: dict[str, np.ndarray], choice: str) -> str | None:
    if choice == "none":
        return None
    if choice == "auto":
        for key in ("part", "openpose"):
            if key in data and (data[key][..., 2] > 0).any():
                return key
        return None
    if choice not in data:
        raise NeuralfitError(f"init file has no '{choice}' keypoints (asked for with --keypoints {choice})")
    return choice


def _network_provider(data: dict[str, np.ndarray], images_dir: Path, network: str, body, device: str):
    """Observations from the multi-task network on SPIN crops of the images (features, parts, keypoints)."""
    from neuralfit.data.crop import crop_transform, warp
    from neuralfit.io.images import read_image
    from neuralfit.nets import load_network, predict

    net = load_network(network, body, device=device)
    res = int(net.config.input_res)

    def provide(rows: np.ndarray) -> dict[str, Any]:
        crops = []
        for i in rows:
            img = read_image(images_dir / str(data["imgname"][i]))  # RGB; one-line error if unreadable
            aff = crop_transform(data["center"][i], float(data["scale"][i]), res)
            crops.append(warp(img, aff, res))
        return predict(net, np.stack(crops))

    return provide, res


# --------------------------------------------------------------------------- the run
def _fingerprint(init_path: Path, data: dict[str, np.ndarray], options: RefineOptions,
                 shard: tuple[int, int] | None) -> dict[str, Any]:
    h = hashlib.sha1()
    for key in sorted(data):
        arr = np.ascontiguousarray(data[key])
        h.update(key.encode())
        h.update(arr.tobytes() if arr.dtype.kind != "U" else "\n".join(arr.tolist()).encode())
    opts = asdict(options)
    opts.pop("device")  # the same run may continue on another device
    return {"input": str(init_path.resolve()), "input_sha1": h.hexdigest(), "options": opts,
            "shard": list(shard) if shard else None, "format": 1}


def refine_npz(init_path: str | os.PathLike, images_dir: str | os.PathLike, out_path: str | os.PathLike,
               options: RefineOptions | None = None, *, resume: bool = False, shard: tuple[int, int] | None = None,
               progress: bool = True, max_batches: int | None = None,
               provider: ObservationProvider | None = None) -> RefineSummary:
    """Refine every row (or one shard) of an init ``.npz``; see the module docstring.

    Args:
        max_batches: stop after this many *new* batches (the sidecar keeps them; run again with
            ``resume=True`` to continue). None = run to completion.
        provider: custom observation source ``rows -> dict`` (keys like ``neuralfit.nets.predict``:
            features, part_probs, keypoints + joint_set); overrides the network.

    All inputs are validated before anything is written.
    """
    options = options or RefineOptions()
    init_path, images_dir, out = Path(init_path), Path(images_dir), Path(out_path)
    data = load_init(init_path)
    check_images(data["imgname"], images_dir)
    if shard is None and (es := env_shard()) is not None:
        shard = es
        out = shard_out_path(out, shard)
    n = int(data["imgname"].shape[0])
    rows = np.arange(n) if shard is None else np.arange(shard[0], n, shard[1])
    kp_key = _keypoint_source(data, options.keypoints)
    if options.init == "lifter" and kp_key is None:
        raise NeuralfitError(f"--init lifter needs the rows' 2D keypoints ('part' or 'openpose'); {init_path} has none")
    if options.method == "keypoints" and kp_key is None:
        raise NeuralfitError(f"{init_path} has no keypoints ('part' or 'openpose' with confidence > 0); "
                             "the keypoints method needs them")
    if options.method == "neural" and provider is None:
        from neuralfit.assets import default_assets

        shipped_net, shipped_nm = default_assets()
        options = replace(options, network=options.network or (str(shipped_net) if shipped_net else None),
                          neural_model=options.neural_model or (str(shipped_nm) if shipped_nm else None))
        if not options.network:
            raise NeuralfitError("--method neural needs --network CKPT (the feature/part/keypoint network)")
        if not options.neural_model:
            raise NeuralfitError("--method neural needs --neural-model NM.pt (the trained neural mesh model)")
        for what, p in (("network", options.network), ("neural model", options.neural_model)):
            if not Path(p).is_file():
                raise NeuralfitError(f"{what} file not found: {p}")
    if "cam" not in data and kp_key is None and options.method == "keypoints":
        raise NeuralfitError(f"{init_path} has neither 'cam' nor keypoints: cannot place the body in the crop")

    from neuralfit.body import load_body_model
    from neuralfit.fitting.fitter import Fitter
    from neuralfit.fitting.inputs import method_config
    from neuralfit.neural import NeuralMeshModel

    device = options.device
    body = load_body_model(options.body, device=device)
    prior = None
    if options.prior != "none":
        from neuralfit.priors.default import load_pose_prior

        prior = load_pose_prior(options.prior, device=device)
    neural_model = None
    res = options.res
    fit_cfg = options.fit
    if options.method == "neural":
        if provider is None:
            provider, res = _network_provider(data, images_dir, options.network, body, device)
        if options.neural_model:
            neural_model = NeuralMeshModel.load(options.neural_model, body=body, device=device)
    fitter = Fitter(body, neural_model, prior, method_config(options.method, fit_cfg), device=device)
    lifter = _load_lifter(options.lifter, body, device) if options.init == "lifter" else None

    # Sidecar with per-batch results.
    side = out.with_name(out.name + ".partial")
    meta = _fingerprint(init_path, data, options, shard)
    meta["batch_size"] = options.batch_size
    if side.exists():
        if not resume:
            raise NeuralfitError(f"{side} holds results of an interrupted run; pass --resume to continue it "
                                 "or delete the folder")
        try:
            old = json.loads((side / "meta.json").read_text())
        except (OSError, ValueError):
            raise NeuralfitError(f"{side}/meta.json is missing or unreadable; delete {side} to start over") from None
        if old != json.loads(json.dumps(meta)):
            raise NeuralfitError(f"{side} was made from a different input or settings; delete it to start over")
    else:
        from neuralfit.io.atomic import save_json

        side.mkdir(parents=True, exist_ok=True)
        save_json(side / "meta.json", meta)

    from tqdm import tqdm

    from neuralfit.io.atomic import save_npz
    from neuralfit.render.camera import CropCamera

    cam = CropCamera(res)
    bs = options.batch_size
    n_batches = (len(rows) + bs - 1) // bs
    done = {k for k in range(n_batches) if (side / f"batch_{k:06d}.npz").is_file()}
    new = 0
    bar = tqdm(total=n_batches, initial=len(done), unit="batch", disable=not progress, desc="refine")
    for k in range(n_batches):
        if k in done:
            continue
        if max_batches is not None and new >= max_batches:
            break
        idx = rows[k * bs:(k + 1) * bs]
        result = _fit_rows(fitter, body, data, idx, kp_key, cam, res, provider, options.method, device, lifter)
        save_npz(side / f"batch_{k:06d}.npz", **result)
        new += 1
        bar.update(1)
    bar.close()
    finished = all((side / f"batch_{k:06d}.npz").is_file() for k in range(n_batches))
    if not finished:
        return RefineSummary(out, len(rows), len(done) + new, n_batches, False)
    parts = [dict(np.load(side / f"batch_{k:06d}.npz")) for k in range(n_batches)]
    merged = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
    outputs = {key: val[rows] for key, val in data.items()}
    outputs["pose_init"] = merged["pose_init"]
    for key in ("pose", "shape", "transl", "fit_loss", "occlusion_fraction"):
        outputs[key] = merged[key]
    outputs["cam"] = merged["cam"]
    if shard is not None:
        outputs["row_index"] = rows
    save_npz(out, **outputs)
    shutil.rmtree(side, ignore_errors=True)
    return RefineSummary(out, len(rows), n_batches, n_batches, True)


def _load_lifter(path: str | None, body, device: str):
    """The keypoint lifter: ``path`` (a ``neuralfit train lifter`` checkpoint, or a network whose regressor
    reads keypoints) or the shipped lifter; one-line errors when unusable."""
    from neuralfit.assets import default_lifter
    from neuralfit.nets.checkpoint import load_network
    from neuralfit.nets.lifter import is_lifter_checkpoint, load_lifter

    if path is None:
        shipped = default_lifter()
        if shipped is None:
            raise NeuralfitError("--init lifter: no keypoint lifter is shipped; pass --lifter CKPT")
        return load_lifter(shipped, device=device)
    if not Path(path).is_file():
        raise NeuralfitError(f"--init lifter: lifter not found ({path})")
    if is_lifter_checkpoint(path):
        return load_lifter(path, device=device)
    net = load_network(path, body, device=device)
    if net.config.regressor_input != "keypoints":
        raise NeuralfitError(f"--init lifter: {path} regresses from images, not keypoints")
    return net


def _lifted(lifter, body, kp: np.ndarray, joint_set: str, res: int, pose: torch.Tensor,
            betas: torch.Tensor, prior=None, focal: float | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, 72) pose and (B, 10) betas from the lifter on (B, J, 3) crop keypoints at ``res``; rows it
    cannot read (fewer than 6 confident keypoints) keep ``pose`` / ``betas``."""
    from neuralfit.body.keypoints import transfer_keypoints
    from neuralfit.nets.lifter import KeypointLifter
    from neuralfit.nets.model import regress

    if isinstance(lifter, KeypointLifter):
        from neuralfit.init.lift import lift_start

        sp, ok = lift_start(lifter, body, kp, joint_set, focal, prior=prior)
        lifted = torch.cat([sp.global_orient, sp.body_pose], -1).to(pose)
        ok = ok.to(pose.device)
        return torch.where(ok[:, None], lifted, pose), torch.where(ok[:, None], sp.betas.to(betas), betas)
    dst = body.keypoint_sets[lifter.config.joint_set]
    t = np.stack([transfer_keypoints(k, body.keypoint_sets[joint_set], dst) for k in kp]).astype(np.float32)
    t[..., :2] *= lifter.config.input_res / res  # the lifter reads its own crop size
    ok = torch.as_tensor((t[..., 2] > 0).sum(-1) >= 6, device=pose.device)
    smpl = regress(lifter, t)
    lifted = torch.cat([smpl["global_orient"], smpl["body_pose"]], -1).to(pose)
    b = torch.nn.functional.pad(smpl["betas"].to(betas), (0, max(0, 10 - smpl["betas"].shape[1])))[:, :10]
    return torch.where(ok[:, None], lifted, pose), torch.where(ok[:, None], b, betas)


def _fit_rows(fitter, body, data, idx, kp_key, cam, res, provider, method, device,
              lifter=None) -> dict[str, np.ndarray]:
    """Fit one batch of rows; returns per-row arrays for the sidecar."""
    from neuralfit.fitting.inputs import Observations, fit_batch
    from neuralfit.init import StartParams, place_in_camera

    dev = torch.device(device)
    pose = torch.as_tensor(data["pose"][idx], dtype=torch.float32, device=dev)
    betas = torch.as_tensor(data["shape"][idx], dtype=torch.float32, device=dev)
    pred: dict[str, Any] = provider(idx) if provider is not None else {}
    obs = Observations(res=res, focal=cam.f, features=pred.get("features"), part_probs=pred.get("part_probs"))
    if kp_key is not None:
        kp = crop_keypoints(data[kp_key][idx], data["center"][idx], data["scale"][idx], res)
        obs.keypoints, obs.joint_set = torch.as_tensor(kp, device=dev), KEYPOINT_SETS[kp_key]
    elif pred.get("keypoints") is not None:
        obs.keypoints, obs.joint_set = pred["keypoints"].float().to(dev), pred["joint_set"]
    if lifter is not None:
        # The rows' 5000 px crop camera is a convention, not the photo's lens: the lifter assumes a typical one.
        pose, betas = _lifted(lifter, body, kp, KEYPOINT_SETS[kp_key], res, pose, betas, fitter.prior)
    start = StartParams(pose[:, :3], pose[:, 3:], betas)
    if "cam" in data and lifter is None:  # the file's camera belongs to the file's pose
        transl = cam.transl_from_weak_perspective(torch.as_tensor(data["cam"][idx], dtype=torch.float32, device=dev))
    else:
        transl = place_in_camera(body, start, obs.keypoints, obs.joint_set, cam.f,
                                 (res / 2.0, res / 2.0))
    r = fitter.fit(fit_batch(StartParams(start.global_orient, start.body_pose, start.betas, transl), obs, method))
    t = r.transl
    s = 2.0 * cam.f / (res * t[:, 2].clamp(min=1e-6))
    return {
        "rows": np.asarray(idx),
        "pose_init": pose.cpu().numpy().astype(np.float32),
        "pose": r.pose.cpu().numpy().astype(np.float32),
        "shape": r.betas.cpu().numpy().astype(np.float32),
        "transl": t.cpu().numpy().astype(np.float32),
        "cam": torch.stack([s, t[:, 0], t[:, 1]], dim=-1).cpu().numpy().astype(np.float32),
        "fit_loss": r.loss.cpu().numpy().astype(np.float32),
        "occlusion_fraction": r.occlusion_fraction.cpu().numpy().astype(np.float32),
    }


def merge_shards(paths: list[str | os.PathLike], out: str | os.PathLike) -> Path:
    """Combine shard outputs (each with ``row_index``) into one file in the original row order.

    Raises if rows are missing or duplicated, so a merged file is never silently incomplete.
    """
    from neuralfit.io.atomic import save_npz

    parts = []
    for p in paths:
        with np.load(p, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        if "row_index" not in d:
            raise NeuralfitError(f"{p} has no 'row_index'; expected a shard written by refine --shard")
        parts.append(d)
    index = np.concatenate([d["row_index"] for d in parts])
    n = int(index.max()) + 1 if index.size else 0
    if np.unique(index).size != index.size or index.size != n:
        raise NeuralfitError(f"shards cover {np.unique(index).size} distinct rows of {n} "
                             f"({index.size - np.unique(index).size} duplicated); expected each row exactly once")
    order = np.argsort(index)
    merged = {k: np.concatenate([d[k] for d in parts])[order] for k in parts[0] if k != "row_index"}
    save_npz(out, **merged)
    return Path(out)
