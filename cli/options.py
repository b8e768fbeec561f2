"""The options every command shares, and the validators behind them (one layer, docs/errors.md).

Every check here raises :class:`neuralfit.errors.NeuralfitError` with one line that names the option
and the bad value, so ``neuralfit.cli.main.main`` prints ``error: ...`` and exits 1 (no traceback,
nothing written). A new command gets the same behaviour by stacking the decorators::

    @click.command()
    @click.option("--out", required=True)
    @device_option
    @threads_option
    @quiet_option
    @overwrite_option
    def cmd(out, device, threads, quiet, overwrite):
        out = check_out_dir(out, overwrite=overwrite, marker_files=("results.json",))
        with torch_threads(threads):
            ...

``--device`` and ``--threads`` are validated while click parses them (their callbacks), so a bad
value fails before any model is loaded. Paths are checked by the functions, called at the top of
the command, because only the command knows which files mean "results are already there".

Nothing here imports torch at module level: ``neuralfit --help`` must stay fast.
"""

from __future__ import annotations

import contextlib
import os
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import click

from neuralfit.errors import NeuralfitError

F = TypeVar("F", bound=Callable[..., Any])

DEVICE_HELP = "Torch device: cpu, cuda or cuda:N."
_DEVICE_RE = re.compile(r"^(cpu|cuda)(?::(\d+))?$")


# ---------------------------------------------------------------------------------------------- validators


