"""Atomic mesh writers through trimesh: Wavefront OBJ, binary PLY and glTF binary (GLB), optional
per-vertex colours."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.io.atomic import atomic_path

#: Mesh formats by file suffix.
MESH_SUFFIXES = (".obj", ".ply", ".glb")


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


def save_mesh(
    path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray, colors: np.ndarray | None = None
) -> None:
    """Write a triangle mesh; the format comes from the suffix (``.obj``, ``.ply`` or ``.glb``).

    Vertex order and faces are kept as given (no merging or reordering), so vertex ``i`` of the file is
    vertex ``i`` of the model. GLB stores the vertices in the file's frame: glTF viewers assume y up,
    so a camera-frame (y down) body appears upside down there; :func:`camera_to_gltf` converts.
    """
    import trimesh

    suffix = Path(path).suffix.lower()
    if suffix not in MESH_SUFFIXES:
        raise NeuralfitError(f"mesh output {path} has suffix {suffix!r}, expected one of {', '.join(MESH_SUFFIXES)}")
    v, f, c = _check(vertices, faces, colors)
    mesh = trimesh.Trimesh(v, f, vertex_colors=c, process=False, validate=False)
    with atomic_path(path) as tmp:
        data = mesh.export(file_type=suffix[1:])
        Path(tmp).write_bytes(data if isinstance(data, bytes) else data.encode())


def save_obj(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
             colors: np.ndarray | None = None) -> None:
    """Write an OBJ (see :func:`save_mesh`)."""
    if Path(path).suffix.lower() != ".obj":
        raise NeuralfitError(f"save_obj needs a .obj path, got {path}")
    save_mesh(path, vertices, faces, colors)


def save_ply(path: str | os.PathLike, vertices: np.ndarray, faces: np.ndarray,
             colors: np.ndarray | None = None) -> None:
    """Write a binary PLY (see :func:`save_mesh`)."""
    if Path(path).suffix.lower() != ".ply":
        raise NeuralfitError(f"save_ply needs a .ply path, got {path}")
    save_mesh(path, vertices, faces, colors)


def camera_to_gltf(vertices: np.ndarray) -> np.ndarray:
    """OpenCV camera axes (x right, y down, z forward) -> glTF's (x right, y up, z toward the viewer)."""
    return np.asarray(vertices) * np.array([1.0, -1.0, -1.0])
