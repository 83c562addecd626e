"""File I/O shared by every part: verified NIfTI reading with errors that name the file, geometry checks, atomic
writes and the one cleanup of interrupted writes.

Reading: :func:`read_image_zyx` is the one way to read an image or a label map as a numpy array in nnU-Net /
SimpleITK axis order ``(z, y, x)``; :func:`load_nifti` reads with nibabel, :func:`read_geometry` and
:func:`load_nifti_header` read headers only. Every one of them first checks the file by the reader contract of
:mod:`nnunet_tcup.nifti_checks` (header, size limits, and exact data length before any voxel memory is allocated:
SimpleITK silently zero-fills a short ``.nii.gz``). ``labels=True`` also rejects NaN/Inf and non-integer voxels.
:func:`check_same_geometry` compares two :class:`ImageGeometry` (shape, spacing, origin, direction) and names both
files when they differ.

Atomic write contract: data is written to a hidden temporary file next to the target (``.STEM.partial-PID.EXT``,
keeping the extension so that nibabel / SimpleITK pick the right format) and moved into place with ``os.replace``
only when complete. An interrupted run therefore leaves the old file, no file, or, after a hard kill, a stray hidden
``.*.partial-*`` file. Our readers skip those (:func:`is_partial_file`). They are removed by
:func:`remove_stale_partials`, which a command calls on a folder it owns (it holds the folder's lock from
:mod:`nnunet_tcup.locking`, or the folder is its own output): a partial file is never an output of a finished write, so every partial there is
garbage from an earlier run, whatever became of the process that wrote it (no PID liveness test: PIDs are reused).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import zlib
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Union

import numpy as np

from nnunet_tcup.errors import library_error, one_line
from nnunet_tcup.locking import exclusive_lock, locked_folder
from nnunet_tcup.nifti_checks import check_nifti_file, check_nifti_header, is_nifti_name
from nnunet_tcup.parallel import note_partial_dir

PathLike = Union[str, "os.PathLike[str]"]

PARTIAL_MARKER = ".partial-"
_GZIP_CHUNK = 1 << 22  # bytes of decompressed data per read while verifying a gzip stream

__all__ = [
    "ImageGeometry",
    "PathLike",
    "atomic_output",
    "check_same_geometry",
    "exclusive_lock",
    "is_partial_file",
    "list_nifti_cases",
    "load_nifti",
    "load_nifti_header",
    "locked_folder",
    "read_array_zyx",
    "read_geometry",
    "read_image_zyx",
    "remove_partials_of",
    "remove_stale_partials",
    "verify_nifti_file",
    "write_json_atomic",
]


@contextlib.contextmanager
def atomic_output(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path to write to; on success it replaces ``target`` atomically, on error it is removed.

    The temporary path keeps the target's suffixes after the marker-free stem so that libraries choosing the
    format by extension (nibabel, SimpleITK) still work: ``.NAME.partial-PID.nii.gz`` for ``NAME.nii.gz``.
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    suffix = "".join(target.suffixes[-2:]) if target.name.endswith(".nii.gz") else target.suffix
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.with_name(f".{stem}{PARTIAL_MARKER}{os.getpid()}{suffix}")
    note_partial_dir(target.parent)  # in a parallel_map worker: its parent removes the file if the worker dies
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def is_partial_file(path: PathLike) -> bool:
    """True for temporary files left by an interrupted :func:`atomic_output`."""
    name = Path(path).name
    return name.startswith(".") and PARTIAL_MARKER in name


def remove_stale_partials(folder: PathLike) -> int:
    """Delete every temporary ``.*.partial-*`` file directly in ``folder``; return how many were removed.

    Call it only on a folder this process owns (see the module docstring): then no partial file there can belong to
    a write still in progress. A missing folder removes nothing.
    """
    folder = Path(folder)
    removed = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            if is_partial_file(entry) and entry.is_file():
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed += 1
    return removed


def remove_partials_of(folder: PathLike, pids: Iterable[int]) -> int:
    """Delete the temporary ``.*.partial-PID*`` files directly in ``folder`` written by the processes ``pids`` (only
    theirs: e.g. the workers of this run that died); return how many were removed."""
    markers = tuple(f"{PARTIAL_MARKER}{pid}" for pid in pids)
    removed = 0
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in Path(folder).iterdir():
            rest = next((entry.name.split(m, 1)[1] for m in markers if m in entry.name), None)
            if rest is not None and (rest == "" or rest.startswith(".")) and is_partial_file(entry):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()
                    removed += 1
    return removed


def write_json_atomic(obj: Any, target: PathLike) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    with atomic_output(target) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")


# ---------------------------------------------------------------------------------------------------------------------
# Reading


@dataclass(frozen=True)
class ImageGeometry:
    """Where an image's voxels are: array shape ``(z, y, x)``, voxel spacing ``(z, y, x)`` in mm, origin ``(x, y, z)``
    in mm (ITK/LPS world coordinates) and the 3x3 direction matrix as 9 row-major values (SimpleITK order)."""

    shape_zyx: tuple[int, int, int]
    spacing_zyx: tuple[float, ...]
    origin_xyz: tuple[float, ...]
    direction: tuple[float, ...]

    @classmethod
    def of_sitk(cls, image: Any) -> ImageGeometry:
        """Geometry of a 3D ``SimpleITK.Image`` (or an ``ImageFileReader`` after ``ReadImageInformation``)."""
        size_xyz = image.GetSize()
        return cls(
            (int(size_xyz[2]), int(size_xyz[1]), int(size_xyz[0])),
            tuple(float(s) for s in reversed(image.GetSpacing())),
            tuple(float(o) for o in image.GetOrigin()),
            tuple(float(d) for d in image.GetDirection()),
        )


def _check_is_file(path: Path) -> None:
    if not path.is_file():
        raise ValueError(f"{path}: file not found" if not path.exists() else f"{path}: not a file")


def verify_nifti_file(path: PathLike) -> Path:
    """Check that ``path`` is an existing, complete ``.nii.gz`` / ``.nii`` file by the package's reader contract
    (:mod:`nnunet_tcup.nifti_checks`: header, size limits, exact data length; a ``.nii.gz`` is decompressed once,
    counting bytes without keeping them). Another ``.gz`` file gets its gzip stream checked.

    Returns it as a Path; raises ValueError naming the file and the problem.
    """
    path = Path(path)
    _check_is_file(path)
    if is_nifti_name(path):
        check_nifti_file(path)
    elif path.name.endswith(".gz"):
        try:
            with gzip.open(path, "rb") as f:
                while f.read(_GZIP_CHUNK):
                    pass
        except (EOFError, zlib.error, gzip.BadGzipFile) as e:
            raise ValueError(f"{path}: truncated or corrupt gzip stream ({library_error(e)})") from None
    return path


def _label_values_problem(path: Path, data: np.ndarray) -> str | None:
    """Describe NaN/Inf or non-integer voxels of a label array (with counts); None for an integer-valued array.

    ITK's NIfTI reader turns NaN into 0, so for floating-point files the non-finite voxels are counted in the
    stored data, read with nibabel.
    """
    if data.dtype.kind in "iub":
        return None
    import nibabel as nib

    try:
        image: Any = nib.load(str(path))
        stored = np.asanyarray(image.dataobj)
    except Exception as e:  # nibabel raises many types for corrupt files
        return f"cannot read the stored voxel values ({library_error(e)})"
    non_finite = int(stored.size - np.count_nonzero(np.isfinite(stored)))
    if non_finite:
        return f"{non_finite} non-finite voxel value(s) (NaN/Inf) in a label file"
    non_integer = int(np.count_nonzero(data != np.rint(data)))
    if non_integer:
        return f"{non_integer} voxel(s) with non-integer values in a label file"
    return None


def _sitk_error(error: Exception) -> str:
    """``TYPE: REASON`` of a SimpleITK exception: the last line of ITK's multi-line message (the lines before it
    name SimpleITK's and ITK's own source files)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    return f"{type(error).__name__}: {one_line(lines[-1])}" if lines else type(error).__name__


