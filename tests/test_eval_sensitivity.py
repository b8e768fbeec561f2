"""Occlusion sensitivity maps and mesh, with a stand-in method."""

import numpy as np
import pytest
from test_eval_protocols import make_sample, region_method

from neuralfit.errors import NeuralfitError
from neuralfit.eval import sensitivity as S


def test_error_map_peaks_where_the_region_is_covered():
    s = make_sample()
    r = S.occlusion_sensitivity(s, region_method(100, 60, 140, 100), size224=40, stride224=10)
    assert r.errors.shape == (19, 19, 14) and r.baseline.shape == (14,)
    assert np.allclose(r.baseline, 0, atol=1e-9)  # no patch: the stand-in is exact
    iy, ix = np.unravel_index(np.argmax(r.errors[..., 0]), r.errors.shape[:2])
    # Patch centre over the region's centre (120, 80).
    np.testing.assert_allclose(r.centres[iy, ix], [120.0, 80.0])
    dense = S.dense_map(r, r.errors[..., 0], 224)
    assert dense.shape == (224, 224)
    # Pixel (row 79, col 119) has its centre at (119.5, 79.5): half a pixel from the patch centre, so the
    # bilinear map is within 5 % of a stride's change per axis (two axes) of the peak.
    step = np.abs(np.diff(r.errors[..., 0], axis=1)).max()
    assert abs(dense[79, 119] - r.errors[iy, ix, 0]) <= 2 * 0.05 * step + 1e-9


def test_vertex_sensitivity_averages_covering_positions():
    s = make_sample()
    r = S.occlusion_sensitivity(s, region_method(100, 60, 140, 100), size224=40, stride224=10)
    uv = np.array([[120.0, 80.0], [2.0, 2.0], [500.0, 500.0]])
    vs = S.vertex_sensitivity(r, uv)
    c = r.centres.reshape(-1, 2)
    e = r.errors.reshape(len(c), -1).mean(-1)
    cover = (np.abs(c - uv[0]) < 20).all(1)
    assert vs[0] == pytest.approx(e[cover].mean())
    assert vs[0] > vs[1]  # the sensitive region vs. a corner
    assert np.isnan(vs[2])  # never covered
    with pytest.raises(NeuralfitError):
        S.vertex_sensitivity(r, np.zeros((3, 3)))


def test_write_sweep_outputs(tmp_path):
    s = make_sample(res=112)
    r = S.occlusion_sensitivity(s, region_method(40, 30, 70, 60), size224=80, stride224=40, patch="textured")
    # A tiny tetrahedron in front of the camera as the mesh.
    v = np.array([[0, 0, 5.0], [0.1, 0, 5.0], [0, 0.1, 5.0], [0, 0, 5.1]])
    f = np.array([[0, 1, 2], [0, 1, 3], [0, 2, 3], [1, 2, 3]])
    summary = S.write_sweep(tmp_path, r, s.image, None, v, f, s.focal)
    for k in ("heatmaps", "npz", "mesh_ply", "mesh_png"):
        assert (tmp_path / summary["files"][k].split("/")[-1]).stat().st_size > 0
    assert (tmp_path / "sweep.json").exists()
    with pytest.raises(NeuralfitError):
        S.occlusion_sensitivity(s, region_method(0, 0, 1, 1), patch="blue")
