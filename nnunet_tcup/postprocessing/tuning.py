"""Grid search of the lesion filter's thresholds on cross-validation predictions, scored through the cache.

Objective: the mean over regions (WT, TC, ET) of the mean over cases of the official lesion-wise Dice
(``LesionWise_Score_Dice``) with the challenge's evaluation parameters. Every grid point
``(A_WT, A_TC, A_ET, min_slices)`` is scored exactly (see :mod:`nnunet_tcup.postprocessing.cache`). Because WT only
depends on ``(min_slices, A_WT)`` and TC on ``(min_slices, A_WT, A_TC)``, those tables are computed on their own
sub-grids and broadcast. Ties (scores within ``TIE_TOLERANCE``) go to the first grid point in the order
``min_slices, A_WT, A_TC, A_ET``, each ascending, i.e. to the mildest filter.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from nnunet_tcup.postprocessing.cache import REGION_NAMES, CandidateScorer, CaseCache, build_case_cache, score_case
from nnunet_tcup.postprocessing.lesion_filter import FilterParameters, check_min_slices, check_threshold

TIE_TOLERANCE = 1e-12

DEFAULT_WT_THRESHOLDS: Tuple[float, ...] = (0, 10, 25, 50, 75, 100, 125, 150, 200, 250, 300)
DEFAULT_TC_THRESHOLDS: Tuple[float, ...] = (0, 5, 10, 25, 50, 75, 100, 125, 150, 200)
DEFAULT_ET_THRESHOLDS: Tuple[float, ...] = (0, 5, 10, 15, 20, 25, 50, 75, 100)
DEFAULT_MIN_SLICES: Tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10)


@dataclass(frozen=True)
class ThresholdGrid:
    """Candidate values per parameter; stored sorted ascending without duplicates."""

    wt: Tuple[float, ...] = DEFAULT_WT_THRESHOLDS
    tc: Tuple[float, ...] = DEFAULT_TC_THRESHOLDS
    et: Tuple[float, ...] = DEFAULT_ET_THRESHOLDS
    min_slices: Tuple[int, ...] = DEFAULT_MIN_SLICES

    def __post_init__(self) -> None:
        for name in ("wt", "tc", "et"):
            values = getattr(self, name)
            if values is None or len(values) == 0:
                raise ValueError(f"threshold grid for {name.upper()} is empty")
            checked = sorted({check_threshold(v, f"{name.upper()} threshold") for v in values})
            object.__setattr__(self, name, tuple(checked))
        if self.min_slices is None or len(self.min_slices) == 0:
            raise ValueError("min_slices grid is empty")
        object.__setattr__(self, "min_slices", tuple(sorted({check_min_slices(v) for v in self.min_slices})))

    @property
    def size(self) -> int:
        return len(self.wt) * len(self.tc) * len(self.et) * len(self.min_slices)

    def candidates(self) -> np.ndarray:
        """(size, 4) rows ``(A_WT, A_TC, A_ET, min_slices)`` in tie-break order (min_slices, WT, TC, ET)."""
        m, a, b, c = np.meshgrid(self.min_slices, self.wt, self.tc, self.et, indexing="ij")
        return np.stack([a.ravel(), b.ravel(), c.ravel(), m.ravel()], axis=1).astype(np.float64)

    def as_dict(self) -> Dict[str, list]:
        return {"WT": list(self.wt), "TC": list(self.tc), "ET": list(self.et), "min_slices": list(self.min_slices)}


@dataclass
class SearchResult:
    """Best grid point and the objective table (mean of WT, TC, ET mean lesion-wise Dice) over the grid."""

    best: FilterParameters
    best_objective: float
    objective: np.ndarray  # shape (len(min_slices), len(wt), len(tc), len(et))
    grid: ThresholdGrid = field(repr=False)


def pick_best(objective: np.ndarray, candidates: np.ndarray) -> Tuple[int, float]:
    """Index and value of the first candidate whose objective is within TIE_TOLERANCE of the maximum."""
    flat = np.asarray(objective, dtype=np.float64).ravel()
    best_value = float(flat.max())
    index = int(np.flatnonzero(flat >= best_value - TIE_TOLERANCE)[0])
    return index, best_value


def grid_search(scorer: CandidateScorer, grid: ThresholdGrid) -> SearchResult:
    """Score every grid point with ``scorer`` and return the best one (see module docstring for ties)."""
    nm, na, nb, nc = len(grid.min_slices), len(grid.wt), len(grid.tc), len(grid.et)
    m_, a_ = np.meshgrid(grid.min_slices, grid.wt, indexing="ij")
    wt_cand = np.stack([a_.ravel(), np.zeros(a_.size), np.zeros(a_.size), m_.ravel()], axis=1)
    wt = scorer.region_case_scores("WT", wt_cand).mean(axis=1).reshape(nm, na, 1, 1)
    m_, a_, b_ = np.meshgrid(grid.min_slices, grid.wt, grid.tc, indexing="ij")
    tc_cand = np.stack([a_.ravel(), b_.ravel(), np.zeros(a_.size), m_.ravel()], axis=1)
    tc = scorer.region_case_scores("TC", tc_cand).mean(axis=1).reshape(nm, na, nb, 1)
    candidates = grid.candidates()
    et = scorer.region_case_scores("ET", candidates).mean(axis=1).reshape(nm, na, nb, nc)
    objective = (wt + tc + et) / 3.0
    index, value = pick_best(objective, candidates)
    a, b, c, m = candidates[index]
    return SearchResult(FilterParameters(a, b, c, int(m)), value, objective, grid)


def summarise(cases: Sequence[CaseCache], params: Optional[FilterParameters]) -> Tuple[Dict[str, float],
                                                                                        Dict[str, Dict[str, float]]]:
    """Exact per-case lesion-wise Dice (same arithmetic as the evaluation) and its means: ``(means, per_case)``.

    ``means`` has WT, TC, ET (mean over cases) and ``mean`` (their mean, the tuning objective).
    """
    names = [case.name for case in cases]
    if len(set(names)) != len(names):
        raise ValueError("case names must be unique")
    results = [score_case(case, params) for case in cases]
    per_case = dict(zip(names, results))
    means = {r: float(np.mean([res[r] for res in results])) for r in REGION_NAMES}
    means["mean"] = float(np.mean([means[r] for r in REGION_NAMES]))
    return means, per_case


# ----------------------------------------------------------------------------------------------- files
@dataclass(frozen=True)
class CasePair:
    """A prediction file and its ground-truth file (same case name)."""

    name: str
    prediction: Path
    ground_truth: Path


def pair_cases(predictions: Dict[str, Path], gt_folder: Path, pred_description: str) -> List[CasePair]:
    """Pair each prediction (name -> file) with ``gt_folder/NAME.nii.gz``; ValueError if any GT is missing."""
    from nnunet_tcup.io_utils import list_nifti_cases

    if not predictions:
        raise ValueError(f"{pred_description}: no prediction files (*.nii.gz) found")
    gt_folder = Path(gt_folder)
    gt_names = set(list_nifti_cases(gt_folder))
    missing = sorted(set(predictions) - gt_names)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{gt_folder}: no ground truth for {len(missing)} of {len(predictions)} predictions "
                         f"in {pred_description} (case names must match): {shown}")
    return [CasePair(n, Path(predictions[n]), gt_folder / f"{n}.nii.gz") for n in sorted(predictions)]


def pairs_from_folders(pred_folder: Path, gt_folder: Path) -> List[CasePair]:
    """Cases of a prediction folder paired with a GT folder (``NAME.nii.gz`` in both)."""
    from nnunet_tcup.io_utils import list_nifti_cases

    pred_folder = Path(pred_folder)
    if not Path(gt_folder).is_dir():
        raise ValueError(f"{gt_folder}: ground-truth folder not found")
    names = list_nifti_cases(pred_folder)
    return pair_cases({n: pred_folder / f"{n}.nii.gz" for n in names}, Path(gt_folder), str(pred_folder))


def cache_case_files(pair: CasePair, challenge: str) -> CaseCache:
    """Read a case pair (spacing from the prediction, as the evaluation) and build its cache."""
    from nnunet_tcup.io_utils import read_array_zyx

    pred, spacing = read_array_zyx(pair.prediction)
    gt, _ = read_array_zyx(pair.ground_truth)
    if gt.shape != pred.shape:
        raise ValueError(f"{pair.prediction}: shape {pred.shape} differs from ground truth {pair.ground_truth} "
                         f"shape {gt.shape}")
    try:
        return build_case_cache(gt, pred, spacing, challenge=challenge, name=pair.name)
    except ValueError as e:
        raise ValueError(f"{e} (files {pair.prediction}, {pair.ground_truth})") from e


def build_caches(pairs: Sequence[CasePair], challenge: str, num_workers: int = 1,
                 progress: bool = True) -> List[CaseCache]:
    """Cache every case, in ``num_workers`` spawned processes (1: in this process), with a tqdm progress bar."""
    from tqdm import tqdm

    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    bar = dict(total=len(pairs), desc="caching cases", unit="case", disable=not progress)
    if num_workers == 1 or len(pairs) <= 1:
        return [cache_case_files(p, challenge) for p in tqdm(pairs, **bar)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(min(num_workers, len(pairs)), mp_context=multiprocessing.get_context("spawn")) as ex:
        return list(tqdm(ex.map(cache_case_files, pairs, [challenge] * len(pairs)), **bar))


def default_num_workers() -> int:
    """nnU-Net's ``nnUNet_def_n_proc`` if set, else min(4, CPU count)."""
    value = os.environ.get("nnUNet_def_n_proc")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return max(1, min(4, os.cpu_count() or 1))


