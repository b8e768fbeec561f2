"""Cheap kinematics for the IK start: pose only the BlazePose-33 keypoints, and closed-form limb rotations.

Shapes: B batch; 24 SMPL joints; 33 BlazePose keypoints (mediapipe's order).
"""

from __future__ import annotations

import torch
from smplx.lbs import batch_rodrigues

from neuralfit.errors import NeuralfitError


class KeypointPoser:
    """Poses only what the BlazePose-33 keypoints need: the 24 joints and the 25 landmark vertices.

    That is ~50 points instead of the fitter's ~2.3k, which keeps an L-BFGS evaluation ~1 ms.
    """

    def __init__(self, body: torch.nn.Module, dtype: torch.dtype) -> None:
        for attr in ("smpl", "landmark_ids", "j_template", "j_shapedirs", "parents", "keypoint_sets"):
            if not hasattr(body, attr):
                raise NeuralfitError(f"body of type {type(body).__name__} has no {attr!r}; expected a "
                                     "neuralfit.body.BodyModel (load_body_model)")
        s, ids = body.smpl, body.landmark_ids
        self.parents = body.parents
        self.j_template = body.j_template.to(dtype)
        self.j_shapedirs = body.j_shapedirs.to(dtype)
        self.v_template = s.v_template[ids].to(dtype)
        self.shapedirs = s.shapedirs[ids].to(dtype)
        self.weights = s.lbs_weights[ids].to(dtype)
        pd = s.posedirs.reshape(207, -1, 3)[:, ids]
        self.posedirs = pd.to(dtype) if bool(pd.abs().max() > 0) else None
        # Forward kinematics one tree level at a time (~9 batched products instead of smplx's 23).
        par = [int(p) for p in self.parents.tolist()]
        depth = [0] * len(par)
        for j in range(1, len(par)):
            depth[j] = depth[par[j]] + 1
        self.levels: list[tuple[torch.Tensor, torch.Tensor]] = []  # (joints at level, parents' slot in level above)
        prev: list[int] = [0]
        order = [0]
        for d in range(1, max(depth) + 1):
            js = [j for j in range(len(par)) if depth[j] == d]
            self.levels.append((torch.tensor(js, device=ids.device), torch.tensor([prev.index(par[j]) for j in js], device=ids.device)))
            prev = js
            order += js
        self.unorder = torch.argsort(torch.tensor(order, device=ids.device))
        ks = body.keypoint_sets["blazepose33"]
        self.kp_weights = ks.weights.to(device=ids.device, dtype=dtype)
        self.valid = ks.valid.to(ids.device)
        self.num_betas = int(s.shapedirs.shape[-1])

    def _kinematics(self, rot: torch.Tensor, joints_rest: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """rot (B, 24, 3, 3) local rotations, joints_rest (B, 24, 3) -> posed joints (B, 24, 3) and the
        rest-relative transforms (B, 24, 3, 4) that skinning blends (smplx's ``A`` without its last row)."""
        gr, gp = [rot[:, :1]], [joints_rest[:, :1]]
        for js, pslot in self.levels:
            pr = gr[-1][:, pslot]
            off = joints_rest[:, js] - joints_rest[:, self.parents[js]]
            gp.append(gp[-1][:, pslot] + (pr @ off[..., None])[..., 0])
            gr.append(pr @ rot[:, js])
        g_rot = torch.cat(gr, dim=1)[:, self.unorder]
        g_pos = torch.cat(gp, dim=1)[:, self.unorder]
        shift = g_pos - (g_rot @ joints_rest[..., None])[..., 0]
        return g_pos, torch.cat([g_rot, shift[..., None]], dim=-1)

    def __call__(self, betas: torch.Tensor, rot: torch.Tensor) -> torch.Tensor:
        """betas (B, K), rot (B, 24, 3, 3) -> (B, 33, 3) keypoints (no translation)."""
        b = betas.shape[0]
        if betas.shape[1] < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[1]))
        betas = betas[:, : self.num_betas]
        joints_rest = self.j_template + torch.einsum("jck,bk->bjc", self.j_shapedirs, betas)
        joints, rel = self._kinematics(rot, joints_rest)
        v = self.v_template + torch.einsum("lck,bk->blc", self.shapedirs, betas)
        if self.posedirs is not None:
            feat = (rot[:, 1:] - torch.eye(3, dtype=rot.dtype, device=rot.device)).reshape(b, -1)
            v = v + (feat @ self.posedirs.reshape(207, -1)).reshape(b, -1, 3)
        t = torch.matmul(self.weights, rel.reshape(b, 24, 12)).reshape(b, -1, 3, 4)
        lm = (t[..., :3] * v[..., None, :]).sum(-1) + t[..., 3]
        return torch.einsum("jk,bkc->bjc", self.kp_weights, torch.cat([joints, lm], dim=1))


