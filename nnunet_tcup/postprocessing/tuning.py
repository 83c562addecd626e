"""Grid search of the lesion filter's thresholds on cross-validation predictions, scored through the cache.

Objective: the mean over regions (WT, TC, ET) of the mean over cases of the official lesion-wise Dice
(``LesionWise_Score_Dice``) with the challenge's evaluation parameters. Every grid point
``(A_WT, A_TC, A_ET, min_slices)`` is scored exactly (see :mod:`nnunet_tcup.postprocessing.cache`). Because WT only
depends on ``(min_slices, A_WT)`` and TC on ``(min_slices, A_WT, A_TC)``, those tables are computed on their own
sub-grids and broadcast. Ties (scores within ``TIE_TOLERANCE``) go to the first grid point in the order
``min_slices, A_WT, A_TC, A_ET``, each ascending, i.e. to the mildest filter.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from nnunet_tcup.postprocessing.cache import REGION_NAMES, CandidateScorer, CaseCache, build_case_cache, score_case
from nnunet_tcup.postprocessing.lesion_filter import IDENTITY, FilterParameters, check_min_slices, check_threshold

TIE_TOLERANCE = 1e-12

DEFAULT_WT_THRESHOLDS: tuple[float, ...] = (0, 10, 25, 50, 75, 100, 125, 150, 200, 250, 300)
DEFAULT_TC_THRESHOLDS: tuple[float, ...] = (0, 5, 10, 25, 50, 75, 100, 125, 150, 200)
DEFAULT_ET_THRESHOLDS: tuple[float, ...] = (0, 5, 10, 15, 20, 25, 50, 75, 100)
DEFAULT_MIN_SLICES: tuple[int, ...] = (1, 2, 3, 4, 5, 6, 8, 10)
#: The paper's rule: area thresholds per region (its presets for the four challenges are grid points), 5 slices.
PAPER_WT_THRESHOLDS: tuple[float, ...] = (0, 25, 50, 75, 100, 125, 150, 200)
PAPER_TC_THRESHOLDS: tuple[float, ...] = (0, 25, 50, 75, 100, 125, 150)
PAPER_ET_THRESHOLDS: tuple[float, ...] = (0, 5, 10, 15, 20, 25, 50)
PAPER_MIN_SLICES: tuple[int, ...] = (5,)
#: Out-of-sample gain needed to keep a filter, in standard errors of the leave-one-case-out estimate.
DEFAULT_NOISE_FACTOR = 2.0
#: Below these counts ``tune`` warns that the grid is large for the data (cases; scored GT lesions per region).
MIN_CASES = {"paper": 20, "wide": 100}
MIN_LESIONS_PER_REGION = 20


@dataclass(frozen=True)
class ThresholdGrid:
    """Candidate values per parameter; stored sorted ascending without duplicates."""

    wt: tuple[float, ...] = DEFAULT_WT_THRESHOLDS
    tc: tuple[float, ...] = DEFAULT_TC_THRESHOLDS
    et: tuple[float, ...] = DEFAULT_ET_THRESHOLDS
    min_slices: tuple[int, ...] = DEFAULT_MIN_SLICES

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

    def as_dict(self) -> dict[str, list]:
        return {"WT": list(self.wt), "TC": list(self.tc), "ET": list(self.et), "min_slices": list(self.min_slices)}


def named_grid(name: str) -> ThresholdGrid:
    """``paper`` (default of ``tune``: 8 x 7 x 7 area thresholds, min_slices 5, 392 candidates) or ``wide``
    (11 x 10 x 9 thresholds x 8 min_slices values, 7,920 candidates)."""
    if name == "paper":
        return ThresholdGrid(PAPER_WT_THRESHOLDS, PAPER_TC_THRESHOLDS, PAPER_ET_THRESHOLDS, PAPER_MIN_SLICES)
    if name == "wide":
        return ThresholdGrid()
    raise ValueError(f"unknown grid {name!r}: expected 'paper' or 'wide'")


@dataclass
class SearchResult:
    """Best grid point and the objective table (mean of WT, TC, ET mean lesion-wise Dice) over the grid."""

    best: FilterParameters
    best_objective: float
    objective: np.ndarray  # shape (len(min_slices), len(wt), len(tc), len(et))
    grid: ThresholdGrid = field(repr=False)


def pick_best(objective: np.ndarray, candidates: np.ndarray) -> tuple[int, float]:
    """Index and value of the first candidate whose objective is within TIE_TOLERANCE of the maximum."""
    flat = np.asarray(objective, dtype=np.float64).ravel()
    best_value = float(flat.max())
    index = int(np.flatnonzero(flat >= best_value - TIE_TOLERANCE)[0])
    return index, best_value


def _region_tables(scorer: CandidateScorer, grid: ThresholdGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-case lesion-wise Dice tables of WT ``(nm, na, 1, 1, n)``, TC ``(nm, na, nb, 1, n)`` and ET
    ``(nm, na, nb, nc, n)`` over the grid (WT and TC are scored on their own sub-grids, then broadcast)."""
    nm, na, nb, nc = len(grid.min_slices), len(grid.wt), len(grid.tc), len(grid.et)
    n = scorer.n_cases
    m_, a_ = np.meshgrid(grid.min_slices, grid.wt, indexing="ij")
    wt_cand = np.stack([a_.ravel(), np.zeros(a_.size), np.zeros(a_.size), m_.ravel()], axis=1)
    wt = scorer.region_case_scores("WT", wt_cand).reshape(nm, na, 1, 1, n)
    m3, a3, b3 = np.meshgrid(grid.min_slices, grid.wt, grid.tc, indexing="ij")
    tc_cand = np.stack([a3.ravel(), b3.ravel(), np.zeros(a3.size), m3.ravel()], axis=1)
    tc = scorer.region_case_scores("TC", tc_cand).reshape(nm, na, nb, 1, n)
    et = scorer.region_case_scores("ET", grid.candidates()).reshape(nm, na, nb, nc, n)
    return wt, tc, et


