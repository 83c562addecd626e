"""Inputs of a review: one ``nnUNetv2_predict -f K --save_probabilities`` output folder per fold, the images and
optionally the ground truth.

A fold folder holds ``CASE.npz`` (key ``probabilities``: ``(channels, z, y, x)`` float, after the sigmoid/softmax,
in the original image geometry), ``CASE.pkl``, ``CASE.nii.gz`` and the ``dataset.json`` that nnUNetv2_predict copies
there. Region datasets (``regions_class_order`` set) have one sigmoid channel per region in the order of
``dataset.json``'s non-background labels; label datasets have one softmax channel per label value 0..3.

TCuP-GAN classes models (the paper's formulation; ``plans.json``, which nnUNetv2_predict also copies there, records
``tcup_gan.formulation = "classes"``) save ``p = softmax(z)`` of the head's averaged output
``z = [1 - sum_k sigma_k, sigma_1, sigma_2, sigma_3]`` (:mod:`nnunet_tcup.trainers.class_head`), which is not a
class probability; :func:`tcup_class_scores` recovers ``z`` (the averaged sigmoid probabilities ``sigma_k``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_tcup.case_ids import check_distinct_case_ids
from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.review.uncertainty import REGION_LABELS, REGION_NAMES, labels_to_region_probabilities


@dataclass(frozen=True)
class OutputKind:
    """How a model's probability channels map to WT/TC/ET: ``kind`` 'regions' (``region_channels[r]`` = channel of
    region r), 'labels' (softmax over background, NETC, SNFH, ET; ``label_channels[v]`` = channel of label v) or
    'tcup_classes' (labels 0-3 saved by a TCuP-GAN classes model, see :func:`tcup_class_scores`)."""

    kind: str
    num_channels: int
    region_channels: tuple[int, ...] = ()
    label_channels: tuple[int, ...] = ()


def output_kind(dataset_json: Path, plans_json: Path | None = None) -> OutputKind:
    """Read the label definition of ``dataset_json``; ValueError naming the file unless it is BraTS 2023 regions
    (WT {1,2,3}, TC {1,3}, ET {3}) or labels 0-3. Labels are 'tcup_classes' when ``plans_json`` (default: beside
    ``dataset_json``) records the TCuP-GAN classes formulation."""
    try:
        data = json.loads(Path(dataset_json).read_text())
        labels = data["labels"]
    except FileNotFoundError:
        raise ValueError(
            f"{dataset_json}: not found (nnUNetv2_predict writes dataset.json into its output folder; "
            f"pass the model's dataset.json explicitly)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ValueError(f"{dataset_json}: not a readable nnU-Net dataset.json ({type(e).__name__}: {e})") from None
    if data.get("regions_class_order") is not None:
        foreground = [v for k, v in labels.items() if k != "background"]
        sets = [tuple(sorted(v)) if isinstance(v, list) else (int(v),) for v in foreground]
        channels = []
        for region in REGION_NAMES:
            wanted = tuple(sorted(REGION_LABELS[region]))
            if wanted not in sets:
                raise ValueError(
                    f"{dataset_json}: region dataset without the BraTS region {region} = labels "
                    f"{list(wanted)} (found {[list(s) for s in sets]})"
                )
            channels.append(sets.index(wanted))
        return OutputKind("regions", len(foreground), region_channels=tuple(channels))
    values = sorted(int(v) for v in labels.values())
    if values != [0, 1, 2, 3]:
        raise ValueError(f"{dataset_json}: label dataset must have the BraTS 2023 labels 0, 1, 2, 3 (found {values})")
    plans = Path(dataset_json).parent / "plans.json" if plans_json is None else Path(plans_json)
    kind = "tcup_classes" if is_tcup_classes_model(plans) else "labels"
    return OutputKind(kind, 4, label_channels=(0, 1, 2, 3))


def is_tcup_classes_model(plans_json: Path) -> bool:
    """Whether ``plans_json`` (a model's or a prediction folder's plans) records TCuP-GAN's classes formulation;
    False when the file is absent; ValueError naming it when it cannot be read."""
    if not Path(plans_json).is_file():
        return False
    try:
        plans = json.loads(Path(plans_json).read_text())
    except (OSError, ValueError) as e:
        raise ValueError(f"{plans_json}: not a readable nnU-Net plans.json ({type(e).__name__}: {e})") from None
    section = plans.get("tcup_gan") if isinstance(plans, dict) else None
    return isinstance(section, dict) and section.get("formulation") == "classes"


def tcup_class_scores(probabilities: np.ndarray) -> np.ndarray:
    """The averaged head output ``z = [1 - sum_k sigma_k, sigma_1, ..., sigma_K]`` ``(K + 1, z, y, x)`` float32 from
    the saved ``p = softmax(z)`` of a TCuP-GAN classes model: ``z_k = log p_k - mean_j log p_j + 1 / (K + 1)``
    (exact since ``sum_k z_k = 1``). Voxels with a zero channel (nnU-Net fills the area outside its crop with
    ``p = [1, 0, ..., 0]``) are returned as they are (``sigma = 0``, background). ``argmax z`` is the paper's rule."""
    p = np.asarray(probabilities, dtype=np.float64)
    positive = np.all(p > 0, axis=0)
    log_p = np.log(np.where(positive, p, 1.0))
    z = log_p - log_p.mean(axis=0, keepdims=True) + 1.0 / p.shape[0]
    return np.where(positive, z, p).astype(np.float32)


