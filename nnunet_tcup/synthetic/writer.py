"""Writing synthetic cases as BraTS 2023 case folders (atomic per file, never overwriting different data).

Layout: ``OUT/BraTS-{CH}-{NNNNN}-000/BraTS-{CH}-{NNNNN}-000-{t1n,t1c,t2w,t2f,seg}.nii.gz``; images int16, seg
uint8, qform/sform code 1 with the case affine, units mm.

Re-running on an existing folder: files that already hold exactly the generated data (same dtype, shape, affine,
voxels) are kept, missing files are written, and a file with different content raises FileExistsError naming it
(nothing of that case is written then). Stale ``.*.partial-*`` files from interrupted runs are removed.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np

from nnunet_tcup.challenges import MODALITIES, check_challenge
from nnunet_tcup.io_utils import atomic_output, remove_stale_partials
from nnunet_tcup.parallel import default_num_workers, parallel_map
from nnunet_tcup.synthetic.anatomy import resolve_anatomy_source
from nnunet_tcup.synthetic.brats_like import REFERENCE_SHAPE, SyntheticCase, case_seed, check_shape, synthesize_case

PathLike = Union[str, "os.PathLike[str]"]
CASE_ID_PATTERN = re.compile(r"BraTS-(GLI|MEN|PED|SSA)-[0-9]{5}-[0-9]{3}", re.ASCII)
MAX_INDEX = 99999


def case_id_for(challenge: str, index: int) -> str:
    """BraTS 2023 case id ``BraTS-{CH}-{index:05d}-000``."""
    return f"BraTS-{check_challenge(challenge)}-{int(index):05d}-000"


def _case_arrays(case: SyntheticCase) -> dict[str, np.ndarray]:
    arrays = {m: case.images[m] for m in MODALITIES}
    if case.seg is not None:
        arrays["seg"] = case.seg
    return arrays


def _same_content(path: Path, array: np.ndarray, affine: np.ndarray) -> bool:
    import nibabel as nib

    try:
        img: Any = nib.load(str(path))
        if img.get_data_dtype() != array.dtype or img.shape != array.shape:
            return False
        if not np.allclose(img.affine, affine, atol=1e-5):
            return False
        return bool(np.array_equal(np.asarray(img.dataobj), array))
    except Exception:  # unreadable / truncated: not the data we would write
        return False


def _save_nifti(array: np.ndarray, affine: np.ndarray, target: Path) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(array, affine)
    img.set_data_dtype(array.dtype)
    img.set_qform(affine, code=1)
    img.set_sform(affine, code=1)
    img.header.set_xyzt_units("mm", "sec")
    with atomic_output(target) as tmp:
        nib.save(img, str(tmp))


def write_case(case: SyntheticCase, out_dir: PathLike, case_id: str) -> Path:
    """Write ``case`` to ``out_dir/case_id/`` and return that folder.

    ``case_id`` must look like ``BraTS-GLI-00001-000``. Existing identical files are kept; a file with other
    content raises FileExistsError naming it, before anything of this case is written.
    """
    if not CASE_ID_PATTERN.fullmatch(case_id):
        raise ValueError(f"case id {case_id!r} must look like BraTS-GLI-00001-000 (challenge GLI/MEN/PED/SSA)")
    for name in MODALITIES:
        if name not in case.images:
            raise ValueError(f"case {case_id}: image {name!r} missing (need {', '.join(MODALITIES)})")
    folder = Path(out_dir) / case_id
    if folder.exists() and not folder.is_dir():
        raise FileExistsError(f"{folder}: exists and is not a directory")
    arrays = _case_arrays(case)
    targets = {key: folder / f"{case_id}-{key}.nii.gz" for key in arrays}
    pending = []
    for key, target in targets.items():
        if target.exists():
            if not _same_content(target, arrays[key], case.affine):
                raise FileExistsError(
                    f"{target}: exists with different content; refusing to overwrite case folder {folder} "
                    "(use another output folder, seed or start index)"
                )
        else:
            pending.append(key)
    folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(folder)
    for key in pending:
        _save_nifti(arrays[key], case.affine, targets[key])
    return folder


def _generate_and_write(args) -> Path:
    out_dir, challenge, index, seed, shape, with_seg, anatomy = args
    case = synthesize_case(challenge, shape=shape, seed=case_seed(seed, index), with_seg=with_seg, anatomy=anatomy)
    return write_case(case, out_dir, case_id_for(challenge, index))


def write_dataset(
    out_dir: PathLike,
    challenge: str,
    num_cases: int,
    seed: int = 0,
    shape: Sequence[int] = REFERENCE_SHAPE,
    with_seg: bool = True,
    start_index: int = 1,
    num_workers: int | None = 1,
    anatomy: str = "auto",
    progress: bool = True,
) -> list[Path]:
    """Generate and write cases ``start_index .. start_index + num_cases - 1``; return their folders in order.

    Case ``i`` uses ``synthesize_case(seed=case_seed(seed, i))``, so any chunking of the indices gives the same
    cases. ``num_workers`` > 1 uses :func:`nnunet_tcup.parallel.parallel_map` (None: its default worker count);
    tqdm progress bar unless ``progress`` is False.
    Raises ValueError for bad arguments and FileExistsError when an existing case file holds other data.
    """
    challenge = check_challenge(challenge)
    shape = check_shape(shape)
    if num_workers is None:
        num_workers = default_num_workers()
    for name, value, minimum in (
        ("number of cases", num_cases, 1),
        ("number of workers", num_workers, 1),
        ("start index", start_index, 0),
        ("seed", seed, 0),
    ):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
            raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    resolve_anatomy_source(anatomy)  # unknown / missing anatomy fails before anything is written
    last = start_index + num_cases - 1
    if last > MAX_INDEX:
        raise ValueError(f"case indices {start_index}..{last} exceed the 5-digit BraTS id limit {MAX_INDEX}")
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{out}: exists and is not a directory")
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(out, challenge, i, int(seed), shape, with_seg, anatomy) for i in range(start_index, last + 1)]
    return parallel_map(
        _generate_and_write,
        jobs,
        num_workers=int(num_workers),
        desc=f"synth {challenge}",
        progress=progress,
        label=lambda job: f"synthetic case {job[2]}",
    )
