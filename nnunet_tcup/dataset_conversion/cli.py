"""``nnunet_tcup convert`` and ``nnunet_tcup export`` sub-commands (argparse only at import time)."""

from __future__ import annotations

import argparse
import sys

from nnunet_tcup.parallel import positive_int

WORKERS_HELP = "worker processes (default: $nnUNet_def_n_proc if set, else the CPU count up to 4)"


def register(subparsers) -> None:
    """Add the ``convert`` and ``export`` sub-parsers."""
    convert = subparsers.add_parser(
        "convert",
        help="BraTS case folders -> nnU-Net raw dataset",
        description="Convert BraTS case folders into $nnUNet_raw/Dataset{ID:03d}_BraTS2023_{CH} with imagesTr, "
        "labelsTr, imagesTs, labelsTs (test cases that have a -seg file) and dataset.json. Layouts, auto-detected: "
        "BraTS 2023 (BraTS-CH-NNNNN-NNN/BraTS-CH-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}.nii.gz) and BraTS 2021/2020 "
        "(BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz, GLI only: t1 -> t1n, t1ce -> t1c, "
        "t2 -> t2w, flair -> t2f, label 4 -> 3); .nii or .nii.gz; __MACOSX/ and .DS_Store are skipped with a note. "
        "Channels: 0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f. Case ids keep the BraTS names. Every case is "
        "validated before anything is written (missing files, shape/spacing/affine mismatches, labels outside "
        "{0,1,2,3}, NaN/Inf voxels, truncated or unreadable files, duplicate ids, conflicting existing dataset). "
        "Re-running resumes, also after kill -9: cases recorded as complete are verified and skipped, temporary "
        "files of the killed run are removed, nothing existing is overwritten.",
    )
    convert.add_argument("--challenge", required=True, help="BraTS 2023 challenge: GLI, MEN, PED or SSA")
    convert.add_argument(
        "--dataset-id",
        required=True,
        type=int,
        help="nnU-Net dataset id (1-999); the folder is Dataset{ID:03d}_BraTS2023_{CH}",
    )
    convert.add_argument(
        "--train",
        required=True,
        metavar="DIR",
        help="folder of training case folders (each with the four modalities and -seg)",
    )
    convert.add_argument(
        "--test",
        metavar="DIR",
        default=None,
        help="optional folder of test/validation case folders, written to imagesTs; a case that has a -seg "
        "file also gets labelsTs/CASE.nii.gz (2023 labels; what `nnunet_tcup evaluate --gt` reads), a case "
        "without one is converted from its four modalities only",
    )
    convert.add_argument(
        "--mode",
        choices=("regions", "classes", "labels"),
        default="regions",
        help="regions (default, the package's formulation on every path): labels declare the BraTS regions WT=[1,2,3], TC=[1,3], ET=[3] with "
        "regions_class_order [2,1,3]: nnU-Net trains one sigmoid per region and paints predictions "
        "back into 2023 labels. classes: the paper's native classes, a plain label dataset "
        "{background: 0, NETC: 1, SNFH: 2, ET: 3} (the paper's formulation: nnUNetTrainerTCuPGAN trains three sigmoid class "
        "outputs on it, stock nnU-Net trainers train softmax). labels: alias of classes (writes the "
        "same dataset, recorded as classes)",
    )
    convert.add_argument("--num-workers", type=positive_int, default=None, help=WORKERS_HELP)
    convert.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    convert.set_defaults(func=run_convert)

    export = subparsers.add_parser(
        "export",
        help="nnU-Net predictions -> BraTS 2023 submission files",
        description="Turn nnU-Net predictions (PRED_DIR/BraTS-CH-NNNNN-NNN.nii.gz, from a dataset made by "
        "`nnunet_tcup convert`, --mode regions or classes) into BraTS 2023 submission files "
        "OUT_DIR/BraTS-CH-NNNNN-NNN.nii.gz: uint8, labels 1=NETC 2=SNFH 3=ET, with the exact shape and affine of the "
        "source case when --source is given. Everything is checked before anything is written.",
    )
    export.add_argument("pred_dir", metavar="PRED_DIR", help="folder with nnU-Net predictions CASE.nii.gz")
    export.add_argument("out_dir", metavar="OUT_DIR", help="folder for the submission files (created if missing)")
    export.add_argument("--challenge", required=True, help="BraTS 2023 challenge: GLI, MEN, PED or SSA")
    export.add_argument(
        "--source",
        metavar="DIR",
        default=None,
        help="where the source cases are, to copy their geometry and check the predictions against "
        "it: an nnU-Net images folder (CASE_0000.nii.gz), a converted dataset folder (imagesTs/ "
        "imagesTr), or the original BraTS case folders (CASE/CASE-t1n.nii.gz). Without it the "
        "predictions' own geometry is kept",
    )
    export.add_argument(
        "--allow-missing",
        action="store_true",
        help="with --source: export what there is when some source cases have no prediction (they are listed as a "
        "warning); without it such an incomplete submission is an error and nothing is written",
    )
    export.add_argument(
        "--overwrite",
        action="store_true",
        help="replace existing output files that differ (identical ones are always left as they are)",
    )
    export.add_argument("--num-workers", type=positive_int, default=None, help=WORKERS_HELP)
    export.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    export.set_defaults(func=run_export)


def run_convert(args: argparse.Namespace) -> int:
    from nnunet_tcup.dataset_conversion.brats2023 import convert_brats2023

    summary = convert_brats2023(
        args.challenge,
        args.dataset_id,
        args.train,
        args.test,
        mode=args.mode,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    for note in summary.notes:
        print(f"note: {note}")
    layout = "" if summary.layout == "brats2023" else f" from {summary.layout} case folders (label 4 written as 3)"
    print(
        f"{summary.dataset_dir}: {len(summary.converted)} case(s) converted{layout}, {len(summary.skipped)} already "
        f"complete and verified (skipped); {summary.num_training} training, {summary.num_test} test case(s); "
        f"dataset.json {'written' if summary.dataset_json_written else 'unchanged'}"
    )
    return 0


def run_export(args: argparse.Namespace) -> int:
    from nnunet_tcup.dataset_conversion.export import export_predictions

    summary = export_predictions(
        args.pred_dir,
        args.out_dir,
        args.challenge,
        source=args.source,
        num_workers=args.num_workers,
        overwrite=args.overwrite,
        progress=not args.no_progress,
        allow_missing=args.allow_missing,
    )
    if summary.missing:
        shown = ", ".join(summary.missing[:20]) + (" ..." if len(summary.missing) > 20 else "")
        print(
            f"warning: {len(summary.missing)} source case(s) have no prediction and are not in the submission: {shown}",
            file=sys.stderr,
        )
    print(
        f"{summary.out_dir}: {len(summary.written)} submission file(s) written, {len(summary.unchanged)} "
        f"already identical"
    )
    return 0
