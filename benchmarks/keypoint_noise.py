"""How good must the 2D keypoints be for a keypoints fit to beat the keypoint regressor it starts from?

::

    python benchmarks/keypoint_noise.py --network neuralfit/nets/assets/lite0.pt --data data/test_occluded \\
        [--limit 64] [--noise 0 --noise 4 --noise 8] [--swap 0.2] [--heatmaps]

Both methods read the same keypoints: the synthetic set's ground-truth spin24 keypoints where they are
visible (occluded ones are missing, confidence 0), with isotropic Gaussian noise of ``--noise`` pixels
(224-px crop) and, with ``--swap p``, each left/right pair exchanged with probability ``p`` (a detector's
typical gross error). The regressor is the network's keypoint regressor (``regress``), the fit the
keypoints-only fit (:class:`neuralfit.fitting.Fitter`, ``keypoints_only=True``) started from it, with the
seed's settings and, as a second row, with ``w_init_pose=1`` (a Gaussian prior around the regressor's
pose). ``--heatmaps`` adds a row for the network's own heatmap keypoints, ``--heatmap-min-confidence c``
one for those of confidence >= c. Prints a table of
PA-MPJPE (LSP-14, mm): where ``fit - regressor`` turns positive is the keypoint quality the network must
reach before refinement helps.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--network", required=True)
    ap.add_argument("--data", required=True, help="a neuralfit synth folder")
    ap.add_argument("--limit", type=int, default=64)
    ap.add_argument("--noise", type=float, action="append", help="pixel noise std (repeat); default 0 2 4 8")
    ap.add_argument("--swap", type=float, default=0.0, help="probability of a left/right swap per pair")
    ap.add_argument("--heatmaps", action="store_true", help="also the network's heatmap keypoints")
    ap.add_argument("--heatmap-min-confidence", type=float, action="append", default=[],
                    help="also the heatmap keypoints with those under this confidence dropped (repeat)")
    ap.add_argument("--body", default="free")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    from neuralfit.priors import load_pose_prior

    from neuralfit.body import load_body_model
    from neuralfit.data import DatasetConfig, NpzDataset
    from neuralfit.data.crop import SPIN24_FLIP
    from neuralfit.eval.methods import _joints
    from neuralfit.eval.protocols import load_samples, score
    from neuralfit.fitting import FitBatch, FitConfig, Fitter
    from neuralfit.nets import load_network, predict
    from neuralfit.nets.model import regress

    body = load_body_model(args.body)
    net = load_network(args.network, body)
    if net.config.joint_set != "spin24" or net.config.regressor_input != "keypoints":
        raise SystemExit("error: needs a network with a spin24 keypoint regressor")
    prior = load_pose_prior("default")
    ds = NpzDataset(f"{args.data}/annotations.npz", config=DatasetConfig(res=net.config.input_res, augment=None,
                                                                        normalize=False))
    samples = load_samples(args.data, limit=args.limit, body=body, res=net.config.input_res)
    fitters = {"fit": Fitter(body, None, prior, FitConfig(keypoints_only=True)),
               "fit + init prior": Fitter(body, None, prior, FitConfig(keypoints_only=True, w_init_pose=1.0))}
    gen = torch.Generator().manual_seed(args.seed)
    # (label, noise std in px or None for the heatmaps, minimum heatmap confidence)
    sources = [(f"GT visible + {s:g} px", s, 0.0) for s in (args.noise or [0.0, 2.0, 4.0, 8.0])]
    if args.heatmaps:
        sources.append(("network heatmaps", None, 0.0))
    sources += [(f"network heatmaps, confidence >= {c:g}", None, c) for c in args.heatmap_min_confidence]
    pa: dict[tuple[str, str], list[float]] = {}
    flip = torch.as_tensor(SPIN24_FLIP)
    t0 = time.time()
    for s0 in range(0, len(samples), 16):
        chunk = samples[s0:s0 + 16]
        obs = predict(net, np.stack([s.image for s in chunk]))
        focal, res = float(obs["focal"]), int(obs["res"])

        def pa_mpjpe(params: dict) -> list[float]:
            return [r["pa_mpjpe"] for r in score(_joints(body, params, focal, res), chunk, body)]  # noqa: B023

        items = [ds[s.index] for s in chunk]
        gt = torch.stack([it["keypoints"][:24] for it in items]).float()
        gt[..., 2] = torch.stack([it["visible"][:24] for it in items]).float()
        for label, std, min_conf in sources:
            if std is None:
                kp = obs["keypoints"].float().clone()
                kp[..., 2] = kp[..., 2].masked_fill(kp[..., 2] < min_conf, 0.0)
            else:
                kp = gt.clone()
                kp[..., :2] += std * torch.randn(kp[..., :2].shape, generator=gen)
                if args.swap > 0:
                    swap = torch.rand(kp.shape[:2], generator=gen) < args.swap
                    swap = swap | swap[:, flip]  # a pair swaps together
                    kp = torch.where(swap[..., None], kp[:, flip], kp)
            init = regress(net, kp, focal=focal)
            p = {k: init[k] for k in ("global_orient", "body_pose", "betas", "transl")}
            pa.setdefault((label, "regressor"), []).extend(pa_mpjpe(p))
            for name, fitter in fitters.items():
                r = fitter.fit(FitBatch(res=res, keypoints=kp, joint_set="spin24", focal=focal, **p))
                q = {"global_orient": r.global_orient, "body_pose": r.body_pose, "betas": r.betas, "transl": r.transl}
                pa.setdefault((label, name), []).extend(pa_mpjpe(q))
    n = len(samples)
    print(f"{args.data}: {n} images, swap probability {args.swap:g}; {platform.node()}, "
          f"{torch.get_num_threads()} threads, {time.time() - t0:.0f} s")
    print("| keypoints | regressor PA-MPJPE | fit | fit - regressor | fit + init prior | fit + init prior - regressor |")
    print("| --- | --- | --- | --- | --- | --- |")
    for label, _, _ in sources:
        reg, fit, fip = (float(np.mean(pa[(label, k)])) for k in ("regressor", "fit", "fit + init prior"))
        print(f"| {label} | {reg:.1f} | {fit:.1f} | {fit - reg:+.1f} | {fip:.1f} | {fip - reg:+.1f} |")


if __name__ == "__main__":
    main()
