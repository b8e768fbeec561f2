"""Atomic output folders: a folder of results appears complete or not at all.

The files are written into a hidden temporary folder next to the target (same filesystem), which is
renamed into place at the end. An existing target is first renamed aside and deleted only after the
new folder is in place, so a crash leaves either the old folder or the new one (plus, at worst, a
hidden ``.<name>.old-*`` folder), never a half-written ``<name>``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from neuralfit.errors import NeuralfitError


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder; on success it becomes ``path``, on error it is removed."""
    target = Path(path)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    except OSError as exc:
        raise NeuralfitError(f"cannot create output folder in {target.parent}: {exc.strerror}") from None
    try:
        yield tmp
        # mkdtemp makes 0700 folders; give the result the permissions a plain mkdir() would.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
            os.replace(target, old / target.name)
        os.replace(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def check_writable(folder: str | os.PathLike) -> Path:
    """Create ``folder`` if needed and check that files can be created in it (one-line error if not)."""
    p = Path(folder)
    try:
        p.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".neuralfit-write-test-", dir=p)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise NeuralfitError(f"output folder {p} is not writable ({exc.strerror}); pass a writable --out") from None
    return p
