"""``nnunet_tcup demo``: the whole BraTS workflow on synthetic data with the stock nnU-Net commands, and a report.

Modules: :mod:`~nnunet_tcup.demo.config` (presets and settings), :mod:`~nnunet_tcup.demo.steps` (the commands),
:mod:`~nnunet_tcup.demo.pipeline` (resumable step runner with logs, timings and memory),
:mod:`~nnunet_tcup.demo.report` (report.md, overlays), :mod:`~nnunet_tcup.demo.trainers` (budget-controlled
trainers found by nnU-Net through the shim in ``nnunet_ext``), :mod:`~nnunet_tcup.demo.cli` (the sub-command).
"""
