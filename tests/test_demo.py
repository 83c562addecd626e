"""``nnunet_tcup demo``: the whole user path end to end (smoke settings), resumability, failures, the report."""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import run_command

from nnunet_tcup.demo.config import TrainingBudget, check_work_dir_settings, make_settings
from nnunet_tcup.demo.pipeline import PipelineRunner, ProgressSpec, Step, StepFailed
from nnunet_tcup.demo.report import draw_overlay, label_rgba, tumour_slice

PY = sys.executable


def _demo_env() -> dict:
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        env.pop(key, None)  # the demo must not need them
    env.update({"OMP_NUM_THREADS": env.get("OMP_NUM_THREADS", "2"), "MPLBACKEND": "Agg"})
    return env


def _markdown_links(md: str) -> list:
    return re.findall(r"\]\(([^)]+)\)", md)


# ------------------------------------------------------------------------------------------- end to end (slow)
@pytest.mark.slow
def test_demo_smoke_end_to_end_and_resume(tmp_path):
    work = tmp_path / "demo"
    # one worker per nnU-Net pool: each spawned worker costs seconds of imports, and the suite runs on 2 cores
    smoke = ["nnunet_tcup", "demo", "--smoke", "--num-workers", "1", "--work-dir", work]
    proc = run_command(smoke, env=_demo_env(), timeout=900)
    out = proc.stdout
    report = work / "report"
    md = (report / "report.md").read_text()
    # every figure and table the report links to exists
    links = [link for link in _markdown_links(md) if not link.startswith("http")]
    assert links, md
    for link in links:
        assert (report / link).exists(), f"report.md links to missing {link}"
    import pandas as pd

    for stage in ("before", "after"):
        table = pd.read_csv(report / f"metrics_tcupgan_{stage}_pp.csv")
        assert sorted(set(table["Labels"])) == ["ET", "TC", "WT"]
        assert len(table) == 2 * 3, table  # 2 held-out cases x 3 regions
        assert table["LesionWise_Score_Dice"].between(0, 1).all()
        assert (report / f"metrics_tcupgan_{stage}_pp.png").stat().st_size > 10_000
    overlays = sorted((report / "overlays").glob("overlay_tcupgan_*.png"))
    progress = sorted((report / "progress").glob("progress_tcupgan_fold*.png"))
    assert len(overlays) == 2 and [p.name for p in progress] == [
        "progress_tcupgan_fold0.png",
        "progress_tcupgan_fold1.png",
    ]
    import matplotlib.image as mpimg

    assert mpimg.imread(overlays[0]).shape[1] > 4 * mpimg.imread(overlays[0]).shape[0]  # one row of 6 panels
    assert "lesion-wise Dice WT" in md and "Peak memory: " in md
    assert len(list((work / "submission" / "tcupgan").glob("BraTS-GLI-*.nii.gz"))) == 2
    review = work / "review" / "tcupgan"
    assert (review / "review.html").is_file() and "review/tcupgan/review.html" in md  # linked from the report
    assert len(pd.read_csv(review / "review.csv")) == 2  # both held-out cases ranked
    assert "report: " in out and out.count(" done in ") == 15, out
    train_log = (work / "logs" / "train_tcupgan_fold0.log").read_text()
    assert "Using trainer 'nnUNetTrainerTCuPGAN_demo'" in train_log  # found by the stock nnUNetv2_train
    assert len(re.findall(r": Epoch \d+\s*$", train_log, flags=re.M)) == 2  # the smoke budget: 2 epochs
    assert "discriminator loss" in train_log

    # second run: finished steps are skipped (the report is always rewritten)
    proc = run_command(smoke, env=_demo_env(), timeout=300)
    assert proc.stdout.count("skipped: finished in an earlier run") == 14, proc.stdout
    assert re.search(r"report\s+done in", proc.stdout), proc.stdout
    assert (report / "report.md").read_text() != md  # rewritten (new time stamp)


