"""``neuralfit eval`` and ``neuralfit sweep`` end to end on a tiny synthetic set."""

import json

import pytest
from click.testing import CliRunner

from neuralfit.errors import NeuralfitError


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    from neuralfit.data import SynthConfig, generate_dataset

    d = tmp_path_factory.mktemp("eval") / "set"
    generate_dataset(d, 3, 0, SynthConfig(res=64, occlusion="test-occluded", photos=False))
    return d


def _run(cmd, args):
    res = CliRunner().invoke(cmd, args, catch_exceptions=True)
    if res.exception and not isinstance(res.exception, SystemExit):
        raise res.exception
    return res


def test_eval_writes_report_and_resumes(tiny_set, tmp_path):
    from neuralfit.cli.eval import eval as cmd

    out = tmp_path / "r.json"
    args = ["--data", str(tiny_set), "--method", "oracle", "--occluder", "adv80", "--out", str(out),
            "--quiet", "--adv-stride", "20"]
    r = _run(cmd, args + ["--limit", "2"])
    assert r.exit_code == 0 and "PA-MPJPE" in r.output
    rep = json.loads(out.read_text())
    assert [x["index"] for x in rep["records"]] == [0, 1]
    assert rep["summary"]["oracle"]["n"] == 2
    r = _run(cmd, args + ["--resume"])
    rep2 = json.loads(out.read_text())
    assert [x["index"] for x in rep2["records"]] == [0, 1, 2]
    assert rep2["records"][:2] == rep["records"]  # resumed samples are taken from the cache unchanged
    # Same images for another run: positions from the first report.
    out3 = tmp_path / "r3.json"
    _run(cmd, ["--data", str(tiny_set), "--method", "oracle", "--occluder", "adv80", "--out", str(out3), "--quiet",
               "--positions-from", str(out)])
    rep3 = json.loads(out3.read_text())
    assert [x["adv_position"] for x in rep3["records"]] == [x["adv_position"] for x in rep2["records"]]


def test_eval_bad_inputs(tiny_set, tmp_path):
    from neuralfit.cli.eval import eval as cmd

    with pytest.raises(NeuralfitError, match="--set only applies to the fitting methods"):
        _run(cmd, ["--data", str(tiny_set), "--method", "oracle", "--out", str(tmp_path / "x.json"),
                   "--set", "w_partseg=0"])


def test_sweep_with_ground_truth_mesh(tiny_set, tmp_path):
    from neuralfit.cli.sweep import sweep

    r = _run(sweep, ["--data", str(tiny_set), "--index", "1", "--method", "oracle", "--out", str(tmp_path / "s"),
                     "--size", "80", "--stride", "40"])
    assert r.exit_code == 0, r.output
    for name in ("heatmaps.png", "sensitivity_mesh.png", "sensitivity_mesh.ply", "sensitivity.npz", "sweep.json"):
        assert (tmp_path / "s" / name).stat().st_size > 0
    with pytest.raises(NeuralfitError, match="IMAGE or --data"):
        _run(sweep, ["--out", str(tmp_path / "t")])


@pytest.mark.slow
def test_eval_with_an_untrained_network(tiny_set, tmp_path):
    """The real methods run end to end (numbers are meaningless: the network is untrained)."""
    from neuralfit.cli.eval import eval as cmd

    from neuralfit.body import load_body_model
    from neuralfit.nets import MultiTaskNet, NetConfig, save_network

    save_network(tmp_path / "net.pt", MultiTaskNet(NetConfig()), load_body_model("free"))
    out = tmp_path / "r.json"
    r = _run(cmd, ["--data", str(tiny_set), "--method", "regressor", "--method", "keypoints", "--occluder", "adv80",
                   "--adv-stride", "40", "--limit", "1", "--network", str(tmp_path / "net.pt"), "--out", str(out),
                   "--quiet"])
    assert r.exit_code == 0, r.output
    summ = json.loads(out.read_text())["summary"]
    assert set(summ) == {"regressor", "keypoints"} and summ["keypoints"]["seconds"] > 0


@pytest.mark.slow
def test_sweep_on_an_image_with_an_untrained_network(tiny_set, tmp_path):
    """IMAGE mode: errors relative to the clean prediction; the mesh is the method's prediction."""
    from neuralfit.cli.sweep import sweep

    from neuralfit.body import load_body_model
    from neuralfit.nets import MultiTaskNet, NetConfig, save_network

    save_network(tmp_path / "net.pt", MultiTaskNet(NetConfig()), load_body_model("free"))
    img = str(tiny_set / "images" / "000000.jpg")
    r = _run(sweep, [img, "--network", str(tmp_path / "net.pt"), "--out", str(tmp_path / "s"), "--size", "80",
                     "--stride", "80"])
    assert r.exit_code == 0, r.output
    summary = json.loads((tmp_path / "s" / "sweep.json").read_text())
    # Zero up to float32 round-off: joints ~1 m from the camera carry ~1e-7 m (1e-4 mm) of it when the clean
    # crop is run again in another batch.
    assert summary["positions"] == 4 and summary["baseline_mpjpe_mm"] == pytest.approx(0.0, abs=1e-3)
    assert (tmp_path / "s" / "sensitivity_mesh.ply").stat().st_size > 0
