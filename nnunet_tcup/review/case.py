"""Review of one case: read every fold's probabilities and the images, compute the uncertainty, write the case's
NIfTI maps, montage and citizen-science subject images. Runs in a worker process (:func:`review_case`).

NIfTI maps (``maps/CASE/``), on the source image's grid (shape, spacing, origin, direction of ``CASE_0000``):
``consensus.nii.gz`` (2023 labels, uint8), and per region R in WT, TC, ET, as uint8: ``probability_R`` (mean fold
probability, percent 0-100), ``disagreement_R`` (mutual information, percent of 1 bit), ``entropy_R`` (entropy of
the mean probability, percent of 1 bit), ``votes_R`` (number of folds labelling the voxel R).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tcup.challenges import EVALUATION_PARAMETERS
from nnunet_tcup.csv_cells import cell_safe_file_name
from nnunet_tcup.io_utils import ImageGeometry, atomic_output, check_same_geometry, read_image_zyx
from nnunet_tcup.review.figures import draw_montage, draw_subject
from nnunet_tcup.review.inputs import OutputKind, load_probabilities
from nnunet_tcup.review.lesions import LesionRecord, lesionwise_dice, region_lesions
from nnunet_tcup.review.uncertainty import (
    REGION_NAMES,
    VoxelMaps,
    case_score,
    consensus_labels,
    disputed_share,
    doubtful_slices,
    fold_region_masks,
    labels_to_region_masks,
    slice_disagreement,
    voxel_maps,
)


@dataclass(frozen=True)
class CaseJob:
    """Everything one worker needs for one case (picklable). ``out_dir`` is the review's (staging) output folder."""

    case: str
    fold_files: tuple[Path, ...]
    image_files: tuple[Path, ...]
    kind: OutputKind
    challenge: str
    out_dir: Path
    gt_file: Path | None = None
    num_slices: int = 3
    write_maps: bool = True
    zooniverse: bool = True


@dataclass(frozen=True)
class CaseResult:
    """Scores of one case (see :mod:`nnunet_tcup.review.uncertainty` for the definitions) and the files written,
    relative to the output folder. ``slices`` are z indices (0-based), most doubtful first, with their
    disagreement (mutual information summed over regions and the slice, bits)."""

    case: str
    num_folds: int
    score: float
    disputed: dict[str, float]
    expected_dice: dict[str, float]
    fold_dice: dict[str, list[float]]
    mean_mutual_information: dict[str, float]
    volume_mm3: dict[str, float]
    lesions: list[LesionRecord]
    slices: list[int]
    slice_disagreement: list[float]
    true_dice: dict[str, float] | None = None
    montage: str = ""
    maps: list[str] = field(default_factory=list)
    subjects: list[tuple[int, str]] = field(default_factory=list)


def write_like(array_zyx: np.ndarray, geometry: ImageGeometry, path: Path) -> Path:
    """Write ``array_zyx`` as a compressed NIfTI on ``geometry``'s grid (spacing, origin, direction), atomically."""
    import SimpleITK as sitk

    if tuple(array_zyx.shape) != tuple(geometry.shape_zyx):
        raise ValueError(f"{path}: array of shape {array_zyx.shape} does not fit the image grid {geometry.shape_zyx}")
    image = sitk.GetImageFromArray(np.ascontiguousarray(array_zyx))
    image.SetSpacing(tuple(float(s) for s in reversed(geometry.spacing_zyx)))
    image.SetOrigin(geometry.origin_xyz)
    image.SetDirection(geometry.direction)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(path) as tmp:
        sitk.WriteImage(image, str(tmp), True)
    return path


def _percent(values: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(values) * 100.0), 0, 100).astype(np.uint8)


def read_images(job: CaseJob) -> tuple[list[np.ndarray], ImageGeometry]:
    """The four modalities ``(z, y, x)`` and the grid of the first; ValueError if one is on another grid."""
    images, geometry = [], None
    for path in job.image_files:
        array, geo = read_image_zyx(path)
        if geometry is None:
            geometry = geo
        else:
            check_same_geometry(geometry, geo, job.image_files[0], path)
        images.append(array)
    assert geometry is not None
    return images, geometry


def fold_outputs(job: CaseJob, geometry: ImageGeometry) -> tuple[VoxelMaps, np.ndarray]:
    """Voxel maps of the folds and the consensus label map; ValueError naming a fold file on another grid."""
    probs, masks, class_sum = [], [], None
    for npz in job.fold_files:
        regions, classes = load_probabilities(npz, job.kind)
        if tuple(regions.shape[1:]) != tuple(geometry.shape_zyx):
            raise ValueError(
                f"{npz}: probabilities of shape (z, y, x) {regions.shape[1:]} but the image "
                f"{job.image_files[0]} has {geometry.shape_zyx}"
            )
        probs.append(regions)
        masks.append(fold_region_masks(regions, classes))
        if classes is not None:
            class_sum = classes.astype(np.float64) if class_sum is None else class_sum + classes
    maps = voxel_maps(probs, masks)
    mean_classes = None if class_sum is None else class_sum / len(job.fold_files)
    return maps, consensus_labels(maps.mean, mean_classes)


