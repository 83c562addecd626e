"""Evaluate NIfTI files and folders with the BraTS 2023 lesion-wise metrics; summarise and write the results.

Files are found and paired by :mod:`~nnunet_tcup.evaluation.inputs` (flat folders, nnU-Net ``labelsTs``, BraTS
case-folder trees), read through ``io_utils.read_image_zyx`` (verified files) and evaluated in NIfTI ``(x, y, z)``
axis order (the arrays transposed, a free view), exactly as the official code sees them through nibabel, so lesion
and component ids match the official ones too. Volumes are in mm^3 from the prediction's voxel spacing, HD95 in mm.
Cases run through the package's one worker pool (``nnunet_tcup.parallel.parallel_map``).
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import pandas as pd

from nnunet_tcup.csv_cells import safe_frame
from nnunet_tcup.evaluation.inputs import case_jobs, check_job_geometry, read_case_pair
from nnunet_tcup.evaluation.lesionwise import METRIC_COLUMNS, REGION_NAMES, CaseEvaluation, evaluate_case
from nnunet_tcup.evaluation.validation import resolve_parameters
from nnunet_tcup.io_utils import atomic_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = [
    "RESULT_COLUMNS",
    "SUMMARY_STATISTICS",
    "evaluate_files",
    "evaluate_folders",
    "output_paths",
    "read_case_pair",
    "summarize",
    "write_results",
]

PathLike = Union[str, "os.PathLike[str]"]

#: Columns of the per-case results table (one row per case and region).
RESULT_COLUMNS: tuple[str, ...] = ("case", "Labels", *METRIC_COLUMNS)

#: Statistics of the summary, in the order (and with the names) the BraTS scoring reports them.
SUMMARY_STATISTICS: tuple[str, ...] = ("Mean", "StdDev", "Median", "25quantile", "75quantile")

#: A worker's job: (case, GT path, prediction path or None, dilation iterations, volume threshold mm^3).
_Job = tuple[str, str, str | None, int, float]


def evaluate_files(
    gt_path: PathLike,
    pred_path: PathLike | None,
    challenge: str | None = None,
    dilation_iterations: int | None = None,
    volume_threshold_mm3: float | None = None,
) -> CaseEvaluation:
    """Evaluate one GT / prediction NIfTI pair (``pred_path=None``: empty prediction); see ``evaluate_case``.

    The returned ``CaseEvaluation.spacing`` is in ``(x, y, z)`` order.
    """
    dilation, threshold = resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    gt, pred, spacing = read_case_pair(gt_path, pred_path)
    return evaluate_case(gt, pred, spacing, dilation_iterations=dilation, volume_threshold_mm3=threshold)


def _evaluate_job(job: _Job) -> tuple[list[dict], pd.DataFrame]:
    """Worker: the result rows and the lesion table of one case."""
    case, gt_path, pred_path, dilation, threshold = job
    evaluation = evaluate_files(gt_path, pred_path, None, dilation, threshold)
    rows = [{"case": case, "Labels": region, **evaluation[region].metrics()} for region in REGION_NAMES]
    lesions = evaluation.lesions_table()
    lesions.insert(0, "case", case)
    return rows, lesions


def evaluate_folders(
    gt_dir: PathLike,
    pred_dir: PathLike,
    challenge: str | None = None,
    num_workers: int | None = 1,
    missing_as_empty: bool = False,
    dilation_iterations: int | None = None,
    volume_threshold_mm3: float | None = None,
    progress: bool = True,
    with_lesions: bool = False,
) -> pd.DataFrame | tuple[pd.DataFrame, pd.DataFrame]:
    """Evaluate every ground-truth case of ``gt_dir`` against the prediction with the same case id in ``pred_dir``.

    Folder layouts and pairing: :mod:`~nnunet_tcup.evaluation.inputs`. Every pair's headers are checked (readable,
    same grid) before any case is evaluated. Returns the results table: one row per (case, region), columns
    ``RESULT_COLUMNS`` (``Labels`` = WT/TC/ET), cases sorted by id; with ``with_lesions`` also the per-lesion table
    (case, Labels, lesion_id, num_voxels, volume_mm3, matched_components, dice, hd95, scored). Cases run in
    ``num_workers`` processes (None: ``nnunet_tcup.parallel.default_num_workers()``). A bad case raises ValueError
    naming its file; nothing is returned then.
    """
    from nnunet_tcup.parallel import parallel_map

    dilation, threshold = resolve_parameters(challenge, dilation_iterations, volume_threshold_mm3)
    pairs = case_jobs(gt_dir, pred_dir, missing_as_empty)
    check_job_geometry(pairs)
    jobs: list[_Job] = [
        (case, str(gt), None if pred is None else str(pred), dilation, threshold) for case, gt, pred in pairs
    ]
    results = parallel_map(
        _evaluate_job, jobs, num_workers=num_workers, desc="evaluate", progress=progress, label=lambda job: job[0]
    )
    table = pd.DataFrame([row for rows, _ in results for row in rows], columns=list(RESULT_COLUMNS))
    if not with_lesions:
        return table
    return table, pd.concat([lesions for _, lesions in results], ignore_index=True)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Summary of a results table: for each region (WT, TC, ET) the Mean, StdDev (ddof=1), Median, 25quantile and
    75quantile (linear interpolation) of every metric over the cases.

    Returns a table with columns ``Labels, Statistic`` and the metric columns, 5 rows per region present.
    """
    missing = [c for c in ("Labels", *METRIC_COLUMNS) if c not in table.columns]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}")
    rows = []
    for region in REGION_NAMES:
        values = table.loc[table["Labels"] == region, list(METRIC_COLUMNS)].astype(float)
        if values.empty:
            continue
        stats = {
            "Mean": values.mean(),
            "StdDev": values.std(ddof=1),
            "Median": values.median(),
            "25quantile": values.quantile(0.25),
            "75quantile": values.quantile(0.75),
        }
        for name in SUMMARY_STATISTICS:
            rows.append({"Labels": region, "Statistic": name, **stats[name].to_dict()})
    return pd.DataFrame(rows, columns=["Labels", "Statistic", *METRIC_COLUMNS])


