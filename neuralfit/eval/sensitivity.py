"""PARE-style occlusion sensitivity: per-joint error maps of a sliding patch, and the sensitivity mesh.

A patch (gray by default, as in PARE; or the AdvOcc texture) slides over the crop; at every position
the method's per-joint errors against a reference (ground truth, or the method's own prediction on
the clean image when there is none) are recorded. :func:`heatmap_grid` draws one error map per joint
(value at a pixel = error when the patch is centred there). :func:`vertex_sensitivity` gives the
NeuralSMPL occlusion-sensitivity mesh: each vertex's value is the mean joint error over the patch
positions that cover the vertex's projection.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.eval import metrics as M
from neuralfit.eval.protocols import EvalSample, Method, paste_patches, patch_positions, patch_texture, scaled


@dataclass
class SensitivityResult:
    """Errors of one sweep.

    Attributes:
        centres: (Py, Px, 2) patch centres (x, y) in crop pixels.
        errors: (Py, Px, J) per-joint errors in mm (pelvis-aligned) with the patch at each position.
        baseline: (J,) per-joint errors without a patch.
        size, stride: patch side and step in crop pixels.
    """

    centres: np.ndarray
    errors: np.ndarray
    baseline: np.ndarray
    size: int
    stride: int


def occlusion_sensitivity(sample: EvalSample, method: Method, size224: int = 40, stride224: int = 10,
                          patch: str = "gray", reference: np.ndarray | None = None, seed: int = 0,
                          batch_size: int = 32, progress: bool = False) -> SensitivityResult:
    """Slide a patch over ``sample.image`` and record the method's per-joint LSP-14 errors.

    Args:
        sample: the crop; ``sample.joints3d`` is the reference unless ``reference`` is given.
        method: a :data:`~neuralfit.eval.protocols.Method`.
        size224, stride224: patch side and stride in 224-pixel units.
        patch: "gray" (PARE's uniform gray square) or "textured" (the AdvOcc texture).
        reference: (14, 3) joints to measure against (e.g. the clean prediction for an unannotated image).
    """
    if patch not in ("gray", "textured"):
        raise NeuralfitError(f"patch must be 'gray' or 'textured', got {patch!r}")
    size, stride = scaled(size224, sample.res), scaled(stride224, sample.res)
    ref = sample.joints3d if reference is None else np.asarray(reference, np.float64)
    if ref.shape != (14, 3):
        raise NeuralfitError(f"reference joints must have shape (14, 3), got {ref.shape}")
    tex = np.full((size, size, 3), 128, np.uint8) if patch == "gray" else patch_texture(size, seed, sample.index)
    pos = patch_positions(sample.res, size, stride)
    n = int(round(np.sqrt(len(pos))))

    def errs(images: np.ndarray) -> np.ndarray:
        pred = np.asarray(method(images, [sample] * len(images)).joints3d, np.float64)
        gt = np.repeat(ref[None], len(images), 0)
        return 1000.0 * M.joint_errors(pred, gt, root=M.LSP14_PELVIS)

    chunks = range(0, len(pos), batch_size)
    if progress:
        from tqdm import tqdm

        chunks = tqdm(chunks, desc="sweep", unit="batch")
    out = [errs(paste_patches(sample.image, tex, pos[a:a + batch_size])[0]) for a in chunks]
    baseline = errs(sample.image[None])[0]
    centres = (pos + size / 2.0).reshape(n, n, 2)
    return SensitivityResult(centres, np.concatenate(out).reshape(n, n, -1), baseline, size, stride)


def dense_map(result: SensitivityResult, values: np.ndarray, res: int) -> np.ndarray:
    """(Py, Px) values at the patch centres -> (res, res) map at pixel centres.

    Bilinear between patch centres (exact at the centres), the nearest edge value outside them.
    """
    c = result.centres
    xs, ys = c[0, :, 0], c[:, 0, 1]
    pix = np.arange(res) + 0.5  # pixel centres
    fx = np.clip((pix - xs[0]) / max(xs[-1] - xs[0], 1e-9) * (len(xs) - 1), 0, len(xs) - 1)
    fy = np.clip((pix - ys[0]) / max(ys[-1] - ys[0], 1e-9) * (len(ys) - 1), 0, len(ys) - 1)
    x0, y0 = np.floor(fx).astype(int), np.floor(fy).astype(int)
    x1, y1 = np.minimum(x0 + 1, len(xs) - 1), np.minimum(y0 + 1, len(ys) - 1)
    wx, wy = (fx - x0)[None, :], (fy - y0)[:, None]
    v = np.asarray(values, np.float64)
    top = v[y0][:, x0] * (1 - wx) + v[y0][:, x1] * wx
    bottom = v[y1][:, x0] * (1 - wx) + v[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def _colour(values: np.ndarray, vmax: float) -> np.ndarray:
    """Values (any shape) -> RGB uint8 with the JET colour map on [0, vmax]; NaN -> gray."""
    v = np.nan_to_num(np.asarray(values, np.float64) / max(vmax, 1e-9), nan=0.0).clip(0, 1)
    flat = (v.reshape(-1, 1) * 255).astype(np.uint8)
    rgb = cv2.applyColorMap(flat, cv2.COLORMAP_JET)[:, 0, ::-1].reshape(v.shape + (3,))
    rgb = rgb.copy()
    rgb[~np.isfinite(np.asarray(values, np.float64))] = 160
    return rgb


def heatmap_grid(result: SensitivityResult, image: np.ndarray, joint_names: list[str] | None = None,
                 cols: int = 5, alpha: float = 0.6) -> np.ndarray:
    """RGB uint8 grid: one tile per joint plus the joint mean, error maps blended over the image.

    All tiles share one colour scale (0 .. the largest error), written in each tile's title with the
    joint's baseline (no patch) error.
    """
    res = image.shape[0]
    J = result.errors.shape[-1]
    names = joint_names or [f"joint {j}" for j in range(J)]
    maps = [(names[j], result.errors[..., j], result.baseline[j]) for j in range(J)]
    maps.append(("mean", result.errors.mean(-1), result.baseline.mean()))
    vmax = float(np.nanmax(result.errors))
    tiles = []
    for name, vals, base in maps:
        heat = _colour(dense_map(result, vals, res), vmax)
        tile = (alpha * heat + (1 - alpha) * image).astype(np.uint8)
        tile = cv2.copyMakeBorder(tile, 18, 2, 2, 2, cv2.BORDER_CONSTANT, value=(255, 255, 255))
        cv2.putText(tile, f"{name} ({base:.0f}->{np.nanmax(vals):.0f}mm)", (3, 13), cv2.FONT_HERSHEY_SIMPLEX,
                    0.33, (0, 0, 0), 1, cv2.LINE_AA)
        tiles.append(tile)
    rows = []
    blank = np.full_like(tiles[0], 255)
    for r in range(0, len(tiles), cols):
        row = tiles[r:r + cols] + [blank] * (cols - len(tiles[r:r + cols]))
        rows.append(np.concatenate(row, 1))
    bar = _colour(np.tile(np.linspace(0, vmax, rows[0].shape[1])[None], (12, 1)), vmax)
    bar = cv2.copyMakeBorder(bar, 0, 14, 0, 0, cv2.BORDER_CONSTANT, value=(255, 255, 255))
    cv2.putText(bar, "0 mm", (2, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1, cv2.LINE_AA)
    cv2.putText(bar, f"{vmax:.0f} mm", (bar.shape[1] - 60, 24), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                cv2.LINE_AA)
    return np.concatenate(rows + [bar], 0)


def vertex_sensitivity(result: SensitivityResult, uv: np.ndarray) -> np.ndarray:
    """(V,) mean joint error (mm) over the patch positions covering each vertex's projection (NaN: never).

    Args:
        uv: (V, 2) vertex projections in crop pixels.
    """
    uv = np.asarray(uv, np.float64)
    if uv.ndim != 2 or uv.shape[1] != 2:
        raise NeuralfitError(f"vertex projections must have shape (V, 2), got {uv.shape}")
    c = result.centres.reshape(-1, 2)
    e = result.errors.reshape(len(c), -1).mean(-1)
    half = result.size / 2.0
    cover = (np.abs(uv[:, None, 0] - c[None, :, 0]) < half) & (np.abs(uv[:, None, 1] - c[None, :, 1]) < half)
    n = cover.sum(1)
    s = cover.astype(np.float64) @ e
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def write_sweep(out_dir: str | os.PathLike, result: SensitivityResult, image: np.ndarray,
                joint_names: list[str] | None = None, vertices: np.ndarray | None = None,
                faces: np.ndarray | None = None, focal: float | None = None) -> dict[str, Any]:
    """Write ``heatmaps.png``, ``sensitivity.npz`` and, with a mesh, ``sensitivity_mesh.{ply,png}``.

    Args:
        vertices: (V, 3) camera-frame mesh (ground truth or prediction) to colour; faces (F, 3); focal in
            crop pixels (default 5000 res / 224).
    Returns a summary dict (also written as ``sweep.json``).
    """
    from neuralfit.io import save_json, save_npz
    from neuralfit.io.atomic import atomic_path

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    res = image.shape[0]
    files = {}
    with atomic_path(out / "heatmaps.png") as tmp:
        cv2.imwrite(str(tmp), heatmap_grid(result, image, joint_names)[..., ::-1])
    files["heatmaps"] = str(out / "heatmaps.png")
    arrays = {"centres": result.centres, "errors": result.errors, "baseline": result.baseline}
    if vertices is not None and faces is not None:
        from neuralfit.io.mesh import save_mesh
        from neuralfit.render.camera import default_focal
        from neuralfit.render.shaded import render_shaded

        f = default_focal(res) if focal is None else float(focal)
        v = np.asarray(vertices, np.float64)
        uv = v[:, :2] / np.clip(v[:, 2:3], 1e-6, None) * f + res / 2.0
        vs = vertex_sensitivity(result, uv)
        finite = vs[np.isfinite(vs)]
        colours = _colour(vs, float(finite.max()) if finite.size else 1.0)
        save_mesh(out / "sensitivity_mesh.ply", v.astype(np.float32), np.asarray(faces), colours)
        pic = render_shaded(v, faces, colours, (res, res), f, background=image)
        with atomic_path(out / "sensitivity_mesh.png") as tmp:
            cv2.imwrite(str(tmp), np.concatenate([image, pic], 1)[..., ::-1])
        arrays["vertex_sensitivity"] = vs
        files["mesh_ply"], files["mesh_png"] = str(out / "sensitivity_mesh.ply"), str(out / "sensitivity_mesh.png")
    save_npz(out / "sensitivity.npz", **arrays)
    files["npz"] = str(out / "sensitivity.npz")
    summary = {"patch_size_px": result.size, "stride_px": result.stride,
               "positions": int(np.prod(result.errors.shape[:2])),
               "baseline_mpjpe_mm": float(result.baseline.mean()), "max_mpjpe_mm": float(result.errors.mean(-1).max()),
               "mean_mpjpe_mm": float(result.errors.mean()), "files": files}
    save_json(out / "sweep.json", summary)
    return summary
