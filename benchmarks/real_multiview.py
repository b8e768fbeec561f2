"""Real-photo 3D benchmark: single-view fits vs 4-view triangulated pseudo-GT (Pose2Sim Demo_MultiPerson).

::

    pip install --no-deps pose2sim==0.10.49      # the demo data (BSD-3); --no-deps: keep one OpenCV wheel
    python benchmarks/real_multiview.py [--frames 25] [--views 0,1,2,3] [--people front,back]
        [--method mediapipe3d --method default --method focal --method multi --method NAME:key=value,...]
        [--set key=value ...] [--match-dist 0.2] [--match-on torso|keypoints]
        [--out docs/real_benchmark_table.md] [--cache runs/real_multiview]

Frames are spread over the clip, everyone is found in every view (mediapipe with masking + crops), people
are matched across views by triangulation, and the pseudo-GT is a confidence-weighted robust DLT of
mediapipe's 2D keypoints over the 4 views, after a rotation-only refinement of the calibration.
Each person-view is then fitted from that view alone, with the person's box, and scored on the 12 limb
joints in that camera (PA-MPJPE; MPJPE root-aligned at the mid-hip). Methods: ``mediapipe3d`` (mediapipe's
own world landmarks inside the box), ``default`` (``fit_image(frame, bbox=box)``), ``focal`` (the
calibrated focal passed as ``focal=``), ``multi`` (issue 17: one ``fit_image(frame, max_people=3)`` per
frame-view, no box; each GT person is matched one-to-one to the fitted person whose projected torso is
nearest its keypoints, within ``--match-dist`` x its box size, else "not found") and ``NAME:key=value,...``
(any ``fit_image`` keywords; ``multi=1`` makes it a whole-frame method; ``calib`` as a value means the
calibrated focal). Keywords the installed ``fit_image`` does not take are reported and
that method is skipped. Frames, detections and fits are cached under ``--cache`` (resumable; delete a
method's folder to refit it). Never commit the cache: it holds third-party frames. Docs:
docs/real_benchmark.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from neuralfit.errors import NeuralfitError, run_script


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--demo", help="Demo_MultiPerson folder (default: the installed Pose2Sim package's)")
    ap.add_argument("--cache", default="runs/real_multiview", help="frames, detections and fits (not committed)")
    ap.add_argument("--frames", type=int, default=25, help="frames spread over the clip")
    ap.add_argument("--views", default="0,1,2,3", help="views to score (all 4 always build the GT)")
    ap.add_argument("--people", default="front,back", help="front (the woman), back (the man on the treadmill)")
    ap.add_argument("--method", action="append", help="mediapipe3d, default, focal, multi or NAME:key=value,... "
                                                     "(multi=1 among the keys: whole-frame multi-person) (repeat)")
    ap.add_argument("--match-dist", type=float, default=0.2,
                    help="multi methods: a fit matches a GT person when its torso is within this x the person's "
                         "box size (longer side)")
    ap.add_argument("--match-on", choices=("torso", "keypoints"), default="torso",
                    help="multi methods: match on each fit's projected SMPL torso, or on the keypoints it fitted")
    ap.add_argument("--set", action="append", default=[], help="FitImageConfig override key=value (fit.x for "
                                                                "FitConfig); applies to every fit method")
    ap.add_argument("--no-refine", action="store_true", help="use the calibration's rotations as they are")
    ap.add_argument("--tag", help="cache tag of the fits (default: a hash of the fitting code, so changed code "
                                  "refits); pass a tag printed by an earlier run to reuse its fits")
    ap.add_argument("--out", help="also write the markdown report here")
    ap.add_argument("--sheet", help="contact sheet PNG (default: <cache>/sheet_<method>.png; never commit it)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    from neuralfit.eval.real_data import build_set, find_demo, load_frame
    from neuralfit.eval.real_methods import Runner, parse_selection, unsupported
    from neuralfit.eval.real_report import (
        contact_sheet,
        found_lines,
        gt_summary,
        match_rows,
        method_folder,
        person_table,
        relative_lines,
        run_method,
        run_multi,
        score_rows,
        view_table,
    )
    from neuralfit.io.atomic import atomic_path

    sel = parse_selection(args.views, args.people, args.method, args.set, args.tag)
    views, people, specs, sets, tag = sel.views, sel.people, sel.specs, sel.sets, sel.tag
    print(f"fit cache tag: {tag}", file=sys.stderr)
    cache = Path(args.cache)
    demo = find_demo(args.demo)
    t0 = time.time()
    rset = build_set(demo, cache / "data", n_frames=args.frames, refine=not args.no_refine)
    items = [it for it in rset.items if it.view in views and it.person in people]
    print(f"{len(items)} person-views ({time.time() - t0:.0f} s to build the set)", file=sys.stderr)

    if args.match_dist <= 0:
        raise NeuralfitError(f"--match-dist must be positive, got {args.match_dist}")
    runner = Runner(sets)
    per_method, skipped, multi, matches = {}, [], {}, {}
    try:
        for spec in specs:
            why = unsupported(spec, sets)
            if why:
                skipped.append(f"- `{spec.name}` not run: " + "; ".join(why))
                print(skipped[-1], file=sys.stderr)
                continue
            folder = method_folder(cache / "fits", spec, args.set, tag)
            if spec.kind == "multi":
                fvs = [(f, v) for f in rset.frames for v in views]
                multi[spec.name] = run_multi(spec, fvs, runner, folder,
                                             lambda f, v: load_frame(cache / "data", f, v),
                                             lambda v: float(rset.cameras[v].K[0, 0]))
                results, matches[spec.name] = match_rows(items, multi[spec.name], rset, args.match_dist,
                                                         args.match_on)
            else:
                results = run_method(spec, items, runner, folder,
                                     lambda it: load_frame(cache / "data", it.frame, it.view))
            per_method[spec.name] = score_rows(items, results, rset)
            if spec.kind in ("fit", "multi"):
                contact_sheet(per_method[spec.name], Path(args.sheet or cache / f"sheet_{spec.name}.png"))
    finally:
        runner.close()

    cmd = "python benchmarks/real_multiview.py " + " ".join(argv if argv is not None else sys.argv[1:])
    report = "\n".join([
        f"Command: `{cmd}` ({os.cpu_count()} CPU cores, {time.strftime('%Y-%m-%d %H:%M')}, "
        f"{time.time() - t0:.0f} s; fit cache tag {tag})",
        "",
        "Pseudo-GT:",
        gt_summary(rset),
        "",
        *skipped,
        "",
        "Per person (mm, 12 limb joints, on the person-views every method fitted; "
        f"{'found' if multi else 'lost'}/other person over all):",
        "",
        person_table(per_method, people, found=bool(multi)),
        "",
        *([relative_lines(per_method, people), ""] if "mediapipe3d" in per_method and len(per_method) > 1 else []),
        *([f"Found (multi methods: matched one-to-one on the {args.match_on}, within {args.match_dist:g} x the "
           "person's box size; per-box methods: a body came back):", "",
           found_lines(per_method, matches, multi), ""] if multi else []),
        "Per view (PA-MPJPE / MPJPE, mm):",
        "",
        view_table(per_method, people, views),
        "",
    ])
    print(report)
    if args.out:
        with atomic_path(args.out) as tmp:
            tmp.write_text(report)
    return 0


if __name__ == "__main__":
    run_script(main)