@pytest.mark.slow
def test_demo_failing_step_names_step_and_log(tmp_path):
    work = tmp_path / "demo"
    work.mkdir()
    (work / "brats").write_text("not a folder")  # synth cannot create WORK/brats/train
    proc = run_command(
        ["nnunet_tcup", "demo", "--smoke", "--work-dir", work], env=_demo_env(), check=False, timeout=120
    )
    assert proc.returncode == 1 and "not empty and holds no demo run" in proc.stderr, proc.stderr
    assert sorted(p.name for p in work.iterdir()) == ["brats"]  # nothing written into a foreign folder
    check_work_dir_settings(work / "fresh", make_settings("smoke"))  # as if an earlier demo run had started here
    work = work / "fresh"
    (work / "brats").write_text("not a folder")
    proc = run_command(
        ["nnunet_tcup", "demo", "--smoke", "--work-dir", work], env=_demo_env(), check=False, timeout=300
    )
    assert proc.returncode == 1
    log = work / "logs" / "synth_train.log"
    assert "step 'synth_train'" in proc.stderr and str(log) in proc.stderr, proc.stderr
    assert "nnunet_tcup synth" in log.read_text()
    assert not (work / ".demo_steps" / "synth_train.json").exists()
    # the same work dir with other settings is refused before anything runs
    proc = run_command(
        ["nnunet_tcup", "demo", "--smoke", "--cases", "7", "--work-dir", work],
        env=_demo_env(),
        check=False,
        timeout=120,
    )
    assert proc.returncode == 1 and "other settings" in proc.stderr and "train_cases" in proc.stderr


# ------------------------------------------------------------------------------------------- pipeline (fast)
def _write_file_step(name: str, target: Path, text: str = "x") -> Step:
    return Step(
        name,
        f"write {target.name}",
        command=[PY, "-c", f"open({str(target)!r}, 'w').write({text!r})"],
        outputs=[target],
    )


def test_pipeline_skips_finished_steps_and_reruns_missing_outputs(tmp_path, capsys):
    a, b, c = tmp_path / "a.txt", tmp_path / "b.txt", tmp_path / "c.txt"
    always = _write_file_step("three", c)
    always.always_run = True
    steps = [_write_file_step("one", a), _write_file_step("two", b), always]
    runner = PipelineRunner(tmp_path / "work")
    first = runner.run(steps)
    assert [r.skipped for r in first] == [False, False, False] and a.read_text() == "x"
    assert all(r.peak_rss_bytes > 1_000_000 and r.cpu_seconds > 0 for r in first)
    b.unlink()
    second = runner.run(steps)
    assert [r.skipped for r in second] == [True, False, False] and b.is_file()
    assert second[0].seconds == first[0].seconds  # the earlier run's timing is kept


def test_pipeline_failure_names_step_log_and_keeps_no_marker(tmp_path):
    runner = PipelineRunner(tmp_path / "work")
    bad = Step("bad", "fail on purpose", command=[PY, "-c", "import sys; print('boom'); sys.exit(3)"])
    with pytest.raises(StepFailed) as info:
        runner.run([bad])
    message = info.value.message()
    assert "step 'bad'" in message and "exit code 3" in message and "boom" in message
    assert str(tmp_path / "work" / "logs" / "bad.log") in message
    assert not (tmp_path / "work" / ".demo_steps" / "bad.json").exists()


def test_pipeline_missing_output_is_a_failure(tmp_path):
    runner = PipelineRunner(tmp_path / "work")
    lazy = Step("lazy", "exit 0 without output", command=[PY, "-c", "pass"], outputs=[tmp_path / "never"])
    with pytest.raises(StepFailed, match="did not produce"):
        runner.run([lazy])


