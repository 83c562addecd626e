"""One CLI vocabulary: the same option names and defaults on every command (``--num-workers``, ``--work-dir``,
``--device auto``, ``--no-progress``), the old names kept as hidden aliases, help texts that say what the code does,
the demo's quick run on every machine with the regions formulation, and the exit codes (2 usage, 1 runtime)."""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nnunet_tcup import cli

ROOT = Path(__file__).resolve().parents[1]


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    """``{"convert": parser, "postprocess tune": parser, ...}`` for every (sub)command below ``parser``."""
    found: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                inner = _subparsers(sub)
                if inner:
                    found.update({f"{name} {k}": v for k, v in inner.items()})
                else:
                    found[name] = sub
    return found


def _option(parser: argparse.ArgumentParser, flag: str) -> argparse.Action | None:
    return next((a for a in parser._actions if flag in a.option_strings), None)


COMMANDS = _subparsers(cli.build_parser())


def _help(command: str) -> str:
    return COMMANDS[command].format_help()


@pytest.mark.parametrize(
    "command",
    ["demo", "synth", "convert", "export", "evaluate", "postprocess tune", "postprocess apply", "review"],
)
def test_worker_count_is_num_workers(command):
    assert _option(COMMANDS[command], "--num-workers") is not None
    assert "--num-processes" not in _help(command) and "--workers " not in _help(command)


@pytest.mark.parametrize(
    "command", ["synth", "convert", "export", "evaluate", "postprocess tune", "postprocess apply", "review"]
)
def test_every_command_with_a_progress_bar_has_no_progress(command):
    assert _option(COMMANDS[command], "--no-progress") is not None


@pytest.mark.parametrize("command", ["demo", "review"])
def test_device_defaults_to_auto(command):
    action = _option(COMMANDS[command], "--device")
    assert action is not None and action.default == "auto" and "auto" in (action.choices or ())


def test_demo_num_processes_is_a_hidden_alias():
    parser = cli.build_parser()
    assert parser.parse_args(["demo", "--num-processes", "3"]).num_workers == 3
    assert parser.parse_args(["demo", "--num-workers", "5"]).num_workers == 5
    assert parser.parse_args(["demo"]).num_workers == 2
    assert "--num-processes" not in _help("demo")


def test_review_resolves_auto_to_the_device_torch_sees(monkeypatch):
    import torch

    from nnunet_tcup.review.cli import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("mps") == "mps"


def test_demo_runs_the_quick_regions_preset_even_with_a_gpu(tmp_path, monkeypatch):
    """No preset given and a GPU found: the quick budget (not --full) on the regions dataset."""
    from nnunet_tcup.demo import cli as demo_cli
    from nnunet_tcup.demo.pipeline import PipelineRunner

    class Stop(Exception):
        pass

    def stop(self, steps):
        raise Stop

    monkeypatch.setattr(demo_cli, "_resolve_device", lambda requested: "cuda")
    monkeypatch.setattr(PipelineRunner, "run", stop)
    work = tmp_path / "demo"
    with pytest.raises(Stop):
        cli.main(["demo", "--work-dir", str(work)])
    settings = json.loads((work / "demo_settings.json").read_text())
    assert settings["mode"] == "quick" and settings["dataset_mode"] == "regions"
    assert settings["shape"] == [64, 64, 48] and settings["folds"] == [0, 1]


@pytest.mark.parametrize(
    "argv, progress",
    [
        (["synth", "OUT", "--challenge", "GLI", "--cases", "1"], True),
        (["synth", "OUT", "--challenge", "GLI", "--cases", "1", "--no-progress"], False),
    ],
)
def test_synth_no_progress_reaches_the_writer(monkeypatch, argv, progress):
    from nnunet_tcup.synthetic import writer

    seen = {}
    monkeypatch.setattr(writer, "write_dataset", lambda *a, **k: seen.update(k) or [])
    assert cli.main(argv) == 0
    assert seen["progress"] is progress


class _Stop(Exception):
    pass


def _stop_with(seen: dict):
    def fake(*args, **kwargs):
        seen.update(kwargs)
        raise _Stop

    return fake


