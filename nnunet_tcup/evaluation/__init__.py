"""BraTS 2023 lesion-wise evaluation: the official GLI/MEN/PED/SSA numbers, with cost growing with voxels plus
components.

Public API::

    evaluate_case(gt, pred, spacing, challenge="GLI") -> CaseEvaluation        # arrays, any axis order
    evaluate_files(gt_path, pred_path, challenge="GLI") -> CaseEvaluation      # one NIfTI pair
    evaluate_folders(gt_dir, pred_dir, challenge="GLI") -> results table       # folders (flat, labelsTs, BraTS tree)
    summarize(table), write_results(table, csv), plot_lesionwise(table, png)

Command line: ``nnunet_tcup evaluate``. Modules: :mod:`~.lesionwise` (result types, the case API),
:mod:`~.components` (masks, labelling, dilation, lesion merging and matching), :mod:`~.surface` (surfels, HD95),
:mod:`~.boxes` (bounding boxes), :mod:`~.scores` (official formulas), :mod:`~.validation` (argument checks),
:mod:`~.inputs` (layouts, pairing, label files), :mod:`~.folders` (folders, results files), :mod:`~.plotting`
(figure), :mod:`~.cli`.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

# Attributes are imported lazily (PEP 562) so that ``nnunet_tcup -h`` stays light.
_EXPORTS = {
    "CaseEvaluation": "nnunet_tcup.evaluation.lesionwise",
    "LesionResult": "nnunet_tcup.evaluation.lesionwise",
    "RegionEvaluation": "nnunet_tcup.evaluation.lesionwise",
    "evaluate_case": "nnunet_tcup.evaluation.lesionwise",
    "evaluate_files": "nnunet_tcup.evaluation.folders",
    "evaluate_folders": "nnunet_tcup.evaluation.folders",
    "summarize": "nnunet_tcup.evaluation.folders",
    "write_results": "nnunet_tcup.evaluation.folders",
    "plot_lesionwise": "nnunet_tcup.evaluation.plotting",
}
__all__ = sorted(_EXPORTS)

__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
