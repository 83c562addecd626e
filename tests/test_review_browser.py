"""``nnunet_tcup review`` as a person sees it: the console command end to end, and ``review.html`` rendered by a
real headless Chromium (Debian package ``chromium``), checking that every image on the page loads."""

from __future__ import annotations

import csv
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import run_command
from review_inputs import fold_dirs, make_review_inputs

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

# Appended to a copy of the page: after the load event, list every image with its decoded size.
_PROBE = (
    "<script>window.addEventListener('load',function(){var r=[];document.querySelectorAll('img').forEach("
    "function(i){r.push(i.getAttribute('src')+' '+i.naturalWidth+' '+i.naturalHeight)});var p=document."
    "createElement('pre');p.id='image-probe';p.textContent=r.join('\\n');document.body.appendChild(p);});</script>"
)


def chromium_binary() -> str | None:
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


def loaded_images(page: Path) -> dict[str, tuple[int, int]]:
    """``{src: (naturalWidth, naturalHeight)}`` of every ``<img>`` of ``page`` after Chromium loaded it (0 x 0 for an
    image that failed to load)."""
    browser = chromium_binary()
    assert browser is not None
    probe = page.with_name(".probe-" + page.name)  # same folder: relative image paths resolve the same way
    probe.write_text(page.read_text(encoding="utf-8").replace("</body>", _PROBE + "</body>"), encoding="utf-8")
    try:
        proc = subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--virtual-time-budget=10000",
                "--dump-dom",
                probe.resolve().as_uri(),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        probe.unlink()
    match = re.search(r'<pre id="image-probe">(.*?)</pre>', proc.stdout, re.S)
    assert match, f"no probe output from {browser} (rc {proc.returncode}): {proc.stderr[-2000:]}"
    images = {}
    for line in match.group(1).strip().splitlines():
        src, width, height = line.rsplit(" ", 2)
        images[src] = (int(width), int(height))
    return images


@pytest.mark.slow
def test_review_command_and_page_in_headless_chromium(tmp_path: Path):
    if chromium_binary() is None:
        if os.environ.get("CI"):  # .ci/run installs it: in CI a missing browser is a failure, not a skip
            pytest.fail("no Chromium binary in CI (.ci/run should have installed Debian's chromium)")
        pytest.skip("no Chromium binary (install the Debian package: apt-get install chromium)")
    cases = make_review_inputs(tmp_path)
    out = tmp_path / "review"
    proc = run_command(
        [
            "nnunet_tcup",
            "review",
            "--pred",
            *fold_dirs(tmp_path),
            "-i",
            tmp_path / "images",
            "-o",
            out,
            "--gt",
            tmp_path / "gt",
            "--num-workers",
            "2",
            "--no-progress",
        ]
    )
    assert "3 cases reviewed" in proc.stdout
    with open(out / "review.csv", newline="") as f:
        ranked = [row["case"] for row in csv.DictReader(f)]
    assert sorted(ranked) == sorted(cases) and ranked[-1] == "case_agree"

    images = loaded_images(out / "review.html")
    assert sorted(images) == sorted(f"montages/{c}.png" for c in cases)
    for src, (width, height) in images.items():
        assert width > 100 and height > 100, f"{src} did not load in Chromium"
    # the page lists the cases in rank order
    html = (out / "review.html").read_text(encoding="utf-8")
    assert [html.index(f"id='{c}'") for c in ranked] == sorted(html.index(f"id='{c}'") for c in ranked)

    # the check can fail: a missing montage is reported as not loaded
    (out / "montages" / "case_split.png").unlink()
    assert loaded_images(out / "review.html")["montages/case_split.png"] == (0, 0)


@pytest.mark.slow
def test_review_command_errors_are_one_line(tmp_path: Path):
    make_review_inputs(tmp_path)
    (tmp_path / "fold_2" / "case_agree.npz").unlink()
    proc = run_command(
        ["nnunet_tcup", "review", "--pred", *fold_dirs(tmp_path), "-i", tmp_path / "images", "-o", tmp_path / "review"],
        check=False,
    )
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "fold_2: no probabilities for case_agree" in lines[0], proc.stderr
    assert not (tmp_path / "review" / "review.csv").exists()
