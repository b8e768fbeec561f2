"""Quality numbers of a pose prior (default: the shipped one), printed as a table.

    python benchmarks/prior_quality.py [--prior default] [--holdout run,dance_b]

Held-out clips default to the ones recorded in the shipped prior's metadata.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch


def main() -> None:
    from neuralfit.priors import JointLimitPrior, load_mocap, load_pose_prior
    from neuralfit.priors.default import default_prior_path

    ap = argparse.ArgumentParser(description="pose prior quality table")
    ap.add_argument("--prior", default="default")
    ap.add_argument("--holdout", default=None, help="comma-separated clips (default: the shipped prior's)")
    args = ap.parse_args()
    if args.holdout:
        clips = [c for c in args.holdout.split(",") if c]
    else:
        with np.load(default_prior_path()) as z:
            clips = json.loads(str(z["__meta__"]))["config"]["holdout_clips"]
    prior = load_pose_prior(args.prior)
    lim = JointLimitPrior()
    mocap = load_mocap()
    ho = torch.from_numpy(mocap.select(clips).body_pose).float()
    tr = torch.from_numpy(mocap.select(clips, keep=False).body_pose).float()
    uni = lim.sample_uniform(1000, seed=0)
    ids = [lim.joint_index(n) for n in ("left_knee", "right_knee", "left_elbow", "right_elbow")]
    rows = []
    with torch.no_grad():
        a, b = prior.penalty(ho), prior.penalty(uni)
        rows.append(("held-out frames", f"{len(ho)} ({', '.join(clips)} + mirrors)"))
        rows.append(("win-rate held-out < uniform (all pairs)", f"{(a[:, None] < b[None, :]).float().mean():.2%}"))
        rows.append(("median penalty held-out / uniform", f"{a.median():.2f} / {b.median():.2f}"))
        for reject in (False, True):
            s = prior.sample(10000, seed=0, reject=reject)
            v = lim.violations(s)
            rows.append((f"knee/elbow violations, 10k samples, reject={reject}", f"{v[:, ids].any(1).float().mean():.2%}"))
            rows.append((f"any-joint violations, 10k samples, reject={reject}", f"{v.any(1).float().mean():.2%}"))
        noisy = ho[:300] + 0.3 * torch.randn(len(ho[:300]), 69, generator=torch.Generator().manual_seed(0))
        pn, pr = prior.penalty(noisy), prior.penalty(prior.project(noisy))
        rows.append(("project() lowers penalty of noisy held-out", f"{(pr < pn).float().mean():.2%} "
                     f"(median {pn.median():.1f} -> {pr.median():.1f})"))
        rows.append(("reconstruction error train / held-out (median)",
                     f"{prior.reconstruction_error(tr).median():.2f} / {prior.reconstruction_error(ho).median():.2f}"))
    x = tr[:64].clone().requires_grad_(True)
    t0 = time.perf_counter()
    for _ in range(20):
        prior.penalty(x).sum().backward()
    rows.append(("penalty forward+backward, batch 64", f"{(time.perf_counter() - t0) / 20 * 1e3:.1f} ms"))
    w = max(len(r[0]) for r in rows)
    print(f"{'quantity':<{w}} | value\n{'-' * w}-|------")
    for k, v in rows:
        print(f"{k:<{w}} | {v}")


if __name__ == "__main__":
    main()
