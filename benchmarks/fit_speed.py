"""Speed of the two-stage neural fit: ms per Adam iteration and seconds per person.

Usage::

    python benchmarks/fit_speed.py [--device cpu|cuda] [--batch 1 16] [--threads 1] [--repeat 1]

Each row fits B synthetic crops of the free body with the full NeuralSMPL objective (feature NLL with
outlier process, 2D keypoints, part segmentation, default pose prior) on the seed's schedule
(40 + 80 iterations), with the visibility cache on (rasterise every 5 iterations, the default) and off
(every iteration). Inputs are made like the oracle tests: 224-px crops, 56 x 56 x 128 features.
Target on the 2-core development CPU: <= 5 s per person at B = 1, <= 1.5 s per person at B = 16.
"""

from __future__ import annotations

import argparse
import math
import time

import torch
import torch.nn.functional as Fn


def make_inputs(fit_body, model, B: int, device: str):
    from neuralfit.fitting import FitBatch
    from neuralfit.render import CropCamera, project, rasterize

    g = torch.Generator().manual_seed(0)
    go = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(B, 1)
    pose = 0.2 * torch.randn(B, 69, generator=g)
    tr = torch.tensor([[0.0, 0.15, 45.0]]).repeat(B, 1)
    with torch.no_grad():
        gt = fit_body(torch.zeros(B, 10), go, pose, tr)
        frags = rasterize(gt.lowres, fit_body.faces, CropCamera(224), 56)
        alpha = model.vertex_orientation(gt.joints, fit_body.part_labels, fit_body.parents)
        feats = Fn.normalize(model.expected_features(frags, alpha) + 0.1 * torch.randn(B, model.dim, 56, 56,
                                                                                        generator=g), dim=1)
        kp3d, valid = fit_body.keypoints(gt, "spin24")
        kp = torch.cat([project(kp3d, CropCamera(224)), valid.float()[None, :, None].expand(B, -1, 1)], -1)
        parts = torch.softmax(torch.randn(B, 25, 56, 56, generator=g), dim=1)
    init_pose = pose + 0.15 * torch.randn(B, 69, generator=g)
    return FitBatch(go.to(device), init_pose.to(device), tr.to(device), res=224, features=feats.to(device),
                    part_probs=parts.to(device), keypoints=kp.to(device), joint_set="spin24")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 16])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--repeat", type=int, default=1, help="timed fits per row (the best is reported)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from neuralfit.priors.default import load_pose_prior

    from neuralfit.body import load_body_model
    from neuralfit.fitting import FitBody, FitConfig, Fitter
    from neuralfit.neural import NeuralMeshModel

    body = load_body_model("free")
    fit_body = FitBody(body)
    model = NeuralMeshModel.random(fit_body.n_lowres, K=3, dim=128, seed=0)
    prior = load_pose_prior("default")
    dev = args.device
    print(f"device={dev} threads={torch.get_num_threads()} body={body.name} lowres={fit_body.n_lowres} verts / "
          f"{fit_body.faces.shape[0]} faces, features 56x56x128, 40+80 iterations")
    print("wall = elapsed time; cpu = this process's CPU time (on a machine shared with other jobs, cpu is "
          "what an idle machine with the same threads would need)")
    print(f"{'B':>3} {'cache':>9} {'ms/iter':>9} {'s/fit':>8} {'s/person':>9} {'cpu s/person':>13} {'rasters':>8}")
    for B in args.batch:
        batch = make_inputs(fit_body, model, B, "cpu")
        batch = type(batch)(**{k: (v.to(dev) if torch.is_tensor(v) else v) for k, v in batch.__dict__.items()})
        for every, label in ((5, "every 5"), (1, "off")):
            cfg = FitConfig(cache_every=every)
            fitter = Fitter(body, model, prior, cfg, device=dev)
            best, best_cpu = float("inf"), float("inf")
            for _ in range(args.repeat):
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                t, c = time.perf_counter(), time.process_time()
                fitter.fit(batch)
                if dev.startswith("cuda"):
                    torch.cuda.synchronize()
                best = min(best, time.perf_counter() - t)
                best_cpu = min(best_cpu, time.process_time() - c)
            iters = cfg.stage1_iters + cfg.stage2_iters
            rasters = math.ceil((cfg.stage1_iters + 1) / every) + math.ceil((cfg.stage2_iters + 1) / every) + 1
            print(f"{B:>3} {label:>9} {1000 * best / iters:>9.1f} {best:>8.2f} {best / B:>9.2f} "
                  f"{best_cpu / B:>13.2f} {rasters:>8}")


if __name__ == "__main__":
    main()
