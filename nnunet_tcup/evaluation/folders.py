"""Evaluate NIfTI files and folders with the BraTS 2023 lesion-wise metrics; summarise and write the results.

Files are read with SimpleITK (``io_utils.read_array_zyx``) and evaluated in NIfTI ``(x, y, z)`` axis order (the
arrays transposed, a free view), exactly as the official code sees them through nibabel, so lesion and component
ids match the official ones too. Volumes are in mm^3 from the prediction's voxel spacing, HD95 in mm.
"""
from __future__ import annotations

import contextlib
import os
from concurrent.futures import FIRST_EXCEPTION, ProcessPoolExecutor, wait
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple, Union

import numpy as np
import pandas as pd

from nnunet_tcup.evaluation.lesionwise import (
    METRIC_COLUMNS, REGION_NAMES, CaseEvaluation, check_labels, evaluate_case, resolve_parameters,
)
from nnunet_tcup.io_utils import atomic_output, list_nifti_cases, read_array_zyx

PathLike = Union[str, "os.PathLike[str]"]

#: Columns of the per-case results table (one row per case and region).
RESULT_COLUMNS: Tuple[str, ...] = ("case", "Labels") + METRIC_COLUMNS

#: Statistics of the summary, in the order (and with the names) the BraTS scoring reports them.
SUMMARY_STATISTICS: Tuple[str, ...] = ("Mean", "StdDev", "Median", "25quantile", "75quantile")

#: Relative tolerance when comparing the voxel spacings of GT and prediction.
SPACING_RTOL = 1e-5


def read_case_pair(gt_path: PathLike, pred_path: Optional[PathLike]) -> Tuple[np.ndarray, np.ndarray,
                                                                               Tuple[float, float, float]]:
    """Read and check a GT / prediction pair: ``(gt, pred, spacing)`` in ``(x, y, z)`` order, spacing in mm.

    ``pred_path=None`` gives an all-zero prediction on the GT grid. Raises ValueError naming the file for unreadable
    files, labels outside 0-3, non-3D images and shape or spacing mismatches.
    """
    gt, gt_spacing = read_array_zyx(gt_path)
    check_labels(gt, str(gt_path))
    if pred_path is None:
        pred, pred_spacing = np.zeros_like(gt), gt_spacing
    else:
        pred, pred_spacing = read_array_zyx(pred_path)
        check_labels(pred, str(pred_path))
        if pred.shape != gt.shape:
            raise ValueError(f"{pred_path}: shape {pred.shape[::-1]} (x, y, z) differs from the ground truth "
                             f"{gt_path} {gt.shape[::-1]}")
        if not np.allclose(pred_spacing, gt_spacing, rtol=SPACING_RTOL, atol=0):
            raise ValueError(f"{pred_path}: voxel spacing {tuple(pred_spacing[::-1])} mm (x, y, z) differs from the "
                             f"ground truth {gt_path} {tuple(gt_spacing[::-1])} mm")
    # (z, y, x) C-ordered -> (x, y, z) Fortran-ordered view: the official code's axis order and memory layout
    return gt.T, pred.T, tuple(float(s) for s in pred_spacing[::-1])  # type: ignore[return-value]


def evaluate_files(gt_path: PathLike, pred_path: Optional[PathLike], challenge: Optional[str] = None,
                   dilation_iterations: Optional[int] = None,
                   volume_threshold_mm3: Optional[float] = None) -> CaseEvaluation:
    """Evaluate one GT / prediction NIfTI pair (``pred_path=None``: empty prediction); see ``evaluate_case``.

    The returned ``CaseEvaluation.spacing`` is in ``(x, y, z)`` order.
    """
    dilation, threshold = resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    gt, pred, spacing = read_case_pair(gt_path, pred_path)
    return evaluate_case(gt, pred, spacing, dilation_iterations=dilation, volume_threshold_mm3=threshold)


def _case_tables(evaluation: CaseEvaluation, case: str) -> Tuple[List[Dict], pd.DataFrame]:
    rows = [{"case": case, "Labels": region, **evaluation[region].metrics()} for region in REGION_NAMES]
    lesions = evaluation.lesions_table()
    lesions.insert(0, "case", case)
    return rows, lesions


def _evaluate_one(job: Tuple[str, str, Optional[str], int, float]) -> Tuple[str, List[Dict], pd.DataFrame]:
    """Worker: evaluate one case given (case, gt path, pred path or None, dilation, threshold)."""
    case, gt_path, pred_path, dilation, threshold = job
    evaluation = evaluate_files(gt_path, pred_path, None, dilation, threshold)
    rows, lesions = _case_tables(evaluation, case)
    return case, rows, lesions


def case_jobs(gt_dir: PathLike, pred_dir: PathLike, missing_as_empty: bool = False) -> List[Tuple[str, str,
                                                                                                   Optional[str]]]:
    """(case, gt path, pred path or None) for every ``CASE.nii.gz`` of ``gt_dir``, after checking the folders.

    Raises ValueError for a missing or empty GT folder, a missing prediction folder, predictions without ground
    truth, and ground-truth cases without a prediction (unless ``missing_as_empty``: those get ``None``).
    """
    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    gt_cases = list_nifti_cases(gt_dir)
    if not gt_cases:
        raise ValueError(f"{gt_dir}: no .nii.gz ground-truth files")
    pred_cases = set(list_nifti_cases(pred_dir))
    extra = sorted(pred_cases - set(gt_cases))
    if extra:
        raise ValueError(f"{pred_dir}: {len(extra)} prediction(s) without ground truth in {gt_dir}: "
                         f"{', '.join(c + '.nii.gz' for c in extra[:5])}{' ...' if len(extra) > 5 else ''}")
    missing = [c for c in gt_cases if c not in pred_cases]
    if missing and not missing_as_empty:
        raise ValueError(f"{pred_dir}: no prediction for {len(missing)} ground-truth case(s): "
                         f"{', '.join(c + '.nii.gz' for c in missing[:5])}{' ...' if len(missing) > 5 else ''} "
                         f"(use --missing-as-empty / missing_as_empty=True to score them as empty predictions)")
    return [(c, str(gt_dir / f"{c}.nii.gz"), None if c in missing else str(pred_dir / f"{c}.nii.gz"))
            for c in gt_cases]


