"""Running methods over the real benchmark set, scoring them, and the markdown tables.

Shared by ``benchmarks/real_multiview.py`` (clean frames) and ``benchmarks/real_occluded.py``
(pasted occluders). Whole-frame multi-person methods (issue 17) run once per frame-view
(:func:`run_multi`), and :func:`match_rows` turns their people into per-person-view results by a
one-to-one match to the ground-truth people, so the same scoring and tables apply. See docs/real_benchmark.md.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from neuralfit.eval.multiview import Scores, score_limb12
from neuralfit.eval.real_data import MASK_STEP, PersonView, RealSet
from neuralfit.eval.real_methods import (
    MethodResult,
    MethodSpec,
    MultiResult,
    Runner,
    match_people,
    who,
    who_by_mask,
)


@dataclass
class Row:
    """One method on one person-view, scored.

    Attributes:
        item: the person-view. result: the method's output. scores: vs the all-view GT;
        scores_heldout: vs the GT triangulated without this view; scores_bp: the fitted body's own
        BlazePose limb keypoints vs the GT (where BlazePose puts them on the body, calibrated on synthetic
        renders: ``tools/calibrate_keypoints.py``; = ``scores`` for a method without a body). identity: "self" / "other" / "none" by the
        keypoints (:func:`~neuralfit.eval.real_methods.who`); mask_identity: the same by the person masks
        (:func:`~neuralfit.eval.real_methods.who_by_mask`).
    """

    item: PersonView
    result: MethodResult
    scores: Scores
    scores_heldout: Scores
    scores_bp: Scores
    identity: str
    mask_identity: str = "none"


def method_folder(root: Path, spec: MethodSpec, sets: list[str], tag: str = "") -> Path:
    """Cache folder of a method's results under ``root``: the ``--set`` overrides and, for fits, the
    code tag (:func:`neuralfit.eval.real_methods.code_tag`) are part of the name."""
    if spec.kind == "mediapipe3d":
        return Path(root) / spec.key
    suffix = ("-" + "_".join(sorted(sets)) if sets else "") + (f"-{tag}" if tag else "")
    return Path(root) / (spec.key + suffix)


def item_tag(it: PersonView) -> str:
    return f"f{it.frame:03d}_v{it.view}_{it.person}"


def run_method(spec: MethodSpec, items: list[PersonView], runner: Runner, folder: Path,
               image_of: Callable[[PersonView], np.ndarray],
               occluder_of: Callable[[PersonView], np.ndarray | None] | None = None,
               desc: str = "", in_front_of: Callable[[PersonView], np.ndarray | None] | None = None
               ) -> list[MethodResult]:
    """Results of ``spec`` on ``items``, cached as ``folder/<tag>.npz`` (reruns resume). ``occluder_of`` /
    ``in_front_of``: the pasted occluder / the pixels of people in front, for the occlusion-map score."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for it in tqdm(items, desc=desc or spec.name, unit="fit", leave=False):
        path = folder / f"{item_tag(it)}.npz"
        if path.is_file():
            out.append(MethodResult.load(path))
            continue
        image = image_of(it)
        occ = occluder_of(it) if occluder_of is not None else None
        if spec.kind == "mediapipe3d":
            res = runner.mediapipe3d(image, it.box)
        else:
            res = runner.fit(spec, image, it.box, it.focal, occluder=occ,
                             in_front=in_front_of(it) if in_front_of is not None else None)
        res.save(path)
        out.append(res)
    return out


def run_multi(spec: MethodSpec, frame_views: list[tuple[int, int]], runner: Runner, folder: Path,
              image_of: Callable[[int, int], np.ndarray], focal_of: Callable[[int], float],
              desc: str = "") -> dict[tuple[int, int], MultiResult]:
    """A multi method on whole frames: one call per (frame, view), cached as ``folder/f<frame>_v<view>.npz``
    with every person it fitted (reruns resume)."""
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for f, v in tqdm(frame_views, desc=desc or spec.name, unit="frame-view", leave=False):
        path = folder / f"f{f:03d}_v{v}.npz"
        if path.is_file():
            out[f, v] = MultiResult.load(path)
            continue
        res = runner.fit_multi(spec, image_of(f, v), focal_of(v))
        res.save(path)
        out[f, v] = res
    return out


@dataclass
class MultiMatch:
    """How one frame-view's fitted people were matched: ``match[person]`` = index of the fit or None,
    ``extra`` = fits matched to no ground-truth person (the bystander, or a false or doubled person)."""

    match: dict[str, int | None]
    extra: int
    n_fitted: int


