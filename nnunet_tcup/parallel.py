"""The one parallel map of the package: worker processes, a tqdm progress bar, a serial fall-back.

Every command with ``--num-workers`` uses :func:`parallel_map` and the same default, :func:`default_num_workers`
(nnU-Net's ``nnUNet_def_n_proc`` when set, else ``min(4, CPU count)``). Workers are started with ``spawn`` (as
nnU-Net starts its own workers): safe next to threads and torch, and no open file descriptor (e.g. a lock) leaks
into them. A worker exits as soon as its parent process dies, even by SIGKILL (Linux parent-death signal, and a
watcher thread elsewhere), so a killed command never leaves workers blocked forever.
"""

from __future__ import annotations

import argparse
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import TypeVar

__all__ = ["START_METHOD", "default_num_workers", "parallel_map", "positive_int"]

T = TypeVar("T")
R = TypeVar("R")

#: The multiprocessing start method of every worker pool of the package.
START_METHOD = "spawn"
_PARENT_POLL_S = 0.5
_PR_SET_PDEATHSIG = 1


def default_num_workers() -> int:
    """Worker processes used when none are asked for: ``$nnUNet_def_n_proc`` if set, else min(4, CPU count).

    Raises ValueError if ``nnUNet_def_n_proc`` is set but not a positive integer.
    """
    value = os.environ.get("nnUNet_def_n_proc", "").strip()
    if value:
        try:
            workers = int(value)
        except ValueError:
            workers = 0
        if workers < 1:
            raise ValueError(f"nnUNet_def_n_proc={value!r}: expected a positive integer (worker processes)")
        return workers
    return max(1, min(4, os.cpu_count() or 1))


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--num-workers``: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


def _exit_with_parent(parent_pid: int) -> None:
    """Worker initializer: die when ``parent_pid`` dies (prctl on Linux, plus a polling thread everywhere)."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(_PARENT_POLL_S)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="nnunet_tcup-parent-watch", daemon=True).start()


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    num_workers: int | None = None,
    desc: str = "",
    unit: str = "case",
    progress: bool = True,
) -> list[R]:
    """``[fn(item) for item in items]`` computed in ``num_workers`` spawned processes; results in input order.

    ``num_workers`` None means :func:`default_num_workers`; with 1 worker (or at most one item) everything runs in
    this process. ``fn`` must be a module-level function and the items and results picklable. The first exception
    raised by ``fn`` is re-raised here after the cases not yet started are cancelled; so is Ctrl-C.
    """
    workers = default_num_workers() if num_workers is None else num_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"number of workers must be an integer >= 1, got {workers!r}")
    items = list(items)
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    from tqdm import tqdm

    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or not items) as bar:
        if workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                results[i] = fn(item)
                bar.update(1)
            return results
        context = multiprocessing.get_context(START_METHOD)
        pool = ProcessPoolExecutor(
            max_workers=min(workers, len(items)),
            mp_context=context,
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        try:
            futures = {pool.submit(fn, item): i for i, item in enumerate(items)}
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        except BaseException:
            pool.shutdown(wait=True, cancel_futures=True)
            raise
        pool.shutdown(wait=True)
    return results
