"""``BodyModel``: an ``smplx.SMPL`` layer plus the metadata the rest of neuralfit needs.

Shapes below: B batch, V full vertices (6890 for SMPL, 13718 for the free body), V_low low-res
vertices, L = len(LANDMARK_NAMES) surface landmarks, 24 SMPL joints.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from smplx.lbs import batch_rigid_transform, batch_rodrigues

from neuralfit.body.keypoints import LANDMARK_NAMES, KeypointSet, apply_keypoints, build_keypoint_sets
from neuralfit.body.lowres import LowResGeometry, LowResMesh
from neuralfit.body.parts import part_colors, part_labels_from_weights
from neuralfit.errors import NeuralfitError


@dataclass
class BodyOutput:
    """What a forward pass returns. All positions in metres, in the frame ``global_orient``/``transl`` put the body in.

    Attributes:
        joints: (B, 24, 3) SMPL-24 joints (posed, translated).
        landmarks: (B, L, 3) surface landmark vertices (nose, eyes, ... see ``LANDMARK_NAMES``);
            undefined ones (``body.landmark_valid`` False) hold vertex 0 and must not be used.
        vertices: (B, V, 3) full mesh, or None when the forward ran with ``full=False``.
        lowres_vertices: (B, V_low, 3) low-res neural mesh, or None when ``lowres=False``.
        betas: (B, num_betas); full_pose: (B, 24, 3, 3) rotation matrices; transl: (B, 3).
    """

    joints: torch.Tensor
    landmarks: torch.Tensor
    vertices: torch.Tensor | None
    lowres_vertices: torch.Tensor | None
    betas: torch.Tensor
    full_pose: torch.Tensor
    transl: torch.Tensor


def _as_rotmats(x: torch.Tensor, n: int, what: str) -> torch.Tensor:
    """Axis-angle (B, 3n) or (B, n, 3), or rotation matrices (B, n, 3, 3) -> (B, n, 3, 3)."""
    b = x.shape[0]
    if x.shape[-2:] == (3, 3) and x.numel() == b * n * 9:
        return x.reshape(b, n, 3, 3)
    if x.numel() == b * n * 3:
        return batch_rodrigues(x.reshape(-1, 3)).reshape(b, n, 3, 3)
    raise NeuralfitError(
        f"{what} has shape {tuple(x.shape)}, expected ({b}, {3 * n}) axis-angle or ({b}, {n}, 3, 3) rotations"
    )


class BodyModel(torch.nn.Module):
    """An SMPL-format body: posing (full mesh, or only what the low-res mesh and keypoints need),
    joint/keypoint sets, part labels and the low-res neural mesh.

    Build it with :func:`neuralfit.body.load_body_model`. Attributes (tensors move with ``.to``):

    - ``smpl``: the underlying ``smplx.SMPLLayer`` (its buffers are the model data).
    - ``faces`` (F, 3) long; ``parents`` (24,) long with ``parents[0] = -1``.
    - ``part_labels`` (V,) long in 0..23; ``part_colors`` (25, 3) uint8 (index 0 = background).
    - ``landmark_ids`` (L,) long and ``landmark_valid`` (L,) bool.
    - ``keypoint_sets``: name -> :class:`KeypointSet` (smpl24, coco17, body25, blazepose33, lsp14, spin24).
    - ``lowres``: :class:`LowResMesh`.
    - ``spec`` ("free" or the path given), ``name`` ("neuralfit-free" or "smpl"), ``model_hash`` (16 hex
      digits over the model arrays, landmark ids and low-res mesh: store it with anything trained on
      this body, e.g. a feature bank, to detect a mismatch).

    ``keypoint_calibration`` (see :func:`neuralfit.body.keypoints.build_keypoint_sets`) redefines detector
    keypoints where the detector really puts them on this body; it is not part of ``model_hash``.
    """

    def __init__(
        self,
        smpl_layer: torch.nn.Module,
        landmark_ids: np.ndarray,
        landmark_valid: np.ndarray,
        lowres: LowResGeometry,
        spec: str,
        name: str,
        model_hash: str,
        keypoint_calibration: dict[str, dict[str, dict[str, float]]] | None = None,
    ) -> None:
        super().__init__()
        self.smpl = smpl_layer
        self.spec, self.name, self.model_hash = spec, name, model_hash
        nv = int(smpl_layer.v_template.shape[0])
        parents = smpl_layer.parents.clone().long()
        parents[0] = -1
        self.register_buffer("parents", parents, persistent=False)
        self.register_buffer("faces", smpl_layer.faces_tensor.long(), persistent=False)
        self.register_buffer(
            "part_labels", part_labels_from_weights(smpl_layer.lbs_weights), persistent=False
        )
        self.part_colors = part_colors()
        ids = torch.as_tensor(np.asarray(landmark_ids), dtype=torch.long)
        if ids.shape != (len(LANDMARK_NAMES),) or int(ids.max()) >= nv or int(ids.min()) < 0:
            raise NeuralfitError(f"landmark ids of {name} are out of range for a {nv}-vertex body")
        self.register_buffer("landmark_ids", ids, persistent=False)
        valid = torch.as_tensor(np.asarray(landmark_valid), dtype=torch.bool)
        self.register_buffer("landmark_valid", valid, persistent=False)
        self.keypoint_sets: dict[str, KeypointSet] = build_keypoint_sets(
            {n: bool(v) for n, v in zip(LANDMARK_NAMES, valid.tolist(), strict=True)}, keypoint_calibration
        )
        self.lowres = LowResMesh(lowres, nv, self.part_labels)

        # Joints are linear in betas, so precompute them instead of regressing from all V vertices:
        # J(beta) = J_regressor @ (v_template + shapedirs beta) = J_template + J_shapedirs beta.
        jr = smpl_layer.J_regressor.double()
        self.register_buffer("j_template", (jr @ smpl_layer.v_template.double()).float(), persistent=False)
        j_dirs = torch.einsum("jv,vck->jck", jr, smpl_layer.shapedirs.double()).float()
        self.register_buffer("j_shapedirs", j_dirs, persistent=False)
        # The free body has no pose correctives; skip the (B, 207) x (207, 3V) product then.
        self.has_posedirs = bool(smpl_layer.posedirs.abs().max() > 0)
        # The fast path poses only the low-res map's support, then the landmarks: keep their rows of the
        # model arrays ready so a forward pass does not gather them again.
        fast = torch.cat([self.lowres.support, ids])
        self.register_buffer("_fast_ids", fast, persistent=False)
        self.register_buffer("_fast_v_template", smpl_layer.v_template[fast].clone(), persistent=False)
        self.register_buffer("_fast_shapedirs", smpl_layer.shapedirs[fast].clone(), persistent=False)
        self.register_buffer("_fast_weights", smpl_layer.lbs_weights[fast].clone(), persistent=False)
        fast_pd = smpl_layer.posedirs.reshape(207, -1, 3)[:, fast].clone() if self.has_posedirs else None
        self.register_buffer("_fast_posedirs", fast_pd, persistent=False)

    # ---- sizes -------------------------------------------------------------------------------------------
    @property
    def num_vertices(self) -> int:
        return int(self.smpl.v_template.shape[0])

    @property
    def num_betas(self) -> int:
        return int(self.smpl.shapedirs.shape[-1])

    @property
    def device(self) -> torch.device:
        return self.smpl.v_template.device

    @property
    def joint_names(self) -> tuple[str, ...]:
        return self.keypoint_sets["smpl24"].names

    # ---- posing ------------------------------------------------------------------------------------------
    def forward(
        self,
        betas: torch.Tensor | None = None,
        global_orient: torch.Tensor | None = None,
        body_pose: torch.Tensor | None = None,
        transl: torch.Tensor | None = None,
        *,
        full: bool = True,
        lowres: bool = False,
    ) -> BodyOutput:
        """Pose the body.

        Args:
            betas: (B, <=num_betas) shape coefficients (missing trailing ones are zero).
            global_orient: (B, 3) axis-angle or (B, 1, 3, 3) rotation of the root about the pelvis joint.
            body_pose: (B, 69) axis-angle or (B, 23, 3, 3) rotations of joints 1..23 relative to parents.
            transl: (B, 3) added to everything after posing.
            full: compute all V vertices. With ``full=False`` only the low-res support and the landmarks
                are posed (about 2.3k of 13.7k vertices for the free body), the fitter's fast path.
            lowres: also fill ``lowres_vertices``.

        Any argument left out is zero; B is taken from the arguments given (1 if none).
        """
        given = [t for t in (betas, global_orient, body_pose, transl) if t is not None]
        bsz = given[0].shape[0] if given else 1
        dev = given[0].device if given else self.device
        dtype = self.smpl.v_template.dtype
        if any(t.shape[0] != bsz for t in given):
            raise NeuralfitError(
                f"pose/shape arguments disagree on batch size: {[tuple(t.shape) for t in given]}"
            )
        if betas is None:
            betas = torch.zeros(bsz, self.num_betas, device=dev, dtype=dtype)
        elif betas.ndim != 2 or betas.shape[1] > self.num_betas:
            raise NeuralfitError(f"betas have shape {tuple(betas.shape)}, expected (B, <= {self.num_betas})")
        elif betas.shape[1] < self.num_betas:
            betas = torch.nn.functional.pad(betas, (0, self.num_betas - betas.shape[1]))
        eye = torch.eye(3, device=dev, dtype=dtype)
        root = (
            eye.expand(bsz, 1, 3, 3)
            if global_orient is None
            else _as_rotmats(global_orient, 1, "global_orient")
        )
        rest = eye.expand(bsz, 23, 3, 3) if body_pose is None else _as_rotmats(body_pose, 23, "body_pose")
        rot = torch.cat([root, rest], dim=1)  # (B, 24, 3, 3)
        if transl is None:
            transl = torch.zeros(bsz, 3, device=dev, dtype=dtype)
        elif transl.shape != (bsz, 3):
            raise NeuralfitError(f"transl has shape {tuple(transl.shape)}, expected ({bsz}, 3)")

        joints_rest = self.j_template + torch.einsum("jck,bk->bjc", self.j_shapedirs, betas)
        joints, rel = batch_rigid_transform(rot, joints_rest, self.parents, dtype=dtype)
        shift = transl[:, None, :]
        lowres_vertices = None
        if full:
            vertices = self._skin(False, betas, rot, rel) + shift
            landmarks = vertices[:, self.landmark_ids]
            if lowres:
                lowres_vertices = self.lowres.vertices(vertices)
        else:
            vertices = None
            posed = self._skin(True, betas, rot, rel) + shift
            n_support = self.lowres.support.shape[0]
            landmarks = posed[:, n_support:]
            if lowres:
                lowres_vertices = self.lowres.vertices_from_support(posed[:, :n_support])
        return BodyOutput(
            joints=joints + shift,
            landmarks=landmarks,
            vertices=vertices,
            lowres_vertices=lowres_vertices,
            betas=betas,
            full_pose=rot,
            transl=transl,
        )

    def _skin(self, fast: bool, betas: torch.Tensor, rot: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
        """Linear blend skinning of all vertices, or of the fast-path subset -> (B, n, 3), before translation.

        ``rel`` (B, 24, 4, 4) are the joint transforms relative to the rest pose (smplx's ``A``).
        """
        s = self.smpl
        if fast:
            v_t, sd, w, pd = (
                self._fast_v_template,
                self._fast_shapedirs,
                self._fast_weights,
                self._fast_posedirs,
            )
        else:
            v_t, sd, w = s.v_template, s.shapedirs, s.lbs_weights
            pd = s.posedirs.reshape(207, -1, 3) if self.has_posedirs else None  # smplx: (207, 3V), index 3v+c
        bsz, n = betas.shape[0], v_t.shape[0]
        # Shape blend: (3n, K) @ (K, B) is one GEMM instead of a batched einsum.
        v = v_t + (sd.reshape(n * 3, -1) @ betas.T).T.reshape(bsz, n, 3)
        if pd is not None:
            feat = (rot[:, 1:] - torch.eye(3, device=rot.device, dtype=rot.dtype)).reshape(bsz, -1)
            v = v + (feat @ pd.reshape(207, -1)).reshape(bsz, n, 3)
        # Blend the 24 transforms per vertex: (B, n, 12) = (n, 24) @ (B, 24, 12).
        t = torch.matmul(w, rel[:, :, :3, :].reshape(bsz, 24, 12)).reshape(bsz, n, 3, 4)
        return (t[..., :3] * v[..., None, :]).sum(-1) + t[..., 3]

    # ---- keypoints ---------------------------------------------------------------------------------------
    def keypoints(self, out: BodyOutput, name: str) -> torch.Tensor:
        """Keypoints of set ``name`` (see ``keypoint_sets``): (B, J, 3). Undefined ones are zero rows;
        check ``keypoint_sets[name].valid``."""
        if name not in self.keypoint_sets:
            raise NeuralfitError(
                f"unknown keypoint set {name!r}, expected one of {sorted(self.keypoint_sets)}"
            )
        return apply_keypoints(self.keypoint_sets[name], out.joints, out.landmarks)

    def extra_repr(self) -> str:
        return f"name={self.name!r}, spec={self.spec!r}, vertices={self.num_vertices}, lowres={self.lowres.num_vertices}"
