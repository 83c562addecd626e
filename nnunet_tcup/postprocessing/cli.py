"""``nnunet_tcup postprocess {preset,tune,apply}``: the paper's lesion filter for nnU-Net predictions."""
from __future__ import annotations

import argparse

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

    preset = sub.add_parser("preset", help="write postprocessing.pkl/.json with the paper's thresholds",
                            description="Write postprocessing.pkl (for nnUNetv2_apply_postprocessing -pp_pkl_file) "
                                        "and a readable postprocessing.json with the paper's thresholds "
                                        "(section 5.2) for one challenge. Existing files are backed up.")
    preset.add_argument("--challenge", required=True, help=CHALLENGE_HELP)
    preset.add_argument("-o", "--output", required=True, help="folder to write postprocessing.pkl/.json into")
    preset.set_defaults(func=run_preset)

    tune = sub.add_parser(
        "tune", help="search thresholds maximising lesion-wise Dice on cross-validation predictions",
        description="Grid-search A_WT, A_TC, A_ET and min_slices to maximise the mean (over WT, TC, ET and cases) "
                    "lesion-wise Dice with the challenge's official evaluation parameters. Input: either --pred and "
                    "--gt folders (same NAME.nii.gz in both), or a trained nnU-Net model (-d/-tr/-p/-c/-f): its "
                    "fold_X/validation predictions against $nnUNet_preprocessed/DATASET/gt_segmentations, writing "
                    "into TRAINER__PLANS__CONFIG/crossval_results_folds_..., where nnUNetv2_find_best_configuration "
                    "writes its own postprocessing.pkl (so inference_instructions.txt applies ours; run "
                    "find_best_configuration first, it recreates that folder). Existing files are backed up.")
    tune.add_argument("--challenge", required=True, help=CHALLENGE_HELP + "; selects the evaluation parameters")
    tune.add_argument("--pred", help="folder of predictions NAME.nii.gz (labels 0-3) to tune on")
    tune.add_argument("--gt", help="folder of ground truths NAME.nii.gz for --pred")
    tune.add_argument("-o", "--output", help="with --pred: folder for postprocessing.pkl/.json (default: --pred)")
    tune.add_argument("-d", "--dataset", help="nnU-Net dataset name or id (instead of --pred/--gt)")
    tune.add_argument("-tr", "--trainer", default="nnUNetTrainerTCuPGAN",
                      help="with -d: trainer class name (default: nnUNetTrainerTCuPGAN)")
    tune.add_argument("-p", "--plans", default="nnUNetPlans", help="with -d: plans identifier (default: nnUNetPlans)")
    tune.add_argument("-c", "--configuration", default="3d_fullres",
                      help="with -d: configuration (default: 3d_fullres)")
    tune.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4],
                      help="with -d: folds whose validation predictions are used (default: 0 1 2 3 4)")
    tune.add_argument("--wt-thresholds", nargs="+", type=float, default=None,
                      help="candidate WT thresholds, mean voxels per slice (default: 0 10 25 50 75 100 125 150 200 "
                           "250 300)")
    tune.add_argument("--tc-thresholds", nargs="+", type=float, default=None,
                      help="candidate TC thresholds (default: 0 5 10 25 50 75 100 125 150 200)")
    tune.add_argument("--et-thresholds", nargs="+", type=float, default=None,
                      help="candidate ET thresholds (default: 0 5 10 15 20 25 50 75 100)")
    tune.add_argument("--min-slices", nargs="+", type=int, default=None,
                      help="candidate minimum numbers of z slices (default: 1 2 3 4 5 6 8 10)")
    tune.add_argument("--num-workers", type=int, default=None,
                      help="processes reading and caching cases (default: $nnUNet_def_n_proc or min(4, CPUs))")
    tune.set_defaults(func=run_tune)

    apply = sub.add_parser("apply", help="filter a folder of predictions using a postprocessing.json (no pickle)",
                           description="Apply the filter described by an nnunet_tcup postprocessing.json to every "
                                       "NAME.nii.gz in -i, writing to -o with the input's geometry. Reads JSON "
                                       "only, so it is safe with files from others (a pkl can run any code).")
    apply.add_argument("-i", "--input", required=True, help="folder of predictions NAME.nii.gz (labels 0-3)")
    apply.add_argument("-o", "--output", required=True, help="output folder (must differ from -i)")
    apply.add_argument("--json", required=True, help="postprocessing.json written by 'postprocess preset' or 'tune'")
    apply.add_argument("--num-workers", type=int, default=1, help="worker processes (default: 1)")
    apply.add_argument("--overwrite", action="store_true", help="replace existing files in the output folder")
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
    print(f"apply with: nnUNetv2_apply_postprocessing -i PRED -o PRED_PP -pp_pkl_file {pkl} -plans_json PLANS_JSON "
          f"-dataset_json DATASET_JSON\n        or: nnunet_tcup postprocess apply -i PRED -o PRED_PP --json {js}")
    return 0


