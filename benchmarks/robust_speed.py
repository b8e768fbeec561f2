"""Fit time per person: the keypoints-only fit vs keypoints + the issue-16 terms (keypoint outlier process and
the person-mask silhouette, :mod:`neuralfit.fitting.robust`), one run each after a warm-up, as a ratio.

::

    OMP_NUM_THREADS=1 python benchmarks/robust_speed.py [--batch 1 --batch 8] [--threads 1]

Synthetic crops (the free body in shipped mocap poses, exact BlazePose-33 keypoints, its silhouette at
56 px as the mask, init 10 deg off per joint); the default schedule (40 + 80 iterations). Target: the
ratio <= 1.5. Wall times on a shared machine are noisy; the CPU time of this process (one thread) is the
steadier ratio.
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch


def make_batch(body, n: int, res: int = 224, size: int = 56, seed: int = 0):
    """``n`` crops: (FitBatch, mask (n, size, size)) with blazepose33 keypoints of a known body."""
    from neuralfit.priors.mocap import default_mocap_path

    from neuralfit.fitting import FitBatch
    from neuralfit.render import CropCamera, project, rasterize

    g = torch.Generator().manual_seed(seed)
    poses = torch.from_numpy(np.load(default_mocap_path())["body_pose"].astype(np.float32))
    pose = poses[torch.randint(0, len(poses), (n,), generator=g)]
    go = torch.tensor([[math.pi, 0.0, 0.0]]).repeat(n, 1)
    tr = torch.tensor([[0.0, 0.15, 45.0]]).repeat(n, 1)
    cam = CropCamera(res)
    with torch.no_grad():
        out = body(torch.zeros(n, 10), go, pose, tr)
        mask = rasterize(out.lowres, body.faces, cam, size).mask.float()
        k3, valid = body.keypoints(out, "blazepose33")
        kp = torch.cat([project(k3, cam), valid.float()[None, :, None].expand(n, -1, 1)], -1)
    init = (pose.view(n, 23, 3) + math.radians(10.0) * torch.nn.functional.normalize(
        torch.randn(n, 23, 3, generator=g), dim=-1)).view(n, 69)
    return FitBatch(go + 0.05 * torch.randn(n, 3, generator=g), init, tr + torch.tensor([0.03, -0.03, 0.0]),
                    res=res, keypoints=kp, joint_set="blazepose33", mask=mask)


def mask_fitter_class():
    """The fitter keeping ``FitBatch.mask`` when ``w_mask_outlier > 0`` in a keypoints-only fit: the wiring
    docs/occlusion.md asks of ``Fitter._prepare`` (a no-op once the fitter does it itself)."""
    from neuralfit.fitting import Fitter

    class MaskFitter(Fitter):
        def _prepare(self, batch):
            out, size = super()._prepare(batch)
            if batch.mask is not None and out.mask is None and self.config.w_mask_outlier > 0:
                out.mask = batch.mask.float().to(self.device)
                size = int(out.mask.shape[1])
            return out, size

    return MaskFitter


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, action="append", help="people per fit (repeat; default 1 and 8)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from neuralfit.priors.default import load_pose_prior

    from neuralfit.body import load_body_model
    from neuralfit.fitting import FitBody, FitConfig

    body, prior = FitBody(load_body_model("free")), load_pose_prior("default")
    fitter_cls = mask_fitter_class()
    configs = {
        "keypoints only": FitConfig(keypoints_only=True),
        "+ keypoint outliers": FitConfig(keypoints_only=True, w_keypoints=0.0, w_keypoint_outlier=1.0),
        "+ keypoint outliers + mask": FitConfig(keypoints_only=True, w_keypoints=0.0, w_keypoint_outlier=1.0,
                                                w_mask_outlier=0.3),
    }
    fitter_cls(body, None, prior, configs["keypoints only"]).fit(make_batch(body, 1, seed=99))  # warm-up
    print("| B | fit | s / person (wall) | s / person (cpu) | ratio (wall) | ratio (cpu) |")
    print("| --- | --- | --- | --- | --- | --- |")
    for B in args.batch or [1, 8]:
        batch = make_batch(body, B)
        base: tuple[float, float] | None = None
        for name, cfg in configs.items():
            fitter = fitter_cls(body, None, prior, cfg)
            t, c = time.perf_counter(), time.process_time()
            fitter.fit(batch)
            wall, cpu = (time.perf_counter() - t) / B, (time.process_time() - c) / B
            base = (wall, cpu) if base is None else base
            print(f"| {B} | {name} | {wall:.2f} | {cpu:.2f} | {wall / base[0]:.2f} | {cpu / base[1]:.2f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
