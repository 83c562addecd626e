"""BraTS case folders -> nnU-Net v2 raw dataset ``DatasetNNN_BraTS2023_CH`` (the ``convert`` orchestration).

Input: a folder of case folders in a layout of :mod:`.layout`: BraTS 2023 ``BraTS-CH-NNNNN-NNN/...-{t1n,t1c,t2w,
t2f,seg}.nii.gz`` (GLI, MEN, PED, SSA) or BraTS 2021/2020 ``BraTS2021_NNNNN/..._{t1,t1ce,t2,flair,seg}.nii.gz``
(GLI; label 4 becomes 3); ``.nii`` as well as ``.nii.gz``.

Output, in ``$nnUNet_raw/Dataset{ID:03d}_BraTS2023_{CH}``:

- ``imagesTr/CASE_0000.nii.gz`` ... ``CASE_0003.nii.gz``: channels 0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f.
  Images are the validated source bytes (a ``.nii`` source is gzip-compressed deterministically).
- ``labelsTr/CASE.nii.gz``: the segmentation rewritten as uint8 with the source header (same affine), in 2023
  labels (1 = NETC, 2 = SNFH, 3 = ET) in every mode.
- ``imagesTs/CASE_000X.nii.gz`` and, for test cases that have a segmentation, ``labelsTs/CASE.nii.gz`` (``--test``).
- ``dataset.json`` (written last): ``regions`` mode (default) declares the regions whole tumour [1, 2, 3], tumour
  core [1, 3] and enhancing tumour [3] with ``regions_class_order`` [2, 1, 3], so nnU-Net trains one sigmoid per
  region and its exported predictions carry 2023 labels; ``classes`` mode (alias ``labels``) declares the paper's
  native classes background/NETC/SNFH/ET as a plain label dataset. Extra keys: ``challenge``, ``mode``, ``source``,
  ``source_layout``, ``label_map`` (source value -> written value), ``numTest``, ``numTestLabels``,
  ``converted_by``.

Safety: every case is fully validated (see :mod:`.validation`) before anything is written; existing outputs are never
overwritten; each file is written atomically; a per-case manifest (see :mod:`.manifest`) written after a case's files
lets a re-run skip verified cases and finish interrupted ones.

Concurrency: from its first look at the output (other folders with the id, the target folder, existing outputs) to
its end, a run holds a lock on the dataset id (:func:`dataset_lock_file`); a second run for that id meanwhile fails
at once with one line and changes nothing. The run holding the lock deletes every ``.*.partial-*`` file left in the
folder by an earlier, killed run, and, when it adds cases, the ``dataset.json`` of the earlier complete state
(written again at its end: a folder without ``dataset.json`` is incomplete), and nothing else.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tcup import __version__
from nnunet_tcup.challenges import CHALLENGES, MODALITIES, check_challenge
from nnunet_tcup.dataset_conversion import manifest as mf
from nnunet_tcup.dataset_conversion.case_io import CaseCheck, CaseTask, check_case, write_case
from nnunet_tcup.dataset_conversion.layout import (
    BRATS2023,
    CASE_ID_PATTERN,
    FILE_ENDING,
    SEG_NAME,
    SPLIT_FOLDERS,
    CaseSource,
    Discovery,
    Layout,
    OutputSpec,
    check_unique_case_ids,
    discover_cases,
)
from nnunet_tcup.errors import ErrorList
from nnunet_tcup.io_utils import is_partial_file, remove_stale_partials, write_json_atomic
from nnunet_tcup.locking import exclusive_lock
from nnunet_tcup.parallel import default_num_workers, parallel_map

MODES: tuple[str, ...] = ("regions", "classes", "labels")
#: ``labels`` is an alias of ``classes`` (same dataset.json, recorded as ``classes``).
MODE_ALIASES: dict[str, str] = {"labels": "classes"}

#: dataset.json labels for ``regions`` mode (2023 label values; evaluated regions WT, TC, ET).
REGION_LABELS: dict[str, object] = {
    "background": 0,
    "whole tumor": [1, 2, 3],
    "tumor core": [1, 3],
    "enhancing tumor": [3],
}
#: Painting order that turns the three region outputs back into 2023 labels: WT -> 2, TC -> 1, ET -> 3.
REGIONS_CLASS_ORDER: list[int] = [2, 1, 3]
#: dataset.json labels for ``classes`` mode (the paper's native classes; ``labels`` is an alias).
PLAIN_LABELS: dict[str, int] = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}


def dataset_name(dataset_id: int, challenge: str) -> str:
    """``Dataset{ID:03d}_BraTS2023_{CH}``."""
    return f"Dataset{check_dataset_id(dataset_id):03d}_BraTS2023_{check_challenge(challenge)}"


def check_dataset_id(dataset_id: int) -> int:
    if isinstance(dataset_id, bool) or not isinstance(dataset_id, int) or not 1 <= dataset_id <= 999:
        raise ValueError(f"dataset id must be an integer from 1 to 999 (nnU-Net's three digits), got {dataset_id!r}")
    return dataset_id


def check_mode(mode: str) -> str:
    """The canonical mode name (``regions`` or ``classes``; ``labels`` gives ``classes``); ValueError otherwise."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}: expected one of {', '.join(MODES)}")
    return MODE_ALIASES.get(mode, mode)


