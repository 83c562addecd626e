"""The one parallel map of the package: worker processes, a tqdm progress bar, a serial fall-back.

Every command with ``--num-workers`` uses :func:`parallel_map` and the same default, :func:`default_num_workers`
(nnU-Net's ``nnUNet_def_n_proc`` when set, else ``min(4, CPU count)``). Workers are started with ``spawn`` (as
nnU-Net starts its own workers): safe next to threads and torch, and no open file descriptor (e.g. a lock) leaks
into them. A worker exits as soon as its parent process dies, even by SIGKILL (Linux parent-death signal, and a
watcher thread elsewhere), so a killed command never leaves workers blocked forever. A worker that dies (SIGKILL,
the out-of-memory killer) is :class:`WorkerDiedError`, one line naming the item it was working on, e.g.
``BraTS-GLI-00001-000: worker died (signal 9; out of memory?)``; the partial files of the pool's workers are removed
first (by their PIDs, in the folders they recorded with :func:`note_partial_dir`; another run's are never touched).
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
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "START_METHOD",
    "WorkerDiedError",
    "default_num_workers",
    "non_negative_int",
    "note_partial_dir",
    "parallel_map",
    "positive_int",
]

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


class WorkerDiedError(ValueError):
    """A worker process of :func:`parallel_map` died (killed by a signal, e.g. SIGKILL by the out-of-memory killer,
    or exited): ``LABEL: worker died (signal 9; out of memory?)``, naming the item it was working on."""


@dataclass
class _Pool:
    """A process pool and its shared bookkeeping: per worker slot, ``(pid, 1 + index of the item being worked on or
    0)`` in ``slots``, and the folders it created partial files in (``\0``-separated, ``_DIR_BYTES`` per slot)."""

    executor: ProcessPoolExecutor
    slots: Any
    dirs: Any


_DIR_BYTES = 8192
_POOLS: dict[tuple[int, int], _Pool] = {}  # by (owning process id, workers): a forked child must not use its
# parent's pool
_WORKER: dict[str, Any] = {}  # in a worker: its slot, the shared arrays, the folders already recorded


def _init_worker(parent_pid: int, slots: Any, dirs: Any) -> None:
    """Worker initializer: exit with the parent, claim a bookkeeping slot (first one without a pid)."""
    _exit_with_parent(parent_pid)
    with slots.get_lock():
        slot = next(i for i in range(len(slots) // 2) if slots[2 * i] == 0)
        slots[2 * slot] = os.getpid()
    _WORKER.update(slot=slot, slots=slots, dirs=dirs, recorded=[])


def note_partial_dir(folder: str | os.PathLike[str]) -> None:
    """Record that this process (if a :func:`parallel_map` worker) creates a partial file in ``folder``, so that
    the parent removes this worker's partial files there if the worker dies. A no-op elsewhere; best effort (a
    worker records at most ``_DIR_BYTES`` bytes of folder names)."""
    if not _WORKER:
        return
    name = os.fsencode(os.path.abspath(folder))
    recorded: list[bytes] = _WORKER["recorded"]
    if name in recorded or b"\0" in name:
        return
    used = sum(len(n) + 1 for n in recorded)
    if used + len(name) + 1 > _DIR_BYTES:
        return
    start = _WORKER["slot"] * _DIR_BYTES + used
    _WORKER["dirs"][start : start + len(name) + 1] = name + b"\0"
    recorded.append(name)


def _tracked_call(fn: Callable[[T], R], index: int, item: T) -> R:
    """Run ``fn(item)`` in a worker with ``index`` published in the worker's slot while it runs."""
    slots, slot = _WORKER.get("slots"), _WORKER.get("slot", 0)
    if slots is not None:
        slots[2 * slot + 1] = index + 1
    try:
        return fn(item)
    finally:
        if slots is not None:
            slots[2 * slot + 1] = 0


def _pool(workers: int) -> _Pool:
    """The process pool of ``workers`` workers, created on first use and reused by later calls in this process
    (a command's check and write phases then share their workers' start-up); shut down at exit."""
    pool = _POOLS.get((os.getpid(), workers))
    if pool is None:
        context = multiprocessing.get_context(START_METHOD)
        slots = context.Array("q", 2 * workers)
        dirs = context.RawArray("c", _DIR_BYTES * workers)
        executor = ProcessPoolExecutor(
            max_workers=workers, mp_context=context, initializer=_init_worker, initargs=(os.getpid(), slots, dirs)
        )
        pool = _POOLS[(os.getpid(), workers)] = _Pool(executor, slots, dirs)
    return pool


