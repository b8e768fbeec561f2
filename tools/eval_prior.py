"""Score pose priors on held-out mocap clips (whole clips never seen in training).

    python tools/eval_prior.py [PRIOR ...] [--fraction 0.1]

Held out: the CMU clips picked by ``split_clips(names, fraction)`` (with their mirrors) and DeepMimic's
``run`` and ``dance_b``; prints ``priors.evaluate`` scores per set and the decoded mean pose.
The data used in this project was obtained from mocap.cs.cmu.edu (NSF EIA-0196217).
"""

from __future__ import annotations

import argparse
import json

import torch
from neuralfit.priors import load_mocap, load_pose_prior
from neuralfit.priors.cmu import default_cmu_path
from neuralfit.priors.evaluate import heldout_scores, mean_pose_report
from neuralfit.priors.mocap import split_clips, with_mirrors


def heldout_sets(fraction: float) -> dict[str, torch.Tensor]:
    cmu = load_mocap(default_cmu_path())
    held = with_mirrors(cmu.select(list(split_clips(cmu.clip_names, fraction))))
    dm = load_mocap().select(["run", "dance_b"])
    return {"cmu_heldout": torch.from_numpy(held.body_pose), "deepmimic_heldout": torch.from_numpy(dm.body_pose)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("priors", nargs="*", default=["default"])
    ap.add_argument("--fraction", type=float, default=0.1)
    args = ap.parse_args()
    torch.set_num_threads(1)
    sets = heldout_sets(args.fraction)
    for spec in args.priors:
        prior = load_pose_prior(spec)
        row = {"prior": spec, **mean_pose_report(prior)}
        for name, poses in sets.items():
            row[name] = {k: round(v, 3) for k, v in heldout_scores(prior, poses).items()}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
