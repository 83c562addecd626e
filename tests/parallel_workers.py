"""Module-level functions for the parallel-map tests: spawned workers import only this light module."""

from __future__ import annotations


def square(x: int) -> int:
    return x * x


def fail_on_three(x: int) -> int:
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x
