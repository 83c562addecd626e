"""``nnunet_tcup postprocess {preset,tune,apply}``: the paper's lesion filter for nnU-Net predictions."""

from __future__ import annotations

import argparse

from nnunet_tcup.cli_options import add_nnunet_model_arguments
from nnunet_tcup.parallel import positive_int

__all__ = ["register", "run_apply", "run_preset", "run_tune"]

CHALLENGE_HELP = "BraTS 2023 challenge: GLI, MEN, PED or SSA (also accepted as BraTS-GLI, ...)"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "postprocess",
        help="the paper's lesion-size/depth filter: paper presets, tuning on cross-validation, applying",
        description="The TCuP-GAN lesion filter: per region WT, TC, ET keep a 3D component iff its mean area per "
        "z slice (voxels) is above the region's threshold and it spans at least min_slices slices. "
        "postprocessing.pkl files written here are applied by the stock nnUNetv2_apply_postprocessing.",
    )
    sub = parser.add_subparsers(dest="postprocess_command", metavar="ACTION")
    sub.required = True

    preset = sub.add_parser(
        "preset",
        help="write postprocessing.pkl/.json with the paper's thresholds",
        description="Write postprocessing.pkl (for nnUNetv2_apply_postprocessing -pp_pkl_file) "
        "and a readable postprocessing.json with the paper's thresholds "
        "(section 5.2) for one challenge. Existing files are backed up.",
    )
    preset.add_argument("--challenge", required=True, help=CHALLENGE_HELP)
    preset.add_argument("-o", "--output", required=True, help="folder to write postprocessing.pkl/.json into")
    preset.set_defaults(func=run_preset)

    tune = sub.add_parser(
        "tune",
        help="choose thresholds on cross-validation predictions, kept only if they help unseen cases",
        description="Choose A_WT, A_TC, A_ET (and min_slices) on cross-validation predictions for the mean (over WT, "
        "TC, ET and cases) lesion-wise Dice with the challenge's official evaluation parameters, so that "
        "the filter helps cases it was not tuned on: among the candidates within one paired standard "
        "error of the best, the one changing the fewest voxels is selected; a leave-one-case-out "
        "estimate (select without a case, score that case) gives its out-of-sample gain; the filter is "
        "written only if that gain exceeds --min-gain-se standard errors, otherwise an identity "
        "post-processing is written (nnUNetv2_apply_postprocessing and 'postprocess apply' then change "
        "nothing). Input: either --pred and --gt folders (same NAME.nii.gz in both), or a trained "
        "nnU-Net model (-d/-tr/-p/-c/-f): its fold_X/validation predictions against "
        "$nnUNet_preprocessed/DATASET/gt_segmentations, writing into "
        "TRAINER__PLANS__CONFIG/crossval_results_folds_..., where nnUNetv2_find_best_configuration writes "
        "its own postprocessing.pkl (so inference_instructions.txt applies ours; run "
        "find_best_configuration first, it recreates that folder). Existing files are backed up.",
    )
    tune.add_argument("--challenge", required=True, help=CHALLENGE_HELP + "; selects the evaluation parameters")
    tune.add_argument("--pred", help="folder of predictions NAME.nii.gz (labels 0-3) to tune on")
    tune.add_argument("--gt", help="folder of ground truths NAME.nii.gz for --pred")
    tune.add_argument("-o", "--output", help="with --pred: folder for postprocessing.pkl/.json (default: --pred)")
    add_nnunet_model_arguments(tune, "nnU-Net dataset name or id (instead of --pred/--gt)")
    tune.add_argument(
        "-f",
        "--folds",
        nargs="+",
        type=int,
        default=[0, 1, 2, 3, 4],
        help="with -d: folds whose validation predictions are used (default: 0 1 2 3 4)",
    )
    tune.add_argument(
        "--grid",
        choices=("paper", "wide"),
        default="paper",
        help="candidate set: 'paper' (default; the paper's rule: area thresholds per region, WT 0-200, "
        "TC 0-150, ET 0-50 voxels per slice, min_slices 5; 392 candidates) or 'wide' (WT 0-300, "
        "TC 0-200, ET 0-100, min_slices 1-10; 7,920 candidates: needs many cases)",
    )
    tune.add_argument(
        "--wt-thresholds",
        nargs="+",
        type=float,
        default=None,
        help="candidate WT thresholds, mean voxels per slice (replaces the grid's)",
    )
    tune.add_argument("--tc-thresholds", nargs="+", type=float, default=None, help="candidate TC thresholds")
    tune.add_argument("--et-thresholds", nargs="+", type=float, default=None, help="candidate ET thresholds")
    tune.add_argument(
        "--min-slices", nargs="+", type=int, default=None, help="candidate minimum numbers of z slices (paper grid: 5)"
    )
    tune.add_argument(
        "--min-gain-se",
        type=float,
        default=None,
        help="keep the filter only if its leave-one-case-out gain exceeds this many standard errors (default: 2)",
    )
    tune.add_argument(
        "--num-workers",
        type=positive_int,
        default=None,
        help="processes reading and caching cases (default: $nnUNet_def_n_proc or min(4, CPUs))",
    )
    tune.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    tune.set_defaults(func=run_tune)

    apply = sub.add_parser(
        "apply",
        help="filter a folder of predictions using a postprocessing.json (no pickle)",
        description="Apply the filter described by an nnunet_tcup postprocessing.json to every "
        "NAME.nii.gz in -i, writing to -o with the input's geometry. Reads JSON "
        "only, so it is safe with files from others (a pkl can run any code).",
    )
    apply.add_argument("-i", "--input", required=True, help="folder of predictions NAME.nii.gz (labels 0-3)")
    apply.add_argument("-o", "--output", required=True, help="output folder (must differ from -i)")
    apply.add_argument("--json", required=True, help="postprocessing.json written by 'postprocess preset' or 'tune'")
    apply.add_argument(
        "--num-workers",
        type=positive_int,
        default=None,
        help="worker processes (default: $nnUNet_def_n_proc or min(4, CPUs))",
    )
    apply.add_argument("--overwrite", action="store_true", help="replace existing files in the output folder")
    apply.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    apply.set_defaults(func=run_apply)


