"""Reading the demo's ``evaluate`` results CSVs (one row per case and region, column ``Labels`` = WT/TC/ET):
per-region means and per-case values. Shared by the report and the post-processing check (no import cycle)."""

from __future__ import annotations

from pathlib import Path

from nnunet_tcup.challenges import REGIONS

__all__ = ["METRICS", "per_case_values", "region_means"]

#: (column of the results CSV, label in tables and figures), in the order the report shows them.
METRICS = (
    ("LesionWise_Score_Dice", "lesion-wise Dice"),
    ("LesionWise_Score_HD95", "lesion-wise HD95 (mm)"),
    ("Legacy_Dice", "legacy Dice"),
)


def region_means(csv_path: Path) -> dict[str, dict[str, float]]:
    """Mean over cases of each metric in :data:`METRICS`, per region, from an ``evaluate`` results CSV
    (one row per case and region, column ``Labels`` = WT/TC/ET)."""
    import pandas as pd

    table = pd.read_csv(csv_path)
    missing = [c for c in ("Labels", *(m for m, _ in METRICS)) if c not in table.columns]
    if missing:
        raise ValueError(f"{csv_path}: missing columns {missing} (not an nnunet_tcup evaluate results file?)")
    out: dict[str, dict[str, float]] = {}
    for region in REGIONS:
        rows = table[table["Labels"] == region]
        out[region] = {metric: float(rows[metric].mean()) if len(rows) else float("nan") for metric, _ in METRICS}
    return out


def per_case_values(csv_path: Path, region: str, metric: str) -> dict[str, float]:
    """``case -> value`` of one metric for one region from an ``evaluate`` results CSV."""
    import pandas as pd

    table = pd.read_csv(csv_path)
    rows = table[table["Labels"] == region]
    return {str(c): float(v) for c, v in zip(rows["case"], rows[metric])}
