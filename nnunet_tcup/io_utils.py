"""File I/O shared by every part: NIfTI reading with errors that name the file, and atomic writes.

Atomic write contract: data is written to a hidden temporary file next to the target (``.STEM.partial-PID.EXT``,
keeping the extension so that nibabel / SimpleITK pick the right format) and moved into place with ``os.replace``
only when complete. An interrupted run therefore leaves the old file, no file, or, after a hard kill, a stray hidden
``.*.partial-*`` file. Our own readers skip those (:func:`is_partial_file`) and our writers delete them on the next
run (:func:`remove_stale_partials`); nnU-Net's folder scans would not skip them, which is why the converter cleans
its output folders before it writes ``dataset.json``.
"""
from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Any, Iterator, Tuple, Union

import numpy as np

PathLike = Union[str, "os.PathLike[str]"]

PARTIAL_MARKER = ".partial-"


def partial_path(target: PathLike) -> Path:
    """Temporary sibling path used while ``target`` is being written."""
    target = Path(target)
    return target.with_name(f".{target.name}{PARTIAL_MARKER}{os.getpid()}")


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
    """Delete temporary files left by interrupted writes in ``folder``; return how many were removed."""
    folder = Path(folder)
    removed = 0
    if folder.is_dir():
        for entry in folder.iterdir():
            if entry.is_file() and is_partial_file(entry):
                entry.unlink()
                removed += 1
    return removed


def write_json_atomic(obj: Any, target: PathLike) -> None:
    """Write ``obj`` as indented JSON to ``target`` atomically."""
    with atomic_output(target) as tmp:
        with open(tmp, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=False)
            f.write("\n")


def load_nifti(path: PathLike):
    """Load a NIfTI image with nibabel, fully reading its data; raise ValueError naming the file if it fails.

    Returns the ``nibabel.Nifti1Image`` with its data cached (so a truncated ``.nii.gz`` fails here, not later).
    """
    import nibabel as nib

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        img = nib.load(str(path))
        img.get_fdata(dtype=np.float32, caching="fill")  # forces a full decompression
    except Exception as e:  # nibabel raises many types for corrupt files (EOFError, zlib.error, ImageFileError...)
        raise ValueError(f"{path}: cannot read NIfTI file ({type(e).__name__}: {e})") from e
    return img


def read_array_zyx(path: PathLike) -> Tuple[np.ndarray, Tuple[float, float, float]]:
    """Read an image as a numpy array in nnU-Net / SimpleITK axis order ``(z, y, x)`` with spacing ``(z, y, x)`` mm.

    Raises ValueError naming the file when it is missing or unreadable.
    """
    import SimpleITK as sitk

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        img = sitk.ReadImage(str(path))
        arr = sitk.GetArrayFromImage(img)
    except Exception as e:
        raise ValueError(f"{path}: cannot read image ({type(e).__name__}: {e})") from e
    spacing_xyz = img.GetSpacing()
    return arr, (float(spacing_xyz[2]), float(spacing_xyz[1]), float(spacing_xyz[0]))


def list_nifti_cases(folder: PathLike) -> list:
    """Sorted case names (file name without ``.nii.gz``) of the ``*.nii.gz`` files in ``folder``, ignoring partials."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder}: not a directory")
    return sorted(
        p.name[: -len(".nii.gz")]
        for p in folder.iterdir()
        if p.is_file() and p.name.endswith(".nii.gz") and not is_partial_file(p)
    )