def match_rows(items: list[PersonView], multi: dict[tuple[int, int], MultiResult], rset: RealSet,
               max_dist: float = 0.2, use: str = "torso") -> tuple[list[MethodResult], dict[tuple[int, int],
                                                                                           MultiMatch]]:
    """Per person-view results of a multi method: the fit matched to that person one-to-one among every
    GT person of that frame-view (:func:`neuralfit.eval.real_methods.match_people`), or a "not found"
    result. Frame-views missing from ``multi`` give "not run"."""
    by_view: dict[tuple[int, int], list[PersonView]] = {}
    for it in rset.items:
        by_view.setdefault((it.frame, it.view), []).append(it)
    matches: dict[tuple[int, int], MultiMatch] = {}
    for fv, res in multi.items():
        gts = by_view.get(fv, [])
        m, _ = match_people(res, [g.keypoints for g in gts], [g.box for g in gts], max_dist=max_dist, use=use)
        hit = {g.person: j for g, j in zip(gts, m, strict=True)}
        matches[fv] = MultiMatch(hit, res.n - sum(j is not None for j in m), res.n)
    out = []
    for it in items:
        res = multi.get((it.frame, it.view))
        if res is None:
            out.append(MethodResult(False, "not run"))
        elif not res.ok:
            out.append(MethodResult(False, res.message or "failed", seconds=res.seconds))
        elif (j := matches[it.frame, it.view].match.get(it.person)) is None:
            out.append(MethodResult(False, "not found", seconds=res.seconds / max(res.n, 1)))
        else:
            out.append(res.person(j))
    return out, matches


def score_rows(items: list[PersonView], results: list[MethodResult], rset: RealSet) -> list[Row]:
    """Score results; the identity check compares the method's torso with every person in that view."""
    by_view: dict[tuple[int, int], list[PersonView]] = {}
    for it in rset.items:
        by_view.setdefault((it.frame, it.view), []).append(it)
    rows = []
    for it, res in zip(items, results, strict=True):
        nan = Scores(*(4 * [float("nan")]))
        if res.ok:
            s, sh = score_limb12(res.limb12, it.gt), score_limb12(res.limb12, it.gt_heldout)
            # A method without a body (mediapipe's 3D) already returns BlazePose's own points.
            sb = score_limb12(res.limb12_bp, it.gt) if np.all(np.isfinite(res.limb12_bp)) else s
        else:
            s = sh = sb = nan
        others = [o for o in by_view[it.frame, it.view] if o.person != it.person]
        ident = who(res.torso2d, it.keypoints, [o.keypoints for o in others]) if res.ok else "none"
        by_mask = who_by_mask(res.torso2d, it.mask, [o.mask for o in others], MASK_STEP) if res.ok else "none"
        rows.append(Row(it, res, s, sh, sb, ident, by_mask))
    return rows


def _mean(values: list[float], digits: int = 1) -> str:
    v = np.asarray([x for x in values if np.isfinite(x)])
    return f"{v.mean():.{digits}f}" if v.size else "-"


def common_keys(per_method: dict[str, list[Row]]) -> set[str]:
    """Person-views every method fitted (the "same person-frames" the tables compare on)."""
    keys = None
    for rows in per_method.values():
        ok = {item_tag(r.item) for r in rows if r.result.ok}
        keys = ok if keys is None else keys & ok
    return keys or set()


