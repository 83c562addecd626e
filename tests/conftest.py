"""Shared test fixtures: isolated nnU-Net folders and a helper to run the real console commands."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

VENV_BIN = Path(sys.executable).parent


def command_path(name: str) -> str:
    """Absolute path of a console script installed next to the running interpreter (nnUNetv2_*, nnunet_tcup)."""
    candidate = VENV_BIN / name
    return str(candidate) if candidate.exists() else name


def run_command(
    args: Sequence[str], env: dict[str, str] | None = None, timeout: float = 900, check: bool = True
) -> subprocess.CompletedProcess:
    """Run a console command (first element resolved with :func:`command_path`), capturing its output.

    On failure with ``check`` the assertion message holds the command and the tail of stdout/stderr.
    """
    argv: list[str] = [command_path(args[0]), *map(str, args[1:])]
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"command failed ({proc.returncode}): {' '.join(argv)}\n--- stdout ---\n{proc.stdout[-4000:]}\n"
            f"--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return proc


def isolated_nnunet_env(root: Path) -> dict[str, str]:
    """Environment for subprocesses with fresh nnUNet_raw / nnUNet_preprocessed / nnUNet_results under
    ``root/nnunet`` (created) and CPU-friendly settings (no torch.compile, single-process data loading)."""
    env = dict(os.environ)
    for key, sub in (("nnUNet_raw", "raw"), ("nnUNet_preprocessed", "preprocessed"), ("nnUNet_results", "results")):
        folder = root / "nnunet" / sub
        folder.mkdir(parents=True, exist_ok=True)
        env[key] = str(folder)
    # nnUNet_n_proc_DA=0 loads training data in the main process; nnUNetv2_plan_and_preprocess needs >= 1 (its
    # planner calls torch.set_num_threads with it), so tests override it for planning. OMP_WAIT_POLICY=PASSIVE
    # keeps 2-thread torch from spinning when the machine is busy.
    env.update(
        {
            "nnUNet_compile": "f",
            "nnUNet_n_proc_DA": "0",
            "nnUNet_def_n_proc": "1",
            "OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"),
            "OMP_WAIT_POLICY": "PASSIVE",
            "MPLBACKEND": "Agg",
        }
    )
    return env


@pytest.fixture
def nnunet_env(tmp_path: Path) -> dict[str, str]:
    """:func:`isolated_nnunet_env` under the test's ``tmp_path``."""
    return isolated_nnunet_env(tmp_path)


#: The longest single tests (each plans and trains its own model: the README block must run as written, the demo is
#: the command under test): collected right after the shared models' groups, so that they start first.
LONGEST_TESTS = (
    "test_readme_cpu_path.py::test_readme_cpu_path_runs_verbatim",
    "test_demo.py::test_demo_smoke_end_to_end_and_resume",
)

#: Test modules that are slow as a whole (they run nnUNetv2_* commands, the demo or fresh interpreters); single slow
#: tests elsewhere carry ``@pytest.mark.slow`` themselves. ``pytest -m "not slow"`` is the fast tier.
SLOW_MODULES = frozenset({"test_discovery", "test_trainer_e2e"})


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Mark :data:`SLOW_MODULES` slow, then order longest first (a stable sort, the order within each tier is kept):
    the shared models' tests, :data:`LONGEST_TESTS`, the other slow tests, the fast tests. With ``-n 2 --dist
    loadgroup`` each worker starts on one model's group, the long single tests follow and the fast tests fill the
    gaps at the end, so both workers end at about the same time."""
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)

    def tier(item: pytest.Item) -> int:
        if item.get_closest_marker("xdist_group") is not None:
            return 0
        if item.nodeid.endswith(LONGEST_TESTS):
            return 1
        return 2 if item.get_closest_marker("slow") is not None else 3

    items.sort(key=tier)


# Session-scoped trained tiny models shared by the slow end-to-end tests (imported last: shared_models uses
# run_command above).
from shared_models import tiny_classes_dataset, tiny_classes_model, tiny_gli_dataset, tiny_gli_model  # noqa: E402, F401
