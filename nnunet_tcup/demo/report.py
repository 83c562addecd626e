"""The demo's report folder: summary tables, overlays of held-out cases, training-progress plots, report.md.

Overlays show one axial slice (the one with the largest whole-tumour area in the ground truth) of the four
modalities, the ground truth and the prediction, in nnU-Net / SimpleITK array order ``(z, y, x)``: z is the slice
axis, each slice is drawn with y as rows and x as columns.
"""

from __future__ import annotations

import os
import platform
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np

from nnunet_tcup.challenges import LABEL_NAMES, MODALITIES, REGIONS
from nnunet_tcup.demo.pipeline import StepRecord, format_bytes, format_seconds
from nnunet_tcup.demo.pp_check import check_postprocessing, checks_headline, checks_table
from nnunet_tcup.demo.results import METRICS, per_case_values, region_means
from nnunet_tcup.demo.steps import DemoPaths, ModelRun
from nnunet_tcup.io_utils import atomic_output, read_array_zyx

#: Label colours (RGB, 0-1) in overlays: NETC red, SNFH green, ET yellow.
LABEL_COLOURS: dict[int, tuple[float, float, float]] = {
    1: (0.89, 0.10, 0.11),
    2: (0.30, 0.69, 0.29),
    3: (1.00, 0.85, 0.18),
}


# ------------------------------------------------------------------------------------------------------- tables
def _fmt(value: float, metric: str) -> str:
    if value != value:  # NaN
        return "n/a"
    return f"{value:.1f}" if "HD95" in metric else f"{value:.3f}"


