"""Held-out predictions of a TCuP-GAN classes model's fold ensemble with each output of the classes head: the same
weights, only what nnU-Net averages differs (``average``: the head's default, linear in sigma; ``loss``: the
log-probability output, which earlier versions handed to the predictor). Score the two folders with
``nnunet_tcup evaluate``. Usage::

    python benchmarks/bench_class_head.py MODEL_FOLDER IMAGES_DIR OUT_DIR --folds 0 1 [--device cpu]

writes ``OUT_DIR/average`` and ``OUT_DIR/loss`` (label maps; nnU-Net's predictor with mirroring, step 0.5).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from nnunet_tcup.trainers.class_head import CLASS_OUTPUTS, SigmoidClassesNetwork


def main() -> None:
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("images", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--folds", nargs="+", default=["0", "1"])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--outputs", nargs="+", choices=CLASS_OUTPUTS, default=list(CLASS_OUTPUTS))
    args = parser.parse_args()
    for output in args.outputs:
        predictor = nnUNetPredictor(device=torch.device(args.device), allow_tqdm=False)
        predictor.initialize_from_trained_model_folder(str(args.model), tuple(args.folds))
        if not isinstance(predictor.network, SigmoidClassesNetwork):
            raise ValueError(f"{args.model}: not a TCuP-GAN classes model")
        predictor.network.output = output
        predictor.predict_from_files(
            str(args.images), str(args.out / output), num_processes_preprocessing=1, num_processes_segmentation_export=1
        )


if __name__ == "__main__":
    main()
