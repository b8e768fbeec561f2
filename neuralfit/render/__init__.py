"""PyTorch3D-compatible camera in crop pixels, rasteriser of the low-res mesh, visibility cache."""

from neuralfit.render.camera import CropCamera, default_focal, project
from neuralfit.render.raster import (
    Fragments,
    VisibilityCache,
    fragments_from_faces,
    interpolate,
    pix_to_face,
    rasterize,
    screen_vertices,
    soft_silhouette,
)

__all__ = [
    "CropCamera", "Fragments", "VisibilityCache", "fragments_from_faces", "default_focal", "interpolate", "pix_to_face",
    "project", "rasterize", "screen_vertices", "soft_silhouette",
]
