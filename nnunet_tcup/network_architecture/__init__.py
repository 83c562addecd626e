"""TCuP-GAN networks: ConvLSTM U-Net generator and 3D PatchGAN discriminator (usable without the trainer).

Modules: :mod:`.convlstm` (the ConvLSTM layer and its three interchangeable implementations),
:mod:`._fused_recurrence` / :mod:`._fast_recurrence` (the hand-written time loops; :mod:`._inference_recurrence` the
fused layer's loop without autograd), :mod:`.generator`,
:mod:`.discriminator`, :mod:`.cuda_graphs` (graph replay at inference), :mod:`._validation` (the one place where
constructor arguments are checked).
"""

from __future__ import annotations

from .convlstm import (
    IMPLEMENTATIONS,
    ConvLSTM2d,
    ConvLSTMCell,
    convlstm_fast,
    convlstm_fused,
    convlstm_per_slice,
    lstm_pointwise,
)
from .cuda_graphs import GraphCache
from .discriminator import InstanceNorm3dSafe, PatchDiscriminator3D
from .generator import PAPER_HIDDEN_CHANNELS, TCuPGenerator, init_weights

__all__ = [
    "IMPLEMENTATIONS",
    "PAPER_HIDDEN_CHANNELS",
    "ConvLSTM2d",
    "ConvLSTMCell",
    "GraphCache",
    "InstanceNorm3dSafe",
    "PatchDiscriminator3D",
    "TCuPGenerator",
    "convlstm_fast",
    "convlstm_fused",
    "convlstm_per_slice",
    "init_weights",
    "lstm_pointwise",
]
