"""TCuP-GAN networks: ConvLSTM U-Net generator and 3D PatchGAN discriminator (usable without the trainer)."""
from .convlstm import ConvLSTM2d, ConvLSTMCell, convlstm_fast, convlstm_per_slice, lstm_pointwise
from .discriminator import InstanceNorm3dSafe, PatchDiscriminator3D
from .generator import PAPER_HIDDEN_CHANNELS, TCuPGenerator, init_weights

__all__ = [
    "ConvLSTM2d",
    "ConvLSTMCell",
    "InstanceNorm3dSafe",
    "PAPER_HIDDEN_CHANNELS",
    "PatchDiscriminator3D",
    "TCuPGenerator",
    "convlstm_fast",
    "convlstm_per_slice",
    "init_weights",
    "lstm_pointwise",
]
