"""Small synthetic review inputs: per-fold ``nnUNetv2_predict --save_probabilities`` folders, images, labels.

Volumes are ``(z, y, x)`` = (20, 28, 32) with a non-trivial grid (spacing (2, 1, 1.5) mm as z, y, x, an origin
and the BraTS direction diag(-1, -1, 1)) so that a review that loses the geometry is caught.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

SHAPE = (20, 28, 32)
SPACING_XYZ = (1.5, 1.0, 2.0)
ORIGIN_XYZ = (12.0, -7.5, 30.25)
DIRECTION = (-1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0)

REGION_DATASET_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3], "enhancing tumor": [3]},
    "regions_class_order": [2, 1, 3],
    "numTraining": 1,
    "file_ending": ".nii.gz",
}
LABEL_DATASET_JSON = {
    "channel_names": {"0": "t1n", "1": "t1c", "2": "t2w", "3": "t2f"},
    "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3},
    "numTraining": 1,
    "file_ending": ".nii.gz",
}


def write_nifti(array_zyx: np.ndarray, path: Path) -> Path:
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING_XYZ)
    image.SetOrigin(ORIGIN_XYZ)
    image.SetDirection(DIRECTION)
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)
    return path


def ball(centre: tuple[float, float, float], radius: float) -> np.ndarray:
    """Boolean ball in voxel units (z, y, x)."""
    z, y, x = np.ogrid[: SHAPE[0], : SHAPE[1], : SHAPE[2]]
    return (z - centre[0]) ** 2 + (y - centre[1]) ** 2 + (x - centre[2]) ** 2 <= radius**2


def tumour_labels(centre: tuple[float, float, float] = (10, 14, 16), radius: float = 6.0) -> np.ndarray:
    """A 2023 label map: edema shell (2) around a core (1) with an enhancing rim (3)."""
    labels = np.zeros(SHAPE, np.uint8)
    labels[ball(centre, radius)] = 2
    labels[ball(centre, radius * 0.7)] = 3
    labels[ball(centre, radius * 0.4)] = 1
    return labels


def region_probabilities(labels: np.ndarray, sharpness: float = 0.9) -> np.ndarray:
    """Sigmoid-like region probabilities (3, z, y, x) whose thresholding at 0.5 gives back ``labels``'s regions."""
    masks = np.stack([np.isin(labels, (1, 2, 3)), np.isin(labels, (1, 3)), labels == 3])
    return np.where(masks, sharpness, 1.0 - sharpness).astype(np.float32)


def write_case(
    root: Path,
    case: str,
    fold_probabilities: list[np.ndarray],
    gt: np.ndarray | None,
    dataset_json: dict = REGION_DATASET_JSON,
    seed: int = 0,
) -> None:
    """Images ``root/images/CASE_000{0..3}.nii.gz``, ``root/gt/CASE.nii.gz`` and ``root/fold_K/CASE.npz``."""
    rng = np.random.default_rng(seed)
    brain = ball((10, 14, 16), 12.0)
    for channel in range(4):
        image = (rng.normal(100 + 20 * channel, 10, SHAPE) * brain).astype(np.int16)
        if gt is not None:
            image[gt > 0] += 60
        write_nifti(image, root / "images" / f"{case}_{channel:04d}.nii.gz")
    if gt is not None:
        write_nifti(gt.astype(np.uint8), root / "gt" / f"{case}.nii.gz")
    for k, probs in enumerate(fold_probabilities):
        folder = root / f"fold_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dataset.json").write_text(json.dumps(dataset_json))
        np.savez_compressed(folder / f"{case}.npz", probabilities=probs.astype(np.float32))


def make_review_inputs(root: Path, num_folds: int = 3) -> dict[str, str]:
    """Three cases with ground truth: ``agree`` (every fold predicts the truth), ``split`` (one fold misses the
    tumour core, one adds a false lesion), ``missed`` (the folds disagree about the whole tumour). Returns
    ``{case: description}``."""
    truth = tumour_labels()
    agree = [region_probabilities(truth) for _ in range(num_folds)]
    no_core = truth.copy()
    no_core[np.isin(no_core, (1, 3))] = 2
    with_fp = truth.copy()
    with_fp[ball((4, 5, 5), 2.5)] = 2
    split = [region_probabilities(no_core), region_probabilities(with_fp)] + [
        region_probabilities(truth) for _ in range(num_folds - 2)
    ]
    empty = np.zeros(SHAPE, np.uint8)
    missed = [region_probabilities(truth if k % 2 == 0 else empty, 0.6) for k in range(num_folds)]
    write_case(root, "case_agree", agree, truth, seed=1)
    write_case(root, "case_split", split, truth, seed=2)
    write_case(root, "case_missed", missed, truth, seed=3)
    return {"case_agree": "all folds agree", "case_split": "two folds differ", "case_missed": "folds disagree"}


def fold_dirs(root: Path, num_folds: int = 3) -> list[Path]:
    return [root / f"fold_{k}" for k in range(num_folds)]