def _write_maps(job: CaseJob, maps: VoxelMaps, consensus: np.ndarray, geometry: ImageGeometry) -> list[str]:
    folder = job.out_dir / "maps" / job.case
    written = [write_like(consensus, geometry, folder / "consensus.nii.gz")]
    votes = maps.fold_masks.sum(axis=0, dtype=np.uint8)
    for r, region in enumerate(REGION_NAMES):
        written.append(write_like(_percent(maps.mean[r]), geometry, folder / f"probability_{region}.nii.gz"))
        written.append(
            write_like(_percent(maps.mutual_information[r]), geometry, folder / f"disagreement_{region}.nii.gz")
        )
        written.append(write_like(_percent(maps.entropy[r]), geometry, folder / f"entropy_{region}.nii.gz"))
        written.append(write_like(votes[r], geometry, folder / f"votes_{region}.nii.gz"))
    return [p.relative_to(job.out_dir).as_posix() for p in written]


def _fallback_slice(consensus: np.ndarray) -> int:
    """Slice with the largest consensus tumour area; the middle slice when there is no tumour."""
    areas = (consensus > 0).reshape(consensus.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.max() > 0 else consensus.shape[0] // 2


def true_dice(
    gt_file: Path, consensus: np.ndarray, geometry: ImageGeometry, image_file: Path, challenge: str
) -> dict[str, float]:
    """Official lesion-wise Dice of the consensus against the ground truth, per region."""
    gt, gt_geometry = read_image_zyx(gt_file, labels=True)
    check_same_geometry(geometry, gt_geometry, image_file, gt_file)
    if gt.min() < 0 or gt.max() > 3:
        raise ValueError(f"{gt_file}: labels must be 0-3 (BraTS 2023), found {int(gt.min())}..{int(gt.max())}")
    params = EVALUATION_PARAMETERS[challenge]
    gt_masks, cons_masks = labels_to_region_masks(gt), labels_to_region_masks(consensus)
    return {
        region: lesionwise_dice(
            gt_masks[r], cons_masks[r], geometry.spacing_zyx, params.dilation_iterations, params.volume_threshold_mm3
        )
        for r, region in enumerate(REGION_NAMES)
    }


def review_case(job: CaseJob) -> CaseResult:
    """Compute one case's uncertainty and write its maps and figures under ``job.out_dir``."""
    images, geometry = read_images(job)
    maps, consensus = fold_outputs(job, geometry)
    spacing = geometry.spacing_zyx
    params = EVALUATION_PARAMETERS[job.challenge]
    cons_masks = labels_to_region_masks(consensus)
    lesions: list[LesionRecord] = []
    fold_dice, mean_mi, volume, disputed = {}, {}, {}, {}
    voxel_mm3 = float(np.prod(spacing))
    for r, region in enumerate(REGION_NAMES):
        records, scores = region_lesions(
            region,
            cons_masks[r],
            maps.fold_masks[:, r],
            maps.mean[r],
            maps.mutual_information[r],
            spacing,
            params.dilation_iterations,
            params.volume_threshold_mm3,
        )
        lesions += records
        fold_dice[region] = scores
        seen = np.any(maps.fold_masks[:, r], axis=0) | cons_masks[r]
        mean_mi[region] = float(maps.mutual_information[r][seen].mean()) if seen.any() else 0.0
        volume[region] = float(np.count_nonzero(cons_masks[r])) * voxel_mm3
        disputed[region] = disputed_share(maps.fold_masks[:, r])
    expected = {region: float(np.mean(fold_dice[region])) for region in REGION_NAMES}
    per_slice = slice_disagreement(maps.mutual_information)
    gap = max(3, consensus.shape[0] // 16)  # slices apart: 3 on small volumes, 9 on 155-slice BraTS
    slices = doubtful_slices(per_slice, job.num_slices, min_gap=gap) or [_fallback_slice(consensus)]
    truth = (
        None if job.gt_file is None else true_dice(job.gt_file, consensus, geometry, job.image_files[0], job.challenge)
    )
    score = case_score(disputed)
    written = _write_maps(job, maps, consensus, geometry) if job.write_maps else []
    disagreement = maps.mutual_information.sum(axis=0)
    montage = draw_montage(
        job.case,
        images,
        consensus,
        disagreement,
        slices,
        job.out_dir / "montages" / f"{job.case}.png",
        caption=f"doubt score {score:.3f}",
    )
    subjects = []
    if job.zooniverse:
        for z in slices:
            png = draw_subject(
                images, consensus, z, job.out_dir / "zooniverse" / cell_safe_file_name(f"{job.case}_z{z:03d}.png")
            )
            subjects.append((z, png.relative_to(job.out_dir / "zooniverse").as_posix()))
    return CaseResult(
        job.case,
        len(job.fold_files),
        score,
        disputed,
        expected,
        fold_dice,
        mean_mi,
        volume,
        lesions,
        slices,
        [float(per_slice[z]) for z in slices],
        truth,
        montage.relative_to(job.out_dir).as_posix(),
        written,
        subjects,
    )
