"""Find, pair, check and read the label files of an evaluation.

Accepted folder layouts (for ``--gt``, and the same for ``--pred``):

* a flat folder of label files ``CASE.nii.gz`` / ``CASE.nii`` (nnU-Net ``labelsTr`` / ``labelsTs``,
  ``nnUNetv2_predict`` or ``nnunet_tcup export`` output; other files such as ``plans.json`` are ignored);
* a BraTS case-folder tree ``CASE/CASE-seg.nii.gz`` (e.g. ``BraTS-GLI-00001-000/BraTS-GLI-00001-000-seg.nii.gz``).

Case ids are file names without ``.nii.gz`` / ``.nii`` and without a ``-seg`` / ``_seg`` suffix, so
``CASE-seg.nii.gz`` pairs with ``CASE.nii.gz``. Hidden files, interrupted writes (``.*.partial-*``),
``__MACOSX`` folders and BraTS image files (``CASE-t1n.nii.gz``, ``CASE_flair.nii.gz``, ...) are skipped. Every problem is a ValueError naming the file or folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

import numpy as np

from nnunet_tcup.evaluation.validation import check_labels
from nnunet_tcup.io_utils import ImageGeometry, check_same_geometry, is_partial_file, read_geometry, read_image_zyx

__all__ = [
    "CaseJob",
    "case_id_of",
    "case_jobs",
    "check_job_geometry",
    "find_label_files",
    "read_case_pair",
]

PathLike = Union[str, "os.PathLike[str]"]

#: (case id, ground-truth file, prediction file or None for "score as an empty prediction").
CaseJob = tuple[str, Path, Path | None]

_SUFFIXES = (".nii.gz", ".nii")
_SEG_SUFFIXES = ("-seg", "_seg")
_SKIPPED_FOLDERS = frozenset({"__MACOSX"})
#: Suffixes of BraTS 2023 and 2021/2020 image files, which are never label files.
_IMAGE_SUFFIXES = ("-t1n", "-t1c", "-t2w", "-t2f", "_t1", "_t1ce", "_t2", "_flair")


def case_id_of(name: str) -> str | None:
    """Case id of a label file name (``.nii.gz`` / ``.nii`` and a ``-seg`` / ``_seg`` suffix removed); None for
    names that are not NIfTI files, BraTS image files, hidden or partial."""
    if name.startswith(".") or is_partial_file(name):
        return None
    for suffix in _SUFFIXES:
        if name.endswith(suffix) and len(name) > len(suffix):
            stem = name[: -len(suffix)]
            if stem.endswith(_IMAGE_SUFFIXES):
                return None
            for seg in _SEG_SUFFIXES:
                if stem.endswith(seg) and len(stem) > len(seg):
                    return stem[: -len(seg)]
            return stem
    return None


def _seg_file_of_case_folder(folder: Path) -> Path | None:
    """The label file of a BraTS case folder: ``NAME-seg.nii.gz`` (or ``.nii``, ``_seg``) where NAME is the folder
    name; None when the folder holds none."""
    for seg in _SEG_SUFFIXES:
        for suffix in _SUFFIXES:
            candidate = folder / f"{folder.name}{seg}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def find_label_files(folder: PathLike, role: str) -> dict[str, Path]:
    """``{case id: label file}`` of a flat folder of label files and/or a BraTS case-folder tree (sorted by id).

    ``role`` ('ground-truth', 'prediction') words the errors: a missing folder, two files for one case id, a
    folder with no label file at all.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: {role} folder not found" if not folder.exists() else f"{folder}: not a directory")
    found: dict[str, Path] = {}

    def add(case: str, path: Path) -> None:
        if case in found:
            raise ValueError(f"{path}: two {role} files for case {case!r} (the other is {found[case]})")
        found[case] = path

    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or entry.name in _SKIPPED_FOLDERS:
            continue
        if entry.is_dir():
            seg = _seg_file_of_case_folder(entry)
            if seg is not None:
                add(entry.name, seg)
        elif entry.is_file():
            case = case_id_of(entry.name)
            if case is not None:
                add(case, entry)
    if not found:
        raise ValueError(
            f"{folder}: no {role} label files (CASE.nii.gz / CASE.nii, or BraTS case folders CASE/CASE-seg.nii.gz)"
        )
    return dict(sorted(found.items()))


def case_jobs(gt_dir: PathLike, pred_dir: PathLike, missing_as_empty: bool = False) -> list[CaseJob]:
    """One job per ground-truth case, paired with the prediction of the same case id.

    Raises ValueError for predictions without ground truth, and ground-truth cases without a prediction (unless
    ``missing_as_empty``: those get ``None``, scored as empty predictions).
    """
    gt_files = find_label_files(gt_dir, "ground-truth")
    pred_files = find_label_files(pred_dir, "prediction")
    extra = sorted(set(pred_files) - set(gt_files))
    if extra:
        shown = ", ".join(pred_files[c].name for c in extra[:5]) + (" ..." if len(extra) > 5 else "")
        raise ValueError(f"{pred_dir}: {len(extra)} prediction(s) without ground truth in {gt_dir}: {shown}")
    missing = [c for c in gt_files if c not in pred_files]
    if missing and not missing_as_empty:
        shown = ", ".join(gt_files[c].name for c in missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{pred_dir}: no prediction for {len(missing)} ground-truth case(s): {shown} "
            "(use --missing-as-empty / missing_as_empty=True to score them as empty predictions)"
        )
    return [(case, path, pred_files.get(case)) for case, path in gt_files.items()]


def check_job_geometry(jobs: list[CaseJob]) -> None:
    """Check every pair's headers before any voxel is read: both files readable as 3D images and the prediction on
    the ground truth's grid (shape, spacing, origin, direction). Raises one ValueError naming both files."""
    for _, gt_path, pred_path in jobs:
        gt_geometry = read_geometry(gt_path)
        if pred_path is not None:
            check_same_geometry(gt_geometry, read_geometry(pred_path), gt_path, pred_path)


def _read_labels(path: PathLike) -> tuple[np.ndarray, ImageGeometry]:
    array, geometry = read_image_zyx(path, labels=True)
    check_labels(array, str(path))
    return array, geometry


def read_case_pair(
    gt_path: PathLike, pred_path: PathLike | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read and check a GT / prediction pair: ``(gt, pred, spacing)`` in NIfTI ``(x, y, z)`` order, spacing in mm.

    Both files are verified (whole gzip stream; no NaN/Inf or non-integer voxels; labels 0-3) and must share one
    grid (shape, spacing, origin, direction). The spacing is the prediction's, as in the official code.
    ``pred_path=None`` gives an all-zero prediction on the GT grid. Raises ValueError naming the file(s).
    """
    gt, gt_geometry = _read_labels(gt_path)
    if pred_path is None:
        pred, geometry = np.zeros_like(gt), gt_geometry
    else:
        pred, geometry = _read_labels(pred_path)
        check_same_geometry(gt_geometry, geometry, gt_path, pred_path)
    spacing_xyz = tuple(float(s) for s in geometry.spacing_zyx[::-1])
    # (z, y, x) C-ordered -> (x, y, z) Fortran-ordered view: the official code's axis order and memory layout
    return gt.T, pred.T, spacing_xyz  # type: ignore[return-value]
