"""Cost of the verified reader: ``io_utils.read_image_zyx`` (whole gzip stream checked, then SimpleITK) and
``io_utils.load_nifti`` (one verified decompression, then nibabel) against plain SimpleITK / nibabel reads of the
same file, measured in the same run (best of ``--repeats``). Prints seconds per read and the ratio to the baseline.

    python benchmarks/bench_read.py                       # a full-size 240x240x155 synthetic case (int16 t1c, seg)
    python benchmarks/bench_read.py --shape 96 96 64 --repeats 5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import nibabel as nib
import numpy as np
import SimpleITK as sitk

from nnunet_tcup.io_utils import load_nifti, read_image_zyx
from nnunet_tcup.synthetic import write_dataset


def best_time(fn: Callable[[], object], repeats: int) -> float:
    """Smallest wall time (s) of ``repeats`` calls."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def readers(path: Path, labels: bool) -> list[tuple[str, Callable[[], object]]]:
    """(name, read function) pairs: each baseline followed by the verified reader it is compared with."""
    return [
        ("SimpleITK ReadImage + GetArray (baseline)", lambda: sitk.GetArrayFromImage(sitk.ReadImage(str(path)))),
        ("io_utils.read_image_zyx (verified)", lambda: read_image_zyx(path, labels=labels)),
        ("nibabel load + get_fdata (baseline)", lambda: nib.load(str(path)).get_fdata(dtype=np.float32)),  # type: ignore[attr-defined]
        ("io_utils.load_nifti (verified)", lambda: load_nifti(path)),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shape", type=int, nargs=3, default=(240, 240, 155), metavar=("X", "Y", "Z"))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench_read_") as tmp:
        folder = write_dataset(tmp, "GLI", 1, seed=0, shape=tuple(args.shape), progress=False)[0]
        for kind in ("t1c", "seg"):
            path = Path(folder) / f"{folder.name}-{kind}.nii.gz"
            rows = readers(path, kind == "seg")
            print(f"{path.name}: {path.stat().st_size / 1e6:.1f} MB on disk, shape {tuple(args.shape)}")
            times = [best_time(fn, args.repeats) for _, fn in rows]
            for i, ((name, _), t) in enumerate(zip(rows, times)):
                base = times[i - i % 2]
                print(f"  {name:45s} {t:7.3f} s   x{t / base:5.2f} vs its baseline")


if __name__ == "__main__":
    main()
