"""Bad input corpus (issue 18): each case runs through the CLI as a user would and must end in a
documented exit status, one ``error:``/``warning:`` line naming the bad value, no traceback and
nothing half-written. The first block tests the shared validation layer (``neuralfit.cli.options``).

The CLI runs in-process through ``neuralfit.cli.main.main`` (exactly what the console script runs),
so torch is imported once and the whole file stays fast on 2 cores.
"""

from __future__ import annotations

import json
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


def test_check_dataset_and_image(tmp_path: Path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "t.txt").write_text("hello\n")
    with pytest.raises(NeuralfitError, match=r"^--data .*empty: no annotations.npz in the folder"):
        options.check_dataset(tmp_path / "empty")
    with pytest.raises(NeuralfitError, match=r"t.txt is not an .npz archive"):
        options.check_dataset(tmp_path / "t.txt")
    with pytest.raises(NeuralfitError, match=r"^IMAGE .*t.txt: not an image OpenCV can read"):
        options.check_image(tmp_path / "t.txt")
    assert options.check_image(None) is None and options.check_dataset(None) is None


# ---------------------------------------------------------------------------------------------- CLI corpus

PHOTO = Path("/usr/share/doc/opencv-doc/examples/data/messi5.jpg")  # 548 x 342, one person
needs_photo = pytest.mark.skipif(not PHOTO.is_file(), reason="no real photo (apt-get install opencv-doc)")


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One 32-px toy-body sample: a valid --data / refine INIT that costs about a second."""
    from neuralfit.data import SynthConfig, generate_dataset

    out = tmp_path_factory.mktemp("tiny") / "set"
    generate_dataset(out, 1, seed=0, config=SynthConfig(body="toy", occlusion="test-clean", res=32, photos=False),
                     progress=False)
    return out


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    """Small bad inputs, written into the test's folder."""
    import numpy as np

    from neuralfit.io.images import save_png

    d = {"png": tmp_path / "small.png", "list": tmp_path / "list.json", "nan": tmp_path / "nan.json",
         "bin": tmp_path / "random.bin", "txt": tmp_path / "t.txt", "empty": tmp_path / "empty"}
    save_png(d["png"], np.full((48, 64, 3), 128, np.uint8))
    d["list"].write_text("[1, 2, 3]")
    kp = [[100.0, 50.0, 0.9] for _ in range(25)]
    kp[4][0] = float("nan")  # RWrist x
    d["nan"].write_text(json.dumps({"people": [{"pose_keypoints_2d": sum(kp, [])}]}))  # json writes NaN
    d["bin"].write_bytes(bytes(range(256)) * 4)
    d["txt"].write_text("hello, not an image\n")
    d["empty"].mkdir()
    return d


def _cases(i: dict[str, Path], ro: Path, data: Path) -> dict[str, tuple[list, tuple[str, ...]]]:
    """name -> (argv, text the one error line must contain)."""
    out = i["png"].parent / "out"
    init, net = data / "annotations.npz", Path(__file__).parents[1] / "neuralfit/nets/assets/lite0.pt"
    return {
        "body show --size 0": (["body", "show", "--size", "0", "--out", out / "b.png"], ("--size", "got 0")),
        "body show --size -10": (["body", "show", "--size", "-10", "--out", out / "b.png"], ("--size", "got -10")),
        "body export unwritable": (["body", "export", "--out", ro / "b.obj"], ("--out", "permission denied")),
        "body show unwritable": (["body", "show", "--out", ro / "b.png"], ("--out", "permission denied")),
        "synth unwritable": (["synth", "--out", ro / "s", "--count", "1", "--body", "toy"], ("--out", str(ro))),
        "synth --count 0": (["synth", "--out", out, "--count", "0"], ("--count", "got 0")),
        "train network --epochs 0": (["train", "network", "--data", data, "--out", out / "n.pt", "--epochs", "0"],
                                     ("--epochs", "got 0")),
        "train network unwritable": (["train", "network", "--data", data, "--out", ro / "n.pt"], ("permission",)),
        "train regressor --steps 0": (["train", "regressor", "--network", net, "--out", out / "r.pt", "--steps",
                                       "0", "--quiet"], ("--steps", "got 0")),
        "train gmm corrupt --network": (["train", "gmm", "--data", data, "--network", i["bin"], "--out",
                                         out / "g.pt"], ("random.bin", "(UnpicklingError)")),
        "train gmm unwritable": (["train", "gmm", "--data", data, "--network", net, "--out", ro / "g.pt"],
                                 ("--out", "permission denied")),
        "train network text --data": (["train", "network", "--data", i["txt"], "--out", out / "n.pt"],
                                      ("t.txt", "not an .npz archive")),
        "synth --sheet unwritable": (["synth", "--out", out, "--count", "1", "--sheet", ro / "s.png"],
                                     ("--sheet", "permission denied")),
        "fit --keypoints list": (["fit", i["png"], "--out", out, "--keypoints", i["list"]], ("list.json",)),
        "fit --keypoints NaN": (["fit", i["png"], "--out", out, "--keypoints", i["nan"]],
                                ("nan.json", "person 0", "joint 4 (RWrist)")),
        "fit --device tpu": (["fit", i["png"], "--out", out, "--device", "tpu"], ("--device 'tpu'",)),
        "refine --device tpu": (["refine", init, "--images", data, "--out", out / "r.npz", "--device", "tpu"],
                                ("--device 'tpu'",)),
        "refine unwritable": (["refine", init, "--images", data, "--out", ro / "r.npz", "--prior", "none"],
                              ("--out", "permission denied")),
        "eval unwritable": (["eval", "--data", data, "--method", "oracle", "--out", ro / "e.json"],
                            ("--out", "permission denied")),
        "eval empty --data": (["eval", "--data", i["empty"], "--out", out / "e.json"],
                              ("--data", "no annotations.npz")),
        "eval --device tpu": (["eval", "--data", data, "--out", out / "e.json", "--device", "tpu"], ("tpu",)),
        "sweep text file": (["sweep", i["txt"], "--out", out], ("t.txt", "not an image")),
        "sweep --device tpu": (["sweep", i["png"], "--out", out, "--device", "tpu"], ("tpu",)),
    }


