"""BraTS 2023 (GLI, MEN, PED, SSA) case folders -> nnU-Net v2 raw dataset ``DatasetNNN_BraTS2023_CH``.

Input: a folder of case folders ``BraTS-CH-NNNNN-NNN/`` each holding ``BraTS-CH-NNNNN-NNN-{t1n,t1c,t2w,t2f}.nii.gz``
and, for training data, ``...-seg.nii.gz`` (2023 labels: 1 = NETC, 2 = SNFH, 3 = ET).

Output, in ``$nnUNet_raw/Dataset{ID:03d}_BraTS2023_{CH}``:

- ``imagesTr/CASE_0000.nii.gz`` ... ``CASE_0003.nii.gz``: channels 0000 = t1n, 0001 = t1c, 0002 = t2w, 0003 = t2f.
  Images are byte-for-byte copies of the validated sources (same header, same data, same compression).
- ``labelsTr/CASE.nii.gz``: the segmentation rewritten as uint8 with the source header (same affine); label values
  are unchanged in both modes.
- ``imagesTs/CASE_000X.nii.gz``: test cases (``--test``; a ``-seg`` file there is ignored).
- ``dataset.json`` (written last): ``regions`` mode (default) declares the regions whole tumour [1, 2, 3], tumour
  core [1, 3] and enhancing tumour [3] with ``regions_class_order`` [2, 1, 3], so nnU-Net trains one sigmoid per
  region and its exported predictions carry 2023 labels; ``labels`` mode declares background/NETC/SNFH/ET as
  softmax classes. Extra keys: ``challenge``, ``mode``, ``source``, ``numTest``, ``converted_by``.

Safety: every case is fully validated (see :mod:`.validation`) before anything is written; existing outputs are never
overwritten; each file is written atomically; a per-case manifest (see :mod:`.manifest`) written after a case's files
lets a re-run skip verified cases and finish interrupted ones.
"""
from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

from nnunet_tcup import __version__
from nnunet_tcup.challenges import CHALLENGES, MODALITIES, check_challenge
from nnunet_tcup.dataset_conversion import manifest as mf
from nnunet_tcup.dataset_conversion.validation import CaseValidationError, validate_case_files
from nnunet_tcup.io_utils import atomic_output, exclusive_lock, is_partial_file, remove_stale_partials, write_json_atomic
from nnunet_tcup.parallel import default_num_workers, parallel_map

MODES: Tuple[str, ...] = ("regions", "classes", "labels")
#: ``labels`` is an alias of ``classes`` (same dataset.json, recorded as ``classes``).
MODE_ALIASES: Dict[str, str] = {"labels": "classes"}
FILE_ENDING = ".nii.gz"
SEG_NAME = "seg"
CASE_ID_PATTERN = re.compile(r"^BraTS-(?P<challenge>[A-Z]+)-\d{5}-\d{3}$")

#: dataset.json labels for ``regions`` mode (2023 label values; evaluated regions WT, TC, ET).
REGION_LABELS: Dict[str, object] = {"background": 0, "whole tumor": [1, 2, 3], "tumor core": [1, 3],
                                    "enhancing tumor": [3]}
#: Painting order that turns the three region outputs back into 2023 labels: WT -> 2, TC -> 1, ET -> 3.
REGIONS_CLASS_ORDER: List[int] = [2, 1, 3]
#: dataset.json labels for ``classes`` mode (the paper's native classes; ``labels`` is an alias).
PLAIN_LABELS: Dict[str, int] = {"background": 0, "NETC": 1, "SNFH": 2, "ET": 3}

SPLIT_FOLDERS = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", None)}


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
        raise ValueError("the environment variable nnUNet_raw is not set; set it to the folder holding nnU-Net raw "
                         "datasets, e.g. `export nnUNet_raw=/data/nnUNet_raw`")
    folder = Path(value).expanduser()
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"nnUNet_raw={folder} is not a directory")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@dataclass(frozen=True)
class OutputSpec:
    """One output file: path relative to the dataset folder, and the source it comes from (modality name/'seg')."""

    relative_path: str
    source: str

    @property
    def is_labels(self) -> bool:
        return self.source == SEG_NAME


