"""Shared fixtures.

- Every test session gets its own ``NEURALFIT_HOME`` (tests never touch the user's cache).
- ``free_body``: the shipped neuralfit-free body, loaded once per session.
- ``synthetic_smpl_dir``: a tiny synthetic SMPL-format model written like the official files (a chumpy
  ``.pkl`` with a sparse ``J_regressor`` and a ``.npz``), standing in for licence-gated real SMPL.
  Tests never need real SMPL files.
"""

from __future__ import annotations

import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

SYNTH_RINGS, SYNTH_SEGMENTS = 130, 53  # 130 x 53 = 6890 vertices: SMPL's count, so its vertex ids index it


@pytest.fixture(scope="session", autouse=True)
def _neuralfit_home(tmp_path_factory: pytest.TempPathFactory):
    """Point NEURALFIT_HOME at a per-session temporary folder."""
    old = os.environ.get("NEURALFIT_HOME")
    os.environ["NEURALFIT_HOME"] = str(tmp_path_factory.mktemp("neuralfit_home"))
    yield
    if old is None:
        os.environ.pop("NEURALFIT_HOME", None)
    else:
        os.environ["NEURALFIT_HOME"] = old


@pytest.fixture(scope="session")
def free_body():
    """The free body on CPU (shared; do not modify it)."""
    from neuralfit.body import load_body_model

    return load_body_model("free")


@pytest.fixture(scope="session")
def fb(free_body):
    """The free body behind the fitter's adapter (fast low-res posing)."""
    from neuralfit.fitting import FitBody

    return FitBody(free_body)


@pytest.fixture(scope="session")
def prior():
    """The shipped default pose prior."""
    from neuralfit.priors import load_pose_prior

    return load_pose_prior("default")


def make_synthetic_smpl(seed: int = 0) -> dict:
    """A 6890-vertex SMPL-format model: a closed-ish tube 1.7 m tall with SMPL's 24-joint tree.

    Joints are regressed from the 8 vertices nearest to SMPL-like joint locations; each vertex is
    skinned to its nearest joint location (softly); shape direction 0 stretches the body vertically,
    the others are small smooth random fields; pose correctives are small random numbers, so the
    posedirs path is exercised too.
    """
    from neuralfit.body.smpl_format import SMPL_PARENTS

    rng = np.random.default_rng(seed)
    h = np.linspace(-1.1, 0.6, SYNTH_RINGS)
    a = np.linspace(0, 2 * np.pi, SYNTH_SEGMENTS, endpoint=False)
    hh, aa = np.meshgrid(h, a, indexing="ij")
    radius = 0.12 + 0.05 * np.sin(np.pi * (hh + 1.1) / 1.7)
    v = np.stack([radius * np.cos(aa), hh, radius * np.sin(aa)], -1).reshape(-1, 3)
    faces = []
    for i in range(SYNTH_RINGS - 1):
        for j in range(SYNTH_SEGMENTS):
            p, q = i * SYNTH_SEGMENTS + j, i * SYNTH_SEGMENTS + (j + 1) % SYNTH_SEGMENTS
            faces += [[p, q + SYNTH_SEGMENTS, q], [p, p + SYNTH_SEGMENTS, q + SYNTH_SEGMENTS]]
    faces = np.asarray(faces, dtype=np.int64)
    # SMPL-like joint locations squeezed into the tube (x within +-0.12 so every joint has nearby vertices).
    loc = np.array([
        [0, -0.25, 0], [0.08, -0.33, 0], [-0.08, -0.33, 0], [0, -0.13, 0], [0.09, -0.7, 0], [-0.09, -0.7, 0],
        [0, 0.0, 0], [0.09, -1.05, 0], [-0.09, -1.05, 0], [0, 0.05, 0], [0.1, -1.08, 0.05], [-0.1, -1.08, 0.05],
        [0, 0.25, 0], [0.05, 0.17, 0], [-0.05, 0.17, 0], [0, 0.35, 0], [0.1, 0.2, 0], [-0.1, 0.2, 0],
        [0.11, 0.0, 0], [-0.11, 0.0, 0], [0.11, -0.2, 0], [-0.11, -0.2, 0], [0.11, -0.28, 0], [-0.11, -0.28, 0],
    ], dtype=np.float64)  # fmt: skip
    d = np.linalg.norm(v[:, None] - loc[None], axis=-1)  # (V, 24)
    jreg = np.zeros((24, len(v)))
    for j in range(24):
        near = np.argsort(d[:, j])[:8]
        jreg[j, near] = 1.0 / 8
    w = np.exp(-((d / 0.05) ** 2))
    w[np.arange(len(v)), d.argmin(1)] += 1e-3  # no all-zero rows
    w /= w.sum(1, keepdims=True)
    shapedirs = np.zeros((len(v), 3, 10))
    shapedirs[:, 1, 0] = 0.05 * (v[:, 1] + 0.25)  # beta 0: vertical stretch about the pelvis height
    for k in range(1, 10):
        freq = rng.normal(size=3)
        shapedirs[:, :, k] = 0.005 * np.sin(v @ freq)[:, None] * rng.normal(size=3)[None]
    posedirs = 1e-3 * rng.normal(size=(len(v), 3, 207))
    kintree = np.stack([np.asarray(SMPL_PARENTS, dtype=np.int64), np.arange(24)])
    kintree[0, 0] = 2**32 - 1  # as in the official files
    return {
        "v_template": v, "f": faces.astype(np.uint32), "J_regressor": jreg, "weights": w,
        "shapedirs": shapedirs, "posedirs": posedirs, "kintree_table": kintree,
    }  # fmt: skip


