"""Hand-made bad NIfTI files for the reader-contract tests, written at test time over a good ``.nii.gz`` (whose
header, affine included, they keep), all small on disk."""

from __future__ import annotations

import gzip
from pathlib import Path

import nibabel as nib
import numpy as np


def _header_bytes(path: Path, shape: tuple[int, ...] | None = None, dtype=None) -> bytes:
    """The bytes before the voxels of the NIfTI-1 file ``path`` (header + extension flag), with another ``shape`` /
    ``dtype`` declared if given."""
    header = nib.load(str(path)).header.copy()
    if dtype is not None:
        header.set_data_dtype(dtype)
    if shape is not None:
        header.set_data_shape(shape)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4


def _write_gzip(path: Path, head: bytes, zero_bytes: int = 0) -> Path:
    """A complete, valid gzip stream: ``head``, then ``zero_bytes`` zeros (streamed, never held in memory)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(head)
        chunk = bytes(1 << 24)
        while zero_bytes > 0:
            f.write(chunk[: min(zero_bytes, len(chunk))])
            zero_bytes -= len(chunk)
    return path


def make_short(path: Path, keep: float = 0.5) -> Path:
    """Rewrite ``path`` as a complete gzip stream (CRC and length valid) holding only ``keep`` of the voxel bytes its
    header declares: a writer that died after the header, its output re-compressed."""
    raw = gzip.decompress(path.read_bytes())
    offset = int(nib.load(str(path)).dataobj.offset)
    return _write_gzip(path, raw[: offset + int((len(raw) - offset) * keep)])


def make_header_only(path: Path, shape=(640, 640, 640), dtype=np.int16) -> Path:
    """Rewrite ``path`` as a ~100-byte ``.nii.gz``: a header declaring ``shape`` (640^3 int16: 500 MiB), no voxels."""
    return _write_gzip(path, _header_bytes(path, shape, dtype))


def make_zero_volume(path: Path, shape=(1024, 1024, 256), dtype=np.uint8) -> Path:
    """Rewrite ``path`` as a complete, valid all-zero volume: 1024x1024x256 uint8 (256 MiB) in about 261 KB."""
    return _write_gzip(path, _header_bytes(path, shape, dtype), int(np.prod(shape)) * np.dtype(dtype).itemsize)


def make_zero_size(path: Path, shape=(32, 32, 0)) -> Path:
    """Rewrite ``path`` as a valid file of a volume with a zero-size dimension (no voxels)."""
    return _write_gzip(path, _header_bytes(path, shape))


def make_complex(path: Path) -> Path:
    """Rewrite ``path`` with its voxels as complex64 (same values, same affine)."""
    image = nib.load(str(path))
    data = np.asarray(image.dataobj).astype(np.complex64)
    nib.save(nib.Nifti1Image(data, image.affine), str(path))
    return path
