"""PA-MPJPE of network keypoint lifters on held-out mocap clips seen through photo cameras.

    python tools/eval_lifter.py [CKPT ...] [--n 4000]

The validation set is fixed (seeded): held-out CMU + DeepMimic clips (the split ``neuralfit train
prior`` uses), random shapes, photo cameras and detector keypoints (BlazePose / COCO / BODY-25 / spin24
joint sets, noise, occlusion dropout, swaps; ``neuralfit.training.regressor_data``). Prints the mean
PA-MPJPE (mm, 14 LSP joints) overall and per joint set, and with exact (uncorrupted) keypoints.
The data used in this project was obtained from mocap.cs.cmu.edu (NSF EIA-0196217).
"""

from __future__ import annotations

import argparse
import json

import torch

from neuralfit.body import load_body_model
from neuralfit.nets import load_network
from neuralfit.training.regressor import heldout_keypoint_set, lifter_pa_mpjpe


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("checkpoints", nargs="*", default=["neuralfit/nets/assets/lite0.pt"])
    ap.add_argument("--n", type=int, default=4000)
    args = ap.parse_args()
    torch.set_num_threads(1)
    body = load_body_model("free")
    nets = [load_network(c, body) for c in args.checkpoints]
    data, inputs = heldout_keypoint_set(body, nets[0].config.input_res, n=args.n)
    exact = data["keypoints"].clone()
    exact[..., 2] = exact[..., 2].clamp(0, 1)
    have = inputs[..., 2] > 0
    bp = have[:, 12] & ~have[:, 14]  # BODY-25: neck but no pelvis; BlazePose/COCO: neither
    full = have[:, 14]
    for path, net in zip(args.checkpoints, nets, strict=True):
        e = lifter_pa_mpjpe(net, body, data, inputs)
        row = {"checkpoint": path, "n": len(e), "pa_mpjpe_mm": round(float(e.mean()), 1),
               "median_mm": round(float(e.median()), 1),
               "blazepose_or_coco_mm": round(float(e[~bp & ~full].mean()), 1), "body25_mm": round(float(e[bp].mean()), 1),
               "spin24_mm": round(float(e[full].mean()), 1),
               "exact_keypoints_mm": round(float(lifter_pa_mpjpe(net, body, data, exact).mean()), 1)}
        print(json.dumps(row))


if __name__ == "__main__":
    main()
