"""A review of cases whose ids are spreadsheet formulas, mathtext or URL syntax (issue 20): the review runs; every
CSV reads back with those ids quoted and the numbers still numbers; the page links are URL-encoded; hidden files in
the fold folders are never cases."""

from __future__ import annotations

import csv
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest
from review_inputs import ball, fold_dirs, region_probabilities, tumour_labels, write_case

from nnunet_tcup.review.core import run_review

#: Formula-like ids (=, +, -, @), mathtext with a backslash, URL syntax (# ? %41), and a plain one.
ODD_IDS = ("=1+2", "+SUM(1)", "-3", "@x", "x$\\foo$y", "a#b?c%41", "plain")
FORMULA_IDS = ODD_IDS[:4]


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def odd_review(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("odd")
    truth = tumour_labels()
    other = truth.copy()
    other[ball((4, 5, 5), 2.5)] = 2  # one fold adds a lesion: something to disagree on
    for seed, case in enumerate(ODD_IDS):
        write_case(root, case, [region_probabilities(truth), region_probabilities(other)], truth, seed=seed)
    for folder in fold_dirs(root, 2):  # hidden files: never cases (".." would become the case ".")
        for hidden in ("..npz", ".foo.npz", ".plain.partial-7.npz"):
            np.savez_compressed(folder / hidden, probabilities=region_probabilities(truth))
    out = root / "out"
    run_review(fold_dirs(root, 2), root / "images", out, gt_dir=root / "gt", num_workers=1, progress=False)
    return root, out


def test_review_with_odd_ids_lists_exactly_the_cases(odd_review):
    _, out = odd_review
    rows = read_rows(out / "review.csv")
    assert sorted(r["case"].removeprefix("'") for r in rows) == sorted(ODD_IDS)
    for case in ODD_IDS:  # montages drawn although "x$\foo$y" is mathtext to matplotlib
        assert (out / "montages" / f"{case}.png").read_bytes()[:4] == b"\x89PNG"
        assert (out / "maps" / case / "consensus.nii.gz").is_file()


def test_review_csvs_quote_formula_ids_and_keep_numbers(odd_review):
    _, out = odd_review
    for name in ("review.csv", "lesions.csv", "zooniverse/manifest.csv"):
        rows = read_rows(out / name)
        key = "#case" if name.endswith("manifest.csv") else "case"
        cases = {r[key] for r in rows}
        for case in FORMULA_IDS:
            assert "'" + case in cases and case not in cases, (name, case)
        assert "plain" in cases and "x$\\foo$y" in cases, name
        for row in rows:  # no text cell starts a formula; numbers are written as numbers
            assert not any(v.startswith(("=", "+", "-", "@", "\t", "\r")) for v in row.values()), row
    review = read_rows(out / "review.csv")
    assert [int(r["rank"]) for r in review] == list(range(1, len(ODD_IDS) + 1))
    assert all(0.0 <= float(r["score"]) <= 1.0 and float(r["true_dice_mean"]) > 0.5 for r in review)
    manifest = read_rows(out / "zooniverse" / "manifest.csv")
    for row in manifest:  # the file a subject names exists under exactly that name (no quote in it)
        assert (out / "zooniverse" / row["image_1"]).is_file(), row["image_1"]
        assert (
            row["subject_id"].removeprefix("'") == f"{row['#case'].removeprefix(chr(39))}_z{int(row['#slice_z']):03d}"
        )
        assert float(row["#case_score"]) >= 0 and int(row["#case_rank"]) >= 1


def test_review_page_url_encodes_links_and_escapes_text(odd_review):
    _, out = odd_review
    page = (out / "review.html").read_text(encoding="utf-8")
    assert "href='montages/a%23b%3Fc%2541.png'" in page and "src='montages/a%23b%3Fc%2541.png'" in page
    assert "href='maps/x%24%5Cfoo%24y/'" in page and "<b>x$\\foo$y</b>" in page
    assert "href='maps/%3D1%2B2/'" in page and "<b>=1+2</b>" in page
    for link in [part.split("'")[0] for part in page.split("src='")[1:]]:  # every image link resolves
        assert (out / unquote(link)).is_file(), link
