"""``nnunet_tcup demo``: the whole BraTS workflow on synthetic data with the stock nnU-Net commands, and a report.

Modules: :mod:`~nnunet_tcup.demo.config` (presets and settings), :mod:`~nnunet_tcup.demo.steps` (the commands),
:mod:`~nnunet_tcup.demo.layout` (the work folder's paths), :mod:`~nnunet_tcup.demo.pipeline` (resumable step
runner with logs, timings and memory), :mod:`~nnunet_tcup.demo.report` (report.md, overlays),
:mod:`~nnunet_tcup.demo.results` (reading the evaluate CSVs),
:mod:`~nnunet_tcup.demo.pp_check` (the post-processing check: filter kept or not, held-out before/after), :mod:`~nnunet_tcup.demo.trainers` (budget-controlled
trainers found by nnU-Net through the shim in ``nnunet_ext``), :mod:`~nnunet_tcup.demo.cli` (the sub-command).
"""

from __future__ import annotations

__all__: list[str] = []