def tune(pairs: Sequence[CasePair], challenge: str, grid: ThresholdGrid = ThresholdGrid(), num_workers: int = 1,
         progress: bool = True) -> dict:
    """Cache the cases, search ``grid``, and return the report written to postprocessing.json (without paths)."""
    from nnunet_tcup.challenges import EVALUATION_PARAMETERS, check_challenge
    from nnunet_tcup.postprocessing.lesion_filter import preset_parameters

    challenge = check_challenge(challenge)
    caches = build_caches(pairs, challenge, num_workers, progress)
    if progress:
        print(f"scoring {grid.size} candidates on {len(caches)} cases", flush=True)
    result = grid_search(CandidateScorer(caches), grid)
    before, per_case_before = summarise(caches, None)
    after, per_case_after = summarise(caches, result.best)
    preset = preset_parameters(challenge)
    preset_means, _ = summarise(caches, preset)
    ev = EVALUATION_PARAMETERS[challenge]
    return {
        "challenge": challenge,
        "evaluation_parameters": {"dilation_iterations": ev.dilation_iterations,
                                  "volume_threshold_mm3": ev.volume_threshold_mm3},
        "objective": "mean over WT, TC, ET of the mean over cases of LesionWise_Score_Dice",
        "kwargs": result.best.as_kwargs(),
        "n_cases": len(caches),
        "grid": grid.as_dict(),
        "n_candidates": grid.size,
        "lesionwise_dice_before": before,
        "lesionwise_dice_after": after,
        "paper_preset": {"kwargs": preset.as_kwargs(), "lesionwise_dice": preset_means},
        "per_case": {name: {"before": per_case_before[name], "after": per_case_after[name]}
                     for name in per_case_before},
    }
