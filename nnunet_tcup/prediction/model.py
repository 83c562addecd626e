"""The trained model ``predict`` uses: its folder, folds, input channel order, device and tuned post-processing.

A model folder is nnU-Net's ``$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION`` (``dataset.json``,
``plans.json``, ``fold_K/CHECKPOINT``). The tuned post-processing of an ensemble of folds is the
``postprocessing.json`` that ``nnunet_tcup postprocess tune -d ... -f FOLDS`` writes into
``crossval_results_folds_FOLDS`` (:func:`nnunet_tcup.postprocessing.nnunet_results.crossval_folder`), read without
unpickling anything.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.dataset_conversion.layout import BRATS2021
from nnunet_tcup.postprocessing.lesion_filter import FilterParameters

__all__ = ["DEVICES", "TrainedModel", "find_folds", "load_model", "model_folder_from_ids", "resolve_device"]

DEVICES = ("auto", "cpu", "cuda")
DEFAULT_CHECKPOINT = "checkpoint_final.pth"

#: Channel names a model's dataset.json may use for each modality (lower case): ours, BraTS 2021's, nnU-Net's
#: Dataset137_BraTS21 (T1, T1ce, T2, Flair).
_CHANNEL_ALIASES: dict[str, str] = {
    **{m: m for m in MODALITIES},
    **dict(zip(BRATS2021.modality_names, MODALITIES)),
    "t1gd": "t1c",
    "t2-flair": "t2f",
}


@dataclass(frozen=True)
class TrainedModel:
    """A checked model folder: folds to ensemble, checkpoint name, ``channel_modalities[k]`` = the modality (t1n,
    t1c, t2w or t2f) of nnU-Net input channel k, and the tuned lesion filter (None: none applied)."""

    folder: Path
    folds: tuple[int | str, ...]
    checkpoint: str
    channel_modalities: tuple[str, ...]
    postprocessing: FilterParameters | None
    notes: list[str] = field(default_factory=list)


def model_folder_from_ids(
    dataset: str, trainer: str = "nnUNetTrainerTCuPGAN", configuration: str = "3d_fullres", plans: str = "nnUNetPlans"
) -> Path:
    """``$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION`` for a dataset name or id, as
    ``nnUNetv2_predict -d -tr -c -p`` resolves it; ValueError if it cannot be found."""
    results = os.environ.get("nnUNet_results")
    if not results:
        raise ValueError("environment variable nnUNet_results is not set; set it, or give the model folder with -m")
    dataset = str(dataset)
    if dataset.isdigit():
        matches = sorted(Path(results).glob(f"Dataset{int(dataset):03d}_*"))
        if len(matches) != 1:
            found = "none" if not matches else ", ".join(m.name for m in matches)
            raise ValueError(f"{results}: expected one Dataset{int(dataset):03d}_* folder, found {found}")
        dataset_folder = matches[0]
    else:
        dataset_folder = Path(results) / dataset
    folder = dataset_folder / f"{trainer}__{plans}__{configuration}"
    if not folder.is_dir():
        raise ValueError(f"{folder}: trained model folder not found (check -d, -tr, -p, -c)")
    return folder


def find_folds(folder: Path, checkpoint: str = DEFAULT_CHECKPOINT) -> tuple[int, ...]:
    """Every ``fold_K`` (K an integer, as nnU-Net's own auto-detection: ``fold_all`` only when asked for) of a model
    folder that holds ``checkpoint``, sorted; ValueError naming the folder when there is none."""
    folds = sorted(
        int(p.name[len("fold_") :])
        for p in Path(folder).glob("fold_*")
        if p.name[len("fold_") :].isdigit() and (p / checkpoint).is_file()
    )
    if not folds:
        hint = " (fold_all has one: pass -f all)" if (Path(folder) / "fold_all" / checkpoint).is_file() else ""
        raise ValueError(f"{folder}: no fold_K/{checkpoint} found{hint}; train a fold with nnUNetv2_train first")
    return tuple(folds)


def _normalise_folds(folds: Sequence[int | str]) -> tuple[int | str, ...]:
    out: list[int | str] = []
    for fold in folds:
        text = str(fold).strip()
        if text == "all":
            out.append("all")
        elif text.isdigit():
            out.append(int(text))
        else:
            raise ValueError(f"fold {fold!r}: expected a fold number (0, 1, ...) or 'all'")
    if len(set(out)) != len(out):
        raise ValueError(f"folds {list(folds)}: a fold is given twice")
    return tuple(out)


def _channel_modalities(dataset_json: Path) -> tuple[str, ...]:
    """The modality of each input channel, from the model's dataset.json (``channel_names``, ``file_ending``)."""
    try:
        document = json.loads(dataset_json.read_text())
        names = {int(k): str(v) for k, v in document["channel_names"].items()}
        file_ending = document.get("file_ending", ".nii.gz")
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"{dataset_json}: cannot read the model's channel_names ({type(e).__name__}: {e})") from None
    if file_ending != ".nii.gz":
        raise ValueError(f"{dataset_json}: file_ending {file_ending!r}; predict supports .nii.gz models (BraTS data)")
    modalities = tuple(_CHANNEL_ALIASES.get(names.get(k, "").strip().lower(), "") for k in range(len(names)))
    if sorted(names) != list(range(4)) or sorted(modalities) != sorted(MODALITIES):
        raise ValueError(
            f"{dataset_json}: channel_names {document['channel_names']} are not the four BraTS modalities "
            f"({', '.join(MODALITIES)}) once each"
        )
    return modalities


