"""Throughput of the synthetic data engine, and the visibility statistics of its presets.

    OMP_NUM_THREADS=1 python benchmarks/synth_speed.py [--count 60] [--res 224] [--body free]

Prints (1) the rasteriser alone on the body's full mesh vs PyTorch3D's CPU rasteriser, (2)
single-process per-image time by preset, (3) end-to-end ``generate_dataset`` images/s with 1 and
2 workers (JPEG + PNG masks + records + annotations.npz, photo decoding included) and file sizes,
(4) the distribution of the per-image invisible-keypoint fraction for each preset.

The machine may be shared: besides wall-clock rates the script reports CPU-seconds per image
(this process plus its workers, from getrusage) and the load average, and derives the rate that
two otherwise idle cores would give (2 / CPU-s per image).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


def _table(rows: list[tuple], head: tuple) -> None:
    w = [max(len(str(x)) for x in col) for col in zip(head, *rows, strict=True)]
    for r in (head, tuple("-" * n for n in w), *rows):
        print("  ".join(str(x).ljust(n) for x, n in zip(r, w, strict=True)))
    print()


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the worker processes)."""
    me = resource.getrusage(resource.RUSAGE_SELF)
    ch = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + ch.ru_utime + ch.ru_stime


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=60)
    ap.add_argument("--stats-count", type=int, default=200, help="images per preset for the visibility table")
    ap.add_argument("--res", type=int, default=224)
    ap.add_argument("--body", default="free")
    ap.add_argument("--skip-pytorch3d", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)

    from neuralfit.data.synth import SynthConfig, SynthEngine, load_body
    from neuralfit.data.writer import generate_dataset
    from neuralfit.render.zbuffer import rasterize

    body = load_body(args.body)
    res = args.res
    f = 5000.0 * res / 224
    with torch.no_grad():
        out = body(betas=torch.zeros(1, 10), global_orient=torch.tensor([[np.pi, 0.0, 0.0]]))
    v = out.vertices[0].double().numpy()
    v = v - v.mean(0) + [0, 0, f * 1.8 / (0.8 * res)]
    uv = v[:, :2] / v[:, 2:] * f + res / 2
    faces = body.faces.numpy()
    rasterize(uv, v[:, 2], faces, res, res)
    t = time.perf_counter()
    n = 10
    for _ in range(n):
        rasterize(uv, v[:, 2], faces, res, res)
    ours = (time.perf_counter() - t) / n
    rows = [("numpy z-buffer (ours)", len(faces), f"{ours * 1e3:.1f}")]
    if not args.skip_pytorch3d:
        try:
            from pytorch3d.renderer import MeshRasterizer, PerspectiveCameras, RasterizationSettings
            from pytorch3d.structures import Meshes

            # PyTorch3D's NDC camera looks down +z with x left, y up: flip x, y of OpenCV points.
            verts = torch.tensor(v * [-1, -1, 1], dtype=torch.float32)[None]
            mesh = Meshes(verts, body.faces[None])
            cam = PerspectiveCameras(focal_length=((f, f),), principal_point=((res / 2, res / 2),),
                                     image_size=((res, res),), in_ndc=False)
            rast = MeshRasterizer(cam, RasterizationSettings(image_size=res, faces_per_pixel=1,
                                                                    max_faces_per_bin=len(faces)))
            rast(mesh)
            t = time.perf_counter()
            frag = rast(mesh)
            p3d = time.perf_counter() - t
            agree = ((frag.pix_to_face[0, ..., 0].numpy() >= 0)
                     == (rasterize(uv, v[:, 2], faces, res, res).face >= 0)).mean()
            rows.append(("PyTorch3D CPU MeshRasterizer", len(faces), f"{p3d * 1e3:.1f}  (mask agreement {agree:.4f})"))
        except Exception as exc:  # noqa: BLE001 - optional comparison
            rows.append(("PyTorch3D CPU MeshRasterizer", len(faces), f"unavailable: {exc}"))
    print(f"## Rasteriser, {res} px, body '{args.body}' full mesh, person ~80% of the frame")
    _table(rows, ("renderer", "faces", "ms / frame"))

    print("## Engine, one process, warm (photos decoded)")
    rows = []
    for preset in ("test-clean", "train", "test-occluded"):
        eng = SynthEngine(SynthConfig(res=res, occlusion=preset, body=args.body), body=body)
        for i in range(len(eng.photos)):
            eng.photos.get(i)
        eng.sample(0, 0)
        t = time.perf_counter()
        c = time.process_time()
        for i in range(20):
            eng.sample(i, 1)
        dt = (time.perf_counter() - t) / 20
        dc = (time.process_time() - c) / 20
        rows.append((preset, f"{dt * 1e3:.0f}", f"{dc * 1e3:.0f}", f"{1 / dc:.2f}", f"{2 / dc:.2f}"))
    _table(rows, ("preset", "wall ms / image", "CPU ms / image", "images/s per core", "2 idle cores"))

    print(f"## generate_dataset end to end, {args.count} images, preset train (includes worker start-up)")
    rows = []
    tmp = Path(tempfile.mkdtemp(prefix="synth_bench_"))
    try:
        for w in (1, 2):
            d = tmp / f"w{w}"
            t = time.perf_counter()
            c0 = _cpu()
            generate_dataset(d, args.count, seed=0, config=SynthConfig(res=res, body=args.body), workers=w,
                             progress=False)
            dt = time.perf_counter() - t
            cpu = (_cpu() - c0) / args.count
            imgs = sum(p.stat().st_size for p in (d / "images").iterdir()) / args.count
            masks = sum(p.stat().st_size for p in (d / "masks").iterdir()) / args.count
            ann = (d / "annotations.npz").stat().st_size / args.count
            rows.append((w, f"{dt:.1f}", f"{args.count / dt:.2f}", f"{cpu * 1e3:.0f}", f"{2 / cpu:.2f}",
                         f"{os.getloadavg()[0]:.1f}", f"{imgs / 1024:.1f}", f"{masks / 1024:.2f}",
                         f"{ann / 1024:.2f}"))
        _table(rows, ("workers", "seconds", "images/s (wall)", "CPU ms/img", "2 idle cores img/s", "load avg",
                      "KiB jpg/img", "KiB masks/img", "KiB npz/img"))

        print(f"## Invisible spin24 keypoints per image ({args.stats_count} images per preset, 2 workers)")
        rows = []
        for preset in ("test-clean", "train", "test-occluded"):
            d = tmp / preset
            generate_dataset(d, args.stats_count, seed=1, config=SynthConfig(res=res, occlusion=preset, body=args.body),
                             workers=2, progress=False)
            a = np.load(d / "annotations.npz")
            inv = 1 - a["part"][..., 2].mean(1)
            occ = a["occ_fraction"]
            q = np.percentile(inv, [0, 10, 50, 90, 100])
            hist = np.histogram(inv, bins=[0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 1.0001])[0]
            rows.append((preset, " ".join(f"{x:.2f}" for x in q), f"{inv.mean():.2f}", " ".join(map(str, hist)),
                         f"{occ.mean():.2f}", f"{a['lowres_vis'].mean():.2f}", f"{a['truncated'].mean():.2f}"))
        _table(rows, ("preset", "invisible min/p10/p50/p90/max", "mean",
                      "hist [0,.1,.2,.3,.4,.5,.6,1]", "silhouette occluded", "lowres visible", "truncated"))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
