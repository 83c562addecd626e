"""Per-fold predictions with probabilities through nnU-Net's predictor API: the same as running
``nnUNetv2_predict -i IMAGES -o OUT/fold_K -d ... -f K --save_probabilities`` once per fold.

Resumable: nnU-Net skips cases whose ``CASE.nii.gz`` and ``CASE.npz`` already exist in a fold's folder.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path


def fold_folder(predictions_dir: Path, fold: int | str) -> Path:
    """Where fold ``fold``'s predictions go: ``predictions_dir/fold_K``."""
    return Path(predictions_dir) / f"fold_{fold}"


def check_model_folder(model_folder: Path, folds: Sequence[int | str], checkpoint: str) -> None:
    """ValueError naming the missing file unless ``model_folder`` has dataset.json, plans.json and every fold's
    checkpoint."""
    for name in ("dataset.json", "plans.json"):
        if not (Path(model_folder) / name).is_file():
            raise ValueError(
                f"{Path(model_folder) / name}: not found (expected an nnU-Net results folder "
                f"TRAINER__PLANS__CONFIGURATION)"
            )
    for fold in folds:
        ckpt = Path(model_folder) / f"fold_{fold}" / checkpoint
        if not ckpt.is_file():
            raise ValueError(f"{ckpt}: checkpoint of fold {fold} not found")


def predict_folds(
    model_folder: str | Path,
    folds: Sequence[int | str],
    images_dir: str | Path,
    predictions_dir: str | Path,
    *,
    device: str = "cuda",
    checkpoint: str = "checkpoint_final.pth",
    tile_step_size: float = 0.5,
    use_mirroring: bool = True,
    num_processes: int = 1,
) -> list[Path]:
    """Predict every image of ``images_dir`` with each fold of ``model_folder`` separately, saving probabilities;
    returns the per-fold output folders (``predictions_dir/fold_K``)."""
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    model_folder, images_dir = Path(model_folder), Path(images_dir)
    if len(folds) < 2:
        raise ValueError(f"a review needs at least 2 folds, got {list(folds)}")
    check_model_folder(model_folder, folds, checkpoint)
    if not images_dir.is_dir():
        raise ValueError(f"{images_dir}: images folder not found")
    outputs = []
    for fold in folds:
        out = fold_folder(Path(predictions_dir), fold)
        predictor = nnUNetPredictor(
            tile_step_size=tile_step_size,
            use_mirroring=use_mirroring,
            perform_everything_on_device=device != "cpu",
            device=torch.device(device),
            allow_tqdm=False,
        )
        predictor.initialize_from_trained_model_folder(str(model_folder), use_folds=(fold,), checkpoint_name=checkpoint)
        predictor.predict_from_files(
            str(images_dir),
            str(out),
            save_probabilities=True,
            overwrite=False,
            num_processes_preprocessing=num_processes,
            num_processes_segmentation_export=num_processes,
        )
        outputs.append(out)
    return outputs
