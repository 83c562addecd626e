"""Apply the lesion filter to a folder of predictions without unpickling anything (``postprocess apply``).

Each ``NAME.nii.gz`` of the input folder is read with :func:`nnunet_tcup.io_utils.read_image_zyx` (array
``(z, y, x)``; truncated or corrupt files and non-integer or non-finite labels are errors), filtered and written to
the output folder with the input's geometry (spacing, origin, direction) and pixel type.

All or nothing: every case is filtered into a hidden partial file next to its target first; only when every case
has succeeded are the partial files renamed into place. On any failure the partial files are removed (and the
output folder too if this call created it), so a failed run leaves no outputs.

One run at a time per output folder: a run takes the folder's lock before it looks at anything in it; a second run
into the same folder meanwhile fails at once with one line (``... another process is writing post-processed
predictions right now``) and touches nothing; only the run holding the lock removes partial files there.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

import numpy as np

from nnunet_tcup.postprocessing.lesion_filter import FilterParameters

__all__ = ["LOCK_NAME", "apply_to_folder", "describe", "filter_array_file", "filter_file"]

#: Lock file held in the output folder while a run writes there (removed at its end).
LOCK_NAME = ".postprocess-apply.lock"


def filter_array_file(source: Path, params: FilterParameters) -> tuple[np.ndarray, object]:
    """Read ``source`` (verified, labels 0-3) and return ``(filtered array (z, y, x), ImageGeometry)``."""
    from nnunet_tcup.io_utils import read_image_zyx
    from nnunet_tcup.postprocessing.lesion_filter import filter_lesions

    array, geometry = read_image_zyx(source, labels=True)
    try:
        filtered = filter_lesions(
            array, params.wt_threshold, params.tc_threshold, params.et_threshold, params.min_slices
        )
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from None
    return filtered.astype(array.dtype, copy=False), geometry


def _write_label_image(array: np.ndarray, geometry, path: Path) -> None:
    """Write a ``(z, y, x)`` array with ``geometry`` (spacing, origin, direction) as a compressed NIfTI at ``path``."""
    import SimpleITK as sitk

    image = sitk.GetImageFromArray(array)
    image.SetSpacing(tuple(float(s) for s in reversed(geometry.spacing_zyx)))
    image.SetOrigin(tuple(geometry.origin_xyz))
    image.SetDirection(tuple(geometry.direction))
    sitk.WriteImage(image, str(path), useCompression=True)


def filter_file(source: Path, target: Path, params: FilterParameters) -> None:
    """Filter one label image file into ``target`` atomically (same geometry and pixel type)."""
    from nnunet_tcup.io_utils import atomic_output

    filtered, geometry = filter_array_file(Path(source), params)
    with atomic_output(target) as tmp:
        _write_label_image(filtered, geometry, tmp)


def _staged_path(target: Path, token: str) -> Path:
    """Hidden partial file next to ``target`` (recognised by io_utils.is_partial_file and removed as stale)."""
    from nnunet_tcup.io_utils import PARTIAL_MARKER

    return target.with_name(f".{target.name[: -len('.nii.gz')]}{PARTIAL_MARKER}{token}.nii.gz")


def _stage_job(job: tuple[Path, Path, FilterParameters]) -> None:
    source, staged, params = job
    filtered, geometry = filter_array_file(source, params)
    _write_label_image(filtered, geometry, staged)


def apply_to_folder(
    input_folder: Path,
    output_folder: Path,
    params: FilterParameters,
    num_workers: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> list[Path]:
    """Filter every ``*.nii.gz`` of ``input_folder`` into ``output_folder``, all or nothing; return the written files.

    Refuses (FileExistsError) to write over existing outputs unless ``overwrite``; refuses the input folder as
    output. Other files (plans.json, ...) are not copied. ``num_workers`` processes (see nnunet_tcup.parallel).
    """
    from nnunet_tcup.io_utils import list_nifti_cases, remove_stale_partials
    from nnunet_tcup.locking import locked_folder
    from nnunet_tcup.parallel import parallel_map

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    if output_folder.resolve() == input_folder.resolve():
        raise ValueError(f"{output_folder}: output folder must differ from the input folder")
    names = list_nifti_cases(input_folder)
    if not names:
        raise ValueError(f"{input_folder}: no prediction files (*.nii.gz) found")
    targets = [output_folder / f"{n}.nii.gz" for n in names]
    # Everything in the output folder is looked at under its lock: a second run into it meanwhile fails at once.
    with locked_folder(output_folder, LOCK_NAME, "post-processed predictions"):
        existing = [t for t in targets if t.exists()]
        if existing and not overwrite:
            raise FileExistsError(
                f"{output_folder}: {len(existing)} output file(s) exist already (e.g. "
                f"{existing[0].name}); use --overwrite or another output folder"
            )
        remove_stale_partials(output_folder)  # ours alone while the lock is held: left by a killed run
        token = str(os.getpid())
        staged = [_staged_path(t, token) for t in targets]
        jobs = [(input_folder / f"{n}.nii.gz", s, params) for n, s in zip(names, staged)]
        try:
            parallel_map(
                _stage_job,
                jobs,
                num_workers=num_workers,
                desc="filtering",
                progress=progress,
                label=lambda j: str(j[0]),
            )
            for s, t in zip(staged, targets):
                os.replace(s, t)
        except BaseException:
            for s in staged:
                with contextlib.suppress(FileNotFoundError):
                    s.unlink()
            raise
    return targets


def describe(params: FilterParameters, challenge: str | None = None) -> str:
    """One line describing a filter setting, for logs."""
    head = f"{challenge}: " if challenge else ""
    if params.is_identity:
        return f"{head}no filter (identity: every component kept)"
    return (
        f"{head}A_WT > {params.wt_threshold:g}, A_TC > {params.tc_threshold:g}, A_ET > {params.et_threshold:g} "
        f"voxels per slice, at least {params.min_slices} slices"
    )
