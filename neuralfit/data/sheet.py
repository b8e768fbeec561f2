"""Contact sheets of synthetic datasets: images with part-mask tint, occluder outlines and keypoints."""

from __future__ import annotations

import os
from pathlib import Path

import cv2
import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path

# LSP-14 limbs in spin24 indices, for the skeleton overlay.
_LIMBS = [(0, 1), (1, 2), (3, 4), (4, 5), (6, 7), (7, 8), (9, 10), (10, 11), (8, 12), (9, 12), (12, 13),
          (2, 14), (3, 14), (14, 16), (16, 15), (15, 12)]


def _palette() -> np.ndarray:
    hsv = np.stack([np.linspace(0, 179, 24, endpoint=False), np.full(24, 200), np.full(24, 255)], 1)
    rgb = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]
    return np.concatenate([[[0, 0, 0]], rgb]).astype(np.uint8)


def render_tile(root: Path, ann: dict[str, np.ndarray], i: int) -> np.ndarray:
    """One annotated tile (BGR uint8): image tinted by part mask, occluders outlined, keypoints drawn.

    Visible keypoints are green, keypoints hidden by occluders or the body itself are red, and
    the skeleton joins the LSP-14 joints.
    """
    img = cv2.imread(str(root / ann["imgname"][i]))
    if img is None:
        raise NeuralfitError(f"cannot read image {root / ann['imgname'][i]}")
    out = img.copy()
    if "partseg" in ann:
        part = cv2.imread(str(root / ann["partseg"][i]), cv2.IMREAD_GRAYSCALE)
        if part is not None:
            col = _palette()[np.minimum(part, 24)]
            m = part > 0
            out[m] = (0.45 * out[m] + 0.55 * col[m]).astype(np.uint8)
    if "occluder" in ann:
        occ = cv2.imread(str(root / ann["occluder"][i]), cv2.IMREAD_GRAYSCALE)
        if occ is not None:
            for val, colour in ((1, (255, 255, 0)), (2, (255, 0, 255))):
                cs, _ = cv2.findContours((occ == val).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
                cv2.drawContours(out, cs, -1, colour, 1)
    kp = ann["part"][i]
    for a, b in _LIMBS:
        pa = tuple(int(round(x)) for x in kp[a, :2])
        pb = tuple(int(round(x)) for x in kp[b, :2])
        cv2.line(out, pa, pb, (255, 255, 255), 1, cv2.LINE_AA)
    for u, v, vis in kp:
        cv2.circle(out, (int(round(u)), int(round(v))), 2, (0, 220, 0) if vis > 0 else (0, 0, 255), -1, cv2.LINE_AA)
    inv = 1 - kp[:, 2].mean()
    cv2.putText(out, f"{i} inv {inv:.2f}", (3, 12), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (255, 255, 255), 1, cv2.LINE_AA)
    return out


def contact_sheet(dataset: str | os.PathLike, out_path: str | os.PathLike, n: int = 64, cols: int = 8,
                  tile: int = 160) -> Path:
    """Write a grid of the first ``n`` annotated samples of a synthetic dataset folder to ``out_path``."""
    root = Path(dataset)
    path = root / "annotations.npz"
    if not path.is_file():
        raise NeuralfitError(f"{path} does not exist; run `neuralfit synth` first")
    with np.load(path, allow_pickle=False) as z:
        ann = {k: z[k] for k in z.files}
    n = min(n, len(ann["imgname"]))
    tiles = [cv2.resize(render_tile(root, ann, i), (tile, tile), interpolation=cv2.INTER_AREA) for i in range(n)]
    rows = -(-n // cols)
    sheet = np.zeros((rows * tile, cols * tile, 3), np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * tile:(r + 1) * tile, c * tile:(c + 1) * tile] = t
    out = Path(out_path)
    # A preview: 5 bits per channel roughly halves the PNG without visible change.
    sheet &= np.uint8(0xF8)
    ok, buf = cv2.imencode(out.suffix or ".png", sheet, [cv2.IMWRITE_PNG_COMPRESSION, 9])
    if not ok:
        raise NeuralfitError(f"cannot encode contact sheet as {out.suffix!r}")
    with atomic_path(out) as tmp:
        tmp.write_bytes(buf.tobytes())
    return out
