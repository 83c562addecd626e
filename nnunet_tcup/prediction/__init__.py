"""Segment BraTS cases with a trained model (``nnunet_tcup predict``).

Public API::

    predict_cases(input_dir, output_dir, model_folder, folds=None, *, checkpoint="checkpoint_final.pth",
                  device="auto", use_mirroring=True, postprocessing=True, num_workers=None, progress=True,
                  num_parts=1, part_id=0) -> PredictionSummary
    predict_case(*, t1n, t1c, t2w, t2f, output_file, model_folder, folds=None, case_id=None, ...) -> PredictionSummary

Modules: :mod:`.api` (the steps), :mod:`.model` (model folder, folds, channel order, tuned post-processing),
:mod:`.cases` (finding, validating and staging the inputs), :mod:`.cli`.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

_EXPORTS = {
    "PredictionSummary": "nnunet_tcup.prediction.api",
    "predict_case": "nnunet_tcup.prediction.api",
    "predict_cases": "nnunet_tcup.prediction.api",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
