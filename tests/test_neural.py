"""Neural mesh model: orientation weights, likelihood / outlier process, constructors, save/load."""

import math

import pytest
import torch
import torch.nn.functional as Fn

from neuralfit.errors import NeuralfitError
from neuralfit.neural import NeuralMeshModel, limb_angles, limb_pairs, orientation_weights
from neuralfit.neural.orientation import SMPL_PARENTS
from neuralfit.render import CropCamera, rasterize


def test_orientation_weights_partition_and_bins():
    gamma = torch.linspace(0, math.pi, 181)
    a = orientation_weights(gamma, K=3, tau=10.0)
    assert a.shape == (181, 3)
    assert torch.allclose(a.sum(-1), torch.ones(181), atol=1e-6)
    assert (a >= 0).all()
    # Away from the bin edges (pi/3, 2pi/3) the assignment is nearly hard and picks the right bin.
    for g, k in ((0.3, 0), (math.pi / 2, 1), (2.8, 2)):
        w = orientation_weights(torch.tensor([g]), 3, 10.0)[0]
        assert int(w.argmax()) == k and float(w[k]) > 0.9
    # At an edge the two neighbouring bins share the weight equally (the sigmoid is 1/2 there).
    w = orientation_weights(torch.tensor([math.pi / 3]), 3, 10.0)[0]
    assert float(w[0]) == pytest.approx(float(w[1]), abs=1e-4)
    # Larger tau -> sharper; K = 1 -> all ones.
    soft = orientation_weights(torch.tensor([0.9]), 3, 5.0)[0]
    sharp = orientation_weights(torch.tensor([0.9]), 3, 100.0)[0]
    assert float(sharp.max()) > float(soft.max())
    assert torch.equal(orientation_weights(gamma, K=1), torch.ones(181, 1))


def test_limb_pairs_and_angles():
    pairs = limb_pairs(torch.tensor(SMPL_PARENTS))
    assert pairs.shape == (24, 2)
    assert pairs[0].tolist() == [0, 3] and pairs[9].tolist() == [9, 12] and pairs[15].tolist() == [12, 15]
    joints = torch.zeros(1, 24, 3)
    joints[0, 3] = torch.tensor([0.0, 0.0, 1.0])  # pelvis -> spine1 along +z: gamma = 0
    joints[0, 4] = torch.tensor([0.0, 1.0, 0.0])  # left hip -> knee along +y: gamma = pi/2
    g = limb_angles(joints, pairs)
    assert float(g[0, 0]) == pytest.approx(0.0, abs=2e-3)
    assert float(g[0, 1]) == pytest.approx(math.pi / 2, abs=1e-5)
    generic = limb_pairs([-1, 0, 1])  # a chain: first child, leaf uses its parent bone
    assert generic.tolist() == [[0, 1], [1, 2], [1, 2]]


def test_from_statistics_is_normalised_mean():
    g = torch.Generator().manual_seed(0)
    sums = torch.randn(5, 3, 8, generator=g)
    counts = torch.rand(5, 3, generator=g) + 0.1
    counts[2, 1] = 0.0  # no data for one orientation: falls back to the vertex's pooled mean
    m = NeuralMeshModel.from_statistics(sums, counts, torch.randn(8, generator=g))
    assert torch.allclose(m.features[0, 0], Fn.normalize(sums[0, 0], dim=0), atol=1e-6)
    pooled = Fn.normalize(sums[2].sum(0), dim=0)
    assert torch.allclose(m.features[2, 1], pooled, atol=1e-6)
    assert torch.allclose(m.features.norm(dim=-1), torch.ones(5, 3))
    counts[4] = 0.0
    with pytest.raises(NeuralfitError, match="no training"):
        NeuralMeshModel.from_statistics(sums, counts, torch.randn(8))
    ok = NeuralMeshModel.from_statistics(sums, counts, torch.ones(8), allow_unseen=True)
    assert torch.allclose(ok.features[4, 0], Fn.normalize(torch.ones(8), dim=0), atol=1e-6)


def test_bad_construction():
    with pytest.raises(NeuralfitError):
        NeuralMeshModel(torch.randn(4, 8), torch.randn(8))
    with pytest.raises(NeuralfitError):
        NeuralMeshModel(torch.randn(4, 3, 8), torch.randn(7))
    f = torch.randn(4, 3, 8)
    f[0, 0, 0] = float("nan")
    with pytest.raises(NeuralfitError, match="NaN"):
        NeuralMeshModel(f, torch.randn(8))