def _sitk_read(file: Path, shown: Path) -> tuple[Any, np.ndarray]:
    """``(SimpleITK image, array (z, y, x))`` of ``file``; errors name ``shown`` (the user's file)."""
    import SimpleITK as sitk

    try:
        image = sitk.ReadImage(str(file))
        return image, sitk.GetArrayFromImage(image)
    except Exception as e:  # SimpleITK raises RuntimeError with ITK's multi-line message: its last line says why
        raise ValueError(f"{shown}: cannot read image ({_sitk_error(e)})") from None


def read_image_zyx(path: PathLike, *, labels: bool = False) -> tuple[np.ndarray, ImageGeometry]:
    """Read a ``.nii.gz`` / ``.nii`` image with SimpleITK as an array in ``(z, y, x)`` order, and its geometry.

    The file is verified first (:func:`verify_nifti_file`; for a ``.nii.gz`` this is a second decompression, about
    as long as SimpleITK's own read, see ``benchmarks/bench_read.py``); with ``labels`` NaN/Inf and non-integer voxels are
    errors (the message gives their count). Raises ValueError naming the file and the problem.
    """
    path = verify_nifti_file(path)
    image, array = _sitk_read(path, path)
    if image.GetDimension() != 3:
        raise ValueError(f"{path}: expected a 3D image, got {image.GetDimension()} dimensions")
    if labels:
        problem = _label_values_problem(path, array)
        if problem:
            raise ValueError(f"{path}: {problem}")
    return array, ImageGeometry.of_sitk(image)


def read_geometry(path: PathLike) -> ImageGeometry:
    """Geometry of an image file from its header only (SimpleITK ``ReadImageInformation``; the voxels are not read or
    verified, the header is checked as :func:`nnunet_tcup.nifti_checks.check_nifti_header` does). Raises ValueError
    naming the file."""
    import SimpleITK as sitk

    path = Path(path)
    _check_is_file(path)
    if is_nifti_name(path):
        check_nifti_header(path)
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    try:
        reader.ReadImageInformation()
    except Exception as e:  # SimpleITK raises RuntimeError with ITK's multi-line message
        raise ValueError(f"{path}: cannot read image header ({_sitk_error(e)})") from None
    if reader.GetDimension() != 3:
        raise ValueError(f"{path}: expected a 3D image, got {reader.GetDimension()} dimensions")
    return ImageGeometry.of_sitk(reader)


