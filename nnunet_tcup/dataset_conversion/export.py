"""nnU-Net predictions -> BraTS submission files ``CASE.nii.gz``.

Input: ``PRED_DIR/CASE.nii.gz`` as written by ``nnUNetv2_predict`` for a dataset made by ``nnunet_tcup convert``. In
every mode the predicted values already are 2023 labels (``regions`` mode: nnU-Net paints WT -> 2, TC -> 1, ET -> 3
following ``regions_class_order`` [2, 1, 3]; ``classes`` mode: classes 1/2/3 are NETC/SNFH/ET): values are checked
to be integers in {0, 1, 2, 3} and stored as uint8. Cases with BraTS 2021/2020 ids (``BraTS2021_00001``) get that
challenge's labelling back (ET 3 -> 4).

Geometry: with ``source`` (recommended), each output gets the exact shape, affine and header (data type set to
uint8) of the source case's first channel, found as the first existing of (``.nii.gz`` or ``.nii``)

- ``SOURCE/CASE_0000.nii.gz``           (an nnU-Net images folder, e.g. the imagesTs given to nnUNetv2_predict)
- ``SOURCE/imagesTs/CASE_0000.nii.gz``, ``SOURCE/imagesTr/CASE_0000.nii.gz``   (a converted dataset folder)
- ``SOURCE/CASE/CASE-t1n.nii.gz`` or ``SOURCE/CASE/CASE_t1.nii.gz``   (the original BraTS 2023 / 2021 case folders)

and the prediction must lie on that grid (:func:`nnunet_tcup.io_utils.check_same_geometry`: shape, spacing, origin
and direction), else an error names both files. Without ``source``, the prediction's own geometry is kept.

Completeness: with ``source``, every source case (all cases of each source location a prediction was found in) needs
a prediction; missing ones are an error, or with ``allow_missing`` a warning listing them.

Safety: everything is checked before anything is written; an existing output file that differs from what would be
written is an error unless ``overwrite``; identical ones are left untouched; writes are atomic.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tcup.case_ids import id_problem, non_ascii_note, shown
from nnunet_tcup.challenges import check_challenge
from nnunet_tcup.dataset_conversion.brats2023 import REGION_LABELS, REGIONS_CLASS_ORDER
from nnunet_tcup.dataset_conversion.layout import (
    BRATS2021,
    BRATS2023,
    FILE_ENDING,
    SOURCE_ENDINGS,
    brats2023_challenge,
    is_legacy_case_id,
)
from nnunet_tcup.errors import ErrorList, one_line
from nnunet_tcup.io_utils import atomic_output, is_partial_file, list_nifti_cases
from nnunet_tcup.parallel import default_num_workers, parallel_map


def _region_pairs(labels: dict, class_order: Sequence[int]) -> set:
    regions = [v for k, v in labels.items() if not (isinstance(v, int) and v == 0)]
    return {(tuple(sorted(v if isinstance(v, list) else [v])), int(c)) for v, c in zip(regions, class_order)}


def check_prediction_dataset_json(pred_dir: Path) -> None:
    """If ``PRED_DIR/dataset.json`` (copied there by nnUNetv2_predict) declares regions, they must paint 2023 labels
    (WT -> 2, TC -> 1, ET -> 3) as ``nnunet_tcup convert`` sets up; else ValueError (e.g. a BraTS 2021-style remap)."""
    path = Path(pred_dir) / "dataset.json"
    if not path.is_file():
        return
    try:
        with open(path) as f:
            obj = json.load(f)
        labels = obj["labels"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(
            f"{path}: cannot read the labels of the dataset the predictions come from ({one_line(str(e))})"
        ) from e
    order = obj.get("regions_class_order")
    if order is None:
        return
    wanted = _region_pairs(REGION_LABELS, REGIONS_CLASS_ORDER)
    if _region_pairs(labels, order) != wanted or len(order) != len(wanted):
        raise ValueError(
            f"{path}: the predictions come from a region dataset whose regions/regions_class_order "
            f"({labels}, {order}) do not paint BraTS 2023 labels; expected {REGION_LABELS} with "
            f"regions_class_order {REGIONS_CLASS_ORDER} (as made by nnunet_tcup convert)"
        )


def _reference_candidates(source: Path, case_id: str) -> list[Path]:
    """Where the source image of ``case_id`` may be, in the order searched (see the module docstring)."""
    candidates = []
    for ending in SOURCE_ENDINGS:
        candidates += [
            source / f"{case_id}_0000{ending}",
            source / "imagesTs" / f"{case_id}_0000{ending}",
            source / "imagesTr" / f"{case_id}_0000{ending}",
        ]
    layout = BRATS2021 if is_legacy_case_id(case_id) else BRATS2023
    candidates += [
        source / case_id / f"{case_id}{layout.separator}{layout.modality_names[0]}{e}" for e in SOURCE_ENDINGS
    ]
    return candidates


def find_source_reference(source: Path, case_id: str) -> Path:
    """The file whose geometry the exported ``case_id`` gets (see the module docstring); ValueError if none exists."""
    source = Path(source)
    candidates = _reference_candidates(source, case_id)
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    shown = ", ".join(str(c.relative_to(source)) for c in candidates if c.name.endswith(FILE_ENDING))
    raise ValueError(f"case {case_id}: no source image found in {source} (looked for {shown}, and .nii)")


def source_case_ids(source: Path, references: Sequence[Path]) -> list[str]:
    """Every case id at the source locations the ``references`` were found in: an images folder's ``*_0000`` files,
    or the case folders of a BraTS folder."""
    source = Path(source)
    ids: set[str] = set()
    for folder in sorted({Path(r).parent for r in references}):
        if folder.parent == source and is_case_folder(folder):  # SOURCE/CASE/CASE-t1n.nii.gz: BraTS case folders
            ids.update(p.name for p in source.iterdir() if is_case_folder(p))
            continue
        for p in folder.iterdir():  # an nnU-Net images folder
            stem = p.name[: -len(".gz")] if p.name.endswith(".gz") else p.name
            if stem.endswith("_0000.nii") and not is_partial_file(p):
                ids.add(stem[: -len("_0000.nii")])
    return sorted(ids)


def is_case_folder(path: Path) -> bool:
    """True for a folder named like a BraTS 2023 or 2021/2020 case."""
    return path.is_dir() and (brats2023_challenge(path.name) is not None or is_legacy_case_id(path.name))


@dataclass(frozen=True)
class ExportTask:
    case_id: str
    prediction: Path
    reference: Path | None
    target: Path
    overwrite: bool


@dataclass
class ExportCheck:
    """``write``, ``unchanged`` (identical output already there) or ``error`` (with the message)."""

    task: ExportTask
    status: str
    error: str | None = None


def _submission_image(task: ExportTask):
    """Checked uint8 label image for ``task`` in its reference geometry (ValueError naming the file otherwise)."""
    import nibabel as nib
    import numpy as np

    from nnunet_tcup.dataset_conversion.validation import label_problem
    from nnunet_tcup.io_utils import check_same_geometry, load_nifti, load_nifti_header, read_geometry

    prediction = load_nifti(task.prediction)
    if len(prediction.shape) != 3:
        raise ValueError(
            f"case {task.case_id}: {task.prediction}: expected a 3D volume, got shape {tuple(prediction.shape)}"
        )
    data = prediction.get_fdata(dtype=np.float32, caching="fill")
    problem = label_problem(data)
    if problem:
        raise ValueError(f"case {task.case_id}: {task.prediction}: {problem}")
    reference = prediction
    if task.reference is not None:
        check_same_geometry(
            read_geometry(task.reference), read_geometry(task.prediction), task.reference, task.prediction
        )
        reference = load_nifti_header(task.reference)
    labels = np.rint(data).astype(np.uint8)
    if is_legacy_case_id(task.case_id):
        labels[labels == 3] = 4  # BraTS 2021/2020 labelling: ET = 4
    header = reference.header.copy()
    header["cal_min"], header["cal_max"] = 0, 0
    out = nib.Nifti1Image(labels, reference.affine, header)
    out.set_data_dtype(np.uint8)
    return out


def _same_image(path: Path, image) -> bool:
    import numpy as np

    from nnunet_tcup.io_utils import load_nifti

    try:
        existing = load_nifti(path)
    except ValueError:
        return False
    return (
        existing.shape == image.shape
        and existing.get_data_dtype() == np.uint8
        and np.array_equal(existing.affine, image.affine)
        and np.array_equal(np.asanyarray(existing.dataobj), np.asanyarray(image.dataobj))
    )


def check_export(task: ExportTask) -> ExportCheck:
    """Validate one prediction (labels, geometry against its source) and any existing output; writes nothing."""
    try:
        image = _submission_image(task)
        if task.target.exists():
            if _same_image(task.target, image):
                return ExportCheck(task, "unchanged")
            if not task.overwrite:
                raise ValueError(
                    f"case {task.case_id}: {task.target}: already exists and differs from the export of "
                    f"{task.prediction}; not overwriting it (remove it or pass --overwrite)"
                )
        return ExportCheck(task, "write")
    except ValueError as e:
        return ExportCheck(task, "error", error=str(e))


def write_export(task: ExportTask) -> str:
    """Write one submission file atomically; return the case id."""
    import nibabel as nib

    image = _submission_image(task)
    with atomic_output(task.target) as tmp:
        nib.save(image, str(tmp))
    return task.case_id


@dataclass
class ExportSummary:
    """What :func:`export_predictions` did; ``missing`` lists source cases without a prediction (``allow_missing``)."""

    out_dir: Path
    written: list[str]
    unchanged: list[str]
    missing: list[str] = field(default_factory=list)


def export_predictions(
    pred_dir: Path,
    out_dir: Path,
    challenge: str,
    source: Path | None = None,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    allow_missing: bool = False,
) -> ExportSummary:
    """Export every ``PRED_DIR/BraTS-CH-NNNNN-NNN.nii.gz`` to ``OUT_DIR/BraTS-CH-NNNNN-NNN.nii.gz`` (uint8, 2023
    labels, source geometry). All predictions are checked first; if any fails, one ValueError lists every failing
    file and nothing is written. With ``source``, source cases without a prediction are an error unless
    ``allow_missing`` (then they are listed in the summary)."""
    challenge = check_challenge(challenge)
    pred_dir, out_dir = Path(pred_dir), Path(out_dir)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    if workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {workers}")
    case_ids = list_nifti_cases(pred_dir)
    if not case_ids:
        raise ValueError(f"{pred_dir}: no *{FILE_ENDING} predictions found")
    for case_id in case_ids:
        _check_case_name(pred_dir / f"{case_id}{FILE_ENDING}", case_id, challenge)
    check_prediction_dataset_json(pred_dir)
    if source is not None and not Path(source).is_dir():
        raise ValueError(f"{source}: --source is not a directory")
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir}: exists and is not a directory")
    if out_dir.resolve() == pred_dir.resolve():
        raise ValueError(f"{out_dir}: the output folder must differ from the prediction folder")
    tasks = [
        ExportTask(
            c,
            pred_dir / f"{c}{FILE_ENDING}",
            find_source_reference(Path(source), c) if source is not None else None,
            out_dir / f"{c}{FILE_ENDING}",
            overwrite,
        )
        for c in case_ids
    ]
    missing: list[str] = []
    if source is not None:
        missing = sorted(
            set(source_case_ids(Path(source), [t.reference for t in tasks if t.reference])) - set(case_ids)
        )
        if missing and not allow_missing:
            shown = ", ".join(missing[:10]) + (f" and {len(missing) - 10} more" if len(missing) > 10 else "")
            raise ValueError(
                f"{source}: {len(missing)} source case(s) have no prediction in {pred_dir}: {shown}; "
                "nothing was written (predict them, or pass --allow-missing to export the others)"
            )
    checks = parallel_map(
        check_export,
        tasks,
        num_workers=workers,
        desc=f"checking {challenge} predictions",
        progress=progress,
        label=lambda task: task.case_id,
    )
    errors = [str(c.error) for c in checks if c.status == "error"]
    if errors:
        raise ErrorList(f"{len(errors)} of {len(checks)} prediction(s) failed the checks; nothing was written:", errors)
    to_write = [c.task for c in checks if c.status == "write"]
    out_dir.mkdir(parents=True, exist_ok=True)
    parallel_map(
        write_export,
        to_write,
        num_workers=workers,
        desc=f"exporting {challenge}",
        progress=progress,
        label=lambda task: task.case_id,
    )
    return ExportSummary(
        out_dir, [t.case_id for t in to_write], [c.task.case_id for c in checks if c.status == "unchanged"], missing
    )


def _check_case_name(path: Path, case_id: str, challenge: str) -> None:
    """ValueError unless ``case_id`` is a BraTS 2023 case of ``challenge`` or (GLI only) a BraTS 2021/2020 case."""
    if is_legacy_case_id(case_id) and challenge == "GLI":
        return
    found = brats2023_challenge(case_id)
    if found is None:
        problem = id_problem(case_id)
        raise ValueError(
            f"{shown(path)}: not a BraTS case name (expected BraTS-{challenge}-NNNNN-NNN{FILE_ENDING})"
            + (f"; {problem}" if problem else non_ascii_note(case_id))
        )
    if found != challenge:
        raise ValueError(f"{path}: case of challenge {found}, but --challenge is {challenge}")
