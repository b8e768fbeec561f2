"""Regenerate docs/gallery/: fits on Debian opencv-doc photos, clean and with a noise block over the legs.

    python docs/gallery/make_gallery.py [--method keypoints|neural ...]

Writes only our renders (``<photo>_<method>.png``, ``<photo>_occluded_<method>.png`` and, for the neural
method, ``*_occlusion.png``); the photos themselves are not copied into the repo.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
PHOTOS = ["basketball1.png", "basketball2.png", "messi5.jpg"]
HERE = Path(__file__).parent


def occlude_legs(img: np.ndarray, kp: np.ndarray) -> np.ndarray:
    """A block of our own random noise over both legs, from mid-thigh to below the ankles."""
    from neuralfit.detect import BLAZEPOSE33_NAMES as N

    pts = {n: kp[N.index(n), :2] for n in ("left_hip", "right_hip", "left_knee", "right_knee",
                                            "left_ankle", "right_ankle")}
    hip_y = (pts["left_hip"][1] + pts["right_hip"][1]) / 2
    knee_y = (pts["left_knee"][1] + pts["right_knee"][1]) / 2
    leg = knee_y - hip_y
    xs = [p[0] for p in pts.values()]
    y0 = int(hip_y + 0.5 * leg)
    y1 = int(min(img.shape[0], max(pts["left_ankle"][1], pts["right_ankle"][1]) + 0.1 * leg))
    x0, x1 = int(max(0, min(xs) - 0.3 * leg)), int(min(img.shape[1], max(xs) + 0.3 * leg))
    out = img.copy()
    noise = np.random.default_rng(0).integers(0, 255, size=(y1 - y0, x1 - x0, 1), dtype=np.uint8)
    out[y0:y1, x0:x1] = np.repeat(noise, 3, axis=2) // 2 + np.array([90, 60, 30], np.uint8)
    return out


def small(img: np.ndarray, height: int = 300) -> np.ndarray:
    import cv2

    w = int(round(img.shape[1] * height / img.shape[0]))
    return cv2.resize(img, (w, height), interpolation=cv2.INTER_AREA)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--method", action="append", default=None, choices=["keypoints", "neural", "regressor"])
    args = ap.parse_args()
    from neuralfit.io.images import occlusion_picture, read_image, save_png
    from neuralfit.pipeline import ImageFitter

    for method in args.method or ["keypoints"]:
        with ImageFitter(config=None if method is None else _cfg(method)) as fitter:
            for name in PHOTOS:
                if not (DATA / name).is_file():
                    continue
                img = read_image(DATA / name)
                stem = Path(name).stem
                r = fitter.fit([img])[0]
                save_png(HERE / f"{stem}_{method}.png", small(r.overlay))
                occluded = occlude_legs(img, r.people[0].keypoints)
                ro = fitter.fit([occluded])[0]
                if ro.ok:
                    save_png(HERE / f"{stem}_occluded_{method}.png", small(ro.overlay))
                    if ro.occlusion is not None:
                        pic = occlusion_picture(occluded, ro.occlusion, ro.body_mask)
                        save_png(HERE / f"{stem}_occluded_{method}_occlusion.png", small(pic))
                print(name, method, r.status, ro.status)


def _cfg(method: str):
    from neuralfit.pipeline import FitImageConfig

    return FitImageConfig(method=method)


if __name__ == "__main__":
    main()
