"""Benchmark: fast lesion-wise evaluation vs the slow full-volume reference on full-size BraTS cases.

Generates full-size (240, 240, 155) label volumes procedurally (many separated tumours: SNFH shell, NETC core, ET
rim; >= 10 GT lesions per region after merging), predictions by perturbing them (shifts, grown/shrunk shapes, missed
lesions, false-positive tumours and specks), then runs ``tests/reference_lesionwise.py`` and
``nnunet_tcup.evaluation.lesionwise.evaluate_case`` on each case, checks that every number agrees, and prints the
speed ratio and the peak memory of each implementation.

Two kinds of case: ``typical`` (the perturbed prediction above) and ``many`` (the same plus ~1,100 small predicted
ET components, 1-8 voxels each, half of them around the tumours: what an under-trained model gives; this is where
a cost growing with voxels x components shows). ``--scaling`` also times the fast implementation alone on one
``many`` case with 0 to 4x that many components, to show the cost growing with voxels plus components.

Each implementation runs in its own fresh child process per case, so its figures are its own. Time: wall clock
and process CPU time (``time.process_time``; the CPU ratio is the fair one on a shared machine). Memory:
``peak RSS growth`` = ``resource.getrusage(RUSAGE_SELF).ru_maxrss`` of the child after the timed run minus before
it (growth of the resident set caused by the evaluation, C/C++ buffers included); for the fast implementation also
``tracemalloc`` peak of a second, untimed run (Python/numpy allocations only). Arrays are Fortran-ordered in NIfTI
``(x, y, z)`` order (as nibabel gives them), 1 mm.

``--worst [CASE ...]`` runs the worst-input set instead (``WORST_CASES``; all of them when no CASE is named): a
predicted region covering most of the brain, ~1,000 and ~4,000 specks, an empty prediction, an empty ground truth,
the whole volume predicted, the large region plus ~1,100 specks (opt-in: ``noise``, labels drawn voxel by voxel).
One table row per case: our CPU seconds (median of ``--repeats`` runs in one process, every run listed) and the
reference's (one run), their ratio, identical yes/no (every metric, lesion and
id equal), peak RSS growth of each and our tracemalloc peak. ``--skip-reference`` times ours only (no ratio).

Usage: ``python benchmarks/bench_evaluation.py [--cases 3] [--many 1] [--components 1100] [--scaling] [--challenge GLI]
[--seed 0] [--worst [CASE ...]] [--skip-reference] [--repeats 3]``
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage

REPO = Path(__file__).resolve().parents[1]
SHAPE = (240, 240, 155)


def _ball(shape: tuple[int, int, int], center: np.ndarray, radii: np.ndarray) -> tuple[tuple[slice, ...], np.ndarray]:
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


def make_case(seed: int, num_tumours: int = 14) -> tuple[np.ndarray, np.ndarray]:
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
        pred[c[0] : c[0] + 2, c[1] : c[1] + 2, c[2] : c[2] + rng.integers(1, 3)] = rng.integers(1, 4)
    # boundary noise on the prediction: relabel a few voxels on the tumours' outer surface
    surface = np.argwhere((pred > 0) & (ndimage.minimum_filter(pred, size=3) == 0))
    flip = surface[rng.random(surface.shape[0]) < 0.05]
    pred[tuple(flip.T)] = rng.choice(np.array([0, 2], np.uint8), flip.shape[0])
    return gt, pred


def add_specks(pred: np.ndarray, gt: np.ndarray, components: int, seed: int) -> np.ndarray:
    """``pred`` plus about ``components`` separate small ET components (boxes of 1-2 voxels per axis): half around
    the GT tumours (within 25 voxels of a tumour voxel), half anywhere in the brain's bounding box."""
    rng = np.random.default_rng(seed + 10_000)
    pred = pred.copy()
    tumour = np.argwhere(gt > 0)[::50]
    near = tumour[rng.integers(0, len(tumour), components // 2)] + rng.integers(-25, 26, (components // 2, 3))
    anywhere = rng.integers((20, 20, 15), np.array(SHAPE) - 20, (components - components // 2, 3))
    corners = np.clip(np.concatenate([near, anywhere]), 0, np.array(SHAPE) - 2)
    for corner, size in zip(corners, rng.integers(1, 3, (components, 3))):
        pred[tuple(slice(c, c + s) for c, s in zip(corner, size))] = 3
    return pred


#: The worst-input set (``--worst``): full-size predictions that stress the evaluation's cost.
WORST_CASES: dict[str, str] = {
    "large": "predicted WT covers most of the brain (blotchy: ~12 % of it missing in blobs), TC/ET as predicted",
    "specks1000": "typical prediction plus ~1,000 small ET components",
    "specks4000": "typical prediction plus ~4,000 small ET components",
    "empty-pred": "empty prediction",
    "empty-gt": "empty ground truth, typical prediction",
    "whole": "prediction = the whole volume (label 3 everywhere: WT = TC = ET = every voxel)",
    "large+specks": "the large region plus ~1,100 small ET components",
}
#: Opt-in stress case (``--worst noise``): labels drawn voxel by voxel in the brain (surfaces of millions of
#: surfels, one component touching every lesion); its cost grows with lesions x volume.
EXTRA_CASES: dict[str, str] = {"noise": "labels 0-3 drawn voxel by voxel inside the brain"}


def _brain() -> np.ndarray:
    box, mask = _ball(SHAPE, np.array([120.0, 120.0, 77.0]), np.array([74.0, 90.0, 64.0]))
    brain = np.zeros(SHAPE, bool)
    brain[box] = mask
    return brain


def _large_region(pred: np.ndarray, seed: int) -> np.ndarray:
    """SNFH over the brain minus blobs of smoothed noise (~12 % of it), the predicted NETC / ET kept."""
    rng = np.random.default_rng(seed + 20_000)
    brain = _brain()
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE).astype(np.float32), 2.0)
    out = np.where(brain & (noise > np.quantile(noise[brain], 0.12)), 2, 0).astype(np.uint8)
    core = (pred == 1) | (pred == 3)
    out[core] = pred[core]
    return out


def make_worst(name: str, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(gt, pred) of one worst-input case (``WORST_CASES`` / ``EXTRA_CASES``), GT from :func:`make_case`."""
    gt, pred = make_case(seed)
    if name == "large":
        return gt, _large_region(pred, seed)
    if name == "large+specks":
        return gt, add_specks(_large_region(pred, seed), gt, 1100, seed)
    if name in ("specks1000", "specks4000"):
        return gt, add_specks(pred, gt, int(name[6:]), seed)
    if name == "empty-pred":
        return gt, np.zeros_like(pred)
    if name == "empty-gt":
        return np.zeros_like(gt), pred
    if name == "whole":
        return gt, np.full_like(pred, 3)
    if name == "noise":
        rng = np.random.default_rng(seed + 30_000)
        labels = rng.choice(np.array([0, 1, 2, 3], np.uint8), SHAPE, p=[0.1, 0.3, 0.35, 0.25])
        return gt, np.where(_brain(), labels, 0).astype(np.uint8)
    raise ValueError(f"unknown worst-input case {name!r}: expected one of {', '.join({**WORST_CASES, **EXTRA_CASES})}")


def _evaluate(kind: str, gt: np.ndarray, pred: np.ndarray, challenge: str) -> dict:
    """Run one implementation; returns {region: {"metrics": {...}, "lesions": [(id, volume, comps, dice, hd95,
    scored), ...]}}."""
    from reference_lesionwise import reference_case

    from nnunet_tcup.challenges import EVALUATION_PARAMETERS
    from nnunet_tcup.evaluation.lesionwise import evaluate_case

    if kind == "fast":
        ev = evaluate_case(gt, pred, (1.0, 1.0, 1.0), challenge)
        return {
            r: {
                "metrics": ev[r].metrics(),
                "lesions": [
                    (les.lesion_id, les.volume_mm3, les.matched_components, les.dice, les.hd95, les.scored)
                    for les in ev[r].lesions
                ],
            }
            for r in ev.regions
        }
    params = EVALUATION_PARAMETERS[challenge]
    ref = reference_case(gt, pred, (1.0, 1.0, 1.0), params.dilation_iterations, params.volume_threshold_mm3)
    return {
        r: {
            "metrics": ref[r]["metrics"],
            "lesions": [
                (
                    les["lesion_id"],
                    les["volume_mm3"],
                    les["matched_components"],
                    les["dice"],
                    les["hd95"],
                    les["scored"],
                )
                for les in ref[r]["lesions"]
            ],
        }
        for r in ref
    }


def _run(kind: str, path: str, challenge: str, queue: multiprocessing.Queue, repeats: int = 1) -> None:
    """Child process: load the case, warm up, run ``repeats`` times timed (wall and CPU; the figures are the median
    run's, ``cpu_runs`` lists every run's CPU seconds) and measure the RSS growth over them; for the fast
    implementation also run once under tracemalloc."""
    import resource
    import tracemalloc

    sys.path.insert(0, str(REPO / "tests"))
    with np.load(path) as data:
        gt, pred = np.asfortranarray(data["gt"]), np.asfortranarray(data["pred"])  # like nibabel arrays
    tiny = np.zeros((8, 8, 8), np.uint8)
    tiny[2:5, 2:5, 2:5] = 3
    _evaluate(kind, tiny, tiny, challenge)  # imports and lazy tables outside the measured part
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    runs = []
    for _ in range(repeats):
        start, cpu_start = time.perf_counter(), time.process_time()
        result = _evaluate(kind, gt, pred, challenge)
        runs.append((time.process_time() - cpu_start, time.perf_counter() - start))
    cpu_seconds, seconds = sorted(runs)[(len(runs) - 1) // 2]
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    traced = float("nan")
    if kind == "fast":
        tracemalloc.start()
        _evaluate(kind, gt, pred, challenge)
        traced = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
    queue.put(
        {
            "seconds": seconds,
            "cpu_seconds": cpu_seconds,
            "cpu_runs": [cpu for cpu, _ in runs],
            "result": result,
            "traced_mib": traced,
            "rss_growth_mib": (rss_after - rss_before) / 1024,
            "rss_peak_mib": rss_after / 1024,
        }
    )


def run_child(kind: str, path: str, challenge: str, repeats: int = 1) -> dict:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_run, args=(kind, path, challenge, queue, repeats))
    proc.start()
    out = queue.get()
    proc.join()
    return out


def compare(fast: dict, ref: dict) -> float:
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


def _count_components(mask: np.ndarray) -> int:
    import cc3d

    return int(cc3d.connected_components(mask, connectivity=26, return_N=True)[1])


def compare_case(label: str, gt: np.ndarray, pred: np.ndarray, challenge: str, path: str) -> dict:
    """Run reference and fast implementation in fresh processes on one case, check the numbers, print a block."""
    np.savez(path, gt=gt, pred=pred)
    runs = {kind: run_child(kind, path, challenge) for kind in ("reference", "fast")}
    ref, fast = runs["reference"], runs["fast"]
    worst = compare(fast["result"], ref["result"])
    lesions = {r: len(ref["result"][r]["lesions"]) for r in ("WT", "TC", "ET")}
    fps = {r: ref["result"][r]["metrics"]["Num_FP"] for r in ("WT", "TC", "ET")}
    print(
        f"{label} {SHAPE}: predicted ET components {_count_components(pred == 3)}, GT lesions {lesions}, "
        f"false positives {fps}"
    )
    for kind, run in runs.items():
        print(
            f"  {kind:9s} wall {run['seconds']:6.2f} s  CPU {run['cpu_seconds']:6.2f} s  "
            f"peak RSS growth {run['rss_growth_mib']:6.1f} MiB (process peak {run['rss_peak_mib']:.0f} MiB)"
            + (f"  tracemalloc peak {run['traced_mib']:.1f} MiB" if kind == "fast" else "")
        )
    print(
        f"  speed-up: CPU {ref['cpu_seconds'] / fast['cpu_seconds']:.1f}x, wall "
        f"{ref['seconds'] / fast['seconds']:.1f}x; max |difference| {worst:.3g}"
    )
    return {"ref": ref, "fast": fast, "worst": worst}


def scaling(gt: np.ndarray, pred: np.ndarray, challenge: str, components: int, seed: int, tmp: str) -> None:
    """Fast implementation alone on one case with 0 .. 4x ``components`` extra ET components: CPU seconds."""
    print(f"scaling (fast implementation only, case seed {seed}): CPU seconds vs predicted ET components")
    base = None
    for factor in (0, 0.25, 0.5, 1, 2, 4):
        specked = add_specks(pred, gt, int(components * factor), seed) if factor else pred
        path = os.path.join(tmp, f"scaling{factor}.npz")
        np.savez(path, gt=gt, pred=specked)
        cpu = run_child("fast", path, challenge)["cpu_seconds"]
        base = cpu if base is None else base
        print(
            f"  {_count_components(specked == 3):5d} ET components: CPU {cpu:5.2f} s ({cpu / base:.2f}x the case "
            f"without extra components)"
        )


def worst_inputs(names: list[str], challenge: str, seed: int, tmp: str, skip_reference: bool, repeats: int = 3) -> bool:
    """Worst-input set: each case timed for ours (median of ``repeats`` runs in one process) and the reference (one
    run) in fresh child processes, one table row each (printed as it finishes). Returns whether every compared case
    was identical."""
    print(
        f"worst-input set ({challenge}, full size {SHAPE}, case seed {seed}); CPU = process CPU seconds of the "
        f"evaluation (ours: median of {repeats} runs after a warm-up, all runs in brackets; the first run also "
        "pays the one-time imports of its code paths); memory = peak RSS growth (ru_maxrss after - before, MiB) "
        "and, for ours, tracemalloc peak (MiB)"
    )
    header = f"{'case':13s} {'ours CPU':>9s} {'ref CPU':>9s} {'ratio':>7s} {'identical':>9s} {'ours RSS':>9s} "
    print(header + f"{'ours tracemalloc':>16s} {'ref RSS':>8s}  predicted components WT/TC/ET")
    all_identical = True
    for name in names:
        gt, pred = make_worst(name, seed)
        path = os.path.join(tmp, f"worst_{name}.npz")
        np.savez(path, gt=gt, pred=pred)
        fast = run_child("fast", path, challenge, repeats)
        ref_cpu, ratio, identical, ref_rss = "-", "-", "-", "-"
        if not skip_reference:
            ref = run_child("reference", path, challenge)
            try:
                same = compare(fast["result"], ref["result"]) == 0
            except AssertionError:
                same = False
            all_identical &= same
            ref_cpu, identical = f"{ref['cpu_seconds']:.2f}", "yes" if same else "NO"
            ratio, ref_rss = f"{ref['cpu_seconds'] / fast['cpu_seconds']:.1f}x", f"{ref['rss_growth_mib']:.0f}"
        counts = "/".join(str(_count_components(np.isin(pred, labels))) for labels in ((1, 2, 3), (1, 3), (3,)))
        print(
            f"{name:13s} {fast['cpu_seconds']:9.2f} {ref_cpu:>9s} {ratio:>7s} {identical:>9s} "
            f"{fast['rss_growth_mib']:9.0f} {fast['traced_mib']:16.0f} {ref_rss:>8s}  {counts}  "
            f"(ours: {', '.join(f'{cpu:.2f}' for cpu in fast['cpu_runs'])})",
            flush=True,
        )
    return all_identical


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cases", type=int, default=3, help="typical full-size cases (default 3)")
    parser.add_argument("--many", type=int, default=1, help="many-component full-size cases (default 1)")
    parser.add_argument(
        "--components", type=int, default=1100, help="small ET components added to a many-component case (default 1100)"
    )
    parser.add_argument("--scaling", action="store_true", help="also time the fast implementation vs #components")
    parser.add_argument("--challenge", default="GLI", help="challenge parameters to use (default GLI)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the first case (default 0)")
    parser.add_argument(
        "--worst", nargs="*", metavar="CASE", choices=[*WORST_CASES, *EXTRA_CASES],
        help=f"run the worst-input set instead (all of {', '.join(WORST_CASES)} when no CASE is named; opt-in: "
        f"{', '.join(EXTRA_CASES)})",
    )  # fmt: skip
    parser.add_argument("--skip-reference", action="store_true", help="worst-input set: time ours only")
    parser.add_argument(
        "--repeats", type=int, default=3, help="worst-input set: timed runs of ours per case, median shown (default 3)"
    )
    args = parser.parse_args()
    if args.repeats < 1:
        parser.error("--repeats: expected a positive integer")
    sys.path.insert(0, str(REPO))
    from nnunet_tcup.challenges import check_challenge

    challenge = check_challenge(args.challenge)
    if args.worst is not None:
        with tempfile.TemporaryDirectory() as tmp:
            same = worst_inputs(
                args.worst or list(WORST_CASES), challenge, args.seed, tmp, args.skip_reference, args.repeats
            )
        return 0 if same else 1
    totals: dict[str, dict[str, list]] = {}
    worst_all = 0.0
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("typical", args.seed + i) for i in range(args.cases)]
        cases += [("many", args.seed + i) for i in range(args.many)]
        for kind, seed in cases:
            gt, pred = make_case(seed)
            if kind == "many":
                pred = add_specks(pred, gt, args.components, seed)
            out = compare_case(f"{kind} case (seed {seed})", gt, pred, challenge, os.path.join(tmp, "case.npz"))
            worst_all = max(worst_all, out["worst"])
            entry = totals.setdefault(kind, {"ref": [0.0, 0.0], "fast": [0.0, 0.0], "n": [0]})
            for impl in ("ref", "fast"):
                entry[impl][0] += out[impl]["seconds"]
                entry[impl][1] += out[impl]["cpu_seconds"]
            entry["n"][0] += 1
        if args.scaling:
            gt, pred = make_case(args.seed)
            scaling(gt, pred, challenge, args.components, args.seed, tmp)
    for kind, entry in totals.items():
        (ref_wall, ref_cpu), (fast_wall, fast_cpu), n = entry["ref"], entry["fast"], entry["n"][0]
        print(
            f"TOTAL {n} {kind} case(s) ({challenge}): reference CPU {ref_cpu:.2f} s (wall {ref_wall:.2f} s), fast "
            f"CPU {fast_cpu:.2f} s (wall {fast_wall:.2f} s); speed-up CPU {ref_cpu / fast_cpu:.1f}x, wall "
            f"{ref_wall / fast_wall:.1f}x"
        )
    print(f"max |difference| over all cases {worst_all:.3g} ({'identical' if worst_all == 0 else 'NOT identical'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
