"""TCuP-GAN discriminator: a 3D PatchGAN that scores image+mask patches slice by slice.

Input ``cat(image, mask)`` along channels, ``(B, C_img + C_mask, D, H, W)`` (D = slice axis). Four blocks of
``Conv3d(kernel (1, 3, 3), stride (1, 2, 2), padding (0, 1, 1)) -> InstanceNorm3d(affine) -> Tanh -> Dropout``
(filters 16, 32, 64, 128 by default) and a final ``Conv3d(kernel (1, 3, 3), padding (0, 1, 1))`` to one channel.
Output: logits ``(B, 1, D, h, w)`` with ``h = ceil(H / 16)``, ``w = ceil(W / 16)`` for four blocks: one patch-score
map per slice (no sigmoid; use ``BCEWithLogits``). The kernels never mix slices, so the depth is kept.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from ._validation import positive_int, positive_int_sequence, probability


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


class PatchDiscriminator3D(nn.Module):
    """3D PatchGAN discriminator (see the module docstring).

    input_channels: channels of ``cat(image, mask)``; features: filters per downsampling block;
    dropout: drop probability after each block's Tanh.
    """

    def __init__(self, input_channels: int, features: Sequence[int] = (16, 32, 64, 128), dropout: float = 0.2) -> None:
        super().__init__()
        owner = "PatchDiscriminator3D"
        self.input_channels = positive_int(owner, "input_channels", input_channels)
        widths = positive_int_sequence(owner, "features", features)
        dropout = probability(owner, "dropout", dropout)
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
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, x: Tensor) -> Tensor:
        """x: ``(B, C, D, H, W)`` = cat(image, mask) -> logits ``(B, 1, D, h, w)``."""
        if x.dim() != 5:
            raise ValueError(f"PatchDiscriminator3D expects a 5D input (B, C, D, H, W), got shape {tuple(x.shape)}")
        if x.shape[1] != self.input_channels:
            raise ValueError(
                f"PatchDiscriminator3D expects {self.input_channels} channels (image + mask) in dim 1, "
                f"got shape {tuple(x.shape)}"
            )
        return self.head(self.blocks(x))
