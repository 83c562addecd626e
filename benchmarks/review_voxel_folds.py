"""A fast cross-validated stand-in model for ``bench_review.py --fold-model voxel``: one gradient-boosted voxel
classifier per fold (scikit-learn ``HistGradientBoostingClassifier``, 4 classes: background, NETC, SNFH, ET) on
per-voxel features (each modality z-scored inside the brain, raw and Gaussian-smoothed at sigma 1 and 3 voxels, and
the smoothed T1c - T1n enhancement). Fold K trains on the training cases outside nnU-Net-style split K (5-fold,
shuffled) and writes what ``nnUNetv2_predict -f K --save_probabilities`` writes for a label model:
``fold_K/CASE.npz`` (``probabilities``, (4, z, y, x) softmax, image grid) and ``fold_K/dataset.json``.

It trains in seconds on a CPU where a useful TCuP-GAN fold takes hours; the review only sees the probabilities.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.io_utils import read_image_zyx

LABEL_DATASET_JSON = {
    "channel_names": {str(i): m for i, m in enumerate(MODALITIES)},
    "labels": {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3},
    "file_ending": ".nii.gz",
}


def features(images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Per-voxel features ``(n_brain_voxels, 13)`` float32 and the brain mask ``(z, y, x)`` of one case."""
    from scipy import ndimage

    brain = np.any([im != 0 for im in images], axis=0)
    columns, smoothed = [], []
    for im in images:
        values = im.astype(np.float32)
        inside = values[brain]
        z = (values - inside.mean()) / max(float(inside.std()), 1e-6) * brain
        columns.append(z)
        for sigma in (1.0, 3.0):
            s = ndimage.gaussian_filter(z, sigma)
            columns.append(s)
            smoothed.append(s)
    columns.append(smoothed[2] - smoothed[0])  # T1c - T1n at sigma 1: enhancement
    return np.stack([c[brain] for c in columns], axis=1).astype(np.float32), brain


def _case_images(folder: Path, case: str, nnunet_names: bool) -> list[np.ndarray]:
    names = [f"{case}_{i:04d}.nii.gz" for i in range(4)] if nnunet_names else [f"{case}-{m}.nii.gz" for m in MODALITIES]
    return [read_image_zyx(folder / n)[0] for n in names]


def training_samples(
    brats_train: Path, cases: list[str], rng: np.random.Generator, per_class: int = 4000
) -> tuple[np.ndarray, np.ndarray]:
    """Class-balanced voxel samples (up to ``per_class`` per label and case) of the given BraTS training cases."""
    xs, ys = [], []
    for case in cases:
        folder = brats_train / case
        feats, brain = features(_case_images(folder, case, nnunet_names=False))
        labels = read_image_zyx(folder / f"{case}-seg.nii.gz", labels=True)[0][brain].astype(np.int64)
        for value in range(4):
            idx = np.flatnonzero(labels == value)
            if idx.size:
                pick = rng.choice(idx, size=min(per_class, idx.size), replace=False)
                xs.append(feats[pick])
                ys.append(labels[pick])
    return np.concatenate(xs), np.concatenate(ys)


def write_voxel_folds(brats_train: Path, images_ts: Path, out_root: Path, folds: int = 5, seed: int = 0) -> list[Path]:
    """Train one classifier per fold and predict every ``imagesTs`` case; returns the fold folders."""
    from sklearn.ensemble import HistGradientBoostingClassifier
    from sklearn.model_selection import KFold

    train_cases = sorted(p.name for p in brats_train.iterdir() if p.is_dir())
    test_cases = sorted(p.name[: -len("_0000.nii.gz")] for p in images_ts.glob("*_0000.nii.gz"))
    test_features = {c: features(_case_images(images_ts, c, nnunet_names=True)) for c in test_cases}
    shape = {c: read_image_zyx(images_ts / f"{c}_0000.nii.gz")[1].shape_zyx for c in test_cases}
    outputs = []
    splits = KFold(n_splits=folds, shuffle=True, random_state=12345).split(train_cases)
    for k, (train_idx, _) in enumerate(splits):
        rng = np.random.default_rng(seed + k)
        x, y = training_samples(brats_train, [train_cases[i] for i in train_idx], rng)
        model = HistGradientBoostingClassifier(max_iter=60, learning_rate=0.15, random_state=seed + k).fit(x, y)
        if model.classes_.tolist() != [0, 1, 2, 3]:
            raise ValueError(f"{brats_train}: fold {k} training cases lack a label ({model.classes_.tolist()})")
        folder = out_root / f"fold_{k}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "dataset.json").write_text(json.dumps(LABEL_DATASET_JSON, indent=1))
        for case in test_cases:
            feats, brain = test_features[case]
            probs = np.zeros((4, *shape[case]), np.float32)
            probs[0] = 1.0
            probs[:, brain] = model.predict_proba(feats).T.astype(np.float32)
            np.savez_compressed(folder / f"{case}.npz", probabilities=probs)
        outputs.append(folder)
        print(
            f"voxel classifier fold {k}: {len(train_idx)} training cases, {len(y)} samples, "
            f"{len(test_cases)} cases predicted",
            flush=True,
        )
    return outputs
