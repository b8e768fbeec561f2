"""The multi-task network: one forward pass gives everything the fitter reads from a crop.

::

    image (B, 3, R, R) -> backbone -> skips (strides 2..32) -> U-Net decoder -> (B, C, R/4, R/4)
                                                                        |-> features  (B, D, R/4, R/4), unit norm
                                                                        |-> part logits (B, 25, R/4, R/4)
                                                                        |-> heatmaps  (B, J, R/4, R/4)
                               -> pooled (B, P) -> iterative regressor -> rotmat (B, 24, 3, 3), betas, cam [s, tx, ty]

With ``regressor_input="keypoints"`` the regressor reads the heatmap head's decoded 2D keypoints
(B, J, 3) instead of the pooled vector: a lifting regressor, trainable without images by
``neuralfit train regressor`` (docs/network.md explains why the default network uses it).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from neuralfit.errors import NeuralfitError
from neuralfit.nets.backbone import IMAGE_NORMALISATION, build_backbone
from neuralfit.nets.decoder import UNetDecoder
from neuralfit.nets.heads import DenseHead, FeatureHead, SMPLRegressor, decode_heatmaps
from neuralfit.nets.rotations import matrix_to_axis_angle

#: Output stride of the dense heads (the seed's feature map is at stride 4).
STRIDE = 4


@dataclass
class NetConfig:
    """Architecture of :class:`MultiTaskNet`; defaults follow the seed (128-d features at stride 4).

    Attributes:
        backbone: ``"efficientnet-lite0"`` (bundled ImageNet weights) or ``"resnet50"`` (bring weights).
        pretrained: start the backbone from its bundled ImageNet weights (lite0 only).
        backbone_weights: optional path to a backbone state dict (overrides ``pretrained``).
        input_res: square crop size in pixels; fixed per checkpoint, a multiple of 32.
        feature_dim: D, the per-pixel feature size of the neural mesh model.
        num_parts: part classes including background (0 = background, 1 + SMPL part id).
        joint_set: keypoint set of the heatmap head, a name in ``body.keypoint_sets``.
        num_keypoints: J, the size of ``joint_set`` (checked against the body at load time).
        decoder_channels: decoder widths at strides 32, 16, 8, 4.
        head_channels: hidden width of each dense head.
        regressor_hidden / regressor_iterations / regressor_dropout: HMR's 1024 / 3 / 0.5.
        num_betas: shape coefficients regressed.
        regressor_input: ``"image"`` (HMR: the backbone's pooled features) or ``"keypoints"`` (the
            decoded heatmap keypoints, or keypoints passed to ``forward``; see :func:`keypoint_vector`).
    """

    backbone: str = "efficientnet-lite0"
    pretrained: bool = True
    backbone_weights: str | None = None
    input_res: int = 224
    feature_dim: int = 128
    num_parts: int = 25
    joint_set: str = "spin24"
    num_keypoints: int = 24
    decoder_channels: tuple[int, ...] = (128, 96, 64, 64)
    head_channels: int = 64
    regressor_hidden: int = 1024
    regressor_iterations: int = 3
    regressor_dropout: float = 0.5
    num_betas: int = 10
    regressor_input: str = "image"
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        if self.backbone not in IMAGE_NORMALISATION:
            raise NeuralfitError(f"NetConfig.backbone {self.backbone!r} is unknown; "
                                 f"expected one of {sorted(IMAGE_NORMALISATION)}")
        if self.input_res <= 0 or self.input_res % 32:
            raise NeuralfitError(f"NetConfig.input_res must be a positive multiple of 32, got {self.input_res}")
        if self.regressor_input not in ("image", "keypoints"):
            raise NeuralfitError(f"NetConfig.regressor_input must be 'image' or 'keypoints', got {self.regressor_input!r}")
        if self.feature_dim <= 0 or self.num_keypoints <= 0 or self.num_parts < 2:
            raise NeuralfitError("NetConfig needs feature_dim > 0, num_keypoints > 0 and num_parts >= 2")

    @property
    def image_mean(self) -> tuple[float, float, float]:
        return IMAGE_NORMALISATION[self.backbone][0]

    @property
    def image_std(self) -> tuple[float, float, float]:
        return IMAGE_NORMALISATION[self.backbone][1]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["decoder_channels"] = list(self.decoder_channels)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> NetConfig:
        known = {k: v for k, v in d.items() if k in cls.__dataclass_fields__}
        return cls(**known)


class MultiTaskNet(nn.Module):
    """Backbone + U-Net decoder + feature / part / keypoint heads + iterative SMPL regressor.

    ``forward(images)`` takes *normalised* images (see :meth:`normalise`) of shape (B, 3, H, W),
    H and W multiples of 32, and returns a dict:

    - ``features`` (B, D, H/4, W/4), unit norm along D
    - ``part_logits`` (B, num_parts, H/4, W/4)
    - ``heatmaps`` (B, J, H/4, W/4), target peak 1 at the keypoint
    - ``rotmat`` (B, 24, 3, 3) global orient + body pose, ``betas`` (B, num_betas), ``cam`` (B, 3)
      weak perspective [s, tx, ty], ``pose6d`` (B, 144)
    """

    def __init__(self, config: NetConfig | None = None):
        super().__init__()
        self.config = config = config or NetConfig()
        self.backbone = build_backbone(config.backbone, pretrained=config.pretrained, weights=config.backbone_weights)
        self.decoder = UNetDecoder(self.backbone.channels, config.decoder_channels)
        c = self.decoder.out_channels
        self.feature_head = FeatureHead(c, config.feature_dim, config.head_channels)
        self.part_head = DenseHead(c, config.num_parts, config.head_channels)
        self.keypoint_head = DenseHead(c, config.num_keypoints, config.head_channels)
        # Start the heatmaps near zero (the loss is then ~1 per keypoint) instead of at random O(1) maps.
        nn.init.normal_(self.keypoint_head.proj.weight, std=1e-3)
        nn.init.zeros_(self.keypoint_head.proj.bias)
        reg_in = self.backbone.pooled_channels if config.regressor_input == "image" else 3 * config.num_keypoints
        self.regressor = SMPLRegressor(reg_in, config.regressor_hidden,
                                       config.regressor_iterations, config.num_betas, config.regressor_dropout)
        self.register_buffer("image_mean", torch.tensor(config.image_mean).reshape(1, 3, 1, 1), persistent=False)
        self.register_buffer("image_std", torch.tensor(config.image_std).reshape(1, 3, 1, 1), persistent=False)

    @property
    def device(self) -> torch.device:
        return self.image_mean.device

    def normalise(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) RGB in [0, 1] -> the backbone's input scaling."""
        return (images - self.image_mean) / self.image_std

    def forward(self, images: torch.Tensor, keypoints: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """``keypoints`` (B, J, 3) crop pixels + confidence replace the heatmap keypoints as the input of a
        ``regressor_input="keypoints"`` regressor (e.g. a detector's keypoints); ignored otherwise."""
        if images.ndim != 4 or images.shape[1] != 3:
            raise NeuralfitError(f"network input must have shape (B, 3, H, W), got {tuple(images.shape)}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise NeuralfitError(f"network input size must be a multiple of 32, got {tuple(images.shape[-2:])}")
        skips, pooled = self.backbone(images)
        x = self.decoder(skips)
        out = {
            "features": self.feature_head(x),
            "part_logits": self.part_head(x),
            "heatmaps": self.keypoint_head(x),
        }
        if self.config.regressor_input == "keypoints":
            if keypoints is None:
                # The regressor learns from keypoints, not through the heatmaps: no gradient flows back.
                keypoints = decode_heatmaps(out["heatmaps"].detach(), STRIDE)
            out["regressor_keypoints"] = keypoints
            out.update(self.regressor(keypoint_vector(keypoints, images.shape[-1])))
        else:
            out.update(self.regressor(pooled))
        return out

    @torch.no_grad()
    def predict(self, crops: torch.Tensor | np.ndarray, focal: float | None = None,
                keypoints: torch.Tensor | np.ndarray | None = None) -> dict[str, Any]:
        """Observations of crops in the format the fitter consumes (see :func:`predict`)."""
        return predict(self, crops, focal=focal, keypoints=keypoints)


def keypoint_vector(keypoints: torch.Tensor, res: int) -> torch.Tensor:
    """(B, J, 3) crop pixels + confidence -> (B, 3J) input of a keypoint regressor.

    Coordinates are scaled to [-1, 1] over the crop (SPIN's normalisation) and multiplied by the
    confidence, so a missing keypoint (confidence 0) is all zeros whatever position it carries.
    """
    half = res / 2.0
    conf = keypoints[..., 2:3].clamp(0, 1)
    uv = (keypoints[..., :2] - half) / half * conf
    return torch.cat([uv, conf], dim=-1).flatten(1)


def _smpl_outputs(out: dict[str, torch.Tensor], camera: Any) -> dict[str, torch.Tensor]:
    """Regressor output -> axis-angle ``global_orient`` (B, 3), ``body_pose`` (B, 69), ``betas``, ``cam``, ``transl``."""
    b = out["rotmat"].shape[0]
    aa = matrix_to_axis_angle(out["rotmat"]).reshape(b, -1)
    return {"global_orient": aa[:, :3], "body_pose": aa[:, 3:], "betas": out["betas"], "cam": out["cam"],
            "transl": camera.transl_from_weak_perspective(out["cam"])}


@torch.no_grad()
def regress(net: MultiTaskNet, keypoints: torch.Tensor | np.ndarray, focal: float | None = None) -> dict[str, torch.Tensor]:
    """SMPL from 2D keypoints alone, with a ``regressor_input="keypoints"`` network's regressor.

    Args:
        keypoints: (B, J, 3) crop pixels + confidence in the network's joint set (confidence 0 = missing;
            :func:`neuralfit.body.keypoints.transfer_keypoints` converts other sets).
        focal: crop focal in pixels (default ``5000 R / 224``).

    Returns ``global_orient`` (B, 3), ``body_pose`` (B, 69), ``betas``, ``cam`` (B, 3), ``transl`` (B, 3).
    """
    from neuralfit.render.camera import CropCamera

    if net.config.regressor_input != "keypoints":
        raise NeuralfitError("this network's regressor reads image features, not keypoints")
    kp = torch.as_tensor(np.asarray(keypoints) if not torch.is_tensor(keypoints) else keypoints,
                         dtype=torch.float32, device=net.device)
    if kp.ndim != 3 or kp.shape[1:] != (net.config.num_keypoints, 3):
        raise NeuralfitError(f"keypoints for the regressor must have shape (B, {net.config.num_keypoints}, 3), "
                             f"got {tuple(kp.shape)}")
    net.eval()
    out = net.regressor(keypoint_vector(kp, net.config.input_res))
    return _smpl_outputs(out, CropCamera(net.config.input_res, focal))


def _as_image_batch(crops: torch.Tensor | np.ndarray, res: int, device: torch.device) -> torch.Tensor:
    """uint8 (B, R, R, 3) / (B, 3, R, R) or float [0, 1] (B, 3, R, R) -> float (B, 3, R, R) in [0, 1]."""
    x = torch.as_tensor(crops)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4:
        raise NeuralfitError(f"crops must be a batch of RGB images (B, 3, R, R) or (B, R, R, 3), got {tuple(x.shape)}")
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x = x.permute(0, 3, 1, 2)
    if x.shape[1] != 3 or tuple(x.shape[-2:]) != (res, res):
        raise NeuralfitError(f"crops must be RGB {res}x{res} (the checkpoint's input_res), got {tuple(x.shape)}")
    if x.dtype == torch.uint8:
        x = x.float() / 255.0
    return x.float().to(device)


def predict(net: MultiTaskNet, crops: torch.Tensor | np.ndarray, focal: float | None = None,
            keypoints: torch.Tensor | np.ndarray | None = None) -> dict[str, Any]:
    """Run the network on crops and return the observation dict the fitter consumes.

    Args:
        net: the network (switched to eval mode here).
        crops: RGB crops at ``net.config.input_res``: uint8 (B, R, R, 3) or float (B, 3, R, R) in [0, 1].
        focal: focal length in crop pixels for turning the weak-perspective camera into a translation;
            default ``5000 * R / 224`` (docs/architecture.md).
        keypoints: optional (B, J, 3) crop-pixel keypoints + confidence in the network's joint set that a
            keypoint regressor reads instead of its own heatmaps (ignored by an image regressor).

    Returns a dict of tensors on the network's device:
        ``features`` (B, D, R/4, R/4) unit norm; ``part_probs`` (B, num_parts, R/4, R/4) softmax;
        ``keypoints`` (B, J, 3) crop pixels (u, v) + confidence in [0, 1] for ``joint_set``;
        ``global_orient`` (B, 3), ``body_pose`` (B, 69) axis-angle; ``betas`` (B, num_betas);
        ``cam`` (B, 3) weak perspective [s, tx, ty]; ``transl`` (B, 3) = [tx, ty, 2 f / (R s)];
        plus ``joint_set`` (str), ``res`` (int), ``focal`` (float), ``stride`` (int).
    """
    from neuralfit.render.camera import CropCamera

    res = net.config.input_res
    x = _as_image_batch(crops, res, net.device)
    net.eval()
    kp = None if keypoints is None else torch.as_tensor(keypoints, dtype=torch.float32, device=net.device)
    if kp is not None and (kp.ndim != 3 or kp.shape[0] != x.shape[0] or kp.shape[1:] != (net.config.num_keypoints, 3)):
        raise NeuralfitError(f"keypoints for the regressor must have shape ({x.shape[0]}, {net.config.num_keypoints}, 3), "
                             f"got {tuple(kp.shape)}")
    with torch.no_grad():
        out = net(net.normalise(x), keypoints=kp)
    camera = CropCamera(res, focal)
    return {
        "features": out["features"],
        "part_probs": out["part_logits"].softmax(dim=1),
        "keypoints": decode_heatmaps(out["heatmaps"], STRIDE),
        **_smpl_outputs(out, camera),
        "joint_set": net.config.joint_set,
        "res": res,
        "focal": camera.f,
        "stride": STRIDE,
    }
