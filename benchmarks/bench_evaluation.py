"""Benchmark: fast lesion-wise evaluation vs the slow full-volume reference on full-size BraTS cases.

Generates full-size (240, 240, 155) label volumes procedurally (many separated tumours: SNFH shell, NETC core, ET
rim; >= 10 GT lesions per region after merging), predictions by perturbing them (shifts, grown/shrunk shapes, missed
lesions, false-positive tumours and specks), then runs ``tests/reference_lesionwise.py`` and
``nnunet_tcup.evaluation.lesionwise.evaluate_case`` on each case, checks that every number agrees, and prints the
speed ratio and the peak memory of each implementation.

Each implementation runs in its own fresh child process per case, so its figures are its own. Time: wall clock
and process CPU time (``time.process_time``; the CPU ratio is the fair one on a shared machine). Memory:
``peak RSS growth`` = ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child after the timed run minus before
it (growth of the resident set caused by the evaluation, C/C++ buffers included); for the fast implementation also
``tracemalloc`` peak of a second, untimed run (Python/numpy allocations only). Arrays are Fortran-ordered in NIfTI
``(x, y, z)`` order (as nibabel gives them), 1 mm.

Usage: ``python benchmarks/bench_evaluation.py [--cases 3] [--challenge GLI] [--seed 0]``
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, Tuple

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SHAPE = (240, 240, 155)


def _ball(shape: Tuple[int, int, int], center: np.ndarray, radii: np.ndarray) -> Tuple[Tuple[slice, ...], np.ndarray]:
    """Ellipsoid mask in the box around ``center`` (voxels): (box, mask within the box)."""
    lo = np.maximum(np.floor(center - radii - 1).astype(int), 0)
    hi = np.minimum(np.ceil(center + radii + 2).astype(int), shape)
    grids = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
    dist = sum(((g - c) / r) ** 2 for g, c, r in zip(grids, center, radii))
    return tuple(slice(a, b) for a, b in zip(lo, hi)), dist <= 1.0


def _paint_tumour(labels: np.ndarray, center: np.ndarray, radius: float, rng: np.random.Generator) -> None:
    """SNFH ellipsoid (2) with a NETC core (1) and an ET rim (3) around it, irregular via random radii."""
    shell = radius * rng.uniform(0.8, 1.2, 3)
    box, mask = _ball(labels.shape, center, shell)
    labels[box][mask] = 2
    core_r = shell * rng.uniform(0.45, 0.6)
    box, mask = _ball(labels.shape, center + rng.normal(0, 0.5, 3), core_r)
    labels[box][mask] = 3
    box, mask = _ball(labels.shape, center + rng.normal(0, 0.5, 3), core_r * 0.6)
    labels[box][mask] = 1


def _centers(rng: np.random.Generator, count: int, min_gap: float) -> list:
    centers: list = []
    while len(centers) < count:
        c = rng.uniform((30, 30, 25), (210, 210, 130))
        if all(np.linalg.norm(c - o) > min_gap for o in centers):
            centers.append(c)
    return centers


def make_case(seed: int, num_tumours: int = 14) -> Tuple[np.ndarray, np.ndarray]:
    """(gt, pred) uint8 label volumes of shape (240, 240, 155) in (x, y, z) order."""
    rng = np.random.default_rng(seed)
    gt = np.zeros(SHAPE, np.uint8)
    pred = np.zeros(SHAPE, np.uint8)
    centers = _centers(rng, num_tumours + 2, min_gap=34)
    for i, c in enumerate(centers):
        radius = rng.uniform(5, 14) if i else 22.0  # one large main tumour, many satellites
        if i < num_tumours:
            _paint_tumour(gt, c, radius, rng)
            if rng.random() < 0.85:  # found, perturbed: shifted centre, different size and shape
                _paint_tumour(pred, c + rng.integers(-2, 3, 3), radius * rng.uniform(0.8, 1.2), rng)
        else:  # false-positive tumour
            _paint_tumour(pred, c, rng.uniform(3, 7), rng)
    for _ in range(4):  # false-positive specks anywhere (no size threshold for false positives)
        c = rng.integers((5, 5, 5), np.array(SHAPE) - 5)
        pred[c[0]:c[0] + 2, c[1]:c[1] + 2, c[2]:c[2] + rng.integers(1, 3)] = rng.integers(1, 4)
    # boundary noise on the prediction: relabel a few voxels on the tumours' outer surface
    surface = np.argwhere((pred > 0) & (ndimage.minimum_filter(pred, size=3) == 0))
    flip = surface[rng.random(surface.shape[0]) < 0.05]
    pred[tuple(flip.T)] = rng.choice(np.array([0, 2], np.uint8), flip.shape[0])
    return gt, pred


def _evaluate(kind: str, gt: np.ndarray, pred: np.ndarray, challenge: str) -> Dict:
    """Run one implementation; returns {region: {"metrics": {...}, "lesions": [(id, volume, comps, dice, hd95,
    scored), ...]}}."""
    from nnunet_tcup.challenges import EVALUATION_PARAMETERS
    from nnunet_tcup.evaluation.lesionwise import evaluate_case
    from reference_lesionwise import reference_case

    if kind == "fast":
        ev = evaluate_case(gt, pred, (1.0, 1.0, 1.0), challenge)
        return {r: {"metrics": ev[r].metrics(),
                    "lesions": [(les.lesion_id, les.volume_mm3, les.matched_components, les.dice, les.hd95,
                                 les.scored) for les in ev[r].lesions]} for r in ev.regions}
    params = EVALUATION_PARAMETERS[challenge]
    ref = reference_case(gt, pred, (1.0, 1.0, 1.0), params.dilation_iterations, params.volume_threshold_mm3)
    return {r: {"metrics": ref[r]["metrics"],
                "lesions": [(les["lesion_id"], les["volume_mm3"], les["matched_components"], les["dice"],
                             les["hd95"], les["scored"]) for les in ref[r]["lesions"]]} for r in ref}


def _run(kind: str, path: str, challenge: str, queue: "multiprocessing.Queue") -> None:
    """Child process: load the case, warm up, run once timed (wall and CPU) and measure the RSS growth; for the
    fast implementation also run once under tracemalloc."""
    import resource
    import tracemalloc

    sys.path.insert(0, str(REPO / "tests"))
    with np.load(path) as data:
        gt, pred = np.asfortranarray(data["gt"]), np.asfortranarray(data["pred"])  # like nibabel arrays
    tiny = np.zeros((8, 8, 8), np.uint8)
    tiny[2:5, 2:5, 2:5] = 3
    _evaluate(kind, tiny, tiny, challenge)  # imports and lazy tables outside the measured part
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    start, cpu_start = time.perf_counter(), time.process_time()
    result = _evaluate(kind, gt, pred, challenge)
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = float("nan")
    if kind == "fast":
        tracemalloc.start()
        _evaluate(kind, gt, pred, challenge)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    queue.put({"seconds": seconds, "cpu_seconds": cpu_seconds, "result": result, "traced_mib": traced,
               "rss_growth_mib": (rss_after - rss_before) / 1024, "rss_peak_mib": rss_after / 1024})


def run_child(kind: str, path: str, challenge: str) -> Dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(kind, path, challenge, queue))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def compare(fast: Dict, ref: Dict) -> float:
    """Largest absolute difference over all values; raises AssertionError on any structural / count difference."""
    worst = 0.0
    for region in ("WT", "TC", "ET"):
        for key, value in ref[region]["metrics"].items():
            worst = max(worst, abs(float(fast[region]["metrics"][key]) - float(value)))
        assert len(fast[region]["lesions"]) == len(ref[region]["lesions"]), region
        for a, b in zip(fast[region]["lesions"], ref[region]["lesions"]):
            assert a[0] == b[0] and tuple(a[2]) == tuple(b[2]) and a[5] == b[5], (region, a, b)
            worst = max(worst, abs(a[1] - b[1]), abs(a[3] - b[3]), abs(a[4] - b[4]))
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=3, help="number of generated full-size cases (default 3)")
    parser.add_argument("--challenge", default="GLI", help="challenge parameters to use (default GLI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    from nnunet_tcup.challenges import check_challenge

    challenge = check_challenge(args.challenge)
    totals = {"fast": [0.0, 0.0], "reference": [0.0, 0.0]}  # wall, CPU seconds
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(args.cases):
            gt, pred = make_case(args.seed + i)
            path = os.path.join(tmp, f"case{i}.npz")
            np.savez(path, gt=gt, pred=pred)
            runs = {kind: run_child(kind, path, challenge) for kind in ("reference", "fast")}
            ref, fast = runs["reference"], runs["fast"]
            worst = compare(fast["result"], ref["result"])
            worst_all = max(worst_all, worst)
            lesions = {r: len(ref["result"][r]["lesions"]) for r in ("WT", "TC", "ET")}
            fps = {r: ref["result"][r]["metrics"]["Num_FP"] for r in ("WT", "TC", "ET")}
            print(f"case {i} (seed {args.seed + i}, {SHAPE}): GT lesions {lesions}, false positives {fps}")
            for kind, run in runs.items():
                totals[kind][0] += run["seconds"]
                totals[kind][1] += run["cpu_seconds"]
                print(f"  {kind:9s} wall {run['seconds']:6.2f} s  CPU {run['cpu_seconds']:6.2f} s  "
                      f"peak RSS growth {run['rss_growth_mib']:6.1f} MiB (process peak {run['rss_peak_mib']:.0f} MiB)"
                      + (f"  tracemalloc peak {run['traced_mib']:.1f} MiB" if kind == "fast" else ""))
            print(f"  speed-up: CPU {ref['cpu_seconds'] / fast['cpu_seconds']:.1f}x, wall "
                  f"{ref['seconds'] / fast['seconds']:.1f}x; max |difference| {worst:.3g}")
    (ref_wall, ref_cpu), (fast_wall, fast_cpu) = totals["reference"], totals["fast"]
    print(f"TOTAL {args.cases} cases ({challenge}): reference CPU {ref_cpu:.2f} s (wall {ref_wall:.2f} s), fast CPU "
          f"{fast_cpu:.2f} s (wall {fast_wall:.2f} s); speed-up CPU {ref_cpu / fast_cpu:.1f}x, wall "
          f"{ref_wall / fast_wall:.1f}x; max |difference| {worst_all:.3g} "
          f"({'identical' if worst_all == 0 else 'NOT identical'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
