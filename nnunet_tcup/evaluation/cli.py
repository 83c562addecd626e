"""``nnunet_tcup evaluate``: BraTS 2023 lesion-wise evaluation of a prediction folder against a ground-truth folder."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import pandas

__all__ = ["check_output_path", "print_summary", "register", "run"]

WORKERS_HELP = (
    "cases evaluated in parallel worker processes (default: $nnUNet_def_n_proc if set, else the CPU count up to 4)"
)


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``evaluate`` sub-command."""
    from nnunet_tcup.parallel import positive_int

    parser = subparsers.add_parser(
        "evaluate",
        help="BraTS 2023 lesion-wise evaluation (official numbers) of a prediction folder",
        description="Score every ground-truth case of --gt against the prediction with the same case id in --pred "
        "with the official BraTS 2023 lesion-wise metrics (GLI/MEN/PED/SSA; labels 1 NETC, 2 SNFH, 3 ET; regions WT, "
        "TC, ET). Writes one row per (case, region) to the output CSV, the summary (mean, std, median, quartiles) to "
        "NAME_summary.csv and the per-lesion table to NAME_lesions.csv beside it, and prints the summary. Every "
        "file is verified (complete gzip stream, integer labels 0-3, no NaN; files of BraTS 2021/2020 cases such as "
        "BraTS2021_00001 may use ET = 4, read as 3) and each prediction must lie on its ground truth's grid (shape, "
        "spacing, origin, direction). Entries that are not label files are skipped with a note. Nothing is written "
        "unless every case succeeds.",
    )
    parser.add_argument(
        "--gt",
        required=True,
        metavar="GT_DIR",
        help="ground truth: a folder of label files CASE.nii.gz / CASE.nii (e.g. nnU-Net labelsTs, as written by "
        "`nnunet_tcup convert --test`), or a BraTS case-folder tree CASE/CASE-seg.nii.gz (BraTS 2021/2020: "
        "BraTS2021_00001/BraTS2021_00001_seg.nii.gz, label 4 read as 3); a -seg / _seg suffix is ignored when pairing",
    )
    parser.add_argument(
        "--pred",
        required=True,
        metavar="PRED_DIR",
        help="folder of predicted label files CASE.nii.gz (nnUNetv2_predict or `nnunet_tcup export` output); "
        "labels 0-3",
    )
    parser.add_argument(
        "--challenge",
        required=True,
        metavar="CH",
        help="GLI, MEN, PED or SSA: sets the official dilation (GLI/PED/SSA 3, MEN 1) and lesion volume threshold "
        "(50 mm^3)",
    )
    parser.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="RESULTS_CSV",
        help="results CSV FILE to write (a file, not a folder as -o is for other commands; NAME_summary.csv "
        "and NAME_lesions.csv go beside it; columns case, Labels, Num_TP, Num_FP, Num_FN, Sensitivity, Specificity, "
        "Legacy_Dice, Legacy_HD95, GT_Complete_Volume, LesionWise_Score_Dice, LesionWise_Score_HD95)",
    )
    parser.add_argument(
        "--plot",
        metavar="FIG.png",
        default=None,
        help="also save a PNG figure of the per-case lesion-wise Dice and HD95",
    )
    parser.add_argument("--num-workers", type=positive_int, default=None, metavar="N", help=WORKERS_HELP)
    parser.add_argument(
        "--missing-as-empty",
        action="store_true",
        help="score a ground-truth case without a prediction as an empty prediction instead of stopping with an error",
    )
    parser.add_argument(
        "--dilation-iterations",
        type=int,
        default=None,
        metavar="D",
        help="override the challenge's GT dilation iterations (expert use)",
    )
    parser.add_argument(
        "--volume-threshold",
        type=float,
        default=None,
        metavar="MM3",
        help="override the challenge's lesion volume threshold in mm^3 (expert use)",
    )
    parser.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files (otherwise an existing output is an error)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.set_defaults(func=run)


def check_output_path(path: Path, overwrite: bool) -> None:
    """Raise ValueError unless ``path`` can become an output file: not a directory, not existing (unless
    ``overwrite``), and no part of its parent path is a file."""
    if path.is_dir():
        raise ValueError(f"{path}: is a directory, expected a file name")
    if path.exists() and not overwrite:
        raise ValueError(f"{path}: already exists (use --overwrite to replace it)")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{path}: {parent} is a file, not a directory")
            break


def run(args: argparse.Namespace) -> int:
    """Check the outputs, evaluate, write the CSV files and figure all together, print the summary; exit code."""
    from nnunet_tcup.challenges import check_challenge
    from nnunet_tcup.evaluation.folders import evaluate_folders, output_paths, summarize, write_results
    from nnunet_tcup.evaluation.validation import resolve_parameters

    challenge = check_challenge(args.challenge)
    resolve_parameters(challenge, args.dilation_iterations, args.volume_threshold)  # fail early on bad values
    outputs = list(output_paths(args.output).values())
    if args.plot is not None:
        if not str(args.plot).lower().endswith(".png"):
            raise ValueError(f"{args.plot}: --plot must name a .png file")
        outputs.append(Path(args.plot))
    for path in outputs:
        check_output_path(path, args.overwrite)

    table, lesions = evaluate_folders(
        args.gt,
        args.pred,
        challenge,
        num_workers=args.num_workers,
        missing_as_empty=args.missing_as_empty,
        dilation_iterations=args.dilation_iterations,
        volume_threshold_mm3=args.volume_threshold,
        progress=not args.no_progress,
        with_lesions=True,
    )
    summary = summarize(table)
    n_cases = table["case"].nunique()
    figure = None
    if args.plot is not None:
        from nnunet_tcup.evaluation.plotting import lesionwise_figure

        title = f"BraTS 2023 {challenge} lesion-wise metrics per case (n = {n_cases})"
        figure = (lesionwise_figure(table, title), args.plot)
    try:
        written = write_results(table, args.output, lesions, summary, figure)
    finally:
        if figure is not None:
            from nnunet_tcup.evaluation.plotting import close_figure

            close_figure(figure[0])
    print_summary(summary, challenge, n_cases)
    for key, path in written.items():
        print(f"{key:8s} {path}")
    return 0


def print_summary(summary: pandas.DataFrame, challenge: str, n_cases: int) -> None:
    """Print the summary as a table: rows = region x statistic, columns = the metrics (short names)."""
    short = {
        "Num_TP": "TP",
        "Num_FP": "FP",
        "Num_FN": "FN",
        "Sensitivity": "Sens",
        "Specificity": "Spec",
        "Legacy_Dice": "Dice",
        "Legacy_HD95": "HD95",
        "GT_Complete_Volume": "GT_vol_mm3",
        "LesionWise_Score_Dice": "LW_Dice",
        "LesionWise_Score_HD95": "LW_HD95",
    }
    shown = summary.rename(columns=short).set_index(["Labels", "Statistic"])
    print(
        f"BraTS 2023 {challenge} lesion-wise evaluation, {n_cases} case(s) "
        "(LW_ = lesion-wise; Dice/HD95 = legacy whole-region):"
    )
    print(shown.to_string(float_format=lambda v: f"{v:.4f}"))