def _tuned_postprocessing(folder: Path, folds: tuple[int | str, ...]) -> tuple[FilterParameters | None, list[str]]:
    """The lesion filter ``postprocess tune`` chose for this ensemble of folds, or None; notes for the user."""
    from nnunet_tcup.postprocessing.nnunet_results import JSON_NAME, crossval_folder, read_postprocessing_json

    path = crossval_folder(folder, folds) / JSON_NAME
    if not path.is_file():
        others = sorted(p.parent.name for p in folder.glob(f"crossval_results_folds_*/{JSON_NAME}"))
        note = f"no tuned post-processing for folds {' '.join(map(str, folds))} ({path} not found)"
        if others:
            note += f"; there is one for {', '.join(others)}: predict with those folds to apply it"
        return None, [note + "; predictions are not filtered"]
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError):
        document = None
    if isinstance(document, dict) and "kwargs" not in document and "postprocessing_fns" in document:
        return None, [
            f"{path} is nnU-Net's own post-processing (nnUNetv2_find_best_configuration), not the tuned lesion "
            "filter; not applied (run nnunet_tcup postprocess tune to tune the filter)"
        ]
    return read_postprocessing_json(path), []


def load_model(
    folder: str | Path,
    folds: Sequence[int | str] | None = None,
    checkpoint: str = DEFAULT_CHECKPOINT,
    postprocessing: bool = True,
) -> TrainedModel:
    """Check a model folder and resolve what predicting with it needs; ValueError naming the first problem.

    ``folds`` None means every fold holding ``checkpoint`` (:func:`find_folds`); ``postprocessing`` False skips the
    tuned filter even when there is one.
    """
    from nnunet_tcup.review.predict import check_model_folder

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"{folder}: model folder not found (expected $nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIGURATION)"
        )
    if not checkpoint or Path(checkpoint).name != checkpoint:
        raise ValueError(f"--checkpoint {checkpoint!r}: expected a file name such as {DEFAULT_CHECKPOINT}")
    chosen = find_folds(folder, checkpoint) if folds is None else _normalise_folds(folds)
    if not chosen:
        raise ValueError(f"{folder}: give at least one fold")
    check_model_folder(folder, chosen, checkpoint)
    modalities = _channel_modalities(folder / "dataset.json")
    params, notes = _tuned_postprocessing(folder, chosen) if postprocessing else (None, [])
    return TrainedModel(folder, chosen, checkpoint, modalities, params, notes)


def resolve_device(device: str = "auto"):
    """``torch.device`` for ``auto`` (cuda if available, else cpu), ``cpu`` or ``cuda``; ValueError otherwise."""
    import torch

    name = str(device).strip().lower()
    if name not in DEVICES:
        raise ValueError(f"--device {device!r}: expected one of {', '.join(DEVICES)}")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    elif name == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda: no CUDA device is available to torch (use --device cpu or auto)")
    return torch.device(name)
