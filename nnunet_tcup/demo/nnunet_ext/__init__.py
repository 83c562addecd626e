"""Re-export shim folder for the demo trainers (added to ``nnUNet_extTrainer`` by the demo for its subprocesses)."""

from __future__ import annotations

__all__: list[str] = []
