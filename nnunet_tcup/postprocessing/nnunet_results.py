"""Where nnU-Net keeps cross-validation predictions and its postprocessing files, and writing ours there.

``nnUNetv2_find_best_configuration`` gathers the folds' validation predictions of a trained model
(``$nnUNet_results/DatasetXXX_NAME/TRAINER__PLANS__CONFIG/fold_X/validation``) into
``TRAINER__PLANS__CONFIG/crossval_results_folds_0_1_2_3_4`` (``accumulate_cv_results``), writes
``postprocessing.pkl`` / ``postprocessing.json`` there (``determine_postprocessing``) and points
``inference_instructions.txt`` at that pkl and at the ``plans.json`` next to it. Writing our files at the same
paths makes those instructions apply the lesion filter. Re-running ``nnUNetv2_find_best_configuration`` afterwards
recreates that folder and replaces our files, so tune after it.
"""

from __future__ import annotations

import datetime
import pickle
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_tcup.postprocessing.lesion_filter import FilterParameters

PKL_NAME = "postprocessing.pkl"
JSON_NAME = "postprocessing.json"
JSON_FORMAT = "nnunet_tcup.lesion_filter.v1"
FUNCTION_PATH = "nnunet_tcup.postprocessing.lesion_filter.filter_lesions"


@dataclass(frozen=True)
class ResultsLayout:
    """Folders of one trained nnU-Net model for the given folds."""

    dataset_name: str
    model_folder: Path
    validation_folders: tuple[Path, ...]
    gt_folder: Path
    crossval_folder: Path
    inference_information: Path


def crossval_folder(model_folder: Path, folds: Sequence[int | str]) -> Path:
    """``MODEL_FOLDER/crossval_results_folds_0_1_...``: where nnUNetv2_find_best_configuration and ``postprocess
    tune -d`` put the post-processing of the ensemble of ``folds``."""
    from nnunetv2.utilities.file_path_utilities import folds_tuple_to_string

    return Path(model_folder) / f"crossval_results_folds_{folds_tuple_to_string(tuple(folds))}"


def locate_results(dataset: str, trainer: str, plans: str, configuration: str, folds: Sequence[int]) -> ResultsLayout:
    """Resolve the nnU-Net folders (uses $nnUNet_results and $nnUNet_preprocessed); ValueError if any is missing."""
    import os

    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    for var in ("nnUNet_results", "nnUNet_preprocessed"):
        if not os.environ.get(var):
            raise ValueError(f"environment variable {var} is not set; it must point to nnU-Net's {var} folder")
    try:
        dataset_name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise ValueError(
            f"dataset {dataset!r} not found in nnUNet_raw / nnUNet_preprocessed / nnUNet_results: {e}"
        ) from e
    if not folds:
        raise ValueError("give at least one fold")
    folds = tuple(int(f) for f in folds)
    model_folder = Path(os.environ["nnUNet_results"]) / dataset_name / f"{trainer}__{plans}__{configuration}"
    if not model_folder.is_dir():
        raise ValueError(f"{model_folder}: trained model folder not found (check -tr, -p, -c)")
    for name in ("plans.json", "dataset.json"):
        if not (model_folder / name).is_file():
            raise ValueError(f"{model_folder / name}: missing; it is written by nnUNetv2_train")
    validation = tuple(model_folder / f"fold_{f}" / "validation" for f in folds)
    for folder in validation:
        if not folder.is_dir():
            raise ValueError(
                f"{folder}: validation predictions not found; train that fold (or run nnUNetv2_train ... --val)"
            )
    gt_folder = Path(os.environ["nnUNet_preprocessed"]) / dataset_name / "gt_segmentations"
    if not gt_folder.is_dir():
        raise ValueError(f"{gt_folder}: ground truth not found; it is written by nnUNetv2_plan_and_preprocess")
    crossval = crossval_folder(model_folder, folds)
    info = Path(os.environ["nnUNet_results"]) / dataset_name / "inference_information.json"
    return ResultsLayout(dataset_name, model_folder, validation, gt_folder, crossval, info)


