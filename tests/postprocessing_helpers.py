"""Test and benchmark helpers for the lesion filter: procedural (GT, prediction) pairs and the brute-force objective.

Arrays are ``(z, y, x)`` with BraTS 2023 labels. :func:`make_case`: one or two nested tumours (edema shell, core,
enhancing rim), satellites, and a sub-threshold lesion; the prediction is the GT with perturbed boundaries and a
missed or shrunk satellite, plus what the filter is meant to remove: specks of every label, flat components
spanning one or two slices, ET/core specks inside the edema, and sometimes a false-positive tumour.
:func:`make_model_case`: predictions of a model with a controllable false-positive rate and true small lesions
(the generalisation benchmark and test). :func:`brute_force_objective`: filter + evaluate every candidate, the
reference the cached tuning must equal. Not part of the package (issue 11): imported by tests and benchmarks.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["brute_force_objective", "make_case", "make_model_case", "write_case_folders", "write_label_image"]


def _ellipsoid(shape: tuple[int, int, int], center, radii) -> tuple[tuple[slice, ...], np.ndarray]:
    """Bounding-box slices and boolean ellipsoid mask inside them (clipped to ``shape``)."""
    lo = [max(int(np.floor(c - r)), 0) for c, r in zip(center, radii)]
    hi = [min(int(np.ceil(c + r)) + 1, s) for c, r, s in zip(center, radii, shape)]
    box = tuple(slice(a, b) for a, b in zip(lo, hi))
    grids = np.ogrid[box]
    dist = sum(((g - c) / max(r, 1e-6)) ** 2 for g, c, r in zip(grids, center, radii))
    return box, dist <= 1.0


def _paint(labels: np.ndarray, center, radii, value: int, only_where=None) -> None:
    box, mask = _ellipsoid(labels.shape, center, radii)
    if only_where is not None:
        mask &= np.isin(labels[box], only_where)
    labels[box][mask] = value


def _tumour(labels: np.ndarray, center, radius: float, rng: np.random.Generator) -> None:
    """Nested tumour: edema (2) ellipsoid, core (1) inside, enhancing rim (3) around a necrotic centre."""
    radii = radius * rng.uniform(0.8, 1.2, size=3)
    _paint(labels, center, radii, 2)
    _paint(labels, center, radii * 0.6, 3)
    _paint(labels, center, radii * 0.4, 1)


def make_case(shape: tuple[int, int, int] = (64, 96, 96), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """One synthetic ``(gt, pred)`` pair of ``uint8`` label maps ``(z, y, x)``; deterministic in ``seed``."""
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    z, y, x = shape
    gt = np.zeros(shape, dtype=np.uint8)
    big = min(shape) / 6.0
    centers = []
    for _ in range(int(rng.integers(1, 3))):
        c = [rng.uniform(0.3, 0.7) * s for s in shape]
        _tumour(gt, c, big * rng.uniform(0.7, 1.1), rng)
        centers.append(c)
    satellites = []
    for _ in range(int(rng.integers(1, 4))):
        c = [rng.uniform(0.15, 0.85) * s for s in shape]
        radii = np.array([rng.uniform(2, 4), rng.uniform(2, 5), rng.uniform(2, 5)])
        _paint(gt, c, radii, int(rng.choice([1, 2, 3])), only_where=[0])
        satellites.append((c, radii))
    c = [rng.uniform(0.1, 0.9) * s for s in shape]  # sub-threshold GT lesion (< 50 voxels at 1 mm)
    _paint(gt, c, (1.2, 1.5, 1.5), 3, only_where=[0])

    pred = gt.copy()
    # boundary perturbation: shift the whole map by up to one voxel per axis, then restore some GT voxels
    shift = tuple(int(v) for v in rng.integers(-1, 2, size=3))
    pred = np.roll(pred, shift, axis=(0, 1, 2))
    # one satellite missed or shrunk
    if satellites:
        c, radii = satellites[int(rng.integers(len(satellites)))]
        box, mask = _ellipsoid(shape, c, radii + 1.5)
        pred[box][mask] = 0
        if rng.random() < 0.5:
            _paint(pred, c, radii * 0.6, 3)
    # specks of every label, 1-40 voxels, some inside tumours (ET/core specks in edema)
    for _ in range(int(rng.integers(15, 40))):
        c = [rng.uniform(0, s) for s in shape]
        radii = rng.uniform(0.4, 2.0, size=3)
        _paint(pred, c, radii, int(rng.choice([1, 2, 3])), only_where=[0, 2])
    # flat components: large in-plane area, 1-2 slices
    for _ in range(int(rng.integers(2, 6))):
        c = [rng.uniform(0, z), rng.uniform(0, y), rng.uniform(0, x)]
        _paint(
            pred,
            c,
            (rng.uniform(0.3, 1.0), rng.uniform(3, 8), rng.uniform(3, 8)),
            int(rng.choice([1, 2, 3])),
            only_where=[0, 2],
        )
    # thin elongated components: many slices, small area
    for _ in range(int(rng.integers(1, 4))):
        c = [rng.uniform(0, s) for s in shape]
        _paint(
            pred,
            c,
            (rng.uniform(4, 8), rng.uniform(0.6, 1.5), rng.uniform(0.6, 1.5)),
            int(rng.choice([1, 2, 3])),
            only_where=[0, 2],
        )
    if rng.random() < 0.5:  # false-positive tumour
        c = [rng.uniform(0.2, 0.8) * s for s in shape]
        _tumour(pred, c, big * rng.uniform(0.3, 0.5), rng)
    return gt, pred


def write_label_image(array: np.ndarray, path, spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0)) -> None:
    """Write a ``(z, y, x)`` label array as a uint8 NIfTI with the given spacing (mm, ``(z, y, x)``), atomically."""
    import SimpleITK as sitk

    from nnunet_tcup.io_utils import atomic_output

    image = sitk.GetImageFromArray(np.asarray(array, dtype=np.uint8))
    image.SetSpacing(tuple(float(s) for s in reversed(spacing_zyx)))
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, str(tmp), useCompression=True)


def write_case_folders(
    pred_folder,
    gt_folder,
    n_cases: int,
    shape: tuple[int, int, int] = (48, 80, 80),
    spacing_zyx: tuple[float, float, float] = (1.0, 1.0, 1.0),
    seed: int = 0,
    prefix: str = "case",
) -> list:
    """Write ``n_cases`` synthetic pairs as ``PREFIX_NNN.nii.gz`` into the two folders; return the case names."""
    from pathlib import Path

    names = []
    for k in range(n_cases):
        gt, pred = make_case(shape, seed=seed + k)
        name = f"{prefix}_{k:03d}"
        write_label_image(gt, Path(gt_folder) / f"{name}.nii.gz", spacing_zyx)
        write_label_image(pred, Path(pred_folder) / f"{name}.nii.gz", spacing_zyx)
        names.append(name)
    return names


def make_model_case(
    seed: int,
    shape: tuple[int, int, int] = (64, 112, 112),
    fp_rate: float = 1.0,
    small_lesion_prob: float = 0.5,
    hit_rate: float = 0.85,
    lookalike_rate: float | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """``(gt, pred)`` ``uint8`` label maps ``(z, y, x)`` at 1 mm as a trained model's predictions look.

    GT: one nested tumour (radius 10-18 voxels); with probability ``small_lesion_prob`` one or two true small
    lesions (25-400 voxels over 3-8 slices: what an aggressive filter deletes). Prediction: the GT shifted by up to
    one voxel per axis; each small lesion found with probability ``hit_rate``; false positives scaled by ``fp_rate``
    (0: none): on average 4 specks of 1-30 voxels (some ET or core inside the edema) and 1 flat component on 1-2
    slices per case; ``lookalike_rate`` (default ``0.3 * fp_rate``) blobs of small-lesion size per case, which no
    size filter separates from true small lesions.
    """
    rng = np.random.default_rng(seed)
    z, y, x = shape
    gt = np.zeros(shape, dtype=np.uint8)
    centre = [rng.uniform(0.35, 0.65) * s for s in shape]
    _tumour(gt, centre, rng.uniform(10, 18), rng)
    small = []
    if rng.random() < small_lesion_prob:
        for _ in range(int(rng.integers(1, 3))):
            c = [rng.uniform(0.15, 0.85) * s for s in shape]
            radii = np.array([rng.uniform(1.6, 3.5), rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5)])
            label = int(rng.choice([1, 2, 3], p=[0.2, 0.5, 0.3]))
            _paint(gt, c, radii, label, only_where=[0])
            if label == 2 and radii.min() > 2.2:
                _paint(gt, c, radii * 0.5, 3)
            small.append((c, radii, label))
    shift = tuple(int(v) for v in rng.integers(-1, 2, size=3))
    pred = np.roll(gt, shift, axis=(0, 1, 2))
    for c, radii, _ in small:
        if rng.random() >= hit_rate:
            box, mask = _ellipsoid(shape, [ci + si for ci, si in zip(c, shift)], radii + 1.0)
            pred[box][mask] = 0
    for _ in range(int(rng.poisson(4 * fp_rate))):
        c = [rng.uniform(0, s) for s in shape]
        _paint(pred, c, rng.uniform(0.4, 1.8, size=3), int(rng.choice([1, 2, 3])), only_where=[0, 2])
    for _ in range(int(rng.poisson(1 * fp_rate))):
        c = [rng.uniform(0, z), rng.uniform(0, y), rng.uniform(0, x)]
        _paint(
            pred,
            c,
            (rng.uniform(0.3, 0.9), rng.uniform(2, 6), rng.uniform(2, 6)),
            int(rng.choice([1, 2, 3])),
            only_where=[0, 2],
        )
    for _ in range(int(rng.poisson(0.3 * fp_rate if lookalike_rate is None else lookalike_rate))):
        c = [rng.uniform(0.15, 0.85) * s for s in shape]
        _paint(
            pred,
            c,
            (rng.uniform(1.6, 3.5), rng.uniform(2.0, 4.5), rng.uniform(2.0, 4.5)),
            int(rng.choice([1, 2, 3])),
            only_where=[0],
        )
    return gt, pred


def brute_force_objective(
    cases: Sequence[tuple[np.ndarray, np.ndarray]],
    candidates: np.ndarray,
    spacing: tuple[float, float, float],
    challenge: str,
) -> np.ndarray:
    """The tuning objective the straightforward way: for every candidate row ``(A_WT, A_TC, A_ET, min_slices)``,
    ``filter_lesions`` + ``evaluate_case`` on every ``(gt, pred)`` case; mean over WT, TC, ET of the mean over
    cases of the lesion-wise Dice. Returns one value per candidate, in row order."""
    from nnunet_tcup.evaluation.lesionwise import evaluate_case
    from nnunet_tcup.postprocessing.lesion_filter import filter_lesions

    regions = ("WT", "TC", "ET")
    values = []
    for a, b, c, m in np.asarray(candidates, dtype=np.float64).reshape(-1, 4):
        per_region = {r: [] for r in regions}
        for gt, pred in cases:
            ev = evaluate_case(gt, filter_lesions(pred, a, b, c, int(m)), spacing, challenge=challenge)
            for r in regions:
                per_region[r].append(ev[r].lesionwise_dice)
        values.append(np.mean([np.mean(per_region[r]) for r in regions]))
    return np.array(values)
