"""The real multi-view benchmark set: frames, people found in every view, triangulated pseudo-GT.

Built from Pose2Sim's ``Demo_MultiPerson`` (registry package ``pose2sim``, BSD-3; installed without
its dependencies): 4 synchronised calibrated videos of two people, a woman ("front") and a man on a
treadmill ("back"). Frames and detections are cached under a folder of the caller's choice (never in
the repository: they are third-party pictures). See docs/real_benchmark.md.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from neuralfit.detect import Detection
from neuralfit.errors import NeuralfitError
from neuralfit.eval.multiview import (
    BLAZEPOSE_LIMB12,
    Camera,
    Triangulation,
    leave_one_view_out,
    read_qca,
    refine_rotations,
    triangulate,
)
from neuralfit.eval.people import associate, find_everyone, fix_side_swaps, track_keypoints
from neuralfit.io.atomic import atomic_path

PEOPLE = ("front", "back")


def find_demo(demo: str | Path | None = None) -> Path:
    """The ``Demo_MultiPerson`` folder: ``demo`` if given, else the installed ``Pose2Sim`` package's."""
    if demo is not None:
        path = Path(demo)
    else:
        spec = importlib.util.find_spec("Pose2Sim")
        if spec is None or spec.origin is None:
            raise NeuralfitError(
                "Pose2Sim is not installed; run `pip install --no-deps pose2sim==0.10.49` or pass --demo DIR"
            )
        path = Path(spec.origin).parent / "Demo_MultiPerson"
    if not (path / "calibration" / "Calib.qca.txt").is_file() or not (path / "videos").is_dir():
        raise NeuralfitError(f"{path} is not a Pose2Sim demo folder (expected calibration/Calib.qca.txt and videos/)")
    return path


def read_frames(video: Path, indices: list[int]) -> dict[int, np.ndarray]:
    """RGB frames ``indices`` of a video (read sequentially: seeking in mp4 is not frame-exact)."""
    cap = cv2.VideoCapture(str(video))
    want, out, i = set(indices), {}, 0
    while want - set(out):
        ok, bgr = cap.read()
        if not ok:
            break
        if i in want:
            out[i] = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        i += 1
    cap.release()
    if set(out) != want:
        raise NeuralfitError(f"{video}: frames {sorted(want - set(out))} could not be read ({i} frames)")
    return out


#: Subsampling of the person masks kept with the set (a 1088 x 1920 mask -> 272 x 480 bools).
MASK_STEP = 4


@dataclass
class PersonView:
    """One person in one view of one frame, with its pseudo-GT.

    Attributes:
        frame, view: indices (view = camera position in the calibration); person: "front" / "back".
        box: (4,) x0, y0, x1, y1 from this person's detection in this view (photo px).
        keypoints: (33, 3) that detection's BlazePose keypoints (sides fixed against the other views).
        gt: (12, 3) pseudo-GT limb joints in this view's camera frame (metres).
        gt_heldout: (12, 3) the same triangulated without this view (independent of its 2D keypoints).
        focal: this camera's focal length (px), for methods given the calibration.
        mask: (H / MASK_STEP, W / MASK_STEP) bool, that detection's person mask (mediapipe's segmentation,
            > 0.5) subsampled, or None; the "torso on whose mask" check of the tables.
    """

    frame: int
    view: int
    person: str
    box: np.ndarray
    keypoints: np.ndarray
    gt: np.ndarray
    gt_heldout: np.ndarray
    focal: float
    mask: np.ndarray | None = None


@dataclass
class RealSet:
    """The benchmark set and the pseudo-GT's own uncertainty.

    Attributes:
        items: person-views. cameras: the (rotation-refined) cameras. frames: frame indices used.
        reproj_px: reprojection errors of the GT limb joints (all used views), pixels.
        loo_mm: leave-one-view-out disagreement of the GT limb joints, mm.
        rotation_fix_deg: (V,) size of each camera's rotation refinement.
        side_swaps: number of person-views whose left/right were swapped back.
        missing: person-frames not seen in enough views (no GT).
        incomplete: person-views left out because a limb joint could not be triangulated.
    """

    items: list[PersonView]
    cameras: list[Camera]
    frames: list[int]
    reproj_px: np.ndarray
    loo_mm: np.ndarray
    reproj_px_before: np.ndarray
    rotation_fix_deg: np.ndarray
    side_swaps: int
    missing: int
    incomplete: int = 0

    def frame_path(self, cache: Path, frame: int, view: int) -> Path:
        return frame_file(cache, frame, view)


