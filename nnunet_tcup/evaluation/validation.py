"""Argument checks of the lesion-wise evaluation: parameters, voxel spacing, label arrays (ValueError, one line)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nnunet_tcup.challenges import EVALUATION_PARAMETERS, check_challenge

__all__ = ["check_iterations", "check_labels", "check_spacing", "resolve_parameters"]


def check_iterations(dilation_iterations: int) -> None:
    """Raise ValueError unless ``dilation_iterations`` is an integer >= 1 (scipy treats 0 as "until stable")."""
    ok = isinstance(dilation_iterations, (int, np.integer)) and not isinstance(dilation_iterations, bool)
    if not ok or dilation_iterations < 1:
        raise ValueError(f"dilation_iterations must be an integer >= 1, got {dilation_iterations!r}")


def resolve_parameters(
    challenge: str | None = None, dilation_iterations: int | None = None, volume_threshold_mm3: float | None = None
) -> tuple[int, float]:
    """(dilation_iterations, volume_threshold_mm3): the challenge's official values, each overridable explicitly.

    Without a challenge both explicit values are required.
    """
    if challenge is not None:
        params = EVALUATION_PARAMETERS[check_challenge(challenge)]
        if dilation_iterations is None:
            dilation_iterations = params.dilation_iterations
        if volume_threshold_mm3 is None:
            volume_threshold_mm3 = params.volume_threshold_mm3
    if dilation_iterations is None or volume_threshold_mm3 is None:
        raise ValueError("give a challenge (GLI, MEN, PED, SSA) or both dilation_iterations and volume_threshold_mm3")
    check_iterations(dilation_iterations)
    threshold = float(volume_threshold_mm3)
    if not np.isfinite(threshold) or threshold < 0:
        raise ValueError(f"volume_threshold_mm3 must be a finite number >= 0, got {volume_threshold_mm3!r}")
    return int(dilation_iterations), threshold


def check_spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    """Validate a 3D voxel spacing (mm, positive, finite) and return it as a float tuple."""
    try:
        values = tuple(float(s) for s in spacing)
    except (TypeError, ValueError):
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing!r}") from None
    if len(values) != 3 or not all(np.isfinite(v) and v > 0 for v in values):
        raise ValueError(f"spacing must be 3 positive numbers (mm), got {spacing!r}")
    return values[0], values[1], values[2]


def check_labels(labels: np.ndarray, name: str = "labels") -> np.ndarray:
    """Validate a 3D BraTS 2023 label array (integer values 0-3; integral floats accepted) and return it as is.

    Raises ValueError naming ``name`` and the offending values.
    """
    labels = np.asarray(labels)
    if labels.ndim != 3:
        raise ValueError(f"{name}: expected a 3D label array, got shape {labels.shape}")
    if labels.dtype == bool:
        return labels
    if not (np.issubdtype(labels.dtype, np.integer) or np.issubdtype(labels.dtype, np.floating)):
        raise ValueError(f"{name}: expected integer labels, got dtype {labels.dtype}")
    if labels.size == 0:
        raise ValueError(f"{name}: empty array of shape {labels.shape}")
    low, high = labels.min(), labels.max()
    bad = not (0 <= low and high <= 3)  # NaN compares False: caught here
    if not bad and np.issubdtype(labels.dtype, np.floating):
        bad = not np.all(np.isin(labels, (0, 1, 2, 3)))
    if bad:
        values = np.unique(labels)
        outside = values[~np.isin(values, (0, 1, 2, 3))]
        raise ValueError(
            f"{name}: labels must be 0-3 (BraTS 2023: 1 NETC, 2 SNFH, 3 ET); found "
            f"{', '.join(str(v) for v in outside[:10])}"
        )
    return labels
