"""Choosing a filter that generalises: the one-standard-error rule, a leave-one-case-out estimate, the keep rule.

Inputs are two ``(C, n)`` matrices over ``C`` candidates and ``n`` cases, row 0 being the identity (no filter):

- ``scores[c, i]``: the tuning objective of case ``i`` under candidate ``c`` (mean over WT, TC, ET of the case's
  lesion-wise Dice);
- ``removed[c, i]``: voxels the candidate changes in case ``i`` (its aggressiveness; 0 for the identity).

**Selection** (:func:`select`): the best candidate by mean score, then, among the candidates whose mean is within
one paired standard error of the best (the standard error over cases of the per-case difference to the best), the
one that changes the fewest voxels; ties go to the lower row (the grid's order, mildest first). The identity takes
part, so a filter whose in-sample gain is within noise is never selected.

**Out-of-sample estimate** (:func:`leave_one_out`): for each case, select on the other cases and score the left-out
case; its gain is its score under that choice minus its score without a filter. The estimate is the mean gain with
its standard error over cases.

**Keep rule** (:func:`decide`): the selected filter is kept only if the mean out-of-sample gain is positive and
larger than ``noise_factor`` standard errors; otherwise the identity is written.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["TIE_TOLERANCE", "Decision", "OutOfSample", "decide", "leave_one_out", "paired_se", "select"]

TIE_TOLERANCE = 1e-12
MIN_CASES_FOR_ESTIMATE = 3


def paired_se(differences: np.ndarray, axis: int = -1) -> np.ndarray:
    """Standard error of the mean of ``differences`` along ``axis`` (sample std, ddof 1); 0 with fewer than 2."""
    d = np.asarray(differences, dtype=np.float64)
    if d.shape[axis] < 2:
        return np.zeros_like(d.sum(axis=axis))
    return d.std(axis=axis, ddof=1) / np.sqrt(d.shape[axis])


def _check(scores: np.ndarray, removed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    scores = np.asarray(scores, dtype=np.float64)
    removed = np.asarray(removed, dtype=np.float64)
    if scores.ndim != 2 or scores.shape != removed.shape or scores.shape[0] < 1 or scores.shape[1] < 1:
        raise ValueError(
            f"scores and removed must be equal (candidates, cases) matrices, got {scores.shape} and {removed.shape}"
        )
    return scores, removed


def _first_max(values: np.ndarray) -> int:
    return int(np.flatnonzero(values >= values.max() - TIE_TOLERANCE)[0])


def _least_aggressive(within: np.ndarray, removed_total: np.ndarray) -> int:
    """Lowest row among ``within`` with the fewest removed voxels."""
    masked = np.where(within, removed_total, np.inf)
    return int(np.flatnonzero(masked <= masked.min())[0])


def select(scores: np.ndarray, removed: np.ndarray) -> int:
    """Row chosen by the one-standard-error rule on all cases (see module docstring)."""
    scores, removed = _check(scores, removed)
    mean = scores.mean(axis=1)
    best = _first_max(mean)
    se = paired_se(scores - scores[best], axis=1)
    within = mean >= mean[best] - se - TIE_TOLERANCE
    return _least_aggressive(within, removed.sum(axis=1))


@dataclass(frozen=True)
class OutOfSample:
    """Leave-one-case-out result: per case the row chosen without it and its gain over the identity."""

    chosen: np.ndarray  # (n,) int: row selected on the other cases
    gains: np.ndarray  # (n,) float: score of the case under that row minus its unfiltered score

    @property
    def mean(self) -> float:
        return float(self.gains.mean())

    @property
    def se(self) -> float:
        return float(paired_se(self.gains))


def leave_one_out(scores: np.ndarray, removed: np.ndarray) -> OutOfSample:
    """For each case ``i``: :func:`select` on the other cases, and the gain of that choice on case ``i``.

    Exactly :func:`select` on ``np.delete(scores, i, axis=1)``, computed from running sums (cost O(C n) plus
    O(C n) per distinct best row) so that thousands of candidates and cases stay fast.
    """
    scores, removed = _check(scores, removed)
    c, n = scores.shape
    if n < 2:
        raise ValueError("a leave-one-case-out estimate needs at least 2 cases")
    m = n - 1
    total, removed_total = scores.sum(axis=1), removed.sum(axis=1)
    best = np.array([_first_max((total - scores[:, i]) / m) for i in range(n)])
    chosen = np.zeros(n, dtype=np.int64)
    for b in np.unique(best):
        diff = scores - scores[b]
        s1, s2 = diff.sum(axis=1), np.square(diff).sum(axis=1)
        for i in np.flatnonzero(best == b):
            mu = (s1 - diff[:, i]) / m
            if m >= 2:
                var = np.maximum((s2 - diff[:, i] ** 2 - m * mu**2) / (m - 1), 0.0)
                se = np.sqrt(var / m)
            else:
                se = np.zeros(c)
            within = mu >= -se - TIE_TOLERANCE
            within[b] = True
            chosen[i] = _least_aggressive(within, removed_total - removed[:, i])
    gains = scores[chosen, np.arange(n)] - scores[0]
    return OutOfSample(chosen=chosen, gains=gains)


@dataclass(frozen=True)
class Decision:
    """Whether the selected filter is written, and why (one sentence)."""

    kept: bool
    reason: str


def decide(selected: int, in_sample_gain: float, estimate: OutOfSample | None, noise_factor: float) -> Decision:
    """The keep rule: a non-identity selection whose out-of-sample mean gain exceeds ``noise_factor`` standard
    errors (and 0). ``estimate`` None means too few cases for one."""
    if selected == 0:
        return Decision(
            False, "no candidate beats 'no filter' by more than one paired standard error on the cross-validation cases"
        )
    if estimate is None:
        return Decision(
            False, f"fewer than {MIN_CASES_FOR_ESTIMATE} cases: no out-of-sample estimate, so no filter is applied"
        )
    mean, se = estimate.mean, estimate.se
    if mean > 0 and mean > noise_factor * se:
        return Decision(
            True,
            f"out-of-sample gain {mean:+.4f} exceeds {noise_factor:g} standard error(s) "
            f"({se:.4f}); in-sample gain {in_sample_gain:+.4f}",
        )
    return Decision(
        False,
        f"out-of-sample gain {mean:+.4f} is not above {noise_factor:g} standard error(s) "
        f"({se:.4f}) although the in-sample gain is {in_sample_gain:+.4f}: the filter would "
        f"likely not help unseen cases",
    )
