"""Draw samples of a pose prior as a grid of figures (docs/prior_samples.png).

    python tools/render_prior_samples.py [--prior default] [--n 100] [--seed 0] [--out docs/prior_samples.png]

With the free body (``neuralfit.body``) and the shaded renderer (``neuralfit.render.shaded``) each
sample is rendered as a part-coloured mesh seen from the front and slightly to the side; without them
(or with ``--sticks``) it is drawn as a stick figure on the hand-made rest skeleton of
``neuralfit.priors.kinematics`` (left limbs blue, right limbs red). The knee/elbow limit check of the
samples is printed in the title. Rendering 100 meshes on the CPU takes a few minutes (measured 7.5 min
for the shipped picture on a busy 2-core machine); stick figures take seconds.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch


def _rest_joints():
    try:
        from neuralfit.body import load_body_model

        body = load_body_model("free")
        return body().joints[0, :24].detach(), "free body"
    except Exception:  # noqa: BLE001 - optional: fall back to the approximate skeleton
        return None, "approximate SMPL skeleton"


def _render_meshes(poses: torch.Tensor, yaw: float, size: tuple[int, int] = (150, 100)) -> list[np.ndarray] | None:
    """Part-coloured renders of the free body in ``poses`` (N, 69); None where body/renderer are missing."""
    try:
        from neuralfit.body import load_body_model
        from neuralfit.render.shaded import render_shaded

        body = load_body_model("free")
    except Exception:  # noqa: BLE001 - optional dependencies of this picture
        return None
    from tqdm import tqdm

    colors = body.part_colors[1 + body.part_labels.cpu().numpy()]
    faces = body.faces.cpu().numpy()
    # Body frame (Y up, facing +z) -> OpenCV camera (y down, z forward) looking at the body's front,
    # turned by ``yaw`` so that bends in depth show.
    c, s_ = np.cos(yaw), np.sin(yaw)
    turn = np.array([[c, 0, s_], [0, 1, 0], [-s_, 0, c]])
    to_cam = np.diag([1.0, -1.0, -1.0]) @ turn
    images = []
    with torch.no_grad():
        verts = body(body_pose=poses.float()).vertices.cpu().numpy()
    for v in tqdm(verts, desc="render", leave=False):
        v = v @ to_cam.T
        v = v - 0.5 * (v.min(0) + v.max(0))
        v[:, 2] += 5.0
        images.append(render_shaded(v, faces, colors, size, focal=320.0))
    return images


def main() -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from neuralfit.priors import load_pose_prior
    from neuralfit.priors.kinematics import forward_kinematics
    from neuralfit.priors.mocap import SMPL_JOINT_NAMES, SMPL_PARENTS

    from neuralfit.io.atomic import atomic_path

    ap = argparse.ArgumentParser(description="draw pose-prior samples as a grid")
    ap.add_argument("--prior", default="default")
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--sticks", action="store_true", help="stick figures even when the body can be rendered")
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs" / "prior_samples.png"))
    args = ap.parse_args()

    prior = load_pose_prior(args.prior)
    poses = prior.sample(args.n, seed=args.seed)
    raw = prior.sample(args.n, seed=args.seed, reject=False)
    ids = [prior.limits.joint_index(n) for n in ("left_knee", "right_knee", "left_elbow", "right_elbow")]
    bad_raw = prior.limits.violations(raw)[:, ids].any(dim=1).float().mean().item()
    bad = prior.limits.violations(poses)[:, ids].any(dim=1).float().mean().item()
    yaw = np.radians(25.0)  # turn the figures a little so that bends in depth are visible
    images = None if args.sticks else _render_meshes(poses, yaw)
    rest, rest_name = _rest_joints()
    if images is not None:
        rest_name = "free body, shaded"
    joints = forward_kinematics(poses.double(), None if rest is None else rest.double()).numpy()

    rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]])
    cols = int(np.ceil(np.sqrt(args.n)))
    rows = int(np.ceil(args.n / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.2, rows * 1.5))
    for k, ax in enumerate(np.ravel(axes)):
        ax.set_axis_off()
        if k >= args.n:
            continue
        if images is not None:
            ax.imshow(images[k])
            continue
        p = (joints[k] - joints[k, 0]) @ rot.T
        for j in range(1, 24):
            name = SMPL_JOINT_NAMES[j]
            color = "tab:blue" if name.startswith("left") else "tab:red" if name.startswith("right") else "k"
            a, b = p[SMPL_PARENTS[j]], p[j]
            ax.plot([a[0], b[0]], [a[1], b[1]], color=color, lw=1.5, solid_capstyle="round")
        ax.plot(p[15, 0], p[15, 1] + 0.08, "o", color="k", ms=5)
        ax.set_xlim(-0.9, 0.9)
        ax.set_ylim(-1.1, 0.9)
        ax.set_aspect("equal")
    fig.suptitle(f"{args.n} samples of the '{args.prior}' pose prior ({rest_name}); knee/elbow limit "
                 f"violations: {bad:.0%} (raw VAE {bad_raw:.0%})", fontsize=9)
    fig.tight_layout()
    with atomic_path(args.out) as tmp:
        fig.savefig(tmp, dpi=80)
    print(f"wrote {args.out}; knee/elbow violations {bad:.1%} (raw VAE decodes {bad_raw:.1%})")


if __name__ == "__main__":
    main()