CASES = list(_cases({k: Path(k) for k in ("png", "list", "nan", "bin", "txt", "empty")}, Path("ro"), Path("d")))


@pytest.mark.parametrize("case", CASES)
def test_cli_bad_input(case: str, inputs: dict[str, Path], readonly_dir: Path, tiny_set: Path,
                       capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    args, needles = _cases(inputs, readonly_dir, tiny_set)[case]
    work, before_set = inputs["png"].parent, listing(tiny_set)
    before = listing(work)
    r = run_cli(args, capsys, monkeypatch)
    assert_one_line(r, "error", *needles)
    assert listing(work) == before, "the failed run left files behind"
    assert listing(tiny_set) == before_set


def test_cli_refine_cuda_without_gpu(tiny_set: Path, tmp_path: Path, capsys, monkeypatch):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    r = run_cli(["refine", tiny_set / "annotations.npz", "--images", tiny_set, "--out", tmp_path / "r.npz",
                 "--device", "cuda"], capsys, monkeypatch)
    assert_one_line(r, "error", "--device 'cuda'", "no CUDA GPU")
    assert listing(tmp_path) == []


def test_cli_synth_bad_body_leaves_nothing_and_rerun_works(inputs: dict[str, Path], capsys, monkeypatch):
    work = inputs["png"].parent
    before = listing(work)
    for out in (work / "s", inputs["empty"]):  # a new folder, and an existing empty one
        r = run_cli(["synth", "--out", out, "--count", "1", "--res", "32", "--body", inputs["bin"], "-q"],
                    capsys, monkeypatch)
        assert_one_line(r, "error", "random.bin")
        assert listing(work) == before, "the failed synth left files behind"
    r = run_cli(["synth", "--out", work / "s", "--count", "1", "--res", "32", "--body", "toy", "--no-photos", "-q"],
                capsys, monkeypatch)
    assert r.exc is None and r.code == 0, r.err
    assert (work / "s" / "annotations.npz").is_file() and (work / "s" / "synth.json").is_file()


def test_cli_train_epochs_zero_writes_nothing(tiny_set: Path, tmp_path: Path, capsys, monkeypatch):
    """The library refuses too (a direct ``train_network`` call used to return with no checkpoint)."""
    from neuralfit.training.network import TrainConfig, train_network

    with pytest.raises(NeuralfitError, match="epochs must be >= 1, got 0"):
        train_network([], tmp_path / "n.pt", None, config=TrainConfig(epochs=0))
    assert listing(tmp_path) == []


@needs_photo
def test_cli_fit_bbox_outside_photo(tmp_path: Path, capsys, monkeypatch):
    r = run_cli(["fit", PHOTO, "--out", tmp_path / "f", "--bbox", "5000,5000,6000,6000", "--method", "regressor",
                 "--no-overlay"], capsys, monkeypatch)
    assert r.exc is None and "Traceback" not in r.err
    assert "fitted 1 of 1" not in r.err
    assert r.code in (1, 3), r.err
    lines = [ln for ln in r.err.splitlines() if ln.startswith(("error:", "warning:"))]
    assert len(lines) == 1 and "bbox" in lines[0].lower() and "5000" in lines[0], r.err


def test_cli_failed_fit_leaves_no_out_folder(inputs: dict[str, Path], capsys, monkeypatch):
    work = inputs["png"].parent
    before = listing(work)
    r = run_cli(["fit", inputs["png"], "--out", work / "out", "--network", inputs["bin"]], capsys, monkeypatch)
    assert_one_line(r, "error", "random.bin")
    assert listing(work) == before, "the failed fit left an (empty) out folder"


@needs_photo
def test_cli_fit_refuses_to_overwrite_results(tmp_path: Path, capsys, monkeypatch):
    args = ["fit", PHOTO, "--out", tmp_path / "f", "--method", "regressor", "--no-overlay", "-q"]
    first = run_cli(args, capsys, monkeypatch)
    assert first.code == 0, first.err
    result = tmp_path / "f" / PHOTO.stem / "fit.json"
    old = result.read_bytes()
    again = run_cli(args, capsys, monkeypatch)
    assert_one_line(again, "error", "--overwrite", str(tmp_path / "f"))
    assert result.read_bytes() == old
    forced = run_cli([*args, "--overwrite"], capsys, monkeypatch)
    assert forced.code == 0, forced.err


def test_console_script_prints_one_line(tmp_path: Path):
    """The real entry point in a fresh process (the in-process runs above go through the same ``main``)."""
    r = subprocess.run([sys.executable, "-m", "neuralfit.cli.main", "body", "show", "--size", "0", "--out",
                        str(tmp_path / "b.png")], capture_output=True, text=True, timeout=120)
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr == "error: --size must be >= 16, got 0\n"
    assert listing(tmp_path) == []
