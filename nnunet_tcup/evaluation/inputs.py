"""Find, pair, check and read the label files of an evaluation.

Accepted folder layouts (for ``--gt``, and the same for ``--pred``):

* a flat folder of label files ``CASE.nii.gz`` / ``CASE.nii`` (nnU-Net ``labelsTr`` / ``labelsTs``,
  ``nnUNetv2_predict`` or ``nnunet_tcup export`` output);
* a BraTS case-folder tree ``CASE/CASE-seg.nii.gz`` (e.g. ``BraTS-GLI-00001-000/BraTS-GLI-00001-000-seg.nii.gz``), or
  the BraTS 2021/2020 tree ``BraTS2021_00001/BraTS2021_00001_seg.nii.gz``.

Case ids are file names without ``.nii.gz`` / ``.nii`` and without a ``-seg`` / ``_seg`` suffix, so
``CASE-seg.nii.gz`` pairs with ``CASE.nii.gz`` (and ``BraTS2021_00001_seg.nii.gz`` with ``BraTS2021_00001.nii.gz``,
as ``nnunet_tcup convert`` names that case). Hidden files, interrupted writes (``.*.partial-*``), ``__MACOSX``
folders and other operating-system files, BraTS image files (``CASE-t1n.nii.gz``, ``CASE_flair.nii.gz``, ...),
non-NIfTI files (``plans.json``) and folders without a label file are skipped, with one note on stderr per folder.

Labels: files of BraTS 2021/2020 cases (case id like ``BraTS2021_00001``, ``BraTS20_Training_001``, detected as
``convert`` detects them) may hold that challenge's labels 1 NCR, 2 ED, 4 ET: 4 is read as 3 (2023: 1 NETC, 2 SNFH,
3 ET), as ``convert`` writes them and as ``export`` writes them back; every other file must hold labels 0-3. Every
problem is a ValueError naming the file or folder.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Union

import numpy as np

from nnunet_tcup.case_ids import check_distinct_case_ids
from nnunet_tcup.dataset_conversion.layout import (
    BRATS2021,
    BRATS2023,
    JUNK_NAMES,
    LAYOUTS,
    SEG_NAME,
    SOURCE_ENDINGS,
    Layout,
    is_legacy_case_id,
)
from nnunet_tcup.evaluation.validation import check_labels
from nnunet_tcup.io_utils import ImageGeometry, check_same_geometry, is_partial_file, read_geometry, read_image_zyx

__all__ = [
    "CaseJob",
    "case_id_of",
    "case_jobs",
    "check_job_geometry",
    "find_label_files",
    "label_layout_of",
    "read_case_pair",
]

PathLike = Union[str, "os.PathLike[str]"]

#: (case id, ground-truth file, prediction file or None for "score as an empty prediction").
CaseJob = tuple[str, Path, Path | None]

_SUFFIXES = SOURCE_ENDINGS
#: ``-seg`` (BraTS 2023) and ``_seg`` (BraTS 2021/2020).
_SEG_SUFFIXES = tuple(dict.fromkeys(f"{layout.separator}{SEG_NAME}" for layout in LAYOUTS.values()))
#: Suffixes of BraTS 2023 and 2021/2020 image files (``-t1n``, ``_flair``, ...), which are never label files.
_IMAGE_SUFFIXES = tuple(f"{layout.separator}{name}" for layout in LAYOUTS.values() for name in layout.modality_names)
#: How many skipped entries a note names.
_NOTE_EXAMPLES = 3


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


def find_label_files(folder: PathLike, role: str, skipped: list[str] | None = None) -> dict[str, Path]:
    """``{case id: label file}`` of a flat folder of label files and/or a BraTS case-folder tree (sorted by id).

    ``role`` ('ground-truth', 'prediction') words the errors: a missing folder, two files for one case id (or two
    ids equal under Unicode NFKC normalisation, or an id with a control character: :mod:`nnunet_tcup.case_ids`), a
    folder with no label file at all. The names of the entries skipped (see the module docstring; folders end in
    ``/``) are appended to ``skipped`` when given.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: {role} folder not found" if not folder.exists() else f"{folder}: not a directory")
    found: dict[str, Path] = {}
    ignored: list[str] = []

    def add(case: str, path: Path) -> None:
        if case in found:
            raise ValueError(f"{path}: two {role} files for case {case!r} (the other is {found[case]})")
        found[case] = path

    for entry in sorted(folder.iterdir()):
        is_dir = entry.is_dir()
        if entry.name.startswith(".") or entry.name in JUNK_NAMES:
            case = None
        elif is_dir:
            seg = _seg_file_of_case_folder(entry)
            if seg is not None:
                add(entry.name, seg)
                continue
            case = None
        else:
            case = case_id_of(entry.name) if entry.is_file() else None
        if case is None:
            ignored.append(entry.name + ("/" if is_dir else ""))
        else:
            add(case, entry)
    if skipped is not None:
        skipped += ignored
    check_distinct_case_ids(found)
    if not found:
        note = f"; skipped {_examples(ignored)}" if ignored else ""
        raise ValueError(
            f"{folder}: no {role} label files (CASE.nii.gz / CASE.nii, or BraTS case folders CASE/CASE-seg.nii.gz)"
            + note
        )
    return dict(sorted(found.items()))


