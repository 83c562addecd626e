"""Per-case work of ``convert`` (run in worker processes): decide what a case needs, then write it.

Outputs: images are the validated source bytes (a ``.nii.gz`` copied byte for byte; an uncompressed ``.nii``
gzip-compressed deterministically: level 6, no name, mtime 0, so re-runs give identical bytes); labels are rewritten
as uint8 with the source header, label values mapped by the case's layout (BraTS 2021's 4 -> 3).
"""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from nnunet_tcup.challenges import MODALITIES
from nnunet_tcup.dataset_conversion import manifest as mf
from nnunet_tcup.dataset_conversion.layout import LAYOUTS, CaseSource, OutputSpec
from nnunet_tcup.dataset_conversion.validation import CaseValidationError, validate_case_files
from nnunet_tcup.io_utils import atomic_output

_CHUNK = 1 << 20
GZIP_LEVEL = 6


@dataclass
class CaseCheck:
    """Result of :func:`check_case`: ``done`` (complete and verified), ``todo`` (validated; ``verified`` lists the
    outputs already in place) or ``error`` (``error`` holds the message)."""

    case: CaseSource
    status: str
    error: str | None = None
    sources: dict[str, mf.FileRecord] = field(default_factory=dict)
    verified: dict[str, mf.FileRecord] = field(default_factory=dict)


@dataclass(frozen=True)
class CaseTask:
    case: CaseSource
    dataset_dir: Path
    challenge: str


def _gzip_to(source: Path, target: Path) -> str:
    """Write ``source`` gzip-compressed (deterministic header) to ``target``; return the SHA-256 of the source bytes."""
    digest = hashlib.sha256()
    with open(source, "rb") as fin, open(target, "wb") as raw_out:
        with gzip.GzipFile(filename="", mode="wb", fileobj=raw_out, compresslevel=GZIP_LEVEL, mtime=0) as fout:
            for chunk in iter(lambda: fin.read(_CHUNK), b""):
                digest.update(chunk)
                fout.write(chunk)
    return digest.hexdigest()


def _decompressed_sha256(path: Path) -> str | None:
    """SHA-256 of the decompressed bytes of a gzip file, or None when it cannot be decompressed."""
    digest = hashlib.sha256()
    try:
        with gzip.open(path, "rb") as f:
            for chunk in iter(lambda: f.read(_CHUNK), b""):
                digest.update(chunk)
    except (OSError, EOFError):
        return None
    return digest.hexdigest()


def _existing_output_matches(case: CaseSource, spec: OutputSpec, target: Path, source: Path, source_sha: str) -> bool:
    """Would writing ``spec`` from ``source`` give the existing ``target``? Images: same (decompressed, for a ``.nii``
    source) bytes. Labels: same uint8 array, shape and affine (the compressed bytes may legitimately differ)."""
    if not spec.is_labels:
        if source.name.endswith(".gz"):
            return mf.sha256_file(target) == source_sha
        return _decompressed_sha256(target) == source_sha
    import numpy as np

    from nnunet_tcup.dataset_conversion.validation import labels_as_uint8
    from nnunet_tcup.io_utils import load_nifti

    try:
        existing = load_nifti(target)
    except ValueError:
        return False
    wanted = load_nifti(source)
    return (
        existing.shape == wanted.shape
        and np.allclose(existing.affine, wanted.affine, rtol=0, atol=1e-6)
        and existing.get_data_dtype() == np.uint8
        and np.array_equal(
            np.asanyarray(existing.dataobj), labels_as_uint8(wanted, dict(LAYOUTS[case.layout].label_map))
        )
    )