def nnunet_raw_folder() -> Path:
    """``$nnUNet_raw`` as a Path (created if missing); ValueError if the variable is unset or empty."""
    value = os.environ.get("nnUNet_raw", "").strip()
    if not value:
        raise ValueError(
            "the environment variable nnUNet_raw is not set; set it to the folder holding nnU-Net raw "
            "datasets, e.g. `export nnUNet_raw=/data/nnUNet_raw`"
        )
    folder = Path(value).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"nnUNet_raw={folder} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def build_dataset_json(
    challenge: str,
    mode: str,
    num_training: int,
    num_test: int,
    train_dir: Path,
    test_dir: Path | None,
    layout: Layout = BRATS2023,
    num_test_labels: int = 0,
) -> dict:
    """The dataset.json nnU-Net needs, plus descriptive keys (challenge, mode, source, source_layout, label_map,
    numTest, numTestLabels, converted_by)."""
    challenge, mode = check_challenge(challenge), check_mode(mode)
    obj: dict = {
        "channel_names": {str(i): m for i, m in enumerate(MODALITIES)},
        "labels": dict(REGION_LABELS) if mode == "regions" else dict(PLAIN_LABELS),
    }
    if mode == "regions":
        obj["regions_class_order"] = list(REGIONS_CLASS_ORDER)
    obj.update(
        {
            "numTraining": num_training,
            "file_ending": FILE_ENDING,
            "name": f"BraTS2023_{challenge}",
            "description": f"BraTS {challenge} converted by nnunet_tcup convert ({mode} mode) from {layout.description}. "
            "Channels: 0000 = t1n (T1 native), 0001 = t1c (T1 contrast-enhanced), 0002 = t2w "
            "(T2-weighted), 0003 = t2f (T2-FLAIR). Label values in labelsTr and in exported predictions "
            "are the 2023 ones: 1 = NETC (necrotic tumour core), 2 = SNFH (peritumoral edema), 3 = ET "
            "(enhancing tumour).",
            "reference": "BraTS 2023 challenge (https://www.synapse.org/brats)",
            "challenge": challenge,
            "mode": mode,
            "source": {
                "train": str(Path(train_dir).resolve()),
                "test": str(Path(test_dir).resolve()) if test_dir is not None else None,
            },
            "source_layout": layout.name,
            "label_map": {str(k): v for k, v in layout.label_map},
            "numTest": num_test,
            "numTestLabels": num_test_labels,
            "converted_by": f"nnunet_tcup {__version__} convert",
        }
    )
    return obj


# ---------------------------------------------------------------------------------------------------------------------
# Checks on the target folder (before anything is written)


def _same_id_folders(dataset_id: int, name: str, roots: Sequence[Path]) -> list[Path]:
    prefix = f"Dataset{dataset_id:03d}_"
    found = []
    for root in roots:
        if root.is_dir():
            found += [p for p in sorted(root.iterdir()) if p.is_dir() and p.name.startswith(prefix) and p.name != name]
    return found


def _load_json(path: Path) -> dict:
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        raise ValueError(
            f"{path}: cannot read existing JSON ({type(e).__name__}: {e}); not touching this dataset"
        ) from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: existing JSON is not an object; not touching this dataset")
    return obj


