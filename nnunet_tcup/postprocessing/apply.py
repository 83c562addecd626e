"""Apply the lesion filter to a folder of predictions without unpickling anything (``postprocess apply``).

Each ``NAME.nii.gz`` of the input folder is read with SimpleITK (array ``(z, y, x)``), filtered and written to
the output folder with the input's geometry (``CopyInformation``) and pixel type, atomically.
"""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from nnunet_tcup.postprocessing.lesion_filter import FilterParameters


def filter_file(source: Path, target: Path, params: FilterParameters) -> None:
    """Filter one label image file into ``target`` (same geometry and pixel type); ValueError naming bad input."""
    import SimpleITK as sitk

    from nnunet_tcup.io_utils import atomic_output
    from nnunet_tcup.postprocessing.lesion_filter import filter_lesions

    try:
        image = sitk.ReadImage(str(source))
    except Exception as e:
        raise ValueError(f"{source}: cannot read image ({type(e).__name__}: {e})") from e
    array = sitk.GetArrayFromImage(image)  # (z, y, x)
    try:
        filtered = filter_lesions(array, **params.as_kwargs())
    except ValueError as e:
        raise ValueError(f"{source}: {e}") from e
    out = sitk.GetImageFromArray(filtered.astype(array.dtype, copy=False))
    out.CopyInformation(image)
    with atomic_output(target) as tmp:
        sitk.WriteImage(out, str(tmp), useCompression=True)


def _filter_pair(args) -> None:
    filter_file(*args)


def apply_to_folder(input_folder: Path, output_folder: Path, params: FilterParameters, num_workers: int = 1,
                    overwrite: bool = False, progress: bool = True) -> List[Path]:
    """Filter every ``*.nii.gz`` of ``input_folder`` into ``output_folder``; return the written files.

    Refuses (FileExistsError) to write over existing outputs unless ``overwrite``; refuses the input folder as
    output. Other files (plans.json, ...) are not copied.
    """
    from tqdm import tqdm

    from nnunet_tcup.io_utils import list_nifti_cases, remove_stale_partials

    input_folder, output_folder = Path(input_folder), Path(output_folder)
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    names = list_nifti_cases(input_folder)
    if not names:
        raise ValueError(f"{input_folder}: no prediction files (*.nii.gz) found")
    if output_folder.exists() and output_folder.resolve() == input_folder.resolve():
        raise ValueError(f"{output_folder}: output folder must differ from the input folder")
    targets = [output_folder / f"{n}.nii.gz" for n in names]
    existing = [t for t in targets if t.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{output_folder}: {len(existing)} output file(s) exist already (e.g. "
                              f"{existing[0].name}); use --overwrite or another output folder")
    output_folder.mkdir(parents=True, exist_ok=True)
    remove_stale_partials(output_folder)
    jobs = [(input_folder / f"{n}.nii.gz", t, params) for n, t in zip(names, targets)]
    bar = dict(total=len(jobs), desc="filtering", unit="case", disable=not progress)
    if num_workers == 1 or len(jobs) == 1:
        for job in tqdm(jobs, **bar):
            filter_file(*job)
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(min(num_workers, len(jobs)), mp_context=multiprocessing.get_context("spawn")) as ex:
            for _ in tqdm(ex.map(_filter_pair, jobs), **bar):
                pass
    return targets


def describe(params: FilterParameters, challenge: Optional[str] = None) -> str:
    """One line describing a filter setting, for logs."""
    head = f"{challenge}: " if challenge else ""
    return (f"{head}A_WT > {params.wt_threshold:g}, A_TC > {params.tc_threshold:g}, A_ET > {params.et_threshold:g} "
            f"voxels per slice, at least {params.min_slices} slices")
