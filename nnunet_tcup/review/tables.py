"""The review's tables and page: ``review.csv`` (cases ranked), ``lesions.csv``, ``review.html`` and the Zooniverse
``zooniverse/manifest.csv``. Rows come from :class:`nnunet_tcup.review.case.CaseResult`; nothing here reads images.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path

from nnunet_tcup.csv_cells import safe_rows
from nnunet_tcup.io_utils import atomic_output
from nnunet_tcup.review.case import CaseResult
from nnunet_tcup.review.uncertainty import REGION_NAMES

AGREEMENT_CLASSES = ("unanimous", "majority", "minority")


def rank_cases(results: Sequence[CaseResult]) -> list[CaseResult]:
    """Most doubtful first: by score descending, ties by case id."""
    return sorted(results, key=lambda r: (-r.score, r.case))


def review_row(rank: int, r: CaseResult) -> dict[str, object]:
    """One ``review.csv`` row (see :func:`review_columns`)."""
    row: dict[str, object] = {"rank": rank, "case": r.case, "score": round(r.score, 6), "num_folds": r.num_folds}
    for region in REGION_NAMES:
        row[f"{region}_disputed_share"] = round(r.disputed[region], 6)
    for region in REGION_NAMES:
        row[f"{region}_expected_dice"] = round(r.expected_dice[region], 6)
    for region in REGION_NAMES:
        row[f"{region}_mean_mi_bits"] = round(r.mean_mutual_information[region], 6)
        row[f"{region}_volume_mm3"] = round(r.volume_mm3[region], 3)
    for region in REGION_NAMES:
        mine = [les for les in r.lesions if les.region == region]
        row[f"{region}_lesions"] = sum(1 for les in mine if les.in_consensus)
        for cls in AGREEMENT_CLASSES:
            row[f"{region}_lesions_{cls}"] = sum(1 for les in mine if les.agreement_class == cls)
    row["slices"] = " ".join(str(z) for z in r.slices)
    row["montage"] = r.montage
    if r.true_dice is not None:
        for region in REGION_NAMES:
            row[f"true_dice_{region}"] = round(r.true_dice[region], 6)
        row["true_dice_mean"] = round(sum(r.true_dice.values()) / len(REGION_NAMES), 6)
    return row


def _write_csv(rows: Sequence[dict[str, object]], path: Path, columns: Sequence[str] | None = None) -> Path:
    """Write ``rows`` atomically, text cells that a spreadsheet would read as a formula quoted (:mod:`nnunet_tcup.csv_cells`)."""
    columns = list(columns if columns is not None else (rows[0].keys() if rows else []))
    with atomic_output(path) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(safe_rows(rows))
    return path


def write_review_csv(ranked: Sequence[CaseResult], path: Path) -> list[dict[str, object]]:
    """Write ``review.csv``, one row per case in rank order; returns the rows."""
    rows = [review_row(i, r) for i, r in enumerate(ranked, start=1)]
    _write_csv(rows, path)
    return rows


LESION_COLUMNS = (
    "case",
    "region",
    "lesion_id",
    "in_consensus",
    "folds_found",
    "num_folds",
    "agreement_class",
    "agreement",
    "volume_mm3",
    "mean_probability",
    "mean_mi_bits",
    "z_first",
    "z_last",
    "centroid_z",
    "centroid_y",
    "centroid_x",
)


def write_lesions_csv(ranked: Sequence[CaseResult], path: Path) -> Path:
    """``lesions.csv``: one row per (case, region, lesion), cases in rank order, least agreed lesions first."""
    rows = []
    for r in ranked:
        for les in sorted(r.lesions, key=lambda x: (REGION_NAMES.index(x.region), x.agreement, x.lesion_id)):
            rows.append(
                {
                    "case": r.case,
                    "region": les.region,
                    "lesion_id": les.lesion_id,
                    "in_consensus": int(les.in_consensus),
                    "folds_found": les.folds_found,
                    "num_folds": les.num_folds,
                    "agreement_class": les.agreement_class,
                    "agreement": round(les.agreement, 6),
                    "volume_mm3": round(les.volume_mm3, 3),
                    "mean_probability": round(les.mean_probability, 6),
                    "mean_mi_bits": round(les.mean_mutual_information, 6),
                    "z_first": les.slices[0],
                    "z_last": les.slices[1],
                    "centroid_z": round(les.centroid_zyx[0], 2),
                    "centroid_y": round(les.centroid_zyx[1], 2),
                    "centroid_x": round(les.centroid_zyx[2], 2),
                }
            )
    return _write_csv(rows, path, LESION_COLUMNS)


MANIFEST_COLUMNS = (
    "subject_id",
    "image_1",
    "#case",
    "#slice_z",
    "#case_rank",
    "#case_score",
    "#slice_disagreement_bits",
)


def write_manifest(ranked: Sequence[CaseResult], path: Path) -> list[dict[str, object]]:
    """Zooniverse subject manifest: one row per (case, slice) subject in review order. ``image_1`` names the PNG
    beside the manifest; columns starting with ``#`` are metadata hidden from volunteers (kept in exports)."""
    rows = []
    for rank, r in enumerate(ranked, start=1):
        bits = dict(zip(r.slices, r.slice_disagreement))
        for z, png in r.subjects:
            rows.append(
                {
                    "subject_id": f"{r.case}_z{z:03d}",
                    "image_1": png,
                    "#case": r.case,
                    "#slice_z": z,
                    "#case_rank": rank,
                    "#case_score": round(r.score, 6),
                    "#slice_disagreement_bits": round(bits.get(z, 0.0), 3),
                }
            )
    _write_csv(rows, path, MANIFEST_COLUMNS)
    return rows


