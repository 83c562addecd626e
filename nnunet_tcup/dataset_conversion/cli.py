"""``nnunet_tcup convert`` and ``nnunet_tcup export`` sub-commands (argparse only at import time)."""
from __future__ import annotations

import argparse
import os


def _default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def register(subparsers) -> None:
    """Add the ``convert`` and ``export`` sub-parsers."""
    workers = _default_workers()
    convert = subparsers.add_parser(
        "convert", help="BraTS 2023 case folders -> nnU-Net raw dataset",
        description="Convert BraTS 2023 case folders (BraTS-CH-NNNNN-NNN/BraTS-CH-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}"
        ".nii.gz) into $nnUNet_raw/Dataset{ID:03d}_BraTS2023_{CH} with imagesTr, labelsTr, imagesTs and dataset.json. "
        "Channels: 0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f. Case ids keep the BraTS names. Every case is "
        "validated before anything is written (missing files, shape/spacing/affine mismatches, labels outside "
        "{0,1,2,3}, non-finite voxels, unreadable files, duplicate ids, conflicting existing dataset). Re-running "
        "resumes: cases recorded as complete are verified and skipped, nothing existing is overwritten.")
    convert.add_argument("--challenge", required=True, help="BraTS 2023 challenge: GLI, MEN, PED or SSA")
    convert.add_argument("--dataset-id", required=True, type=int,
                         help="nnU-Net dataset id (1-999); the folder is Dataset{ID:03d}_BraTS2023_{CH}")
    convert.add_argument("--train", required=True, metavar="DIR",
                         help="folder of training case folders (each with the four modalities and -seg)")
    convert.add_argument("--test", metavar="DIR", default=None,
                         help="optional folder of test/validation case folders (modalities only; a -seg file there "
                         "is ignored), written to imagesTs")
    convert.add_argument("--mode", choices=("regions", "labels"), default="regions",
                         help="regions (default): train the BraTS regions WT=[1,2,3], TC=[1,3], ET=[3] with "
                         "regions_class_order [2,1,3], so predictions carry 2023 labels; labels: train the classes "
                         "background/NETC(1)/SNFH(2)/ET(3)")
    convert.add_argument("--num-workers", type=_positive_int, default=workers,
                         help=f"worker processes (default: CPU count up to 8, here {workers})")
    convert.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    convert.set_defaults(func=run_convert)

    export = subparsers.add_parser(
        "export", help="nnU-Net predictions -> BraTS 2023 submission files",
        description="Turn nnU-Net predictions (PRED_DIR/BraTS-CH-NNNNN-NNN.nii.gz, from a dataset made by "
        "`nnunet_tcup convert` in regions or labels mode) into BraTS 2023 submission files "
        "OUT_DIR/BraTS-CH-NNNNN-NNN.nii.gz: uint8, labels 1=NETC 2=SNFH 3=ET, with the exact shape and affine of the "
        "source case when --source is given. Everything is checked before anything is written.")
    export.add_argument("pred_dir", metavar="PRED_DIR", help="folder with nnU-Net predictions CASE.nii.gz")
    export.add_argument("out_dir", metavar="OUT_DIR", help="folder for the submission files (created if missing)")
    export.add_argument("--challenge", required=True, help="BraTS 2023 challenge: GLI, MEN, PED or SSA")
    export.add_argument("--source", metavar="DIR", default=None,
                        help="where the source cases are, to copy their geometry and check the predictions against "
                        "it: an nnU-Net images folder (CASE_0000.nii.gz), a converted dataset folder (imagesTs/ "
                        "imagesTr), or the original BraTS case folders (CASE/CASE-t1n.nii.gz). Without it the "
                        "predictions' own geometry is kept")
    export.add_argument("--overwrite", action="store_true",
                        help="replace existing output files that differ (identical ones are always left as they are)")
    export.add_argument("--num-workers", type=_positive_int, default=workers,
                        help=f"worker processes (default: CPU count up to 8, here {workers})")
    export.add_argument("--no-progress", action="store_true", help="do not show progress bars")
    export.set_defaults(func=run_export)


def run_convert(args: argparse.Namespace) -> int:
    from nnunet_tcup.dataset_conversion.brats2023 import convert_brats2023

    summary = convert_brats2023(args.challenge, args.dataset_id, args.train, args.test, mode=args.mode,
                                num_workers=args.num_workers, progress=not args.no_progress)
    print(f"{summary.dataset_dir}: {len(summary.converted)} case(s) converted, {len(summary.skipped)} already "
          f"complete and verified (skipped); {summary.num_training} training, {summary.num_test} test case(s); "
          f"dataset.json {'written' if summary.dataset_json_written else 'unchanged'}")
    return 0


def run_export(args: argparse.Namespace) -> int:
    from nnunet_tcup.dataset_conversion.export import export_predictions

    summary = export_predictions(args.pred_dir, args.out_dir, args.challenge, source=args.source,
                                 num_workers=args.num_workers, overwrite=args.overwrite,
                                 progress=not args.no_progress)
    print(f"{summary.out_dir}: {len(summary.written)} submission file(s) written, {len(summary.unchanged)} "
          f"already identical")
    return 0