@dataclass(frozen=True)
class CaseSource:
    """One BraTS case: id, folder, modality files in channel order (t1n, t1c, t2w, t2f), seg (train only), split."""

    case_id: str
    folder: Path
    images: Tuple[Path, ...]
    seg: Optional[Path]
    split: str

    def source_files(self) -> List[Tuple[str, Path]]:
        """``(name, path)`` for every file used: modalities in channel order, then ``seg`` for training cases."""
        files = list(zip(MODALITIES, self.images))
        if self.seg is not None:
            files.append((SEG_NAME, self.seg))
        return files

    def outputs(self) -> List[OutputSpec]:
        images_folder, labels_folder = SPLIT_FOLDERS[self.split]
        specs = [OutputSpec(f"{images_folder}/{self.case_id}_{channel:04d}{FILE_ENDING}", modality)
                 for channel, modality in enumerate(MODALITIES)]
        if labels_folder is not None:
            specs.append(OutputSpec(f"{labels_folder}/{self.case_id}{FILE_ENDING}", SEG_NAME))
        return specs


def discover_cases(folder: Path, challenge: str, split: str) -> List[CaseSource]:
    """Case folders ``BraTS-CH-NNNNN-NNN`` in ``folder`` (sorted), with their files checked for presence.

    Files and hidden entries at the top level are ignored; any other sub-folder, a case folder of another challenge,
    a missing modality or (for ``split == 'train'``) a missing segmentation is a ValueError naming it.
    """
    challenge = check_challenge(challenge)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory (expected a folder of BraTS-{challenge}-NNNNN-NNN case folders)")
    cases: List[CaseSource] = []
    for entry in sorted(folder.iterdir()):
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        match = CASE_ID_PATTERN.match(entry.name)
        if match is None:
            raise ValueError(f"{entry}: not a BraTS 2023 case folder (expected a name like "
                             f"BraTS-{challenge}-00001-000)")
        if match.group("challenge") != challenge:
            raise ValueError(f"{entry}: case of challenge {match.group('challenge')}, but --challenge is {challenge}")
        case_id = entry.name
        images = tuple(entry / f"{case_id}-{modality}{FILE_ENDING}" for modality in MODALITIES)
        for modality, path in zip(MODALITIES, images):
            if not path.is_file():
                raise ValueError(f"case {case_id}: {path}: missing {modality} image")
        seg: Optional[Path] = None
        if split == "train":
            seg = entry / f"{case_id}-{SEG_NAME}{FILE_ENDING}"
            if not seg.is_file():
                raise ValueError(f"case {case_id}: {seg}: missing segmentation (every --train case needs a -seg file)")
        cases.append(CaseSource(case_id, entry, images, seg, split))
    if not cases:
        raise ValueError(f"{folder}: no BraTS-{challenge}-NNNNN-NNN case folders found")
    return cases


def check_unique_case_ids(cases: Sequence[CaseSource]) -> None:
    """ValueError naming both folders if a case id occurs twice (e.g. in --train and --test)."""
    seen: Dict[str, CaseSource] = {}
    for case in cases:
        if case.case_id in seen:
            raise ValueError(f"case {case.case_id}: duplicate case id: {seen[case.case_id].folder} "
                             f"({seen[case.case_id].split}) and {case.folder} ({case.split})")
        seen[case.case_id] = case