def evaluate_folders(gt_dir: PathLike, pred_dir: PathLike, challenge: Optional[str] = None, num_workers: int = 1,
                     missing_as_empty: bool = False, dilation_iterations: Optional[int] = None,
                     volume_threshold_mm3: Optional[float] = None, progress: bool = True,
                     with_lesions: bool = False) -> Union[pd.DataFrame, Tuple[pd.DataFrame, pd.DataFrame]]:
    """Evaluate every ``CASE.nii.gz`` of ``gt_dir`` against the same name in ``pred_dir``.

    Returns the results table: one row per (case, region), columns ``RESULT_COLUMNS`` (``case`` = file name without
    ``.nii.gz``, ``Labels`` = WT/TC/ET), cases sorted by name. With ``with_lesions`` also the per-lesion table
    (case, Labels, lesion_id, num_voxels, volume_mm3, matched_components, dice, hd95, scored). Cases run in
    ``num_workers`` processes with a tqdm progress bar (``progress``). Any bad case raises ValueError naming its
    file; nothing is returned then.
    """
    dilation, threshold = resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be an integer >= 1, got {num_workers!r}")
    jobs = [(case, gt, pred, dilation, threshold) for case, gt, pred in case_jobs(gt_dir, pred_dir, missing_as_empty)]
    results = _run_jobs(jobs, num_workers, progress)
    rows = [row for job in jobs for row in results[job[0]][0]]
    table = pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
    if not with_lesions:
        return table
    lesion_tables = [results[job[0]][1] for job in jobs]
    lesions = pd.concat(lesion_tables, ignore_index=True) if lesion_tables else pd.DataFrame()
    return table, lesions


def _run_jobs(jobs: Sequence[Tuple[str, str, Optional[str], int, float]], num_workers: int,
              progress: bool) -> Dict[str, Tuple[List[Dict], pd.DataFrame]]:
    from tqdm import tqdm

    results: Dict[str, Tuple[List[Dict], pd.DataFrame]] = {}
    bar = tqdm(total=len(jobs), desc="evaluate", unit="case", disable=not progress)
    try:
        if num_workers == 1 or len(jobs) == 1:
            for job in jobs:
                case, rows, lesions = _evaluate_one(job)
                results[case] = (rows, lesions)
                bar.update()
            return results
        import multiprocessing

        context = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(num_workers, len(jobs)), mp_context=context) as pool:
            pending = {pool.submit(_evaluate_one, job) for job in jobs}
            try:
                while pending:
                    done, pending = wait(pending, return_when=FIRST_EXCEPTION)
                    for future in done:
                        case, rows, lesions = future.result()  # re-raises a worker's error
                        results[case] = (rows, lesions)
                        bar.update()
            except BaseException:
                for future in pending:
                    future.cancel()
                raise
        return results
    finally:
        bar.close()


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Summary of a results table: for each region (WT, TC, ET) the Mean, StdDev (ddof=1), Median, 25quantile and
    75quantile (linear interpolation) of every metric over the cases.

    Returns a table with columns ``Labels, Statistic`` and the metric columns, 5 rows per region present.
    """
    missing = [c for c in ("Labels",) + METRIC_COLUMNS if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}")
    rows = []
    for region in REGION_NAMES:
        values = table.loc[table["Labels"] == region, list(METRIC_COLUMNS)].astype(float)
        if values.empty:
            continue
        stats = {"Mean": values.mean(), "StdDev": values.std(ddof=1), "Median": values.median(),
                 "25quantile": values.quantile(0.25), "75quantile": values.quantile(0.75)}
        for name in SUMMARY_STATISTICS:
            rows.append({"Labels": region, "Statistic": name, **stats[name].to_dict()})
    return pd.DataFrame(rows, columns=["Labels", "Statistic", *METRIC_COLUMNS])


def output_paths(results_csv: PathLike) -> Dict[str, Path]:
    """The files written beside ``results_csv``: ``results``, ``summary`` (``NAME_summary.csv``) and ``lesions``
    (``NAME_lesions.csv``)."""
    results_csv = Path(results_csv)
    stem = results_csv.name[: -len(".csv")] if results_csv.name.endswith(".csv") else results_csv.name
    return {"results": results_csv, "summary": results_csv.with_name(f"{stem}_summary.csv"),
            "lesions": results_csv.with_name(f"{stem}_lesions.csv")}


def write_results(table: pd.DataFrame, results_csv: PathLike, lesions: Optional[pd.DataFrame] = None,
                  summary: Optional[pd.DataFrame] = None) -> Dict[str, Path]:
    """Write the results table, its summary (computed if not given) and, if given, the lesion table, each
    atomically (temporary file + rename); returns the paths written."""
    paths = output_paths(results_csv)
    summary = summarize(table) if summary is None else summary
    tables = {"results": table, "summary": summary}
    if lesions is not None:
        tables["lesions"] = lesions
    with contextlib.ExitStack() as stack:  # all files are complete before any is moved into place
        for key, frame in tables.items():
            frame.to_csv(stack.enter_context(atomic_output(paths[key])), index=False)
    return {key: paths[key] for key in tables}
