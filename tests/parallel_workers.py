"""Module-level functions for the parallel-map tests: spawned workers import only this light module."""

from __future__ import annotations


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x


def write_or_die(job: tuple[str, int, int]) -> int:
    """Write ``FOLDER/ITEM.txt`` atomically, slowly (0.3 s inside the write); the item equal to ``victim`` kills its
    own worker with SIGKILL in the middle of its write (as the out-of-memory killer would)."""
    import os
    import signal
    import time
    from pathlib import Path

    from nnunet_tcup.io_utils import atomic_output

    folder, item, victim = job
    with atomic_output(Path(folder) / f"{item}.txt") as tmp:
        tmp.write_text("half")
        if item == victim:
            os.kill(os.getpid(), signal.SIGKILL)
        time.sleep(0.3)
        tmp.write_text("whole")
    return item