@pytest.mark.parametrize("flag, progress", [([], True), (["--no-progress"], False)])
def test_postprocess_no_progress_reaches_tune_and_apply(tmp_path, monkeypatch, flag, progress):
    from nnunet_tcup.postprocessing import apply, nnunet_results, tuning

    seen: dict = {}
    monkeypatch.setattr(tuning, "pairs_from_folders", lambda pred, gt: [])
    monkeypatch.setattr(tuning, "tune", _stop_with(seen))
    with pytest.raises(_Stop):
        cli.main(["postprocess", "tune", "--challenge", "GLI", "--pred", str(tmp_path), "--gt", str(tmp_path), *flag])
    assert seen["progress"] is progress
    seen.clear()
    monkeypatch.setattr(nnunet_results, "read_postprocessing_json", lambda path: None)
    monkeypatch.setattr(apply, "apply_to_folder", _stop_with(seen))
    with pytest.raises(_Stop):
        cli.main(["postprocess", "apply", "-i", "in", "-o", "out", "--json", "pp.json", *flag])
    assert seen["progress"] is progress


def test_help_texts_say_what_the_code_does():
    assert "labelsTs" in _help("convert")  # --test: a -seg file there is written, not ignored
    assert "is ignored" not in _help("convert")
    assert "labels mode" not in _help("export") and "classes" in _help("export")
    assert "review" in _help("demo") and "review" in cli.build_parser().format_help()
    assert "a file, not a folder" in " ".join(_help("evaluate").split())
    top = " ".join(cli.build_parser().format_help().split())
    assert "2 a usage error" in top and "1 an error while running" in top


def test_usage_errors_exit_2_runtime_errors_exit_1(tmp_path, capsys):
    with pytest.raises(SystemExit) as usage:
        cli.main(["convert", "--challenge", "GLI"])  # --dataset-id and --train missing
    assert usage.value.code == 2
    missing = tmp_path / "missing"
    code = cli.main(["evaluate", "--gt", str(missing), "--pred", str(tmp_path), "--challenge", "GLI", "-o", "r.csv"])
    assert code == 1 and str(missing) in capsys.readouterr().err


def _load_benchmark(name: str, monkeypatch: pytest.MonkeyPatch):
    """The benchmark script ``benchmarks/NAME.py`` as a module (registered in sys.modules for this test only)."""
    spec = importlib.util.spec_from_file_location(f"_vocabulary_{name}", ROOT / "benchmarks" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "name, old_work, old_workers",
    [
        ("bench_convert", "--workdir", "--workers"),
        ("check_full_size", "--workdir", "--workers"),
        ("bench_gpu", "--work", "--workers"),
    ],
)
def test_benchmarks_take_work_dir_and_num_workers_with_hidden_old_names(
    name, old_work, old_workers, capsys, monkeypatch
):
    module = _load_benchmark(name, monkeypatch)
    new = module.parse_args(["--work-dir", "w1", "--num-workers", "3"])
    old = module.parse_args([old_work, "w1", old_workers, "3"])
    assert str(new.work_dir) == str(old.work_dir) == "w1" and new.num_workers == old.num_workers == 3
    with pytest.raises(SystemExit):
        module.parse_args(["-h"])
    text = capsys.readouterr().out
    assert "--work-dir" in text and "--num-workers" in text and f"{old_work} " not in text


def test_bench_learning_work_dir_and_its_old_name(tmp_path, monkeypatch):
    module = _load_benchmark("bench_learning", monkeypatch)
    seen = []
    monkeypatch.setattr(module, "report", lambda work, draws: seen.append(Path(work)) or "")
    assert module.main(["--work-dir", str(tmp_path / "a"), "--report"]) == 0
    assert module.main(["--workdir", str(tmp_path / "b"), "--report"]) == 0
    assert module.main(["--report"]) == 0
    assert seen == [tmp_path / "a", tmp_path / "b", Path("bench_learning_work")]


def test_demo_report_and_pp_check_import_no_cycle():
    """pp_check reads the results CSVs through demo.results and never imports the report module."""
    code = "import sys, nnunet_tcup.demo.pp_check; print('nnunet_tcup.demo.report' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