def _write_chumpy_pickle(data: dict, path: Path) -> None:
    """Pickle ``data`` like the official SMPL files: shapedirs as a chumpy ``Ch`` object, J_regressor as
    a scipy CSC matrix, protocol 2. chumpy itself is not needed: a stand-in class is registered under the
    ``chumpy.ch`` module name only while pickling."""
    import scipy.sparse as sp

    ch_mod, pkg = types.ModuleType("chumpy.ch"), types.ModuleType("chumpy")

    class Ch:  # the state layout of a chumpy array: its value lives in 'x'
        pass

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    ch_mod.Ch = Ch
    saved = {k: sys.modules.get(k) for k in ("chumpy", "chumpy.ch")}
    sys.modules["chumpy"], sys.modules["chumpy.ch"] = pkg, ch_mod
    try:
        shapedirs = Ch()
        shapedirs.__dict__.update({"x": data["shapedirs"], "_depends_on_deps": {}})
        out = dict(data, shapedirs=shapedirs, J_regressor=sp.csc_matrix(data["J_regressor"]))
        with open(path, "wb") as fh:
            pickle.dump(out, fh, protocol=2)
    finally:
        for k, mod in saved.items():
            if mod is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = mod


@pytest.fixture(scope="session")
def synthetic_smpl_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder laid out like smplx expects: ``SMPL_NEUTRAL.pkl`` (chumpy-style) and ``smpl/SMPL_MALE.npz``.

    The male model differs from the neutral one (seed 1), so tests can tell which file was read.
    """
    root = tmp_path_factory.mktemp("smpl_models")
    _write_chumpy_pickle(make_synthetic_smpl(0), root / "SMPL_NEUTRAL.pkl")
    (root / "smpl").mkdir()
    male = make_synthetic_smpl(1)
    male["v_template"] = male["v_template"] * 1.05
    np.savez(root / "smpl" / "SMPL_MALE.npz", **male)
    return root


@pytest.fixture(scope="session")
def synthetic_smpl_data() -> dict:
    """The arrays of the neutral model in ``synthetic_smpl_dir`` (plain numpy, as generated)."""
    return make_synthetic_smpl(0)


@pytest.fixture(scope="session")
def synthetic_body(synthetic_smpl_dir):
    """``load_body_model`` of the synthetic neutral model (shared; do not modify it)."""
    from neuralfit.body import load_body_model

    return load_body_model(synthetic_smpl_dir)
