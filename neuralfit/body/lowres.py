"""The low-resolution neural mesh: an even, coarse copy of a body's surface that rides on the full mesh.

The neural mesh model renders features at a few hundred vertices, not the ~7-14k of the full body
(the CPU rasteriser costs O(pixels x faces)). Each low-res vertex is stored as barycentric weights on
one triangle of the full mesh in the rest pose, so posing the full mesh (or only the ~2.3k vertices
those triangles touch) and blending gives the low-res vertices exactly on the posed full surface.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from neuralfit.errors import NeuralfitError

#: The seed's downsampled mesh has 858 vertices.
DEFAULT_LOWRES_VERTICES = 858


@dataclass(frozen=True)
class LowResGeometry:
    """Plain-numpy description of a low-res mesh (what is cached / shipped).

    Attributes:
        tri_vertex_ids: (V_low, 3) int, the full-mesh vertices of the triangle each low-res vertex lies on.
        bary: (V_low, 3) float, barycentric weights on those vertices (non-negative, rows sum to 1).
        faces: (F_low, 3) int, low-res triangles indexing the low-res vertices.
    """

    tri_vertex_ids: np.ndarray
    bary: np.ndarray
    faces: np.ndarray


def _largest_component_faces(faces: np.ndarray, num_vertices: int) -> np.ndarray:
    """Faces of the largest edge-connected component (drops eyeballs and other loose parts)."""
    import scipy.sparse as sp
    from scipy.sparse.csgraph import connected_components

    rows = np.concatenate([faces[:, 0], faces[:, 1], faces[:, 2]])
    cols = np.concatenate([faces[:, 1], faces[:, 2], faces[:, 0]])
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(num_vertices, num_vertices))
    _, labels = connected_components(graph, directed=False)
    face_label = labels[faces[:, 0]]
    biggest = np.bincount(face_label).argmax()
    return faces[face_label == biggest]


def closest_points_on_surface(
    vertices: np.ndarray, faces: np.ndarray, points: np.ndarray, k: int = 12
) -> tuple[np.ndarray, np.ndarray]:
    """Closest surface point (P, 3) and its triangle (P,) for each query point.

    Candidates are the triangles around the k nearest mesh vertices (exact for points near a
    reasonably even mesh); avoids trimesh's optional rtree dependency. Used by tests and checks.
    """
    import trimesh
    from scipy.spatial import cKDTree

    _, near = cKDTree(vertices).query(points, k=k)
    # vertex -> incident faces, as a CSR-like list
    order = np.argsort(faces.reshape(-1), kind="stable")
    face_of = order // 3
    starts = np.searchsorted(faces.reshape(-1)[order], np.arange(len(vertices) + 1))
    best_pt = np.zeros_like(points)
    best_tri = np.zeros(len(points), dtype=np.int64)
    for i, p in enumerate(points):
        cand = np.unique(np.concatenate([face_of[starts[v] : starts[v + 1]] for v in near[i]]))
        cp = trimesh.triangles.closest_point(vertices[faces[cand]], np.repeat(p[None], len(cand), 0))
        j = int(np.argmin(np.linalg.norm(cp - p, axis=1)))
        best_pt[i], best_tri[i] = cp[j], cand[j]
    return best_pt, best_tri


def _farthest_points(points: np.ndarray, k: int) -> np.ndarray:
    """k indices by Euclidean farthest point sampling, starting from the topmost point (deterministic)."""
    chosen = np.empty(k, dtype=np.int64)
    chosen[0] = int(np.argmax(points[:, 1]))
    dist = np.linalg.norm(points - points[chosen[0]], axis=1)
    for i in range(1, k):
        chosen[i] = int(np.argmax(dist))
        dist = np.minimum(dist, np.linalg.norm(points - points[chosen[i]], axis=1))
    return chosen


def build_lowres_geometry(
    vertices: np.ndarray, faces: np.ndarray, target_vertices: int = DEFAULT_LOWRES_VERTICES, iters: int = 4
) -> LowResGeometry:
    """Remesh a rest-pose body into an even low-res mesh by geodesic clustering (ACVD-style).

    Why not plain quadric decimation: on limbs it keeps long slivers (edges up to 35 cm on the free
    body at 858 vertices, 99th percentile 26 cm), which leaves whole thighs without a vertex, while the
    neural mesh needs features spread evenly over the skin. Instead:

    1. seed ``target_vertices`` centres by farthest point sampling over the largest connected surface
       (eyeballs and other loose parts are dropped);
    2. a few Lloyd iterations: assign every vertex to its geodesically nearest centre (multi-source
       Dijkstra along mesh edges, so clusters never jump between the legs), move each centre to the
       cluster vertex nearest the cluster's centroid;
    3. every full triangle whose corners lie in three different clusters gives a low-res triangle
       (the dual of the cluster adjacency), duplicates removed.

    Low-res vertices are the centre vertices themselves, stored as a one-hot barycentric on a full
    triangle containing them, so they stay exactly on the posed full surface.

    Args:
        vertices: (V, 3) rest-pose vertices of the full mesh, metres.
        faces: (F, 3) full-mesh triangles.
        target_vertices: number of clusters; the mesh keeps those that form triangles (all but ~1 %).
        iters: Lloyd iterations.

    Returns:
        The low-res geometry, deterministic for a given input.
    """
    import scipy.sparse as sp
    from scipy.sparse.csgraph import dijkstra

    vertices = np.asarray(vertices, dtype=np.float64)
    faces = np.asarray(faces, dtype=np.int64)
    main_faces = _largest_component_faces(faces, len(vertices))
    main = np.unique(main_faces)
    if len(main) < 4 * target_vertices:
        raise NeuralfitError(
            f"a {len(main)}-vertex surface is too coarse for a {target_vertices}-vertex low-res mesh"
        )
    e = mesh_edges(main_faces)
    length = np.linalg.norm(vertices[e[:, 0]] - vertices[e[:, 1]], axis=1) + 1e-9
    n = len(vertices)
    graph = sp.coo_matrix((length, (e[:, 0], e[:, 1])), shape=(n, n)).tocsr()

    centres = main[_farthest_points(vertices[main], target_vertices)]
    for it in range(iters + 1):
        _, _, nearest = dijkstra(
            graph, directed=False, indices=centres, min_only=True, return_predecessors=True
        )
        slot = np.full(n, -1, dtype=np.int64)
        slot[centres] = np.arange(len(centres))
        label = np.where(nearest >= 0, slot[np.maximum(nearest, 0)], -1)
        if it == iters:
            break
        members = np.flatnonzero(label >= 0)
        counts = np.bincount(label[members], minlength=len(centres))
        centroid = np.zeros((len(centres), 3))
        np.add.at(centroid, label[members], vertices[members])
        centroid /= np.maximum(counts, 1)[:, None]
        d = np.linalg.norm(vertices[members] - centroid[label[members]], axis=1)
        order = np.lexsort((d, label[members]))  # by cluster, then distance to its centroid
        first = np.ones(len(order), dtype=bool)
        first[1:] = label[members][order][1:] != label[members][order][:-1]
        centres = members[order][first]

    tri_labels = label[main_faces]  # (F_main, 3)
    distinct = (
        (tri_labels[:, 0] != tri_labels[:, 1])
        & (tri_labels[:, 1] != tri_labels[:, 2])
        & (tri_labels[:, 0] != tri_labels[:, 2])
    )
    low_faces = tri_labels[distinct]
    _, keep = np.unique(np.sort(low_faces, axis=1), axis=0, return_index=True)
    low_faces = low_faces[np.sort(keep)]

    # Centres that ended up in no triangle (a few at finger and toe tips) are dropped.
    used = np.unique(low_faces)
    remap = np.full(len(centres), -1, dtype=np.int64)
    remap[used] = np.arange(len(used))
    centres, low_faces = centres[used], remap[low_faces]

    # One-hot barycentrics: each centre on the first full triangle that has it as a corner.
    flat = main_faces.reshape(-1)
    pos = np.full(n, -1, dtype=np.int64)
    pos[flat[::-1]] = np.arange(len(flat))[::-1]
    where = pos[centres]
    tri_vertex_ids = main_faces[where // 3]
    bary = np.zeros((len(centres), 3), dtype=np.float32)
    bary[np.arange(len(centres)), where % 3] = 1.0
    return LowResGeometry(tri_vertex_ids.astype(np.int64), bary, low_faces.astype(np.int64))


def mesh_edges(faces: np.ndarray | torch.Tensor) -> np.ndarray:
    """Unique undirected edges (E, 2) of a triangle mesh, each with ``i < j``, sorted."""
    f = np.asarray(faces.cpu() if isinstance(faces, torch.Tensor) else faces, dtype=np.int64)
    e = np.concatenate([f[:, [0, 1]], f[:, [1, 2]], f[:, [2, 0]]])
    e = np.sort(e, axis=1)
    return np.unique(e, axis=0)


class LowResMesh(torch.nn.Module):
    """The low-res neural mesh of one body, as torch buffers (moves with ``.to(device)``).

    Attributes:
        faces: (F_low, 3) long.
        edges: (E, 2) long, unique undirected mesh edges (for "not a neighbour" masks in training).
        part_labels: (V_low,) long in 0..23, part of the full vertex with the largest barycentric weight.
        tri_vertex_ids: (V_low, 3) long, full-mesh vertex ids of each low-res vertex's triangle.
        bary: (V_low, 3) float, barycentric weights.
        support: (S,) long, the sorted full-mesh vertices the map touches (S <= 3 V_low).
        support_index: (V_low, 3) long, positions of ``tri_vertex_ids`` inside ``support``.
    """

    def __init__(self, geometry: LowResGeometry, num_full_vertices: int, full_part_labels: torch.Tensor):
        super().__init__()
        tri = torch.as_tensor(geometry.tri_vertex_ids, dtype=torch.long)
        bary = torch.as_tensor(geometry.bary, dtype=torch.float32)
        if tri.ndim != 2 or tri.shape[1] != 3 or int(tri.max()) >= num_full_vertices:
            raise NeuralfitError(
                f"low-res mesh map indexes vertex {int(tri.max())}, expected ids below {num_full_vertices}"
            )
        self.num_full_vertices = int(num_full_vertices)
        support, inverse = torch.unique(tri.reshape(-1), sorted=True, return_inverse=True)
        self.register_buffer("faces", torch.as_tensor(geometry.faces, dtype=torch.long), persistent=False)
        self.register_buffer("edges", torch.as_tensor(mesh_edges(geometry.faces)), persistent=False)
        self.register_buffer("tri_vertex_ids", tri, persistent=False)
        self.register_buffer("bary", bary, persistent=False)
        self.register_buffer("support", support, persistent=False)
        self.register_buffer("support_index", inverse.reshape(-1, 3), persistent=False)
        dominant = tri.gather(1, bary.argmax(dim=1, keepdim=True)).squeeze(1)
        self.register_buffer("part_labels", full_part_labels.cpu()[dominant].long(), persistent=False)

    @property
    def num_vertices(self) -> int:
        """V_low."""
        return int(self.bary.shape[0])

    @property
    def vertex_map(self) -> torch.Tensor:
        """Sparse COO (V_low, V) float map with 3 non-zeros per row: ``low = vertex_map @ full``."""
        rows = torch.arange(self.num_vertices, device=self.bary.device).repeat_interleave(3)
        idx = torch.stack([rows, self.tri_vertex_ids.reshape(-1)])
        with torch.sparse.check_sparse_tensor_invariants():
            m = torch.sparse_coo_tensor(
                idx, self.bary.reshape(-1), (self.num_vertices, self.num_full_vertices)
            )
        return m.coalesce()

    def vertices(self, full_vertices: torch.Tensor) -> torch.Tensor:
        """Low-res vertices from full ones: (B, V, 3) -> (B, V_low, 3); differentiable."""
        if full_vertices.shape[-2] != self.num_full_vertices:
            raise NeuralfitError(
                f"full vertices have {full_vertices.shape[-2]} points, expected {self.num_full_vertices}"
            )
        tri = full_vertices[:, self.tri_vertex_ids]  # (B, V_low, 3, 3): triangle corners
        return (tri * self.bary.to(full_vertices.dtype)[None, :, :, None]).sum(dim=2)

    def vertices_from_support(self, support_vertices: torch.Tensor) -> torch.Tensor:
        """Low-res vertices from the posed support vertices only: (B, S, 3) -> (B, V_low, 3)."""
        tri = support_vertices[:, self.support_index]
        return (tri * self.bary.to(support_vertices.dtype)[None, :, :, None]).sum(dim=2)

    def geometry(self) -> LowResGeometry:
        """Back to plain numpy (for caching / export)."""
        return LowResGeometry(
            self.tri_vertex_ids.cpu().numpy(), self.bary.cpu().numpy(), self.faces.cpu().numpy()
        )