_STYLE = """body{font-family:sans-serif;margin:1.5em;color:#222}table.cases{border-collapse:collapse;width:100%}
td,th{border-bottom:1px solid #ccc;padding:4px 8px;vertical-align:top;text-align:left}
.score{font-size:1.3em;font-weight:bold}.rank{font-size:1.5em;color:#888}img{max-width:100%;height:auto}
table.scores td,table.scores th{border:none;padding:1px 6px;font-size:0.9em}"""


def _scores_table(row: dict[str, object]) -> str:
    head = "".join(f"<th>{r}</th>" for r in REGION_NAMES)
    lines = [
        ("disputed share of the volume", "disputed_share"),
        ("expected Dice between folds", "expected_dice"),
        ("mean disagreement (bits)", "mean_mi_bits"),
        ("volume (mm³)", "volume_mm3"),
        ("lesions in the consensus", "lesions"),
        ("lesions of any fold found by all folds", "lesions_unanimous"),
        ("... by a majority of folds", "lesions_majority"),
        ("... by a minority of folds", "lesions_minority"),
    ]
    if "true_dice_WT" in row:
        lines.append(("true lesion-wise Dice", "true_dice"))
    body = []
    for title, key in lines:
        cells = []
        for region in REGION_NAMES:
            name = f"true_dice_{region}" if key == "true_dice" else f"{region}_{key}"
            value = row[name]
            text = (f"{value:.0f}" if key == "volume_mm3" else f"{value:.3f}") if isinstance(value, float) else value
            cells.append(f"<td>{text}</td>")
        body.append(f"<tr><th>{html.escape(title)}</th>{''.join(cells)}</tr>")
    return f'<table class="scores"><tr><th></th>{head}</tr>{"".join(body)}</table>'


def _url(relative_path: str) -> str:
    """A relative file path as an ``href`` / ``src`` value: every character but letters, digits, ``/`` and
    ``-._~`` percent-encoded (``#``, ``?``, ``%``, ``$``, ``\\``, spaces, non-ASCII), then HTML-escaped."""
    from urllib.parse import quote

    return html.escape(quote(relative_path, safe="/"), quote=True)


def write_html(rows: Sequence[dict[str, object]], path: Path, title: str, notes: str = "", maps: bool = True) -> Path:
    """``review.html``: a static page (no script, no network) listing the cases in rank order with their scores
    and montages (linked by relative paths, so the folder can be moved or zipped)."""
    parts = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{_STYLE}</style></head><body><h1>{html.escape(title)}</h1>"
    ]
    if notes:
        parts.append(f"<p>{html.escape(notes)}</p>")
    parts.append("<table class='cases'><tr><th>rank</th><th>case and scores</th><th>most doubtful slices</th></tr>")
    for row in rows:
        case = html.escape(str(row["case"]), quote=True)
        montage, maps_url = _url(str(row["montage"])), _url(f"maps/{row['case']}/")
        parts.append(
            f"<tr id='{case}'><td class='rank'>{row['rank']}</td><td><b>{case}</b><br>doubt score "
            f"<span class='score'>{float(str(row['score'])):.3f}</span><br>slices z = {html.escape(str(row['slices']))}"
            + (f"<br>NIfTI maps: <a href='{maps_url}'>maps/{case}/</a>" if maps else "")
            + f"{_scores_table(row)}</td>"
            f"<td><a href='{montage}'><img src='{montage}' alt='{case} montage' loading='eager'></a></td></tr>"
        )
    parts.append("</table></body></html>\n")
    with atomic_output(path) as tmp:
        Path(tmp).write_text("".join(parts), encoding="utf-8")
    return path