def check_target_folder(
    dataset_dir: Path, dataset_id: int, challenge: str, mode: str, cases: Sequence[CaseSource]
) -> None:
    """ValueError if the target folder (or another folder with the same id) holds anything this run would not make.

    Refused: another ``DatasetNNN_*`` folder with the same id in nnUNet_raw / nnUNet_preprocessed / nnUNet_results;
    a dataset.json or conversion record of another tool, challenge or mode; ``*.nii.gz`` files in imagesTr,
    labelsTr or imagesTs that are not outputs of the given cases. (Outputs of the given cases that differ from what
    would be written are found per case, by :func:`check_case`.)
    """
    roots = [dataset_dir.parent] + [
        Path(os.environ[k]) for k in ("nnUNet_preprocessed", "nnUNet_results") if os.environ.get(k, "").strip()
    ]
    others = _same_id_folders(dataset_id, dataset_dir.name, roots)
    if others:
        raise ValueError(
            f"dataset id {dataset_id} is already used by {others[0]} (another name than "
            f"{dataset_dir.name}); choose another --dataset-id or remove that dataset"
        )
    if not dataset_dir.exists():
        return
    if not dataset_dir.is_dir():
        raise ValueError(f"{dataset_dir}: exists and is not a directory")
    for record in (dataset_dir / "dataset.json", mf.state_folder(dataset_dir) / "conversion.json"):
        if not record.is_file():
            continue
        obj = _load_json(record)
        tool = str(obj.get("converted_by", obj.get("tool", "")))
        if not tool.startswith("nnunet_tcup"):
            raise ValueError(
                f"{record}: this dataset was not made by nnunet_tcup convert; not overwriting it "
                f"(choose another --dataset-id)"
            )
        existing = {"challenge": obj.get("challenge"), "mode": MODE_ALIASES.get(str(obj.get("mode")), obj.get("mode"))}
        for key, wanted in (("challenge", challenge), ("mode", mode)):
            if existing[key] != wanted:
                raise ValueError(
                    f"{record}: existing dataset has {key} {obj.get(key)!r}, this run asks for "
                    f"{wanted!r}; not overwriting it (choose another --dataset-id or --mode)"
                )
    expected = {spec.relative_path for case in cases for spec in case.outputs()}
    foreign = []
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        folder = dataset_dir / sub
        if folder.is_dir():
            foreign += [
                p
                for p in sorted(folder.iterdir())
                if p.name.endswith(FILE_ENDING) and not is_partial_file(p) and f"{sub}/{p.name}" not in expected
            ]
    if foreign:
        raise ErrorList(
            f"{dataset_dir}: holds {len(foreign)} file(s) that are not outputs of the given cases "
            f"(cases no longer in --train/--test, cases moved between them, or another dataset's "
            f"files); not touching them:",
            [str(p) for p in foreign],
            limit=10,
        )


# ---------------------------------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class ConversionSummary:
    """What :func:`convert_brats2023` did: the dataset folder, case ids written and skipped (already verified)."""

    dataset_dir: Path
    converted: list[str]
    skipped: list[str]
    num_training: int
    num_test: int
    dataset_json_written: bool
    layout: str = BRATS2023.name
    notes: list[str] = field(default_factory=list)


def convert_brats2023(
    challenge: str,
    dataset_id: int,
    train_dir: Path,
    test_dir: Path | None = None,
    mode: str = "regions",
    num_workers: int | None = None,
    raw_dir: Path | None = None,
    progress: bool = True,
) -> ConversionSummary:
    """Convert BraTS case folders (any layout of :mod:`.layout`) into ``raw_dir/Dataset{ID:03d}_BraTS2023_{CH}`` (``raw_dir`` defaults to
    ``$nnUNet_raw``). See the module docstring for the layout.

    Order of work: find the source cases; take the dataset id's lock (see the module docstring) and check the
    target folder; check every case in parallel (full validation, no writes); if any case fails, raise one
    ValueError listing every failing case (file and problem) with nothing written; else write the cases not yet
    complete (files atomically, manifest last), then ``dataset.json``.
    Re-running resumes: verified cases are skipped, missing outputs are written, nothing existing is overwritten.
    """
    challenge, mode, dataset_id = check_challenge(challenge), check_mode(mode), check_dataset_id(dataset_id)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    if workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {workers}")
    root = Path(raw_dir) if raw_dir is not None else nnunet_raw_folder()
    dataset_dir = root / dataset_name(dataset_id, challenge)

    train = discover_cases(Path(train_dir), challenge, "train")
    test = discover_cases(Path(test_dir), challenge, "test") if test_dir is not None else None
    layout = _common_layout(train, test)
    cases, test_cases = train.cases, (test.cases if test is not None else [])
    all_cases = cases + test_cases
    check_unique_case_ids(all_cases)
    wanted_json = build_dataset_json(
        challenge,
        mode,
        len(cases),
        len(test_cases),
        Path(train_dir),
        Path(test_dir) if test_dir is not None else None,
        layout,
        sum(c.seg is not None for c in test_cases),
    )
    # Everything that reads the output (other folders with this id, the target folder, existing outputs) happens
    # under the lock: a second run for this id meanwhile fails at once, and never sees or changes a half state.
    with exclusive_lock(dataset_lock_file(root, dataset_id), f"dataset {dataset_dir.name}", remove=True):
        check_target_folder(dataset_dir, dataset_id, challenge, mode, all_cases)
        checks = parallel_map(
            check_case,
            [CaseTask(c, dataset_dir, challenge) for c in all_cases],
            num_workers=workers,
            desc=f"checking {challenge}",
            progress=progress,
            label=lambda task: task.case.case_id,
        )
        errors = [str(c.error) for c in checks if c.status == "error"]
        if errors:
            raise ErrorList(f"{len(errors)} of {len(checks)} case(s) failed the checks; nothing was written:", errors)
        todo = [c for c in checks if c.status == "todo"]
        # This run owns the folder now: every partial file in it is left over from an earlier, killed run.
        for sub in ("", "imagesTr", "labelsTr", "imagesTs", "labelsTs", mf.STATE_FOLDER, f"{mf.STATE_FOLDER}/cases"):
            remove_stale_partials(dataset_dir / sub)
        json_written = _write_locked(dataset_dir, challenge, mode, todo, wanted_json, workers, progress)
    notes = train.notes + (test.notes if test is not None else [])
    return ConversionSummary(
        dataset_dir,
        [c.case.case_id for c in todo],
        [c.case.case_id for c in checks if c.status == "done"],
        len(cases),
        len(test_cases),
        json_written,
        layout.name,
        notes,
    )


