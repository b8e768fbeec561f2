"""Small forward kinematics on SMPL's 24-joint tree, independent of any body-model file.

Used to check retargeting and joint-limit signs, and to draw stick figures. The rest skeleton below is a
hand-made approximation of an adult SMPL-format body in a T-pose (metres, Y up, facing +z, left = +x);
pass a real body's rest joints (``body(betas=...).joints[0]`` with zero pose) where one is available.
"""

from __future__ import annotations

import numpy as np
import torch

from .mocap import SMPL_PARENTS

# (24, 3) approximate rest joints of an adult SMPL-format body, T-pose.
APPROX_REST_JOINTS = np.array([
    [0.00, 0.00, 0.00],     # pelvis
    [0.07, -0.09, -0.01],   # left_hip
    [-0.07, -0.09, -0.01],  # right_hip
    [0.00, 0.11, -0.03],    # spine1
    [0.10, -0.47, 0.00],    # left_knee
    [-0.10, -0.47, 0.00],   # right_knee
    [0.00, 0.25, 0.00],     # spine2
    [0.09, -0.87, -0.04],   # left_ankle
    [-0.09, -0.87, -0.04],  # right_ankle
    [0.00, 0.30, 0.02],     # spine3
    [0.12, -0.93, 0.08],    # left_foot
    [-0.12, -0.93, 0.08],   # right_foot
    [0.00, 0.51, -0.01],    # neck
    [0.08, 0.42, 0.00],     # left_collar
    [-0.08, 0.42, 0.00],    # right_collar
    [0.00, 0.60, 0.04],     # head
    [0.17, 0.44, -0.01],    # left_shoulder
    [-0.17, 0.44, -0.01],   # right_shoulder
    [0.43, 0.43, -0.03],    # left_elbow
    [-0.43, 0.43, -0.03],   # right_elbow
    [0.68, 0.43, -0.02],    # left_wrist
    [-0.68, 0.43, -0.02],   # right_wrist
    [0.76, 0.42, -0.03],    # left_hand
    [-0.76, 0.42, -0.03],   # right_hand
], dtype=np.float32)


def forward_kinematics(pose: torch.Tensor, rest_joints: torch.Tensor | np.ndarray | None = None) -> torch.Tensor:
    """Posed joint positions of SMPL's tree.

    ``pose``: (B, 72) axis-angle (global orient + 23 joints) or (B, 69) body pose (global orient zero).
    ``rest_joints``: (24, 3) rest positions; default :data:`APPROX_REST_JOINTS`.
    Returns (B, 24, 3), the root joint at the rest root position.
    """
    from pytorch3d.transforms import axis_angle_to_matrix

    if pose.shape[-1] == 69:
        pose = torch.cat([pose.new_zeros(pose.shape[0], 3), pose], dim=1)
    rest = torch.as_tensor(APPROX_REST_JOINTS if rest_joints is None else rest_joints,
                           dtype=pose.dtype, device=pose.device)
    rots = axis_angle_to_matrix(pose.reshape(-1, 24, 3))  # (B, 24, 3, 3) local rotations
    glob_r = [rots[:, 0]]
    glob_t = [rest[0].expand(pose.shape[0], 3)]
    for i in range(1, 24):
        p = SMPL_PARENTS[i]
        offset = rest[i] - rest[p]
        glob_t.append(glob_t[p] + (glob_r[p] @ offset.unsqueeze(-1)).squeeze(-1))
        glob_r.append(glob_r[p] @ rots[:, i])
    return torch.stack(glob_t, dim=1)
