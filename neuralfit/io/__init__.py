"""Writers for everything neuralfit puts on disk. Every writer is atomic."""

from neuralfit.io.atomic import atomic_path, save_json, save_npz

__all__ = ["atomic_path", "save_json", "save_npz"]
