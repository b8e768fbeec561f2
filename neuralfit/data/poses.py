"""Poses and shapes for synthetic images: mocap, the default pose prior, or a stand-in."""

from __future__ import annotations

import numpy as np
import torch

from neuralfit.errors import NeuralfitError


class PoseShapeSource:
    """Draws body poses (69,) and shapes (10,) for one image from its random stream.

    Poses come from ``neuralfit.priors.sample_poses`` with the mocap set and the default pose
    prior loaded once here; ``source="mixed"`` picks mocap or prior per image with probability 1/2
    (``sample_poses(1, source="mixed")`` would round its mocap share of one sample to zero). Assets
    that are missing are left out, and with neither a stand-in is used (mild random poses with bent
    knees/elbows and lowered arms); shapes come from ``ShapePrior`` (else betas ~ N(0, 1) clipped at
    2.5). :attr:`pose_source_used` / :attr:`shape_source_used` say what was used; generate_dataset
    records them in synth.json.
    """

    def __init__(self, source: str = "mixed"):
        if source not in ("mixed", "mocap", "prior", "standin"):
            raise NeuralfitError(f"pose source {source!r} unknown; expected mixed, mocap, prior or standin")
        self.source = source
        self._sample_poses = None
        self._mocap = None
        self._prior = None
        self._shape_prior = None
        if source != "standin":
            try:
                from neuralfit.priors import ShapePrior, load_mocap, load_pose_prior, sample_poses

                self._sample_poses = sample_poses
                self._shape_prior = ShapePrior()
                if source in ("mixed", "mocap"):
                    try:
                        self._mocap = load_mocap()
                    except NeuralfitError:
                        self._mocap = None
                if source in ("mixed", "prior"):
                    try:
                        self._prior = load_pose_prior("default")
                    except NeuralfitError:
                        self._prior = None
            except ImportError:
                pass
        kinds = [k for k, v in (("mocap", self._mocap), ("prior", self._prior)) if v is not None]
        self._kinds = kinds
        self.pose_source_used = "+".join(kinds) if kinds else "standin"
        self.shape_source_used = "ShapePrior" if self._shape_prior is not None else "standin"

    def pose(self, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**31 - 1))
        if self._kinds:
            kind = self._kinds[int(rng.integers(len(self._kinds)))]
            p = self._sample_poses(1, seed=seed, source=kind, prior=self._prior, mocap=self._mocap)
            return p.double().numpy().reshape(69)
        r = np.random.default_rng(seed)
        p = r.normal(0, 0.12, 69)

        def j(k: int) -> slice:  # SMPL joint k's slice in body_pose
            return slice(3 * (k - 1), 3 * k)

        p[j(4)][0] += r.uniform(0, 1.4)
        p[j(5)][0] += r.uniform(0, 1.4)  # knees bend about x
        p[j(1)][0] -= r.uniform(0, 1.0)
        p[j(2)][0] -= r.uniform(0, 1.0)  # hips flex forward
        p[j(16)][2] -= r.uniform(0.2, 1.3)
        p[j(17)][2] += r.uniform(0.2, 1.3)  # arms down from the T
        p[j(18)][1] -= r.uniform(0, 1.6)
        p[j(19)][1] += r.uniform(0, 1.6)  # elbows
        return p

    def shape(self, rng: np.random.Generator) -> np.ndarray:
        seed = int(rng.integers(2**31 - 1))
        if self._shape_prior is not None:
            with torch.no_grad():
                return self._shape_prior.sample(1, seed=seed).reshape(-1)[:10].double().numpy()
        return np.clip(np.random.default_rng(seed).normal(0, 1, 10), -2.5, 2.5)
