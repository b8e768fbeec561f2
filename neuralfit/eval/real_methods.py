"""Methods of the real-photo benchmarks: mediapipe's own 3D and ``neuralfit.fit_image`` variants.

A method is a :class:`MethodSpec` (a name and the keyword arguments it passes to ``fit_image``). The
keyword arguments are checked against the installed ``fit_image`` signature (and ``--set`` keys against
:class:`neuralfit.pipeline.FitImageConfig`), so a method that asks for something the current code does
not accept is reported, not silently run as the default. Results are cached per
(method, frame, view, person) so runs resume. Used by ``benchmarks/real_multiview.py`` and
``benchmarks/real_occluded.py`` (docs/real_benchmark.md).
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from neuralfit.errors import NeuralfitError
from neuralfit.eval.multiview import BLAZEPOSE_LIMB12, SMPL_LIMB12
from neuralfit.eval.people import torso_distance
from neuralfit.io.atomic import atomic_path

#: Placeholder value: replaced per person-view by the calibrated focal length of its camera.
CALIBRATED = "calib"


@dataclass(frozen=True)
class MethodSpec:
    """One method: ``name`` and the ``fit_image`` keyword arguments (``kind`` "fit": one fit per person
    box), mediapipe's own world landmarks inside the person's box (``kind`` "mediapipe3d"), or one
    ``fit_image(frame, max_people=N, ...)`` per frame-view without a box, its people matched to the
    ground-truth people afterwards (``kind`` "multi", issue 17). A kwarg value ``"calib"`` means the
    camera's calibrated focal length."""

    name: str
    kwargs: tuple[tuple[str, Any], ...] = ()
    kind: str = "fit"

    @property
    def key(self) -> str:
        """Cache key: changes when the kwargs change."""
        text = json.dumps([self.kind, list(self.kwargs)], sort_keys=True, default=str)
        return f"{self.name}-{hashlib.sha1(text.encode()).hexdigest()[:8]}"


BUILTIN: dict[str, MethodSpec] = {
    "mediapipe3d": MethodSpec("mediapipe3d", kind="mediapipe3d"),
    "default": MethodSpec("default"),
    "focal": MethodSpec("focal", (("focal", CALIBRATED),)),
    "multi": MethodSpec("multi", (("max_people", 3),), kind="multi"),
}

#: ``max_people`` of a multi method that does not say.
MULTI_MAX_PEOPLE = 3


