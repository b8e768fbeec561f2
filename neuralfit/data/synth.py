"""LASOR-style synthetic, occlusion-aware training and test data.

One image = one target person rendered with the numpy z-buffer (:mod:`neuralfit.render.zbuffer`)
from a sampled pose (``neuralfit.priors``), shape (the shape prior) and view (random yaw about the
body's vertical axis, camera elevation and roll: LASOR's view augmentation), dressed by
:mod:`neuralfit.data.appearance`, on a photo or procedural background, then occluded by
objects (:mod:`neuralfit.data.occluders`), by a second rendered person in front whose silhouette
overlaps the target's by a controlled fraction (LASOR Fig. 4), and/or truncated by the frame.

Every image has its own seed ``SeedSequence([seed, index])``, so a dataset is byte-identical
whatever the number of workers and can be resumed. The image *is* the crop: ``center`` is the
image centre, ``scale = res / 200`` and the camera is the architecture's crop camera
(``f = 5000 res / 224``, principal point at the centre, OpenCV axes).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from neuralfit.data.appearance import PhotoBank, background, outfit_vertex_colours, shade
from neuralfit.data.occluders import SHAPES, occluder_texture, place_occluder
from neuralfit.data.poses import PoseShapeSource
from neuralfit.errors import NeuralfitError
from neuralfit.render.zbuffer import Raster, front_face_sign, rasterize, vertex_visibility


@dataclass(frozen=True)
class OcclusionPreset:
    """How often and how strongly a preset occludes the target person.

    p_object / p_person: probability of object occluders / a second person in front (drawn
    independently, or exclusively when ``exclusive``). coverage: range of the fraction of the
    target's silhouette each occlusion event should hide. p_truncation: probability that the
    frame cuts the body. max_invisible: images whose fraction of invisible spin24 keypoints
    exceeds this are re-drawn (with the image's own random stream, so still deterministic).
    """

    name: str
    p_object: float
    p_person: float
    p_truncation: float
    coverage: tuple[float, float]
    max_invisible: float
    exclusive: bool = False


PRESETS: dict[str, OcclusionPreset] = {
    "train": OcclusionPreset("train", 0.5, 0.25, 0.15, (0.05, 0.5), 0.8),
    "test-clean": OcclusionPreset("test-clean", 0.0, 0.0, 0.0, (0.0, 0.0), 1.0),
    # Every image gets exactly one occlusion event (object 60 %, person 40 %), hiding 0-55 % of the
    # silhouette; with self-occlusion the invisible-keypoint fraction spans 0-60 %.
    "test-occluded": OcclusionPreset("test-occluded", 0.6, 0.4, 0.1, (0.0, 0.55), 0.6, exclusive=True),
}

OCC_NONE, OCC_OBJECT, OCC_PERSON = 0, 1, 2  # occluder mask values (and bit flags in `occ_type`)


@dataclass
class SynthConfig:
    """Settings of the synthetic data engine; defaults give LASOR-like training data at 224 px."""

    res: int = 224
    occlusion: str = "train"
    body: str = "free"
    pose_source: str = "mixed"  # passed to neuralfit.priors.sample_poses
    photos: bool = True  # use installed photo packages for backgrounds/occluders (else procedural only)
    photo_prob: float = 0.6  # chance of a photo background (when photos are available)
    fill: tuple[float, float] = (0.6, 0.9)  # long side of the person's box / image side
    centre_jitter: float = 0.05  # of the box size
    elevation_std_deg: float = 15.0  # camera elevation ~ N(0, std), clipped to +-45 deg
    roll_std_deg: float = 5.0
    person_depth_gap: tuple[float, float] = (1.0, 3.0)  # metres the occluding person stands in front
    max_attempts: int = 8
    min_keypoints_in_image: int = 8  # of 24; truncation never removes more than that
    jpeg_quality: int = 92
    blur_sigma: tuple[float, float] = (0.0, 0.7)
    noise_std: tuple[float, float] = (0.0, 4.0)  # on 0-255

    def preset(self) -> OcclusionPreset:
        if self.occlusion not in PRESETS:
            raise NeuralfitError(f"occlusion preset {self.occlusion!r} unknown; expected one of {sorted(PRESETS)}")
        return PRESETS[self.occlusion]

    @property
    def focal(self) -> float:
        return 5000.0 * self.res / 224.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class SynthSample:
    """One rendered image and its annotation record (keys as in annotations.npz, one row)."""

    image: np.ndarray  # (res, res, 3) uint8 BGR
    partseg: np.ndarray  # (res, res) uint8: 0 background, 1 + part for visible target pixels
    occluder: np.ndarray  # (res, res) uint8: OCC_NONE / OCC_OBJECT / OCC_PERSON
    record: dict[str, Any] = field(default_factory=dict)


def load_body(spec: str):
    """The body model for ``spec``: "toy" (procedural test body) or anything ``load_body_model`` reads."""
    if spec == "toy":
        from neuralfit.data.toybody import ToyBody

        return ToyBody()
    from neuralfit.body import load_body_model

    return load_body_model(spec)


# ---------------------------------------------------------------------------------------------
# rotations


def _rot(axis: str, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    if axis == "x":
        return np.array([[1, 0, 0], [0, c, -s], [0, s, c]])
    if axis == "y":
        return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]])
    return np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])


def matrix_to_axis_angle(r: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (3,) axis-angle (numerically safe near 0 and pi)."""
    from scipy.spatial.transform import Rotation

    return Rotation.from_matrix(r).as_rotvec()


# ---------------------------------------------------------------------------------------------
# the engine


@dataclass
class _Person:
    verts: np.ndarray  # (V, 3) camera frame
    uv: np.ndarray  # (V, 2)
    colours: np.ndarray  # (V, 3) albedo
    raster: Raster


class SynthEngine:
    """Renders one sample at a time; create one per process (holds the body and decoded photos)."""

    def __init__(self, config: SynthConfig, body=None):
        self.config = config
        self.preset = config.preset()
        self.body = body if body is not None else load_body(config.body)
        self.faces = self.body.faces.cpu().numpy().astype(np.int64)
        self.part_labels = self.body.part_labels.cpu().numpy().astype(np.int64)
        self.sources = PoseShapeSource(config.pose_source)
        self.photos = PhotoBank(enabled=config.photos)
        with torch.no_grad():
            rest = self.body(betas=torch.zeros(1, 10))
            self.rest_verts = rest.vertices[0].double().numpy()
            rest_kp = self.body.keypoints(rest, "spin24")[0, :, :3].double().numpy()
        # Back faces of a closed, consistently wound body are hidden: skip them (same z-buffer, ~2x fewer fragments).
        self.cull = front_face_sign(self.rest_verts, self.faces)
        kset = self.body.keypoint_sets["spin24"]
        self.kp_valid = np.asarray(getattr(kset, "valid", np.ones(24, bool)), dtype=bool)
        weights = getattr(kset, "weights", None)
        self.kp_surface = (np.abs(np.asarray(weights)[:, 24:]).sum(1) > 0) if weights is not None else None
        self._kp_tables(rest_kp)

    def _kp_tables(self, rest_kp: np.ndarray) -> None:
        """Per spin24 keypoint: the body parts whose pixels may show it, and a depth tolerance.

        A keypoint is visible when the pixel it projects to shows a part of the *target* near it
        (parts of rest-pose vertices within 8 cm of its nearest-vertex distance) and that surface is
        at most ``kp_tol`` in front of it. Surface keypoints (nose, eyes, ears, head top, chin: the
        body's landmark vertices) get 6 cm, so they fail when seen from behind. Joints inside the
        body get 30 cm, about the trunk's depth (joints such as spine2 lie near the back, so a
        tolerance from the nearest-vertex distance fails from the front); for them the part test
        does the work: another limb in front of a joint shows a part that is not near it.
        """
        d = np.linalg.norm(self.rest_verts[None] - rest_kp[:, None], axis=2)  # (24, V)
        dmin = d.min(axis=1)
        self.kp_allowed = np.zeros((24, 24), dtype=bool)
        for k in range(24):
            near = d[k] <= dmin[k] + 0.08
            self.kp_allowed[k, np.unique(self.part_labels[near])] = True
        surface = self.kp_surface if self.kp_surface is not None else dmin < 0.02
        self.kp_tol = np.where(surface, 0.06, 0.30)

    # -- helpers ------------------------------------------------------------------------------

    def _project(self, pts: np.ndarray) -> np.ndarray:
        f, c = self.config.focal, self.config.res / 2
        return pts[:, :2] / pts[:, 2:3] * f + c

    def _pose_person(self, rng: np.random.Generator, r_cam: np.ndarray):
        """Sample pose, shape and yaw; return (global_orient (3,), body_pose (69,), betas (10,), body output)."""
        body_pose = self.sources.pose(rng)
        betas = self.sources.shape(rng)
        yaw = rng.uniform(-math.pi, math.pi)
        r = r_cam @ _rot("x", math.pi) @ _rot("y", yaw)
        go = matrix_to_axis_angle(r)
        with torch.no_grad():
            out = self.body(betas=torch.tensor(betas[None], dtype=torch.float32),
                            global_orient=torch.tensor(go[None], dtype=torch.float32),
                            body_pose=torch.tensor(body_pose[None], dtype=torch.float32))
        return go, body_pose, betas, out

    def _shade_person(self, rng: np.random.Generator, p: _Person, mask: np.ndarray, img: np.ndarray,
                      centre: float | None = None) -> None:
        """Write the shaded colours of person ``p`` into ``img`` (float 0-1 RGB) where ``mask``.

        ``centre``: principal point of the frame ``p`` was rasterised in (default: the image centre).
        """
        ys, xs = np.nonzero(mask)
        if len(ys) == 0:
            return
        fid = p.raster.face[ys, xs]
        bary = p.raster.bary[ys, xs].astype(np.float64)
        fv = self.faces[fid]  # (P, 3)
        albedo = np.einsum("pk,pkc->pc", bary, p.colours[fv])
        # Face normals of the drawn faces only: at ~1 pixel per face, flat shading looks smooth and
        # costs a fraction of per-vertex normals over the whole mesh.
        ufid, inv = np.unique(fid, return_inverse=True)
        tri = p.verts[self.faces[ufid]]
        fn = np.cross(tri[:, 1] - tri[:, 0], tri[:, 2] - tri[:, 0])
        fn /= np.maximum(np.sqrt((fn * fn).sum(1, keepdims=True)), 1e-12)
        n = fn[inv.reshape(-1)]
        f = self.config.focal
        c = self.config.res / 2 if centre is None else centre
        ray = np.stack([(xs - c) / f, (ys - c) / f, np.ones(len(xs))], 1)
        n *= -np.sign((n * ray).sum(1, keepdims=True) + 1e-12)  # face the camera whatever the winding
        img[ys, xs] = shade(albedo, n, rng)

    def _make_person(self, rng, verts, out_h, out_w, offset=(0.0, 0.0)) -> _Person:
        uv = self._project(verts) + np.asarray(offset)
        colours = outfit_vertex_colours(rng, self.rest_verts, self.part_labels)
        raster = rasterize(uv, verts[:, 2], self.faces, out_h, out_w, cull=self.cull)
        return _Person(verts, uv, colours, raster)

    # -- one sample ---------------------------------------------------------------------------

    def sample(self, index: int, seed: int) -> SynthSample:
        """Render image ``index`` of the dataset with master ``seed``."""
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), int(index)]))
        best, best_key = None, None
        for _ in range(self.config.max_attempts):
            s = self._attempt(rng)
            n_in = int(s.record["part_inimage"].sum())
            inv = 1.0 - s.record["part"][:, 2].mean()
            too_few = n_in < self.config.min_keypoints_in_image
            too_hidden = inv > self.preset.max_invisible + 1e-9
            if not (too_few or too_hidden):
                return s
            # If every attempt fails, keep the least bad one (still deterministic).
            key = (too_hidden, too_few, inv)
            if best_key is None or key < best_key:
                best, best_key = s, key
        assert best is not None
        return best

    def _attempt(self, rng: np.random.Generator) -> SynthSample:
        cfg, pre = self.config, self.preset
        res, f = cfg.res, cfg.focal
        elev = math.radians(float(np.clip(rng.normal(0, cfg.elevation_std_deg), -45, 45)))
        roll = math.radians(float(rng.normal(0, cfg.roll_std_deg)))
        # Rotating the scene about the camera's x axis by +elev brings the head (y < 0) closer:
        # a camera above the person looking down for positive elevation.
        r_cam = _rot("z", roll) @ _rot("x", elev)
        go, body_pose, betas, out = self._pose_person(rng, r_cam)
        verts0 = out.vertices[0].double().numpy()
        kp0 = self.body.keypoints(out, "spin24")[0, :, :3].double().numpy()
        coco0 = (self.body.keypoints(out, "coco17")[0, :, :3].double().numpy()
                 if "coco17" in self.body.keypoint_sets else None)
        low0 = self.body.lowres.vertices(out.vertices)[0].double().numpy()
        # Root joint: SMPL rotates about it, so moving the camera needs it to update `transl`.
        joint0 = out.joints[0, 0].double().numpy()

        # Place the person: long side of the box = fill * res, centred with jitter (+ truncation).
        lo, hi = verts0[:, :2].min(0), verts0[:, :2].max(0)
        size = float((hi - lo).max())
        tz = f * size / (res * rng.uniform(*cfg.fill))
        shift = rng.normal(0, cfg.centre_jitter, 2) * size
        truncated = rng.random() < pre.p_truncation
        if truncated:
            a = rng.uniform(0, 2 * math.pi)
            shift += np.array([math.cos(a), math.sin(a)]) * rng.uniform(0.2, 0.45) * res * tz / f
        transl = np.array([-(lo[0] + hi[0]) / 2 + shift[0], -(lo[1] + hi[1]) / 2 + shift[1], tz])
        # SMPL's transl is added after the global rotation, so the camera-frame mesh is verts0 + transl.
        verts = verts0 + transl
        target = self._make_person(rng, verts, res, res)
        t_mask = target.raster.face >= 0

        # Which occlusion events happen.
        if pre.exclusive:
            u = rng.random()
            do_object = u < pre.p_object
            do_person = not do_object and u < pre.p_object + pre.p_person
        else:
            do_object = rng.random() < pre.p_object
            do_person = rng.random() < pre.p_person
        coverage = rng.uniform(*pre.coverage) if (do_object or do_person) else 0.0

        img = background(rng, self.photos, res, cfg.photo_prob)[..., ::-1].astype(np.float32) / 255.0
        occ = np.zeros((res, res), np.uint8)
        person_mask = np.zeros((res, res), bool)
        self._shade_person(rng, target, t_mask, img)

        if do_person:
            person_mask = self._add_person(rng, r_cam, tz, t_mask, coverage, img)
            occ[person_mask] = OCC_PERSON
        visible = t_mask & ~person_mask
        if do_object:
            n_obj = int(rng.integers(1, 3))
            for _ in range(n_obj):
                cov_k = coverage / n_obj
                area_vis = visible.sum()
                # coverage is relative to the full silhouette; convert to the still-visible part.
                rel = min(0.95, cov_k * t_mask.sum() / max(area_vis, 1))
                m = place_occluder(rng, visible.astype(np.uint8), rel,
                                   shape=SHAPES[int(rng.integers(len(SHAPES)))]).astype(bool)
                tex = occluder_texture(rng, res, res, self.photos)[..., ::-1].astype(np.float32) / 255.0
                img[m] = tex[m]
                occ[m] = OCC_OBJECT
                visible &= ~m
        occluded_px = occ > 0

        # Part segmentation of visible target pixels: label of the vertex nearest in barycentric terms.
        partseg = np.zeros((res, res), np.uint8)
        ys, xs = np.nonzero(visible)
        if len(ys):
            fv = self.faces[target.raster.face[ys, xs]]
            corner = target.raster.bary[ys, xs].argmax(1)
            partseg[ys, xs] = 1 + self.part_labels[fv[np.arange(len(ys)), corner]]

        # Keypoints and their visibility.
        kp = kp0 + transl
        kp_uv = self._project(kp)
        vis, inimg = self._keypoint_visibility(kp_uv, kp[:, 2], target.raster, occluded_px)
        part = np.concatenate([kp_uv, vis[:, None].astype(np.float64)], 1)
        low = low0 + transl
        low_uv = self._project(low)
        low_vis = vertex_visibility(target.raster, low_uv, low[:, 2], tol=0.03)
        px = np.clip(np.rint(low_uv).astype(int), 0, res - 1)
        low_vis &= ~occluded_px[px[:, 1], px[:, 0]]

        # Camera noise: slight blur and sensor noise on the whole frame.
        out_img = (np.clip(img, 0, 1)[..., ::-1] * 255).astype(np.float32)
        sigma = rng.uniform(*cfg.blur_sigma)
        if sigma > 0.2:
            out_img = cv2.GaussianBlur(out_img, (0, 0), sigma)
        out_img += rng.standard_normal(out_img.shape, dtype=np.float32) * np.float32(rng.uniform(*cfg.noise_std))
        out_img = np.clip(np.rint(out_img), 0, 255).astype(np.uint8)

        occ_type = (OCC_OBJECT if do_object else 0) | (OCC_PERSON if do_person else 0)
        rec: dict[str, Any] = {
            "center": np.array([res / 2, res / 2]),
            "scale": res / 200.0,
            "part": part,
            "part_inimage": inimg,
            "pose": np.concatenate([go, body_pose]),
            "shape": np.asarray(betas, dtype=np.float64),
            "has_smpl": 1.0,
            "S": np.concatenate([kp, np.ones((24, 1))], 1),
            "cam_f": f,
            "transl": transl,
            "joint0": joint0,
            "lowres_uv": low_uv,
            "lowres_vis": low_vis,
            "occ_type": occ_type,
            "occ_fraction": 1.0 - visible.sum() / max(t_mask.sum(), 1),
            "truncated": truncated,
            "elevation_deg": math.degrees(elev),
        }
        if coco0 is not None:
            ck = coco0 + transl
            c_uv = self._project(ck)
            # coco17 is a subset/reordering of spin24 keypoints: inherit visibility by matching positions.
            cvis = np.array([vis[np.argmin(np.linalg.norm(kp - p, axis=1))]
                             if np.linalg.norm(kp - p, axis=1).min() < 1e-4 else
                             self._single_vis(u, p[2], target.raster, occluded_px)
                             for u, p in zip(c_uv, ck, strict=True)])
            rec["part_coco17"] = np.concatenate([c_uv, cvis[:, None].astype(np.float64)], 1)
        return SynthSample(out_img, partseg, occ, rec)

    def _single_vis(self, uv, z, raster, occluded_px) -> bool:
        return bool(vertex_visibility(raster, uv[None], np.array([z]), tol=0.03)[0]
                    and not occluded_px[int(np.clip(np.rint(uv[1]), 0, occluded_px.shape[0] - 1)),
                                        int(np.clip(np.rint(uv[0]), 0, occluded_px.shape[1] - 1))])

    def _keypoint_visibility(self, uv, z, raster: Raster, occluded_px):
        res = self.config.res
        px = np.rint(uv).astype(np.int64)
        inimg = (px[:, 0] >= 0) & (px[:, 0] < res) & (px[:, 1] >= 0) & (px[:, 1] < res)
        vis = np.zeros(len(uv), bool)
        for k in np.nonzero(inimg)[0]:
            x, y = px[k]
            fid = raster.face[y, x]
            if fid < 0 or occluded_px[y, x]:
                continue
            corner = raster.bary[y, x].argmax()
            part = self.part_labels[self.faces[fid, corner]]
            vis[k] = self.kp_allowed[k, part] and raster.depth[y, x] >= z[k] - self.kp_tol[k]
        return vis & self.kp_valid, inimg

    def _add_person(self, rng, r_cam, tz, t_mask, coverage, img) -> np.ndarray:
        """Render a second person in front whose silhouette hides ~``coverage`` of ``t_mask``."""
        cfg = self.config
        res = cfg.res
        _, _, _, out = self._pose_person(rng, r_cam)
        v0 = out.vertices[0].double().numpy()
        lo, hi = v0[:, :2].min(0), v0[:, :2].max(0)
        tz2 = tz - rng.uniform(*cfg.person_depth_gap)
        v = v0 + np.array([-(lo[0] + hi[0]) / 2, -(lo[1] + hi[1]) / 2 + rng.normal(0, 0.1), tz2])
        # Render once on a 3x canvas centred on the image, then slide it by whole pixels: an image-
        # plane shift of a body ~40 m away is a translation to well below a pixel's accuracy.
        pad = res
        occ = self._make_person(rng, v, 3 * res, 3 * res, offset=(pad, pad))
        sil = occ.raster.face >= 0
        area = max(int(t_mask.sum()), 1)
        ang = (0.0 if rng.random() < 0.5 else math.pi) + rng.normal(0, 0.35)
        d = np.array([math.cos(ang), math.sin(ang)])

        def window(r: float) -> tuple[int, int]:
            sx, sy = np.rint(d * r).astype(int)
            return int(sx), int(sy)

        def cov_at(r: float) -> float:
            sx, sy = window(r)
            m = sil[pad - sy:pad - sy + res, pad - sx:pad - sx + res]
            return (m & t_mask).sum() / area

        lo_r, hi_r = 0.0, float(res)
        if cov_at(0.0) <= coverage:
            r = 0.0
        else:
            for _ in range(12):  # coverage decreases as the occluder slides away
                mid = 0.5 * (lo_r + hi_r)
                if cov_at(mid) > coverage:
                    lo_r = mid
                else:
                    hi_r = mid
            r = hi_r
        sx, sy = window(r)
        sl = (slice(pad - sy, pad - sy + res), slice(pad - sx, pad - sx + res))
        shifted = Raster(occ.raster.face[sl], occ.raster.depth[sl], occ.raster.bary[sl])
        # The occluder stands >= 1 m in front, so it wins every pixel it covers.
        mask = shifted.face >= 0
        # Shade on the canvas frame: pixel (x, y) of the image is (x + pad - sx, y + pad - sy) there.
        canvas = np.zeros((3 * res, 3 * res, 3), np.float32)
        full = np.zeros((3 * res, 3 * res), bool)
        full[sl] = mask
        self._shade_person(rng, occ, full, canvas, centre=1.5 * res)
        img[mask] = canvas[sl][mask]
        return mask
