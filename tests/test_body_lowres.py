"""The low-res neural mesh: size, topology, following the full mesh under pose, the fast posing path."""

from __future__ import annotations

import numpy as np
import torch

from neuralfit.body import load_body_model
from neuralfit.body.lowres import closest_points_on_surface, mesh_edges


def _random_params(bsz: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    return dict(
        betas=torch.randn(bsz, 10, generator=g),
        global_orient=0.5 * torch.randn(bsz, 3, generator=g),
        body_pose=0.4 * torch.randn(bsz, 69, generator=g),
        transl=torch.randn(bsz, 3, generator=g),
    )


def test_lowres_mesh_size_and_topology(free_body):
    low = free_body.lowres
    assert 600 <= low.num_vertices <= 1200
    f = low.faces
    assert f.shape[1] == 3 and int(f.min()) >= 0 and int(f.max()) == low.num_vertices - 1
    assert len(torch.unique(f)) == low.num_vertices  # every vertex is used by a face
    assert torch.allclose(low.bary.sum(1), torch.ones(low.num_vertices), atol=1e-5)
    assert bool((low.bary >= 0).all())
    # Edges: unique, i < j, and every face side is one of them.
    e = low.edges
    assert bool((e[:, 0] < e[:, 1]).all()) and len(np.unique(e.numpy(), axis=0)) == len(e)
    assert len(e) == len(mesh_edges(f))
    # A closed-ish surface: Euler characteristic V - E + F close to 2 (a few holes allowed).
    assert abs(low.num_vertices - len(e) + len(f) - 2) <= 10
    # Part labels are those of the full vertices the low-res ones sit on; nearly all parts are present
    # (the collars have only ~40 full vertices each and may get none at ~5 cm spacing).
    dominant = low.tri_vertex_ids.gather(1, low.bary.argmax(1, keepdim=True)).squeeze(1)
    assert torch.equal(low.part_labels, free_body.part_labels[dominant])
    assert len(set(low.part_labels.tolist())) >= 20


def test_lowres_mesh_is_even(free_body):
    """Edges between 1 and 12 cm: no slivers across a limb (quadric decimation gave up to 35 cm)."""
    low = free_body.lowres
    v = low.vertices(free_body().vertices)[0]
    e = low.edges
    length = (v[e[:, 0]] - v[e[:, 1]]).norm(dim=1)
    assert float(length.min()) > 0.01 and float(length.max()) < 0.12, (length.min(), length.max())


def test_lowres_follows_full_surface_under_pose(free_body):
    """Mean distance of low-res vertices to the posed full surface < 1 cm, for random poses and shapes."""
    params = _random_params(3, 0)
    with torch.no_grad():
        out = free_body(**params, lowres=True)
    faces = free_body.faces.numpy()
    for b in range(3):
        low = out.lowres_vertices[b].numpy().astype(np.float64)
        full = out.vertices[b].numpy().astype(np.float64)
        closest, _ = closest_points_on_surface(full, faces, low)
        dist = np.linalg.norm(closest - low, axis=1)
        assert dist.mean() < 0.01, dist.mean()
        # The low-res mesh should also cover the body: ~850 vertices over ~1.8 m^2 of skin is one per
        # ~4.6 cm square, so in the rest pose every full vertex is within 4 cm of a low-res one. Random
        # shapes (+-10 % per unit beta) and poses (skin stretch at bent joints) widen that; 8 cm still
        # fails for any mesh that leaves a limb segment without vertices (quadric decimation: 12 cm).
        from scipy.spatial import cKDTree

        gap, _ = cKDTree(low).query(full)
        assert gap.max() < 0.08, gap.max()
        # And the low-res faces must still join neighbours: rest edges are <= 9.2 cm; skin stretch under
        # these shapes and poses stays well below 1.6x, so any edge over 15 cm means a scrambled map.
        e = free_body.lowres.edges.numpy()
        assert np.linalg.norm(low[e[:, 0]] - low[e[:, 1]], axis=1).max() < 0.15


def test_fast_path_equals_full_mapping(free_body, synthetic_body):
    """Posing only the support vertices gives the same low-res vertices and landmarks as mapping the
    full posed mesh (same float32 operations on fewer vertices: 1e-6 m)."""
    for body in (free_body, synthetic_body):
        params = _random_params(4, 1)
        full = body(**params, lowres=True)
        fast = body(**params, full=False, lowres=True)
        assert fast.vertices is None
        assert torch.allclose(fast.lowres_vertices, full.lowres_vertices, atol=1e-6)
        assert torch.allclose(fast.landmarks, full.landmarks, atol=1e-6)
        assert torch.allclose(fast.joints, full.joints, atol=1e-6)
        mapped = torch.stack([body.lowres.vertex_map @ v for v in full.vertices])
        assert torch.allclose(mapped, full.lowres_vertices, atol=1e-6)
        assert body.lowres.support.numel() <= 3 * body.lowres.num_vertices


def test_fast_path_gradients_match(free_body):
    params = _random_params(2, 2)
    grads = []
    for full in (True, False):
        bp = params["body_pose"].clone().requires_grad_(True)
        out = free_body(**{**params, "body_pose": bp}, full=full, lowres=True)
        out.lowres_vertices.square().sum().backward()
        grads.append(bp.grad)
    assert torch.allclose(grads[0], grads[1], rtol=1e-4, atol=1e-5)


def test_real_smpl_lowres_is_built_once_and_cached(synthetic_smpl_dir):
    import os
    from pathlib import Path

    body = load_body_model(synthetic_smpl_dir)
    assert 600 <= body.lowres.num_vertices <= 1200
    cached = list((Path(os.environ["NEURALFIT_HOME"]) / "lowres").glob("*.npz"))
    assert len(cached) >= 1
    again = load_body_model(synthetic_smpl_dir)
    assert torch.equal(again.lowres.faces, body.lowres.faces)
    assert torch.equal(again.lowres.tri_vertex_ids, body.lowres.tri_vertex_ids)
