"""Camera, rasteriser backends, differentiable barycentrics, visibility cache, soft silhouette."""

import math

import pytest
import torch
from pytorch3d.renderer.mesh import rasterize_meshes
from pytorch3d.structures import Meshes
from pytorch3d.utils import ico_sphere

from neuralfit.errors import NeuralfitError
from neuralfit.render import (
    CropCamera,
    VisibilityCache,
    default_focal,
    fragments_from_faces,
    interpolate,
    pix_to_face,
    project,
    rasterize,
    screen_vertices,
    soft_silhouette,
)

SIZE = 56


def _spheres(B=3, radius=0.4, depth=12.0, seed=0):
    """B unit-ish ico spheres (1280 faces) in front of a 224-px crop camera, shifted sideways."""
    m = ico_sphere(3)
    v = m.verts_packed() * radius
    g = torch.Generator().manual_seed(seed)
    vb = v[None].repeat(B, 1, 1)
    vb = vb + torch.cat([0.2 * torch.randn(B, 1, 2, generator=g), torch.full((B, 1, 1), depth)], -1)
    # Squash along x so faces are not all alike.
    vb[..., 0] = vb[..., 0] * torch.linspace(0.7, 1.3, B)[:, None]
    return vb, m.faces_packed()


def _p3d_reference(verts, faces, cam, size):
    """PyTorch3D perspective-correct rasterisation of our screen-space mesh (the reference)."""
    scr = screen_vertices(verts, cam, size)
    ndc = torch.stack([1 - 2 * scr[..., 0] / size, 1 - 2 * scr[..., 1] / size, scr[..., 2]], -1)
    B, F = verts.shape[0], faces.shape[0]
    p2f, zbuf, bary, _ = rasterize_meshes(Meshes(verts=ndc, faces=faces[None].expand(B, F, 3)),
                                          image_size=size, faces_per_pixel=1, perspective_correct=True)
    off = (torch.arange(B) * F).view(B, 1, 1)
    return torch.where(p2f[..., 0] >= 0, p2f[..., 0] - off, -1), bary[..., 0, :], zbuf[..., 0]


def test_camera_conventions():
    cam = CropCamera(224)
    assert cam.f == pytest.approx(5000.0)
    assert default_focal(448) == pytest.approx(10000.0)
    pts = torch.tensor([[[0.0, 0.0, 10.0], [0.1, -0.2, 20.0]]])
    uv = project(pts, cam)
    assert torch.allclose(uv[0, 0], torch.tensor([112.0, 112.0]))
    assert torch.allclose(uv[0, 1], torch.tensor([5000 * 0.1 / 20 + 112, 5000 * -0.2 / 20 + 112]))
    # A feature map at stride 4 sees the same point at a quarter of the crop coordinates.
    assert torch.allclose(project(pts, cam, size=56), uv / 4)
    s = torch.tensor([[0.9, 0.1, -0.2]])
    assert torch.allclose(cam.transl_from_weak_perspective(s), torch.tensor([[0.1, -0.2, 2 * 5000 / (224 * 0.9)]]))
    with pytest.raises(NeuralfitError):
        CropCamera(0)
    with pytest.raises(NeuralfitError):
        project(torch.zeros(1, 2, 2), cam)


def test_pixel_centre_convention():
    """A small triangle around the centre of pixel (row 10, column 20) covers exactly that pixel."""
    cam = CropCamera(SIZE)  # map == crop, focal 1250 px
    f, c = cam.intrinsics()
    z = 10.0
    u0, v0 = 20.5, 10.5
    tri2d = torch.tensor([[u0 - 0.3, v0 - 0.3], [u0 + 0.3, v0 - 0.3], [u0, v0 + 0.3]])
    verts = torch.cat([(tri2d - c) * z / f, torch.full((3, 1), z)], -1)[None]
    faces = torch.tensor([[0, 1, 2]])
    for backend in ("torch", "pytorch3d"):
        p2f = pix_to_face(verts, faces, cam, SIZE, backend)
        assert torch.nonzero(p2f[0] >= 0).tolist() == [[10, 20]], backend


@pytest.mark.parametrize("B", [1, 3])
def test_torch_backend_matches_pytorch3d(B):
    verts, faces = _spheres(B)
    cam = CropCamera(224)
    a = pix_to_face(verts, faces, cam, SIZE, "torch")
    b = pix_to_face(verts, faces, cam, SIZE, "pytorch3d")
    assert a.shape == (B, SIZE, SIZE)
    assert (a >= 0).sum() > 500 * B
    # Identical except possibly pixels whose centre lies exactly on a shared edge (ties).
    assert (a == b).float().mean() > 0.999
    assert torch.equal(a >= 0, b >= 0)