def frame_file(cache: Path, frame: int, view: int) -> Path:
    return Path(cache) / "frames" / f"f{frame:03d}_v{view}.png"


def load_frame(cache: Path, frame: int, view: int) -> np.ndarray:
    bgr = cv2.imread(str(frame_file(cache, frame, view)))
    if bgr is None:
        raise NeuralfitError(f"cached frame {frame_file(cache, frame, view)} is missing; rerun without --skip")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _save_detections(path: Path, dets: list[Detection]) -> None:
    arrays = {"n": np.array(len(dets))}
    for i, d in enumerate(dets):
        arrays[f"kp{i}"] = d.keypoints
        arrays[f"bbox{i}"] = d.bbox
        arrays[f"score{i}"] = np.array(d.score)
        arrays[f"world{i}"] = d.world_landmarks if d.world_landmarks is not None else np.zeros((0, 4))
        arrays[f"mask{i}"] = (255 * d.mask).astype(np.uint8) if d.mask is not None else np.zeros((0, 0), np.uint8)
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


def _load_detections(path: Path) -> list[Detection]:
    z = np.load(path)
    out = []
    for i in range(int(z["n"])):
        mask = z[f"mask{i}"].astype(np.float32) / 255 if z[f"mask{i}"].size else None
        world = z[f"world{i}"] if z[f"world{i}"].size else None
        out.append(Detection(z[f"kp{i}"], z[f"bbox{i}"], mask, float(z[f"score{i}"]), world))
    return out


def occluded_split(frames: list[int], subset: int, dev: bool) -> set[int]:
    """The real occluded benchmark's frames: ``subset`` of ``frames`` evenly spaced (the test frames), or with
    ``dev`` as many evenly spaced among the others (the development frames, where settings are chosen)."""
    pick = {frames[int(i)] for i in np.linspace(0, len(frames) - 1, min(subset, len(frames)))}
    if dev:
        rest = [f for f in frames if f not in pick]
        pick = {rest[int(i)] for i in np.linspace(0, len(rest) - 1, min(subset, len(rest)))} if rest else set()
    return pick


def pick_frames(n_total: int, n: int) -> list[int]:
    """``n`` frame indices spread evenly over a clip of ``n_total`` frames."""
    if n <= 0:
        raise NeuralfitError(f"--frames must be positive, got {n}")
    return sorted({int(round(x)) for x in np.linspace(0, n_total - 1, min(n, n_total))})