def weighted_kabsch(src: torch.Tensor, dst: torch.Tensor, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation R (B, 3, 3) and translation t (B, 3) minimising ``sum_j w_j |R src_j + t - dst_j|^2``.

    src, dst (B, N, 3); w (B, N) >= 0. Samples with fewer than three weighted points get R = I.
    """
    wsum = w.sum(1, keepdim=True).clamp_min(1e-12)
    cs = (w[..., None] * src).sum(1) / wsum
    cd = (w[..., None] * dst).sum(1) / wsum
    h = torch.einsum("bn,bni,bnj->bij", w, src - cs[:, None], dst - cd[:, None])
    u, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ u.transpose(1, 2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1))
    r = vt.transpose(1, 2) @ fix @ u.transpose(1, 2)
    few = (w > 0).sum(1) < 3
    r = torch.where(few[:, None, None], torch.eye(3, dtype=r.dtype, device=r.device).expand_as(r), r)
    return r, cd - (r @ cs[..., None])[..., 0]


def _kabsch_rotation(u: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """Rotation R (B, 3, 3) minimising ``sum_k w_k |R u_k - v_k|^2`` (no translation); u, v (B, K, 3)."""
    h = torch.einsum("bk,bki,bkj->bij", w, u, v)
    uu, _, vt = torch.linalg.svd(h)
    d = torch.sign(torch.linalg.det(vt.transpose(1, 2) @ uu.transpose(1, 2)))
    fix = torch.diag_embed(torch.stack([torch.ones_like(d), torch.ones_like(d), d], dim=1))
    r = vt.transpose(1, 2) @ fix @ uu.transpose(1, 2)
    ok = (w > 0).any(1) & (h.abs().sum((1, 2)) > 1e-12)
    return torch.where(ok[:, None, None], r, torch.eye(3, dtype=r.dtype, device=r.device).expand_as(r))


def _swing(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """Smallest rotation (B, 3, 3) taking direction u (B, 3) to direction v (B, 3) (no twist about them)."""
    u = torch.nn.functional.normalize(u, dim=-1, eps=1e-9)
    v = torch.nn.functional.normalize(v, dim=-1, eps=1e-9)
    axis = torch.cross(u, v, dim=-1)
    s, c = axis.norm(dim=-1), (u * v).sum(-1)
    angle = torch.atan2(s, c)
    # Antiparallel: any axis perpendicular to u works; pick one that is not parallel to it.
    alt = torch.cross(u, torch.where(u[:, :1].abs() < 0.9, u.new_tensor([1.0, 0, 0]), u.new_tensor([0, 1.0, 0])), dim=-1)
    axis = torch.where((s < 1e-6)[:, None], alt, axis)
    return batch_rodrigues(torch.nn.functional.normalize(axis, dim=-1, eps=1e-12) * angle[:, None])


# Joints solved in closed form for the start, in tree order: (SMPL joint, BlazePose keypoint at the joint,
# keypoints it moves, the next joint down a two-bone chain with its keypoint and flexion axis (x, y, z) * sign).
# Flexion axes: SMPL's rest pose is a T-pose; a left forearm (+x) flexes forward (+z) under a negative
# rotation about y, a right one under a positive one; shins (-y) flex backward (-z) about +x.
_CHAINS: list[tuple[int, int, list[int], tuple[int, int, tuple[float, float, float]] | None]] = [
    (16, 11, [13, 15], (18, 13, (0.0, -1.0, 0.0))), (17, 12, [14, 16], (19, 14, (0.0, 1.0, 0.0))),
    (1, 23, [25, 27], (4, 25, (1.0, 0.0, 0.0))), (2, 24, [26, 28], (5, 26, (1.0, 0.0, 0.0))),
    (18, 13, [15], None), (19, 14, [16], None), (4, 25, [27], None), (5, 26, [28], None),
    (20, 15, [17, 19, 21], None), (21, 16, [18, 20, 22], None), (7, 27, [29, 31], None), (8, 28, [30, 32], None),
    (12, -1, [0, 2, 5, 7, 8, 9, 10], None),
]  # fmt: skip


def analytic_start(poser: KeypointPoser, target: torch.Tensor, conf: torch.Tensor, r0: torch.Tensor,
                   t0: torch.Tensor) -> torch.Tensor:
    """Closed-form body pose (B, 23, 3, 3) for the rest shape: each limb joint rotated so that the keypoints
    below it point where the landmarks do (two-bone chains pre-bent by the observed elbow/knee angle, so
    the upper bone's twist follows the bend plane). Spine, collars and head stay at rest. Landmarks with
    zero confidence are never looked at: a joint whose own landmark is missing is placed by the chain
    above it, and a joint with nothing to aim at keeps its rest rotation."""
    b, dev, dtype = target.shape[0], target.device, target.dtype
    eye = torch.eye(3, dtype=dtype, device=dev)
    j_rest = poser.j_template
    kp_rest = poser(torch.zeros(1, poser.num_betas, dtype=dtype, device=dev), eye.expand(1, 24, 3, 3))[0]
    par = poser.parents.tolist()
    local = [eye.expand(b, 3, 3)] * 24
    glob: dict[int, torch.Tensor] = {0: r0}
    pos: dict[int, torch.Tensor] = {0: r0 @ j_rest[0] + t0}

    def g(j: int) -> torch.Tensor:
        if j not in glob:
            glob[j] = g(par[j]) @ local[j]
        return glob[j]

    def p(j: int) -> torch.Tensor:
        if j not in pos:
            pos[j] = p(par[j]) + g(par[j]) @ (j_rest[j] - j_rest[par[j]])
        return pos[j]

    for joint, at, driven, bend in _CHAINS:
        gp = g(par[joint])
        origin = p(joint)
        if at >= 0:
            origin = torch.where(conf[:, at, None] > 0, target[:, at], origin)
        u = (kp_rest[driven] - j_rest[joint]).expand(b, -1, -1)
        w = conf[:, driven]
        flat = (w > 0).sum(1) < 2
        if bend is not None:
            child, child_at, axis = bend
            a = target[:, child_at] - origin
            c = target[:, driven[-1]] - target[:, child_at]
            cosang = (torch.nn.functional.normalize(a, dim=-1) * torch.nn.functional.normalize(c, dim=-1)).sum(-1)
            theta = torch.arccos(cosang.clamp(-1.0, 1.0))
            # A bend seen through a missing landmark is no bend at all.
            theta = torch.where((conf[:, child_at] > 0) & (conf[:, driven[-1]] > 0), theta, torch.zeros_like(theta))
            flex = batch_rodrigues(theta[:, None] * torch.tensor(axis, dtype=dtype, device=dev))
            tip = (flex @ (kp_rest[driven[-1]] - j_rest[child])[:, None])[..., 0] + (j_rest[child] - j_rest[joint])
            u = torch.cat([u[:, :-1], tip[:, None]], dim=1)
            # A nearly straight two-bone chain has no bend plane to fix the upper bone's twist.
            flat = flat | (torch.sin(theta) < 0.2)
        v = (target[:, driven] - origin[:, None]) @ gp  # in the parent's frame: gp^T (y - origin)
        # One direction fixes no twist (Kabsch would pick an arbitrary one): take the smallest rotation
        # onto the most confident driven landmark.
        best = w.argmax(1)
        pick = torch.arange(b, device=dev)
        swing = _swing(u[pick, best], v[pick, best])
        swing = torch.where((w.amax(1) > 0)[:, None, None], swing, eye.expand(b, 3, 3))
        if len(driven) == 1:
            local[joint] = swing
        else:
            local[joint] = torch.where(flat[:, None, None], swing, _kabsch_rotation(u, v, w))
        for cache in (glob, pos):  # the joint's frame changed: forget what was derived from it
            for j in [j for j in cache if j != 0 and _descends(j, joint, par)]:
                cache.pop(j)
    return torch.stack(local[1:], dim=1)


def _descends(j: int, ancestor: int, par: list[int]) -> bool:
    while j > 0:
        if j == ancestor:
            return True
        j = par[j]
    return False
