"""The paper's lesion-size/depth filter (TCuP-GAN, section 5.2) as an nnU-Net post-processing function.

Definition (used by ``filter_lesions``, by the tuning cache and by ``nnunet_tcup postprocess apply``):
the input is a label map in nnU-Net array order ``(z, y, x)`` with the BraTS 2023 labels 0 (background),
1 (NETC), 2 (SNFH), 3 (ET); ``z`` is the slice (depth) axis. For each region in the order WT (1, 2, 3),
TC (1, 3), ET (3), the region's 3D components (cc3d, 26-connectivity) in the map filtered so far are labelled and a
component is kept if and only if

    voxels / slices > A_region   and   slices >= min_slices

where ``slices`` is the number of distinct z slices the component occupies (its mean area per slice is in voxels,
not mm^2). A removed WT component becomes 0, a removed TC component becomes 2 (stays edema, so WT is unchanged),
a removed ET component becomes 1 (stays core, so TC is unchanged).

A 26-connected component occupies a contiguous run of z slices (neighbours differ by at most one slice), so its
slice count is the z extent of its bounding box.

``filter_lesions`` is a module-level function taking plain-number keyword arguments so that nnU-Net's
``postprocessing.pkl`` format ``([filter_lesions], [kwargs])`` is applied by the stock
``nnUNetv2_apply_postprocessing``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

#: Regions in filter order with their labels and the label a removed component's voxels get.
FILTER_REGIONS: tuple[tuple[str, tuple[int, ...], int], ...] = (
    ("WT", (1, 2, 3), 0),
    ("TC", (1, 3), 2),
    ("ET", (3,), 1),
)
#: Keyword argument names of :func:`filter_lesions`, per region.
THRESHOLD_KWARGS: dict[str, str] = {"WT": "wt_threshold", "TC": "tc_threshold", "ET": "et_threshold"}
DEFAULT_MIN_SLICES = 5


def check_threshold(value, name: str) -> float:
    """Return ``value`` as a float if it is a finite, non-negative real number; raise ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a non-negative number (mean voxels per slice), got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite non-negative number (mean voxels per slice), got {value!r}")
    return value


