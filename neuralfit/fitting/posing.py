"""What the fitter needs from a body, posed the fast way.

Posing all ~13.7k vertices of the free body every Adam iteration is wasted work: the fitter needs the
24 joints, the ~858 low-res vertices (which lie on ~2.5k full-mesh "support" vertices) and the
landmark vertices that define keypoints. ``BodyModel.forward(full=False, lowres=True)`` skins exactly
those (see neuralfit.body.model); :class:`FitBody` wraps it with the handful of tensors the losses use.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError


@dataclass
class Posed:
    """Posed body in the camera frame (metres).

    Attributes:
        joints: (B, 24, 3) SMPL joints.
        lowres: (B, V_low, 3) low-res neural-mesh vertices.
        landmarks: (B, L, 3) landmark vertices (keypoints other than joints).
    """

    joints: torch.Tensor
    lowres: torch.Tensor | None
    landmarks: torch.Tensor


class FitBody(torch.nn.Module):
    """Adapter over a ``neuralfit.body.BodyModel`` for fitting.

    Attributes:
        faces: (F_low, 3) low-res faces; part_labels: (V_low,) parts of low-res vertices;
        parents: (24,) kinematic tree; n_betas; keypoint_sets (name -> KeypointSet); name, spec.
    """

    def __init__(self, body: torch.nn.Module):
        super().__init__()
        for attr in ("lowres", "parents", "keypoint_sets", "num_betas"):
            if not hasattr(body, attr):
                raise NeuralfitError(f"body of type {type(body).__name__} has no {attr!r}; expected a "
                                     "neuralfit.body.BodyModel (load_body_model)")
        self.body = body
        self.keypoint_sets = body.keypoint_sets
        self.name, self.spec = getattr(body, "name", ""), str(getattr(body, "spec", ""))

    @classmethod
    def from_body(cls, body) -> FitBody:
        return body if isinstance(body, FitBody) else cls(body)

    @property
    def faces(self) -> torch.Tensor:
        return self.body.lowres.faces

    @property
    def part_labels(self) -> torch.Tensor:
        return self.body.lowres.part_labels

    @property
    def parents(self) -> torch.Tensor:
        return self.body.parents

    @property
    def n_betas(self) -> int:
        return int(self.body.num_betas)

    @property
    def n_lowres(self) -> int:
        return int(self.body.lowres.part_labels.shape[0])

    def forward(self, betas: torch.Tensor, global_orient: torch.Tensor, body_pose: torch.Tensor,
                transl: torch.Tensor, lowres: bool = True) -> Posed:
        """betas (B, S), global_orient (B, 3), body_pose (B, 69), transl (B, 3) -> :class:`Posed`.

        ``lowres=False`` skips the low-res mesh (``Posed.lowres`` is None) when nothing is rendered.
        """
        out = self.body(betas, global_orient, body_pose, transl, full=False, lowres=lowres)
        return Posed(out.joints, out.lowres_vertices, out.landmarks)

    def keypoints(self, posed: Posed, joint_set: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, J, 3) keypoints of a joint set and (J,) bool validity."""
        if joint_set not in self.keypoint_sets:
            raise NeuralfitError(f"unknown joint set {joint_set!r}; expected one of {sorted(self.keypoint_sets)}")
        ks = self.keypoint_sets[joint_set]
        src = torch.cat([posed.joints, posed.landmarks], dim=1)
        return torch.einsum("jk,bkc->bjc", ks.weights.to(src), src), ks.valid.to(src.device)