def _check_manifest(task: CaseTask, manifest: mf.CaseManifest | None) -> tuple[bool, dict[str, mf.FileRecord]]:
    """Compare a case's manifest with its sources and outputs: ``(complete, verified outputs)``. A changed source or
    output is an error; a manifest of another split or without every source is ignored (``(False, {})``)."""
    case, dataset_dir = task.case, task.dataset_dir
    if manifest is None or manifest.split != case.split:
        return False, {}
    for name, path in case.source_files():
        record = manifest.sources.get(name)
        if record is None:
            return False, {}
        if not record.same_content_as(path):
            raise CaseValidationError(
                case.case_id,
                path,
                f"changed since it was converted into {dataset_dir} (its size or SHA-256 differs "
                f"from {mf.manifest_path(dataset_dir, case.case_id)}); not overwriting the converted files: delete "
                "the dataset folder or use another --dataset-id",
            )
    verified: dict[str, mf.FileRecord] = {}
    outputs = case.outputs()
    for spec in outputs:
        target = dataset_dir / spec.relative_path
        if not target.exists():
            continue
        record = manifest.outputs.get(spec.relative_path)
        if record is None or not record.same_content_as(target):
            raise CaseValidationError(
                case.case_id,
                target,
                "was modified after conversion (differs from its record in "
                f"{mf.manifest_path(dataset_dir, case.case_id)}); not overwriting it: delete it to have it written "
                "again",
            )
        verified[spec.relative_path] = record
    return len(verified) == len(outputs), verified


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
        manifest = mf.read_manifest(dataset_dir, case.case_id)
        if not any((dataset_dir / spec.relative_path).exists() for spec in outputs):
            manifest = None  # nothing of this case is left to protect: convert it afresh
        complete, verified = _check_manifest(task, manifest)
        if complete and manifest is not None:
            return CaseCheck(case, "done", sources=dict(manifest.sources), verified=verified)
        layout = LAYOUTS[case.layout]
        validate_case_files(case.case_id, list(zip(MODALITIES, case.images)), case.seg, layout.allowed_labels)
        sources = {name: mf.FileRecord.of(path) for name, path in case.source_files()}
        files = dict(case.source_files())
        for spec in outputs:
            target = dataset_dir / spec.relative_path
            if spec.relative_path in verified or not target.exists():
                continue
            if not _existing_output_matches(case, spec, target, files[spec.source], sources[spec.source].sha256):
                raise CaseValidationError(
                    case.case_id,
                    target,
                    f"already exists and differs from what converting "
                    f"{files[spec.source]} gives; not overwriting it (delete it, or use another --dataset-id)",
                )
            verified[spec.relative_path] = mf.FileRecord.of(target, with_source_fields=False)
        return CaseCheck(case, "todo", sources=sources, verified=verified)
    except CaseValidationError as e:
        return CaseCheck(case, "error", error=str(e))


def _write_labels(source: Path, target: Path, expected_sha: str, label_map: dict[int, int]) -> mf.FileRecord:
    import nibabel as nib
    import numpy as np

    from nnunet_tcup.dataset_conversion.validation import labels_as_uint8
    from nnunet_tcup.io_utils import load_nifti

    with atomic_output(target) as tmp:
        if mf.sha256_file(source) != expected_sha:
            raise ValueError(f"{source}: changed while it was being converted; run convert again")
        img = load_nifti(source)
        out = nib.Nifti1Image(labels_as_uint8(img, label_map), img.affine, img.header.copy())
        out.set_data_dtype(np.uint8)
        nib.save(out, str(tmp))
        record = mf.FileRecord.of(tmp, with_source_fields=False)
    return record


def _copy_image(source: Path, target: Path, expected_sha: str) -> mf.FileRecord:
    with atomic_output(target) as tmp:
        compressed = source.name.endswith(".gz")
        sha = mf.copy_with_sha256(source, tmp) if compressed else _gzip_to(source, tmp)
        if sha != expected_sha:
            raise ValueError(f"{source}: changed while it was being converted; run convert again")
        # a byte copy has the source's SHA-256; a compressed .nii is hashed once more
        record = mf.FileRecord(tmp.stat().st_size, sha) if compressed else mf.FileRecord.of(tmp, False)
    return record


def write_case(task: tuple[CaseCheck, Path, str]) -> str:
    """Write the missing outputs of a validated case (each atomically), then its manifest; return the case id."""
    check, dataset_dir, challenge = task
    case = check.case
    files = dict(case.source_files())
    label_map = dict(LAYOUTS[case.layout].label_map)
    records: dict[str, mf.FileRecord] = {}
    for spec in case.outputs():
        if spec.relative_path in check.verified:
            records[spec.relative_path] = check.verified[spec.relative_path]
            continue
        target = dataset_dir / spec.relative_path
        if target.exists():
            raise FileExistsError(f"case {case.case_id}: {target}: appeared while converting; not overwriting it")
        expected = check.sources[spec.source].sha256
        if spec.is_labels:
            records[spec.relative_path] = _write_labels(files[spec.source], target, expected, label_map)
        else:
            records[spec.relative_path] = _copy_image(files[spec.source], target, expected)
    mf.write_manifest(dataset_dir, mf.CaseManifest(case.case_id, case.split, challenge, dict(check.sources), records))
    return case.case_id