def check_min_slices(value, name: str = "min_slices") -> int:
    """Return ``value`` as an int if it is a whole number >= 1; raise ValueError otherwise."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a whole number >= 1 (slices), got {value!r}")
    number = float(value)
    if not math.isfinite(number) or number != math.floor(number) or number < 1:
        raise ValueError(f"{name} must be a whole number >= 1 (slices), got {value!r}")
    return int(number)


@dataclass(frozen=True)
class FilterParameters:
    """Thresholds of the filter: minimum mean area per slice (voxels, strict ``>``) per region, minimum slices."""

    wt_threshold: float
    tc_threshold: float
    et_threshold: float
    min_slices: int = DEFAULT_MIN_SLICES

    def __post_init__(self) -> None:
        for name in ("wt_threshold", "tc_threshold", "et_threshold"):
            object.__setattr__(self, name, check_threshold(getattr(self, name), name))
        object.__setattr__(self, "min_slices", check_min_slices(self.min_slices))

    def threshold(self, region: str) -> float:
        """Threshold of ``region`` ('WT', 'TC' or 'ET')."""
        return getattr(self, THRESHOLD_KWARGS[region])

    def as_kwargs(self) -> dict[str, float]:
        """Keyword arguments of :func:`filter_lesions` as plain Python numbers (what postprocessing.pkl stores)."""
        return {
            "wt_threshold": float(self.wt_threshold),
            "tc_threshold": float(self.tc_threshold),
            "et_threshold": float(self.et_threshold),
            "min_slices": int(self.min_slices),
        }

    @property
    def is_identity(self) -> bool:
        """True when the filter keeps every component (no threshold, 1 slice): it changes nothing."""
        return (self.wt_threshold, self.tc_threshold, self.et_threshold, self.min_slices) == (0.0, 0.0, 0.0, 1)

    @classmethod
    def from_kwargs(cls, kwargs: Mapping, source: str = "kwargs") -> FilterParameters:
        """Build from a mapping with exactly the keys of :meth:`as_kwargs` (``min_slices`` optional)."""
        if not isinstance(kwargs, Mapping):
            raise ValueError(f"{source}: filter parameters must be a mapping, got {type(kwargs).__name__}")
        allowed = {"wt_threshold", "tc_threshold", "et_threshold", "min_slices"}
        unknown = sorted(set(kwargs) - allowed)
        missing = sorted({"wt_threshold", "tc_threshold", "et_threshold"} - set(kwargs))
        if unknown or missing:
            raise ValueError(
                f"{source}: filter parameters need keys {sorted(allowed)}; unknown: {unknown}, missing: {missing}"
            )
        return cls(
            kwargs["wt_threshold"],
            kwargs["tc_threshold"],
            kwargs["et_threshold"],
            kwargs.get("min_slices", DEFAULT_MIN_SLICES),
        )


#: The filter that changes nothing: every component has a mean area > 0 and spans at least one slice.
IDENTITY = FilterParameters(0.0, 0.0, 0.0, 1)


def preset_parameters(challenge: str) -> FilterParameters:
    """The paper's thresholds for ``challenge`` (GLI, MEN, PED, SSA) with the paper's minimum of slices."""
    from nnunet_tcup.challenges import PAPER_FILTER_PRESETS, PAPER_MIN_SLICES, check_challenge

    preset = PAPER_FILTER_PRESETS[check_challenge(challenge)]
    return FilterParameters(preset["WT"], preset["TC"], preset["ET"], PAPER_MIN_SLICES)


def check_label_map(segmentation, name: str = "segmentation") -> np.ndarray:
    """Return ``segmentation`` as a numpy array after checking it is 3D with whole-number labels in 0-3.

    Float arrays (nnU-Net's readers return float32) are accepted when every value is a whole number.
    """
    seg = np.asarray(segmentation)
    if seg.ndim != 3:
        raise ValueError(f"{name} must be a 3D label map (z, y, x), got an array of shape {seg.shape}")
    if seg.dtype == bool or not (np.issubdtype(seg.dtype, np.integer) or np.issubdtype(seg.dtype, np.floating)):
        raise ValueError(f"{name} must hold integer labels 0-3, got dtype {seg.dtype}")
    if seg.size == 0:
        return seg
    lo, hi = seg.min(), seg.max()
    if not (lo >= 0 and hi <= 3):  # also false for NaN
        raise ValueError(
            f"{name} holds labels outside 0-3 (min {lo}, max {hi}); expected BraTS 2023 labels "
            f"0 background, 1 NETC, 2 SNFH, 3 ET"
        )
    if np.issubdtype(seg.dtype, np.floating) and not np.array_equal(seg, np.floor(seg)):
        raise ValueError(f"{name} holds non-integer values; expected BraTS 2023 labels 0-3")
    return seg


def region_mask(labels: np.ndarray, region_labels: tuple[int, ...]) -> np.ndarray:
    """Boolean mask of the voxels whose label is in ``region_labels``."""
    if region_labels == (1, 2, 3):
        return labels > 0
    return np.isin(labels, region_labels)


def label_components(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """26-connected components of a boolean mask (cc3d): ``(labels, n)``, labels 1..n, 0 = background."""
    import cc3d

    labels, n = cc3d.connected_components(np.ascontiguousarray(mask), connectivity=26, return_N=True)
    return labels, int(n)


def component_sizes(components: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per component 1..n (index 0 unused): voxel count and number of z slices occupied (axis 0 of ``(z, y, x)``).

    The slice count is the z extent of the bounding box, exact for connected components (see module docstring).
    """
    import cc3d

    if n == 0:
        return np.zeros(1, np.int64), np.zeros(1, np.int64)
    stats = cc3d.statistics(components, no_slice_conversion=True)
    voxels = np.asarray(stats["voxel_counts"], dtype=np.int64)[: n + 1]
    boxes = np.asarray(stats["bounding_boxes"], dtype=np.int64)[: n + 1]
    slices = boxes[:, 1] - boxes[:, 0] + 1  # columns 0, 1: min/max (inclusive) along axis 0 = z
    voxels[0] = 0
    slices[0] = 0
    return voxels, slices


def keep_components(voxels, slices, threshold: float, min_slices: int) -> np.ndarray:
    """The filter's rule, elementwise: mean area per slice ``voxels / slices > threshold`` and ``slices >= min_slices``.

    Shared by the filter and the tuning cache so both compare the very same float64 numbers.
    """
    voxels = np.asarray(voxels, dtype=np.float64)
    slices = np.asarray(slices, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        area = np.where(slices > 0, voxels / np.maximum(slices, 1), 0.0)
    return (area > threshold) & (slices >= min_slices)


def filter_lesions(
    segmentation: np.ndarray,
    wt_threshold: float,
    tc_threshold: float,
    et_threshold: float,
    min_slices: int = DEFAULT_MIN_SLICES,
) -> np.ndarray:
    """Apply the paper's lesion filter to a BraTS 2023 label map ``(z, y, x)``; return a filtered copy (same dtype).

    Thresholds are minimum mean areas per slice in voxels (strictly greater), per region WT, TC, ET;
    ``min_slices`` is the minimum number of z slices a kept component spans. See the module docstring.
    """
    params = FilterParameters(wt_threshold, tc_threshold, et_threshold, min_slices)
    seg = check_label_map(segmentation)
    out = np.array(seg, copy=True)
    for region, region_labels, removed_label in FILTER_REGIONS:
        components, n = label_components(region_mask(out, region_labels))
        if n == 0:
            continue
        voxels, slices = component_sizes(components, n)
        remove = ~keep_components(voxels, slices, params.threshold(region), params.min_slices)
        remove[0] = False
        if remove.any():
            out[remove[components]] = removed_label
    return out
