"""``neuralfit body show|export`` and the mesh writers."""

from __future__ import annotations

import sys

import numpy as np
import pytest
import torch

from neuralfit.io.mesh import save_mesh


def _run_cli(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    """Run the console script's ``main`` in-process; returns (exit code, stdout, stderr)."""
    from neuralfit.cli.main import main

    monkeypatch.setattr(sys, "argv", ["neuralfit", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_wrong_body_path_is_one_line_error(monkeypatch, capsys, tmp_path):
    code, out, err = _run_cli(
        monkeypatch, capsys, "body", "show", "--body", "/nope", "--out", str(tmp_path / "b.png")
    )
    assert code != 0
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1 and "/nope" in lines[0] and lines[0].startswith("error:"), err
    assert "Traceback" not in err + out
    assert not (tmp_path / "b.png").exists()


def test_export_obj_round_trips_through_trimesh(monkeypatch, capsys, tmp_path, free_body):
    import trimesh

    path = tmp_path / "body.obj"
    code, out, err = _run_cli(monkeypatch, capsys, "body", "export", "--pose", "random", "--seed", "3",
                              "--out", str(path))  # fmt: skip
    assert code == 0, err
    mesh = trimesh.load(path, process=False)
    assert mesh.vertices.shape == (free_body.num_vertices, 3)
    assert np.array_equal(mesh.faces, free_body.faces.numpy())
    # Same pose as the CLI's: seed 3, 0.35 * N(0, 1) per axis. OBJ keeps 6 decimals (1 micrometre).
    g = torch.Generator().manual_seed(3)
    ref = free_body(body_pose=0.35 * torch.randn(1, 69, generator=g)).vertices[0].numpy()
    assert np.abs(mesh.vertices - ref).max() < 2e-6


@pytest.mark.parametrize("suffix", [".ply", ".obj"])
def test_mesh_writers_round_trip_colours(tmp_path, suffix):
    import trimesh

    rng = np.random.default_rng(0)
    v = rng.normal(size=(10, 3))
    f = np.array([[0, 1, 2], [2, 3, 4], [5, 6, 7], [7, 8, 9]])
    c = rng.integers(0, 256, size=(10, 3)).astype(np.uint8)
    save_mesh(tmp_path / f"m{suffix}", v, f, c)
    mesh = trimesh.load(tmp_path / f"m{suffix}", process=False)
    assert np.allclose(mesh.vertices, v, atol=1e-5) and np.array_equal(mesh.faces, f)
    # OBJ stores colours as floats with 4 decimals: within one 8-bit step.
    assert np.abs(mesh.visual.vertex_colors[:, :3].astype(int) - c).max() <= 1
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_show_renders_part_colours(monkeypatch, capsys, tmp_path, free_body):
    import cv2

    path = tmp_path / "body.png"
    code, out, err = _run_cli(
        monkeypatch, capsys, "body", "show", "--lowres", "--size", "96", "--out", str(path)
    )
    assert code == 0, err
    img = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
    assert img.shape == (96, 96, 3)
    body_px = (img != 255).any(-1)
    assert 0.05 < body_px.mean() < 0.6  # the body fills a sensible part of the frame
    assert img[0, 0].tolist() == [255, 255, 255]  # white background in the corner
