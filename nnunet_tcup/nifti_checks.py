"""The one contract every NIfTI reader of the package checks, before it allocates memory for the voxels.

For a ``.nii`` or ``.nii.gz`` file (NIfTI-1, 348-byte header, or NIfTI-2, 540-byte header, either byte order):

1. the header is parsed here from the file's first bytes (for a ``.nii.gz``, the first bytes of the gzip stream);
   it must be a single-file NIfTI-1 (magic ``n+1``; NIfTI-2 is recognised and refused: SimpleITK, which nnU-Net
   reads images with, cannot read it) with 1 to 7 dimensions, none of them zero or negative,
   a real-valued voxel type (integers or float32/float64: complex, RGB, binary and float128 are refused) and a data
   offset at or after the header;
2. the declared size is checked against sane limits: at most 2^31 voxels, and the memory a reader needs (about two
   copies of the stored data plus one float32 copy: ``voxels * (2 * bytes per voxel + 4)``) at most the memory
   available (``MemAvailable`` of ``/proc/meminfo``, and the cgroup's limit when it is lower);
3. the data must be exactly as long as the header declares (``data offset + voxels * bytes per voxel``): a ``.nii``
   by its file size, a ``.nii.gz`` by decompressing the whole stream in chunks, counting the bytes without keeping
   them (this also checks each gzip member's CRC-32 and length).

Every problem is a ValueError whose one-line message starts with the file's path. Readers call
:func:`check_nifti_file` (all three steps) or :func:`check_nifti_header` (steps 1-2, plus the size of a ``.nii``:
for header-only reads).
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from nnunet_tcup.errors import library_error

__all__ = [
    "MAX_VOXELS",
    "NiftiLayout",
    "available_memory_bytes",
    "check_nifti_file",
    "check_nifti_header",
    "is_nifti_name",
]

#: Most voxels a NIfTI file may declare (a BraTS volume has 240 * 240 * 155 = 8.9e6).
MAX_VOXELS = 2**31
_CHUNK = 1 << 22  # bytes of decompressed data per read
_GZIP_ERRORS = (EOFError, zlib.error, gzip.BadGzipFile)  # truncated stream, bad deflate data, bad header/CRC/length
_HEADER_BYTES = {348: 1, 540: 2}  # sizeof_hdr -> NIfTI version
_MIN_OFFSET = {1: 352, 2: 544}  # header + the 4-byte extension flag
_REAL_TYPES = {2: "u1", 4: "i2", 8: "i4", 16: "f4", 64: "f8", 256: "i1", 512: "u2", 768: "u4", 1024: "i8", 1280: "u8"}
_REFUSED_TYPES = {
    1: "binary (1 bit)",
    32: "complex64",
    128: "RGB24",
    1536: "float128",
    1792: "complex128",
    2048: "complex256",
    2304: "RGBA32",
}


@dataclass(frozen=True)
class NiftiLayout:
    """What a NIfTI header declares: version (1 or 2), shape ``(i, j, k, ...)`` in NIfTI order, voxel type (with
    the file's byte order) and the data offset in bytes."""

    version: int
    shape: tuple[int, ...]
    dtype: np.dtype
    data_offset: int

    @property
    def voxels(self) -> int:
        return math.prod(self.shape)

    @property
    def file_bytes(self) -> int:
        """Bytes of the (decompressed) file: header and extensions, then the voxels."""
        return self.data_offset + self.voxels * self.dtype.itemsize

    def describe(self) -> str:
        return f"shape {'x'.join(map(str, self.shape))}, {self.dtype.name}"


def is_nifti_name(path: str | os.PathLike[str]) -> bool:
    """True for a ``.nii`` or ``.nii.gz`` file name."""
    name = Path(path).name
    return name.endswith(".nii") or name.endswith(".nii.gz")


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def _cgroup_available() -> int | None:
    """Limit minus usage of this process's cgroup (v2), or None without a limit."""
    try:
        with open("/proc/self/cgroup") as f:
            relative = next((line.split(":", 2)[2].strip() for line in f if line.startswith("0::")), None)
        if relative is None:
            return None
        folder = Path("/sys/fs/cgroup") / relative.lstrip("/")
        limit = (folder / "memory.max").read_text().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int((folder / "memory.current").read_text().strip()))
    except (OSError, ValueError, IndexError):
        return None