def output_paths(results_csv: PathLike) -> dict[str, Path]:
    """The files written beside ``results_csv``: ``results``, ``summary`` (``NAME_summary.csv``) and ``lesions``
    (``NAME_lesions.csv``)."""
    results_csv = Path(results_csv)
    stem = results_csv.name[: -len(".csv")] if results_csv.name.endswith(".csv") else results_csv.name
    return {
        "results": results_csv,
        "summary": results_csv.with_name(f"{stem}_summary.csv"),
        "lesions": results_csv.with_name(f"{stem}_lesions.csv"),
    }


def write_results(
    table: pd.DataFrame,
    results_csv: PathLike,
    lesions: pd.DataFrame | None = None,
    summary: pd.DataFrame | None = None,
    figure: tuple[Figure, PathLike] | None = None,
) -> dict[str, Path]:
    """Write the results table, its summary (computed if not given), the lesion table (if given) and a figure
    (``(matplotlib figure, PNG path)``, if given), all or nothing: every file is first written completely to a
    temporary sibling, and only then are all moved into place. Text cells that a spreadsheet would read as a formula
    get a leading ``'`` (:mod:`nnunet_tcup.csv_cells`). Returns the paths written."""
    paths = output_paths(results_csv)
    summary = summarize(table) if summary is None else summary
    tables = {"results": table, "summary": summary}
    if lesions is not None:
        tables["lesions"] = lesions
    written = {key: paths[key] for key in tables}
    with contextlib.ExitStack() as stack:  # a failure anywhere inside removes every temporary file, moves none
        for key, frame in tables.items():
            safe_frame(frame).to_csv(stack.enter_context(atomic_output(paths[key])), index=False)
        if figure is not None:
            fig, png = figure
            fig.savefig(stack.enter_context(atomic_output(png)), dpi=150, format="png")
            written["figure"] = Path(png)
    return written
