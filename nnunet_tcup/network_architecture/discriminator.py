"""TCuP-GAN discriminator: a 3D PatchGAN that scores image+mask patches slice by slice.

Input ``cat(image, mask)`` along channels, ``(B, C_img + C_mask, D, H, W)`` (D = slice axis). Four blocks of
``Conv3d(kernel (1, 3, 3), stride (1, 2, 2), padding (0, 1, 1)) -> InstanceNorm3d(affine) -> Tanh -> Dropout``
(filters 16, 32, 64, 128 by default) and a final ``Conv3d(kernel (1, 3, 3), padding (0, 1, 1))`` to one channel.
Output: logits ``(B, 1, D, h, w)`` with ``h = ceil(H / 16)``, ``w = ceil(W / 16)`` for four blocks: one patch-score
map per slice (no sigmoid; use ``BCEWithLogits``). The kernels never mix slices, so the depth is kept.
"""
from __future__ import annotations

from typing import Sequence, Tuple

from torch import Tensor, nn


class InstanceNorm3dSafe(nn.InstanceNorm3d):
    """``nn.InstanceNorm3d`` that also accepts one voxel per (sample, channel) in training.

    A single value normalises to 0, so the output is the affine bias (torch raises instead).
    """

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() == 5 and x.shape[2] * x.shape[3] * x.shape[4] == 1:
            out = x * 0
            if self.affine:  # (weight * 0 keeps every parameter in the graph)
                out = out * self.weight.view(1, -1, 1, 1, 1) + self.bias.view(1, -1, 1, 1, 1)
            return out
        return super().forward(x)


def _validate(input_channels: int, features: Sequence[int], dropout: float) -> Tuple[int, ...]:
    if isinstance(input_channels, bool) or not isinstance(input_channels, int) or input_channels <= 0:
        raise ValueError(f"PatchDiscriminator3D: input_channels must be a positive int, got {input_channels!r}")
    try:
        widths = tuple(features)
    except TypeError:
        raise ValueError(f"PatchDiscriminator3D: features must be a sequence of positive ints, "
                         f"got {features!r}") from None
    if len(widths) == 0:
        raise ValueError("PatchDiscriminator3D: features must name at least one block, got an empty sequence")
    bad = [w for w in widths if isinstance(w, bool) or not isinstance(w, int) or w <= 0]
    if bad:
        raise ValueError(f"PatchDiscriminator3D: features must be positive ints, got {widths!r} (bad: {bad!r})")
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0.0 <= dropout < 1.0:
        raise ValueError(f"PatchDiscriminator3D: dropout must be a probability in [0, 1), got {dropout!r}")
    return widths


class PatchDiscriminator3D(nn.Module):
    """3D PatchGAN discriminator (see the module docstring).

    input_channels: channels of ``cat(image, mask)``; features: filters per downsampling block;
    dropout: drop probability after each block's Tanh.
    """

    def __init__(self, input_channels: int, features: Sequence[int] = (16, 32, 64, 128),
                 dropout: float = 0.2) -> None:
        super().__init__()
        widths = _validate(input_channels, features, dropout)
        self.input_channels = input_channels
        layers = []
        prev = input_channels
        for width in widths:
            layers += [
                nn.Conv3d(prev, width, kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1)),
                InstanceNorm3dSafe(width, affine=True),
                nn.Tanh(),
                nn.Dropout(dropout),
            ]
            prev = width
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Conv3d(prev, 1, kernel_size=(1, 3, 3), padding=(0, 1, 1))
        for module in self.modules():
            if isinstance(module, nn.Conv3d):
                nn.init.normal_(module.weight, 0.0, 0.02)
                nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, C, D, H, W)`` = cat(image, mask) -> logits ``(B, 1, D, h, w)``."""
        if x.dim() != 5:
            raise ValueError(f"PatchDiscriminator3D expects a 5D input (B, C, D, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.input_channels:
            raise ValueError(f"PatchDiscriminator3D expects {self.input_channels} channels (image + mask) in dim 1, "
                             f"got shape {tuple(x.shape)}")
        return self.head(self.blocks(x))
