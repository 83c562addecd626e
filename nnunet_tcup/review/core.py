"""``run_review``: rank cases, lesions and slices by the disagreement of cross-validation folds, and write the review
folder (``review.csv``, ``lesions.csv``, ``review.html``, ``maps/``, ``montages/``, ``zooniverse/``).

Nothing is lost: every product is built in a hidden staging folder inside the output folder and moved into place
only when all cases succeeded (``review.csv`` last); an existing review is replaced only with ``overwrite``; other
files in the output folder are never touched. A review takes the output folder's lock before it looks at anything
there; a second review writing the same folder at the same time is refused and removes nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from nnunet_tcup.challenges import check_challenge
from nnunet_tcup.locking import locked_folder
from nnunet_tcup.parallel import parallel_map
from nnunet_tcup.review.case import CaseJob, CaseResult, review_case
from nnunet_tcup.review.inputs import image_paths, list_cases, output_kind
from nnunet_tcup.review.tables import rank_cases, write_html, write_lesions_csv, write_manifest, write_review_csv

#: Products of a review, in the order they are moved into the output folder (``review.csv`` last: a folder with a
#: ``review.csv`` holds a complete review).
PRODUCTS = ("maps", "montages", "zooniverse", "lesions.csv", "review.html", "review.csv")
STAGING_PREFIX = ".review-staging-"
LOCK_NAME = ".review.lock"


@dataclass(frozen=True)
class ReviewResult:
    """What :func:`run_review` wrote: the output folder, ``review.csv`` rows in rank order (dicts of the CSV
    columns) and the per-case results."""

    output_dir: Path
    rows: list[dict[str, object]]
    cases: list[CaseResult]

    @property
    def csv(self) -> Path:
        return self.output_dir / "review.csv"

    @property
    def html(self) -> Path:
        return self.output_dir / "review.html"


def check_output_dir(output_dir: Path, overwrite: bool) -> None:
    """ValueError unless ``output_dir`` can take a review: not a file, and no earlier review unless ``overwrite``."""
    output_dir = Path(output_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise ValueError(f"{output_dir}: exists and is not a folder")
    existing = [name for name in PRODUCTS if (output_dir / name).exists()]
    if existing and not overwrite:
        raise ValueError(
            f"{output_dir}: already holds a review ({', '.join(existing)}); pass overwrite (--overwrite) to replace it"
        )


def _clean_stale_staging(output_dir: Path) -> None:
    """Remove staging folders of interrupted runs (called while holding the folder's lock)."""
    for entry in output_dir.iterdir():
        if entry.name.startswith(STAGING_PREFIX) and entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)


def _publish(staging: Path, output_dir: Path) -> None:
    """Move every product from ``staging`` into ``output_dir``, replacing an earlier review's."""
    for name in PRODUCTS:
        source = staging / name
        if not source.exists():
            continue
        target = output_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        elif target.exists() or target.is_symlink():
            target.unlink()
        os.replace(source, target)


def build_jobs(
    fold_dirs: Sequence[Path],
    images_dir: Path,
    staging: Path,
    challenge: str,
    gt_dir: Path | None,
    dataset_json: Path | None,
    num_slices: int,
    write_maps: bool,
    zooniverse: bool,
) -> list[CaseJob]:
    """One job per case; every input problem (missing case, image, label file, bad dataset.json) is raised here
    before any work starts."""
    if len(fold_dirs) < 2:
        raise ValueError(
            f"a review needs the predictions of at least 2 folds, got {len(fold_dirs)}: "
            f"{', '.join(map(str, fold_dirs)) or 'none'}"
        )
    if len({Path(f).resolve() for f in fold_dirs}) != len(fold_dirs):
        raise ValueError(f"the same fold folder is given twice: {', '.join(map(str, fold_dirs))}")
    for folder in fold_dirs:
        if not Path(folder).is_dir():
            raise ValueError(f"{folder}: fold prediction folder not found")
    kinds = [
        output_kind(Path(dataset_json) if dataset_json else Path(f) / "dataset.json", Path(f) / "plans.json")
        for f in fold_dirs
    ]
    if any(k != kinds[0] for k in kinds):
        raise ValueError(
            f"{fold_dirs[kinds.index(next(k for k in kinds if k != kinds[0]))]}: predictions of a "
            f"different model output (dataset.json) than {fold_dirs[0]}"
        )
    if not Path(images_dir).is_dir():
        raise ValueError(f"{images_dir}: images folder not found")
    if gt_dir is not None and not Path(gt_dir).is_dir():
        raise ValueError(f"{gt_dir}: ground-truth folder not found")
    jobs = []
    for case in list_cases(fold_dirs):
        gt_file = None
        if gt_dir is not None:
            gt_file = Path(gt_dir) / f"{case}.nii.gz"
            if not gt_file.is_file():
                raise ValueError(f"{gt_file}: ground truth of case {case} not found")
        jobs.append(
            CaseJob(
                case,
                tuple(Path(f) / f"{case}.npz" for f in fold_dirs),
                tuple(image_paths(images_dir, case)),
                kinds[0],
                challenge,
                staging,
                gt_file,
                num_slices,
                write_maps,
                zooniverse,
            )
        )
    return jobs


