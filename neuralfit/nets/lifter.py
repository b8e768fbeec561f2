"""A 2D-to-3D keypoint lifter: detector keypoints of one person -> metric 3D BlazePose-33 landmarks.

The network is Martinez et al.'s "simple yet effective baseline" (2017): a linear layer, residual blocks
of two (linear, batch norm, ReLU, dropout) layers, a linear output. It reads the spin24 keypoints a
detector's joints transfer to (``neuralfit.body.keypoints.transfer_keypoints``; missing ones have
confidence 0) and predicts the *body's* BlazePose-33 keypoints in metres, in the frame of mediapipe's
``pose_world_landmarks``: origin at the midpoint of the two hip keypoints, the crop camera's axes (x right,
y down, z away from the camera). So its output goes through the same inverse kinematics as mediapipe's 3D
(:func:`neuralfit.init.fit_world_landmarks`) and can be averaged with it.

The input is normalised by the person itself (centre and long side of the box of the keypoints it has),
so any crop convention, or none, works: pixels of the photo, of a crop, or a keypoint file. With
``use_focal`` it also reads how far away the person is in units of their own size, ``log(focal / box)``
(focal in the keypoints' pixels): close to a wide lens the 2D layout is foreshortened differently than
far from a long one, and only this tells the two apart.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

#: Names of the 33 output landmarks (mediapipe's order), used for left/right mirroring.
_SIDES = ("left_", "right_")


@dataclass
class LifterConfig:
    """Architecture of :class:`KeypointLifter` (Martinez et al.'s width, depth and dropout).

    ``in_set`` names the body keypoint set the input is transferred to, ``in_names`` / ``out_names`` its
    and the output's keypoint names (stored so a checkpoint is self-describing).

    ``max_input_confidence``: :meth:`KeypointLifter.lift` reads a detector's confidences above this as this.
    The lifter learns confidence as a noise level (training noise ~ 1 / confidence), but a real detector's
    keypoints are off the body's by more than its near-1 visibilities say (other keypoint definitions,
    proportions, clothing); read at face value they made the lifter trust them too literally (on the real
    multi-view benchmark: shoulders a quarter too narrow, limb PA-MPJPE 81 mm). 0.3, chosen there over
    1 / 0.7 / 0.6 / 0.5 / 0.4 / 0.3 / 0.2 / 0.15 (docs/network.md, "confidences"); 1 = off.
    """

    in_set: str = "spin24"
    in_names: tuple[str, ...] = ()
    out_names: tuple[str, ...] = ()
    hidden: int = 1024
    blocks: int = 2
    dropout: float = 0.25
    use_focal: bool = True
    max_input_confidence: float = 0.3

    def to_dict(self) -> dict:
        return asdict(self)


def _mirror_perm(names: tuple[str, ...]) -> list[int]:
    perm = list(range(len(names)))
    for i, nm in enumerate(names):
        for a, b in (_SIDES, _SIDES[::-1]):
            if nm.startswith(a) and b + nm[len(a):] in names:
                perm[i] = names.index(b + nm[len(a):])
    return perm


#: Typical ``focal / box`` (a person 2-10 m away fills a box of ~1.2 x their height): the focal feature is
#: ``log(focal / box) - log(_TYPICAL_FOCAL_RATIO)``, ~0 for an average photo.
_TYPICAL_FOCAL_RATIO = 3.0


def box_scale(kp: torch.Tensor) -> torch.Tensor:
    """(B,) long side of the box of the keypoints with confidence > 0 (pixels; 1 when there are none)."""
    ok = kp[..., 2] > 0
    big = torch.tensor(1e9, dtype=kp.dtype, device=kp.device)
    lo = torch.where(ok[..., None], kp[..., :2], big).amin(1)
    hi = torch.where(ok[..., None], kp[..., :2], -big).amax(1)
    return torch.where(ok.any(1), (hi - lo).amax(-1), torch.ones_like(lo[:, 0])).clamp(min=1e-3)


def normalise_keypoints(kp: torch.Tensor) -> torch.Tensor:
    """(B, J, 3) pixels + confidence -> (B, J, 3): centred on the box of the keypoints with confidence > 0
    and divided by its long side; missing keypoints are all zero."""
    ok = kp[..., 2] > 0
    big = torch.tensor(1e9, dtype=kp.dtype, device=kp.device)
    lo = torch.where(ok[..., None], kp[..., :2], big).amin(1)
    hi = torch.where(ok[..., None], kp[..., :2], -big).amax(1)
    any_ok = ok.any(1, keepdim=True)
    lo, hi = torch.where(any_ok, lo, torch.zeros_like(lo)), torch.where(any_ok, hi, torch.ones_like(hi))
    scale = (hi - lo).amax(-1).clamp(min=1e-3)
    uv = (kp[..., :2] - ((lo + hi) / 2)[:, None]) / scale[:, None, None]
    uv = torch.where(ok[..., None], uv, torch.zeros_like(uv))
    return torch.cat([uv, kp[..., 2:3].clamp(0, 1) * ok[..., None]], -1)


class _Block(nn.Module):
    def __init__(self, width: int, dropout: float):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(width, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True), nn.Dropout(dropout),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.net(x)


class KeypointLifter(nn.Module):
    """(B, J_in, 3) keypoints (pixels + confidence) -> (B, 33, 3) metric landmarks (module doc)."""

    def __init__(self, config: LifterConfig):
        super().__init__()
        if not config.in_names or not config.out_names:
            raise ValueError("LifterConfig needs in_names and out_names")
        self.config = config
        j_in, j_out, w = len(config.in_names), len(config.out_names), config.hidden
        self.inp = nn.Sequential(nn.Linear(3 * j_in + int(config.use_focal), w), nn.BatchNorm1d(w), nn.ReLU(inplace=True),
                                 nn.Dropout(config.dropout))
        self.blocks = nn.Sequential(*[_Block(w, config.dropout) for _ in range(config.blocks)])
        self.out = nn.Linear(w, 3 * j_out)
        self.register_buffer("in_mirror", torch.tensor(_mirror_perm(config.in_names)), persistent=False)
        self.register_buffer("out_mirror", torch.tensor(_mirror_perm(config.out_names)), persistent=False)

    def forward(self, keypoints: torch.Tensor, focal: torch.Tensor | None = None) -> torch.Tensor:
        """(B, J_in, 3) keypoints, optional (B,) focal in the same pixels (None: a typical photo's)."""
        x = normalise_keypoints(keypoints).flatten(1)
        if self.config.use_focal:
            if focal is None:
                feat = torch.zeros(len(x), 1, dtype=x.dtype, device=x.device)
            else:
                ratio = focal.to(x).reshape(-1) / box_scale(keypoints)
                feat = (ratio.clamp(min=1e-3).log() - math.log(_TYPICAL_FOCAL_RATIO))[:, None]
            x = torch.cat([x, feat], 1)
        return self.out(self.blocks(self.inp(x))).reshape(len(keypoints), -1, 3)

    @torch.no_grad()
    def lift(self, keypoints: torch.Tensor, focal: torch.Tensor | None = None, flip: bool = True) -> torch.Tensor:
        """Evaluation-mode prediction, averaged with the prediction on the mirrored keypoints (sides
        exchanged, x negated back) when ``flip``: (B, J_in, 3) -> (B, 33, 3)."""
        was = self.training
        self.eval()
        keypoints = keypoints.clone()
        keypoints[..., 2] = keypoints[..., 2].clamp(max=self.config.max_input_confidence)
        out = self(keypoints, focal)
        if flip:
            m = keypoints[:, self.in_mirror].clone()
            m[..., 0] = -m[..., 0]
            o = self(m, focal)[:, self.out_mirror]
            o[..., 0] = -o[..., 0]
            out = 0.5 * (out + o)
        self.train(was)
        return out


def save_lifter(model: KeypointLifter, path, info: dict | None = None, half: bool = True) -> None:
    """Write ``{"config", "state", "info"}`` (float16 weights when ``half``) atomically."""
    import os

    state = {k: (v.half() if half and v.is_floating_point() else v) for k, v in model.state_dict().items()}
    tmp = f"{path}.tmp"
    torch.save({"kind": "keypoint_lifter", "config": model.config.to_dict(), "state": state, "info": info or {}}, tmp)
    os.replace(tmp, path)


def is_lifter_checkpoint(path) -> bool:
    """True when ``path`` holds a :func:`save_lifter` checkpoint (not a network)."""
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - anything unreadable is "not a lifter"; the loader says why
        return False
    return isinstance(ck, dict) and ck.get("kind") == "keypoint_lifter"


def load_lifter(path, device: str | torch.device = "cpu") -> KeypointLifter:
    """A :class:`KeypointLifter` from :func:`save_lifter`'s file, in evaluation mode."""
    from pathlib import Path

    from neuralfit.errors import NeuralfitError

    if not Path(path).is_file():
        raise NeuralfitError(f"lifter checkpoint {path} does not exist")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - torch's messages span many lines; the type is enough for one
        raise NeuralfitError(f"cannot read the lifter {path}: expected a `neuralfit train lifter` file "
                             f"({type(e).__name__})") from e
    if not isinstance(ck, dict) or ck.get("kind") != "keypoint_lifter" or not isinstance(ck.get("config"), dict) \
            or not isinstance(ck.get("state"), dict):
        raise NeuralfitError(f"{path} is not a keypoint lifter checkpoint (neuralfit train lifter writes one)")
    cfg = {"use_focal": False, **ck["config"]}  # the first lifters read no focal
    model = KeypointLifter(LifterConfig(**{**cfg, "in_names": tuple(cfg["in_names"]),
                                           "out_names": tuple(cfg["out_names"])}))
    model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in ck["state"].items()})
    model.info = ck.get("info", {})
    return model.to(device).eval()
