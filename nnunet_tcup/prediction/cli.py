"""``nnunet_tcup predict``: segment BraTS cases with a trained model (argparse only at import time)."""

from __future__ import annotations

import argparse
from pathlib import Path

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.cli_options import add_nnunet_model_arguments
from nnunet_tcup.parallel import non_negative_int, positive_int

__all__ = ["register", "run_predict"]

_MODALITY_HELP = {
    "t1n": "T1 native",
    "t1c": "T1 contrast-enhanced (BraTS 2021: t1ce)",
    "t2w": "T2-weighted (BraTS 2021: t2)",
    "t2f": "T2-FLAIR (BraTS 2021: flair)",
}


def register(subparsers) -> None:
    """Add the ``predict`` sub-parser."""
    p = subparsers.add_parser(
        "predict",
        help="segment BraTS cases with a trained model: BraTS-labelled CASE.nii.gz on the source geometry",
        description="Segment BraTS cases with a trained nnU-Net model in one command: nnU-Net's predictor (the "
        "ensemble of the folds, with mirroring), the model's tuned lesion filter when `nnunet_tcup postprocess tune` "
        "wrote one for these folds (MODEL/crossval_results_folds_F/postprocessing.json), then what `nnunet_tcup "
        "export` writes: OUTPUT/CASE.nii.gz, uint8, labels 1=NETC 2=SNFH 3=ET (ET = 4 for BraTS 2021/2020 cases), "
        "with the exact shape and affine of the case's t1n image. Same result as nnUNetv2_predict + "
        "postprocess apply + export. Inputs: a folder of BraTS case folders (2023: BraTS-GLI-00001-000/"
        "BraTS-GLI-00001-000-{t1n,t1c,t2w,t2f}.nii.gz; 2021/2020: BraTS2021_00001/BraTS2021_00001_{t1,t1ce,t2,"
        "flair}.nii.gz; .nii or .nii.gz; a -seg file is ignored), one case folder, or one case's four files "
        "(--t1n --t1c --t2w --t2f). Every case is validated first; outputs are all or nothing (nothing is written "
        "unless every case of this part succeeds), an identical existing output is left as it is and a different "
        "one is an error.",
    )
    p.add_argument(
        "-i",
        "--input",
        metavar="INPUT",
        help="folder of BraTS case folders, or one case folder (instead of --t1n --t1c --t2w --t2f)",
    )
    p.add_argument(
        "-o",
        "--output",
        required=True,
        metavar="OUTPUT",
        help="output folder for CASE.nii.gz (created if missing); with --t1n ... it may instead be a file ending in "
        ".nii.gz",
    )
    for modality in MODALITIES:
        p.add_argument(f"--{modality}", metavar="FILE", help=f"one case's {_MODALITY_HELP[modality]} image")
    p.add_argument(
        "--case-id",
        metavar="ID",
        help="with --t1n ...: the case id naming OUTPUT/ID.nii.gz (default: taken from the t1n file name, e.g. "
        "BraTS-GLI-00001-000-t1n.nii.gz, or from an OUTPUT file name); a BraTS2021_NNNNN id gets ET = 4",
    )
    model = p.add_argument_group("model (-m, or -d with -tr/-c/-p as nnUNetv2_predict resolves them)")
    model.add_argument(
        "-m",
        "--model",
        metavar="MODEL_FOLDER",
        help="trained model folder $nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION",
    )
    add_nnunet_model_arguments(model, "dataset name or id under $nnUNet_results")
    model.add_argument(
        "-f",
        "--folds",
        nargs="+",
        metavar="K",
        default=None,
        help="folds to ensemble (numbers, or 'all'; default: every fold_K folder holding the checkpoint)",
    )
    model.add_argument(
        "--checkpoint", default="checkpoint_final.pth", help="checkpoint file name in each fold (default %(default)s)"
    )
    run = p.add_argument_group("running")
    run.add_argument(
        "--device",
        default="auto",
        choices=("auto", "cpu", "cuda"),
        help="auto (default): cuda if torch sees a GPU, else cpu",
    )
    run.add_argument(
        "--disable-tta",
        action="store_true",
        help="no test-time mirroring (one network evaluation per patch instead of one per flip: faster, usually a little less accurate)",
    )
    run.add_argument(
        "--no-postprocessing",
        action="store_true",
        help="do not apply the model's tuned lesion filter even when there is one",
    )
    run.add_argument(
        "--num-workers",
        type=positive_int,
        default=None,
        help="processes for checking, nnU-Net's preprocessing and export (default: $nnUNet_def_n_proc if set, else "
        "the CPU count up to 4)",
    )
    run.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    run.add_argument(
        "-num_parts",
        "--num-parts",
        dest="num_parts",
        type=positive_int,
        default=1,
        metavar="N",
        help="split the cases into N parts for N jobs (e.g. a cluster job array) writing into one OUTPUT; the split "
        "is nnUNetv2_predict's (every N-th case of the sorted case ids). Default 1",
    )
    run.add_argument(
        "-part_id",
        "--part-id",
        dest="part_id",
        type=non_negative_int,
        default=0,
        metavar="K",
        help="which part this job predicts, 0 .. N-1 (default 0)",
    )
    p.set_defaults(func=run_predict)


