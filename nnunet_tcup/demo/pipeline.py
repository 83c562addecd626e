"""A resumable pipeline of steps: subprocesses (or Python callables) with one log file each, timings and memory.

Each step runs once per work dir. After a step fully succeeds (exit code 0 and all its declared outputs present)
a marker ``WORK/.demo_steps/NAME.json`` is written atomically with its duration and peak memory; a later run skips
a step whose marker exists and whose outputs are still there, and re-runs it otherwise. A failing step stops the
pipeline with :class:`StepFailed`, which names the step, its command, the exit code and its log file
``WORK/logs/NAME.log`` (the step's stdout and stderr).

Peak memory is the largest resident set size of the step's process tree, from ``os.wait4``'s resource usage
(Linux: the child's own peak or that of its largest waited-for descendant, like ``getrusage(RUSAGE_CHILDREN)``).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shlex
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TextIO

from nnunet_tcup.io_utils import write_json_atomic

MARKER_DIR = ".demo_steps"
LOG_DIR = "logs"
POLL_SECONDS = 0.5


@dataclass(frozen=True)
class ProgressSpec:
    """How to show a step's progress from its log: every line matching ``pattern`` advances a bar of ``total``
    ``unit``s; lines matching ``echo`` are printed to the console (e.g. the losses of each epoch)."""

    pattern: str
    total: int
    unit: str
    echo: str | None = None


@dataclass
class Step:
    """One pipeline step: either ``command`` (argv of a subprocess) or ``action`` (a Python callable).

    ``outputs`` are files or folders that must exist after the step succeeded; a finished step whose outputs have
    disappeared is run again.
    """

    name: str
    title: str
    command: Sequence[str | int | os.PathLike[str]] | None = None  # str() of each is the argv
    action: Callable[[], None] | None = None
    outputs: Sequence[Path] = ()
    progress: ProgressSpec | None = None
    env: dict[str, str] | None = None  # extra environment variables of this step's subprocess
    always_run: bool = False  # run even when finished before (cheap summaries of everything done so far)

    def __post_init__(self) -> None:
        if (self.command is None) == (self.action is None):
            raise ValueError(f"step {self.name!r}: give exactly one of command and action")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.name):
            raise ValueError(f"step name {self.name!r}: use letters, digits, '_', '.', '-' only")

    def describe(self) -> str:
        """The command line (shell-quoted) or the Python callable's name."""
        if self.command is not None:
            prefix = "".join(f"{k}={shlex.quote(v)} " for k, v in (self.env or {}).items())
            return prefix + shlex.join(str(c) for c in self.command)
        return f"python: {getattr(self.action, '__qualname__', repr(self.action))}"


@dataclass
class StepRecord:
    """What a finished step took: wall time (s), peak resident memory (bytes), finish time, log file, CPU time (s)."""

    name: str
    title: str
    command: str
    seconds: float
    peak_rss_bytes: int
    finished_at: str
    log: str
    cpu_seconds: float = 0.0  # user + system CPU time of the step's process tree
    skipped: bool = field(default=False, compare=False)

    def to_json(self) -> dict:
        data = asdict(self)
        data.pop("skipped")
        return data


class StepFailed(RuntimeError):
    """A step exited non-zero, raised, or did not produce its outputs."""

    def __init__(self, step: Step, reason: str, log_path: Path, log_tail: str = ""):
        self.step = step
        self.reason = reason
        self.log_path = log_path
        self.log_tail = log_tail
        super().__init__(self.message())

    def message(self) -> str:
        text = (
            f"step '{self.step.name}' ({self.step.title}) failed: {self.reason}\n"
            f"  command: {self.step.describe()}\n"
            f"  log:     {self.log_path}"
        )
        if self.log_tail:
            tail = "\n".join("    " + line for line in self.log_tail.splitlines())
            text += f"\n  last lines of the log:\n{tail}"
        return text


def _rss_to_bytes(ru_maxrss: int) -> int:
    """``ru_maxrss`` is in KiB on Linux and in bytes on macOS."""
    return int(ru_maxrss) if sys.platform == "darwin" else int(ru_maxrss) * 1024


def _log_tail(path: Path, lines: int = 15) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError:
        return ""
    text = text.replace("\r", "\n")
    return "\n".join([ln for ln in text.splitlines() if ln.strip()][-lines:])