def grid_search(scorer: CandidateScorer, grid: ThresholdGrid) -> SearchResult:
    """The best grid point in sample: maximum of the objective, ties to the mildest (see module docstring)."""
    wt, tc, et = _region_tables(scorer, grid)
    objective = (wt.mean(axis=-1) + tc.mean(axis=-1) + et.mean(axis=-1)) / 3.0
    candidates = grid.candidates()
    index, value = pick_best(objective, candidates)
    a, b, c, m = candidates[index]
    return SearchResult(FilterParameters(a, b, c, int(m)), value, objective, grid)


def candidate_matrices(scorer: CandidateScorer, grid: ThresholdGrid) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(candidates, scores, removed)``: row 0 the identity (no filter), then the grid in its order.

    ``candidates`` ``(C, 4)`` rows ``(A_WT, A_TC, A_ET, min_slices)``; ``scores`` ``(C, n)`` the per-case objective
    (mean over WT, TC, ET of the case's lesion-wise Dice); ``removed`` ``(C, n)`` voxels changed per case.
    """
    wt, tc, et = _region_tables(scorer, grid)
    n = scorer.n_cases
    grid_scores = np.broadcast_to((wt + tc + et) / 3.0, et.shape).reshape(-1, n)
    identity = np.array(
        [IDENTITY.as_kwargs()[k] for k in ("wt_threshold", "tc_threshold", "et_threshold", "min_slices")],
        dtype=np.float64,
    )[None, :]
    identity_scores = np.mean([scorer.region_case_scores(r, identity) for r in REGION_NAMES], axis=0)
    candidates = np.concatenate([identity, grid.candidates()], axis=0)
    scores = np.concatenate([identity_scores, grid_scores], axis=0)
    removed = scorer.changed_voxels(candidates)
    removed[0] = 0.0  # the identity changes nothing (exactly: every component has area > 0 and >= 1 slice)
    return candidates, scores, removed


def summarise(
    cases: Sequence[CaseCache], params: FilterParameters | None
) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
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


def pair_cases(predictions: dict[str, Path], gt_folder: Path, pred_description: str) -> list[CasePair]:
    """Pair each prediction (name -> file) with ``gt_folder/NAME.nii.gz``; ValueError if any GT is missing."""
    from nnunet_tcup.io_utils import list_nifti_cases

    if not predictions:
        raise ValueError(f"{pred_description}: no prediction files (*.nii.gz) found")
    gt_folder = Path(gt_folder)
    gt_names = set(list_nifti_cases(gt_folder))
    missing = sorted(set(predictions) - gt_names)
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(
            f"{gt_folder}: no ground truth for {len(missing)} of {len(predictions)} predictions "
            f"in {pred_description} (case names must match): {shown}"
        )
    return [CasePair(n, Path(predictions[n]), gt_folder / f"{n}.nii.gz") for n in sorted(predictions)]


def pairs_from_folders(pred_folder: Path, gt_folder: Path) -> list[CasePair]:
    """Cases of a prediction folder paired with a GT folder (``NAME.nii.gz`` in both)."""
    from nnunet_tcup.io_utils import list_nifti_cases

    pred_folder = Path(pred_folder)
    if not Path(gt_folder).is_dir():
        raise ValueError(f"{gt_folder}: ground-truth folder not found")
    names = list_nifti_cases(pred_folder)
    return pair_cases({n: pred_folder / f"{n}.nii.gz" for n in names}, Path(gt_folder), str(pred_folder))


def cache_case_files(pair: CasePair, challenge: str) -> CaseCache:
    """Read a case pair (verified files, labels 0-3, same voxel grid; spacing from the prediction, as the
    evaluation) and build its cache; ValueError naming the file(s)."""
    from nnunet_tcup.io_utils import check_same_geometry, read_image_zyx

    pred, pred_geometry = read_image_zyx(pair.prediction, labels=True)
    gt, gt_geometry = read_image_zyx(pair.ground_truth, labels=True)
    check_same_geometry(gt_geometry, pred_geometry, pair.ground_truth, pair.prediction)
    try:
        return build_case_cache(gt, pred, pred_geometry.spacing_zyx, challenge=challenge, name=pair.name)
    except ValueError as e:
        raise ValueError(f"{e} (files {pair.prediction}, {pair.ground_truth})") from None


def build_caches(
    pairs: Sequence[CasePair], challenge: str, num_workers: int | None = 1, progress: bool = True
) -> list[CaseCache]:
    """Cache every case in ``num_workers`` processes (None: the package default; see nnunet_tcup.parallel)."""
    from functools import partial

    from nnunet_tcup.parallel import parallel_map

    return parallel_map(
        partial(cache_case_files, challenge=challenge),
        list(pairs),
        num_workers=num_workers,
        desc="caching cases",
        progress=progress,
        label=lambda pair: str(pair.prediction),
    )


def _params(row: np.ndarray) -> FilterParameters:
    a, b, c, m = (float(v) for v in row)
    return FilterParameters(a, b, c, int(m))


def data_warnings(caches: Sequence[CaseCache], grid: ThresholdGrid, grid_name: str) -> list[str]:
    """Warnings when the cases or GT lesions are few for the grid searched (the in-sample gain then over-states)."""
    warnings: list[str] = []
    n = len(caches)
    need = MIN_CASES.get(grid_name, MIN_CASES["paper"])
    if n < need:
        warnings.append(
            f"only {n} cases for {grid.size} candidates ({grid_name} grid; at least {need} advised): "
            f"in-sample gains over-state what unseen cases get, rely on the out-of-sample estimate"
        )
    for region in REGION_NAMES:
        lesions = sum(int(c.regions[region].lesion_scored.sum()) for c in caches)
        if lesions < MIN_LESIONS_PER_REGION:
            warnings.append(
                f"only {lesions} scored {region} lesions in the ground truth (at least "
                f"{MIN_LESIONS_PER_REGION} advised): the {region} threshold is poorly determined"
            )
    return warnings


def tune_caches(
    caches: Sequence[CaseCache],
    challenge: str,
    grid: ThresholdGrid,
    grid_name: str = "custom",
    noise_factor: float = DEFAULT_NOISE_FACTOR,
) -> dict:
    """Select a filter on cached cases, estimate its gain out of sample, decide whether to keep it.

    Returns the report written to postprocessing.json (without paths): ``kwargs`` is the filter to apply (the
    identity when none is kept), ``filter_kept`` and ``decision`` say why, ``out_of_sample`` holds the
    leave-one-case-out estimate (see :mod:`nnunet_tcup.postprocessing.selection`).
    """
    from nnunet_tcup.challenges import EVALUATION_PARAMETERS, check_challenge
    from nnunet_tcup.postprocessing.lesion_filter import preset_parameters
    from nnunet_tcup.postprocessing.selection import MIN_CASES_FOR_ESTIMATE, decide, leave_one_out, select

    challenge = check_challenge(challenge)
    if not math.isfinite(noise_factor) or noise_factor < 0:
        raise ValueError(f"--min-gain-se (noise factor) must be a finite number >= 0, got {noise_factor}")
    candidates, scores, removed = candidate_matrices(CandidateScorer(caches), grid)
    chosen = select(scores, removed)
    best = pick_best(scores.mean(axis=1), candidates)[0]
    estimate = leave_one_out(scores, removed) if len(caches) >= MIN_CASES_FOR_ESTIMATE else None
    in_sample_gain = float(scores[chosen].mean() - scores[0].mean())
    decision = decide(chosen, in_sample_gain, estimate, noise_factor)
    selected = _params(candidates[chosen])
    final = selected if decision.kept else IDENTITY
    before, per_case_before = summarise(caches, None)
    after, per_case_after = summarise(caches, final)
    selected_means, _ = summarise(caches, selected)
    preset = preset_parameters(challenge)
    preset_means, _ = summarise(caches, preset)
    names = [c.name for c in caches]
    out_of_sample = None
    if estimate is not None:
        out_of_sample = {
            "method": "leave-one-case-out: select on the other cases, score the left-out case",
            "gain_mean": estimate.mean,
            "gain_se": estimate.se,
            "per_case_gain": dict(zip(names, estimate.gains.tolist())),
            "per_case_choice": {name: _params(candidates[j]).as_kwargs() for name, j in zip(names, estimate.chosen)},
        }
    ev = EVALUATION_PARAMETERS[challenge]
    return {
        "challenge": challenge,
        "evaluation_parameters": {
            "dilation_iterations": ev.dilation_iterations,
            "volume_threshold_mm3": ev.volume_threshold_mm3,
        },
        "objective": "mean over WT, TC, ET of the mean over cases of LesionWise_Score_Dice",
        "kwargs": final.as_kwargs(),
        "filter_kept": decision.kept,
        "decision": decision.reason,
        "rule": {
            "selection": "among candidates within one paired standard error of the best in-sample mean, "
            "the one changing the fewest voxels (no filter included)",
            "keep": f"out-of-sample gain > 0 and > {noise_factor:g} standard errors",
            "noise_factor": noise_factor,
        },
        "selected": {
            "kwargs": selected.as_kwargs(),
            "lesionwise_dice": selected_means,
            "voxels_changed": float(removed[chosen].sum()),
        },
        "in_sample_best": {
            "kwargs": _params(candidates[best]).as_kwargs(),
            "gain": float(scores[best].mean() - scores[0].mean()),
        },
        "in_sample_gain": in_sample_gain,
        "out_of_sample": out_of_sample,
        "warnings": data_warnings(caches, grid, grid_name),
        "n_cases": len(caches),
        "grid_name": grid_name,
        "grid": grid.as_dict(),
        "n_candidates": grid.size,
        "lesionwise_dice_before": before,
        "lesionwise_dice_after": after,
        "paper_preset": {"kwargs": preset.as_kwargs(), "lesionwise_dice": preset_means},
        "per_case": {
            name: {"before": per_case_before[name], "after": per_case_after[name]} for name in per_case_before
        },
    }


def tune(
    pairs: Sequence[CasePair],
    challenge: str,
    grid: ThresholdGrid | None = None,
    grid_name: str = "paper",
    num_workers: int | None = 1,
    progress: bool = True,
    noise_factor: float = DEFAULT_NOISE_FACTOR,
) -> dict:
    """Read and cache the case pairs (``num_workers`` None: the package default), then :func:`tune_caches`
    (``grid`` None: the named grid)."""
    from nnunet_tcup.challenges import check_challenge

    challenge = check_challenge(challenge)
    grid = named_grid(grid_name) if grid is None else grid
    caches = build_caches(pairs, challenge, num_workers, progress)
    if progress:
        print(f"scoring {grid.size} candidates on {len(caches)} cases", flush=True)
    return tune_caches(caches, challenge, grid, grid_name, noise_factor)
