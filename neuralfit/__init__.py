"""neuralfit: occlusion-robust 3D human pose and shape fitting from a single image.

The data flow is one direction::

    image -> detect/crop -> nets -> fitting (body, render, neural, priors) -> io

Importing this package loads no files and no heavy modules; every asset is loaded by an
explicit call (``load_body_model``, ``load_pose_prior`` ...).
"""

from neuralfit.errors import NeuralfitError

__version__ = "0.1.0"

__all__ = ["NeuralfitError", "__version__", "fit_image"]


def __getattr__(name: str):
    # ``neuralfit.fit_image`` without importing torch at ``import neuralfit`` time.
    if name == "fit_image":
        from neuralfit.pipeline import fit_image

        return fit_image
    raise AttributeError(f"module 'neuralfit' has no attribute {name!r}")
