"""``nnunet_tcup review``: which cases, lesions and slices a person should check first."""

from __future__ import annotations

import argparse

from nnunet_tcup.parallel import positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``review`` sub-command."""
    p = subparsers.add_parser(
        "review",
        help="rank cases, lesions and slices for human review by the disagreement of the cross-validation folds",
        description="Read one nnUNetv2_predict output folder per fold (made with -f K --save_probabilities; or let "
        "--model run the predictions), measure where the folds disagree, and write OUT/review.csv (cases ranked "
        "most doubtful first), OUT/lesions.csv, OUT/review.html (static page), OUT/maps/CASE/*.nii.gz "
        "(uncertainty maps on the image grid), OUT/montages/CASE.png and OUT/zooniverse/ (one PNG per case and "
        "doubtful slice plus manifest.csv for Zooniverse's subject uploader). Definitions: docs/review.md.",
    )
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument(
        "--pred",
        nargs="+",
        metavar="FOLD_DIR",
        help="per-fold prediction folders (CASE.npz from --save_probabilities, dataset.json)",
    )
    source.add_argument(
        "--model",
        metavar="RESULTS_DIR",
        help="nnU-Net results folder TRAINER__PLANS__CONFIGURATION: predict each fold of -f first "
        "(into OUT/predictions/fold_K; resumable). Its checkpoints are pickles (nnU-Net loads them with "
        "torch.load(weights_only=False)): loading one runs any code it holds, so use only models you trust",
    )
    p.add_argument(
        "-f",
        "--folds",
        nargs="+",
        default=["0", "1", "2", "3", "4"],
        metavar="K",
        help="folds to predict with --model (default 0 1 2 3 4)",
    )
    p.add_argument(
        "-i",
        "--images",
        required=True,
        metavar="IMAGES_DIR",
        help="the images the folds predicted (nnU-Net names CASE_0000.nii.gz .. CASE_0003.nii.gz)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT", help="review folder (created if missing)")
    p.add_argument(
        "--gt",
        metavar="GT_DIR",
        default=None,
        help="optional labels CASE.nii.gz: adds the consensus's true lesion-wise Dice to the tables",
    )
    p.add_argument(
        "--challenge",
        default="GLI",
        metavar="CH",
        help="GLI, MEN, PED or SSA: lesion-wise matching parameters (default GLI)",
    )
    p.add_argument(
        "--dataset-json",
        default=None,
        metavar="FILE",
        help="the model's dataset.json, if the fold folders lack the copy nnUNetv2_predict writes",
    )
    p.add_argument(
        "--slices",
        type=positive_int,
        default=3,
        metavar="N",
        help="doubtful slices per case: montage rows and Zooniverse subjects (default 3)",
    )
    p.add_argument("--no-maps", action="store_true", help="do not write the NIfTI maps")
    p.add_argument("--no-zooniverse", action="store_true", help="do not write the Zooniverse export")
    p.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="with --model: device of the predictions (default auto: cuda if PyTorch sees a GPU, else cpu)",
    )
    p.add_argument("--disable-tta", action="store_true", help="with --model: no mirroring at prediction")
    p.add_argument(
        "--num-workers",
        type=positive_int,
        default=None,
        metavar="N",
        help="cases reviewed in parallel (default: nnUNet_def_n_proc, else min(4, CPUs))",
    )
    p.add_argument("--overwrite", action="store_true", help="replace an existing review in OUT")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def resolve_device(requested: str) -> str:
    """``auto``: ``cuda`` when PyTorch sees a GPU, else ``cpu``; any other value is returned as given."""
    if requested != "auto":
        return requested
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def run(args: argparse.Namespace) -> int:
    """Run the review (predicting first with --model) and print the top of the ranking."""
    from pathlib import Path

    from nnunet_tcup.review.core import check_output_dir, run_review

    fold_dirs = args.pred
    if args.model is not None:
        check_output_dir(Path(args.output), args.overwrite)  # before the predictions, not after
        from nnunet_tcup.review.predict import predict_folds

        folds = [int(f) if f.isdigit() else f for f in args.folds]
        fold_dirs = predict_folds(
            args.model,
            folds,
            args.images,
            Path(args.output) / "predictions",
            device=resolve_device(args.device),
            use_mirroring=not args.disable_tta,
        )
    result = run_review(
        fold_dirs,
        args.images,
        args.output,
        gt_dir=args.gt,
        challenge=args.challenge,
        dataset_json=args.dataset_json,
        num_slices=args.slices,
        write_maps=not args.no_maps,
        zooniverse=not args.no_zooniverse,
        overwrite=args.overwrite,
        num_workers=args.num_workers,
        progress=not args.no_progress,
    )
    print(f"{len(result.rows)} cases reviewed; most doubtful first:")
    for row in result.rows[:10]:
        truth = f"  true lesion-wise Dice {row['true_dice_mean']:.3f}" if "true_dice_mean" in row else ""
        print(f"  {row['rank']:>3}. {row['case']}  score {row['score']:.3f}  slices z = {row['slices']}{truth}")
    print(f"wrote {result.csv} and {result.html}")
    return 0