def _grid(args: argparse.Namespace):
    from nnunet_tcup.postprocessing.tuning import ThresholdGrid

    defaults = ThresholdGrid()
    return ThresholdGrid(
        wt=tuple(args.wt_thresholds) if args.wt_thresholds is not None else defaults.wt,
        tc=tuple(args.tc_thresholds) if args.tc_thresholds is not None else defaults.tc,
        et=tuple(args.et_thresholds) if args.et_thresholds is not None else defaults.et,
        min_slices=tuple(args.min_slices) if args.min_slices is not None else defaults.min_slices,
    )


def run_tune(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunet_tcup.challenges import check_challenge
    from nnunet_tcup.postprocessing import nnunet_results as nr
    from nnunet_tcup.postprocessing.apply import describe
    from nnunet_tcup.postprocessing.lesion_filter import FilterParameters
    from nnunet_tcup.postprocessing.tuning import default_num_workers, pair_cases, pairs_from_folders, tune

    challenge = check_challenge(args.challenge)
    grid = _grid(args)
    workers = default_num_workers() if args.num_workers is None else args.num_workers
    if workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {workers}")
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
        sources = {"predictions": str(Path(args.pred).resolve()), "ground_truth": str(Path(args.gt).resolve())}
    else:
        if args.output:
            raise ValueError("-o is only for --pred/--gt; with -d the files go where nnU-Net keeps its own")
        layout = nr.locate_results(args.dataset, args.trainer, args.plans, args.configuration, args.folds)
        pairs = pair_cases(nr.validation_predictions(layout), layout.gt_folder,
                           ", ".join(str(f) for f in layout.validation_folders))
        output = layout.crossval_folder
        sources = {"predictions": [str(f) for f in layout.validation_folders], "ground_truth": str(layout.gt_folder),
                   "dataset": layout.dataset_name, "trainer": args.trainer, "plans": args.plans,
                   "configuration": args.configuration, "folds": list(args.folds)}
    print(f"tuning the lesion filter for {challenge} on {len(pairs)} cases, {grid.size} candidates")
    report = tune(pairs, challenge, grid, num_workers=workers, progress=True)
    report.update(sources)
    best = FilterParameters.from_kwargs(report["kwargs"])
    if layout is not None:
        notes += nr.prepare_crossval_folder(layout)
    doc = nr.postprocessing_json(best, "tuned on cross-validation predictions (nnunet_tcup postprocess tune)",
                                 report)
    pkl, js, messages = nr.write_postprocessing_files(output, best, doc)
    _print_messages(notes + messages)
    before, after = report["lesionwise_dice_before"], report["lesionwise_dice_after"]
    preset = report["paper_preset"]["lesionwise_dice"]
    print(f"best: {describe(best, challenge)}")
    for key in ("WT", "TC", "ET", "mean"):
        print(f"  lesion-wise Dice {key:4s}: before {before[key]:.4f}  after {after[key]:.4f}  "
              f"(paper preset {preset[key]:.4f})")
    print(f"wrote {pkl}\nwrote {js}")
    if layout is not None:
        print(f"the postprocessing command in inference_instructions.txt now applies it:\n"
              f"  nnUNetv2_apply_postprocessing -i OUTPUT_FOLDER -o OUTPUT_FOLDER_PP -pp_pkl_file {pkl} "
              f"-plans_json {layout.crossval_folder / 'plans.json'}")
        _warn_if_other_best(layout, pkl)
    return 0


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
        print(f"note: {layout.inference_information} points to {chosen} (another model or an ensemble won); "
              f"tune on that folder with --pred/--gt/-o to replace that file")


def run_apply(args: argparse.Namespace) -> int:
    from pathlib import Path

    from nnunet_tcup.postprocessing.apply import apply_to_folder, describe
    from nnunet_tcup.postprocessing.nnunet_results import read_postprocessing_json

    params = read_postprocessing_json(Path(args.json))
    written = apply_to_folder(Path(args.input), Path(args.output), params, num_workers=args.num_workers,
                              overwrite=args.overwrite)
    print(f"filtered {len(written)} case(s) into {args.output} with {describe(params)}")
    return 0