def test_pipeline_python_action_failure_and_progress(tmp_path):
    runner = PipelineRunner(tmp_path / "work")

    def broken():
        raise ValueError("bad input file X")

    with pytest.raises(StepFailed, match="ValueError: bad input file X"):
        runner.run([Step("action", "python step", action=broken)])
    assert "Traceback" in (tmp_path / "work" / "logs" / "action.log").read_text()
    echo = Step(
        "echo",
        "progress lines",
        command=[PY, "-c", "print('t: Epoch 0'); print('t: Epoch 1')"],
        progress=ProgressSpec(pattern=r"Epoch \d", total=2, unit="epoch", echo=r"Epoch 1"),
    )
    import io

    console = io.StringIO()
    PipelineRunner(tmp_path / "work2", console=console).run([echo])
    assert "t: Epoch 1" in console.getvalue() and "t: Epoch 0" not in console.getvalue()


def test_step_definition_errors():
    with pytest.raises(ValueError, match="exactly one"):
        Step("x", "neither")
    with pytest.raises(ValueError, match="letters"):
        Step("a b", "bad name", command=["true"])


# ------------------------------------------------------------------------------------------- settings (fast)
def test_settings_presets_overrides_and_errors(tmp_path):
    quick = make_settings("quick", epochs=3)
    assert quick.budget == TrainingBudget(
        epochs=3, iterations=quick.budget.iterations, val_iterations=quick.budget.val_iterations
    )
    full = make_settings("full")
    assert full.budget is None and full.trainer == "nnUNetTrainerTCuPGAN" and full.folds == (0, 1, 2, 3, 4)
    assert make_settings("full", iterations=5).trainer == "nnUNetTrainerTCuPGAN_demo"
    with pytest.raises(ValueError, match="at least 5 training cases"):
        make_settings("smoke", train_cases=3)
    with pytest.raises(ValueError, match="distinct folds"):
        make_settings("smoke", folds=(0, 0))
    with pytest.raises(ValueError, match="--shape"):
        make_settings("smoke", shape=(8, 32, 32))
    with pytest.raises(ValueError, match="positive integer"):
        TrainingBudget(epochs=0)
    with pytest.raises(ValueError, match="NNUNET_TCUP_DEMO_ITERATIONS='ten'"):
        TrainingBudget.from_environment({"NNUNET_TCUP_DEMO_ITERATIONS": "ten"})
    assert TrainingBudget.from_environment({"NNUNET_TCUP_DEMO_EPOCHS": "4"}).epochs == 4
    smoke = make_settings("smoke")
    check_work_dir_settings(tmp_path / "w", smoke)
    check_work_dir_settings(tmp_path / "w", smoke)  # same settings: fine
    with pytest.raises(ValueError, match="seed: 0 -> 5"):
        check_work_dir_settings(tmp_path / "w", make_settings("smoke", seed=5))
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "thesis.tex").write_text("precious")
    with pytest.raises(ValueError, match="not empty and holds no demo run"):
        check_work_dir_settings(tmp_path / "mine", smoke)


# ------------------------------------------------------------------------------------------- overlays (fast)
def test_overlay_slice_choice_colours_and_shape_check(tmp_path):
    gt = np.zeros((6, 20, 20), np.uint8)
    gt[2, 5:9, 5:9] = 2
    gt[4, 3:15, 3:15] = 1
    gt[4, 6:9, 6:9] = 3
    assert tumour_slice(gt) == 4 and tumour_slice(np.zeros_like(gt)) == 3
    rgba = label_rgba(gt[4])
    assert rgba[0, 0, 3] == 0 and rgba[7, 7, 3] > 0 and tuple(rgba[7, 7, :3]) != tuple(rgba[4, 4, :3])
    rng = np.random.default_rng(0)
    images = [rng.normal(100, 10, gt.shape).astype(np.float32) for _ in range(4)]
    out = tmp_path / "o.png"
    assert draw_overlay("case", images, gt, gt, out, "caption") == 4 and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="prediction has shape"):
        draw_overlay("case", images, gt, gt[:5], tmp_path / "p.png")