def _discard_pool(workers: int) -> None:
    pool = _POOLS.pop((os.getpid(), workers), None)
    if pool is not None:
        pool.executor.shutdown(wait=True, cancel_futures=True)


@atexit.register
def _shutdown_pools() -> None:
    for pid, workers in list(_POOLS):
        if pid == os.getpid():
            _discard_pool(workers)


def _how_it_died(exitcode: int | None) -> str:
    if exitcode is None:
        return "cause unknown"
    if exitcode == -signal.SIGKILL:
        return "signal 9; out of memory?"
    if exitcode < 0:
        with contextlib.suppress(ValueError):
            return f"signal {-exitcode}, {signal.Signals(-exitcode).name}"
        return f"signal {-exitcode}"
    return f"exit code {exitcode}"


def _worker_died(pool: _Pool, processes: dict[int, Any], label: Callable[[int], str]) -> WorkerDiedError:
    """After the pool broke (and was shut down): remove the partial files of its workers (only theirs: by PID, in
    the folders they recorded) and describe the death: the worker killed by a signal other than the executor's
    SIGTERM of the survivors, and the item it was working on."""
    from nnunet_tcup.io_utils import remove_partials_of

    slots = list(pool.slots)
    working = {slots[2 * i]: slots[2 * i + 1] - 1 for i in range(len(slots) // 2) if slots[2 * i]}
    pids = set(working) | set(processes)
    for i in range(len(slots) // 2):
        for name in bytes(pool.dirs[i * _DIR_BYTES : (i + 1) * _DIR_BYTES]).split(b"\0"):
            if name:
                remove_partials_of(os.fsdecode(name), pids)
    codes = {pid: getattr(processes.get(pid), "exitcode", None) for pid in pids}
    dead = sorted(pids, key=lambda pid: (codes[pid] in (None, -signal.SIGTERM), working.get(pid, -1) < 0))
    pid = dead[0] if dead else 0
    index = working.get(pid, -1)
    how = _how_it_died(codes.get(pid))
    if index < 0:
        return WorkerDiedError(f"a worker process died between items ({how})")
    return WorkerDiedError(f"{label(index)}: worker died ({how})")


def parallel_map(
    fn: Callable[[T], R],
    items: Sequence[T],
    *,
    num_workers: int | None = None,
    desc: str = "",
    unit: str = "case",
    progress: bool = True,
    label: Callable[[T], str] | None = None,
) -> list[R]:
    """``[fn(item) for item in items]`` computed in ``num_workers`` spawned processes; results in input order.

    ``num_workers`` None means :func:`default_num_workers`; with 1 worker (or at most one item) everything runs in
    this process. ``fn`` must be a module-level function and the items and results picklable. If ``fn`` raises, the
    items not yet started are cancelled, the running ones are waited for (nothing keeps working after this returns)
    and the first exception is re-raised; Ctrl-C does the same and also stops the workers. If a worker dies (killed,
    out of memory), the other workers are stopped, the partial files of this pool's workers are removed
    (:func:`note_partial_dir`) and :class:`WorkerDiedError` names the item (``label(item)``, default ``str(item)``
    for a string or path, else ``item N of M``).
    """
    workers = default_num_workers() if num_workers is None else num_workers
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"number of workers must be an integer >= 1, got {workers!r}")
    items = list(items)
    results: list[R] = [None] * len(items)  # type: ignore[list-item]
    from tqdm import tqdm

    def name(index: int) -> str:
        item = items[index]
        if label is not None:
            return label(item)
        return str(item) if isinstance(item, (str, os.PathLike)) else f"item {index + 1} of {len(items)}"

    with tqdm(total=len(items), desc=desc, unit=unit, disable=not progress or not items) as bar:
        if workers == 1 or len(items) <= 1:
            for i, item in enumerate(items):
                results[i] = fn(item)
                bar.update(1)
            return results
        pool = _pool(workers)
        futures: dict[Future[R], int] = {}
        processes: dict[int, Any] = {}
        try:
            for i, item in enumerate(items):
                futures[pool.executor.submit(_tracked_call, fn, i, item)] = i
            processes = dict(getattr(pool.executor, "_processes", None) or {})  # pid -> Process, for exit codes
            for future in as_completed(futures):
                results[futures[future]] = future.result()
                bar.update(1)
        except BaseException as error:
            for future in futures:
                future.cancel()
            if isinstance(error, (KeyboardInterrupt, BrokenProcessPool)):
                _discard_pool(workers)
                if isinstance(error, BrokenProcessPool):
                    raise _worker_died(pool, processes, name) from None
            else:
                wait(futures)
            raise
    return results
