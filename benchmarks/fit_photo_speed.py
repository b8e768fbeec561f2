"""Seconds per photo of ``neuralfit fit``, end to end, on CPU (target: <= 8 s on 2 cores).

Fits each photo on its own (batch of one, as ``neuralfit fit photo.jpg`` does) and prints a table of
the stages: asset loading (body, prior, network; once per call), detection (mediapipe), network,
fitting, rendering the overlay/occlusion pictures, writing the folder; plus the keypoint agreement
(share of visible mediapipe keypoints the fit projects within 10 % of the box size).

    OMP_NUM_THREADS=2 python benchmarks/fit_photo_speed.py [--method keypoints] [--threads 2] [--parts-cue both]
        [--repeat 3] [PHOTO ...]

``--parts-cue both`` fits every photo with and without the part head's occlusion cue
(``FitImageConfig.hidden_from_parts``), interleaved, and prints the ratio of their network + start + fit
seconds per person (issue 16's speed gate compares the default with the keypoints-only fit).

Default photos: Debian opencv-doc's basketball1.png, basketball2.png, messi5.jpg (apt install opencv-doc).
The machine's load average is printed too: wall times on a shared machine are upper bounds; the
process CPU seconds (all threads) are less affected by other processes.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

DATA = Path("/usr/share/doc/opencv-doc/examples/data")
DEFAULT = [DATA / "basketball1.png", DATA / "basketball2.png", DATA / "messi5.jpg"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("photos", nargs="*", type=Path, default=None)
    ap.add_argument("--method", default=None, choices=["neural", "keypoints", "regressor"])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--network", default=None)
    ap.add_argument("--neural-model", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--parts-cue", choices=["on", "off", "both"], default="on",
                    help="the part head's occlusion cue (FitImageConfig.hidden_from_parts): on (default), off, both")
    ap.add_argument("--repeat", type=int, default=1, help="fit the photo list this many times")
    args = ap.parse_args()
    photos = args.photos or [p for p in DEFAULT if p.is_file()]
    if not photos:
        raise SystemExit("no photos: pass some, or install Debian's opencv-doc")

    import numpy as np
    import torch

    torch.set_num_threads(args.threads)
    from neuralfit.pipeline import FitImageConfig, ImageFitter, keypoint_errors

    cues = {"on": [True], "off": [False], "both": [True, False]}[args.parts_cue]
    t0 = time.perf_counter()
    fitters = {}
    for cue in cues:
        cfg = FitImageConfig(method=args.method, batch_size=1) if cue else \
            FitImageConfig(method=args.method, batch_size=1, hidden_from_parts=None)
        fitters[cue] = ImageFitter("free", "default", args.network, args.neural_model, cfg, args.device)
    load = (time.perf_counter() - t0) / len(cues)
    fitter = fitters[cues[0]]
    print(f"method: {fitter.method} ({fitter.method_reason}); torch threads {args.threads}; "
          f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"asset loading (once per call): {load:.2f} s")
    cols = ["detect", "crop", "network", "start", "fit", "facing", "render", "write"]
    print(f"| photo | parts cue | size | {' | '.join(cols)} | total s | CPU s | keypoints within 10 % |")
    print("|" + "---|" * (len(cols) + 6))
    totals, cpus, core = [], [], {cue: [] for cue in cues}
    with tempfile.TemporaryDirectory() as out:
        for rep in range(args.repeat):
            for i, photo in enumerate(photos):
                for cue in cues:
                    t, c = time.perf_counter(), time.process_time()
                    r = fitters[cue].fit([photo], out=out)[0]
                    total, cpu = time.perf_counter() - t, time.process_time() - c
                    if not r.ok:
                        print(f"| {photo.name} | {'on' if cue else 'off'} | - | {r.message} |")
                        continue
                    p = r.people[0]
                    err = keypoint_errors(p)
                    size = max(p.bbox[2] - p.bbox[0], p.bbox[3] - p.bbox[1])
                    share = float(np.mean(err <= 0.1 * size)) if err is not None else float("nan")
                    tm = " | ".join(f"{r.timings.get(c, 0.0):.2f}" for c in cols)
                    first = rep == 0 and i == 0
                    note = " (first: start-up)" if first else ""
                    print(f"| {photo.name}{note} | {'on' if cue else 'off'} | {r.image_size[1]}x{r.image_size[0]} | "
                          f"{tm} | {total:.2f} | {cpu:.2f} | {share:.0%} of {len(err) if err is not None else 0} |")
                    totals.append(total)
                    cpus.append(cpu)
                    if not first:
                        core[cue].append(sum(r.timings.get(c, 0.0) for c in ("network", "start", "fit", "facing")))
    for f in fitters.values():
        f.close()
    if totals:
        print(f"mean per photo: {np.mean(totals):.2f} s wall, {np.mean(cpus):.2f} CPU s (all threads; on an "
              f"otherwise idle machine wall >= CPU s / threads); asset loading adds {load:.2f} s per command")
    if len(cues) == 2 and core[True] and core[False]:
        on, off = np.mean(core[True]), np.mean(core[False])
        print(f"network + start + fit + facing check per photo, first photo left out: cue on {on:.2f} s, off {off:.2f} s, "
              f"ratio {on / off:.2f}")

if __name__ == "__main__":
    main()
