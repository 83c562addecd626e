"""Command-line options shared by several ``nnunet_tcup`` subcommands."""

from __future__ import annotations

import argparse

DEFAULT_TRAINER = "nnUNetTrainerTCuPGAN"


def add_nnunet_model_arguments(group: argparse._ActionsContainer, dataset_help: str) -> None:
    """``-d/--dataset``, ``-tr/--trainer``, ``-c/--configuration`` and ``-p/--plans``: a trained model named as
    ``nnUNetv2_predict`` names it (``$nnUNet_results/DATASET/TRAINER__PLANS__CONFIGURATION``)."""
    group.add_argument("-d", "--dataset", metavar="DATASET", help=dataset_help)
    group.add_argument(
        "-tr", "--trainer", default=DEFAULT_TRAINER, help=f"with -d: trainer class name (default: {DEFAULT_TRAINER})"
    )
    group.add_argument(
        "-c", "--configuration", default="3d_fullres", help="with -d: configuration (default: 3d_fullres)"
    )
    group.add_argument("-p", "--plans", default="nnUNetPlans", help="with -d: plans identifier (default: nnUNetPlans)")
