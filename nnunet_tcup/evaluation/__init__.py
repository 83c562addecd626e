"""BraTS 2023 lesion-wise evaluation: the official GLI/MEN/PED/SSA numbers, computed in cropped boxes.

Main entry points (imported lazily so that ``import nnunet_tcup.evaluation`` stays light):
``evaluate_case`` (arrays), ``evaluate_files``, ``evaluate_folders``, ``summarize``, ``plot_lesionwise``.
Primitives for other code live in :mod:`nnunet_tcup.evaluation.lesionwise`.
"""
from __future__ import annotations

from typing import Any

_EXPORTS = {
    "evaluate_case": "lesionwise", "CaseEvaluation": "lesionwise", "RegionEvaluation": "lesionwise",
    "LesionResult": "lesionwise", "evaluate_files": "folders", "evaluate_folders": "folders",
    "summarize": "folders", "write_results": "folders", "plot_lesionwise": "plotting",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
