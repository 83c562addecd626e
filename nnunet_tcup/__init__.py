"""nnunet_tcup: TCuP-GAN (ConvLSTM U-Net generator + 3D PatchGAN) for BraTS 2023 as an nnU-Net v2 plugin."""

__version__ = "0.1.0"
