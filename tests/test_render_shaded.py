"""The picture renderer (numpy z-buffer) agrees with PyTorch3D's rasteriser."""

import numpy as np
import torch

from neuralfit.render.shaded import render_shaded


def test_shaded_silhouette_matches_pytorch3d():
    from pytorch3d.renderer import MeshRasterizer, RasterizationSettings
    from pytorch3d.structures import Meshes
    from pytorch3d.utils import cameras_from_opencv_projection, ico_sphere

    sphere = ico_sphere(3)
    v = sphere.verts_packed() * 0.5 + torch.tensor([0.1, -0.05, 3.0])
    f = sphere.faces_packed()
    h, w, focal = 96, 128, 150.0
    img = render_shaded(v, f, np.full((len(v), 3), 0.2), (h, w), focal)
    ours = (img < 250).any(-1)

    k = torch.tensor([[[focal, 0.0, w / 2], [0.0, focal, h / 2], [0.0, 0.0, 1.0]]])
    cams = cameras_from_opencv_projection(torch.eye(3)[None], torch.zeros(1, 3), k, torch.tensor([[h, w]]))
    frags = MeshRasterizer(cameras=cams, raster_settings=RasterizationSettings(image_size=(h, w)))(
        Meshes(verts=[v], faces=[f])
    )
    ref = (frags.pix_to_face[0, ..., 0] >= 0).numpy()
    # The two conventions place pixel centres half a pixel apart, so only the one-pixel rim may differ:
    # the disagreement is bounded by the silhouette's perimeter (~2 pi r, r ~ 25 px here).
    assert ref.sum() > 1000
    assert (ours != ref).sum() <= 2 * np.pi * np.sqrt(ref.sum() / np.pi) + 10
    # Lambert shading with the light at the camera: the centre faces the camera, so it is the brightest.
    centre = img[int(h / 2 - 0.05 * focal / 3.0), int(w / 2 + 0.1 * focal / 3.0)].astype(int)
    rim_ys, rim_xs = np.nonzero(ours & ~np.roll(ours, 2, axis=1))
    assert centre.sum() > img[rim_ys[0], rim_xs[0]].astype(int).sum()