def validation_predictions(layout: ResultsLayout) -> dict[str, Path]:
    """Case name -> prediction file over the folds' validation folders; ValueError on a case in two folds."""
    import json

    from nnunet_tcup.io_utils import list_nifti_cases

    file_ending = json.loads((layout.model_folder / "dataset.json").read_text()).get("file_ending", ".nii.gz")
    if file_ending != ".nii.gz":
        raise ValueError(
            f"{layout.model_folder / 'dataset.json'}: file_ending {file_ending!r} is not supported "
            f"(BraTS data is .nii.gz)"
        )
    out: dict[str, Path] = {}
    for folder in layout.validation_folders:
        for name in list_nifti_cases(folder):
            if name in out:
                raise ValueError(f"case {name} is predicted in two folds: {out[name]} and {folder}")
            out[name] = folder / f"{name}.nii.gz"
    return out


def prepare_crossval_folder(layout: ResultsLayout) -> list[str]:
    """Create the crossval folder if needed with the model's plans.json / dataset.json (the apply command in
    inference_instructions.txt passes that plans.json); return notes for the user."""
    notes: list[str] = []
    layout.crossval_folder.mkdir(parents=True, exist_ok=True)
    for name in ("plans.json", "dataset.json"):
        if not (layout.crossval_folder / name).is_file():
            shutil.copy2(layout.model_folder / name, layout.crossval_folder / name)
            notes.append(f"copied {name} into {layout.crossval_folder}")
    return notes


def backup_path(path: Path, stamp: str | None = None) -> Path:
    """``PATH.bak-YYYYmmdd-HHMMSS`` (with a counter if that exists already)."""
    stamp = stamp or datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    candidate = path.with_name(f"{path.name}.bak-{stamp}")
    k = 1
    while candidate.exists():
        candidate = path.with_name(f"{path.name}.bak-{stamp}-{k}")
        k += 1
    return candidate


def postprocessing_json(params: FilterParameters, source: str, extra: dict | None = None) -> dict:
    """Readable description of a filter setting (what ``postprocess apply --json`` reads)."""
    from nnunet_tcup import __version__

    kwargs = params.as_kwargs()
    doc = {
        "format": JSON_FORMAT,
        "function": FUNCTION_PATH,
        "kwargs": kwargs,
        "source": source,
        "definition": "per region WT, TC, ET (in this order): keep a 3D component (cc3d, 26-connectivity) iff "
        "voxels / z-slices > threshold and z-slices >= min_slices; removed WT -> 0, TC -> 2, ET -> 1",
        "created": datetime.datetime.now().isoformat(timespec="seconds"),
        "nnunet_tcup_version": __version__,
        # the keys nnU-Net's own postprocessing.json uses for the same information (empty: no post-processing)
        "postprocessing_fns": [] if params.is_identity else ["filter_lesions"],
        "postprocessing_kwargs": [] if params.is_identity else [kwargs],
    }
    doc.update(extra or {})
    return doc


def write_postprocessing_files(folder: Path, params: FilterParameters, document: dict) -> tuple[Path, Path, list[str]]:
    """Write ``postprocessing.pkl`` (nnU-Net's ``([fn], [kwargs])``; ``([], [])``, nnU-Net's own "no
    post-processing", for the identity) and ``postprocessing.json`` into ``folder``, atomically; existing files are
    first copied to ``NAME.bak-TIMESTAMP``. Returns the paths and messages."""
    from nnunet_tcup.io_utils import atomic_output, write_json_atomic
    from nnunet_tcup.postprocessing.lesion_filter import filter_lesions

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pkl, js = folder / PKL_NAME, folder / JSON_NAME
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    messages: list[str] = []
    for path in (pkl, js):
        if path.exists():
            backup = backup_path(path, stamp)
            shutil.copy2(path, backup)
            messages.append(f"{path} exists: replacing it, previous version kept as {backup}")
    with atomic_output(pkl) as tmp:
        with open(tmp, "wb") as f:
            content = ([], []) if params.is_identity else ([filter_lesions], [params.as_kwargs()])
            pickle.dump(content, f)
    write_json_atomic(document, js)
    return pkl, js, messages


def read_postprocessing_json(path: Path) -> FilterParameters:
    """Filter parameters from a postprocessing.json written by nnunet_tcup (no unpickling); ValueError if invalid."""
    import json

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        doc = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from e
    if not isinstance(doc, dict) or "kwargs" not in doc:
        raise ValueError(
            f"{path}: not an nnunet_tcup postprocessing.json (no 'kwargs'); nnU-Net's own "
            f"postprocessing.json describes a different post-processing"
        )
    if doc.get("function", FUNCTION_PATH) != FUNCTION_PATH:
        raise ValueError(f"{path}: describes function {doc.get('function')!r}, expected {FUNCTION_PATH}")
    return FilterParameters.from_kwargs(doc["kwargs"], source=str(path))