def available_memory_bytes() -> int | None:
    """Memory this process may still use, in bytes: ``MemAvailable`` of ``/proc/meminfo``, or the cgroup's
    remaining limit when lower; None where neither is known (no limit is then applied)."""
    known = [v for v in (_meminfo_available(), _cgroup_available()) if v is not None]
    return min(known) if known else None


def _parse_header(raw: bytes, shown: Path) -> NiftiLayout:
    """The :class:`NiftiLayout` of the header bytes ``raw`` (the file's first bytes); ValueError naming ``shown``."""
    if len(raw) < 348:
        raise ValueError(f"{shown}: not a NIfTI file ({len(raw)} bytes, shorter than a NIfTI-1 header)")
    order = next((o for o in "<>" if int(np.frombuffer(raw, f"{o}i4", 1)[0]) in _HEADER_BYTES), None)
    if order is None:
        raise ValueError(f"{shown}: not a NIfTI-1 or NIfTI-2 file (header size field is neither 348 nor 540)")
    version = _HEADER_BYTES[int(np.frombuffer(raw, f"{order}i4", 1)[0])]
    if version == 2 and len(raw) < 540:
        raise ValueError(f"{shown}: not a NIfTI file ({len(raw)} bytes, shorter than a NIfTI-2 header)")
    if version == 1:
        magic, wanted = raw[344:348], b"n+1\0"
        dims = np.frombuffer(raw, f"{order}i2", 8, 40).astype(np.int64)
        code = int(np.frombuffer(raw, f"{order}i2", 1, 70)[0])
        offset_value = float(np.frombuffer(raw, f"{order}f4", 1, 108)[0])
    else:
        magic, wanted = raw[4:12], b"n+2\0\r\n\x1a\n"
        dims = np.frombuffer(raw, f"{order}i8", 8, 16)
        code = int(np.frombuffer(raw, f"{order}i2", 1, 12)[0])
        offset_value = float(np.frombuffer(raw, f"{order}i8", 1, 168)[0])
    if magic != wanted:
        pair = magic[:3] == (b"ni1" if version == 1 else b"ni2")
        what = "a header of a .hdr/.img pair" if pair else f"no NIfTI-{version} magic {wanted[:3].decode()!r}"
        raise ValueError(f"{shown}: not a single-file NIfTI-{version} image ({what})")
    if version == 2:
        raise ValueError(
            f"{shown}: NIfTI-2 files are not supported: SimpleITK, which nnU-Net reads images with, cannot read "
            "them; save it as NIfTI-1"
        )
    ndim = int(dims[0])
    if not 1 <= ndim <= 7:
        raise ValueError(f"{shown}: invalid NIfTI header: {ndim} dimensions (dim[0] must be 1 to 7)")
    shape = tuple(int(d) for d in dims[1 : ndim + 1])
    if min(shape) <= 0:
        raise ValueError(
            f"{shown}: image shape {'x'.join(map(str, shape))} has a zero-size or negative dimension: no voxels"
        )
    if code not in _REAL_TYPES:
        name = _REFUSED_TYPES.get(code, f"unknown data type code {code}")
        raise ValueError(f"{shown}: voxel type {name} is not supported (only real-valued integer or float images)")
    if not math.isfinite(offset_value) or offset_value != int(offset_value) or offset_value < _MIN_OFFSET[version]:
        raise ValueError(
            f"{shown}: invalid NIfTI header: data offset (vox_offset) {offset_value:g}, a single-file "
            f"NIfTI-{version} needs a whole number >= {_MIN_OFFSET[version]}"
        )
    return NiftiLayout(version, shape, np.dtype(order + _REAL_TYPES[code]), int(offset_value))


