"""The paper's lesion-size/depth filter as an nnU-Net post-processing plugin, tuned so that it generalises.

Public API::

    filter_lesions(seg_zyx, wt_threshold, tc_threshold, et_threshold, min_slices=5) -> filtered copy
    FilterParameters, IDENTITY, preset_parameters(challenge)
    tune(pairs, challenge, grid_name="paper") -> report dict (what postprocessing.json holds)
    apply_to_folder(input_folder, output_folder, params) -> written files (all or nothing)
    probabilities_to_labels(probabilities) -> label map (the paper's probability step)

Command line: ``nnunet_tcup postprocess {preset,tune,apply}``. Modules: :mod:`~.lesion_filter` (the filter),
:mod:`~.probabilities`, :mod:`~.cache` (exact per-component statistics for fast tuning), :mod:`~.tuning` (grids,
scoring, the tune report), :mod:`~.selection` (one-standard-error selection, leave-one-case-out estimate, keep
rule), :mod:`~.nnunet_results` (nnU-Net folders, pkl/json files), :mod:`~.apply` (pickle-free application),
:mod:`~.cli`.
"""

from __future__ import annotations

from nnunet_tcup._lazy_exports import lazy_exports

# Attributes are imported lazily (PEP 562) so that ``nnunet_tcup -h`` stays light.
_EXPORTS = {
    "FilterParameters": "nnunet_tcup.postprocessing.lesion_filter",
    "IDENTITY": "nnunet_tcup.postprocessing.lesion_filter",
    "filter_lesions": "nnunet_tcup.postprocessing.lesion_filter",
    "preset_parameters": "nnunet_tcup.postprocessing.lesion_filter",
    "probabilities_to_labels": "nnunet_tcup.postprocessing.probabilities",
    "tune": "nnunet_tcup.postprocessing.tuning",
    "apply_to_folder": "nnunet_tcup.postprocessing.apply",
}
__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