def read_array_zyx(path: PathLike, *, labels: bool = False) -> tuple[np.ndarray, tuple[float, float, float]]:
    """Like :func:`read_image_zyx` but return only the array ``(z, y, x)`` and the spacing ``(z, y, x)`` in mm."""
    array, geometry = read_image_zyx(path, labels=labels)
    spacing = geometry.spacing_zyx
    return array, (spacing[0], spacing[1], spacing[2])


def check_same_geometry(
    reference: ImageGeometry,
    other: ImageGeometry,
    reference_path: PathLike,
    other_path: PathLike,
    *,
    spacing_tol: float = 1e-3,
    origin_tol_mm: float = 1e-2,
    direction_tol: float = 1e-3,
) -> None:
    """Raise one ValueError naming both files if ``other`` is not on ``reference``'s voxel grid.

    Compared in this order: shape (exact), spacing (absolute, mm), origin (absolute, mm), direction (absolute, per
    matrix entry). The message gives both values of the first difference found.
    """
    problem = None
    if tuple(reference.shape_zyx) != tuple(other.shape_zyx):
        problem = f"shape (z, y, x) {tuple(other.shape_zyx)} vs {tuple(reference.shape_zyx)}"
    elif not np.allclose(other.spacing_zyx, reference.spacing_zyx, rtol=0.0, atol=spacing_tol):
        problem = f"spacing (z, y, x) {_fmt(other.spacing_zyx)} mm vs {_fmt(reference.spacing_zyx)} mm"
    elif not np.allclose(other.origin_xyz, reference.origin_xyz, rtol=0.0, atol=origin_tol_mm):
        problem = f"origin (x, y, z) {_fmt(other.origin_xyz)} mm vs {_fmt(reference.origin_xyz)} mm"
    elif not np.allclose(other.direction, reference.direction, rtol=0.0, atol=direction_tol):
        problem = f"direction {_fmt(other.direction)} vs {_fmt(reference.direction)}"
    if problem:
        raise ValueError(f"{other_path}: geometry differs from {reference_path}: {problem}")


def _fmt(values: tuple[float, ...]) -> str:
    return "(" + ", ".join(f"{v:.6g}" for v in values) + ")"


def load_nifti(path: PathLike) -> Any:
    """Load a NIfTI image with nibabel, its data fully read and verified; raise ValueError naming the file.

    The file is checked by the reader contract (:mod:`nnunet_tcup.nifti_checks`) before its voxels are allocated; a
    ``.nii.gz`` is decompressed once (its bytes kept while they are counted) and parsed from memory. Returns a
    ``nibabel.Nifti1Image`` with its data cached as float32.
    """
    import nibabel as nib

    path = Path(path)
    _check_is_file(path)
    stream = io.BytesIO() if path.name.endswith(".gz") else None
    check_nifti_file(path, sink=stream.write if stream is not None else None)
    try:
        if stream is not None:
            stream.seek(0)
            img: Any = nib.Nifti1Image.from_stream(stream)
        else:
            img = nib.Nifti1Image.from_filename(str(path))
        img.get_fdata(dtype=np.float32, caching="fill")  # forces a full read
    except Exception as e:  # nibabel raises many types for corrupt files (EOFError, ImageFileError, ValueError...)
        raise ValueError(f"{path}: cannot read NIfTI file ({library_error(e)})") from None
    return img


def load_nifti_header(path: PathLike) -> Any:
    """A nibabel image of ``path`` for its header and affine only (voxels not read); the header is checked by the
    reader contract (:func:`nnunet_tcup.nifti_checks.check_nifti_header`). Raises ValueError naming the file."""
    import nibabel as nib

    path = Path(path)
    _check_is_file(path)
    check_nifti_header(path)
    try:
        return nib.Nifti1Image.from_filename(str(path))
    except Exception as e:  # nibabel raises many types for a bad header
        raise ValueError(f"{path}: cannot read NIfTI header ({library_error(e)})") from None


def list_nifti_cases(folder: PathLike) -> list[str]:
    """Sorted case names (file name without ``.nii.gz``) of the ``*.nii.gz`` files in ``folder``; hidden files
    (``.*``, which include interrupted writes) are skipped. Ids with a control character, or two ids equal under
    Unicode NFKC normalisation, are a ValueError naming the file(s) (:mod:`nnunet_tcup.case_ids`)."""
    from nnunet_tcup.case_ids import check_distinct_case_ids

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    found = {
        p.name[: -len(".nii.gz")]: p
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(".nii.gz") and not p.name.startswith(".")
    }
    check_distinct_case_ids(dict(sorted(found.items())))
    return sorted(found)
