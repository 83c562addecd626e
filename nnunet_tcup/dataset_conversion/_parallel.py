"""Run a per-case function over many cases in worker processes, with a tqdm progress bar."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, List, Sequence, TypeVar

from tqdm import tqdm

T = TypeVar("T")
R = TypeVar("R")


def default_num_workers() -> int:
    """Worker processes used when none are asked for: the CPU count, at most 8."""
    return max(1, min(8, os.cpu_count() or 1))


def map_cases(fn: Callable[[T], R], items: Sequence[T], num_workers: int, desc: str,
              progress: bool = True) -> List[R]:
    """``[fn(item) for item in items]`` in ``num_workers`` processes (in this process when 1); results in input
    order. ``fn`` must be a module-level function and items picklable. Ctrl-C cancels the cases not yet started."""
    if num_workers < 1:
        raise ValueError(f"num_workers must be >= 1, got {num_workers}")
    results: List[R] = [None] * len(items)  # type: ignore[list-item]
    bar = tqdm(total=len(items), desc=desc, unit="case", disable=not progress or not items)
    try:
        if num_workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                results[i] = fn(item)
                bar.update(1)
            return results
        with ProcessPoolExecutor(max_workers=min(num_workers, len(items))) as pool:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            try:
                for future in as_completed(futures):
                    results[futures[future]] = future.result()
                    bar.update(1)
            except BaseException:
                for future in futures:
                    future.cancel()
                raise
        return results
    finally:
        bar.close()
