"""Figure of per-case lesion-wise Dice and HD95 per region (box plots with the cases as jittered points)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Union

import numpy as np
import pandas as pd

from nnunet_tcup.evaluation.lesionwise import MISSED_LESION_HD95, REGION_NAMES
from nnunet_tcup.io_utils import atomic_output

if TYPE_CHECKING:
    from matplotlib.figure import Figure

__all__ = ["REGION_COLOURS", "close_figure", "lesionwise_figure", "plot_lesionwise"]

PathLike = Union[str, "os.PathLike[str]"]

#: Region colours (WT, TC, ET): the usual BraTS overlay colours, darkened to read well on white.
REGION_COLOURS = {"WT": "#2e8b57", "TC": "#d4a017", "ET": "#c0392b"}


def plot_lesionwise(table: pd.DataFrame, path: PathLike, title: str | None = None, seed: int = 0) -> Path:
    """Save :func:`lesionwise_figure` of ``table`` as a PNG (written atomically); returns ``path``."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"{path}: the figure is written as PNG; give a path ending in .png")
    fig = lesionwise_figure(table, title, seed)
    try:
        with atomic_output(path) as tmp:
            fig.savefig(tmp, dpi=150, format="png")
    finally:
        close_figure(fig)
    return path


def close_figure(fig: Figure) -> None:
    """Release a figure made by :func:`lesionwise_figure`."""
    import matplotlib.pyplot as plt

    plt.close(fig)


def lesionwise_figure(table: pd.DataFrame, title: str | None = None, seed: int = 0) -> Figure:
    """Figure with two panels, lesion-wise Dice and lesion-wise HD95 (mm), each with one box per region (WT, TC,
    ET) over the cases of ``table`` (the results table of ``evaluate_folders``), every case drawn as a jittered
    point and the median written above its box. Close it with :func:`close_figure`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    missing = [c for c in ("case", "Labels", "LesionWise_Score_Dice", "LesionWise_Score_HD95") if c not in table]
    if missing:
        raise ValueError(f"results table lacks column(s) {', '.join(missing)}")
    rng = np.random.default_rng(seed)
    n_cases = table["case"].nunique()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), constrained_layout=True)
    panels = (
        ("LesionWise_Score_Dice", "Lesion-wise Dice", (-0.03, 1.1)),
        ("LesionWise_Score_HD95", "Lesion-wise HD95 (mm)", None),
    )
    for ax, (column, label, ylim) in zip(axes, panels):
        data = [table.loc[table["Labels"] == r, column].astype(float).to_numpy() for r in REGION_NAMES]
        boxes = ax.boxplot(
            data, widths=0.55, patch_artist=True, showfliers=False, medianprops={"color": "black", "linewidth": 1.6}
        )
        ax.set_xticks(range(1, len(REGION_NAMES) + 1), REGION_NAMES)
        for i, (region, values, patch) in enumerate(zip(REGION_NAMES, data, boxes["boxes"]), start=1):
            patch.set_facecolor(REGION_COLOURS[region])
            patch.set_alpha(0.35)
            jitter = rng.uniform(-0.17, 0.17, values.size)
            ax.scatter(
                i + jitter,
                values,
                s=16,
                color=REGION_COLOURS[region],
                edgecolor="black",
                linewidth=0.4,
                alpha=0.85,
                zorder=3,
            )
            if values.size:
                ax.annotate(
                    f"median {np.median(values):.3g}",
                    (i, 1.0),
                    xycoords=("data", "axes fraction"),
                    xytext=(0, -12),
                    textcoords="offset points",
                    ha="center",
                    fontsize=8.5,
                )
        if ylim is None:
            top = max([v.max() for v in data if v.size] + [1.0])
            ylim = (-0.03 * top, top * 1.13)
            if top >= MISSED_LESION_HD95:
                ax.axhline(MISSED_LESION_HD95, color="grey", linestyle=":", linewidth=1)
                ax.text(
                    0.52, MISSED_LESION_HD95, "374 = missed / FP", ha="left", va="bottom", fontsize=7.5, color="grey"
                )
        ax.set_ylim(*ylim)
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title or f"BraTS 2023 lesion-wise metrics per case (n = {n_cases})", fontsize=12)
    return fig
