"""Real occluded benchmark: the real multi-view frames with pasted occluders, scored against the 4-view GT.

::

    python benchmarks/real_occluded.py [--subset 8] [--dev] [--placement lower --placement arm_torso
        --placement squares --placement adv] [--method mediapipe3d --method default --method focal ...]
        [--set key=value ...] [--views 0,1,2,3] [--people front,back] [--out runs/real_occluded.md]

Uses the set of ``benchmarks/real_multiview.py`` (same ``--cache`` and ``--frames``; ``--subset`` of its frames),
pastes an occluder per person-view (placements and textures: :mod:`neuralfit.eval.real_occluders`; the
``adv`` position is the worst for mediapipe's own 3D on a 4 x 5 grid), and fits each occluded view with
the person's box (the box is known: it comes from the clean frame). Per placement and method: PA-MPJPE /
MPJPE on the person-views every method fitted, the same methods' clean score on those person-views, how
many person-views were lost (no fit), and, for fits with an occlusion map, the mean occlusion probability
of body pixels inside the occluder and on the visible body (once more without the pixels where the other person,
nearer the camera in that view, covers the person: their mediapipe mask on the clean frame). A second table gives the PA error of the limb joints
the occluder covers (per joint, after the alignment of all 12), occluded and clean. Occluder rectangles are stored per person-view
under ``<cache>/occluded/<placement>/occluders``; occluded frames are re-made from them, never stored.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from neuralfit.errors import NeuralfitError, run_script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", help="Demo_MultiPerson folder (default: the installed Pose2Sim package's)")
    ap.add_argument("--cache", default="runs/real_multiview", help="the multi-view benchmark's cache")
    ap.add_argument("--frames", type=int, default=25, help="frames of the multi-view set (as real_multiview.py)")
    ap.add_argument("--subset", type=int, default=8, help="frames of that set to occlude, spread evenly")
    ap.add_argument("--dev", action="store_true",
                    help="a development split for choosing weights: the same number of frames, spread evenly over "
                         "the set's frames that --subset does NOT pick (report on the --subset frames, tune on --dev)")
    ap.add_argument("--views", default="0,1,2,3")
    ap.add_argument("--people", default="front,back")
    ap.add_argument("--placement", action="append", help="lower, arm_torso, squares, adv (repeat; default all)")
    ap.add_argument("--method", action="append", help="mediapipe3d, default, focal or NAME:key=value,... (repeat)")
    ap.add_argument("--set", action="append", default=[], help="FitImageConfig override key=value")
    ap.add_argument("--tag", help="cache tag of the fits (default: a hash of the fitting code, so changed code "
                                  "refits); pass a tag printed by an earlier run to reuse its fits")
    ap.add_argument("--out", help="also write the markdown report here")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from tqdm import tqdm

    from neuralfit.data.appearance import PhotoBank
    from neuralfit.eval.multiview import score_limb12
    from neuralfit.eval.real_data import PEOPLE, build_set, find_demo, load_frame, occluded_split
    from neuralfit.eval.real_methods import Runner, parse_selection, unsupported
    from neuralfit.eval.real_occluders import PLACEMENTS, Occluder, adv_candidates, place, worst_position
    from neuralfit.eval.real_report import (
        hidden_joint_table,
        item_tag,
        method_folder,
        occluded_table,
        run_method,
        score_rows,
    )
    from neuralfit.io.atomic import atomic_path, save_npz

    placements = args.placement or list(PLACEMENTS)
    if bad := [p for p in placements if p not in PLACEMENTS]:
        raise NeuralfitError(f"--placement: unknown {bad}; expected {', '.join(PLACEMENTS)}")
    sel = parse_selection(args.views, args.people, args.method, args.set, args.tag)
    views, people, specs, sets, tag = sel.views, sel.people, sel.specs, sel.sets, sel.tag
    print(f"fit cache tag: {tag}", file=sys.stderr)
    cache = Path(args.cache)
    t0 = time.time()
    rset = build_set(find_demo(args.demo), cache / "data", n_frames=args.frames)
    pick = occluded_split(rset.frames, args.subset, args.dev)
    items = [it for it in rset.items if it.frame in pick and it.view in views and it.person in people]
    print(f"{len(items)} person-views x {len(placements)} placements", file=sys.stderr)
    bank = PhotoBank(max_side=800)
    runner = Runner(sets)
    frame_of = {}

    def clean(it):
        key = (it.frame, it.view)
        if key not in frame_of:
            frame_of.clear()  # one frame at a time: they are 6 MB each
            frame_of[key] = load_frame(cache / "data", it.frame, it.view)
        return frame_of[key]

    skipped, tables, grid_lost, covered = [], {}, {}, {}
    try:
        for pi, placement in enumerate(placements):
            occ: dict[str, Occluder] = {}
            folder = cache / "occluded" / placement / "occluders"
            for it in tqdm(items, desc=f"occluders {placement}", unit="view", leave=False):
                path = folder / f"{item_tag(it)}.npz"
                if path.is_file():
                    z = np.load(path)
                    occ[item_tag(it)] = Occluder(z["rects"], int(z["seed"]))
                    grid_lost.setdefault(placement, []).append(float(z["grid_lost"]))
                    continue
                seed = 100000 * pi + 1000 * it.frame + 10 * it.view + PEOPLE.index(it.person)
                if placement == "adv":
                    def err(o: Occluder, it=it) -> float:
                        r = runner.mediapipe3d(o.paste(clean(it), bank), it.box)
                        return score_limb12(r.limb12, it.gt).pa_mpjpe if r.ok else float("inf")

                    o, worst, lost = worst_position(adv_candidates(it.box, seed), err)
                else:
                    o, worst, lost = place(placement, it.keypoints, it.box, seed, it.frame), float("nan"), float("nan")
                occ[item_tag(it)] = o
                grid_lost.setdefault(placement, []).append(lost)
                save_npz(path, rects=o.rects, seed=np.array(o.seed), mediapipe_pa=np.array(worst),
                         grid_lost=np.array(lost))

            def image_of(it, occ=occ):
                return occ[item_tag(it)].paste(clean(it), bank)

            def mask_of(it, occ=occ):
                return occ[item_tag(it)].mask(clean(it).shape[:2])

            def in_front_of(it):
                return _in_front(it, rset.items, clean(it).shape[:2])

            per_method, clean_rows = {}, {}
            for spec in specs:
                why = unsupported(spec, sets)
                if why:
                    if pi == 0:
                        skipped.append(f"- `{spec.name}` not run: " + "; ".join(why))
                        print(skipped[-1], file=sys.stderr)
                    continue
                res = run_method(spec, items, runner, method_folder(cache / "occluded" / placement / "fits", spec,
                                                                    args.set, tag), image_of, mask_of,
                                 desc=f"{placement} {spec.name}", in_front_of=in_front_of)
                per_method[spec.name] = score_rows(items, res, rset)
                res_c = run_method(spec, items, runner, method_folder(cache / "fits", spec, args.set, tag), clean,
                                   desc=f"clean {spec.name}")
                clean_rows[spec.name] = score_rows(items, res_c, rset)
            covered[placement] = {item_tag(it): _covered(occ[item_tag(it)], it) for it in items}
            hidden = [float(c.sum()) for c in covered[placement].values()]
            tables[placement] = (per_method, clean_rows, float(np.mean(hidden)) if hidden else float("nan"))
    finally:
        runner.close()

    cmd = "python benchmarks/real_occluded.py " + " ".join(argv if argv is not None else sys.argv[1:])
    lines = [f"Command: `{cmd}` ({os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d %H:%M')}, "
             f"{time.time() - t0:.0f} s; fit cache tag {tag}); {len(items)} person-views per placement "
             f"(frames {sorted(pick)}); textures: {'interior photos' if len(bank) else 'procedural'}", "", *skipped, "",
             occluded_table(tables, people), "", hidden_joint_table(tables, covered, people), ""]
    if "adv" in grid_lost:
        lines.append(f"adv: mediapipe found nobody at {100 * np.nanmean(grid_lost['adv']):.0f} % of the 20 grid "
                     "positions (mean over person-views); the worst position where it still found the person is used.")
    report = "\n".join(lines)
    print(report)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(report)
    return 0


def _in_front(it, all_items, hw: tuple[int, int]) -> np.ndarray | None:
    """(H, W) bool: the clean mediapipe mask of the other person of the same frame and view when that person
    stands nearer this camera (mean depth of the pseudo-GT limb joints), else None: pixels of a person hidden
    by the other are not their visible body."""
    from neuralfit.eval.real_data import MASK_STEP

    others = [o for o in all_items if o.frame == it.frame and o.view == it.view and o.person != it.person]
    nearer = [o for o in others if o.mask is not None and float(np.mean(o.gt[:, 2])) < float(np.mean(it.gt[:, 2]))]
    if not nearer:
        return None
    m = np.repeat(np.repeat(nearer[0].mask, MASK_STEP, 0), MASK_STEP, 1)[:hw[0], :hw[1]]
    return np.pad(m, ((0, hw[0] - m.shape[0]), (0, hw[1] - m.shape[1])))


def _covered(o, it) -> np.ndarray:
    """(12,) bool: the limb joints (the person's 2D keypoints in this view) the occluder covers."""
    from neuralfit.eval.multiview import BLAZEPOSE_LIMB12

    kp = it.keypoints[list(BLAZEPOSE_LIMB12), :2]
    covered = np.zeros(len(kp), bool)
    for x0, y0, x1, y1 in o.rects:
        covered |= (kp[:, 0] >= x0) & (kp[:, 0] < x1) & (kp[:, 1] >= y0) & (kp[:, 1] < y1)
    return covered


if __name__ == "__main__":
    run_script(main)