def _check_limits(layout: NiftiLayout, shown: Path, available: Callable[[], int | None]) -> None:
    if layout.voxels > MAX_VOXELS:
        raise ValueError(
            f"{shown}: header declares {layout.voxels} voxels ({layout.describe()}), more than the 2^31 a file may "
            "have here; refused before reading"
        )
    needed = layout.voxels * (2 * layout.dtype.itemsize + 4)
    free = available()
    if free is not None and needed > free:
        raise ValueError(
            f"{shown}: header declares {layout.describe()}: reading it needs about {needed / 2**30:.2f} GiB of "
            f"memory, {free / 2**30:.2f} GiB are available; refused before reading"
        )


def _gzip_error(shown: Path, error: BaseException) -> ValueError:
    return ValueError(f"{shown}: truncated or corrupt gzip stream ({library_error(error)})")


def check_nifti_header(path: str | os.PathLike[str]) -> NiftiLayout:
    """Steps 1-2 of the contract (header, limits) and, for a ``.nii``, its exact size; reads only the header (for a
    ``.nii.gz``, the first 540 decompressed bytes). Returns the layout; ValueError naming the file."""
    path = Path(path)
    try:
        if path.name.endswith(".gz"):
            with gzip.open(path, "rb") as f:
                raw = f.read(540)
        else:
            with open(path, "rb") as f:
                raw = f.read(540)
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
    layout = _parse_header(raw, path)
    _check_limits(layout, path, available_memory_bytes)
    if not path.name.endswith(".gz"):
        _check_length(path, path.stat().st_size, layout)
    return layout


def _check_length(shown: Path, size: int, layout: NiftiLayout) -> None:
    if size < layout.file_bytes:
        raise ValueError(
            f"{shown}: truncated file ({size} bytes, the header needs {layout.file_bytes}) for {layout.describe()}"
        )
    if size > layout.file_bytes:
        raise ValueError(
            f"{shown}: {size - layout.file_bytes} byte(s) more than the header declares ({layout.file_bytes} bytes: "
            f"{layout.describe()}); not a well-formed NIfTI file"
        )


def check_nifti_file(path: str | os.PathLike[str], sink: Callable[[bytes], object] | None = None) -> NiftiLayout:
    """The whole contract for a ``.nii`` / ``.nii.gz`` file (see the module docstring); returns its layout.

    With ``sink``, a ``.nii.gz``'s decompressed bytes are passed to it in order, from the header on, once the header
    and the limits are checked (so a reader can keep them: one decompression; at most the declared size). Raises
    ValueError naming the file: a short stream is ``incomplete image data``, never zero-filled voxels.
    """
    path = Path(path)
    if not path.name.endswith(".gz"):
        return check_nifti_header(path)
    try:
        with gzip.open(path, "rb") as f:
            raw = f.read(540)
            layout = _parse_header(raw, path)
            _check_limits(layout, path, available_memory_bytes)
            expected = layout.file_bytes
            if sink is not None:
                sink(raw[:expected])
            count = len(raw)
            while count <= expected:
                chunk = f.read(min(_CHUNK, expected + 1 - count))
                if not chunk:
                    break
                if sink is not None:
                    sink(chunk[: max(0, expected - count)])
                count += len(chunk)
    except _GZIP_ERRORS as e:
        raise _gzip_error(path, e) from None
    if count < expected:
        raise ValueError(
            f"{path}: incomplete image data: the gzip stream holds {count} bytes, the header needs {expected} "
            f"({layout.describe()})"
        )
    if count > expected:
        raise ValueError(
            f"{path}: the gzip stream holds more bytes than the header declares ({expected}: {layout.describe()}); "
            "not a well-formed NIfTI file"
        )
    return layout
