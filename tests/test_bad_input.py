"""Bad input corpus (issue 18): each case runs through the CLI as a user would and must end in a
documented exit status, one ``error:``/``warning:`` line naming the bad value, no traceback and
nothing half-written. The first block tests the shared validation layer (``neuralfit.cli.options``).

The CLI runs in-process through ``neuralfit.cli.main.main`` (exactly what the console script runs),
so torch is imported once and the whole file stays fast on 2 cores.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from neuralfit.cli import options

from neuralfit.errors import NeuralfitError

# ---------------------------------------------------------------------------------------------- helpers


@dataclass
class Run:
    code: int | None
    out: str
    err: str
    exc: BaseException | None


def run_cli(args: list, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> Run:
    """Run ``neuralfit ARGS`` through ``main()``; an exception escaping ``main`` counts as a traceback."""
    from neuralfit.cli.main import main

    monkeypatch.setattr(sys, "argv", ["neuralfit", *map(str, args)])
    code: int | None = 0
    exc = None
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except Exception as e:  # noqa: BLE001 - that is exactly the bug we look for
        exc, code = e, None
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err, exc)


def assert_one_line(r: Run, level: str, *needles: str, code: int = 1) -> str:
    """Exit ``code``, no traceback, exactly one ``level:`` line on stderr, containing every needle."""
    assert r.exc is None, f"exception escaped main(): {r.exc!r}"
    assert "Traceback" not in r.err + r.out
    assert r.code == code, f"exit {r.code}, expected {code}; stderr: {r.err}"
    lines = [ln for ln in r.err.splitlines() if ln.startswith(f"{level}:")]
    assert len(lines) == 1, f"expected one {level}: line, got {r.err!r}"
    for n in needles:
        assert n in lines[0], f"{n!r} not in {lines[0]!r}"
    return lines[0]


def listing(folder: Path) -> list[str]:
    """Every path under ``folder`` (hidden ones included), relative, sorted."""
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


@pytest.fixture
def readonly_dir(tmp_path: Path):
    """A folder nobody may write in: ``chattr +i`` as root (root ignores mode bits), else mode 0555."""
    d = tmp_path / "ro"
    d.mkdir()
    if os.geteuid() == 0:
        if not shutil.which("chattr") or subprocess.run(["chattr", "+i", str(d)], capture_output=True).returncode:
            pytest.skip("running as root without a working chattr: cannot make a read-only folder")
        try:
            yield d
        finally:
            subprocess.run(["chattr", "-i", str(d)], check=True)
    else:
        d.chmod(0o555)
        try:
            yield d
        finally:
            d.chmod(0o755)


# ---------------------------------------------------------------------------------------------- options layer


@pytest.mark.parametrize("bad", ["tpu", "cuda:x", "cpu:0", "", "gpu0"])
def test_check_device_rejects_unknown(bad: str):
    with pytest.raises(NeuralfitError, match=r"^--device '.*' is not a device; expected cpu, cuda or cuda:N$"):
        options.check_device(bad)


def test_check_device_accepts_cpu():
    assert options.check_device("cpu") == "cpu"
    assert options.check_device(" CPU ") == "cpu"


def test_check_device_cuda_without_gpu():
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    for text in ("cuda", "cuda:0"):
        with pytest.raises(NeuralfitError, match=f"--device '{text}': no CUDA GPU"):
            options.check_device(text)


def test_check_ints_and_sizes():
    assert options.check_positive_int("--count", 3) == 3
    assert options.check_positive_int("--count", None) is None
    with pytest.raises(NeuralfitError, match=r"^--count must be >= 1, got 0$"):
        options.check_positive_int("--count", 0)
    with pytest.raises(NeuralfitError, match="whole number"):
        options.check_positive_int("--count", 2.5)  # type: ignore[arg-type]
    assert options.check_size("--size", 64, minimum=16, maximum=64) == 64
    with pytest.raises(NeuralfitError, match=r"^--size must be >= 16, got -10$"):
        options.check_size("--size", -10, minimum=16)
    with pytest.raises(NeuralfitError, match=r"^--size must be <= 64 pixels, got 65$"):
        options.check_size("--size", 65, maximum=64)


def test_check_file(tmp_path: Path):
    f = tmp_path / "k.json"
    f.write_text("{}")
    assert options.check_file(f, "--keypoints") == f
    with pytest.raises(NeuralfitError, match=r"^--keypoints .*nope.json: no such file$"):
        options.check_file(tmp_path / "nope.json", "--keypoints")
    with pytest.raises(NeuralfitError, match="is not a file"):
        options.check_file(tmp_path, "--keypoints")


def test_check_out_dir(tmp_path: Path, readonly_dir: Path):
    fresh = tmp_path / "a" / "b"
    assert options.check_out_dir(fresh, overwrite=False, marker_files=("fit.json",)) == fresh
    assert not (tmp_path / "a").exists(), "the check must not create the folder"
    with pytest.raises(NeuralfitError, match=r"cannot write in .*ro \(permission denied\)"):
        options.check_out_dir(readonly_dir / "out", overwrite=False)
    with pytest.raises(NeuralfitError, match="cannot write in it"):
        options.check_out_dir(readonly_dir, overwrite=True)
    held = tmp_path / "held"
    (held / "photo").mkdir(parents=True)
    (held / "photo" / "fit.json").write_text("{}")
    with pytest.raises(NeuralfitError, match=r"already holds results \(photo/fit.json\); pass --overwrite"):
        options.check_out_dir(held, overwrite=False, marker_files=("*/fit.json",))
    assert options.check_out_dir(held, overwrite=True, marker_files=("*/fit.json",)) == held
    assert options.check_out_dir(held, overwrite=False, marker_files=("other/fit.json",)) == held
    with pytest.raises(NeuralfitError, match="is a file; expected a folder"):
        options.check_out_dir(held / "photo" / "fit.json", overwrite=True)


def test_check_out_file(tmp_path: Path, readonly_dir: Path):
    assert options.check_out_file(tmp_path / "x" / "m.obj", suffixes=(".obj",)).name == "m.obj"
    with pytest.raises(NeuralfitError, match=r"must end in \.obj or \.ply$"):
        options.check_out_file(tmp_path / "m.stl", suffixes=(".obj", ".ply"))
    with pytest.raises(NeuralfitError, match="is a folder"):
        options.check_out_file(tmp_path)
    with pytest.raises(NeuralfitError, match="permission denied"):
        options.check_out_file(readonly_dir / "m.obj")


def test_torch_threads_restores():
    import torch

    before = torch.get_num_threads()
    with options.torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(NeuralfitError, match="--threads must be >= 1"), options.torch_threads(0):
        pass
    assert torch.get_num_threads() == before


def test_option_decorators_parse_and_validate():
    @click.command()
    @options.device_option
    @options.threads_option(default=2)
    @options.quiet_option
    @options.overwrite_option
    def cmd(device: str, threads: int, quiet: bool, overwrite: bool) -> None:
        click.echo(f"{device} {threads} {quiet} {overwrite}")

    runner = CliRunner()
    assert runner.invoke(cmd, ["-q", "--overwrite"]).output.strip() == "cpu 2 True True"
    help_text = runner.invoke(cmd, ["--help"]).output
    assert "[default: cpu]" in help_text and "[default: 2]" in help_text
    for args, msg in ((["--device", "tpu"], "--device 'tpu' is not a device"),
                      (["--threads", "0"], "--threads must be >= 1, got 0")):
        r = runner.invoke(cmd, args, standalone_mode=False)
        assert isinstance(r.exception, NeuralfitError) and str(r.exception).startswith(msg)
