"""Measure where BlazePose puts its limb keypoints on a body, and write the calibration JSON the body loads.

A detector's "hip" or "ankle" is not the body model's joint: on the free body BlazePose's hips lie ~2.5 cm
inside the hip joints and its ankles ~2.7 cm up the shin. Fitting BlazePose's 2D keypoints to the raw joints
makes the fit bend and stretch limbs to absorb that difference. This tool renders clean synthetic people with
known bodies (``neuralfit.data.synth``, test-clean preset: no occluders), runs mediapipe on each image and
fits every keypoint the body defines as a linear combination of nearby joints and surface landmarks
(hand points: BlazePose's are near the knuckles, the body's landmarks are finger tips),

    X_k = P_j + sum_c beta_c (P_c - P_j),        (the weights 1 - sum(beta), beta_c sum to 1)

so the keypoint moves with the skeleton and scales with the shape, and stays a row of the body's linear
keypoint map (``neuralfit.body.keypoints``). The synthetic camera is the 5000 px crop camera (people tens of
metres away), so projection is affine: u - c = f / Z * xy, and the 2D residual is linear in beta. Views come
from every side (random yaw), so the offset along the viewing direction of one image is seen sideways in
others. Huber-weighted least squares (2 cm), with a small ridge toward the joint itself. Detections whose
limbs disagree with the body by more than 8 cm on average (mediapipe on the wrong pose) are dropped; a
left/right swapped detection is swapped back.

    python tools/calibrate_keypoints.py --images 6000 --out neuralfit/body/assets/neuralfit_free_keypoints.json

Runs ~12 images/s on one CPU core. ``--body PATH`` calibrates real SMPL files (pass the JSON to
``load_body_model(..., keypoint_calibration=)``); nothing is written until all images are measured.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from neuralfit.body.keypoints import _J, BLAZEPOSE33, LANDMARK_NAMES, LIMB12_NAMES
from neuralfit.data.synth import SynthConfig, SynthEngine, load_body
from neuralfit.detect import PersonDetector
from neuralfit.io.atomic import save_json, save_npz

#: BlazePose keypoint -> (the joint or surface landmark it stands for, the neighbours its offset may use).
NEIGHBOURS: dict[str, tuple[str, tuple[str, ...]]] = {
    "nose": ("nose", ("head", "neck", "leye", "reye")),
    "left_eye": ("leye", ("head", "nose", "lear")),
    "right_eye": ("reye", ("head", "nose", "rear")),
    "left_ear": ("lear", ("head", "neck", "leye")),
    "right_ear": ("rear", ("head", "neck", "reye")),
    "mouth_left": ("mouth_l", ("head", "nose", "chin")),
    "mouth_right": ("mouth_r", ("head", "nose", "chin")),
    "left_pinky": ("lpinky", ("lwrist", "lhand")),
    "right_pinky": ("rpinky", ("rwrist", "rhand")),
    "left_index": ("lindex", ("lwrist", "lhand")),
    "right_index": ("rindex", ("rwrist", "rhand")),
    "left_thumb": ("lthumb", ("lwrist", "lhand")),
    "right_thumb": ("rthumb", ("rwrist", "rhand")),
    "left_heel": ("lheel", ("lankle", "lfoot")),
    "right_heel": ("rheel", ("rankle", "rfoot")),
    "left_foot_index": ("lbigtoe", ("lfoot", "lankle")),
    "right_foot_index": ("rbigtoe", ("rfoot", "rankle")),
    "left_shoulder": ("lshoulder", ("lcollar", "lelbow", "neck", "spine3")),
    "right_shoulder": ("rshoulder", ("rcollar", "relbow", "neck", "spine3")),
    "left_elbow": ("lelbow", ("lshoulder", "lwrist", "lhand")),
    "right_elbow": ("relbow", ("rshoulder", "rwrist", "rhand")),
    "left_wrist": ("lwrist", ("lelbow", "lhand")),
    "right_wrist": ("rwrist", ("relbow", "rhand")),
    "left_hip": ("lhip", ("pelvis", "lknee", "spine1", "rhip")),
    "right_hip": ("rhip", ("pelvis", "rknee", "spine1", "lhip")),
    "left_knee": ("lknee", ("lhip", "lankle", "lfoot")),
    "right_knee": ("rknee", ("rhip", "rankle", "rfoot")),
    "left_ankle": ("lankle", ("lknee", "lfoot")),
    "right_ankle": ("rankle", ("rknee", "rfoot")),
}
BP_NAMES = [n for n, _ in BLAZEPOSE33]
#: Columns of the measured ``points`` array: the 24 joints, then the surface landmarks.
POINT_NAMES = list(_J) + LANDMARK_NAMES
#: Keypoints that decide whether mediapipe saw the right pose (the limbs).
LIMBS = list(LIMB12_NAMES)
MIN_CONFIDENCE = 0.7
HUBER_M = 0.02
OUTLIER_M = 0.08
RIDGE = 1e-3


def _mirror(name: str) -> str:
    return name.replace("left", "#").replace("right", "left").replace("#", "right")


def measure(n: int, seed: int, body_spec: str, res: int) -> dict[str, np.ndarray]:
    """Render ``n`` clean people and detect them: keypoints (N, 33, 3), points (N, 24 + L, 3): joints and
    landmark vertices in the camera frame."""
    body = load_body(body_spec)
    eng = SynthEngine(SynthConfig(res=res, occlusion="test-clean", body=body_spec), body=body)
    kps, joints = [], []
    with PersonDetector() as det:
        for i in tqdm(range(n), desc="render + detect"):
            s = eng.sample(i, seed)
            r = s.record
            with torch.no_grad():
                o = body(betas=torch.tensor(r["shape"][None], dtype=torch.float32),
                         global_orient=torch.tensor(r["pose"][None, :3], dtype=torch.float32),
                         body_pose=torch.tensor(r["pose"][None, 3:], dtype=torch.float32), full=False)
            d = det(np.ascontiguousarray(s.image[..., ::-1]))
            if d is None:
                continue
            kps.append(d.keypoints.astype(np.float64))
            joints.append(torch.cat([o.joints, o.landmarks], 1)[0].double().numpy() + r["transl"])
    return {"kp": np.asarray(kps), "points": np.asarray(joints), "focal": np.float64(eng.config.focal),
            "centre": np.float64(res / 2)}


def solve(m: dict[str, np.ndarray], keypoints: list[str] | None = None
          ) -> tuple[dict[str, dict[str, float]], dict[str, dict[str, float]]]:
    """Per keypoint (default: all of ``NEIGHBOURS``) ``{joint: weight}`` and its 2D residuals (cm at the
    person's depth) before/after."""
    kp, J, f, c = m["kp"].copy(), m["points"], float(m["focal"]), float(m["centre"])
    col = {n: i for i, n in enumerate(POINT_NAMES)}
    z = J[:, 0, 2]
    xy = (kp[..., :2] - c) * (z / f)[:, None, None]  # metric, at the pelvis depth
    bp = [BP_NAMES.index(k) for k in LIMBS]
    bp_sw = [BP_NAMES.index(_mirror(k)) for k in LIMBS]
    base = J[:, [col[NEIGHBOURS[k][0]] for k in LIMBS], :2]
    e0 = np.linalg.norm(xy[:, bp] - base, axis=-1).mean(1)
    e1 = np.linalg.norm(xy[:, bp_sw] - base, axis=-1).mean(1)
    swap = e1 < 0.7 * e0
    perm = [BP_NAMES.index(_mirror(n)) for n in BP_NAMES]
    xy[swap], kp[swap] = xy[swap][:, perm], kp[swap][:, perm]
    keep = np.minimum(e0, e1) < OUTLIER_M
    weights, stats = {}, {}
    for k in keypoints or list(NEIGHBOURS):
        j, cand = NEIGHBOURS[k]
        i = BP_NAMES.index(k)
        sel = keep & (kp[:, i, 2] > MIN_CONFIDENCE)
        y = (xy[sel, i] - J[sel, col[j], :2]).reshape(-1)
        a = np.stack([J[sel, col[cc], :2] - J[sel, col[j], :2] for cc in cand], -1).reshape(-1, len(cand))
        w = np.ones(len(y))
        for _ in range(10):
            beta = np.linalg.solve((a * w[:, None]).T @ a + RIDGE * len(y) * np.eye(len(cand)), (a * w[:, None]).T @ y)
            rn = np.linalg.norm((y - a @ beta).reshape(-1, 2), axis=1)
            w = np.repeat(np.minimum(1.0, HUBER_M / np.maximum(rn, 1e-9)), 2)
        before = np.linalg.norm(y.reshape(-1, 2), axis=1)
        weights[k] = {j: round(1.0 - float(beta.sum()), 5), **{cc: round(float(b), 5) for cc, b in zip(cand, beta, strict=True)}}
        weights[k][j] = round(1.0 - sum(v for cc, v in weights[k].items() if cc != j), 5)
        stats[k] = {"n": int(sel.sum()), "median_cm_before": round(100 * float(np.median(before)), 2),
                    "median_cm_after": round(100 * float(np.median(rn)), 2)}
    stats["_"] = {"images": len(kp), "swapped": int(swap.sum()), "dropped": int((~keep).sum())}
    return weights, stats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=6000)
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--body", default="free", help='"free" or a path to real SMPL files')
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--measurements", type=Path, help="cache of the detections (.npz): read if it exists, "
                                                      "else written, so a re-solve skips the rendering")
    ap.add_argument("--points", choices=("limbs", "all"), default="limbs",
                    help="calibrate the 12 limb keypoints (shipped) or also face, hands and feet")
    a = ap.parse_args()
    if a.measurements and a.measurements.exists():
        m = dict(np.load(a.measurements))
    else:
        m = measure(a.images, a.seed, a.body, a.res)
        if a.measurements:
            save_npz(a.measurements, **m)
    weights, stats = solve(m, LIMBS if a.points == "limbs" else None)
    for k, s in stats.items():
        print(k, s)
    doc = {"what": "where mediapipe BlazePose puts its limb keypoints on this body, as joint weights "
                   "(tools/calibrate_keypoints.py)",
           "body": a.body, "images": a.images, "seed": a.seed, "res": a.res,
           "date": datetime.date.today().isoformat(), "residuals": stats, "sets": {"blazepose33": weights}}
    save_json(a.out, doc)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