def run_review(
    fold_dirs: Sequence[str | Path],
    images_dir: str | Path,
    output_dir: str | Path,
    *,
    gt_dir: str | Path | None = None,
    challenge: str = "GLI",
    dataset_json: str | Path | None = None,
    num_slices: int = 3,
    write_maps: bool = True,
    zooniverse: bool = True,
    overwrite: bool = False,
    num_workers: int | None = None,
    progress: bool = True,
) -> ReviewResult:
    """Review the cases predicted by every fold and write the review folder ``output_dir``.

    ``fold_dirs``: one ``nnUNetv2_predict -f K --save_probabilities`` output folder per fold (at least 2);
    ``images_dir``: the images they were predicted from (``CASE_0000.nii.gz`` ...); ``gt_dir``: optional labels
    ``CASE.nii.gz`` (adds the true lesion-wise Dice of the consensus to the tables); ``challenge`` sets the
    lesion-wise parameters; ``dataset_json`` overrides the ``dataset.json`` read from each fold folder;
    ``num_slices``: doubtful slices per case (montage rows, Zooniverse subjects). Raises ValueError naming the
    path and the problem; on error nothing of the review is left behind.
    """
    challenge = check_challenge(challenge)
    if num_slices < 1:
        raise ValueError(f"num_slices must be >= 1, got {num_slices}")
    fold_paths = [Path(f) for f in fold_dirs]
    output_dir = Path(output_dir)
    # the folder's lock comes first: a second review into it meanwhile fails at once and removes nothing; a folder
    # this call created is removed again after a failure (it then holds nothing: staging is removed first)
    with locked_folder(output_dir, LOCK_NAME, "a review"):
        check_output_dir(output_dir, overwrite)
        return _review_locked(
            fold_paths,
            Path(images_dir),
            output_dir,
            gt_dir,
            challenge,
            dataset_json,
            num_slices,
            write_maps,
            zooniverse,
            overwrite,
            num_workers,
            progress,
        )


def _review_locked(
    fold_paths: list[Path],
    images_dir: Path,
    output_dir: Path,
    gt_dir: str | Path | None,
    challenge: str,
    dataset_json: str | Path | None,
    num_slices: int,
    write_maps: bool,
    zooniverse: bool,
    overwrite: bool,
    num_workers: int | None,
    progress: bool,
) -> ReviewResult:
    """The review itself, in a staging folder published at the end; called by :func:`run_review` holding the
    output folder's lock."""
    _clean_stale_staging(output_dir)
    staging = output_dir / f"{STAGING_PREFIX}{os.getpid()}"
    try:
        jobs = build_jobs(
            fold_paths,
            Path(images_dir),
            staging,
            challenge,
            None if gt_dir is None else Path(gt_dir),
            None if dataset_json is None else Path(dataset_json),
            num_slices,
            write_maps,
            zooniverse,
        )
        results = parallel_map(
            review_case, jobs, num_workers=num_workers, desc="review", progress=progress, label=lambda j: j.case
        )
        ranked = rank_cases(results)
        rows = write_review_csv(ranked, staging / "review.csv")
        write_lesions_csv(ranked, staging / "lesions.csv")
        if zooniverse:
            write_manifest(ranked, staging / "zooniverse" / "manifest.csv")
        notes = (
            f"{len(ranked)} cases, {len(fold_paths)} folds ({', '.join(p.name for p in fold_paths)}), "
            f"challenge {challenge}. Doubt score = mean over WT/TC/ET of the disputed share: the share of "
            f"the volume any fold labels that not every fold labels; most doubtful first."
        )
        write_html(rows, staging / "review.html", "Review: cases to check first", notes, maps=write_maps)
        check_output_dir(output_dir, overwrite)
        _publish(staging, output_dir)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ReviewResult(output_dir, rows, ranked)
