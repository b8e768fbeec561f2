"""A user's regressor outputs as starts (neuralfit.init.npz)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from neuralfit.errors import NeuralfitError
from neuralfit.init import load_init_npz


def _write(path, **arrays) -> str:
    np.savez(path, **arrays)
    return str(path)


def _good(n: int = 3) -> dict:
    rng = np.random.default_rng(0)
    return {
        "pose": rng.normal(0, 0.2, (n, 72)).astype(np.float32),
        "shape": rng.normal(0, 1, (n, 10)).astype(np.float32),
        "imgname": np.array(["images/a.jpg", "images/b.jpg", "other/a.jpg"][:n]),
        "center": np.full((n, 2), 100.0), "scale": np.ones(n), "pred_cam": np.tile([0.9, 0.0, 0.1], (n, 1)),
    }


def test_spin_style_file_loads_and_matches_by_basename(tmp_path):
    d = _good()
    t = load_init_npz(_write(tmp_path / "spin.npz", **d))
    assert len(t) == 3 and t.cam.shape == (3, 3) and t.center.shape == (3, 2)
    rows = t.lookup("/photos/a.jpg")
    assert len(rows) == 2 and len(t.lookup("c.jpg")) == 0
    assert torch.allclose(rows[1].global_orient, torch.as_tensor(d["pose"][2:3, :3]))
    assert torch.allclose(rows[0].body_pose, torch.as_tensor(d["pose"][:1, 3:]))
    assert rows[0].betas.shape == (1, 10) and rows[0].transl is None


def test_split_pose_keys_and_betas_widths(tmp_path):
    rng = np.random.default_rng(1)
    go, bp = rng.normal(size=(2, 3)), rng.normal(size=(2, 69))
    t = load_init_npz(_write(tmp_path / "x.npz", global_orient=go, body_pose=bp, betas=np.ones((2, 300))))
    s = t.start([0, 1])
    assert torch.allclose(s.pose, torch.as_tensor(np.concatenate([go, bp], 1), dtype=torch.float32))
    assert s.betas.shape == (2, 10)  # the first 10 of 300 components
    t = load_init_npz(_write(tmp_path / "y.npz", global_orient=go[:1], body_pose=bp[:1], betas=np.ones((1, 4))))
    assert t.start(0).betas[0, 4:].abs().max() == 0  # padded with zeros
    assert len(t.lookup("anything.png")) == 1  # one row, no imgname: it is the photo's


def test_rotation_matrix_pose(tmp_path):
    from pytorch3d.transforms import axis_angle_to_matrix

    aa = torch.tensor(np.random.default_rng(2).normal(0, 0.5, (2, 24, 3)), dtype=torch.float32)
    t = load_init_npz(_write(tmp_path / "r.npz", pose=axis_angle_to_matrix(aa).numpy(), shape=np.zeros((2, 10))))
    assert np.allclose(np.concatenate([t.global_orient, t.body_pose], 1), aa.reshape(2, 72).numpy(), atol=1e-4)


@pytest.mark.parametrize("change, key", [
    ({"pose": None}, "pose"),
    ({"pose": np.zeros((3, 69))}, "pose"),
    ({"pose": np.full((3, 72), np.nan)}, "pose"),
    ({"shape": None}, "shape"),
    ({"shape": np.zeros((2, 10))}, "shape"),
    ({"imgname": np.array(["a.jpg"])}, "imgname"),
    ({"imgname": np.zeros(3)}, "imgname"),
    ({"center": np.zeros((3, 3))}, "center"),
    ({"scale": np.zeros(3)}, "scale"),
    ({"pred_cam": np.zeros((3, 2))}, "pred_cam"),
])  # fmt: skip
def test_bad_keys_and_shapes_raise_one_line_naming_the_key(tmp_path, change, key):
    d = _good()
    for k, v in change.items():
        if v is None:
            d.pop(k)
        else:
            d[k] = v
    with pytest.raises(NeuralfitError) as e:
        load_init_npz(_write(tmp_path / "bad.npz", **d))
    msg = str(e.value)
    assert f"'{key}'" in msg and "\n" not in msg


def test_not_an_npz_and_ambiguous_lookup(tmp_path):
    bad = tmp_path / "x.npz"
    bad.write_text("hello")
    with pytest.raises(NeuralfitError, match="not a readable"):
        load_init_npz(bad)
    with pytest.raises(NeuralfitError, match="not found"):
        load_init_npz(tmp_path / "missing.npz")
    d = _good()
    d.pop("imgname")
    t = load_init_npz(_write(tmp_path / "n.npz", **d))
    with pytest.raises(NeuralfitError, match="imgname"):
        t.lookup("a.jpg")
