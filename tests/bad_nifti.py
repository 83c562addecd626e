"""Hand-made bad NIfTI files for the reader-contract tests, written at test time (all small on disk).

Headers are nibabel's own (``Nifti1Header``); the voxel bytes after them are chosen to disagree with the header.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np

AFFINE = np.diag([-1.0, -1.0, 1.0, 1.0])


def header_bytes(shape: tuple[int, ...], dtype, affine: np.ndarray = AFFINE) -> bytes:
    """The 352 bytes before the voxels of a single-file NIfTI-1 (header + empty extension flag)."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header.set_sform(affine, code=1)
    header.set_qform(affine, code=1)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def gzip_file(path: Path, shape: tuple[int, ...], dtype, data: bytes = b"", zero_bytes: int = 0) -> Path:
    """A complete, valid gzip stream holding a header for ``shape``/``dtype``, then ``data``, then ``zero_bytes``
    zeros (streamed in chunks, never held in memory)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header_bytes(shape, dtype))
        f.write(data)
        chunk = bytes(1 << 24)
        left = zero_bytes
        while left > 0:
            f.write(chunk[: min(left, len(chunk))])
            left -= len(chunk)
    return path


def short_gzip(path: Path, array: np.ndarray, keep: float = 0.5) -> Path:
    """A ``.nii.gz`` whose gzip stream is complete (CRC and length valid) but holds only ``keep`` of the voxel bytes
    its header declares, as from a writer that died and whose output was re-compressed."""
    raw = np.asarray(array).tobytes(order="F")
    return gzip_file(path, array.shape, array.dtype, raw[: int(len(raw) * keep)])


def header_only_gzip(path: Path, shape=(640, 640, 640), dtype=np.int16) -> Path:
    """A ~105-byte ``.nii.gz``: a header declaring ``shape`` (640^3 int16: 500 MiB) and no voxels at all."""
    return gzip_file(path, shape, dtype)


def zero_volume_gzip(path: Path, shape=(1024, 1024, 256), dtype=np.uint8) -> Path:
    """A complete, valid ``.nii.gz`` of an all-zero volume: 1024x1024x256 uint8 (256 MiB) in about 261 KB."""
    return gzip_file(path, shape, dtype, zero_bytes=int(np.prod(shape)) * np.dtype(dtype).itemsize)
