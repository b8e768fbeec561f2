"""Writing synthetic datasets: per-image files, resumable records, the merged annotations.npz.

Layout of ``DIR``::

    synth.json              the SynthConfig and the master seed (a resume must match it)
    images/000000.jpg       the image (the crop itself: center = image centre, scale = res / 200)
    masks/000000_part.png   uint8 part segmentation of visible target pixels: 0 background, 1 + SMPL part
    masks/000000_occ.png    uint8 occluders: 0 none, 1 object, 2 another person
    records/000000.npz      one image's annotation row, written last (its presence marks the image done)
    annotations.npz         all rows merged, written atomically once every image is done

Every file is written atomically. ``annotations.npz`` is a zip with fixed timestamps so the same
seed gives the same bytes (``np.savez`` stamps the current time into the archive).
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import shutil
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path

# Keys of a record and the dtype they are stored with in annotations.npz.
_DTYPES = {
    "center": np.float32, "scale": np.float32, "part": np.float32, "part_inimage": np.bool_,
    "pose": np.float32, "shape": np.float32, "has_smpl": np.float32, "S": np.float32,
    "cam_f": np.float32, "transl": np.float32, "joint0": np.float32, "lowres_uv": np.float32, "lowres_vis": np.bool_,
    "occ_type": np.uint8, "occ_fraction": np.float32, "truncated": np.bool_, "elevation_deg": np.float32,
    "part_coco17": np.float32,
}
_CONFIG_KEYS = ("res", "occlusion", "body", "pose_source", "photos", "photo_prob", "fill", "centre_jitter",
                "elevation_std_deg", "roll_std_deg", "person_depth_gap", "max_attempts",
                "min_keypoints_in_image", "jpeg_quality", "blur_sigma", "noise_std")


def save_npz_deterministic(path: str | os.PathLike, arrays: dict[str, np.ndarray], compress: bool = True) -> None:
    """Atomic ``.npz`` whose bytes depend only on ``arrays`` (fixed zip timestamps, no pickles)."""
    with atomic_path(path, suffix=".npz") as tmp:
        mode = zipfile.ZIP_DEFLATED if compress else zipfile.ZIP_STORED
        with zipfile.ZipFile(tmp, "w", compression=mode) as zf:
            for key, value in arrays.items():
                info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                info.compress_type = mode
                with zf.open(info, "w", force_zip64=True) as fh:
                    np.lib.format.write_array(fh, np.asanyarray(value), allow_pickle=False)


def _write_image(path: Path, img: np.ndarray, params: list[int]) -> None:
    ok, buf = cv2.imencode(path.suffix, img, params)
    if not ok:
        raise NeuralfitError(f"cannot encode {path}")
    with atomic_path(path) as tmp:
        tmp.write_bytes(buf.tobytes())


def _names(i: int) -> dict[str, str]:
    return {"imgname": f"images/{i:06d}.jpg", "partseg": f"masks/{i:06d}_part.png",
            "occluder": f"masks/{i:06d}_occ.png", "record": f"records/{i:06d}.npz"}


def write_sample(out: Path, index: int, sample, jpeg_quality: int) -> None:
    """Write one sample's image, masks and record (record last, so a crash leaves it 'not done')."""
    n = _names(index)
    _write_image(out / n["imgname"], sample.image, [cv2.IMWRITE_JPEG_QUALITY, int(jpeg_quality)])
    _write_image(out / n["partseg"], sample.partseg, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    _write_image(out / n["occluder"], sample.occluder, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    rec = {k: np.asarray(v, dtype=_DTYPES[k]) for k, v in sample.record.items()}
    save_npz_deterministic(out / n["record"], rec)


# ---------------------------------------------------------------------------------------------
# worker plumbing: one engine per process, built in the initializer

_ENGINE = None  # per-process engine in worker processes (set by _init_worker only)


def _init_worker(config_dict: dict, out: str, seed: int) -> None:
    global _ENGINE
    import torch

    from neuralfit.data.synth import SynthConfig, SynthEngine

    torch.set_num_threads(1)  # one core per worker
    cfg = SynthConfig(**config_dict)
    _ENGINE = (SynthEngine(cfg), Path(out), seed)


def _work(index: int) -> int:
    engine, out, seed = _ENGINE
    write_sample(out, index, engine.sample(index, seed), engine.config.jpeg_quality)
    return index


def _check_config(out: Path, config, seed: int) -> dict:
    meta = {"seed": int(seed), **{k: getattr(config, k) for k in _CONFIG_KEYS}}
    meta = json.loads(json.dumps(meta))  # tuples -> lists, as read back
    path = out / "synth.json"
    if path.exists():
        try:
            old = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            raise NeuralfitError(f"{path} is unreadable ({exc}); remove it or use a new --out") from exc
        old_cmp = {k: v for k, v in old.items() if k in meta}
        if old_cmp != meta:
            diff = sorted(k for k in meta if old_cmp.get(k) != meta[k])
            raise NeuralfitError(f"{out} holds a dataset made with other settings ({', '.join(diff)}); "
                                 "use a new --out or the same settings to resume")
    return meta


def _make_folder(out: Path) -> list[Path]:
    """``mkdir -p out``; returns the folders it created (outermost first) so a failure can undo them."""
    missing = [p for p in (out, *out.parents) if not p.exists()][::-1]
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NeuralfitError(f"--out {out}: cannot create the folder ({exc.strerror})") from None
    return missing


def _undo_if_empty(out: Path, created: list[Path], fresh_meta: bool) -> None:
    """After a failed run that finished no image: remove what this run wrote, so a rerun starts clean.

    A run that finished some images keeps them (and synth.json) for resuming.
    """
    if any((out / "records").glob("*.npz")):
        return
    if created:
        shutil.rmtree(created[0], ignore_errors=True)
    elif fresh_meta:
        (out / "synth.json").unlink(missing_ok=True)
        for sub in ("images", "masks", "records"):
            shutil.rmtree(out / sub, ignore_errors=True)


def generate_dataset(
    out: str | os.PathLike,
    count: int,
    seed: int,
    config=None,
    workers: int = 1,
    progress: bool = True,
) -> Path:
    """Render ``count`` images into ``out`` and write ``out/annotations.npz``; resumes a partial run.

    Images whose record already exists are skipped, so an interrupted run continues where it
    stopped; the result is byte-identical to an uninterrupted run with any number of workers.
    Returns the path of annotations.npz.
    """
    from neuralfit.data.poses import PoseShapeSource
    from neuralfit.data.synth import SynthConfig

    config = config or SynthConfig()
    config.preset()  # validate the preset name early
    if count < 1:
        raise NeuralfitError(f"--count must be >= 1, got {count}")
    if seed < 0:
        raise NeuralfitError(f"--seed must be >= 0, got {seed}")
    if workers < 1:
        raise NeuralfitError(f"--workers must be >= 1, got {workers}")
    out = Path(out)
    meta = _check_config(out, config, seed)
    src = PoseShapeSource(config.pose_source)
    meta["pose_source_used"] = src.pose_source_used
    meta["shape_source_used"] = src.shape_source_used
    todo = [i for i in range(count) if not (out / _names(i)["record"]).exists()]

    import torch
    from tqdm import tqdm

    cfg_dict = config.to_dict()
    threads = torch.get_num_threads()  # workers use one thread (same floating-point order); restore after
    try:
        # Load the body (a bad --body fails here) before anything is written, so a failed run
        # leaves no synth.json that would refuse the corrected rerun.
        if todo and workers == 1:
            _init_worker(cfg_dict, str(out), seed)
        elif todo:
            from neuralfit.data.synth import load_body

            load_body(config.body)
        created = _make_folder(out)
        fresh_meta = not (out / "synth.json").exists()
        with atomic_path(out / "synth.json") as tmp:
            tmp.write_text(json.dumps(meta, indent=2) + "\n")
        bar = tqdm(total=count, initial=count - len(todo), desc="synth", unit="img", disable=not progress)
        try:
            if todo and workers == 1:
                for i in todo:
                    _work(i)
                    bar.update(1)
            elif todo:
                ctx = mp.get_context("spawn")  # torch + fork is fragile; each worker builds its own engine
                with ctx.Pool(workers, initializer=_init_worker, initargs=(cfg_dict, str(out), seed)) as pool:
                    for _ in pool.imap_unordered(_work, todo, chunksize=1):
                        bar.update(1)
        except BaseException:
            _undo_if_empty(out, created, fresh_meta)
            raise
        finally:
            bar.close()
    finally:
        globals()["_ENGINE"] = None
        torch.set_num_threads(threads)
    return merge_records(out, range(count))


def merge_records(out: Path, indices: Iterable[int]) -> Path:
    """Stack the per-image records into ``out/annotations.npz`` (atomic, deterministic bytes)."""
    rows: dict[str, list[np.ndarray]] = {}
    names: dict[str, list[str]] = {"imgname": [], "partseg": [], "occluder": []}
    for i in indices:
        n = _names(i)
        path = out / n["record"]
        try:
            with np.load(path, allow_pickle=False) as rec:
                for k in rec.files:
                    rows.setdefault(k, []).append(rec[k])
        except (OSError, ValueError, zipfile.BadZipFile) as exc:
            raise NeuralfitError(f"record {path} is missing or corrupt ({exc}); delete it and rerun") from exc
        for k in names:
            names[k].append(n[k])
    arrays: dict[str, Any] = {k: np.array(v) for k, v in names.items()}
    for k, v in rows.items():
        arrays[k] = np.stack(v)
    target = out / "annotations.npz"
    save_npz_deterministic(target, arrays)
    return target
