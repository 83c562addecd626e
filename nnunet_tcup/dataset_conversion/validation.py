"""Checks on BraTS 2023 case files, run before anything is written for a case.

Every problem is raised as :class:`CaseValidationError` (a ``ValueError``) whose message names the case, the file
and the problem, e.g. ``case BraTS-GLI-00001-000: /data/BraTS-GLI-00001-000/BraTS-GLI-00001-000-t1c.nii.gz:
shape (240, 240, 154) differs from t1n's (240, 240, 155)``.

Geometry is compared in nibabel's terms: array shape (i, j, k), voxel sizes (mm, i/j/k order) and the 4x4
voxel-to-world affine (mm).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_tcup.io_utils import load_nifti

#: 2023 label values allowed in a segmentation (0 background, 1 NETC, 2 SNFH, 3 ET).
ALLOWED_LABELS: tuple[int, ...] = (0, 1, 2, 3)

#: Absolute tolerances for geometry comparisons: voxel size (mm) and affine entries (mm).
SPACING_TOLERANCE_MM = 1e-4
AFFINE_TOLERANCE_MM = 1e-4


class CaseValidationError(ValueError):
    """A problem with one file of one case; ``str()`` names the case, the file and the problem."""

    def __init__(self, case_id: str, path: Path, problem: str):
        self.case_id = case_id
        self.path = Path(path)
        self.problem = problem
        super().__init__(f"case {case_id}: {path}: {problem}")

    def __reduce__(self):  # keep the three fields when the error travels back from a worker process
        return (self.__class__, (self.case_id, self.path, self.problem))


@dataclass(frozen=True)
class Geometry:
    """Array shape (i, j, k), voxel size (mm, i/j/k) and voxel-to-world affine (4x4, mm) of a NIfTI file."""

    shape: tuple[int, ...]
    zooms: tuple[float, ...]
    affine: np.ndarray

    @classmethod
    def of(cls, img) -> Geometry:
        return cls(
            tuple(int(s) for s in img.shape),
            tuple(float(z) for z in img.header.get_zooms()[:3]),
            np.asarray(img.affine, dtype=np.float64),
        )


def geometry_problem(
    geometry: Geometry, reference: Geometry, reference_name: str, affine_tolerance: float = AFFINE_TOLERANCE_MM
) -> str | None:
    """Describe how ``geometry`` differs from ``reference`` (shape, then spacing, then affine); None if it does not."""
    if geometry.shape != reference.shape:
        return f"shape {geometry.shape} differs from {reference_name}'s {reference.shape}"
    if not np.allclose(geometry.zooms, reference.zooms, rtol=0.0, atol=SPACING_TOLERANCE_MM):
        return f"spacing {geometry.zooms} mm differs from {reference_name}'s {reference.zooms} mm"
    if not np.allclose(geometry.affine, reference.affine, rtol=0.0, atol=affine_tolerance):
        diff = float(np.max(np.abs(geometry.affine - reference.affine)))
        return (
            f"affine differs from {reference_name}'s (max abs difference {diff:.3g} mm): "
            f"{_one_line(geometry.affine)} vs {_one_line(reference.affine)}"
        )
    return None


def _one_line(matrix: np.ndarray) -> str:
    """The first three rows of a 4x4 affine on one line, 4 decimals."""
    return "[" + "; ".join(" ".join(f"{v:.4g}" for v in row) for row in np.asarray(matrix)[:3]) + "]"


def label_problem(data: np.ndarray, allowed: Sequence[int] = ALLOWED_LABELS) -> str | None:
    """Describe non-finite, non-integer or unexpected label values in ``data``; None if all are allowed labels."""
    if data.size == 0:
        return None
    lo, hi = data.min(), data.max()  # NaN/inf show up here; the fast path avoids sorting all voxels (np.unique)
    if (
        np.isfinite(lo)
        and np.isfinite(hi)
        and lo >= min(allowed)
        and hi <= max(allowed)
        and set(range(int(min(allowed)), int(max(allowed)) + 1)) == set(allowed)
        and np.array_equal(data, np.rint(data))
    ):
        return None
    finite = np.isfinite(data)
    if not finite.all():
        return f"{int((~finite).sum())} non-finite voxel value(s) (NaN/inf) in the segmentation"
    values = np.unique(data)
    non_integer = values[values != np.round(values)]
    if non_integer.size:
        return (
            f"non-integer label value(s) {_short_list(non_integer)}; a segmentation must hold integer labels "
            f"{list(allowed)}"
        )
    unexpected = values[~np.isin(values, np.asarray(allowed, dtype=values.dtype))]
    if unexpected.size:
        hint = ""
        if 4 in unexpected:
            hint = " (label 4 is BraTS 2021's or PED 2024's labelling; BraTS 2023 uses 1=NETC, 2=SNFH, 3=ET)"
        return f"unexpected label value(s) {_short_list(unexpected)}; allowed: {list(allowed)}{hint}"
    return None


def _short_list(values: np.ndarray, limit: int = 8) -> str:
    shown = [int(v) if float(v).is_integer() else float(v) for v in values[:limit]]
    return f"{shown}{' ...' if values.size > limit else ''}"


def check_volume(case_id: str, path: Path) -> tuple[object, Geometry]:
    """Fully read one NIfTI file (so a truncated ``.nii.gz`` fails here), check it is a finite 3D volume.

    Returns the nibabel image (data cached as float32) and its :class:`Geometry`.
    """
    try:
        img = load_nifti(path)
    except ValueError as e:
        raise CaseValidationError(case_id, path, _strip_path_prefix(str(e), path)) from e
    if len(img.shape) != 3:
        raise CaseValidationError(case_id, path, f"expected a 3D volume, got shape {tuple(img.shape)}")
    data = img.get_fdata(dtype=np.float32, caching="fill")
    finite = np.isfinite(data)
    if not finite.all():
        raise CaseValidationError(case_id, path, f"{int((~finite).sum())} non-finite voxel value(s) (NaN/inf)")
    return img, Geometry.of(img)


def _strip_path_prefix(message: str, path: Path) -> str:
    prefix = f"{path}: "
    return message[len(prefix) :] if message.startswith(prefix) else message


def validate_case_files(
    case_id: str, images: Sequence[tuple[str, Path]], seg: Path | None, allowed_labels: Sequence[int] = ALLOWED_LABELS
) -> Geometry:
    """Check the modality images (``(name, path)`` in channel order) and optional segmentation of one case.

    Each file must be readable, a finite 3D volume, and share shape, spacing and affine with the first image; the
    segmentation must hold integer labels in ``allowed_labels`` (default {0, 1, 2, 3}). Reads one file at a time (memory: one volume).
    Returns the case geometry; raises :class:`CaseValidationError` on the first problem.
    """
    if not images:
        raise ValueError(f"case {case_id}: no images given")
    reference: Geometry | None = None
    reference_name = images[0][0]
    for _name, path in images:
        img, geometry = check_volume(case_id, path)
        del img
        if reference is None:
            reference = geometry
            continue
        problem = geometry_problem(geometry, reference, reference_name)
        if problem:
            raise CaseValidationError(case_id, path, problem)
    assert reference is not None
    if seg is not None:
        try:
            img = load_nifti(seg)
        except ValueError as e:
            raise CaseValidationError(case_id, seg, _strip_path_prefix(str(e), seg)) from e
        if len(img.shape) != 3:
            raise CaseValidationError(case_id, seg, f"expected a 3D volume, got shape {tuple(img.shape)}")
        problem = geometry_problem(Geometry.of(img), reference, reference_name)
        if problem is None:
            problem = label_problem(img.get_fdata(dtype=np.float32, caching="fill"), allowed_labels)
        if problem:
            raise CaseValidationError(case_id, seg, problem)
    return reference


def labels_as_uint8(img, label_map: dict[int, int] | None = None) -> np.ndarray:
    """Label array of an already validated segmentation image as uint8 (i, j, k), values mapped by ``label_map``
    (e.g. ``{4: 3}`` for BraTS 2021; unlisted values are kept)."""
    labels = np.rint(img.get_fdata(dtype=np.float32, caching="unchanged")).astype(np.uint8)
    if label_map:
        lookup = np.arange(256, dtype=np.uint8)
        for old, new in label_map.items():
            lookup[int(old)] = int(new)
        labels = lookup[labels]
    return labels