def _model_folder(args: argparse.Namespace) -> Path:
    from nnunet_tcup.prediction.model import model_folder_from_ids

    if (args.model is None) == (args.dataset is None):
        raise ValueError("give the model either as -m MODEL_FOLDER or as -d DATASET (with -tr/-c/-p)")
    if args.model is not None:
        return Path(args.model)
    return model_folder_from_ids(args.dataset, args.trainer, args.configuration, args.plans)


def _single_case_id(args: argparse.Namespace, output: Path) -> str:
    """--case-id, else the id in a BraTS-named t1n file, else the output file's name."""
    from nnunet_tcup.dataset_conversion.layout import challenge_of_case_id

    if args.case_id:
        return str(args.case_id)
    name = Path(args.t1n).name
    for ending in (".nii.gz", ".nii"):
        for suffix in ("-t1n", "_t1"):
            stem = name[: -len(suffix + ending)]
            if name.endswith(suffix + ending) and challenge_of_case_id(stem):
                return stem
    if output.name.endswith(".nii.gz"):
        return output.name[: -len(".nii.gz")]
    raise ValueError(
        f"{args.t1n}: cannot tell the case id from this file name; give --case-id ID (the output is OUTPUT/ID.nii.gz)"
    )


def run_predict(args: argparse.Namespace) -> int:
    from nnunet_tcup.prediction.api import predict_case, predict_cases

    files = {m: getattr(args, m) for m in MODALITIES}
    single = any(files.values())
    if single == (args.input is not None):
        raise ValueError("give the cases either as -i INPUT or as --t1n --t1c --t2w --t2f (one case)")
    common = {
        "model_folder": _model_folder(args),
        "folds": args.folds,
        "checkpoint": args.checkpoint,
        "device": args.device,
        "use_mirroring": not args.disable_tta,
        "postprocessing": not args.no_postprocessing,
        "num_workers": args.num_workers,
        "progress": not args.no_progress,
    }
    output = Path(args.output)
    if single:
        if (args.num_parts, args.part_id) != (1, 0):
            raise ValueError("-num_parts/-part_id split a folder of cases; they do not apply to --t1n ...")
        missing = [m for m in MODALITIES if not files[m]]
        if missing:
            raise ValueError(f"missing --{' --'.join(missing)}: one case needs all four modalities")
        case_id = _single_case_id(args, output)
        target = output if output.name.endswith(".nii.gz") else output / f"{case_id}.nii.gz"
        summary = predict_case(**files, output_file=target, case_id=case_id, **common)
    else:
        if args.case_id:
            raise ValueError("--case-id is for --t1n ...; with -i the case folder names are the ids")
        summary = predict_cases(args.input, output, num_parts=args.num_parts, part_id=args.part_id, **common)
    for note in summary.notes:
        print(f"note: {note}")
    _print_summary(summary, args)
    return 0


def _print_summary(summary, args: argparse.Namespace) -> None:
    from nnunet_tcup.postprocessing.apply import describe

    model = summary.model
    filtering = "not applied" if model.postprocessing is None else describe(model.postprocessing)
    part = f", part {args.part_id} of {args.num_parts}" if args.num_parts > 1 else ""
    print(
        f"{model.folder}: folds {' '.join(map(str, model.folds))}, {summary.device}, mirroring "
        f"{'off' if args.disable_tta else 'on'}; post-processing: {filtering}"
    )
    print(
        f"{args.output}: {len(summary.written)} segmentation(s) written, {len(summary.unchanged)} already identical "
        f"({len(summary.cases)} case(s){part})"
    )