# ------------------------------------------------------------------------------------------- step plans (fast)
def test_full_and_quick_step_plans(tmp_path):
    from nnunet_tcup.demo.steps import DemoPaths, build_steps, models_for, subprocess_environment

    full = DemoPaths(tmp_path, make_settings("full"))
    steps = {s.name: s for s in build_steps(full, "cuda", baseline=True, num_processes=4, report_action=print)}
    train = [n for n in steps if n.startswith("train_tcupgan_fold")]
    assert train == [f"train_tcupgan_fold{f}" for f in range(5)]
    argv = [str(a) for a in steps["train_tcupgan_fold3"].command]
    assert argv[-8:] == ["3", "-tr", "nnUNetTrainerTCuPGAN", "-p", "nnUNetPlans", "-device", "cuda", "--c"]
    assert not any(k.startswith("NNUNET_TCUP_DEMO") for k in steps["train_tcupgan_fold0"].env or {})  # paper schedule
    assert "--shape" not in argv and "--shape" not in [str(a) for a in steps["synth_train"].command]
    predict = [str(a) for a in steps["predict_tcupgan"].command]
    assert predict[predict.index("-f") + 1 : predict.index("-device")] == ["0", "1", "2", "3", "4"]
    # the baseline gets TCuP-GAN's budget: 30 epochs of one pass over a fold's 48 training cases at batch size 2
    assert steps["train_baseline_fold0"].env["NNUNET_TCUP_DEMO_EPOCHS"] == "30"
    assert steps["train_baseline_fold0"].env["NNUNET_TCUP_DEMO_ITERATIONS"] == "24"
    assert "nnUNetTrainer_demo" in steps["train_baseline_fold0"].command
    env = subprocess_environment(full, "cuda", 4, base={})
    assert env["nnUNet_results"] == str(tmp_path / "nnUNet_results") and "OMP_WAIT_POLICY" not in env
    quick = DemoPaths(tmp_path, make_settings("quick"))
    env = subprocess_environment(quick, "cpu", 2, base={"nnUNet_extTrainer": "/mine", "OMP_WAIT_POLICY": "ACTIVE"})
    assert env["nnUNet_extTrainer"].split(os.pathsep)[0] == "/mine"  # the user's entries are kept
    assert env["OMP_WAIT_POLICY"] == "ACTIVE" and env["NNUNET_TCUP_DEMO_EPOCHS"] == "6"
    names = [s.name for s in build_steps(quick, "cpu", baseline=False, num_processes=2, report_action=print)]
    assert names[0] == "synth_train" and names[-1] == "report" and not any("baseline" in n for n in names)
    # the TCuP-GAN model's folds are reviewed on the held-out cases (the baseline is not)
    convert = [str(a) for a in steps["convert"].command]
    assert convert[convert.index("--mode") + 1] == "regions"  # the package's default formulation, as convert's
    review = [str(a) for a in steps["review_tcupgan"].command]
    assert review[1:4] == ["review", "--model", str(full.results_folder(models_for(full.settings, True)[0]))]
    assert review[review.index("-f") + 1 : review.index("-i")] == ["0", "1", "2", "3", "4"]
    assert "review_baseline" not in steps and names.index("review_tcupgan") == len(names) - 2