def _examples(names: list[str]) -> str:
    """``N entries (a, b, c, ...)``: how many, and the first few names."""
    shown = ", ".join(names[:_NOTE_EXAMPLES]) + (", ..." if len(names) > _NOTE_EXAMPLES else "")
    return f"{len(names)} {'entry' if len(names) == 1 else 'entries'} ({shown})"


def _find_with_note(folder: PathLike, role: str) -> dict[str, Path]:
    """:func:`find_label_files`, then one line on stderr (before any pairing error) saying how many entries of
    ``folder`` were skipped, with a few examples."""
    skipped: list[str] = []
    found = find_label_files(folder, role, skipped)
    if skipped:
        print(f"note: {folder}: skipped {_examples(skipped)}: not {role} label files", file=sys.stderr)
    return found


def case_jobs(gt_dir: PathLike, pred_dir: PathLike, missing_as_empty: bool = False) -> list[CaseJob]:
    """One job per ground-truth case, paired with the prediction of the same case id.

    Raises ValueError for predictions without ground truth, and ground-truth cases without a prediction (unless
    ``missing_as_empty``: those get ``None``, scored as empty predictions). Entries of either folder that are not
    label files are counted in one note per folder on stderr.
    """
    gt_files = _find_with_note(gt_dir, "ground-truth")
    pred_files = _find_with_note(pred_dir, "prediction")
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


def label_layout_of(path: PathLike) -> Layout:
    """The labelling of a label file, by its case id: ``BRATS2021`` (ET = 4, read as 3) for a BraTS 2021/2020 case id
    such as ``BraTS2021_00001`` (``convert``'s detection), else ``BRATS2023``."""
    case = case_id_of(Path(path).name)
    return BRATS2021 if case is not None and is_legacy_case_id(case) else BRATS2023


def _to_2023_labels(array: np.ndarray, path: PathLike) -> np.ndarray:
    """Map a label array of ``path`` to BraTS 2023 labels in place by its layout's ``label_map`` (BraTS 2021/2020:
    4 -> 3). A file holding both a value and its target (3 and 4) has no single meaning: ValueError naming it."""
    for old, new in label_layout_of(path).label_map:
        mask = array == old
        if mask.any():
            if (array == new).any():
                raise ValueError(
                    f"{path}: holds both labels {old} and {new}: BraTS 2021/2020 labels are 1 NCR, 2 ED, 4 ET and "
                    "BraTS 2023 labels 1 NETC, 2 SNFH, 3 ET, not a mix"
                )
            array[mask] = new
    return array


def _read_labels(path: PathLike) -> tuple[np.ndarray, ImageGeometry]:
    array, geometry = read_image_zyx(path, labels=True)
    check_labels(_to_2023_labels(array, path), str(path))
    return array, geometry


def read_case_pair(
    gt_path: PathLike, pred_path: PathLike | None
) -> tuple[np.ndarray, np.ndarray, tuple[float, float, float]]:
    """Read and check a GT / prediction pair: ``(gt, pred, spacing)`` in NIfTI ``(x, y, z)`` order, spacing in mm.

    Both files are verified (whole gzip stream; no NaN/Inf or non-integer voxels; labels 0-3, or 0, 1, 2, 4 for a
    BraTS 2021/2020 case id, 4 read as 3) and must share one grid (shape, spacing, origin, direction). The spacing is
    the prediction's, as in the official code. ``pred_path=None`` gives an all-zero prediction on the GT grid. Raises
    ValueError naming the file(s).
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