def test_barycentrics_match_pytorch3d_perspective_correct():
    verts, faces = _spheres(2)
    cam = CropCamera(224)
    frags = rasterize(verts, faces, cam, SIZE, backend="pytorch3d")
    ref_p2f, ref_bary, ref_z = _p3d_reference(verts, faces, cam, SIZE)
    m = frags.mask
    assert torch.equal(frags.pix_to_face, ref_p2f)
    # float32 edge functions on ~20-pixel coordinates: agreement to ~1e-5.
    assert (frags.bary[m] - ref_bary[m]).abs().max() < 1e-4
    assert (frags.depth[m] - ref_z[m]).abs().max() < 1e-4
    assert torch.allclose(frags.bary[m].sum(-1), torch.ones(int(m.sum())), atol=1e-5)
    assert (frags.bary[~m] == 0).all()


def test_barycentric_gradients_and_interpolation():
    verts, faces = _spheres(1)
    verts = verts.double()  # float64 so the finite difference below is meaningful
    cam = CropCamera(224)
    v = verts.clone().requires_grad_()
    frags = rasterize(v, faces, cam, SIZE)
    # Interpolating the vertices' own depth reproduces the rendered depth (perspective-correct).
    zi = interpolate(v[..., 2:3], frags)[..., 0]
    assert torch.allclose(zi[frags.mask], frags.depth[frags.mask], atol=1e-4)
    # Gradient of the sum of depths w.r.t. vertices is finite and non-zero; compare one coordinate with
    # a finite difference at fixed visibility (face ids held, as the cache does).
    (frags.depth_fg.sum()).backward()
    g = v.grad
    assert torch.isfinite(g).all() and g.abs().sum() > 0
    i = int(frags.face_verts[0, 0])
    eps = 1e-6  # the depth field is strongly curved near grazing faces: keep the step tiny (float64)
    vp, vm = verts.clone(), verts.clone()
    vp[0, i, 0] += eps
    vm[0, i, 0] -= eps
    fp = fragments_from_faces(vp, faces, frags.pix_to_face, cam, SIZE).depth_fg.sum()
    fm = fragments_from_faces(vm, faces, frags.pix_to_face, cam, SIZE).depth_fg.sum()
    assert float(g[0, i, 0]) == pytest.approx(float(fp - fm) / (2 * eps), rel=1e-4, abs=1e-6)


def test_visibility_cache_period_and_exactness():
    verts, faces = _spheres(2)
    cam = CropCamera(224)
    cache = VisibilityCache(faces, cam, SIZE, every=3)
    shift = torch.tensor([0.004, 0.0, 0.0])  # ~0.5 feature pixel per call
    for k in range(7):
        v = verts + k * shift
        frags = cache(v)
        fresh = rasterize(v, faces, cam, SIZE)
        if k % 3 == 0:
            assert torch.equal(frags.pix_to_face, fresh.pix_to_face)
            assert torch.allclose(frags.bary, fresh.bary, atol=1e-6)
        else:
            # Stale visibility: same face ids as the last rasterisation, barycentrics of the current mesh.
            assert torch.equal(frags.pix_to_face, cache._p2f)
            ref = fragments_from_faces(v, faces, frags.pix_to_face, cam, SIZE)
            assert torch.allclose(frags.bary_fg, ref.bary_fg)
            # Close to exact: at most a thin band of silhouette pixels differs.
            assert (frags.mask != fresh.mask).float().mean() < 0.05
    assert cache.n_rasterisations == 3  # calls 0, 3, 6
    with pytest.raises(NeuralfitError):
        VisibilityCache(faces, cam, SIZE, every=0)


def test_soft_silhouette():
    verts, faces = _spheres(1)
    cam = CropCamera(224)
    v = verts.clone().requires_grad_()
    sil = soft_silhouette(v, faces, cam, SIZE, sigma=1e-4)
    hard = rasterize(verts, faces, cam, SIZE).mask
    assert sil.shape == (1, SIZE, SIZE)
    assert float(sil.detach().min()) >= 0.0 and float(sil.detach().max()) <= 1.0
    # Inside the hard mask the soft one is ~1, far outside ~0; they disagree only along the boundary.
    assert (sil[hard] > 0.5).float().mean() > 0.97
    assert ((sil > 0.5) != hard).float().mean() < 0.03
    sil.sum().backward()
    assert torch.isfinite(v.grad).all() and v.grad.abs().sum() > 0


def test_bad_shapes():
    cam = CropCamera(224)
    with pytest.raises(NeuralfitError, match="vertices"):
        rasterize(torch.zeros(5, 3), torch.zeros(1, 3, dtype=torch.long), cam, SIZE)
    with pytest.raises(NeuralfitError, match="backend"):
        pix_to_face(torch.ones(1, 3, 3), torch.tensor([[0, 1, 2]]), cam, SIZE, backend="opengl")


def test_behind_camera_is_not_drawn():
    verts, faces = _spheres(1, depth=-12.0)
    cam = CropCamera(224)
    for backend in ("torch", "pytorch3d"):
        assert not (pix_to_face(verts, faces, cam, SIZE, backend) >= 0).any()
    assert math.isfinite(float(rasterize(verts, faces, cam, SIZE).depth.sum()))
