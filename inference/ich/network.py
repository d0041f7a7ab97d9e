"""The demo ICH network: a small 2-D U-Net whose encoder also classifies.

One encoder (four levels, stride 2 into each) feeds a feature-pyramid decoder (Lin et al.,
CVPR 2017) that gives one segmentation logit per haemorrhage subtype at half resolution,
upsampled bilinearly to the input (multi-label: subtypes may touch or overlap). The slab
classifier (one logit per ICH class) is a linear layer on the deepest features (global average
and max pooling). ``forward`` returns the class logits only and skips the decoder, so Grad-CAM
and callers that classify see a plain classifier; ``forward_all`` returns both.

(Feeding the classifier with the top segmentation logits too was tried: on the held-out family
it lowered the any-ICH AUC from 0.92 to 0.87, with subarachnoid false positives.)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class _Down(nn.Sequential):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__(_conv(cin, cout, stride=2), _conv(cout, cout))


class IchSegNet(nn.Module):
    """Classifier + segmenter; ``features`` are the channels of the four encoder levels (the
    first at half the input resolution), ``decoder`` the channels of the decoder."""

    def __init__(self, in_channels: int = 9, out_channels: int = 6, seg_channels: int = 5,
                 features: tuple[int, ...] | list[int] = (16, 32, 64, 128), decoder: int = 24,
                 dropout: float = 0.2) -> None:
        super().__init__()
        f = list(features)
        if len(f) != 4:
            raise ValueError("IchSegNet needs four feature sizes")
        self.enc0 = nn.Sequential(_conv(in_channels, f[0], stride=2), _conv(f[0], f[0]))
        self.enc1 = _Down(f[0], f[1])
        self.enc2 = _Down(f[1], f[2])
        self.enc3 = _Down(f[2], f[3])
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(2 * f[3], out_channels)
        # feature-pyramid decoder: 1x1 lateral projections, upsample-and-add, one 3x3 per level
        self.lateral = nn.ModuleList([nn.Conv2d(c, decoder, 1) for c in f])
        self.smooth = nn.ModuleList([_conv(decoder, decoder) for _ in f[:-1]])
        self.seg = nn.Conv2d(decoder, seg_channels, 1)

    def _encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        return [e0, e1, e2, self.enc3(e2)]

    def _classify(self, deep: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([deep.mean(dim=(2, 3)), deep.amax(dim=(2, 3))], dim=1)
        return self.classifier(self.dropout(pooled))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits (N, out_channels)."""
        return self._classify(self._encode(x)[-1])

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Class logits (N, out_channels) and segmentation logits (N, seg_channels, H, W)."""
        feats = self._encode(x)
        d = self.lateral[-1](feats[-1])
        for level in range(len(feats) - 2, -1, -1):
            up = F.interpolate(d, size=feats[level].shape[-2:], mode="bilinear",
                               align_corners=False)
            d = self.smooth[level](up + self.lateral[level](feats[level]))
        seg = F.interpolate(self.seg(d), size=x.shape[-2:], mode="bilinear",
                            align_corners=False)
        return self._classify(feats[-1]), seg