def paper_region_probabilities(scores: np.ndarray) -> np.ndarray:
    """WT/TC/ET ``(3, z, y, x)`` float32 from the head's scores ``z`` ``(4, z, y, x)`` (:func:`tcup_class_scores`):
    the paper's class probabilities ``[max(1 - sum sigma, 0), sigma_k] / max(1, sum sigma)``, summed per region
    (WT = 1 - background, TC = NETC + ET, ET)."""
    sigma = np.clip(np.asarray(scores, dtype=np.float32)[1:], 0.0, 1.0)
    paper = sigma / np.maximum(1.0, sigma.sum(axis=0, keepdims=True))
    return np.stack([paper.sum(axis=0), paper[0] + paper[2], paper[2]]).clip(0.0, 1.0)


def list_cases(fold_dirs: Sequence[Path]) -> list[str]:
    """Case ids (``CASE.npz`` files) common to all fold folders, sorted; ValueError naming the folder that lacks a
    case another fold has, or a folder without probabilities. Hidden files (``.*.npz``, ``..npz``, interrupted
    writes) are never cases; ids with a control character or equal under Unicode NFKC normalisation are refused
    (:mod:`nnunet_tcup.case_ids`)."""
    per_fold = []
    for folder in fold_dirs:
        if not Path(folder).is_dir():
            raise ValueError(f"{folder}: fold prediction folder not found")
        files = {p.name[: -len(".npz")]: p for p in sorted(Path(folder).glob("*.npz")) if not p.name.startswith(".")}
        check_distinct_case_ids(files)
        cases = set(files)
        if not cases:
            raise ValueError(f"{folder}: no CASE.npz probabilities (run nnUNetv2_predict with --save_probabilities)")
        per_fold.append(cases)
    every = set().union(*per_fold)
    for folder, cases in zip(fold_dirs, per_fold):
        missing = sorted(every - cases)
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise ValueError(
                f"{folder}: no probabilities for {', '.join(missing[:3])}{more} (present in other "
                f"folds; every fold must predict the same cases)"
            )
    return sorted(every)


def load_probabilities(npz_path: Path, kind: OutputKind) -> tuple[np.ndarray, np.ndarray | None]:
    """Region probabilities ``(3, z, y, x)`` float32 (WT, TC, ET) of one fold's ``CASE.npz``, and for label models
    the class scores ``(4, z, y, x)`` (background, NETC, SNFH, ET; None for region models) whose argmax is the
    label: softmax probabilities, or for 'tcup_classes' the head's ``[1 - sum sigma, sigma_k]``
    (:func:`tcup_class_scores`; their mean over folds is linear in the folds' ``sigma``, so its argmax is the
    paper's rule on the fold-averaged ``sigma``) with the paper's region probabilities."""
    try:
        with np.load(npz_path) as data:
            p = np.asarray(data["probabilities"], dtype=np.float32)
    except FileNotFoundError:
        raise ValueError(f"{npz_path}: not found") from None
    except (OSError, ValueError, KeyError, EOFError) as e:
        raise ValueError(f"{npz_path}: cannot read probabilities ({type(e).__name__}: {e})") from None
    if p.ndim != 4 or p.shape[0] != kind.num_channels:
        raise ValueError(
            f"{npz_path}: probabilities of shape {p.shape}, expected ({kind.num_channels}, z, y, x) "
            f"for this {kind.kind} model"
        )
    if not np.all(np.isfinite(p)):
        raise ValueError(f"{npz_path}: non-finite probabilities")
    if kind.kind == "regions":
        return p[list(kind.region_channels)].clip(0.0, 1.0), None
    classes = p[list(kind.label_channels)]
    if kind.kind == "tcup_classes":
        scores = tcup_class_scores(classes)
        return paper_region_probabilities(scores), scores
    return labels_to_region_probabilities(classes), classes


def image_paths(images_dir: Path, case: str) -> list[Path]:
    """The four modality files ``CASE_0000.nii.gz`` .. ``CASE_0003.nii.gz`` (t1n, t1c, t2w, t2f); ValueError
    naming the first missing one."""
    paths = [Path(images_dir) / f"{case}_{i:04d}.nii.gz" for i in range(len(MODALITIES))]
    for p in paths:
        if not p.is_file():
            raise ValueError(f"{p}: image of case {case} not found (expected nnU-Net names CASE_0000..0003.nii.gz)")
    return paths
