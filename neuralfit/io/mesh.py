"""Atomic mesh writers: Wavefront OBJ and binary PLY (with optional per-vertex colours)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path


def _check(vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None) -> tuple:
    v = np.asarray(vertices, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    if v.ndim != 2 or v.shape[1] != 3 or f.ndim != 2 or f.shape[1] != 3:
        raise NeuralfitError(f"mesh needs (V, 3) vertices and (F, 3) faces, got {v.shape} and {f.shape}")
    if f.size and (f.min() < 0 or f.max() >= len(v)):
        raise NeuralfitError(f"mesh faces index vertices outside 0..{len(v) - 1}")
    c = None
    if colors is not None:
        c = np.asarray(colors)
        if c.shape != v.shape:
            raise NeuralfitError(f"vertex colours have shape {c.shape}, expected {v.shape}")
        c = c if c.dtype == np.uint8 else np.clip(np.round(c * 255.0), 0, 255).astype(np.uint8)
    return v, f, c


def save_obj(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> None:
    """Write an OBJ (1-based faces; colours, if given, as the common ``v x y z r g b`` extension)."""
    v, f, c = _check(vertices, faces, colors)
    lines = []
    if c is None:
        lines += [f"v {x:.6f} {y:.6f} {z:.6f}" for x, y, z in v]
    else:
        cf = c / 255.0
        lines += [
            f"v {x:.6f} {y:.6f} {z:.6f} {r:.4f} {g:.4f} {b:.4f}"
            for (x, y, z), (r, g, b) in zip(v, cf, strict=True)
        ]
    lines += [f"f {a + 1} {b + 1} {d + 1}" for a, b, d in f]
    with atomic_path(path) as tmp:
        Path(tmp).write_text("\n".join(lines) + "\n")


def save_ply(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> None:
    """Write a binary little-endian PLY with float32 vertices, optional uint8 RGB, int32 triangles."""
    v, f, c = _check(vertices, faces, colors)
    header = ["ply", "format binary_little_endian 1.0", f"element vertex {len(v)}",
              "property float x", "property float y", "property float z"]  # fmt: skip
    vfields = [("x", "<f4"), ("y", "<f4"), ("z", "<f4")]
    if c is not None:
        header += ["property uchar red", "property uchar green", "property uchar blue"]
        vfields += [("red", "u1"), ("green", "u1"), ("blue", "u1")]
    header += [f"element face {len(f)}", "property list uchar int vertex_indices", "end_header"]
    vert = np.zeros(len(v), dtype=vfields)
    vert["x"], vert["y"], vert["z"] = v[:, 0], v[:, 1], v[:, 2]
    if c is not None:
        vert["red"], vert["green"], vert["blue"] = c[:, 0], c[:, 1], c[:, 2]
    face = np.zeros(len(f), dtype=[("n", "u1"), ("i", "<i4", (3,))])
    face["n"], face["i"] = 3, f
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(("\n".join(header) + "\n").encode("ascii"))
        fh.write(vert.tobytes())
        fh.write(face.tobytes())


def save_mesh(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> None:
    """Pick the writer from the suffix (``.obj`` or ``.ply``)."""
    suffix = Path(path).suffix.lower()
    if suffix == ".obj":
        save_obj(path, vertices, faces, colors)
    elif suffix == ".ply":
        save_ply(path, vertices, faces, colors)
    else:
        raise NeuralfitError(f"mesh output {path} has suffix {suffix!r}, expected .obj or .ply")
