"""How the occlusion map's calibration was chosen: a grid over ``FitImageConfig.occlusion_from_parts`` and
``occlusion_smooth`` on the real occluded benchmark's frames (docs/occlusion.md, session 15).

Each person-view of the split is fitted once per placement with the shipped default (``ImageFitter``, the
person's box); the part head's background probability is read again on the fit's own crop (the network on
the same crop pixels), and the map is rebuilt for every setting with the shipped functions
(``neuralfit.photo.occlusion``) on the crop's grid, over the cells the fitted mesh covers. Per placement and
person it prints the mean over person-views of the map on the pasted occluder and on the visible body, and
per setting the worst margin to issue 16's gate, ``min(inside - 0.6, 0.15 - visible)`` over the rows.
Settings are chosen on ``--dev`` (the frames ``benchmarks/real_occluded.py --dev`` uses); run that script on
the same split first: the occluder rectangles come from its cache. Grid cells, not photo pixels: the
benchmark's own map columns can differ by ~0.01-0.05.

    python benchmarks/occlusion_map_grid.py --frames 25 --subset 6 --dev
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError, run_script


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", default="runs/real_multiview", help="the multi-view benchmark's cache")
    ap.add_argument("--frames", type=int, default=25)
    ap.add_argument("--subset", type=int, default=6)
    ap.add_argument("--dev", action="store_true", help="the development frames (choose settings here only)")
    ap.add_argument("--smooth", default="1,3,5")
    ap.add_argument("--lo", default="0.15,0.2,0.25,0.3,0.35")
    ap.add_argument("--width", default="0.2,0.3,0.4", help="hi - lo")
    ap.add_argument("--top", type=int, default=8, help="settings printed, best margin first")
    args = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import cv2
    from tqdm import tqdm

    from neuralfit.data.appearance import PhotoBank
    from neuralfit.data.crop import warp
    from neuralfit.eval.real_data import build_set, find_demo, load_frame, occluded_split
    from neuralfit.eval.real_occluders import PLACEMENTS, Occluder
    from neuralfit.eval.real_report import item_tag
    from neuralfit.nets import predict
    from neuralfit.photo.occlusion import body_cells, occlusion_from_parts
    from neuralfit.photo.people import Crop
    from neuralfit.pipeline import ImageFitter

    cache = Path(args.cache)
    t0 = time.time()
    rset = build_set(find_demo(None), cache / "data", n_frames=args.frames)
    pick = occluded_split(rset.frames, args.subset, args.dev)
    items = [it for it in rset.items if it.frame in pick]
    fitter = ImageFitter()
    if fitter.net is None:
        raise NeuralfitError("no network: the map reads the shipped network's part head")
    faces = fitter.body.faces.cpu().numpy()
    bank = PhotoBank(max_side=800)
    size = fitter.res // 4
    cues = []  # (placement, person, background (size, size), body cells, occluder cells)
    for placement in PLACEMENTS:
        folder = cache / "occluded" / placement / "occluders"
        for it in tqdm(items, desc=placement, unit="fit", leave=False):
            path = folder / f"{item_tag(it)}.npz"
            if not path.is_file():
                raise NeuralfitError(f"{path} is missing: run benchmarks/real_occluded.py on this split first")
            z = np.load(path)
            occ = Occluder(z["rects"], int(z["seed"]))
            img = occ.paste(load_frame(cache / "data", it.frame, it.view), bank)
            r = fitter.fit([img], bboxes=[np.asarray(it.box, np.float32)])[0]
            if not r.ok or not r.people:
                continue
            p = r.people[0]
            crop = Crop(np.asarray(p.center), float(p.scale), fitter.res)
            pixels = warp(img, crop.affine(), fitter.res)
            bg = predict(fitter.net, pixels[None])["part_probs"][0, 0].float().cpu().numpy()
            if bg.shape != (size, size):
                bg = cv2.resize(bg, (size, size), interpolation=cv2.INTER_AREA)
            cells = body_cells(p.vertices, faces, r.focal_length, r.principal_point, crop.affine(size), size)
            under = warp(occ.mask(img.shape[:2]).astype(np.uint8), crop.affine(size), size, nearest=True) > 0
            cues.append((placement, it.person, bg, cells, under))
    rows = sorted({(c[0], c[1]) for c in cues}, key=lambda k: (PLACEMENTS.index(k[0]), k[1]))
    results = []
    for k, lo, width in itertools.product([int(v) for v in args.smooth.split(",")],
                                          [float(v) for v in args.lo.split(",")],
                                          [float(v) for v in args.width.split(",")]):
        hi = lo + width
        if hi > 1.0:
            continue
        per: dict[tuple[str, str], list[tuple[float, float]]] = {}
        for placement, person, bg, cells, under in cues:
            m = occlusion_from_parts(bg, cells, (lo, hi), k)
            inside, visible = cells & under, cells & ~under
            per.setdefault((placement, person), []).append(
                (float(m[inside].mean()) if inside.any() else np.nan, float(m[visible].mean()) if visible.any()
                 else np.nan))
        tab = {row: (np.nanmean([a for a, _ in v]), np.nanmean([b for _, b in v])) for row, v in per.items()}
        margin = min(min(i - 0.6, 0.15 - v) for i, v in tab.values())
        results.append((margin, k, lo, hi, tab))
    results.sort(key=lambda t: -t[0])
    split = "development" if args.dev else "test"
    print(f"Command: `python benchmarks/occlusion_map_grid.py {' '.join(argv if argv is not None else sys.argv[1:])}` "
          f"({split} frames {sorted(pick)}, {len(cues)} fits, {time.time() - t0:.0f} s); map on the occluder / on the "
          "visible body, grid cells\n")
    print("| smooth | lo | hi | worst margin | " + " | ".join(f"{p} {q}" for p, q in rows) + " |")
    print("| --- " * (4 + len(rows)) + "|")
    for margin, k, lo, hi, tab in results[:args.top]:
        print(f"| {k} | {lo:.2f} | {hi:.2f} | {margin:+.2f} | "
              + " | ".join(f"{tab[row][0]:.2f} / {tab[row][1]:.2f}" for row in rows) + " |")
    return 0


if __name__ == "__main__":
    run_script(main)