def check_device(text: str, *, option: str = "--device") -> str:
    """``cpu``, ``cuda`` or ``cuda:N`` -> the same string, normalised; anything else is one-line error.

    ``cuda`` is refused when torch sees no GPU, and ``cuda:N`` when there are not N + 1 of them, so the
    user gets the reason here instead of torch's multi-line driver error halfway through a run.
    """
    value = str(text).strip().lower()
    m = _DEVICE_RE.match(value)
    if m is None or (m.group(1) == "cpu" and m.group(2) is not None):
        raise NeuralfitError(f"{option} {text!r} is not a device; expected cpu, cuda or cuda:N")
    if m.group(1) == "cpu":
        return "cpu"
    import torch  # only for cuda: the check needs the driver

    if not torch.cuda.is_available():
        raise NeuralfitError(f"{option} {text!r}: no CUDA GPU is available on this machine; use --device cpu")
    if m.group(2) is not None and int(m.group(2)) >= torch.cuda.device_count():
        raise NeuralfitError(f"{option} {text!r}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return value


def check_positive_int(name: str, value: int | None, *, minimum: int = 1) -> int | None:
    """``value`` if it is an int >= ``minimum`` (``None`` passes through: "not given")."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise NeuralfitError(f"{name} must be a whole number >= {minimum}, got {value!r}")
    if value < minimum:
        raise NeuralfitError(f"{name} must be >= {minimum}, got {value}")
    return value


def check_size(name: str, value: int, *, minimum: int = 1, maximum: int | None = None) -> int:
    """An image or crop size in pixels within [minimum, maximum]."""
    check_positive_int(name, value, minimum=minimum)
    if maximum is not None and value > maximum:
        raise NeuralfitError(f"{name} must be <= {maximum} pixels, got {value}")
    return value


def check_file(path: str | os.PathLike, what: str) -> Path:
    """An existing, readable regular file; ``what`` names it in the message (e.g. ``"--keypoints"``)."""
    p = Path(path)
    if not p.exists():
        raise NeuralfitError(f"{what} {p}: no such file")
    if not p.is_file():
        raise NeuralfitError(f"{what} {p}: is not a file")
    if not os.access(p, os.R_OK):
        raise NeuralfitError(f"{what} {p}: cannot be read (permission denied)")
    return p


def check_dataset(path: str | os.PathLike | None, what: str = "--data") -> Path | None:
    """A data set: a folder with ``annotations.npz`` (``neuralfit synth``) or an ``.npz`` file.

    Returns the ``.npz`` path (``None`` passes through). Commands call this before loading any model,
    so an empty or wrong ``--data`` is the first thing the user hears about.
    """
    if path is None:
        return None
    p = Path(path)
    npz = p / "annotations.npz" if p.is_dir() else p
    if not npz.is_file():
        reason = "no annotations.npz in the folder" if p.is_dir() else "no such file" if not p.exists() else \
            "not an .npz file"
        raise NeuralfitError(f"{what} {p}: {reason}; expected a folder with annotations.npz or an .npz file")
    if npz.suffix.lower() != ".npz" or _magic(npz, 4) != b"PK\x03\x04":
        raise NeuralfitError(f"{what} {p}: {npz.name} is not an .npz archive; expected a SPIN/EFT-style .npz")
    return npz


def check_image(path: str | os.PathLike | None, what: str = "IMAGE") -> Path | None:
    """An image file OpenCV can decode, judged from its first bytes (no full decode; ``None`` passes)."""
    if path is None:
        return None
    p = check_file(path, what)
    import cv2  # only here: decoding support is OpenCV's, and the import is not free

    if not cv2.haveImageReader(str(p)):
        raise NeuralfitError(f"{what} {p}: not an image OpenCV can read (expected JPEG, PNG, ...)")
    return p


def _magic(p: Path, n: int) -> bytes:
    with open(p, "rb") as fh:
        return fh.read(n)


def _nearest_existing(p: Path) -> Path:
    q = p.absolute()
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _check_can_create(p: Path, what: str) -> None:
    """``p`` (file or folder, existing or not) can be created or replaced: its nearest existing
    ancestor is a writable folder. Nothing is created, so a refused run leaves nothing behind."""
    anchor = _nearest_existing(p.parent)
    if not anchor.is_dir():
        raise NeuralfitError(f"{what} {p}: {anchor} is not a folder")
    # os.access also sees `chattr +i` and read-only mounts (EPERM / EROFS), not only mode bits.
    if not os.access(anchor, os.W_OK | os.X_OK):
        raise NeuralfitError(f"{what} {p}: cannot write in {anchor} (permission denied); pass a writable {what}")


def check_out_file(path: str | os.PathLike, what: str = "--out", *, suffixes: Iterable[str] = ()) -> Path:
    """An output file that can be written: not a folder, right suffix, writable parent.

    A single output file is replaced atomically when it exists (docs/errors.md): the old one stays
    intact until the new one is complete.
    """
    p = Path(path)
    allowed = tuple(s.lower() for s in suffixes)
    if allowed and p.suffix.lower() not in allowed:
        raise NeuralfitError(f"{what} {p} must end in {' or '.join(allowed)}")
    if p.is_dir():
        raise NeuralfitError(f"{what} {p} is a folder; expected a file name")
    _check_can_create(p, what)
    if p.exists() and not os.access(p, os.W_OK):
        raise NeuralfitError(f"{what} {p}: cannot replace the existing file (permission denied)")
    return p


def check_out_dir(path: str | os.PathLike, *, overwrite: bool, marker_files: Iterable[str] = (),
                  what: str = "--out") -> Path:
    """An output folder that can be written and holds no results we would silently replace.

    ``marker_files`` are names or glob patterns relative to ``path`` (e.g. ``"fit.json"``,
    ``"*/fit.json"``) whose presence means earlier results live there. If any is present the run is
    refused with one line unless ``overwrite``. The folder itself is not created: a run refused later
    must not leave an empty folder behind.
    """
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise NeuralfitError(f"{what} {p} is a file; expected a folder")
    if p.is_dir():
        if not os.access(p, os.W_OK | os.X_OK):
            raise NeuralfitError(f"{what} {p}: cannot write in it (permission denied); pass a writable {what}")
        if not overwrite:
            found = existing_results(p, marker_files)
            if found:
                raise NeuralfitError(f"{what} {p} already holds results ({found[0].relative_to(p)}); "
                                     "pass --overwrite to replace them or choose another folder")
    else:
        _check_can_create(p, what)
    return p


def existing_results(folder: Path, marker_files: Iterable[str]) -> list[Path]:
    """The ``marker_files`` (names or glob patterns) present under ``folder``, sorted."""
    found: set[Path] = set()
    for pattern in marker_files:
        found.update(q for q in folder.glob(pattern) if q.exists())
    return sorted(found)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``torch.set_num_threads(n)`` and restore the previous count after.

    Restoring matters for in-process callers (tests, notebooks). ``None`` leaves torch alone.
    """
    if n is None:
        yield
        return
    import torch

    check_positive_int("--threads", n)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


# ---------------------------------------------------------------------------------------------- options


def _device_callback(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    return None if value is None else check_device(value, option=_flag(param))


def _threads_callback(ctx: click.Context, param: click.Parameter, value: int | None) -> int | None:
    return check_positive_int(_flag(param), value)


def _flag(param: click.Parameter) -> str:
    opts = [o for o in getattr(param, "opts", []) if o.startswith("--")]
    return opts[0] if opts else f"--{param.name}"


def _decorator_or_factory(make: Callable[..., Callable[[F], F]]) -> Callable[..., Any]:
    """Let ``@device_option`` and ``@device_option(default="cuda")`` both work."""

    def wrapper(f: F | None = None, /, **kwargs: Any) -> Any:
        if f is not None and callable(f):
            return make(**kwargs)(f)
        return make(**kwargs)

    wrapper.__doc__ = make.__doc__
    wrapper.__name__ = make.__name__
    return wrapper


@_decorator_or_factory
def device_option(default: str = "cpu", help: str = DEVICE_HELP) -> Callable[[F], F]:
    """``--device`` (default cpu), checked by :func:`check_device` while parsing."""
    return click.option("--device", default=default, show_default=True, help=help, callback=_device_callback)


@_decorator_or_factory
def threads_option(default: int | None = 1, help: str = "CPU threads for torch (>= 1).") -> Callable[[F], F]:
    """``--threads`` (>= 1); run the work inside ``with torch_threads(threads):``."""
    return click.option("--threads", type=int, default=default, show_default=default is not None, help=help,
                        callback=_threads_callback)


@_decorator_or_factory
def quiet_option(help: str = "No progress bar or info lines.") -> Callable[[F], F]:
    """``-q/--quiet``."""
    return click.option("-q", "--quiet", is_flag=True, default=False, help=help)


@_decorator_or_factory
def overwrite_option(help: str = "Replace results already in --out (without it the run is refused).") \
        -> Callable[[F], F]:
    """``--overwrite``; pass its value to :func:`check_out_dir`."""
    return click.option("--overwrite", is_flag=True, default=False, help=help)
