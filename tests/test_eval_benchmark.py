"""benchmarks/occlusion_report.py end to end with stand-in methods on a tiny toy-body set."""

import importlib.util
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "occlusion_report.py"


def _load():
    spec = importlib.util.spec_from_file_location("occlusion_report", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_report_with_stand_in_methods(tmp_path):
    mod = _load()
    out = tmp_path / "docs" / "benchmark.md"
    args = ["--stand-in", "--count", "2", "--body", "toy", "--res", "64", "--work", str(tmp_path / "w"),
            "--out", str(out), "--ablation-count", "2", "--workers", "1", "--quiet"]
    assert mod.main(args) == 0
    text = out.read_text()
    assert "STAND-IN RUN" in text and "## Ablation" in text
    for cond in ("test-clean", "test-occluded", "AdvOcc@40", "AdvOcc@80"):
        assert f"| {cond} | neural fit |" in text
    assert (tmp_path / "docs" / "benchmark_methods.png").stat().st_size > 0
    assert (tmp_path / "docs" / "benchmark_ablation.png").stat().st_size > 0
    # Rerun: everything comes from the caches (resumable) and gives the same tables.
    mtime = (tmp_path / "w" / "advocc80.json").stat().st_mtime
    assert mod.main(args) == 0
    assert out.read_text().split("## Run time")[0] == text.split("## Run time")[0]
    assert (tmp_path / "w" / "advocc80.json").stat().st_mtime >= mtime


def test_requires_checkpoints_without_stand_in(tmp_path):
    from neuralfit.errors import NeuralfitError

    with pytest.raises(NeuralfitError, match="--network"):
        _load().main(["--work", str(tmp_path)])
