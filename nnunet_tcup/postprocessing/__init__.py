"""The paper's lesion-size/depth filter as an nnU-Net post-processing plugin.

Modules: ``lesion_filter`` (the filter, ``filter_lesions`` for postprocessing.pkl), ``probabilities`` (the paper's
class-probabilities-to-labels step), ``cache`` (exact per-component statistics for fast tuning), ``tuning`` (grid
search), ``nnunet_results`` (nnU-Net folders, pkl/json files), ``apply`` (pickle-free application), ``cli``
(``nnunet_tcup postprocess``), ``synthetic_predictions`` (procedural test cases). Kept import-free so that the CLI
starts fast.
"""