def results_table(rows: Sequence[tuple[str, dict[str, dict[str, float]]]]) -> str:
    """Markdown table: one row per (model, stage), columns metric x region."""
    header = ["model"] + [f"{label} {region}" for metric, label in METRICS[:2] for region in REGIONS]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for name, means in rows:
        cells = [name] + [_fmt(means[region][metric], metric) for metric, _ in METRICS[:2] for region in REGIONS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------------- overlays
def tumour_slice(label_zyx: np.ndarray) -> int:
    """Index along z of the slice with the largest whole-tumour area (labels > 0); the middle slice if empty."""
    areas = (label_zyx > 0).reshape(label_zyx.shape[0], -1).sum(axis=1)
    return int(np.argmax(areas)) if areas.max() > 0 else label_zyx.shape[0] // 2


def label_rgba(label_2d: np.ndarray, alpha: float = 0.55) -> np.ndarray:
    """RGBA image of a 2023 label slice (transparent background) for drawing over a grey image."""
    rgba = np.zeros(label_2d.shape + (4,), dtype=np.float32)
    for value, colour in LABEL_COLOURS.items():
        mask = label_2d == value
        rgba[mask, :3] = colour
        rgba[mask, 3] = alpha
    return rgba


def normalise_intensities(image: np.ndarray) -> np.ndarray:
    """Grey levels in [0, 1] between the 1st and 99.5th percentile of the non-zero (brain) voxels."""
    values = image[image != 0]
    if values.size == 0:
        return np.zeros_like(image, dtype=np.float32)
    lo, hi = np.percentile(values, [1.0, 99.5])
    return np.clip((image.astype(np.float32) - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _crop_box(mask_2d: np.ndarray, margin: int = 4) -> tuple[slice, slice]:
    ys, xs = np.nonzero(mask_2d)
    if ys.size == 0:
        return slice(None), slice(None)
    return (
        slice(max(ys.min() - margin, 0), ys.max() + margin + 1),
        slice(max(xs.min() - margin, 0), xs.max() + margin + 1),
    )


def draw_overlay(
    case: str, images: Sequence[np.ndarray], gt: np.ndarray, pred: np.ndarray, out_png: Path, caption: str = ""
) -> int:
    """One row: the four modalities, the ground truth and the prediction over T1c, at the slice with the largest
    GT tumour area. Arrays are ``(z, y, x)``; returns the slice index drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    if len(images) != len(MODALITIES):
        raise ValueError(f"{case}: expected {len(MODALITIES)} modalities, got {len(images)}")
    for name, arr in (("ground truth", gt), ("prediction", pred), *zip(MODALITIES, images)):
        if arr.shape != gt.shape:
            raise ValueError(f"{case}: {name} has shape {arr.shape}, ground truth {gt.shape}")
    z = tumour_slice(gt)
    box = _crop_box(np.any([im[z] != 0 for im in images], axis=0))
    greys = [normalise_intensities(im)[z][box] for im in images]
    background = greys[MODALITIES.index("t1c")]
    panels = [(m.upper(), g, None) for m, g in zip(MODALITIES, greys)]
    panels += [("ground truth", background, gt[z][box]), ("prediction", background, pred[z][box])]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels), 3.0))
    for ax, (title, grey, label) in zip(axes, panels):
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if label is not None:
            ax.imshow(label_rgba(label), interpolation="nearest")
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    handles = [Patch(color=c, label=LABEL_NAMES[v]) for v, c in LABEL_COLOURS.items()]
    fig.legend(handles=handles, loc="lower right", ncol=3, fontsize=8, frameon=False)
    fig.suptitle(f"{case}, slice z={z}" + (f" - {caption}" if caption else ""), fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 0.95))
    with atomic_output(out_png) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return z


def draw_case_overlays(paths: DemoPaths, model: ModelRun, out_dir: Path, max_cases: int = 3) -> list[Path]:
    """Overlays of the first ``max_cases`` held-out cases with ``model``'s post-processed predictions."""
    gt_dir = paths.heldout_labels
    pred_dir = paths.predictions(model, postprocessed=True)
    cases = sorted(p.name[: -len(".nii.gz")] for p in gt_dir.glob("*.nii.gz"))[:max_cases]
    dice = {}
    metrics_csv = paths.metrics_csv(model, postprocessed=True)
    if metrics_csv.is_file():
        dice = per_case_values(metrics_csv, "WT", "LesionWise_Score_Dice")
    written = []
    for case in cases:
        images = [read_array_zyx(paths.images_test / f"{case}_{i:04d}.nii.gz")[0] for i in range(len(MODALITIES))]
        gt = read_array_zyx(gt_dir / f"{case}.nii.gz")[0]
        pred = read_array_zyx(pred_dir / f"{case}.nii.gz")[0]
        caption = f"{model.label}, WT lesion-wise Dice {dice[case]:.2f}" if case in dice else model.label
        out_png = out_dir / f"overlay_{model.key}_{case}.png"
        draw_overlay(case, images, gt, pred, out_png, caption)
        written.append(out_png)
    return written


def copy_progress_plots(paths: DemoPaths, model: ModelRun, out_dir: Path) -> list[Path]:
    """Copy nnU-Net's ``progress.png`` of each fold (losses, pseudo Dice, learning rate, epoch times)."""
    written = []
    for fold in paths.settings.folds:
        source = paths.fold_folder(model, fold) / "progress.png"
        if source.is_file():
            target = out_dir / f"progress_{model.key}_fold{fold}.png"
            with atomic_output(target) as tmp:
                shutil.copyfile(source, tmp)
            written.append(target)
    return written


# ------------------------------------------------------------------------------------------------------- report
@dataclass
class ReportInputs:
    """What the report states besides what it reads from the work dir."""

    paths: DemoPaths
    models: Sequence[ModelRun]
    device: str
    records: Sequence[StepRecord]
    run_seconds: float
    commands_env: dict[str, str] = field(default_factory=dict)
    overlay_cases: int = 3


def postprocessing_summary(model: ModelRun, pp: dict) -> str:
    """One paragraph on the tuned lesion filter from its postprocessing.json (thresholds, CV Dice)."""
    kw = pp.get("selected", {}).get("kwargs", pp.get("kwargs", {}))
    text = (
        f"Post-processing of {model.label}, selected on the cross-validation predictions"
        f"{' (' + str(pp['n_cases']) + ' cases)' if 'n_cases' in pp else ''}: keep components with more than "
        f"{kw.get('wt_threshold')} (WT), {kw.get('tc_threshold')} (TC), {kw.get('et_threshold')} (ET) voxels "
        f"per slice spanning at least {kw.get('min_slices')} slice(s)"
    )
    if (
        all(float(kw.get(k) or 0) == 0 for k in ("wt_threshold", "tc_threshold", "et_threshold"))
        and int(kw.get("min_slices") or 0) <= 1
    ):
        text += ", i.e. the best filter on these predictions removes nothing"
    text += "."
    if "filter_kept" in pp:
        text += (
            " It was "
            + ("kept" if pp["filter_kept"] else "not kept (an identity post-processing was written)")
            + f": {pp.get('decision', '')}."
        )
    before, after = (
        pp.get("lesionwise_dice_before"),
        pp.get("selected", {}).get("lesionwise_dice", pp.get("lesionwise_dice_after")),
    )
    if isinstance(before, dict) and isinstance(after, dict):
        regions = [r for r in REGIONS if r in before and r in after]
        text += (
            " Cross-validation lesion-wise Dice "
            + "/".join(regions)
            + " (in sample): no filter "
            + "/".join(f"{before[r]:.3f}" for r in regions)
            + ", selected filter "
            + "/".join(f"{after[r]:.3f}" for r in regions)
        )
        preset = pp.get("paper_preset", {}).get("lesionwise_dice")
        if isinstance(preset, dict) and all(r in preset for r in regions):
            text += " (paper preset: " + "/".join(f"{preset[r]:.3f}" for r in regions) + ")"
        text += "."
    warnings = pp.get("warnings")
    if isinstance(warnings, list) and warnings:
        text += " Tuning warnings: " + "; ".join(str(w) for w in warnings) + "."
    return text


def collect_results(paths: DemoPaths, models: Sequence[ModelRun]) -> list[tuple[str, dict[str, dict[str, float]]]]:
    """(row name, region means) for every model before and after post-processing, from the metrics CSVs."""
    rows = []
    for model in models:
        for postprocessed in (False, True):
            csv = paths.metrics_csv(model, postprocessed)
            if csv.is_file():
                stage = "after post-processing" if postprocessed else "before post-processing"
                rows.append((f"{model.label}, {stage}", region_means(csv)))
    return rows


def _rel(path: Path, start: Path) -> str:
    """``path`` relative to ``start`` (links in report.md keep working when the work dir is moved)."""
    return os.path.relpath(Path(path).resolve(), Path(start).resolve())


def write_report(inputs: ReportInputs) -> Path:
    """Draw overlays, copy progress plots and write ``report.md`` into the report folder; return its path."""
    paths = inputs.paths
    s = paths.settings
    out = paths.report_dir
    out.mkdir(parents=True, exist_ok=True)
    results = collect_results(paths, inputs.models)
    checks = [check_postprocessing(paths, m) for m in inputs.models]
    md: list[str] = [
        "# nnunet_tcup demo report",
        "",
        f"Generated {datetime.now().isoformat(timespec='seconds')} on {platform.node()} "
        f"({platform.platform()}), device `{inputs.device}`.",
        "",
        f"Settings: {s.describe()}. Dataset `{s.dataset_name}`, configuration `{s.configuration}`, "
        f"plans `{s.plans}`, seed {s.seed}.",
        "",
        "## Post-processing check",
        "",
        checks_headline(checks),
        "",
        checks_table(checks),
        "",
        "## Held-out results",
        "",
        f"Mean over the {s.test_cases} held-out cases of the BraTS 2023 lesion-wise scores (challenge "
        f"{s.challenge}); predictions of the ensemble of folds {' '.join(map(str, s.folds))}.",
        "",
        results_table(results) if results else "(no metrics found)",
        "",
    ]
    for check in checks:
        if check.tuning is not None:
            md += [postprocessing_summary(check.model, check.tuning), ""]
    if s.shape is not None and min(s.shape) < 155:
        md += [
            f"The paper's thresholds count voxels of full-size 1 mm scans (240x240x155); the demo maps that field "
            f"of view onto {'x'.join(map(str, s.shape))} voxels, so tumours are much smaller here and the paper "
            f"preset removes most of them. The tuned thresholds adapt to the data.",
            "",
        ]
    tables = [
        (paths.metrics_csv(m, p), f"{m.key} {'after' if p else 'before'} post-processing")
        for m in inputs.models
        for p in (False, True)
        if paths.metrics_csv(m, p).is_file()
    ]
    md += [
        "Per case and region (official CSV columns): "
        + ", ".join(f"[{name}]({_rel(csv, out)})" for csv, name in tables)
        + ". Summaries (mean, std, median, quartiles): "
        + ", ".join(
            f"[{name}]({_rel(csv.with_name(csv.stem + '_summary.csv'), out)})"
            for csv, name in tables
            if csv.with_name(csv.stem + "_summary.csv").is_file()
        )
        + ".",
        "",
    ]
    reviews = [(m, paths.review_dir(m) / "review.html") for m in inputs.models]
    reviews = [(m, page) for m, page in reviews if page.is_file()]
    if reviews:
        md += ["## Human review", ""]
        md += [
            f"[{m.label}: held-out cases ranked by fold disagreement]({_rel(page, out)}) "
            f"([ranked CSV]({_rel(page.with_name('review.csv'), out)}), uncertainty maps, montages and a "
            "Zooniverse export beside it)."
            for m, page in reviews
        ]
        md += [""]
    md += ["## Figures", ""]
    for model in inputs.models:
        for postprocessed in (False, True):
            plot = paths.metrics_plot(model, postprocessed)
            if plot.is_file():
                stage = "after" if postprocessed else "before"
                md += [
                    f"Dice / HD95 distributions, {model.label}, {stage} post-processing:",
                    "",
                    f"![{model.key} {stage}]({_rel(plot, out)})",
                    "",
                ]
    md += [
        "### Held-out cases",
        "",
        "Axial slice with the largest tumour area: T1n, T1c, T2w, T2-FLAIR, ground truth and post-processed "
        "prediction over T1c (red NETC, green SNFH, yellow ET).",
        "",
    ]
    for model in inputs.models:
        for png in draw_case_overlays(paths, model, out / "overlays", inputs.overlay_cases):
            md += [f"![{png.stem}]({_rel(png, out)})", ""]
    md += [
        "### Training progress",
        "",
        "nnU-Net's progress plots of each fold (losses, including the discriminator's for TCuP-GAN; pseudo "
        "Dice; learning rate; epoch duration).",
        "",
    ]
    for model in inputs.models:
        for png in copy_progress_plots(paths, model, out / "progress"):
            md += [f"![{png.stem}]({_rel(png, out)})", ""]
    md += [
        "## Steps",
        "",
        "Wall time, CPU time (user + system, all processes of the step) and peak memory (largest "
        "resident set of the step's processes, from getrusage) of each step.",
        "",
        "| step | what | wall time | CPU time | peak memory | log |",
        "|---|---|---|---|---|---|",
    ]
    for r in inputs.records:
        md.append(
            f"| {r.name} | {r.title} | {format_seconds(r.seconds)} | {format_seconds(r.cpu_seconds)} | "
            f"{format_bytes(r.peak_rss_bytes)} | [log]({_rel(Path(r.log), out)}) |"
        )
    total = sum(r.seconds for r in inputs.records)
    cpu = sum(r.cpu_seconds for r in inputs.records)
    peak = max((r.peak_rss_bytes for r in inputs.records), default=0)
    md += [
        "",
        f"Total wall time of the steps above: {format_seconds(total)} (CPU {format_seconds(cpu)}; this "
        f"invocation so far: {format_seconds(inputs.run_seconds)}; {os.cpu_count()} CPU cores). "
        f"Peak memory: {format_bytes(peak)}.",
        "",
    ]
    md += [
        "## Commands",
        "",
        "Every step is a stock `nnUNetv2_*` command or an `nnunet_tcup` subcommand; their environment:",
        "",
        "```bash",
    ]
    md += [f"export {k}={v}" for k, v in inputs.commands_env.items()]
    md += [r.command for r in inputs.records if not r.command.startswith("python:")]
    md += ["```", ""]
    md += [
        "BraTS submission files (post-processed predictions in 2023 labels): "
        + ", ".join(f"`{_rel(paths.submission(m), out)}`" for m in inputs.models)
        + ".",
        "",
    ]
    target = out / "report.md"
    with atomic_output(target) as tmp:
        tmp.write_text("\n".join(md))
    return target