def test_save_load_roundtrip_and_mismatch(tmp_path, free_body):
    n = free_body.lowres.num_vertices
    m = NeuralMeshModel.random(n, K=3, dim=16, n_clutter=2, seed=3, body_name=free_body.name, body_spec="free")
    path = tmp_path / "nm.pt"
    m.save(path)
    back = NeuralMeshModel.load(path, body=free_body)
    # Re-normalising unit vectors on load may change the last float bit only.
    assert torch.allclose(back.features, m.features, atol=1e-6) and torch.allclose(back.clutter, m.clutter, atol=1e-6)
    assert back.metadata() == m.metadata()
    wrong = NeuralMeshModel.random(n - 1, K=3, dim=16)
    wrong.save(tmp_path / "wrong.pt")
    with pytest.raises(NeuralfitError, match="vertices"):
        NeuralMeshModel.load(tmp_path / "wrong.pt", body=free_body)
    other = NeuralMeshModel.random(n, K=3, dim=16, body_name="smpl")
    other.save(tmp_path / "other.pt")
    with pytest.raises(NeuralfitError, match="built for body"):
        NeuralMeshModel.load(tmp_path / "other.pt", body=free_body)
    with pytest.raises(NeuralfitError, match="not found"):
        NeuralMeshModel.load(tmp_path / "missing.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(NeuralfitError, match="cannot read"):
        NeuralMeshModel.load(tmp_path / "junk.pt")


@pytest.fixture(scope="module")
def scene(free_body):
    """A body rendered at 56 px; half of its pixels get clutter features (an 'occluder')."""
    from neuralfit.fitting import FitBody

    fb = FitBody(free_body)
    n = fb.n_lowres
    model = NeuralMeshModel.random(n, K=3, dim=64, seed=0)
    go = torch.tensor([[math.pi, 0.0, 0.0]])
    posed = fb(torch.zeros(1, 10), go, torch.zeros(1, 69), torch.tensor([[0.0, 0.2, 45.0]]))
    frags = rasterize(posed.lowres, fb.faces, CropCamera(224), 56)
    alpha = model.part_orientation(posed.joints, fb.parents)
    feats = model.expected_features(frags, alpha[:, fb.part_labels])
    bg = model.clutter[0][None, :, None, None].expand_as(feats)
    occluded = torch.zeros(1, 56, 56, dtype=torch.bool)
    occluded[:, 28:] = True
    feats = torch.where(frags.mask[:, None] & ~occluded[:, None], feats, bg).contiguous()
    return fb, model, frags, alpha, feats, occluded


def test_outlier_posterior_marks_clutter_pixels(scene):
    fb, model, frags, alpha, feats, occluded = scene
    out = model.loss(feats, frags, alpha, fb.part_labels, p_fg=0.5, outlier=True, mode="mixture")
    fg = frags.mask
    occ = out.occlusion
    assert occ.shape == (1, 56, 56)
    assert (occ[~fg] == 0).all()
    # Clutter-feature body pixels: posterior ~1; clean body pixels: ~0 (kappa = 1/0.07 separates them).
    assert float(occ[fg & occluded].mean()) > 0.99
    assert float(occ[fg & ~occluded].mean()) < 0.01
    # Surrogate mode gives the same decision.
    sur = model.loss(feats, frags, alpha, fb.part_labels, outlier=True, mode="surrogate")
    assert torch.equal(sur.occlusion[fg] > 0.5, occ[fg] > 0.5)


def test_person_mask_is_a_second_observation_of_the_outlier_process(scene):
    """A segmenter's person probability m enters as p(m | body) = eps + (1 - 2 eps) m, p(m | clutter) =
    eps + (1 - 2 eps)(1 - m): m = 0.5 says nothing (same posterior, loss up by exactly T log 2 per pixel);
    m = 0 / 1 moves every covered pixel's log-odds of clutter by +/- log((1 - eps) / eps)."""
    fb, model, frags, alpha, feats, occluded = scene
    fg = frags.mask
    eps, T = 0.05, model.temperature
    base = model.loss(feats, frags, alpha, fb.part_labels)
    half = model.loss(feats, frags, alpha, fb.part_labels, person_prob=torch.full((1, 56, 56), 0.5), person_eps=eps)
    torch.testing.assert_close(half.occlusion, base.occlusion)
    torch.testing.assert_close(half.loss, base.loss + T * math.log(2.0))

    def logit(p):
        return torch.log(p) - torch.log1p(-p)

    shift = math.log((1 - eps) / eps)
    # Half-way features (body + clutter mean, renormalised) keep the posterior away from 0 and 1.
    bg = model.clutter[0][None, :, None, None].expand_as(feats)
    mixed = torch.nn.functional.normalize(feats + bg, dim=1).contiguous()
    base = model.loss(mixed, frags, alpha, fb.part_labels)
    for m, sign in ((0.0, 1.0), (1.0, -1.0)):
        out = model.loss(mixed, frags, alpha, fb.part_labels, person_prob=torch.full((1, 56, 56), m), person_eps=eps)
        p0, p1 = base.occlusion[fg].double().clamp(1e-6, 1 - 1e-6), out.occlusion[fg].double().clamp(1e-6, 1 - 1e-6)
        ok = (p0 > 1e-3) & (p0 < 1 - 1e-3) & (p1 > 1e-3) & (p1 < 1 - 1e-3)  # float32 sigmoid: logit exact to ~1e-4 here
        assert ok.sum() > 50, int(ok.sum())
        torch.testing.assert_close(logit(p1[ok]) - logit(p0[ok]), torch.full_like(p0[ok], sign * shift),
                                   atol=1e-3, rtol=0)
    # Features that cannot tell body from clutter: the mask alone then decides which pixels are occluded.
    flat = model.clutter[0][None, :, None, None].expand_as(feats).contiguous()
    m = (~occluded).float()
    out = model.loss(flat, frags, alpha, fb.part_labels, person_prob=m, person_eps=eps)
    no_mask = model.loss(flat, frags, alpha, fb.part_labels)
    assert float(out.occlusion[fg & occluded].mean()) > float(no_mask.occlusion[fg & occluded].mean())
    assert float(out.occlusion[fg & ~occluded].mean()) < float(no_mask.occlusion[fg & ~occluded].mean())
    with pytest.raises(NeuralfitError, match="person mask must have shape"):
        model.loss(feats, frags, alpha, fb.part_labels, person_prob=torch.zeros(1, 28, 28))
    # The surrogate mode and the outlier-free mixture ignore the mask.
    off = model.loss(feats, frags, alpha, fb.part_labels, outlier=False, person_prob=torch.zeros(1, 56, 56))
    torch.testing.assert_close(off.loss, model.loss(feats, frags, alpha, fb.part_labels, outlier=False).loss)


def test_mixture_nll_matches_direct_formula(scene):
    """The cached, sparse implementation equals the textbook per-pixel mixture computed densely."""
    fb, model, frags, alpha, feats, occluded = scene
    T, p = model.temperature, 0.3
    out = model.loss(feats, frags, alpha, fb.part_labels, p_fg=p, outlier=True, mode="mixture")
    f = feats[0].permute(1, 2, 0)  # (H, W, D)
    total = 0.0
    bary = frags.bary[0]
    for (y, x) in torch.nonzero(torch.ones(56, 56)).tolist():
        lc = math.log(math.exp(float(f[y, x] @ model.clutter[0]) / T))
        face = int(frags.pix_to_face[0, y, x])
        if face < 0:
            total += -T * lc
            continue
        lik = 0.0
        for j, v in enumerate(fb.faces[face].tolist()):
            a = alpha[0, fb.part_labels[v]]
            for k in range(3):
                lik += max(float(bary[y, x, j]), 0.0) * float(a[k]) * math.exp(float(f[y, x] @ model.features[v, k]) / T)
        total += -T * math.log(p * lik + (1 - p) * math.exp(lc))
    assert float(out.loss[0]) == pytest.approx(total / (56 * 56), rel=1e-4)


def test_outlier_process_caps_cost_of_occluded_pixels(scene):
    fb, model, frags, alpha, feats, occluded = scene
    on = model.loss(feats, frags, alpha, fb.part_labels, outlier=True)
    off = model.loss(feats, frags, alpha, fb.part_labels, outlier=False)
    # A clutter pixel on the body costs about -T log((1-p) e^{kappa}) = -1 + 0.05 with the outlier process
    # and about -T kappa cos(f, phi) ~ 0 (random directions) without: ~0.95 more per such pixel.
    frac = float((frags.mask & occluded).float().mean())
    assert float(off.loss[0]) - float(on.loss[0]) > 0.8 * frac
    clean = torch.where(occluded[:, None], model.expected_features(frags, alpha[:, fb.part_labels]), feats)
    on_clean = model.loss(clean.contiguous(), frags, alpha, fb.part_labels, outlier=True)
    off_clean = model.loss(clean.contiguous(), frags, alpha, fb.part_labels, outlier=False)
    # On unoccluded data the two agree up to the tiny clutter share (p(z=0) e^{kappa cos_c} << body term).
    assert float(off_clean.loss[0]) == pytest.approx(float(on_clean.loss[0]), abs=0.03)


def test_loss_is_differentiable_in_the_pose(scene, free_body):
    fb, model, frags, alpha, feats, occluded = scene
    from neuralfit.render import fragments_from_faces

    go = torch.tensor([[math.pi, 0.0, 0.0]])
    pose = torch.zeros(1, 69, requires_grad=True)
    posed = fb(torch.zeros(1, 10), go, pose, torch.tensor([[0.0, 0.2, 45.0]]))
    fr = fragments_from_faces(posed.lowres, fb.faces, frags.pix_to_face, CropCamera(224), 56, raster_id=99)
    a = model.part_orientation(posed.joints, fb.parents)
    for mode in ("mixture", "surrogate"):
        (g,) = torch.autograd.grad(model.loss(feats, fr, a, fb.part_labels, mode=mode).loss.sum(), pose,
                                   retain_graph=True)
        assert torch.isfinite(g).all() and g.abs().sum() > 0


def test_loss_input_checks(scene):
    fb, model, frags, alpha, feats, occluded = scene
    with pytest.raises(NeuralfitError, match="feature map"):
        model.loss(feats[:, :10], frags, alpha, fb.part_labels)
    with pytest.raises(NeuralfitError, match="mode"):
        model.loss(feats, frags, alpha, fb.part_labels, mode="bogus")
    with pytest.raises(NeuralfitError, match="p\\(z=1\\)"):
        model.loss(feats, frags, alpha, fb.part_labels, p_fg=1.0)