def person_table(per_method: dict[str, list[Row]], people: list[str], found: bool = False) -> str:
    """Markdown: per person x method, on the person-views every method fitted. ``found``: the "lost"
    column becomes "found" (a body came back for that person-view: for a multi method, a fit matched to
    that person; x/y over the person-views with GT)."""
    keys = common_keys(per_method)
    lines = ["| person | method | n | PA-MPJPE | MPJPE | PA as BlazePose kp | MPJPE as BlazePose kp | PA no hips | "
             "MPJPE no hips | PA held-out GT | "
             f"PA right person only (n) | {'found' if found else 'lost'} | other person | torso on another's mask | "
             "s/fit |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for person in people:
        for name, rows in per_method.items():
            mine = [r for r in rows if r.item.person == person]
            sel = [r for r in mine if item_tag(r.item) in keys]
            lost = sum(not r.result.ok for r in mine)
            other = sum(r.identity == "other" for r in mine)
            off_mask = sum(r.mask_identity == "other" for r in mine)
            right = [r for r in sel if r.identity == "self"]
            lines.append(
                f"| {person} | {name} | {len(sel)} | {_mean([r.scores.pa_mpjpe for r in sel])} | "
                f"{_mean([r.scores.mpjpe for r in sel])} | {_mean([r.scores_bp.pa_mpjpe for r in sel])} | "
                f"{_mean([r.scores_bp.mpjpe for r in sel])} | {_mean([r.scores.pa_mpjpe_nohips for r in sel])} | "
                f"{_mean([r.scores.mpjpe_nohips for r in sel])} | "
                f"{_mean([r.scores_heldout.pa_mpjpe for r in sel])} | "
                f"{_mean([r.scores.pa_mpjpe for r in right])} ({len(right)}) | "
                f"{(len(mine) - lost) if found else lost}/{len(mine)} | {other}/{len(mine)} | "
                f"{off_mask}/{len(mine)} | {_mean([r.result.seconds for r in mine])} |")
    return "\n".join(lines)


def relative_lines(per_method: dict[str, list[Row]], people: list[str], ref: str = "mediapipe3d") -> str:
    """Markdown lines: each method's mean PA-MPJPE as BlazePose points relative to ``ref``'s, per person, on
    the person-views every method fitted, the ratio to three decimals (the camera issue's gates are percentages, and the
    table's 0.1 mm rounding can flip one). "" when ``ref`` was not run."""
    if ref not in per_method:
        return ""
    keys = common_keys(per_method)

    def mean_bp(rows: list[Row], person: str) -> float:
        v = [r.scores_bp.pa_mpjpe for r in rows if r.item.person == person and item_tag(r.item) in keys]
        v = [x for x in v if np.isfinite(x)]
        return float(np.mean(v)) if v else float("nan")

    out = []
    for person in people:
        base = mean_bp(per_method[ref], person)
        for name, rows in per_method.items():
            if name == ref or not base > 0:  # NaN or an exact reference: no ratio
                continue
            m = mean_bp(rows, person)
            out.append(f"- {person}, `{name}`: {m:.2f} vs {base:.2f} mm PA as BlazePose points, "
                       f"{100 * (1 - m / base):+.3f} % better than `{ref}`")
    return "\n".join(out)


def both_found(rows: list[Row], people: tuple[str, str] = ("front", "back")) -> tuple[int, int, int]:
    """Over the frame-views where both ``people`` have GT (among ``rows``): how many had both found
    (a body came back for each), and how many had both found on the right person (neither "other").

    Returns:
        ``(both found, both found on the right person, frame-views where both have GT)``.
    """
    per_fv: dict[tuple[int, int], dict[str, Row]] = {}
    for r in rows:
        per_fv.setdefault((r.item.frame, r.item.view), {})[r.item.person] = r
    both = [d for d in per_fv.values() if all(p in d for p in people)]
    found = [d for d in both if all(d[p].result.ok for p in people)]
    right = [d for d in found if all(d[p].identity == "self" for p in people)]
    return len(found), len(right), len(both)


def found_lines(per_method: dict[str, list[Row]], matches: dict[str, dict[tuple[int, int], MultiMatch]],
                multi: dict[str, dict[tuple[int, int], MultiResult]]) -> str:
    """Markdown lines per method: "both found in X of Y frame-views where both have GT" (and on the right
    person); for multi methods also the people fitted per frame-view and the fits matched to no GT person."""
    out = []
    for name, rows in per_method.items():
        n_found, n_right, n_both = both_found(rows)
        pct = f" ({100 * n_found / n_both:.0f} %)" if n_both else ""
        line = (f"- `{name}`: both found in {n_found} of {n_both} frame-views where both have GT{pct}; "
                f"both found, each on the right person: {n_right} of {n_both}")
        if name in matches:
            ms, res = matches[name], multi[name]
            counts = np.bincount([m.n_fitted for m in ms.values()], minlength=1)
            failed = sum(not r.ok for r in res.values())
            line += (f"; people fitted per frame-view: {', '.join(f'{k}: {c}' for k, c in enumerate(counts) if c)} "
                     f"({len(ms)} frame-views); fits matched to no GT person: {sum(m.extra for m in ms.values())}; "
                     f"failed calls: {failed}; s per frame-view: {_mean([r.seconds for r in res.values()])}")
        out.append(line)
    return "\n".join(out)


def view_table(per_method: dict[str, list[Row]], people: list[str], views: list[int]) -> str:
    """Markdown: PA-MPJPE / MPJPE per view (columns) for each person x method, on the common set."""
    keys = common_keys(per_method)
    head = "| person | method | " + " | ".join(f"view {v} PA / MPJPE (n)" for v in views) + " |"
    lines = [head, "| --- | --- | " + " | ".join("---" for _ in views) + " |"]
    for person in people:
        for name, rows in per_method.items():
            cells = []
            for v in views:
                sel = [r for r in rows if r.item.person == person and r.item.view == v and item_tag(r.item) in keys]
                cells.append(f"{_mean([r.scores.pa_mpjpe for r in sel])} / {_mean([r.scores.mpjpe for r in sel])}"
                             f" ({len(sel)})")
            lines.append(f"| {person} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def gt_summary(rset: RealSet) -> str:
    """Markdown lines on the pseudo-GT's own uncertainty."""
    def q(x: np.ndarray) -> str:
        if not x.size:
            return "-"
        return f"median {np.median(x):.1f}, mean {np.mean(x):.1f}, 90th pct {np.percentile(x, 90):.1f}"

    heldout = [np.linalg.norm(it.gt - it.gt_heldout, axis=1).mean() * 1000 for it in rset.items]
    heldout = np.asarray([h for h in heldout if np.isfinite(h)])
    per_person = {p: sum(it.person == p for it in rset.items) for p in sorted({it.person for it in rset.items})}
    return "\n".join([
        f"- frames: {len(rset.frames)} ({rset.frames[0]}..{rset.frames[-1]}), person-views with GT: "
        f"{len(rset.items)} ({', '.join(f'{k} {v}' for k, v in per_person.items())}); person-frames not found "
        f"in >= 3 views: {rset.missing}; person-views left out (a limb joint not triangulated): {rset.incomplete}; views whose left/right were swapped back: {rset.side_swaps}",
        f"- camera rotation refinement (deg, per camera): {', '.join(f'{d:.2f}' for d in rset.rotation_fix_deg)}",
        f"- reprojection error of the 12 limb joints (px) before refinement: {q(rset.reproj_px_before)}; "
        f"after: {q(rset.reproj_px)}",
        f"- leave-one-view-out disagreement of the limb joints (mm): {q(rset.loo_mm)}",
        f"- all-view GT vs the GT without the scored view, mean over the 12 joints (mm): {q(heldout)}",
    ])


def side_view(pred: np.ndarray, gt: np.ndarray, size: int = 240) -> np.ndarray:
    """A picture of root-aligned GT (green) and prediction (red) limb joints seen from the camera's side
    (horizontal axis = depth z, vertical = y): depth errors a front overlay hides."""
    from neuralfit.eval.multiview import LIMB12_HIPS, _procrustes

    img = np.full((size, size, 3), 255, np.uint8)
    h = list(LIMB12_HIPS)
    g = gt - gt[h].mean(0)
    p = _procrustes(pred, gt) - gt[h].mean(0) if np.all(np.isfinite(pred)) and np.all(np.isfinite(gt)) else None
    bones = [(0, 2), (2, 4), (1, 3), (3, 5), (0, 1), (6, 7), (0, 6), (1, 7), (6, 8), (8, 10), (7, 9), (9, 11)]

    def px(x: np.ndarray) -> tuple[int, int]:
        return int(size / 2 + x[2] * size / 2.4), int(size / 2 + x[1] * size / 2.4)

    for pts, color in ((g, (0, 160, 0)), (p, (220, 0, 0))):
        if pts is None:
            continue
        for a, b in bones:
            cv2.line(img, px(pts[a]), px(pts[b]), color, 2)
    return img


def contact_sheet(rows: list[Row], path: Path, n: int = 8) -> None:
    """Overlay + side view (PA-aligned) of up to ``n`` fits spread over the rows; written atomically."""
    from neuralfit.io.images import save_png

    picks = [r for r in rows if r.result.ok and r.result.overlay is not None]
    if not picks:
        return
    picks = [picks[i] for i in np.linspace(0, len(picks) - 1, min(n, len(picks))).astype(int)]
    tiles = []
    for r in picks:
        ov = r.result.overlay
        side = side_view(r.result.limb12, r.item.gt, size=ov.shape[0] // 2)
        side = np.vstack([side, np.full((ov.shape[0] - side.shape[0], side.shape[1], 3), 255, np.uint8)])
        tile = np.hstack([ov, side])
        cv2.putText(tile, f"{item_tag(r.item)} PA {r.scores.pa_mpjpe:.0f}", (4, 16), cv2.FONT_HERSHEY_SIMPLEX,
                    0.45, (255, 255, 0), 1)
        tiles.append(tile)
    w = max(t.shape[1] for t in tiles)
    tiles = [np.hstack([t, np.full((t.shape[0], w - t.shape[1], 3), 255, np.uint8)]) for t in tiles]
    cols = 4
    while len(tiles) % cols:
        tiles.append(np.full_like(tiles[0], 255))
    grid = np.vstack([np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)])
    save_png(path, grid)


def occluded_table(tables: dict[str, tuple[dict[str, list[Row]], dict[str, list[Row]], float]],
                   people: list[str]) -> str:
    """Markdown: per placement x person x method, occluded vs clean on the same person-views.

    ``tables[placement] = (occluded rows per method, clean rows per method, mean limb joints hidden)``.
    The compared person-views are those every method fitted both occluded and clean; "lost" counts
    occluded person-views with no fit over all of them.
    """
    lines = ["| placement | joints hidden | person | method | n | PA-MPJPE | clean PA | +PA | PA as BlazePose kp | "
             "clean | +PA | MPJPE | clean MPJPE | lost | other person | occ. on occluder | occ. on visible body | "
             "occ. on visible body not behind the other person |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for placement, (occ_rows, clean_rows, hidden) in tables.items():
        keys = common_keys({**{f"o{k}": v for k, v in occ_rows.items()}, **{f"c{k}": v for k, v in clean_rows.items()}})
        for person in people:
            for name, rows in occ_rows.items():
                mine = [r for r in rows if r.item.person == person]
                sel = [r for r in mine if item_tag(r.item) in keys]
                csel = [r for r in clean_rows[name] if r.item.person == person and item_tag(r.item) in keys]
                pa, cpa = _mean([r.scores.pa_mpjpe for r in sel]), _mean([r.scores.pa_mpjpe for r in csel])
                delta = f"{float(pa) - float(cpa):+.1f}" if pa != "-" and cpa != "-" else "-"
                bpa, bcpa = _mean([r.scores_bp.pa_mpjpe for r in sel]), _mean([r.scores_bp.pa_mpjpe for r in csel])
                bdelta = f"{float(bpa) - float(bcpa):+.1f}" if bpa != "-" and bcpa != "-" else "-"
                lines.append(
                    f"| {placement} | {hidden:.1f} | {person} | {name} | {len(sel)} | {pa} | {cpa} | {delta} | "
                    f"{bpa} | {bcpa} | {bdelta} | "
                    f"{_mean([r.scores.mpjpe for r in sel])} | {_mean([r.scores.mpjpe for r in csel])} | "
                    f"{sum(not r.result.ok for r in mine)}/{len(mine)} | {sum(r.identity == 'other' for r in mine)}/"
                    f"{len(mine)} | {_mean([r.result.occ_inside for r in mine], 2)} | "
                    f"{_mean([r.result.occ_visible for r in mine], 2)} | "
                    f"{_mean([r.result.occ_visible_seen for r in mine], 2)} |")
    return "\n".join(lines)


def hidden_joint_table(tables: dict[str, tuple[dict[str, list[Row]], dict[str, list[Row]], float]],
                       covered: dict[str, dict[str, np.ndarray]], people: list[str]) -> str:
    """Markdown: the PA error of the limb joints an occluder covers, occluded vs the same joints clean.

    ``covered[placement][item_tag]``: (12,) bool, the limb joints under that person-view's occluder (by its
    2D keypoints). Errors are per joint after the alignment of all 12 (:func:`~neuralfit.eval.multiview.
    pa_joint_errors`), as the body's BlazePose points where the method has them, averaged over every covered
    joint of the person-views every method fitted both occluded and clean.
    """
    from neuralfit.eval.multiview import pa_joint_errors

    def errs(rows: list[Row], keys: set[str], person: str, cov: dict[str, np.ndarray]) -> list[float]:
        out: list[float] = []
        for r in rows:
            tag = item_tag(r.item)
            if r.item.person != person or tag not in keys or not r.result.ok:
                continue
            pred = r.result.limb12_bp if np.all(np.isfinite(r.result.limb12_bp)) else r.result.limb12
            out.extend(pa_joint_errors(pred, r.item.gt)[cov[tag]].tolist())
        return out

    lines = ["| placement | person | method | covered joints | PA error of the covered joints | same joints clean | + |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for placement, (occ_rows, clean_rows, _) in tables.items():
        keys = common_keys({**{f"o{k}": v for k, v in occ_rows.items()}, **{f"c{k}": v for k, v in clean_rows.items()}})
        cov = covered[placement]
        for person in people:
            for name, rows in occ_rows.items():
                e, c = errs(rows, keys, person, cov), errs(clean_rows[name], keys, person, cov)
                d = f"{np.mean(e) - np.mean(c):+.1f}" if e and c else "-"
                lines.append(f"| {placement} | {person} | {name} | {len(e)} | {_mean(e)} | {_mean(c)} | {d} |")
    return "\n".join(lines)
