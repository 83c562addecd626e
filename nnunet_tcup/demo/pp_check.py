"""The demo's post-processing check: was the tuned filter kept, what did cross-validation estimate, and did the
held-out cases get better or worse? The report's first table, also printed at the end of the run.

Inputs are the ``postprocessing.json`` that ``nnunet_tcup postprocess tune`` wrote (keys ``kwargs``,
``filter_kept``, ``decision``, ``selected``, ``in_sample_gain``, ``out_of_sample``) and the ``evaluate`` CSVs of
the held-out cases before and after post-processing. The score compared is the mean over WT, TC, ET of the mean
over held-out cases of the lesion-wise Dice (the tuning objective).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from nnunet_tcup.challenges import REGIONS
from nnunet_tcup.demo.results import region_means
from nnunet_tcup.demo.steps import DemoPaths, ModelRun

__all__ = ["PostprocessingCheck", "check_postprocessing", "checks_headline", "checks_table", "read_postprocessing_json"]

DICE = "LesionWise_Score_Dice"
#: Held-out changes smaller than this (mean lesion-wise Dice) count as unchanged (float noise of the means).
UNCHANGED_TOLERANCE = 1e-9


@dataclass(frozen=True)
class PostprocessingCheck:
    """One model's post-processing outcome; Dice values are means over held-out cases per region and overall."""

    model: ModelRun
    tuning: dict | None  # postprocessing.json, None if missing or unreadable
    before: dict[str, float] | None  # held-out lesion-wise Dice per region + "mean", before
    after: dict[str, float] | None  # ... after post-processing

    @property
    def change(self) -> float | None:
        if self.before is None or self.after is None:
            return None
        return self.after["mean"] - self.before["mean"]

    @property
    def worse(self) -> bool:
        return self.change is not None and self.change < -UNCHANGED_TOLERANCE

    def worse_regions(self) -> list[str]:
        if self.before is None or self.after is None:
            return []
        return [r for r in REGIONS if self.after[r] < self.before[r] - UNCHANGED_TOLERANCE]


def read_postprocessing_json(path: Path) -> dict | None:
    """The tuning report, or None when the file is missing or not valid JSON."""
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _dice_means(csv_path: Path) -> dict[str, float] | None:
    if not Path(csv_path).is_file():
        return None
    means = {r: values[DICE] for r, values in region_means(csv_path).items()}
    means["mean"] = sum(means[r] for r in REGIONS) / len(REGIONS)
    return means


def check_postprocessing(paths: DemoPaths, model: ModelRun) -> PostprocessingCheck:
    """Gather the tuning report and the held-out scores before/after post-processing of ``model``."""
    return PostprocessingCheck(
        model,
        read_postprocessing_json(paths.crossval_folder(model) / "postprocessing.json"),
        _dice_means(paths.metrics_csv(model, False)),
        _dice_means(paths.metrics_csv(model, True)),
    )


def _filter_text(kwargs: dict | None) -> str:
    if not isinstance(kwargs, dict):
        return "n/a"
    if (
        all(float(kwargs.get(k) or 0) == 0 for k in ("wt_threshold", "tc_threshold", "et_threshold"))
        and int(kwargs.get("min_slices") or 1) <= 1
    ):
        return "no filter"
    return (
        f"WT > {kwargs.get('wt_threshold'):g}, TC > {kwargs.get('tc_threshold'):g}, ET > "
        f"{kwargs.get('et_threshold'):g} voxels/slice, >= {kwargs.get('min_slices')} slices"
    )


def _kept_text(tuning: dict | None) -> str:
    if tuning is None:
        return "n/a (not tuned)"
    if "filter_kept" not in tuning:
        return "yes (tuned without an out-of-sample check)"
    return "yes" if tuning["filter_kept"] else "no: identity written"


def _cv_text(tuning: dict | None) -> tuple[str, str]:
    """(in-sample gain, out-of-sample gain +/- SE) on the cross-validation cases."""
    if tuning is None:
        return "n/a", "n/a"
    gain = tuning.get("in_sample_gain")
    oos = tuning.get("out_of_sample")
    in_text = f"{gain:+.3f}" if isinstance(gain, (int, float)) else "n/a"
    if isinstance(oos, dict) and "gain_mean" in oos:
        return in_text, f"{oos['gain_mean']:+.3f} ± {oos['gain_se']:.3f} ({tuning.get('n_cases', '?')} cases)"
    return in_text, "not estimated"


def _heldout_text(check: PostprocessingCheck) -> tuple[str, str]:
    """(before -> after, verdict) for the held-out cases."""
    if check.before is None or check.after is None:
        return "n/a", "n/a"
    change = check.after["mean"] - check.before["mean"]
    arrow = f"{check.before['mean']:.3f} -> {check.after['mean']:.3f}"
    if check.worse:
        detail = ", ".join(f"{r} {check.before[r]:.3f} -> {check.after[r]:.3f}" for r in check.worse_regions())
        return arrow, f"**WORSE** ({change:+.3f}{'; ' + detail if detail else ''})"
    if change > UNCHANGED_TOLERANCE:
        return arrow, f"better ({change:+.3f})"
    return arrow, "unchanged"


def checks_table(checks: list[PostprocessingCheck]) -> str:
    """Markdown table, one row per model: the tuned filter, whether it was kept, its cross-validation gains (in
    sample, and leave-one-case-out with its standard error) and the held-out before -> after with a verdict."""
    lines = [
        "| model | filter selected on cross-validation | kept | CV gain in-sample | CV gain out-of-sample | "
        "held-out lesion-wise Dice, mean of WT/TC/ET: before -> after | held-out verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    for check in checks:
        tuning = check.tuning
        selected = (tuning.get("selected") or {}).get("kwargs", tuning.get("kwargs")) if tuning else None
        in_text, out_text = _cv_text(tuning)
        arrow, verdict = _heldout_text(check)
        lines.append(
            f"| {check.model.label} | {_filter_text(selected)} | {_kept_text(tuning)} | {in_text} | "
            f"{out_text} | {arrow} | {verdict} |"
        )
    return "\n".join(lines)


def checks_headline(checks: list[PostprocessingCheck]) -> str:
    """One sentence above the table; says loudly when post-processing made the held-out cases worse."""
    worse = [c for c in checks if c.worse]
    if worse:
        names = ", ".join(c.model.label for c in worse)
        raw = ", ".join(f"`predictions/{c.model.key}/raw`" for c in worse)
        return (
            f"**Warning: post-processing made the held-out cases worse for {names}.** Use the predictions "
            f"before post-processing ({raw}) or keep the filter off for such a model."
        )
    return (
        "Post-processing did not make the held-out cases worse. A filter is applied only when its "
        "leave-one-case-out gain on the cross-validation cases is positive beyond noise (`postprocess tune`)."
    )