def format_seconds(seconds: float) -> str:
    """``'42.1 s'`` below a minute, ``'3 min 05 s'`` above."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, sec = divmod(int(round(seconds)), 60)
    return f"{minutes} min {sec:02d} s"


def format_bytes(n: int) -> str:
    """Memory in MiB or GiB."""
    if n >= 1024**3:
        return f"{n / 1024**3:.2f} GiB"
    return f"{n / 1024**2:.0f} MiB"


class _LogFollower:
    """Reads a growing log file and turns new complete lines (split on ``\\n`` and ``\\r``) into a list."""

    def __init__(self, path: Path, offset: int = 0):
        self.path = path
        self.offset = offset
        self.handle: TextIO | None = None
        self.pending = ""

    def new_lines(self) -> list[str]:
        if self.handle is None:
            try:
                self.handle = open(self.path, errors="replace")
                self.handle.seek(self.offset)
            except OSError:
                return []
        chunk = self.handle.read()
        if not chunk:
            return []
        text = self.pending + chunk
        parts = re.split(r"[\r\n]", text)
        self.pending = parts.pop()
        return [p for p in parts if p.strip()]

    def close(self) -> None:
        if self.handle is not None:
            self.handle.close()


_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?:\s*")  # nnU-Net's log line prefix


def _tidy(line: str) -> str:
    """A log line for the console: without nnU-Net's timestamp and numpy scalar reprs (np.float32(0.5) -> 0.5)."""
    return re.sub(r"np\.float\d+\(([^)]*)\)", r"\1", _TIMESTAMP.sub("", line.strip()))


