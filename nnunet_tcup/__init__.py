"""nnunet_tcup: TCuP-GAN (ConvLSTM U-Net generator + 3D PatchGAN) for BraTS 2023 as an nnU-Net v2 plugin.

The version below is the package's only version source (``pyproject.toml`` reads it).
"""

from __future__ import annotations

__all__ = ["__version__"]

__version__ = "0.2.0"
