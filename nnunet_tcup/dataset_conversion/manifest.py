"""Per-case conversion records ("manifests") that let a re-run of ``convert`` skip finished cases safely.

Layout inside a converted dataset folder (hidden, so nnU-Net never sees it)::

    DatasetNNN_BraTS2023_CH/.nnunet_tcup/conversion.json        challenge and mode of the folder (written first)
    DatasetNNN_BraTS2023_CH/.nnunet_tcup/cases/CASE_ID.json      one manifest per finished case (written last)

A case manifest records, for each source file, its path, size (bytes), modification time (ns) and SHA-256, and for
each output file (path relative to the dataset folder) its size and SHA-256. It is written atomically after all
outputs of the case are in place, so its presence means "this case was completely written from these sources".
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from nnunet_tcup.io_utils import write_json_atomic

MANIFEST_VERSION = 1
TOOL_NAME = "nnunet_tcup convert"
STATE_FOLDER = ".nnunet_tcup"
_CHUNK = 1 << 20


@dataclass(frozen=True)
class FileRecord:
    """Size (bytes) and SHA-256 of a file; for source files also the path and modification time (ns)."""

    size: int
    sha256: str
    mtime_ns: int | None = None
    path: str | None = None

    @classmethod
    def of(cls, path: Path, with_source_fields: bool = True) -> FileRecord:
        """Record of ``path`` as it is now (stat taken before hashing, so a concurrent change shows as a mismatch)."""
        st = path.stat()
        return cls(
            st.st_size,
            sha256_file(path),
            st.st_mtime_ns if with_source_fields else None,
            str(path.resolve()) if with_source_fields else None,
        )

    def same_content_as(self, path: Path) -> bool:
        """True if ``path`` holds the recorded bytes: stat shortcut (size + mtime) when both are recorded,
        SHA-256 otherwise."""
        try:
            st = path.stat()
        except FileNotFoundError:
            return False
        if st.st_size != self.size:
            return False
        if self.mtime_ns is not None and st.st_mtime_ns == self.mtime_ns:
            return True
        return sha256_file(path) == self.sha256


@dataclass
class CaseManifest:
    """What one finished case was written from (``sources`` by modality name / ``seg``) and what it wrote
    (``outputs`` by path relative to the dataset folder)."""

    case: str
    split: str
    challenge: str
    sources: dict[str, FileRecord] = field(default_factory=dict)
    outputs: dict[str, FileRecord] = field(default_factory=dict)

    def to_json(self) -> dict:
        return {
            "tool": TOOL_NAME,
            "manifest_version": MANIFEST_VERSION,
            "case": self.case,
            "split": self.split,
            "challenge": self.challenge,
            "sources": {k: _record_json(v) for k, v in self.sources.items()},
            "outputs": {k: _record_json(v) for k, v in self.outputs.items()},
        }

    @classmethod
    def from_json(cls, obj: dict) -> CaseManifest:
        if obj.get("tool") != TOOL_NAME or obj.get("manifest_version") != MANIFEST_VERSION:
            raise ValueError("not a version-1 nnunet_tcup convert manifest")
        return cls(
            str(obj["case"]),
            str(obj["split"]),
            str(obj["challenge"]),
            {k: FileRecord(**v) for k, v in obj["sources"].items()},
            {k: FileRecord(**v) for k, v in obj["outputs"].items()},
        )


def _record_json(record: FileRecord) -> dict:
    return {k: v for k, v in asdict(record).items() if v is not None}


def state_folder(dataset_dir: Path) -> Path:
    return Path(dataset_dir) / STATE_FOLDER


def manifest_path(dataset_dir: Path, case_id: str) -> Path:
    return state_folder(dataset_dir) / "cases" / f"{case_id}.json"


def read_manifest(dataset_dir: Path, case_id: str) -> CaseManifest | None:
    """The case's manifest, or None if there is none or it cannot be parsed (the case is then checked file by file)."""
    path = manifest_path(dataset_dir, case_id)
    if not path.is_file():
        return None
    try:
        with open(path) as f:
            manifest = CaseManifest.from_json(json.load(f))
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return manifest if manifest.case == case_id else None


def write_manifest(dataset_dir: Path, manifest: CaseManifest) -> None:
    write_json_atomic(manifest.to_json(), manifest_path(dataset_dir, manifest.case))


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def copy_with_sha256(source: Path, target: Path) -> str:
    """Copy ``source`` to ``target`` byte for byte; return the SHA-256 of the bytes copied."""
    digest = hashlib.sha256()
    with open(source, "rb") as fin, open(target, "wb") as fout:
        for chunk in iter(lambda: fin.read(_CHUNK), b""):
            digest.update(chunk)
            fout.write(chunk)
        fout.flush()
        os.fsync(fout.fileno())
    return digest.hexdigest()
