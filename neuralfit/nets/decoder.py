"""U-Net-style decoder: from the backbone's stride-32 map back up to stride 4.

Each step upsamples by 2 (bilinear), concatenates the backbone's skip at that stride and mixes with
a 1x1 conv followed by a depthwise-separable 3x3 conv. Separable convs keep the stride-4 stage
cheap: at 224 px the map is 56 x 56, where a dense 3x3 conv of 64 channels alone would cost more
multiply-adds than the whole EfficientNet-lite0 trunk.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class SeparableBlock(nn.Module):
    """1x1 conv (cin -> cout) + BN + ReLU, then depthwise 3x3 + pointwise 1x1 + BN + ReLU."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.mix = nn.Sequential(nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))
        self.spatial = nn.Sequential(
            nn.Conv2d(cout, cout, 3, padding=1, groups=cout, bias=False),
            nn.Conv2d(cout, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.spatial(self.mix(x))


class UNetDecoder(nn.Module):
    """Decode skips at strides (2, 4, 8, 16, 32) to one map at stride 4.

    Args:
        skip_channels: channels of the backbone's maps at strides 2, 4, 8, 16, 32.
        channels: widths of the decoder at strides 32, 16, 8, 4 (four entries).

    ``forward(skips) -> (B, channels[-1], H/4, W/4)``.
    """

    def __init__(self, skip_channels: Sequence[int], channels: Sequence[int] = (128, 96, 64, 64)):
        super().__init__()
        if len(skip_channels) != 5 or len(channels) != 4:
            raise ValueError("UNetDecoder needs 5 skip widths (strides 2..32) and 4 decoder widths")
        c2, c4, c8, c16, c32 = skip_channels
        self.lateral = nn.Sequential(nn.Conv2d(c32, channels[0], 1, bias=False), nn.BatchNorm2d(channels[0]),
                                     nn.ReLU(inplace=True))
        self.up16 = SeparableBlock(channels[0] + c16, channels[1])
        self.up8 = SeparableBlock(channels[1] + c8, channels[2])
        self.up4 = SeparableBlock(channels[2] + c4, channels[3])
        self.out_channels = channels[3]

    @staticmethod
    def _up_cat(x: torch.Tensor, skip: torch.Tensor) -> torch.Tensor:
        # Upsample to the skip's exact size: odd input sizes give ceil-divided maps in the backbone.
        x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return torch.cat([x, skip], dim=1)

    def forward(self, skips: Sequence[torch.Tensor]) -> torch.Tensor:
        _, s4, s8, s16, s32 = skips
        x = self.lateral(s32)
        x = self.up16(self._up_cat(x, s16))
        x = self.up8(self._up_cat(x, s8))
        return self.up4(self._up_cat(x, s4))
