"""Source case folders: the BraTS layouts ``convert`` reads, and the nnU-Net files each case becomes.

Layouts (found per case folder, auto-detected; one layout per run):

- ``brats2023``: ``BraTS-CH-NNNNN-NNN/BraTS-CH-NNNNN-NNN-{t1n,t1c,t2w,t2f,seg}.nii.gz``; labels 1 = NETC, 2 = SNFH,
  3 = ET, written unchanged.
- ``brats2021`` (BraTS 2021 and 2020, adult glioma, so ``--challenge GLI`` only):
  ``BraTS2021_NNNNN/BraTS2021_NNNNN_{t1,t1ce,t2,flair,seg}.nii.gz`` or ``BraTS20_Training_NNN/...``; the modalities
  map t1 -> t1n, t1ce -> t1c, t2 -> t2w, flair -> t2f and label 4 (ET) is written as 3, so the dataset carries 2023
  labels like every other.

Every file may be ``.nii.gz`` or uncompressed ``.nii`` (outputs are always ``.nii.gz``). Hidden entries and files at
the top level are skipped; ``__MACOSX/`` (left by unzipping on a Mac), ``.DS_Store``, ``Thumbs.db`` and
``desktop.ini`` are skipped with a note.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tcup.case_ids import id_problem, non_ascii_note, shown
from nnunet_tcup.challenges import MODALITIES, check_challenge

FILE_ENDING = ".nii.gz"
SOURCE_ENDINGS: tuple[str, ...] = (".nii.gz", ".nii")
SEG_NAME = "seg"
#: BraTS 2023 case id; ASCII only (``re.ASCII``, ``[0-9]``) and anchored with ``\Z`` (``$`` would also match before
#: a final newline): use :func:`brats2023_challenge` / :func:`is_legacy_case_id`, which match the whole name.
CASE_ID_PATTERN = re.compile(r"\ABraTS-(?P<challenge>[A-Z]+)-[0-9]{5}-[0-9]{3}\Z", re.ASCII)
#: BraTS 2021/2020 case id (``BraTS2021_00001``, ``BraTS20_Training_001``); ASCII only, whole name.
LEGACY_CASE_ID_PATTERN = re.compile(r"\ABraTS(?:2021|20)_(?:(?:Training|Validation)_)?[0-9]+\Z", re.ASCII)
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db", "desktop.ini"})
SPLIT_FOLDERS: dict[str, tuple[str, str]] = {"train": ("imagesTr", "labelsTr"), "test": ("imagesTs", "labelsTs")}


def brats2023_challenge(name: str) -> str | None:
    """The challenge (``GLI``, ...) of a BraTS 2023 case id such as ``BraTS-GLI-00001-000`` (the whole name, ASCII
    only), else None."""
    match = CASE_ID_PATTERN.fullmatch(name)
    return None if match is None else match.group("challenge")


def is_legacy_case_id(name: str) -> bool:
    """True for a whole BraTS 2021/2020 case id (``BraTS2021_00001``, ``BraTS20_Training_001``; ASCII only)."""
    return LEGACY_CASE_ID_PATTERN.fullmatch(name) is not None


@dataclass(frozen=True)
class Layout:
    """How a case folder names its files: ``{case_id}{separator}{name}{ending}`` with the modality names in nnU-Net
    channel order, and how its label values map to 2023 labels (``label_map``; unlisted values are kept)."""

    name: str
    description: str
    separator: str
    modality_names: tuple[str, ...]
    allowed_labels: tuple[int, ...]
    label_map: tuple[tuple[int, int], ...] = ()


BRATS2023 = Layout(
    "brats2023",
    "BraTS 2023 (t1n, t1c, t2w, t2f; labels 1 NETC, 2 SNFH, 3 ET)",
    "-",
    ("t1n", "t1c", "t2w", "t2f"),
    (0, 1, 2, 3),
)
BRATS2021 = Layout(
    "brats2021",
    "BraTS 2021/2020 (t1 -> t1n, t1ce -> t1c, t2 -> t2w, flair -> t2f; label 4 (ET) written as 3)",
    "_",
    ("t1", "t1ce", "t2", "flair"),
    (0, 1, 2, 4),
    ((4, 3),),
)
LAYOUTS: dict[str, Layout] = {BRATS2023.name: BRATS2023, BRATS2021.name: BRATS2021}


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
    """One case: id, folder, modality files in channel order (t1n, t1c, t2w, t2f), seg (None when absent), split
    (``train`` / ``test``) and layout name."""

    case_id: str
    folder: Path
    images: tuple[Path, ...]
    seg: Path | None
    split: str
    layout: str = BRATS2023.name

    def source_files(self) -> list[tuple[str, Path]]:
        """``(name, path)`` for every file used: modalities in channel order, then ``seg`` when there is one."""
        files = list(zip(MODALITIES, self.images))
        if self.seg is not None:
            files.append((SEG_NAME, self.seg))
        return files

    def outputs(self) -> list[OutputSpec]:
        images_folder, labels_folder = SPLIT_FOLDERS[self.split]
        specs = [
            OutputSpec(f"{images_folder}/{self.case_id}_{channel:04d}{FILE_ENDING}", modality)
            for channel, modality in enumerate(MODALITIES)
        ]
        if self.seg is not None:
            specs.append(OutputSpec(f"{labels_folder}/{self.case_id}{FILE_ENDING}", SEG_NAME))
        return specs


@dataclass
class Discovery:
    """Cases found in one folder, their layout, and notes about entries that were skipped."""

    cases: list[CaseSource]
    layout: Layout
    notes: list[str] = field(default_factory=list)


def find_case_file(folder: Path, case_id: str, layout: Layout, name: str) -> Path | None:
    """``folder/{case_id}{sep}{name}.nii.gz`` or ``.nii`` (the first that exists), else None."""
    for ending in SOURCE_ENDINGS:
        candidate = folder / f"{case_id}{layout.separator}{name}{ending}"
        if candidate.is_file():
            return candidate
    return None


def _case_layout(entry: Path, challenge: str) -> Layout:
    """The layout of case folder ``entry`` (by its name); ValueError naming it when it is no case folder."""
    found = brats2023_challenge(entry.name)
    if found is not None:
        if found != challenge:
            raise ValueError(f"{entry}: case of challenge {found}, but --challenge is {challenge}")
        return BRATS2023
    if is_legacy_case_id(entry.name):
        if challenge != "GLI":
            raise ValueError(f"{entry}: a BraTS 2021/2020 case (adult glioma); convert it with --challenge GLI")
        return BRATS2021
    problem = id_problem(entry.name)
    raise ValueError(
        f"{shown(entry)}: not a BraTS case folder (expected a name like BraTS-{challenge}-00001-000, or "
        f"BraTS2021_00001 / BraTS20_Training_001 for BraTS 2021/2020 data)"
        + (f"; {problem}" if problem else non_ascii_note(entry.name))
    )


def _case_source(entry: Path, layout: Layout, split: str) -> CaseSource:
    case_id = entry.name
    images = []
    for modality, name in zip(MODALITIES, layout.modality_names):
        path = find_case_file(entry, case_id, layout, name)
        if path is None:
            expected = entry / f"{case_id}{layout.separator}{name}{FILE_ENDING}"
            raise ValueError(f"case {case_id}: {expected}: missing {modality} image (.nii.gz or .nii)")
        images.append(path)
    seg = find_case_file(entry, case_id, layout, SEG_NAME)
    if split == "train" and seg is None:
        expected = entry / f"{case_id}{layout.separator}{SEG_NAME}{FILE_ENDING}"
        raise ValueError(f"case {case_id}: {expected}: missing segmentation (every --train case needs a -seg file)")
    return CaseSource(case_id, entry, tuple(images), seg, split, layout.name)


def challenge_of_case_id(case_id: str) -> str | None:
    """The challenge a case id names (``BraTS-MEN-00001-000`` -> MEN; BraTS 2021/2020 ids -> GLI), else None."""
    match = CASE_ID_PATTERN.match(case_id)
    if match is not None:
        return match.group("challenge")
    return "GLI" if LEGACY_CASE_ID_PATTERN.match(case_id) else None


def read_case_folder(entry: Path, challenge: str, split: str) -> CaseSource:
    """One case folder (its layout from its name), its files checked for presence, as :func:`discover_cases` does
    for each case folder it finds; ValueError naming the problem."""
    entry = Path(entry)
    return _case_source(entry, _case_layout(entry, check_challenge(challenge)), split)


def discover_cases(folder: Path, challenge: str, split: str) -> Discovery:
    """Case folders in ``folder`` (sorted by name), with their files checked for presence; see the module docstring.

    A sub-folder that is no case folder, a case of another challenge, mixed layouts, a missing modality or (for
    ``split == 'train'``) a missing segmentation is a ValueError naming it.
    """
    challenge = check_challenge(challenge)
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(
            f"{folder}: not a directory (expected a folder of BraTS case folders, e.g. BraTS-{challenge}-00001-000)"
        )
    cases: list[CaseSource] = []
    notes: list[str] = []
    layouts: dict[str, Path] = {}
    for entry in sorted(folder.iterdir()):
        if entry.name in JUNK_NAMES:
            notes.append(f"{entry}: skipped (operating-system metadata, not a case)")
            continue
        if entry.name.startswith(".") or not entry.is_dir():
            continue
        layout = _case_layout(entry, challenge)
        layouts.setdefault(layout.name, entry)
        cases.append(_case_source(entry, layout, split))
    if not cases:
        raise ValueError(f"{folder}: no BraTS case folders found (e.g. BraTS-{challenge}-00001-000)")
    if len(layouts) > 1:
        (name1, first), (name2, second) = layouts.items()
        raise ValueError(
            f"{folder}: mixes case layouts ({name1} and {name2}, e.g. {first.name} and {second.name}); convert one "
            "layout per run"
        )
    return Discovery(cases, LAYOUTS[cases[0].layout], notes)


def check_unique_case_ids(cases: Sequence[CaseSource]) -> None:
    """ValueError naming both folders if a case id occurs twice (e.g. in --train and --test)."""
    seen: dict[str, CaseSource] = {}
    for case in cases:
        if case.case_id in seen:
            raise ValueError(
                f"case {case.case_id}: duplicate case id: {seen[case.case_id].folder} "
                f"({seen[case.case_id].split}) and {case.folder} ({case.split})"
            )
        seen[case.case_id] = case
