"""The cases ``predict`` reads: a BraTS case-folder tree, one case folder, or four modality files.

Case folders are found and checked for presence by the converter's own code
(:func:`nnunet_tcup.dataset_conversion.layout.discover_cases`; 2023 and 2021/2020 layouts, ``.nii`` or ``.nii.gz``,
a ``-seg`` file ignored) and validated by :func:`~nnunet_tcup.dataset_conversion.validation.validate_case_files`
(readable, finite 3D volumes on one grid). :func:`stage_inputs` gives nnU-Net its input names
``CASE_0000.nii.gz`` ... in the model's channel order: links to the ``.nii.gz`` sources (a copy where links are not
possible), gzip-compressed copies of ``.nii`` ones.
"""

from __future__ import annotations

import gzip
import os
import re
import shutil
from collections.abc import Sequence
from pathlib import Path

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.dataset_conversion.layout import (
    BRATS2023,
    FILE_ENDING,
    CaseSource,
    challenge_of_case_id,
    discover_cases,
    read_case_folder,
)

__all__ = ["case_from_files", "find_cases", "input_files", "part_of", "raise_errors", "stage_inputs", "validate_cases"]

#: Case ids usable as file names (nnU-Net's and the output's): no path separators, no leading dot or dash.
_SAFE_CASE_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", re.ASCII)


def find_cases(input_path: str | Path) -> tuple[list[CaseSource], list[str]]:
    """The cases of ``input_path`` (a folder of BraTS case folders, or one case folder), sorted by case id, and
    notes on skipped entries; ValueError naming the first problem (the converter's messages)."""
    path = Path(input_path)
    if not path.is_dir():
        raise ValueError(f"{path}: not a directory (expected a folder of BraTS case folders, or one case folder)")
    own = challenge_of_case_id(path.name)
    if own is not None:
        return [read_case_folder(path, own, "test")], []
    challenge = next(
        (c for c in (challenge_of_case_id(p.name) for p in sorted(path.iterdir()) if p.is_dir()) if c), "GLI"
    )
    discovery = discover_cases(path, challenge, "test")
    return discovery.cases, discovery.notes


def case_from_files(files: dict[str, str | Path | None], case_id: str) -> CaseSource:
    """One case from its four modality files (``{'t1n': path, ...}``); ValueError naming a missing one."""
    if not _SAFE_CASE_ID.fullmatch(case_id):
        raise ValueError(f"case id {case_id!r}: use letters, digits, '_', '-' and '.' only (it names the output file)")
    missing = [m for m in MODALITIES if not files.get(m)]
    if missing:
        raise ValueError(f"case {case_id}: missing --{' --'.join(missing)} (all four modalities are needed)")
    images = tuple(Path(str(files[m])) for m in MODALITIES)
    for modality, image in zip(MODALITIES, images):
        if not image.is_file():
            raise ValueError(f"{image}: {modality} image not found" if not image.exists() else f"{image}: not a file")
        if not image.name.endswith((".nii.gz", ".nii")):
            raise ValueError(f"{image}: {modality} image must be a .nii.gz or .nii file")
    return CaseSource(case_id, images[0].parent, images, None, "test", BRATS2023.name)


def part_of(items: Sequence, num_parts: int, part_id: int) -> list:
    """The items of part ``part_id`` of ``num_parts`` (every num_parts-th, from part_id): the split
    ``nnUNetv2_predict -num_parts -part_id`` makes of its sorted cases."""
    if num_parts < 1 or not 0 <= part_id < num_parts:
        raise ValueError(f"-part_id {part_id}: expected 0 <= part_id < num_parts ({num_parts})")
    return list(items)[part_id::num_parts]


def _validation_error(case: CaseSource) -> str | None:
    from nnunet_tcup.dataset_conversion.validation import validate_case_files

    try:
        validate_case_files(case.case_id, list(zip(MODALITIES, case.images)), None)
    except ValueError as e:
        return str(e)
    return None


def validate_cases(cases: Sequence[CaseSource], num_workers: int, progress: bool) -> None:
    """Read every image of every case fully (verified gzip stream, finite 3D volumes on one grid); one ValueError
    with one line per failing case."""
    from nnunet_tcup.parallel import parallel_map

    results = parallel_map(_validation_error, cases, num_workers=num_workers, desc="checking", progress=progress)
    raise_errors([e for e in results if e], len(cases), "nothing was predicted")


def raise_errors(errors: Sequence[str | None], total: int, consequence: str) -> None:
    """Nothing for no errors; one error: a ValueError with its message; more: one line each under a header."""
    errors = [e for e in errors if e]
    if len(errors) == 1:
        raise ValueError(errors[0])
    if errors:
        lines = "\n".join(f"  - {e}" for e in errors)
        raise ValueError(f"{len(errors)} of {total} case(s) failed; {consequence}:\n{lines}")


def _gzip_copy(source: Path, target: Path) -> None:
    with open(source, "rb") as fin, gzip.open(target, "wb", compresslevel=1) as fout:
        shutil.copyfileobj(fin, fout, 1 << 22)


def input_files(folder: Path, case_id: str, channels: int) -> list[str]:
    """nnU-Net's input names of one case in ``folder``: ``CASE_0000.nii.gz`` ... in channel order."""
    return [str(folder / f"{case_id}_{k:04d}{FILE_ENDING}") for k in range(channels)]


def stage_inputs(case: CaseSource, folder: Path, channel_modalities: Sequence[str]) -> list[str]:
    """Give nnU-Net ``folder/CASE_000K.nii.gz`` for each channel K (modality ``channel_modalities[K]``); returns
    the paths in channel order."""
    sources = dict(zip(MODALITIES, case.images))
    targets = input_files(folder, case.case_id, len(channel_modalities))
    for modality, target in zip(channel_modalities, targets):
        source = sources[modality]
        if source.name.endswith(".gz"):
            try:
                os.symlink(source.resolve(), target)
            except OSError:
                shutil.copyfile(source, target)
        else:
            _gzip_copy(source, Path(target))
    return targets
