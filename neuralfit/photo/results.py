"""Typed results of the photo path: one :class:`PersonFit` per person, one :class:`ImageFit` per photo."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class PersonFit:
    """One fitted person, in the photo's camera (OpenCV axes: x right, y down, z forward; metres).

    Attributes:
        betas (10,), global_orient (3,), body_pose (69,), transl (3,): SMPL-format parameters.
        joints3d: (24, 3) SMPL joints; vertices: (V, 3) mesh vertices.
        bbox: (4,) x0, y0, x1, y1 person box in photo pixels; center (2,), scale: the crop.
        keypoints: (J, 3) the 2D keypoints fitted (photo pixels, confidence), joint set ``joint_set``; or None.
        keypoints_fit: (J, 2) the body's projected keypoints of the same set (photo pixels; NaN where the
            body does not define the keypoint), or None.
        loss: total loss of the kept iterate; terms: its unweighted terms.
        hypothesis: 0 = as started, 1 = rotated 180 degrees.
        occlusion_fraction: mean occlusion probability over the body's cells of ``occlusion``.
        start: where the fit started (``neuralfit.photo.start``: mediapipe3d, lifter, network, file, mean).
        occlusion: (h, w) occlusion probability over the crop's feature grid (0 off the body), or None;
            occlusion_source: what it was read from: ``"part head"`` (the network's background probability,
            ``neuralfit.photo.occlusion``), ``"fitter"`` (the fit's mask + keypoint or feature outlier
            posteriors), or ``""`` (no map).
        keypoint_outlier: (J,) posterior p(outlier) of each fitted keypoint (NaN: not observed), or None.
        unsure_keypoint_weight: the weight the 2D fit gave this person's keypoints below confidence 0.5
            (``FitImageConfig.unsure_hidden``; 1 = as detected).
        landmark_inconsistency: how far mediapipe's 3D landmarks failed to project onto its 2D keypoints, 0 to
            1 (``FitImageConfig.lift_blend_inconsistent``); keypoint_term_weight: the weight of this person's
            keypoint terms in the fit (``FitImageConfig.inconsistent_keypoints``; 1 = full).
        hidden_keypoint_weight: (J,) the factor the 2D fit put on each keypoint's confidence because the part
            head sees no body there (``FitImageConfig.hidden_keypoints``; 1 = as detected), or None (off).
        facing_evidence: the part head's left/right evidence on the fitted body (``photo.facing.lr_evidence``;
            negative: it reads the other facing), or None (no part head); facing_swapped: the fit was redone
            from left/right-swapped observations because of it (``FitImageConfig.facing_check``).
        cut_by_frame: the photo edges that cut the person (``photo.people.cut_by_frame``): the body beyond them is
            mediapipe's guess.
        observations: what the fit's 2D keypoints came from: ``keypoints`` (mediapipe or the keypoint file),
            ``network`` (the network's heatmaps inside a ``--bbox`` where mediapipe found nobody), or ``none``.
    """

    betas: np.ndarray
    global_orient: np.ndarray
    body_pose: np.ndarray
    transl: np.ndarray
    joints3d: np.ndarray
    vertices: np.ndarray
    bbox: np.ndarray
    center: np.ndarray
    scale: float
    keypoints: np.ndarray | None
    joint_set: str | None
    keypoints_fit: np.ndarray | None = None
    loss: float = float("nan")
    terms: dict[str, float] = field(default_factory=dict)
    hypothesis: int = 0
    occlusion_fraction: float = 0.0
    start: str = ""
    occlusion: np.ndarray | None = field(default=None, repr=False)
    occlusion_source: str = ""
    keypoint_outlier: np.ndarray | None = None
    unsure_keypoint_weight: float = 1.0
    landmark_inconsistency: float = 0.0
    keypoint_term_weight: float = 1.0
    observations: str = "keypoints"
    hidden_keypoint_weight: np.ndarray | None = None
    facing_evidence: float | None = None
    facing_swapped: bool = False
    cut_by_frame: tuple[str, ...] = ()


@dataclass
class ImageFit:
    """The result for one photo.

    Attributes:
        source: the file path (or ``"<array i>"``); stem: its output folder name.
        status: "ok", "no_person" or "failed"; message: one line when not ok.
        method: the method used; method_reason: why (auto-selection, user choice).
        image_size: (H, W); focal_length, principal_point (2,): the photo's camera in pixels;
        camera_source: where the focal came from (user, EXIF, default rule); camera_warnings: lines;
            warnings: lines about the fit (logged as ``warning:`` and kept in fit.json).
        people: the fitted people (empty unless ok).
        occlusion: (H, W) float32 occlusion probability over the photo (0 off the bodies; the people's
            ``occlusion`` maps warped back, the larger where two overlap), or None.
        overlay: (H, W, 3) uint8 picture of the bodies over the photo; side: the bodies seen from the
            side (depth errors are invisible in the overlay); None when not rendered.
        body_mask: (H, W) bool, where the bodies project (with overlay).
        timings: seconds per stage (shared stages are split evenly over the batch).
        out_dir: the folder written, or None.
        photo: (H, W, 3) uint8 RGB photo as read.
    """

    source: str
    stem: str
    status: str = "ok"
    message: str = ""
    method: str = ""
    method_reason: str = ""
    image_size: tuple[int, int] = (0, 0)
    focal_length: float = float("nan")
    principal_point: np.ndarray | None = None
    camera_source: str = ""
    camera_warnings: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # fit warnings (e.g. the torso outside the box)
    people: list[PersonFit] = field(default_factory=list)
    occlusion: np.ndarray | None = None
    overlay: np.ndarray | None = None
    side: np.ndarray | None = None
    body_mask: np.ndarray | None = None
    timings: dict[str, float] = field(default_factory=dict)
    out_dir: Path | None = None
    photo: np.ndarray | None = field(default=None, repr=False)

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def K(self) -> np.ndarray:
        """(3, 3) the photo's intrinsic matrix."""
        pp = np.asarray(self.principal_point, dtype=np.float64)
        return np.array([[self.focal_length, 0.0, pp[0]], [0.0, self.focal_length, pp[1]], [0.0, 0.0, 1.0]])

    def params(self) -> dict[str, np.ndarray]:
        """The arrays of params.npz (P people): betas (P,10), global_orient (P,3), body_pose (P,69),
        transl (P,3), joints3d (P,24,3), bbox (P,4), focal_length (), principal_point (2,), K (3,3),
        image_size (2,); occlusion (H, W) float16 when the fit made an occlusion map (the photo-size map of
        occlusion.png; float16 keeps the file small and a posterior needs no more precision)."""
        ps = self.people

        def stack(name: str) -> np.ndarray:
            return np.stack([np.asarray(getattr(p, name), dtype=np.float32) for p in ps]).astype(np.float32)

        out = {
            "betas": stack("betas"), "global_orient": stack("global_orient"), "body_pose": stack("body_pose"),
            "transl": stack("transl"), "joints3d": stack("joints3d"), "bbox": stack("bbox"),
            "focal_length": np.float32(self.focal_length),
            "principal_point": np.asarray(self.principal_point, dtype=np.float32),
            "K": self.K.astype(np.float32),
            "image_size": np.asarray(self.image_size, dtype=np.int32),
        }  # fmt: skip
        if self.occlusion is not None:
            out["occlusion"] = np.asarray(self.occlusion).astype(np.float16)
        return out