def build_set(demo: Path, cache: Path, n_frames: int = 25, refine: bool = True, max_people: int = 3) -> RealSet:
    """Read frames, find everyone, associate across views, triangulate; cached under ``cache``."""
    from neuralfit.detect import PersonDetector

    cams = read_qca(demo / "calibration" / "Calib.qca.txt")
    videos = [demo / "videos" / f"{c.name}.mp4" for c in cams]
    for v in videos:
        if not v.is_file():
            raise NeuralfitError(f"missing video {v}")
    n_total = int(cv2.VideoCapture(str(videos[0])).get(cv2.CAP_PROP_FRAME_COUNT))
    frames = pick_frames(n_total, n_frames)
    cache = Path(cache)
    (cache / "frames").mkdir(parents=True, exist_ok=True)
    (cache / "detections").mkdir(parents=True, exist_ok=True)
    todo = [v for v in range(len(cams)) if not all(frame_file(cache, f, v).is_file() for f in frames)]
    for v in todo:
        for f, rgb in read_frames(videos[v], frames).items():
            with atomic_path(frame_file(cache, f, v)) as tmp:
                cv2.imwrite(str(tmp), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    dets: dict[tuple[int, int], list[Detection]] = {}
    detector = None
    for f in tqdm(frames, desc="find people", unit="frame"):
        for v in range(len(cams)):
            path = cache / "detections" / f"f{f:03d}_v{v}.npz"
            if path.is_file():
                dets[f, v] = _load_detections(path)
                continue
            detector = detector or PersonDetector()
            dets[f, v] = find_everyone(detector, load_frame(cache, f, v), max_people=max_people)
            _save_detections(path, dets[f, v])
    if detector is not None:
        detector.close()

    # Associate with the file's calibration (its small rotation errors do not confuse people metres apart).
    tracks: dict[int, list] = {}
    for f in frames:
        tracks[f] = associate(cams, [dets[f, v] for v in range(len(cams))], max_people=2)
    obs = []
    swaps = 0
    for f in frames:
        for t in tracks[f]:
            kp, flipped = fix_side_swaps(cams, track_keypoints(t))
            swaps += len(flipped)
            obs.append((f, t, kp))
    before = _reproj_all(cams, [o[2] for o in obs])
    rot_deg = np.zeros(len(cams))
    if refine and obs:
        cams, deltas = refine_rotations(cams, [o[2] for o in obs])
        rot_deg = np.degrees(np.linalg.norm(deltas, axis=1))
    return _finish(cams, frames, obs, before, rot_deg, swaps, sum(2 - len(tracks[f]) for f in frames))


def _reproj_all(cams: list[Camera], kps: list[np.ndarray]) -> np.ndarray:
    errs = [triangulate(cams, kp).reproj[:, list(BLAZEPOSE_LIMB12)] for kp in kps]
    if not errs:
        return np.zeros(0)
    e = np.concatenate([x.ravel() for x in errs])
    return e[np.isfinite(e)]


def _finish(cams, frames, obs, before, rot_deg, swaps, missing) -> RealSet:
    limb = list(BLAZEPOSE_LIMB12)
    items: list[PersonView] = []
    reproj, loo = [], []
    incomplete = 0
    # Which track is "front": the one nearer camera 0 (the woman stands between cam01 and the treadmill).
    per_frame: dict[int, list] = {}
    for f, t, kp in obs:
        tri = triangulate(cams, kp)
        per_frame.setdefault(f, []).append((t, kp, tri))
    for f, group in per_frame.items():
        depth = [_depth(cams[0], tri) for _, _, tri in group]
        order = np.argsort(depth)
        for rank, gi in enumerate(order):
            t, kp, tri = group[gi]
            name = PEOPLE[rank] if len(group) == 2 else _name_single(cams[0], tri)
            used = tri.used[:, limb]
            reproj.append(tri.reproj[:, limb][used])
            d = leave_one_view_out(cams, kp, tri)[:, limb]
            loo.append(d[np.isfinite(d)] * 1000)
            for v, det in enumerate(t.detections):
                if det is None:
                    continue
                held = kp.copy()
                held[v, :, 2] = 0.0
                tri_h = triangulate(cams, held)
                gt = cams[v].to_camera(tri.points[limb])
                if not np.all(np.isfinite(gt)):
                    incomplete += 1
                    continue
                gt_h = cams[v].to_camera(tri_h.points[limb])
                small = None if det.mask is None else det.mask[::MASK_STEP, ::MASK_STEP] > 0.5
                items.append(PersonView(f, v, name, det.bbox.copy(), kp[v], gt, gt_h, float(cams[v].K[0, 0]),
                                        small))
    return RealSet(items, cams, list(frames), np.concatenate(reproj) if reproj else np.zeros(0),
                   np.concatenate(loo) if loo else np.zeros(0), before, rot_deg, swaps, missing, incomplete)


def _depth(cam: Camera, tri: Triangulation) -> float:
    pts = tri.points[[23, 24]]
    return float(np.nanmean(cam.to_camera(pts)[:, 2]))


def _name_single(cam: Camera, tri: Triangulation) -> str:
    # With one person found, no ordering is possible; the treadmill man stands farther from cam01
    # (measured on frames where both were found: the woman's hips ~2.3 m, the man's 3.2-3.6 m).
    return "front" if _depth(cam, tri) < 2.75 else "back"
