"""Object occluders: textured rectangles, ellipses, polygons, bars and photo crops (SynthOcc style).

Used by the synthetic engine (with coverage control against the target's silhouette) and by the
dataset loaders as an on-the-fly augmentation.
"""

from __future__ import annotations

import cv2
import numpy as np

from neuralfit.data.appearance import PhotoBank, procedural_image

SHAPES = ("rect", "ellipse", "polygon", "bar")


def _unit_outline(rng: np.random.Generator, shape: str) -> np.ndarray:
    """(K, 2) outline of a random shape of radius ~1 around the origin, randomly rotated."""
    if shape == "rect":
        a = rng.uniform(0.4, 1.0)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64)
    elif shape == "bar":
        a = rng.uniform(0.08, 0.25)
        pts = np.array([[-1, -a], [1, -a], [1, a], [-1, a]], dtype=np.float64) * [1.6, 1.6]
    elif shape == "ellipse":
        t = np.linspace(0, 2 * np.pi, 32, endpoint=False)
        pts = np.stack([np.cos(t), rng.uniform(0.4, 1.0) * np.sin(t)], 1)
    else:
        k = int(rng.integers(5, 10))
        t = np.sort(rng.uniform(0, 2 * np.pi, k))
        r = rng.uniform(0.5, 1.0, k)
        pts = np.stack([r * np.cos(t), r * np.sin(t)], 1)
    a = rng.uniform(0, np.pi)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return pts @ rot.T


def _draw(outline: np.ndarray, centre: np.ndarray, size: float, h: int, w: int) -> np.ndarray:
    mask = np.zeros((h, w), np.uint8)
    pts = np.round((outline * size + centre) * 16).astype(np.int32)  # 4 fractional bits
    cv2.fillPoly(mask, [pts], 1, lineType=cv2.LINE_8, shift=4)
    return mask


def occluder_texture(rng: np.random.Generator, h: int, w: int, photos: PhotoBank | None) -> np.ndarray:
    """(h, w, 3) BGR uint8 occluder appearance: a photo crop or a procedural texture, with a shading ramp."""
    if photos is not None and len(photos) and rng.random() < 0.5:
        tex = photos.random_crop(rng, h, w)
    else:
        tex = procedural_image(rng, h, w)
    ramp = np.linspace(rng.uniform(0.6, 1.0), rng.uniform(0.9, 1.2), w, dtype=np.float32)[None, :, None]
    return np.clip(tex * ramp, 0, 255).astype(np.uint8)


def place_occluder(
    rng: np.random.Generator,
    target_mask: np.ndarray,
    coverage: float,
    shape: str | None = None,
    anchor: np.ndarray | None = None,
) -> np.ndarray:
    """Mask (H, W) uint8 of one occluder covering about ``coverage`` of ``target_mask``'s pixels.

    The shape is centred on ``anchor`` (x, y) (default: a random target pixel) and its size is
    found by bisection, since coverage grows monotonically with the size of a shape about a
    fixed centre. Returns the mask at the best size found (coverage within ~2 % when reachable).
    """
    h, w = target_mask.shape
    area = int(target_mask.sum())
    shape = shape or SHAPES[int(rng.integers(len(SHAPES)))]
    outline = _unit_outline(rng, shape)
    if anchor is None:
        ys, xs = np.nonzero(target_mask)
        if len(ys) == 0:
            anchor = np.array([w / 2, h / 2])
        else:
            i = int(rng.integers(len(ys)))
            anchor = np.array([xs[i], ys[i]], dtype=np.float64)
    anchor = anchor + rng.normal(0, 0.03 * w, 2)
    if area == 0:
        return _draw(outline, anchor, rng.uniform(0.1, 0.3) * w, h, w)
    lo, hi = 1.0, 2.0 * max(h, w)
    best = _draw(outline, anchor, lo, h, w)
    for _ in range(14):
        mid = 0.5 * (lo + hi)
        m = _draw(outline, anchor, mid, h, w)
        cov = (m & target_mask).sum() / area
        if cov < coverage:
            lo = mid
        else:
            hi = mid
            best = m
        if abs(cov - coverage) < 0.01:
            best = m
            break
    return best


def composite(img: np.ndarray, mask: np.ndarray, texture: np.ndarray) -> np.ndarray:
    """Paste ``texture`` into ``img`` where ``mask`` is set (both (H, W, 3) uint8)."""
    out = img.copy()
    m = mask.astype(bool)
    out[m] = texture[m]
    return out


def random_occlusion(
    rng: np.random.Generator,
    img: np.ndarray,
    photos: PhotoBank | None = None,
    region: tuple[int, int, int, int] | None = None,
    size_range: tuple[float, float] = (0.1, 0.4),
) -> tuple[np.ndarray, np.ndarray]:
    """Paste one random textured occluder into ``img`` (augmentation without a target mask).

    region: (x0, y0, x1, y1) where the occluder's centre is drawn (default: the whole image).
    size_range: occluder radius as a fraction of the image side. Returns (image, mask (H, W) uint8).
    """
    h, w = img.shape[:2]
    x0, y0, x1, y1 = region or (0, 0, w, h)
    centre = np.array([rng.uniform(x0, x1), rng.uniform(y0, y1)])
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    mask = _draw(_unit_outline(rng, shape), centre, rng.uniform(*size_range) * max(h, w), h, w)
    return composite(img, mask, occluder_texture(rng, h, w, photos)), mask
