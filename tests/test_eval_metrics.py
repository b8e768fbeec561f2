"""Metrics: hand-made cases and a cross-check against scipy's orthogonal Procrustes."""

import numpy as np
import pytest
import torch
from scipy.linalg import orthogonal_procrustes
from scipy.spatial.transform import Rotation

from neuralfit.errors import NeuralfitError
from neuralfit.eval import metrics as M


def _joints(rng, B=6, J=14):
    return rng.normal(0, 0.3, (B, J, 3))


def _similarity(x, rng):
    R = Rotation.random(len(x), random_state=rng.integers(1 << 31)).as_matrix()
    s = rng.uniform(0.5, 2.0, (len(x), 1, 1))
    t = rng.normal(0, 1.0, (len(x), 1, 3))
    return s * np.einsum("bij,bkj->bki", R, x) + t


def test_pa_mpjpe_zero_for_similarity_copy():
    rng = np.random.default_rng(0)
    gt = _joints(rng)
    pred = _similarity(gt, rng)
    # float64 SVD: residual at the 1e-12 m level for O(1) coordinates.
    assert np.abs(M.pa_mpjpe(pred, gt)).max() < 1e-9
    assert np.abs(M.procrustes_align(pred, gt) - gt).max() < 1e-9


def test_pa_mpjpe_matches_scipy_orthogonal_procrustes():
    rng = np.random.default_rng(1)
    gt = _joints(rng, B=8)
    pred = _similarity(gt + rng.normal(0, 0.05, gt.shape), rng)
    ours = M.pa_mpjpe(pred, gt)
    ref = []
    for p, g in zip(pred, gt, strict=True):
        pc, gc = p - p.mean(0), g - g.mean(0)
        R, sv_sum = orthogonal_procrustes(pc, gc)  # min ||pc R - gc||
        s = sv_sum / (pc**2).sum()  # optimal uniform scale given R
        # scipy's R may be a reflection; our noise is small so the optimum is a proper rotation.
        assert np.linalg.det(R) > 0
        ref.append(np.linalg.norm(s * pc @ R - gc, axis=-1).mean())
    np.testing.assert_allclose(ours, ref, rtol=1e-9, atol=1e-12)


def test_pa_mpjpe_rejects_reflection():
    # A mirrored copy cannot be aligned by a rotation: error must stay positive.
    rng = np.random.default_rng(2)
    gt = _joints(rng, B=3)
    pred = gt * np.array([-1.0, 1.0, 1.0])
    aligned = M.procrustes_align(pred, gt)
    assert (M.pa_mpjpe(pred, gt) > 1e-3).all()
    # The alignment is a proper similarity: pairwise distance ratios are preserved (no reflection added).
    d_a = np.linalg.norm(aligned[:, 0] - aligned[:, 1], axis=-1)
    d_p = np.linalg.norm(pred[:, 0] - pred[:, 1], axis=-1)
    d_a2 = np.linalg.norm(aligned[:, 2] - aligned[:, 3], axis=-1)
    d_p2 = np.linalg.norm(pred[:, 2] - pred[:, 3], axis=-1)
    np.testing.assert_allclose(d_a / d_p, d_a2 / d_p2, rtol=1e-9)


