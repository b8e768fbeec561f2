"""The start parameters every initialiser returns (IK to mediapipe's 3D, a user's regressor file, ...)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from neuralfit.errors import NeuralfitError


@dataclass
class StartParams:
    """A body pose to start fitting from (axis-angle, SMPL convention).

    Attributes:
        global_orient: (B, 3) root rotation about the pelvis joint. From :func:`fit_world_landmarks` it is
            in the camera's axes (OpenCV: x right, y down, z forward), ready for :func:`place_in_camera`.
        body_pose: (B, 69) rotations of joints 1..23 relative to their parents.
        betas: (B, 10) shape coefficients.
        transl: (B, 3) or None. What it means depends on the source: from :func:`fit_world_landmarks`, the
            translation that puts the posed body into the landmarks' frame (hip centre at the origin);
            from a regressor file, None (the file's weak-perspective camera stays on the table).
    """

    global_orient: torch.Tensor
    body_pose: torch.Tensor
    betas: torch.Tensor
    transl: torch.Tensor | None = None

    def __post_init__(self) -> None:
        b = self.global_orient.shape[0] if self.global_orient.ndim == 2 else -1
        want = {"global_orient": 3, "body_pose": 69, "betas": 10}
        for name, n in want.items():
            t = getattr(self, name)
            if not torch.is_tensor(t) or t.ndim != 2 or t.shape != (b, n):
                raise NeuralfitError(f"StartParams.{name} has shape {tuple(getattr(t, 'shape', ()))}; expected (B, {n})")
        if self.transl is not None and tuple(self.transl.shape) != (b, 3):
            raise NeuralfitError(f"StartParams.transl has shape {tuple(self.transl.shape)}; expected ({b}, 3)")

    def __len__(self) -> int:
        return int(self.global_orient.shape[0])

    @property
    def pose(self) -> torch.Tensor:
        """(B, 72): global_orient then body_pose, the SPIN/EFT ``pose`` layout."""
        return torch.cat([self.global_orient, self.body_pose], dim=1)

    def row(self, i: int) -> StartParams:
        """Sample ``i`` as a batch of one."""
        sl = slice(i, i + 1)
        return StartParams(self.global_orient[sl], self.body_pose[sl], self.betas[sl],
                           None if self.transl is None else self.transl[sl])

    @staticmethod
    def cat(items: list[StartParams]) -> StartParams:
        """Stack batches along B (``transl`` kept only when every item has one)."""
        if not items:
            raise NeuralfitError("StartParams.cat got an empty list; expected at least one StartParams")
        tr = None if any(s.transl is None for s in items) else torch.cat([s.transl for s in items])
        return StartParams(torch.cat([s.global_orient for s in items]), torch.cat([s.body_pose for s in items]),
                           torch.cat([s.betas for s in items]), tr)
