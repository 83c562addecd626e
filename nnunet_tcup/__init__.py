"""nnunet_tcup: TCuP-GAN (ConvLSTM U-Net generator + 3D PatchGAN) for BraTS 2023 as an nnU-Net v2 plugin.

The version below is the package's only version source (``pyproject.toml`` reads it). ``predict_cases`` /
``predict_case`` (segment BraTS cases with a trained model, :mod:`nnunet_tcup.prediction`) are imported on first use.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

__version__ = "0.2.0"

# Imported lazily (PEP 562) so that ``import nnunet_tcup`` (e.g. for ``nnunet_tcup -h``) stays light.
_EXPORTS = {
    "PredictionSummary": "nnunet_tcup.prediction.api",
    "predict_case": "nnunet_tcup.prediction.api",
    "predict_cases": "nnunet_tcup.prediction.api",
}
__all__ = ["__version__", *sorted(_EXPORTS)]


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
