"""Human-in-the-loop review: which cases, lesions and slices a person should check first, from the disagreement
of the cross-validation folds (``nnunet_tcup review``).

Entry points: :func:`run_review` (per-fold prediction folders -> review folder) and :func:`predict_folds` (run
nnU-Net's predictor once per fold with probabilities). Definitions: :mod:`nnunet_tcup.review.uncertainty` and
:mod:`nnunet_tcup.review.lesions`. Imported lazily: ``import nnunet_tcup.review`` stays light.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

_EXPORTS = {
    "run_review": "nnunet_tcup.review.core",
    "ReviewResult": "nnunet_tcup.review.core",
    "predict_folds": "nnunet_tcup.review.predict",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