def test_mpjpe_known_offset_and_roots():
    rng = np.random.default_rng(3)
    gt = _joints(rng, B=4)
    pred = gt.copy()
    pred[:, 5] += np.array([0.03, 0.04, 0.0])  # one joint 50 mm off
    # Root = pelvis (hips 2, 3), untouched: error 50 mm / 14 joints.
    np.testing.assert_allclose(M.mpjpe(pred, gt, root=M.LSP14_PELVIS), 0.05 / 14, rtol=1e-12)
    # A global translation is removed by any root alignment.
    np.testing.assert_allclose(M.mpjpe(gt + 1.5, gt, root=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(M.mpjpe(gt + 1.5, gt), 0.0, atol=1e-12)
    # Visible-joint variant: only joint 5 selected -> exactly 50 mm; nothing selected -> NaN.
    mask = np.zeros((4, 14), bool)
    mask[:, 5] = True
    mask[3] = False
    v = M.mpjpe(pred, gt, mask=mask, root=M.LSP14_PELVIS)
    np.testing.assert_allclose(v[:3], 0.05, rtol=1e-12)
    assert np.isnan(v[3])


def test_torch_in_torch_out_and_numpy_agree():
    rng = np.random.default_rng(4)
    gt, pred = _joints(rng), _joints(rng)
    t = M.pa_mpjpe(torch.tensor(pred, dtype=torch.float32), torch.tensor(gt, dtype=torch.float32))
    assert torch.is_tensor(t) and t.dtype == torch.float32 and t.shape == (6,)
    np.testing.assert_allclose(t.numpy(), M.pa_mpjpe(pred, gt), rtol=1e-5)  # float32 input rounding


def test_pa_mpjpe_visible_mask_averages_selected_joints():
    rng = np.random.default_rng(5)
    gt, pred = _joints(rng), _joints(rng)
    per = M.joint_errors(pred, gt, align="procrustes")
    mask = rng.random((6, 14)) > 0.4
    mask[:, 0] = True
    want = np.array([per[b][mask[b]].mean() for b in range(6)])
    np.testing.assert_allclose(M.pa_mpjpe(pred, gt, mask=mask), want, rtol=1e-12)


def test_pve_translation_invariant_and_known_offset():
    rng = np.random.default_rng(6)
    v = rng.normal(0, 0.3, (2, 100, 3))
    np.testing.assert_allclose(M.pve(v + 2.0, v), 0.0, atol=1e-12)
    w = v.copy()
    w[:, :50, 0] += 0.02
    root = np.zeros((2, 3))
    np.testing.assert_allclose(M.pve(w, v, root, root), 0.01, rtol=1e-12)  # half the vertices 20 mm off


def test_pckh_threshold_is_half_head_segment():
    B, J = 2, 14
    gt = np.zeros((B, J, 2))
    gt[:, :, 0] = np.arange(J) * 100.0
    gt[:, 12] = [0.0, 0.0]
    gt[:, 13] = [0.0, 40.0]  # head segment 40 px -> threshold 20 px
    pred = gt.copy()
    pred[0, 0] += [19.0, 0.0]  # inside
    pred[0, 1] += [0.0, 21.0]  # outside
    pred[1, :7] += [30.0, 0.0]  # 7 outside
    got = M.pckh(pred, gt)
    np.testing.assert_allclose(got, [13 / 14, 7 / 14])
    mask = np.zeros((B, J), bool)
    mask[:, :2] = True
    np.testing.assert_allclose(M.pckh(pred, gt, mask=mask), [0.5, 0.0])
    # SMPL-24 variant: head segment neck (12) -> head (15).
    g24 = np.zeros((1, 24, 2))
    g24[0, 15] = [0, 10]
    p24 = g24.copy()
    p24[0, 3] += [6, 0]
    np.testing.assert_allclose(M.pckh(p24, g24, head=M.SMPL24_HEAD), [23 / 24])


def test_bad_shapes_raise():
    with pytest.raises(NeuralfitError):
        M.mpjpe(np.zeros((2, 14, 3)), np.zeros((2, 13, 3)))
    with pytest.raises(NeuralfitError):
        M.mpjpe(np.zeros((2, 14, 3)), np.zeros((2, 14, 3)), mask=np.ones((2, 13)))
    with pytest.raises(NeuralfitError):
        M.mpjpe(np.zeros((2, 14, 3)), np.zeros((2, 14, 3)), root=20)
    with pytest.raises(NeuralfitError):
        M.pckh(np.zeros((2, 10, 2)), np.zeros((2, 10, 2)))  # LSP head index 13 out of range