def build_dataset_json(challenge: str, mode: str, num_training: int, num_test: int, train_dir: Path,
                       test_dir: Optional[Path]) -> dict:
    """The dataset.json nnU-Net needs, plus descriptive keys (challenge, mode, source, numTest, converted_by)."""
    challenge, mode = check_challenge(challenge), check_mode(mode)
    obj: dict = {"channel_names": {str(i): m for i, m in enumerate(MODALITIES)},
                 "labels": dict(REGION_LABELS) if mode == "regions" else dict(PLAIN_LABELS)}
    if mode == "regions":
        obj["regions_class_order"] = list(REGIONS_CLASS_ORDER)
    obj.update({
        "numTraining": num_training,
        "file_ending": FILE_ENDING,
        "name": f"BraTS2023_{challenge}",
        "description": f"BraTS 2023 {challenge} converted by nnunet_tcup convert ({mode} mode). Channels: "
                       "0000 = t1n (T1 native), 0001 = t1c (T1 contrast-enhanced), 0002 = t2w (T2-weighted), "
                       "0003 = t2f (T2-FLAIR). Label values in labelsTr and in exported predictions are the 2023 "
                       "ones: 1 = NETC (necrotic tumour core), 2 = SNFH (peritumoral edema), 3 = ET (enhancing "
                       "tumour).",
        "reference": "BraTS 2023 challenge (https://www.synapse.org/brats)",
        "challenge": challenge,
        "mode": mode,
        "source": {"train": str(Path(train_dir).resolve()),
                   "test": str(Path(test_dir).resolve()) if test_dir is not None else None},
        "numTest": num_test,
        "converted_by": f"nnunet_tcup {__version__} convert",
    })
    return obj


# ---------------------------------------------------------------------------------------------------------------------
# Checks on the target folder (before anything is written)


def _same_id_folders(dataset_id: int, name: str, roots: Sequence[Path]) -> List[Path]:
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
        raise ValueError(f"{path}: cannot read existing JSON ({type(e).__name__}: {e}); not touching this dataset")
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: existing JSON is not an object; not touching this dataset")
    return obj


def check_target_folder(dataset_dir: Path, dataset_id: int, challenge: str, mode: str,
                        cases: Sequence[CaseSource]) -> None:
    """ValueError if the target folder (or another folder with the same id) holds anything this run would not make.

    Refused: another ``DatasetNNN_*`` folder with the same id in nnUNet_raw / nnUNet_preprocessed / nnUNet_results;
    a dataset.json or conversion record of another tool, challenge or mode; ``*.nii.gz`` files in imagesTr,
    labelsTr or imagesTs that are not outputs of the given cases. (Outputs of the given cases that differ from what
    would be written are found per case, by :func:`check_case`.)
    """
    roots = [dataset_dir.parent] + [Path(os.environ[k]) for k in ("nnUNet_preprocessed", "nnUNet_results")
                                    if os.environ.get(k, "").strip()]
    others = _same_id_folders(dataset_id, dataset_dir.name, roots)
    if others:
        raise ValueError(f"dataset id {dataset_id} is already used by {others[0]} (another name than "
                         f"{dataset_dir.name}); choose another --dataset-id or remove that dataset")
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
            raise ValueError(f"{record}: this dataset was not made by nnunet_tcup convert; not overwriting it "
                             f"(choose another --dataset-id)")
        existing = {"challenge": obj.get("challenge"), "mode": MODE_ALIASES.get(obj.get("mode"), obj.get("mode"))}
        for key, wanted in (("challenge", challenge), ("mode", mode)):
            if existing[key] != wanted:
                raise ValueError(f"{record}: existing dataset has {key} {obj.get(key)!r}, this run asks for "
                                 f"{wanted!r}; not overwriting it (choose another --dataset-id or --mode)")
    expected = {spec.relative_path for case in cases for spec in case.outputs()}
    foreign = []
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        folder = dataset_dir / sub
        if folder.is_dir():
            foreign += [p for p in sorted(folder.iterdir()) if p.name.endswith(FILE_ENDING) and
                        not is_partial_file(p) and f"{sub}/{p.name}" not in expected]
    if foreign:
        listed = "\n  ".join(str(p) for p in foreign[:10])
        more = f"\n  ... and {len(foreign) - 10} more" if len(foreign) > 10 else ""
        raise ValueError(f"{dataset_dir}: holds {len(foreign)} file(s) that are not outputs of the given cases "
                         f"(cases no longer in --train/--test, cases moved between them, or another dataset's "
                         f"files); not touching them:\n  {listed}{more}")