class _Progress:
    """Console progress of one running step: a tqdm bar on a terminal, echoed lines only otherwise."""

    def __init__(self, step: Step, console: TextIO, prefix: str):
        from tqdm import tqdm

        self.step = step
        self.console = console
        spec = step.progress
        self.pattern = re.compile(spec.pattern) if spec else None
        self.echo = re.compile(spec.echo) if spec and spec.echo else None
        interactive = hasattr(console, "isatty") and console.isatty()
        self.bar = tqdm(
            total=spec.total if spec else None,
            unit=spec.unit if spec else "it",
            desc=prefix,
            file=console,
            leave=False,
            dynamic_ncols=True,
            disable=not interactive,
            bar_format=None if spec else "{desc} {elapsed}{postfix}",
        )

    def feed(self, lines: Sequence[str]) -> None:
        for line in lines:
            if self.pattern is not None and self.pattern.search(line):
                if self.bar.total is None or self.bar.n < self.bar.total:
                    self.bar.update(1)
            if self.echo is not None and self.echo.search(line):
                self.bar.write("      " + _tidy(line), file=self.console)
        if lines:
            self.bar.set_postfix_str(_tidy(lines[-1])[:60], refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


class PipelineRunner:
    """Runs steps in order in ``work_dir`` with environment ``env`` for subprocesses, printing to ``console``."""

    def __init__(self, work_dir: Path, env: dict[str, str] | None = None, console: TextIO = sys.stdout):
        self.work_dir = Path(work_dir)
        self.env = dict(os.environ if env is None else env)
        self.console = console
        self.marker_dir = self.work_dir / MARKER_DIR
        self.log_dir = self.work_dir / LOG_DIR
        self.records: list[StepRecord] = []  # of the current run(), in order, as steps finish or are skipped

    # ----------------------------------------------------------------------------------------------- markers
    def marker_path(self, step: Step) -> Path:
        return self.marker_dir / f"{step.name}.json"

    def log_path(self, step: Step) -> Path:
        return self.log_dir / f"{step.name}.log"

    def finished_record(self, step: Step) -> StepRecord | None:
        """The record of an earlier successful run of ``step`` if its marker and all its outputs exist."""
        marker = self.marker_path(step)
        if not marker.is_file():
            return None
        try:
            data = json.loads(marker.read_text())
            record = StepRecord(**data)
        except (OSError, ValueError, TypeError):
            return None
        if not all(Path(p).exists() for p in step.outputs):
            return None
        record.skipped = True
        return record

    def invalidate(self, step: Step) -> None:
        """Forget that ``step`` finished (it will run again)."""
        with contextlib.suppress(FileNotFoundError):
            self.marker_path(step).unlink()

    # ------------------------------------------------------------------------------------------------ running
    def run(self, steps: Sequence[Step]) -> list[StepRecord]:
        """Run (or skip) every step in order; raise :class:`StepFailed` at the first failure."""
        names = [s.name for s in steps]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step names in {names}")
        self.marker_dir.mkdir(parents=True, exist_ok=True)
        self.log_dir.mkdir(parents=True, exist_ok=True)
        records = self.records = []
        width = max(len(n) for n in names) if names else 0
        for index, step in enumerate(steps, start=1):
            prefix = f"[{index:>2}/{len(steps)}] {step.name:<{width}}"
            record = None if step.always_run else self.finished_record(step)
            if record is not None:
                self._print(f"{prefix}  skipped: finished in an earlier run ({format_seconds(record.seconds)})")
                records.append(record)
                continue
            self.invalidate(step)
            self._print(f"{prefix}  {step.title} ...")
            record = self._run_step(step, prefix)
            self._print(
                f"{prefix}  done in {format_seconds(record.seconds)} (CPU {format_seconds(record.cpu_seconds)}, "
                f"peak memory {format_bytes(record.peak_rss_bytes)})"
            )
            records.append(record)
        return records

    def _print(self, text: str) -> None:
        print(text, file=self.console, flush=True)

    def _run_step(self, step: Step, prefix: str) -> StepRecord:
        log_path = self.log_path(step)
        start = time.monotonic()
        with open(log_path, "w") as log:
            log.write(
                f"# step {step.name}: {step.title}\n# started {datetime.now().isoformat(timespec='seconds')}\n"
                f"# {step.describe()}\n"
            )
            log.flush()
            if step.command is not None:
                peak, cpu = self._run_command(step, log, log_path, prefix)
            else:
                peak, cpu = self._run_action(step, log, log_path)
        seconds = time.monotonic() - start
        missing = [str(p) for p in step.outputs if not Path(p).exists()]
        if missing:
            raise StepFailed(
                step, f"it finished but did not produce {', '.join(missing)}", log_path, _log_tail(log_path)
            )
        record = StepRecord(
            name=step.name,
            title=step.title,
            command=step.describe(),
            seconds=seconds,
            peak_rss_bytes=peak,
            finished_at=datetime.now().isoformat(timespec="seconds"),
            log=str(log_path),
            cpu_seconds=cpu,
        )
        write_json_atomic(record.to_json(), self.marker_path(step))
        return record

    def _run_command(self, step: Step, log: TextIO, log_path: Path, prefix: str) -> tuple[int, float]:
        """Run the step's subprocess; return its peak RSS (bytes) and CPU time (s)."""
        assert step.command is not None  # a command step (see Step)
        argv = [str(c) for c in step.command]
        try:
            proc = subprocess.Popen(
                argv,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**self.env, **(step.env or {})},
                cwd=self.work_dir,
                start_new_session=True,
            )
        except OSError as e:
            log.write(f"cannot start {argv[0]}: {e}\n")
            raise StepFailed(step, f"cannot start {argv[0]!r} ({e})", log_path) from e
        follower = _LogFollower(log_path, offset=log.tell())  # the step's own output, after our header
        progress = _Progress(step, self.console, prefix)
        try:
            while True:
                pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
                progress.feed(follower.new_lines())
                if pid != 0:
                    break
                time.sleep(POLL_SECONDS)
            returncode = os.waitstatus_to_exitcode(status)
            proc.returncode = returncode  # reaped by wait4; keep Popen from waiting again
            progress.feed(follower.new_lines())
        except BaseException:  # Ctrl-C or any error: take the whole process group down with us
            self._terminate(proc)
            raise
        finally:
            progress.close()
            follower.close()
        if returncode != 0:
            reason = f"killed by signal {-returncode}" if returncode < 0 else f"exit code {returncode}"
            raise StepFailed(step, reason, log_path, _log_tail(log_path))
        return _rss_to_bytes(usage.ru_maxrss), usage.ru_utime + usage.ru_stime

    @staticmethod
    def _terminate(proc: subprocess.Popen) -> None:
        """SIGTERM the step's process group, SIGKILL it after 10 s."""
        if proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()

    def _run_action(self, step: Step, log: TextIO, log_path: Path) -> tuple[int, float]:
        """Run the step's callable in this process; return this process's peak RSS so far and the CPU time used."""
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                assert step.action is not None  # an action step (see Step)
                step.action()
        except Exception as e:
            log.write(traceback.format_exc())
            log.flush()
            raise StepFailed(step, f"{type(e).__name__}: {e}", log_path, _log_tail(log_path, 5)) from e
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
        return _rss_to_bytes(after.ru_maxrss), cpu