def _print_messages(messages) -> None:
    for message in messages:
        print(f"note: {message}")


def run_preset(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunet_tcup.challenges import check_challenge
    from nnunet_tcup.postprocessing.apply import describe
    from nnunet_tcup.postprocessing.lesion_filter import preset_parameters
    from nnunet_tcup.postprocessing.nnunet_results import postprocessing_json, write_postprocessing_files

    challenge = check_challenge(args.challenge)
    params = preset_parameters(challenge)
    doc = postprocessing_json(params, "paper preset (TCuP-GAN, section 5.2)", {"challenge": challenge})
    pkl, js, messages = write_postprocessing_files(Path(args.output), params, doc)
    _print_messages(messages)
    print(f"paper preset {describe(params, challenge)}\nwrote {pkl}\nwrote {js}")
    print(
        f"apply with: nnUNetv2_apply_postprocessing -i PRED -o PRED_PP -pp_pkl_file {pkl} -plans_json PLANS_JSON "
        f"-dataset_json DATASET_JSON\n        or: nnunet_tcup postprocess apply -i PRED -o PRED_PP --json {js}"
    )
    return 0


def _grid(args: argparse.Namespace):
    """The named grid with the thresholds given on the command line replacing its own; ``(grid, name)``."""
    from dataclasses import replace

    from nnunet_tcup.postprocessing.tuning import named_grid

    grid = named_grid(args.grid)
    changes = {
        key: tuple(value)
        for key, value in (
            ("wt", args.wt_thresholds),
            ("tc", args.tc_thresholds),
            ("et", args.et_thresholds),
            ("min_slices", args.min_slices),
        )
        if value is not None
    }
    if not changes:
        return grid, args.grid
    return replace(grid, **changes), f"{args.grid} (modified)"


def run_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunet_tcup.challenges import check_challenge
    from nnunet_tcup.postprocessing import nnunet_results as nr
    from nnunet_tcup.postprocessing.lesion_filter import FilterParameters
    from nnunet_tcup.postprocessing.tuning import DEFAULT_NOISE_FACTOR, pair_cases, pairs_from_folders, tune

    challenge = check_challenge(args.challenge)
    grid, grid_name = _grid(args)
    noise_factor = DEFAULT_NOISE_FACTOR if args.min_gain_se is None else args.min_gain_se
    from_folders = args.pred is not None or args.gt is not None
    if from_folders == (args.dataset is not None):
        raise ValueError("give either --pred and --gt, or -d DATASET (with -tr/-p/-c/-f)")
    notes = []
    layout = None
    if from_folders:
        if args.pred is None or args.gt is None:
            raise ValueError("--pred and --gt go together")
        pairs = pairs_from_folders(Path(args.pred), Path(args.gt))
        output = Path(args.output) if args.output else Path(args.pred)
        sources: dict[str, object] = {
            "predictions": str(Path(args.pred).resolve()),
            "ground_truth": str(Path(args.gt).resolve()),
        }
    else:
        if args.output:
            raise ValueError("-o is only for --pred/--gt; with -d the files go where nnU-Net keeps its own")
        layout = nr.locate_results(args.dataset, args.trainer, args.plans, args.configuration, args.folds)
        pairs = pair_cases(
            nr.validation_predictions(layout), layout.gt_folder, ", ".join(str(f) for f in layout.validation_folders)
        )
        output = layout.crossval_folder
        sources = {
            "predictions": [str(f) for f in layout.validation_folders],
            "ground_truth": str(layout.gt_folder),
            "dataset": layout.dataset_name,
            "trainer": args.trainer,
            "plans": args.plans,
            "configuration": args.configuration,
            "folds": list(args.folds),
        }
    check_output_folder(output)
    print(f"tuning the lesion filter for {challenge} on {len(pairs)} cases, {grid.size} candidates ({grid_name} grid)")
    report = tune(
        pairs,
        challenge,
        grid,
        grid_name,
        num_workers=args.num_workers,
        progress=not args.no_progress,
        noise_factor=noise_factor,
    )
    report.update(sources)
    final = FilterParameters.from_kwargs(report["kwargs"])
    if layout is not None:
        notes += nr.prepare_crossval_folder(layout)
    how = "tuned on cross-validation predictions (nnunet_tcup postprocess tune)"
    if not report["filter_kept"]:
        how += "; no filter passed the out-of-sample test, so this is the identity"
    pkl, js, messages = nr.write_postprocessing_files(output, final, nr.postprocessing_json(final, how, report))
    _print_messages(notes + messages)
    print_tune_summary(report)
    print(f"wrote {pkl}\nwrote {js}")
    if layout is not None:
        print(
            f"the postprocessing command in inference_instructions.txt now applies it:\n"
            f"  nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {pkl} "
            f"-plans_json {layout.crossval_folder / 'plans.json'}"
        )
        _warn_if_other_best(layout, pkl)
    return 0


def check_output_folder(folder) -> None:
    """ValueError before any work if ``folder`` cannot be a folder: it, or its nearest existing parent, is a file."""
    from pathlib import Path

    path = Path(folder)
    while not path.exists() and path.parent != path:
        path = path.parent
    if path.exists() and not path.is_dir():
        raise ValueError(f"{folder}: {path} is a file, not a folder")


def print_tune_summary(report: dict) -> None:
    """The tuning result for the console: selection, in- and out-of-sample gains, the decision, warnings."""
    from nnunet_tcup.postprocessing.apply import describe
    from nnunet_tcup.postprocessing.lesion_filter import FilterParameters

    challenge = report["challenge"]
    selected = FilterParameters.from_kwargs(report["selected"]["kwargs"])
    for warning in report["warnings"]:
        print(f"warning: {warning}")
    print(f"selected: {describe(selected, challenge)}")
    before, chosen = report["lesionwise_dice_before"], report["selected"]["lesionwise_dice"]
    preset = report["paper_preset"]["lesionwise_dice"]
    for key in ("WT", "TC", "ET", "mean"):
        print(
            f"  lesion-wise Dice {key:4s}: no filter {before[key]:.4f}  selected {chosen[key]:.4f}  "
            f"(paper preset {preset[key]:.4f})"
        )
    oos = report["out_of_sample"]
    print(
        f"gain of the mean lesion-wise Dice: in-sample {report['in_sample_gain']:+.4f}; out-of-sample "
        + (
            f"{oos['gain_mean']:+.4f} +/- {oos['gain_se']:.4f} (leave-one-case-out, {report['n_cases']} cases)"
            if oos
            else "not estimated (too few cases)"
        )
    )
    verdict = "KEPT" if report["filter_kept"] else "NOT KEPT: writing the identity (predictions stay unchanged)"
    print(f"filter {verdict}: {report['decision']}")


def _warn_if_other_best(layout, pkl) -> None:
    """If nnUNetv2_find_best_configuration picked another model or an ensemble, say so."""
    import json

    if not layout.inference_information.is_file():
        return
    try:
        info = json.loads(layout.inference_information.read_text())
        chosen = info["best_model_or_ensemble"]["postprocessing_file"]
    except (ValueError, KeyError, TypeError):
        return
    from pathlib import Path

    if Path(chosen).resolve() != Path(pkl).resolve():
        print(
            f"note: {layout.inference_information} points to {chosen} (another model or an ensemble won); "
            f"tune on that folder with --pred/--gt/-o to replace that file"
        )


def run_apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunet_tcup.postprocessing.apply import apply_to_folder, describe
    from nnunet_tcup.postprocessing.nnunet_results import read_postprocessing_json

    params = read_postprocessing_json(Path(args.json))
    written = apply_to_folder(
        Path(args.input),
        Path(args.output),
        params,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    print(f"filtered {len(written)} case(s) into {args.output} with {describe(params)}")
    return 0