def dataset_lock_file(root: Path, dataset_id: int) -> Path:
    """The lock every ``convert`` for dataset id ``dataset_id`` into ``root`` (nnUNet_raw) holds from its first look
    at the output to its end: ``root/.DatasetNNN.nnunet_tcup-lock`` (hidden; removed when the run ends). One lock
    per id, not per folder, because two folders with one id are an error too."""
    return Path(root) / f".Dataset{check_dataset_id(dataset_id):03d}.nnunet_tcup-lock"


def _common_layout(train: Discovery, test: Discovery | None) -> Layout:
    """The layout of the run; ValueError if --train and --test hold different layouts."""
    if test is not None and test.layout != train.layout:
        raise ValueError(
            f"{test.cases[0].folder}: --test holds {test.layout.name} cases but --train holds "
            f"{train.layout.name} cases ({train.cases[0].folder}); convert one layout per dataset"
        )
    return train.layout


def _write_locked(
    dataset_dir: Path, challenge: str, mode: str, todo: list[CaseCheck], wanted_json: dict, workers: int, progress: bool
) -> bool:
    """Write the cases still to do, then dataset.json if it differs; return whether dataset.json was written."""
    dataset_json = dataset_dir / "dataset.json"
    if todo:
        write_json_atomic(
            {
                "tool": mf.TOOL_NAME,
                "challenge": challenge,
                "mode": mode,
                "source_layout": wanted_json["source_layout"],
                "label_map": wanted_json["label_map"],
            },
            mf.state_folder(dataset_dir) / "conversion.json",
        )
        if dataset_json.exists():  # the folder is incomplete until this run ends: dataset.json present == complete
            dataset_json.unlink()
        parallel_map(
            write_case,
            [(c, dataset_dir, challenge) for c in todo],
            num_workers=workers,
            desc=f"converting {challenge}",
            progress=progress,
            label=lambda task: task[0].case.case_id,
        )
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (dataset_dir / sub).mkdir(parents=True, exist_ok=True)
    json_written = not (dataset_json.is_file() and _load_json(dataset_json) == wanted_json)
    if json_written:
        write_json_atomic(wanted_json, dataset_json)
    return json_written


__all__ = [
    "CASE_ID_PATTERN",
    "CHALLENGES",
    "FILE_ENDING",
    "MODES",
    "MODE_ALIASES",
    "PLAIN_LABELS",
    "REGION_LABELS",
    "REGIONS_CLASS_ORDER",
    "SEG_NAME",
    "SPLIT_FOLDERS",
    "CaseCheck",
    "CaseSource",
    "CaseTask",
    "ConversionSummary",
    "OutputSpec",
    "build_dataset_json",
    "check_case",
    "check_mode",
    "check_target_folder",
    "convert_brats2023",
    "dataset_name",
    "discover_cases",
    "nnunet_raw_folder",
    "write_case",
]
