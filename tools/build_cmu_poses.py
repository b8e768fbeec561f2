"""Build step: retarget the CMU mocap subset to SMPL and write a compact pose set.

Reads ``../shared/data/mocap/cmu_free_subset_v1.npz`` (three source skeletons), retargets every clip
with :mod:`neuralfit.priors.cmu` onto the free body's rest skeleton and writes
``priors/assets/cmu_poses.npz`` (float16 ``body_pose`` (N, 69), ``global_orient`` (N, 3), ``transl``,
``clip`` ids + ``clip_names`` for clip-level splits, ``part``, the CMU licence and credit line).

    python tools/build_cmu_poses.py [--archive PATH] [--out priors/assets/cmu_poses.npz]

The data used in this project was obtained from mocap.cs.cmu.edu.
The database was created with funding from NSF EIA-0196217.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from neuralfit.priors.cmu import DEFAULT_ARCHIVE, retarget_archive, save_cmu_poses


def main() -> None:
    here = Path(__file__).resolve().parent.parent
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archive", default=str(DEFAULT_ARCHIVE))
    ap.add_argument("--out", default=str(here / "priors" / "assets" / "cmu_poses.npz"))
    args = ap.parse_args()
    t0 = time.perf_counter()
    poses = retarget_archive(args.archive)
    save_cmu_poses(args.out, poses)
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out}: {len(poses.body_pose)} frames from {len(poses.clip_names)} clips, "
          f"{size / 1e6:.2f} MB, {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
