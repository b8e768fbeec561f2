"""Where neuralfit keeps its per-user cache (converted body pickles, low-res meshes)."""

from __future__ import annotations

import os
from pathlib import Path


def neuralfit_home() -> Path:
    """``$NEURALFIT_HOME`` or ``~/.cache/neuralfit``; created on demand."""
    home = Path(os.environ.get("NEURALFIT_HOME", Path.home() / ".cache" / "neuralfit")).expanduser()
    home.mkdir(parents=True, exist_ok=True)
    return home