# ------------------------------------------------------------------------------- nnUNet_n_proc_DA per step (fast)
def test_each_step_sets_its_own_data_augmentation_workers(tmp_path, monkeypatch):
    from nnunet_tcup.demo.steps import DemoPaths, build_steps, da_workers, subprocess_environment

    monkeypatch.setenv("nnUNet_n_proc_DA", "0")  # the README's old CPU tip, exported by the user
    quick = DemoPaths(tmp_path, make_settings("quick"))
    env = subprocess_environment(quick, "cpu", 3)
    assert "nnUNet_n_proc_DA" not in env  # not inherited by any step
    steps = {s.name: s for s in build_steps(quick, "cpu", baseline=True, num_processes=3, report_action=print)}
    assert steps["plan_and_preprocess"].env == {"nnUNet_n_proc_DA": "3"}  # 0 would crash nnU-Net's planner
    assert "nnUNet_n_proc_DA=3 " in steps["plan_and_preprocess"].describe()  # shown in the report's commands
    for name in ("train_tcupgan_fold0", "train_baseline_fold1"):
        assert steps[name].env["nnUNet_n_proc_DA"] == "0"  # CPU: augmentation in the training process
    for name, step in steps.items():
        if not name.startswith(("plan", "train")):
            assert "nnUNet_n_proc_DA" not in (step.env or {}), name
    assert da_workers("train", "cuda", 2, {"nnUNet_n_proc_DA": "0"}) == {}  # nnU-Net's default on a GPU
    assert da_workers("train", "cuda", 2, {"nnUNet_n_proc_DA": "6"}) == {"nnUNet_n_proc_DA": "6"}
    assert da_workers("plan", "cuda", 0) == {"nnUNet_n_proc_DA": "1"}


# ------------------------------------------------------------------------------- post-processing check (fast)
def _metrics_csv(path: Path, dice: dict) -> None:
    import pandas as pd

    rows = [
        {
            "case": f"c{k}",
            "Labels": region,
            "LesionWise_Score_Dice": value,
            "LesionWise_Score_HD95": 5.0,
            "Legacy_Dice": value,
        }
        for region, value in dice.items()
        for k in range(2)
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(path, index=False)


@pytest.mark.parametrize(
    "after, verdict",
    [
        ({"WT": 0.68, "TC": 0.69, "ET": 0.53}, "WORSE"),
        ({"WT": 0.75, "TC": 0.83, "ET": 0.62}, "unchanged"),
        ({"WT": 0.80, "TC": 0.83, "ET": 0.62}, "better"),
    ],
)
def test_report_first_table_says_whether_held_out_cases_got_worse(tmp_path, after, verdict):
    import json

    from nnunet_tcup.demo.report import ReportInputs, write_report
    from nnunet_tcup.demo.steps import DemoPaths, models_for

    paths = DemoPaths(tmp_path, make_settings("quick"))
    model = models_for(paths.settings, baseline=False)[0]
    before = {"WT": 0.75, "TC": 0.83, "ET": 0.62}
    _metrics_csv(paths.metrics_csv(model, False), before)
    _metrics_csv(paths.metrics_csv(model, True), after)
    tuned = {"wt_threshold": 25.0, "tc_threshold": 0.0, "et_threshold": 0.0, "min_slices": 5}
    doc = {
        "kwargs": tuned,
        "filter_kept": True,
        "decision": "out-of-sample gain +0.0400 exceeds 2 standard errors",
        "selected": {"kwargs": tuned, "lesionwise_dice": before},
        "in_sample_gain": 0.126,
        "n_cases": 7,
        "out_of_sample": {"gain_mean": 0.04, "gain_se": 0.011},
        "lesionwise_dice_before": before,
    }
    paths.crossval_folder(model).mkdir(parents=True)
    (paths.crossval_folder(model) / "postprocessing.json").write_text(json.dumps(doc))
    md = write_report(ReportInputs(paths=paths, models=[model], device="cpu", records=[], run_seconds=1.0)).read_text()
    first_table = next(block for block in md.split("\n\n") if block.startswith("|"))
    row = first_table.splitlines()[2]
    assert "WT > 25" in row and "| yes |" in row and "+0.126" in row and "+0.040 ± 0.011 (7 cases)" in row
    assert verdict in row and "0.733 -> " in row
    assert ("made the held-out cases worse" in md.split("|")[0]) == (verdict == "WORSE")  # said before any table
    if verdict == "WORSE":
        assert "WT 0.750 -> 0.680" in row and "ET 0.620 -> 0.530" in row
