"""The one parallel map of the package: worker processes, a tqdm progress bar, a serial fall-back.

Every command with ``--num-workers`` uses :func:`parallel_map` and the same default, :func:`default_num_workers`
(nnU-Net's ``nnUNet_def_n_proc`` when set, else ``min(4, CPU count)``). Workers are started with ``spawn`` (as
nnU-Net starts its own workers): safe next to threads and torch, and no open file descriptor (e.g. a lock) leaks
into them. A worker exits as soon as its parent process dies, even by SIGKILL (Linux parent-death signal, and a
watcher thread elsewhere), so a killed command never leaves workers blocked forever.
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import multiprocessing
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ProcessPoolExecutor, as_completed, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TypeVar

__all__ = ["START_METHOD", "default_num_workers", "parallel_map", "non_negative_int", "positive_int"]

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


def _int_at_least(text: str, minimum: int, kind: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {text!r}") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"expected a {kind} integer, got {value}")
    return value


def positive_int(text: str) -> int:
    """argparse type for counts such as ``--num-workers``: an integer >= 1."""
    return _int_at_least(text, 1, "positive")


def non_negative_int(text: str) -> int:
    """argparse type for seeds and start indices: an integer >= 0."""
    return _int_at_least(text, 0, "non-negative")


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


_POOLS: dict[tuple[int, int], ProcessPoolExecutor] = {}  # by (owning process id, workers): a forked child
# must not use its parent's pool


def _pool(workers: int) -> ProcessPoolExecutor:
    """The process pool of ``workers`` workers, created on first use and reused by later calls in this process
    (a command's check and write phases then share their workers' start-up); shut down at exit."""
    pool = _POOLS.get((os.getpid(), workers))
    if pool is None:
        pool = ProcessPoolExecutor(
            max_workers=workers,
            mp_context=multiprocessing.get_context(START_METHOD),
            initializer=_exit_with_parent,
            initargs=(os.getpid(),),
        )
        _POOLS[(os.getpid(), workers)] = pool
    return pool


def _discard_pool(workers: int) -> None:
    pool = _POOLS.pop((os.getpid(), workers), None)
    if pool is not None:
        pool.shutdown(wait=True, cancel_futures=True)


@atexit.register
def _shutdown_pools() -> None:
    for pid, workers in list(_POOLS):
        if pid == os.getpid():
            _discard_pool(workers)


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
    this process. ``fn`` must be a module-level function and the items and results picklable. If ``fn`` raises, the
    items not yet started are cancelled, the running ones are waited for (nothing keeps working after this returns)
    and the first exception is re-raised; Ctrl-C does the same and also stops the workers.
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
        pool = _pool(workers)
        futures: dict[Future[R], int] = {}
        try:
            for i, item in enumerate(items):
                futures[pool.submit(fn, item)] = i
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        except BaseException as error:
            for future in futures:
                future.cancel()
            if isinstance(error, (KeyboardInterrupt, BrokenProcessPool)):
                _discard_pool(workers)
            else:
                wait(futures)
            raise
    return results
