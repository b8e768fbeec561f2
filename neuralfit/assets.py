"""The assets shipped inside the package (found when present; nothing is loaded at import time)."""

from __future__ import annotations

from pathlib import Path

_NETS_ASSETS = Path(__file__).parent / "nets" / "assets"
_NEURAL_ASSETS = Path(__file__).parent / "neural" / "assets"


def _find(folder: Path) -> Path | None:
    if not folder.is_dir():
        return None
    if (folder / "default.pt").is_file():
        return folder / "default.pt"
    pts = sorted(p for p in folder.glob("*.pt") if p.name != "lifter.pt")
    return pts[0] if len(pts) == 1 else None


def default_assets() -> tuple[Path | None, Path | None]:
    """The shipped default network and neural model, or None where not shipped.

    Looks for ``neuralfit/nets/assets/*.pt`` and ``neuralfit/neural/assets/*.pt``: a file named
    ``default.pt`` wins; otherwise the only ``.pt`` there.
    """
    return _find(_NETS_ASSETS), _find(_NEURAL_ASSETS)


def default_lifter() -> Path | None:
    """The shipped keypoint lifter (``neuralfit/nets/assets/lifter.pt``), or None."""
    path = _NETS_ASSETS / "lifter.pt"
    return path if path.is_file() else None
