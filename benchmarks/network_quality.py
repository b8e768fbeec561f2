"""The network issue's quality numbers on held-out synthetic sets, as a table.

::

    python benchmarks/network_quality.py --network net.pt --data data/test_occluded --data data/test_clean \\
        [--neural-model nm.pt] [--limit 200]

Per set: the regressor's PA-MPJPE (LSP-14, mm), part-segmentation mIoU, heatmap keypoint PCK@0.1 and the
feature accuracy (visible low-res vertices whose nearest feature-bank entry over all vertex-orientation
classes lies within 2 mesh edges of the true vertex), with the checkpoint's contrastive bank and, with
``--neural-model``, with the MLE means the fit uses.
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", required=True)
    ap.add_argument("--neural-model", default=None)
    ap.add_argument("--data", action="append", required=True, help="neuralfit synth folder (repeat)")
    ap.add_argument("--limit", type=int, default=None, help="images per set (batches of 16)")
    ap.add_argument("--body", default="free")
    args = ap.parse_args()

    from neuralfit.cli.train_nets import open_datasets

    from neuralfit.body import load_body_model
    from neuralfit.nets import load_network
    from neuralfit.training.metrics import evaluate_network

    body = load_body_model(args.body)
    net = load_network(args.network, body)
    nm_bank = None
    if args.neural_model:
        from neuralfit.neural import NeuralMeshModel

        nm_bank = NeuralMeshModel.load(args.neural_model, body=body).features.detach()
    rows = []
    for folder in args.data:
        ds = open_datasets((folder,), net.config.input_res, augment=False)
        t0 = time.time()
        max_batches = None if args.limit is None else -(-args.limit // 16)
        m = evaluate_network(net, ds, body, max_batches=max_batches, progress=False)
        if nm_bank is not None:
            m["feature_acc@2 (MLE means)"] = evaluate_network(net, ds, body, bank=nm_bank, max_batches=max_batches,
                                                              progress=False)["feature_acc@2"]
        rows.append((Path(folder).name, m, time.time() - t0))
    keys = list(rows[0][1])
    print(f"network {args.network} ({net.config.regressor_input} regressor); {platform.node()}, "
          f"{torch.get_num_threads()} threads")
    print("| set | " + " | ".join(keys) + " | seconds |")
    print("| --- " * (len(keys) + 2) + "|")
    for name, m, sec in rows:
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" if k != "pa_mpjpe_mm" else f"{m[k]:.1f}" for k in keys)
              + f" | {sec:.0f} |")


if __name__ == "__main__":
    main()
