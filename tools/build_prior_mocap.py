"""Build step: extract pybullet's DeepMimic clips, retarget them to SMPL and mirror them.

Writes ``priors/assets/mocap_poses.npz`` (float16, compressed), the pose set that
``neuralfit train prior`` and ``neuralfit.priors.sample_poses`` use at run time, so that neither needs
pybullet. Needs the build extra: ``pip install -e .[build]``.

    python tools/build_prior_mocap.py [--out priors/assets/mocap_poses.npz]
"""

from __future__ import annotations

import argparse
from pathlib import Path

from neuralfit.priors.mocap import extract_pybullet_mocap, save_mocap


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(here / "priors" / "assets" / "mocap_poses.npz"))
    args = ap.parse_args()
    arrays = extract_pybullet_mocap()
    save_mocap(args.out, arrays)
    names = list(arrays["clip_names"])
    print(f"wrote {args.out}: {len(arrays['body_pose'])} frames ({len(arrays['body_pose']) // 2} + mirrored) "
          f"from {len(names)} clips: {', '.join(names)}; {Path(args.out).stat().st_size / 1024:.0f} KiB")


if __name__ == "__main__":
    main()
