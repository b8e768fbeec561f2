"""The assets shipped inside the package (found when present; nothing is loaded at import time)."""

from __future__ import annotations

from pathlib import Path

_NETS_ASSETS = Path(__file__).parent / "nets" / "assets"
#: The default network and its neural mesh model: heads on mediapipe's frozen BlazePose GHUM trunk
#: (docs/network.md). ``lite0.pt`` / ``lite0_nm.pt`` next to them are the earlier EfficientNet-Lite0 pair.
DEFAULT_NETWORK, DEFAULT_NEURAL_MODEL = "ghum.pt", "ghum_nm.pt"


def default_assets() -> tuple[Path | None, Path | None]:
    """The shipped default network and neural model (``neuralfit/nets/assets/``), or None where not shipped."""
    net, nm = _NETS_ASSETS / DEFAULT_NETWORK, _NETS_ASSETS / DEFAULT_NEURAL_MODEL
    return (net if net.is_file() else None), (nm if nm.is_file() else None)


def default_lifter() -> Path | None:
    """The shipped keypoint lifter (``neuralfit/nets/assets/lifter.pt``), or None."""
    path = _NETS_ASSETS / "lifter.pt"
    return path if path.is_file() else None
