"""A vectorised numpy z-buffer rasteriser: the synthetic data engine's renderer and the shaded previews' one.

PyTorch3D's CPU rasteriser is O(pixels x faces) and takes ~0.8 s for a 5k-face mesh at 224 px
(benchmarks/synth_speed.py), far too slow for making datasets. At the sizes the data engine renders (a
person ~200 px tall, 10-30k faces), most triangles cover only a few pixels, so rasterising
*all faces at once* in numpy is fast: each face enumerates the pixel centres of its bounding box
(faces are bucketed by bounding-box size so the enumeration stays dense), keeps those inside the
triangle, and a lexicographic sort on (pixel, depth) picks the nearest face per pixel.

Output is a face-id buffer plus depth and barycentric coordinates, from which colour, part masks
and vertex visibility follow. Pixel centres are at integer coordinates (OpenCV convention:
pixel (u, v) covers [u - 0.5, u + 0.5)), matching the camera model ``u = f x / z + cx``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Raster:
    """Result of :func:`rasterize` for an ``H x W`` image.

    face: (H, W) int32, index of the nearest face covering the pixel centre, -1 for none.
    depth: (H, W) float32, camera-frame z of that surface point (``inf`` for none).
    bary: (H, W, 3) float32, perspective-correct barycentric weights of the face's three vertices.
    """

    face: np.ndarray
    depth: np.ndarray
    bary: np.ndarray


# Bounding-box side buckets (pixels). A face whose box fits in k x k is enumerated on a k x k grid.
_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048)


def rasterize(uv: np.ndarray, z: np.ndarray, faces: np.ndarray, height: int, width: int, cull: int = 0) -> Raster:
    """Z-buffer a triangle mesh already projected to pixels.

    Args:
        uv: (V, 2) float, projected vertex positions in pixels (x right, y down).
        z: (V,) float, camera-frame depth of each vertex (> 0 in front of the camera).
        faces: (F, 3) int, vertex indices.
        height, width: output size in pixels.

        cull: 0 draws both windings; +1 / -1 draws only faces whose projected signed area
            (``e1 x e2`` in pixel coordinates) is positive / negative. For a closed, consistently
            wound mesh the back faces are hidden anyway, so culling them halves the work without
            changing the result (see :func:`front_face_sign`).
    """
    uv = np.asarray(uv, dtype=np.float64)
    z = np.asarray(z, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    n_pix = height * width
    face_buf = np.full(n_pix, -1, dtype=np.int32)
    depth_buf = np.full(n_pix, np.inf, dtype=np.float32)
    bary_buf = np.zeros((n_pix, 3), dtype=np.float32)

    fz = z[faces]  # (F, 3)
    ok = (fz[:, 0] > 1e-6) & (fz[:, 1] > 1e-6) & (fz[:, 2] > 1e-6)
    tri = uv[faces]  # (F, 3, 2)
    # Element-wise min/max over the 3 corners: numpy's axis reductions over a length-3 axis are slow.
    lo = np.ceil(np.minimum(np.minimum(tri[:, 0], tri[:, 1]), tri[:, 2]) - 1e-9)  # first pixel centre >= min
    hi = np.floor(np.maximum(np.maximum(tri[:, 0], tri[:, 1]), tri[:, 2]) + 1e-9)
    lo = np.maximum(lo, 0)
    hi = np.minimum(hi, [width - 1, height - 1])
    ok &= (hi[:, 0] >= lo[:, 0]) & (hi[:, 1] >= lo[:, 1])
    # Signed doubled area; degenerate faces cover no pixel centre.
    e1 = tri[:, 1] - tri[:, 0]
    e2 = tri[:, 2] - tri[:, 0]
    area = e1[:, 0] * e2[:, 1] - e1[:, 1] * e2[:, 0]
    ok &= np.abs(area) > 1e-12
    if cull:
        ok &= np.sign(area) == np.sign(cull)
    idx = np.nonzero(ok)[0]
    if idx.size == 0:
        return Raster(face_buf.reshape(height, width), depth_buf.reshape(height, width),
                      bary_buf.reshape(height, width, 3))
    # Edge functions in float32: pixel coordinates < 2^11 keep ~1e-4 px precision, at half the memory traffic.
    tri32 = tri.astype(np.float32)
    lo32 = lo.astype(np.float32)
    span = np.maximum(hi[idx, 0] - lo[idx, 0], hi[idx, 1] - lo[idx, 1]) + 1  # box side in pixels

    pix_all, fid_all, dep_all, bar_all = [], [], [], []
    prev = 0
    for k in _BUCKETS:
        sel = idx[(span > prev) & (span <= k)]
        prev = k
        if sel.size == 0:
            continue
        # Enumerate a k x k grid from each face's box corner, in chunks to bound memory.
        chunk = max(1, 400_000 // (k * k))
        gy, gx = np.mgrid[0:k, 0:k].astype(np.float32)
        gx = gx.ravel()
        gy = gy.ravel()
        for s in range(0, sel.size, chunk):
            f = sel[s:s + chunk]
            px = lo32[f, 0:1] + gx[None, :]  # (n, k*k)
            py = lo32[f, 1:2] + gy[None, :]
            t = tri32[f]
            inv_area = (1.0 / area[f][:, None]).astype(np.float32)
            # Barycentrics of pixel centres via edge functions.
            w0 = ((t[:, 1:2, 0] - px) * (t[:, 2:3, 1] - py) - (t[:, 1:2, 1] - py) * (t[:, 2:3, 0] - px)) * inv_area
            w1 = ((t[:, 2:3, 0] - px) * (t[:, 0:1, 1] - py) - (t[:, 2:3, 1] - py) * (t[:, 0:1, 0] - px)) * inv_area
            w2 = np.float32(1.0) - w0 - w1
            inside = (w0 >= 0) & (w1 >= 0) & (w2 >= 0)
            inside &= (px <= hi[f, 0:1]) & (py <= hi[f, 1:2])
            r, c = np.nonzero(inside)
            if r.size == 0:
                continue
            ff = f[r]
            # Perspective-correct depth and barycentrics: 1/z interpolates linearly in screen space.
            zf = fz[ff]
            q0 = w0[r, c].astype(np.float64) / zf[:, 0]
            q1 = w1[r, c].astype(np.float64) / zf[:, 1]
            q2 = w2[r, c].astype(np.float64) / zf[:, 2]
            inv_z = q0 + q1 + q2
            bp = np.stack([q0, q1, q2], axis=1) / inv_z[:, None]
            pix_all.append(py[r, c].astype(np.int64) * width + px[r, c].astype(np.int64))
            fid_all.append(ff)
            dep_all.append(1.0 / inv_z)
            bar_all.append(bp)
    if not pix_all:
        return Raster(face_buf.reshape(height, width), depth_buf.reshape(height, width),
                      bary_buf.reshape(height, width, 3))
    pix = np.concatenate(pix_all)
    fid = np.concatenate(fid_all)
    dep = np.concatenate(dep_all)
    bar = np.concatenate(bar_all)
    # Nearest fragment per pixel; ties broken by face id so the result is deterministic.
    order = np.lexsort((fid, dep, pix))
    pix_s = pix[order]
    first = np.ones(pix_s.size, dtype=bool)
    first[1:] = pix_s[1:] != pix_s[:-1]
    win = order[first]
    face_buf[pix[win]] = fid[win]
    depth_buf[pix[win]] = dep[win]
    bary_buf[pix[win]] = bar[win]
    return Raster(face_buf.reshape(height, width), depth_buf.reshape(height, width),
                  bary_buf.reshape(height, width, 3))


def front_face_sign(verts: np.ndarray, faces: np.ndarray) -> int:
    """The ``cull`` value that keeps front faces of a closed mesh in the OpenCV camera frame.

    With outward normals (positive signed volume), a face that looks at the camera has a normal
    with negative z, and its projection (x right, y down) has negative signed area. Returns 0 when
    the winding is inconsistent (signed volume near zero), meaning: do not cull.
    """
    v = np.asarray(verts, dtype=np.float64)
    f = np.asarray(faces, dtype=np.int64)
    vol = np.einsum("ij,ij->i", v[f[:, 0]], np.cross(v[f[:, 1]], v[f[:, 2]])).sum() / 6.0
    hull = np.ptp(v, axis=0).prod()
    if abs(vol) < 0.05 * hull:
        return 0
    return -1 if vol > 0 else 1


def vertex_visibility(
    raster: Raster,
    uv: np.ndarray,
    z: np.ndarray,
    allowed_faces: np.ndarray | None = None,
    tol: float = 0.03,
) -> np.ndarray:
    """Which points are visible in a rendered z-buffer.

    A point is visible when its rounded pixel lies in the image, the pixel shows a surface
    (optionally one of ``allowed_faces``, a (F,) bool mask, e.g. the target person's faces) and that
    surface is not more than ``tol`` (camera units, metres) in front of the point. The tolerance
    absorbs the distance between a vertex and the rasterised surface of a decimated mesh.

    Args:
        raster: z-buffer of the scene.
        uv: (P, 2) projected points in pixels; z: (P,) their depths.
    Returns:
        (P,) bool.
    """
    h, w = raster.face.shape
    px = np.rint(uv[:, 0]).astype(np.int64)
    py = np.rint(uv[:, 1]).astype(np.int64)
    inside = (px >= 0) & (px < w) & (py >= 0) & (py < h) & (z > 0)
    vis = np.zeros(len(uv), dtype=bool)
    i = np.nonzero(inside)[0]
    f = raster.face[py[i], px[i]]
    d = raster.depth[py[i], px[i]]
    ok = (f >= 0) & (d >= z[i] - tol)
    if allowed_faces is not None:
        ok &= allowed_faces[np.maximum(f, 0)] & (f >= 0)
    vis[i] = ok
    return vis
