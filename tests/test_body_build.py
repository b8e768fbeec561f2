"""Build-time checks of the free body against anny (need the ``build`` extra; run with ``pytest -m build``)."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytestmark = pytest.mark.build


def test_free_body_poses_like_anny():
    """The shipped body, posed with random SMPL poses (0.3 rad per axis), against anny posed alike.

    Bounds: anny's default adult lies ~5 mm (mean) off the 10-d adult shape space; the rig differs in
    pivots (one hand / foot pivot instead of per-finger / per-toe ones, spine joints merged), which
    measured 8 mm mean over all vertices. 15 mm flags a broken T-pose bake, axis swap or bone grouping
    (those give centimetres to decimetres).
    """
    pytest.importorskip("anny")
    from neuralfit.body.build_free import pose_agreement

    res = pose_agreement(num_poses=4)
    assert res["shape_fit_mm"] < 10, res
    assert res["rig_only_posed_mm"] < 15, res


def test_build_runs_and_is_valid(tmp_path):
    """A small build (40 bodies) produces a loadable, human-sized asset with the same layout."""
    pytest.importorskip("anny")
    from neuralfit.body.build_free import build
    from neuralfit.body.loader import read_free_asset

    out = tmp_path / "free.npz"
    report = build(out, num_samples=40, seed=1)
    assert 1.5 < report["template_height_m"] < 1.9 and report["beta0_height_per_unit_m"] > 0
    assert report["explained_variance_10"] > 0.99
    asset = read_free_asset(out)
    assert asset["smpl"]["v_template"].shape == (13718, 3)
    assert np.allclose(asset["smpl"]["J_regressor"].sum(1), 1.0, atol=1e-4)
    assert json.loads(asset["report"])["num_samples"] == 40
