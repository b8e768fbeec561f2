"""Posing speed of the body model: full mesh vs the low-res fast path (forward, and forward+backward).

    OMP_NUM_THREADS=2 python benchmarks/bench_body.py [--body free|PATH] [--device cpu]

Prints a table of milliseconds per call (median of repeated runs).
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch


def _time(fn, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1000.0 * statistics.median(times)


def main() -> None:
    from neuralfit.body import load_body_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--body", default="free")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    body = load_body_model(args.body, device=args.device)
    print(
        f"body {body.name}: {body.num_vertices} vertices, low-res {body.lowres.num_vertices} "
        f"(support {body.lowres.support.numel()}), threads {torch.get_num_threads()}"
    )
    print(f"{'B':>4} {'path':<22} {'forward ms':>11} {'fwd+bwd ms':>11}")
    for bsz in (1, 16):
        g = torch.Generator().manual_seed(0)
        params = dict(
            betas=torch.randn(bsz, 10, generator=g),
            global_orient=torch.randn(bsz, 3, generator=g),
            body_pose=0.3 * torch.randn(bsz, 69, generator=g),
            transl=torch.randn(bsz, 3, generator=g),
        )
        params = {k: v.to(args.device) for k, v in params.items()}
        for name, kw in (
            ("full + lowres map", dict(full=True, lowres=True)),
            ("lowres only (fast)", dict(full=False, lowres=True)),
        ):

            def fwd(kw=kw, params=params):
                with torch.no_grad():
                    body(**params, **kw)

            def fwd_bwd(kw=kw, params=params):
                bp = params["body_pose"].clone().requires_grad_(True)
                out = body(**{**params, "body_pose": bp}, **kw)
                (out.lowres_vertices.square().sum() + body.keypoints(out, "coco17").square().sum()).backward()

            print(
                f"{bsz:>4} {name:<22} {_time(fwd, args.repeats):>11.2f} {_time(fwd_bwd, args.repeats):>11.2f}"
            )


if __name__ == "__main__":
    main()