# ---------------------------------------------------------------------------------------------------------------------
# Per-case work (run in worker processes)


@dataclass
class CaseCheck:
    """Result of :func:`check_case`: ``done`` (complete and verified), ``todo`` (validated; ``verified`` lists the
    outputs already in place) or ``error`` (``error`` holds the message)."""

    case: CaseSource
    status: str
    error: Optional[str] = None
    sources: Dict[str, mf.FileRecord] = field(default_factory=dict)
    verified: Dict[str, mf.FileRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseTask:
    case: CaseSource
    dataset_dir: Path
    challenge: str


def _existing_output_matches(spec: OutputSpec, target: Path, source: Path, source_sha: str) -> bool:
    """Would writing ``spec`` from ``source`` give the existing ``target``? Images: same bytes. Labels: same uint8
    array, shape and affine (the compressed bytes may legitimately differ)."""
    if not spec.is_labels:
        return mf.sha256_file(target) == source_sha
    import numpy as np

    from nnunet_tcup.dataset_conversion.validation import labels_as_uint8
    from nnunet_tcup.io_utils import load_nifti

    try:
        existing = load_nifti(target)
    except ValueError:
        return False
    wanted = load_nifti(source)
    return (existing.shape == wanted.shape and np.allclose(existing.affine, wanted.affine, rtol=0, atol=1e-6)
            and existing.get_data_dtype() == np.uint8
            and np.array_equal(np.asanyarray(existing.dataobj), labels_as_uint8(wanted)))


def check_case(task: CaseTask) -> CaseCheck:
    """Decide what to do with one case, writing nothing.

    1. With a manifest: if the sources are unchanged (size + mtime, else SHA-256) and every output exists with its
       recorded size and SHA-256 -> ``done``. A changed source or a changed output is an error (never overwritten);
       missing outputs make the case ``todo``.
    2. Otherwise (or to finish the case) the sources are fully validated and hashed; outputs already present must be
       identical to what would be written (kept as they are), else error.
    """
    case, dataset_dir = task.case, task.dataset_dir
    try:
        outputs = case.outputs()
        verified: Dict[str, mf.FileRecord] = {}
        manifest = mf.read_manifest(dataset_dir, case.case_id)
        if not any((dataset_dir / spec.relative_path).exists() for spec in outputs):
            manifest = None  # nothing of this case is left to protect: convert it afresh
        if manifest is not None and manifest.split == case.split:
            for name, path in case.source_files():
                record = manifest.sources.get(name)
                if record is None:
                    manifest = None
                    break
                if not record.same_content_as(path):
                    raise CaseValidationError(
                        case.case_id, path, f"changed since it was converted into {dataset_dir} (its size or "
                        f"SHA-256 differs from {mf.manifest_path(dataset_dir, case.case_id)}); not overwriting the "
                        f"converted files: delete the dataset folder or use another --dataset-id")
        if manifest is not None and manifest.split == case.split:
            for spec in outputs:
                target = dataset_dir / spec.relative_path
                if not target.exists():
                    continue
                record = manifest.outputs.get(spec.relative_path)
                if record is None or not record.same_content_as(target):
                    raise CaseValidationError(
                        case.case_id, target, "was modified after conversion (differs from its record in "
                        f"{mf.manifest_path(dataset_dir, case.case_id)}); not overwriting it: delete it to have it "
                        "written again")
                verified[spec.relative_path] = record
            if len(verified) == len(outputs):
                return CaseCheck(case, "done", sources=dict(manifest.sources), verified=verified)
        validate_case_files(case.case_id, list(zip(MODALITIES, case.images)), case.seg)
        sources = {name: mf.FileRecord.of(path) for name, path in case.source_files()}
        files = dict(case.source_files())
        for spec in outputs:
            target = dataset_dir / spec.relative_path
            if spec.relative_path in verified or not target.exists():
                continue
            if not _existing_output_matches(spec, target, files[spec.source], sources[spec.source].sha256):
                raise CaseValidationError(
                    case.case_id, target, f"already exists and differs from what converting "
                    f"{files[spec.source]} gives; not overwriting it (delete it, or use another --dataset-id)")
            verified[spec.relative_path] = mf.FileRecord.of(target, with_source_fields=False)
        return CaseCheck(case, "todo", sources=sources, verified=verified)
    except CaseValidationError as e:
        return CaseCheck(case, "error", error=str(e))


def _write_labels(source: Path, target: Path, expected_sha: str) -> mf.FileRecord:
    import nibabel as nib
    import numpy as np

    from nnunet_tcup.dataset_conversion.validation import labels_as_uint8
    from nnunet_tcup.io_utils import load_nifti

    with atomic_output(target) as tmp:
        if mf.sha256_file(source) != expected_sha:
            raise ValueError(f"{source}: changed while it was being converted; run convert again")
        img = load_nifti(source)
        out = nib.Nifti1Image(labels_as_uint8(img), img.affine, img.header.copy())
        out.set_data_dtype(np.uint8)
        nib.save(out, str(tmp))
        record = mf.FileRecord.of(tmp, with_source_fields=False)
    return record


def _copy_image(source: Path, target: Path, expected_sha: str) -> mf.FileRecord:
    with atomic_output(target) as tmp:
        sha = mf.copy_with_sha256(source, tmp)
        if sha != expected_sha:
            raise ValueError(f"{source}: changed while it was being converted; run convert again")
        size = tmp.stat().st_size
    return mf.FileRecord(size, sha)


def write_case(task: Tuple[CaseCheck, Path, str]) -> str:
    """Write the missing outputs of a validated case (each atomically), then its manifest; return the case id."""
    check, dataset_dir, challenge = task
    case = check.case
    files = dict(case.source_files())
    records: Dict[str, mf.FileRecord] = {}
    for spec in case.outputs():
        if spec.relative_path in check.verified:
            records[spec.relative_path] = check.verified[spec.relative_path]
            continue
        target = dataset_dir / spec.relative_path
        if target.exists():
            raise FileExistsError(f"case {case.case_id}: {target}: appeared while converting; not overwriting it")
        expected = check.sources[spec.source].sha256
        writer = _write_labels if spec.is_labels else _copy_image
        records[spec.relative_path] = writer(files[spec.source], target, expected)
    mf.write_manifest(dataset_dir, mf.CaseManifest(case.case_id, case.split, challenge, dict(check.sources), records))
    return case.case_id


# ---------------------------------------------------------------------------------------------------------------------
# Orchestration


@dataclass
class ConversionSummary:
    """What :func:`convert_brats2023` did: the dataset folder, case ids written and skipped (already verified)."""

    dataset_dir: Path
    converted: List[str]
    skipped: List[str]
    num_training: int
    num_test: int
    dataset_json_written: bool


def _format_errors(errors: Sequence[str], total: int) -> str:
    shown = "\n".join(f"  - {e}" for e in errors[:20])
    more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
    return f"{len(errors)} of {total} case(s) failed the checks; nothing was written:\n{shown}{more}"


def convert_brats2023(challenge: str, dataset_id: int, train_dir: Path, test_dir: Optional[Path] = None,
                      mode: str = "regions", num_workers: Optional[int] = None, raw_dir: Optional[Path] = None,
                      progress: bool = True) -> ConversionSummary:
    """Convert BraTS 2023 case folders into ``raw_dir/Dataset{ID:03d}_BraTS2023_{CH}`` (``raw_dir`` defaults to
    ``$nnUNet_raw``). See the module docstring for the layout.

    Order of work: find cases and check the target folder; check every case in parallel (full validation, no
    writes); if any case fails, raise one ValueError listing every failing case (file and problem) with nothing
    written; else write the cases not yet complete (files atomically, manifest last), then ``dataset.json``.
    Re-running resumes: verified cases are skipped, missing outputs are written, nothing existing is overwritten.
    """
    challenge, mode, dataset_id = check_challenge(challenge), check_mode(mode), check_dataset_id(dataset_id)
    workers = default_num_workers() if num_workers is None else int(num_workers)
    if workers < 1:
        raise ValueError(f"--num-workers must be >= 1, got {workers}")
    root = Path(raw_dir) if raw_dir is not None else nnunet_raw_folder()
    dataset_dir = root / dataset_name(dataset_id, challenge)

    cases = discover_cases(Path(train_dir), challenge, "train")
    test_cases = discover_cases(Path(test_dir), challenge, "test") if test_dir is not None else []
    all_cases = cases + test_cases
    check_unique_case_ids(all_cases)
    check_target_folder(dataset_dir, dataset_id, challenge, mode, all_cases)

    checks = parallel_map(check_case, [CaseTask(c, dataset_dir, challenge) for c in all_cases], num_workers=workers,
                          desc=f"checking {challenge}", progress=progress)
    errors = [c.error for c in checks if c.status == "error"]
    if errors:
        raise ValueError(_format_errors(errors, len(checks)))
    todo = [c for c in checks if c.status == "todo"]
    wanted_json = build_dataset_json(challenge, mode, len(cases), len(test_cases), Path(train_dir),
                                     Path(test_dir) if test_dir is not None else None)
    with exclusive_lock(mf.state_folder(dataset_dir) / "lock", f"dataset {dataset_dir.name}"):
        # This run owns the folder now: every partial file in it is left over from an earlier, killed run.
        for sub in ("", "imagesTr", "labelsTr", "imagesTs", "labelsTs", mf.STATE_FOLDER, f"{mf.STATE_FOLDER}/cases"):
            remove_stale_partials(dataset_dir / sub)
        json_written = _write_locked(dataset_dir, challenge, mode, todo, wanted_json, workers, progress)
    return ConversionSummary(dataset_dir, [c.case.case_id for c in todo],
                             [c.case.case_id for c in checks if c.status == "done"], len(cases), len(test_cases),
                             json_written)


def _write_locked(dataset_dir: Path, challenge: str, mode: str, todo: List[CaseCheck], wanted_json: dict,
                  workers: int, progress: bool) -> bool:
    """Write the cases still to do, then dataset.json if it differs; return whether dataset.json was written."""
    dataset_json = dataset_dir / "dataset.json"
    if todo:
        write_json_atomic({"tool": mf.TOOL_NAME, "challenge": challenge, "mode": mode},
                          mf.state_folder(dataset_dir) / "conversion.json")
        if dataset_json.exists():  # the folder is incomplete until this run ends: dataset.json present == complete
            dataset_json.unlink()
        parallel_map(write_case, [(c, dataset_dir, challenge) for c in todo], num_workers=workers,
                     desc=f"converting {challenge}", progress=progress)
    for sub in ("imagesTr", "labelsTr", "imagesTs"):
        (dataset_dir / sub).mkdir(parents=True, exist_ok=True)
    json_written = not (dataset_json.is_file() and _load_json(dataset_json) == wanted_json)
    if json_written:
        write_json_atomic(wanted_json, dataset_json)
    return json_written


__all__ = ["CHALLENGES", "MODES", "REGION_LABELS", "REGIONS_CLASS_ORDER", "PLAIN_LABELS", "CaseSource",
           "ConversionSummary", "build_dataset_json", "convert_brats2023", "dataset_name", "discover_cases",
           "nnunet_raw_folder"]