def _value(text: str) -> Any:
    low = text.lower()
    if low in ("true", "false"):
        return low == "true"
    if low == "none":
        return None
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def parse_method(text: str) -> MethodSpec:
    """``NAME`` (a built-in) or ``NAME:key=value,key=value`` (a new method passing those kwargs).

    ``multi=1`` (or true) among the keys makes a whole-frame multi-person method (kind "multi"; the key
    itself is not passed on; ``max_people`` defaults to :data:`MULTI_MAX_PEOPLE`)."""
    if ":" not in text:
        if text not in BUILTIN:
            raise NeuralfitError(f"unknown method {text!r}; built-ins: {', '.join(BUILTIN)}; or NAME:key=value,...")
        return BUILTIN[text]
    name, _, rest = text.partition(":")
    kwargs = []
    for part in filter(None, rest.split(",")):
        key, eq, val = part.partition("=")
        if not eq or not key.strip():
            raise NeuralfitError(f"--method {text!r}: {part!r} is not key=value")
        kwargs.append((key.strip(), _value(val.strip())))
    if not name or name in BUILTIN:
        raise NeuralfitError(f"--method {text!r}: give the new method a name that is not a built-in")
    multi = [v for k, v in kwargs if k == "multi"]
    if multi:
        if len(multi) > 1 or multi[0] not in (0, 1, True, False):
            raise NeuralfitError(f"--method {text!r}: multi takes 1 or 0 (true/false), once")
        kwargs = [(k, v) for k, v in kwargs if k != "multi"]
        if multi[0]:
            if not any(k == "max_people" for k, _ in kwargs):
                kwargs.append(("max_people", MULTI_MAX_PEOPLE))
            return MethodSpec(name, tuple(kwargs), kind="multi")
    return MethodSpec(name, tuple(kwargs))


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``--set key=value`` pairs (``key`` a FitImageConfig field, or ``fit.field`` for FitConfig); a value
    with commas is a tuple."""
    out = {}
    for item in items:
        key, eq, val = item.partition("=")
        if not eq:
            raise NeuralfitError(f"--set {item!r} is not key=value")
        val = val.strip()
        # "a,b": a tuple (e.g. hidden_from_parts=0.25,0.6)
        out[key.strip()] = tuple(_value(v.strip()) for v in val.split(",")) if "," in val else _value(val)
    return out


def unsupported(spec: MethodSpec, sets: dict[str, Any]) -> list[str]:
    """Why ``spec`` (with the ``--set`` overrides) cannot run on the installed code; [] when it can."""
    if spec.kind not in ("fit", "multi"):
        return []
    import neuralfit

    params = inspect.signature(neuralfit.fit_image).parameters
    problems = [f"fit_image() has no keyword {k!r} (it takes: {', '.join(p for p in params if p != 'images')})"
                for k, _ in spec.kwargs if k not in params]
    if spec.kind == "multi" and "bbox" in dict(spec.kwargs):
        problems.append("a multi method fits the whole frame; it takes no bbox")
    if sets:
        try:
            make_config(sets)
        except (NeuralfitError, TypeError, ValueError) as exc:
            problems.append(str(exc))
        if "config" not in params:
            problems.append("fit_image() takes no config; --set cannot be applied")
    return problems


def make_config(sets: dict[str, Any]):
    """A FitImageConfig with ``sets`` applied (``fit.x`` sets FitConfig's ``x``); None when empty."""
    from neuralfit.fitting import FitConfig

    if not sets:
        return None
    FitImageConfig = _fit_image_config()
    if FitImageConfig is None:
        raise NeuralfitError("--set: this neuralfit has no FitImageConfig")
    top = {f.name for f in dataclasses.fields(FitImageConfig)}
    sub = {f.name for f in dataclasses.fields(FitConfig)}
    plain = {k: v for k, v in sets.items() if "." not in k}
    nested = {k.split(".", 1)[1]: v for k, v in sets.items() if k.startswith("fit.")}
    bad = [k for k in plain if k not in top] + [f"fit.{k}" for k in nested if k not in sub]
    bad += [k for k in sets if "." in k and not k.startswith("fit.")]
    if bad:
        raise NeuralfitError(f"--set: unknown setting(s) {', '.join(bad)} (FitImageConfig: {', '.join(sorted(top))})")
    cfg = FitImageConfig(**plain)
    if nested:
        base = cfg.fit or FitConfig.photo()  # what the pipeline uses when config.fit is None
        cfg = dataclasses.replace(cfg, fit=dataclasses.replace(base, **nested))
    return cfg


def _save_fields(result: Any, names: tuple[str, ...], path: Path) -> None:
    """A cached result's fields (and its overlay picture, when kept) as one compressed npz, atomically."""
    arrays = {k: np.asarray(getattr(result, k)) for k in names}
    if result.overlay is not None:
        arrays["overlay"] = result.overlay
    with atomic_path(path, suffix=".npz") as tmp:
        np.savez_compressed(tmp, **arrays)


@dataclass
class MethodResult:
    """One method on one person-view.

    Attributes:
        ok: a 3D body came back. message: why not, else "".
        limb12: (12, 3) predicted limb joints in the photo camera (metres; root-relative for mediapipe).
        limb12_bp: (12, 3) the fitted body's own BlazePose-33 limb keypoints (fits only; NaN otherwise).
        torso2d: (4, 2) the method's torso (shoulders, hips) in photo pixels, to check who was fitted.
        seconds: wall time of the call. occ_inside / occ_visible: occlusion-map score (see
        :func:`occlusion_score`), NaN when there is no map or no occluder; occ_visible_seen: the visible
        body's score without the pixels behind another person (``in_front`` of :meth:`Runner.fit`; the
        same as occ_visible when none was given).
        overlay: small RGB picture of the fit (not for the repository: third-party frames).
    """

    ok: bool
    message: str = ""
    limb12: np.ndarray = field(default_factory=lambda: np.full((12, 3), np.nan))
    limb12_bp: np.ndarray = field(default_factory=lambda: np.full((12, 3), np.nan))
    torso2d: np.ndarray = field(default_factory=lambda: np.full((4, 2), np.nan))
    seconds: float = float("nan")
    occ_inside: float = float("nan")
    occ_visible: float = float("nan")
    overlay: np.ndarray | None = None
    occ_visible_seen: float = float("nan")

    def save(self, path: Path) -> None:
        _save_fields(self, ("ok", "message", "limb12", "limb12_bp", "torso2d", "seconds", "occ_inside",
                            "occ_visible", "occ_visible_seen"), path)

    @classmethod
    def load(cls, path: Path) -> MethodResult:
        z = np.load(path)
        return cls(bool(z["ok"]), str(z["message"]), z["limb12"], z["limb12_bp"], z["torso2d"], float(z["seconds"]),
                   float(z["occ_inside"]), float(z["occ_visible"]), z["overlay"] if "overlay" in z else None,
                   float(z["occ_visible_seen"]) if "occ_visible_seen" in z else float("nan"))


def project_torso(joints: np.ndarray, focal: float, principal_point: Any) -> np.ndarray:
    """(4, 2) photo pixels of SMPL's shoulders (16, 17) and hips (1, 2), pinhole in the photo camera the
    fit reports (OpenCV axes), in BlazePose's torso order (11, 12, 23, 24): left/right shoulder, hip."""
    t4 = np.asarray(joints, np.float64)[[16, 17, 1, 2]]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = float(focal) * t4[:, :2] / t4[:, 2:3] + np.asarray(principal_point, np.float64).reshape(2)
    uv[t4[:, 2] <= 0] = np.nan  # behind the camera
    return uv


def _small(overlay: np.ndarray | None) -> np.ndarray | None:
    if overlay is None:
        return None
    return cv2.resize(overlay, (overlay.shape[1] // 4, overlay.shape[0] // 4), interpolation=cv2.INTER_AREA)


@dataclass
class MultiResult:
    """A whole-frame multi-person method on one frame-view: every person it fitted, in its order.

    Attributes:
        ok: the call answered (nobody fitted is an answer; a failure is not). message: why not, else "".
        limb12, limb12_bp: (P, 12, 3) per fitted person, as in :class:`MethodResult`.
        torso2d: (P, 4, 2) each fit's projected torso (shoulders, hips; photo px).
        keypoints: (P, 33, 3) the BlazePose keypoints each person was fitted to (NaN where none).
        bbox: (P, 4) the boxes the fits report. seconds: wall time of the one call.
        overlay: small RGB picture of all the fits (third-party frame: never commit it).
    """

    ok: bool
    message: str = ""
    limb12: np.ndarray = field(default_factory=lambda: np.zeros((0, 12, 3)))
    limb12_bp: np.ndarray = field(default_factory=lambda: np.zeros((0, 12, 3)))
    torso2d: np.ndarray = field(default_factory=lambda: np.zeros((0, 4, 2)))
    keypoints: np.ndarray = field(default_factory=lambda: np.zeros((0, 33, 3)))
    bbox: np.ndarray = field(default_factory=lambda: np.zeros((0, 4)))
    seconds: float = float("nan")
    overlay: np.ndarray | None = None

    @property
    def n(self) -> int:
        return int(len(self.limb12))

    def person(self, i: int) -> MethodResult:
        """Fitted person ``i`` as a one-person result (its seconds: the call's, shared over the people)."""
        return MethodResult(True, "", self.limb12[i], self.limb12_bp[i], self.torso2d[i],
                            self.seconds / max(self.n, 1), overlay=self.overlay)

    def save(self, path: Path) -> None:
        _save_fields(self, ("ok", "message", "limb12", "limb12_bp", "torso2d", "keypoints", "bbox", "seconds"), path)

    @classmethod
    def load(cls, path: Path) -> MultiResult:
        z = np.load(path)
        return cls(bool(z["ok"]), str(z["message"]), z["limb12"], z["limb12_bp"], z["torso2d"], z["keypoints"],
                   z["bbox"], float(z["seconds"]), z["overlay"] if "overlay" in z else None)


def _as33(torso2d: np.ndarray) -> np.ndarray:
    tk = np.zeros((33, 3))
    tk[[11, 12, 23, 24], :2] = torso2d
    return tk


def box_size(box: np.ndarray) -> float:
    """A person box's size for distance thresholds: its longer side (pixels, at least 1)."""
    b = np.asarray(box, np.float64)
    return float(max(b[2] - b[0], b[3] - b[1], 1.0))


def match_people(fits: MultiResult, keypoints: list[np.ndarray], boxes: list[np.ndarray],
                 max_dist: float = 0.2, use: str = "torso") -> tuple[list[int | None], np.ndarray]:
    """One-to-one match of the ground-truth people of a frame-view to the fitted people (Hungarian).

    Args:
        fits: the frame-view's fitted people.
        keypoints: per GT person, its (33, 3) keypoints in that view; boxes: its (4,) box.
        max_dist: a pair is a match only when the side-agnostic torso distance
            (:func:`neuralfit.eval.people.torso_distance`) is under ``max_dist`` x the GT person's box size.
        use: "torso" compares each fit's projected SMPL torso (falling back to its fitted keypoints'
            torso when the projection is not finite); "keypoints" the BlazePose keypoints it was fitted
            to (falling back to the projected torso).

    Returns:
        ``(match, dist)``: per GT person the matched fit's index or None ("not found"); (G, P) the
        relative distances (NaN where undefined).
    """
    from scipy.optimize import linear_sum_assignment

    if use not in ("torso", "keypoints"):
        raise NeuralfitError(f"match: use must be 'torso' or 'keypoints', got {use!r}")
    G, P = len(keypoints), fits.n
    dist = np.full((G, P), np.nan)
    for j in range(P):
        proj = _as33(fits.torso2d[j])
        kp = fits.keypoints[j]
        have_proj = bool(np.all(np.isfinite(fits.torso2d[j])))
        have_kp = bool(np.all(np.isfinite(kp[[11, 12, 23, 24], :2])))
        order = [proj, kp] if use == "torso" else [kp, proj]
        ok = [have_proj, have_kp] if use == "torso" else [have_kp, have_proj]
        pick = next((a for a, good in zip(order, ok, strict=True) if good), None)
        if pick is None:
            continue
        for g in range(G):
            dist[g, j] = torso_distance(pick, keypoints[g]) / box_size(boxes[g])
    match: list[int | None] = [None] * G
    if G and P:
        big = 1e6
        cost = np.where(np.isfinite(dist) & (dist < max_dist), dist, big)
        rows, cols = linear_sum_assignment(cost)
        for g, j in zip(rows, cols, strict=True):
            if cost[g, j] < big:
                match[g] = int(j)
    return match, dist


def occlusion_score(occlusion: np.ndarray | None, body_mask: np.ndarray | None,
                    occluder: np.ndarray | None, in_front: np.ndarray | None = None) -> tuple[float, float]:
    """Mean occlusion probability of body pixels inside the occluder, and on the visible body.

    Args:
        occlusion: (H, W) float occlusion map of a fit (``ImageFit.occlusion``), or None.
        body_mask: (H, W) bool, where the fitted body projects (``ImageFit.body_mask``).
        occluder: (H, W) bool, the pasted occluder.
        in_front: (H, W) bool, pixels where someone stands in front of the person (not visible body
            either), or None.

    Returns:
        ``(inside, visible)``; NaN where the map is missing or a region has no body pixels.
    """
    nan = float("nan")
    if occlusion is None or body_mask is None or occluder is None:
        return nan, nan
    occ = np.asarray(occlusion, np.float64)
    body = np.asarray(body_mask, bool)
    inside, visible = body & occluder, body & ~occluder
    if in_front is not None:
        visible &= ~np.asarray(in_front, bool)
    return (float(occ[inside].mean()) if inside.any() else nan,
            float(occ[visible].mean()) if visible.any() else nan)


@dataclass
class Selection:
    """What a real-benchmark run scores: views, people, method specs, config overrides and the fit cache tag."""

    views: list[int]
    people: list[str]
    specs: list[MethodSpec]
    sets: dict[str, Any]
    tag: str


def parse_selection(views: str, people: str, methods: list[str] | None, sets: list[str],
                    tag: str | None) -> Selection:
    """The command-line choices both real benchmarks share, checked (one-line errors)."""
    from neuralfit.eval.real_data import PEOPLE

    try:
        view_ids = [int(v) for v in views.split(",")]
    except ValueError:
        raise NeuralfitError(f"--views {views!r}: expected comma-separated view numbers, e.g. 0,1,2,3") from None
    who = [p for p in people.split(",") if p]
    if bad := [p for p in who if p not in PEOPLE]:
        raise NeuralfitError(f"--people: unknown {bad}; expected {', '.join(PEOPLE)}")
    specs = [parse_method(m) for m in (methods or ["mediapipe3d", "default", "focal"])]
    return Selection(view_ids, who, specs, parse_sets(sets), tag or code_tag())


def code_tag() -> str:
    """8 hex digits naming the fitting code and assets a fit ran with (the package's sources outside
    ``neuralfit/eval``, ``priors/``, and the asset files' sizes): fits cached under another tag are
    not reused, so a rerun after the code changed refits instead of reporting stale numbers."""
    import neuralfit

    root = Path(neuralfit.__file__).parent
    h = hashlib.sha1()
    files = sorted(p for p in root.rglob("*.py") if "eval" not in p.relative_to(root).parts[:1])
    priors = root.parent / "priors"
    files += sorted(priors.rglob("*.py")) if priors.is_dir() else []
    for p in files:
        h.update(str(p.relative_to(root.parent)).encode())
        h.update(p.read_bytes())
    for p in sorted(root.rglob("assets/*")):
        if p.is_file():
            h.update(f"{p.relative_to(root)}:{p.stat().st_size}".encode())
    return h.hexdigest()[:8]


def _fit_image_config():
    """The fit_image config class wherever the installed code keeps it (the pipeline is being split)."""
    import importlib

    for mod in ("neuralfit", "neuralfit.pipeline", "neuralfit.photo"):
        try:
            cls = getattr(importlib.import_module(mod), "FitImageConfig", None)
        except ImportError:
            cls = None
        if cls is not None:
            return cls
    return None


class Runner:
    """Runs methods on person-views with one warm detector and one body model (lazily created)."""

    def __init__(self, sets: dict[str, Any] | None = None) -> None:
        self.sets = sets or {}
        self._detector = None
        self._body = None

    def close(self) -> None:
        if self._detector is not None:
            self._detector.close()

    def mediapipe3d(self, image: np.ndarray, box: np.ndarray) -> MethodResult:
        """mediapipe inside the box padded by 10 % (as ``fit_image(bbox=...)`` searches it)."""
        from neuralfit.detect import PersonDetector

        self._detector = self._detector or PersonDetector()
        from neuralfit.photo.people import box_region

        x0, y0, x1, y1 = box_region(box, image.shape[:2])
        t = time.perf_counter()
        d = self._detector(np.ascontiguousarray(image[y0:y1, x0:x1]))
        sec = time.perf_counter() - t
        if d is None or d.world_landmarks is None:
            return MethodResult(False, "mediapipe found nobody in the box", seconds=sec)
        torso = d.keypoints[[11, 12, 23, 24], :2] + np.array([x0, y0])
        return MethodResult(True, "", d.world_landmarks[list(BLAZEPOSE_LIMB12), :3].astype(np.float64),
                            torso2d=torso, seconds=sec)

    def _kwargs(self, spec: MethodSpec, focal: float) -> dict[str, Any]:
        kwargs = {k: (focal if v == CALIBRATED else v) for k, v in spec.kwargs}
        cfg = make_config(self.sets)
        if cfg is not None:
            kwargs["config"] = cfg
        return kwargs

    def _person(self, r, p) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(12, 3) limb joints, (12, 3) own BlazePose limb keypoints and (4, 2) projected torso of a fit."""
        joints = np.asarray(p.joints3d, np.float64)
        bp = self._blazepose(joints, np.asarray(p.vertices, np.float64))
        return joints[list(SMPL_LIMB12)], bp, project_torso(joints, r.focal_length, r.principal_point)

    def fit(self, spec: MethodSpec, image: np.ndarray, box: np.ndarray, focal: float,
            occluder: np.ndarray | None = None, in_front: np.ndarray | None = None) -> MethodResult:
        import neuralfit

        kwargs = self._kwargs(spec, focal)
        t = time.perf_counter()
        r = neuralfit.fit_image(image, bbox=np.asarray(box, np.float32), **kwargs)
        sec = time.perf_counter() - t
        if not r.ok or not r.people:
            return MethodResult(False, r.message or r.status, seconds=sec)
        limb, bp, torso = self._person(r, r.people[0])
        inside, visible = occlusion_score(r.occlusion, r.body_mask, occluder)
        _, seen = occlusion_score(r.occlusion, r.body_mask, occluder, in_front)
        return MethodResult(True, "", limb, bp, torso, sec, inside, visible, _small(r.overlay), seen)

    def fit_multi(self, spec: MethodSpec, image: np.ndarray, focal: float) -> MultiResult:
        """One ``fit_image(frame, max_people=N, ...)`` on the whole frame (no box): every person it fitted."""
        import neuralfit

        kwargs = self._kwargs(spec, focal)
        t = time.perf_counter()
        r = neuralfit.fit_image(image, **kwargs)
        sec = time.perf_counter() - t
        if not r.ok or not r.people:
            # "no_person" is an answer (nobody fitted), "failed" is not.
            return MultiResult(r.status == "no_person", r.message or r.status, seconds=sec)
        per = [self._person(r, p) for p in r.people]
        kps = np.full((len(per), 33, 3), np.nan)
        for i, p in enumerate(r.people):
            if p.keypoints is not None and np.shape(p.keypoints) == (33, 3):
                kps[i] = np.asarray(p.keypoints, np.float64)
        return MultiResult(True, "", np.stack([x[0] for x in per]), np.stack([x[1] for x in per]),
                           np.stack([x[2] for x in per]), kps,
                           np.stack([np.asarray(p.bbox, np.float64).reshape(4) for p in r.people]), sec,
                           _small(r.overlay))

    def _blazepose(self, joints: np.ndarray, vertices: np.ndarray) -> np.ndarray:
        """The body's own BlazePose-33 limb keypoints from its joints and vertices (NaN if undefined)."""
        import torch

        from neuralfit.body import load_body_model

        if self._body is None:
            self._body = load_body_model("free")
        body = self._body
        if vertices.shape[0] != body.num_vertices:
            return np.full((12, 3), np.nan)
        from neuralfit.body.keypoints import apply_keypoints

        kset = body.keypoint_sets["blazepose33"]
        lm = torch.as_tensor(vertices[body.landmark_ids.cpu().numpy()], dtype=torch.float32)[None]
        kp = apply_keypoints(kset, torch.as_tensor(joints, dtype=torch.float32)[None], lm)[0].numpy()
        out = kp[list(BLAZEPOSE_LIMB12)].astype(np.float64)
        out[~kset.valid.cpu().numpy()[list(BLAZEPOSE_LIMB12)]] = np.nan
        return out


def who(torso2d: np.ndarray, expected: np.ndarray, others: list[np.ndarray]) -> str:
    """"self" when the method's torso (4, 2) is nearest the expected person's (33, 3) keypoints,
    "other" when it is nearer another person's, "none" when no torso came back."""
    if not np.all(np.isfinite(torso2d)):
        return "none"
    tk = _as33(torso2d)
    d_self = torso_distance(tk, expected)
    return "other" if any(torso_distance(tk, o) < d_self for o in others) else "self"


def who_by_mask(torso2d: np.ndarray, own: np.ndarray | None, others: list[np.ndarray | None], step: int) -> str:
    """The identity check on the masks: "other" when the method's torso quadrilateral (shoulders and hips,
    (4, 2) photo pixels in BlazePose order) lies less than half on the expected person's mask (``own``,
    subsampled by ``step``) and more on another person's; "self" otherwise; "none" without a torso or mask.

    A person hidden behind another has little own mask where the other stands in front, so a right fit
    of the one behind can read "other" here; the keypoint check (:func:`who`) does not have that failure."""
    import cv2

    if own is None or not np.all(np.isfinite(torso2d)):
        return "none"
    quad = np.round(torso2d[[0, 1, 3, 2]] / step).astype(np.int32)
    area = np.zeros(own.shape, np.uint8)
    cv2.fillPoly(area, [quad], 1)
    inside = area.astype(bool)
    n = int(inside.sum())
    if n == 0:
        return "none"
    mine = float(own[inside].mean())
    theirs = max((float(o[inside].mean()) for o in others if o is not None and o.shape == own.shape), default=0.0)
    return "other" if mine < 0.5 and theirs > mine else "self"
