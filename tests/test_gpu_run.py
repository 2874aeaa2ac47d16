"""The one-shot GPU run, exercised end to end by its dry run (tiny models, seconds-long phases, any machine).

One dry run with the core-test phase given too little time: it must be cut and reported while the
training phase after it still runs, every file in $OUT must be within the device tool's limits, the
benchmark JSON must hold every section, and training must resume from the returned shards.
"""

from __future__ import annotations

import json
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch

from editgan_core.gpu_run import plan, runner
from editgan_core.train import gan, shards

REPO = plan.REPO
TOTAL_S = 150
CUT_BUDGET_S = 0.5  # pytest cannot even import torch in that: core_tests is cut


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("gpu_run")
    out, work = root / "out", root / "work"
    done = subprocess.run([sys.executable, "-m", "editgan_core.gpu_run", "run", "--dry-run", "--out", str(out),
                           "--work", str(work), "--total", str(TOTAL_S), f"--budget=core_tests={CUT_BUDGET_S}",
                           "--budget=train=30"], cwd=REPO, capture_output=True, text=True, timeout=TOTAL_S + 60)
    summary = json.loads((out / plan.SUMMARY).read_text())
    return done, summary, out, root


@pytest.mark.slow  # reads the whole dry run
def test_prints_what_it_carries_and_returns(dry_run):
    done, _, _, _ = dry_run
    assert f"carry: {plan.CARRY_DIR}/" in done.stdout
    for name in plan.RETURNS:
        assert name in done.stdout


@pytest.mark.slow  # reads the whole dry run
def test_an_overrunning_phase_is_cut_and_later_phases_still_run(dry_run):
    done, summary, _, _ = dry_run
    phases = summary["phases"]
    assert done.returncode == 1, done.stdout[-3000:]  # a cut phase fails the run
    assert phases["core_tests"]["status"] == "cut" and phases["core_tests"]["junit"] is None, phases["core_tests"]
    assert phases["core_tests"]["elapsed_s"] <= CUT_BUDGET_S + 2 * runner.KILL_GRACE_S
    for name in ("build", "cuda_tests", "bench", "train"):
        assert phases[name]["status"] == "ok", (name, phases[name])
        assert phases[name]["elapsed_s"] <= phases[name]["budget_s"] + 1, (name, phases[name])
    assert summary["elapsed_s"] <= TOTAL_S, summary["elapsed_s"]
    assert list(phases) == list(plan.PHASE_NAMES)


@pytest.mark.slow  # reads the whole dry run
def test_outputs_stay_within_the_device_limits(dry_run):
    _, summary, out, _ = dry_run
    check = plan.check_out(out)
    assert check["ok"], check["problems"]
    assert summary["out_check"]["ok"]
    names = {f["name"] for f in check["files"]}
    assert {plan.LOG, plan.SUMMARY, plan.BENCH, plan.TESTS, plan.SAMPLES} <= names
    assert len(check["files"]) <= plan.OUT_MAX_FILES
    assert "=== train: ok" in (out / plan.LOG).read_text()


@pytest.mark.slow  # reads the whole dry run
def test_cuda_test_results_are_recorded(dry_run):
    _, summary, out, _ = dry_run
    suites = {s.get("name"): s for s in ET.parse(out / plan.TESTS).getroot()}
    assert set(suites) == {"cuda_tests"}  # core_tests was cut before pytest wrote its report
    junit = summary["phases"]["cuda_tests"]["junit"]
    assert junit["tests"] >= 35 and junit["failures"] == junit["errors"] == 0
    if not torch.cuda.is_available():
        assert junit["skipped"] == junit["tests"]
        assert summary["phases"]["cuda_tests"]["ops_for_later_phases"] == "native"


@pytest.mark.slow  # reads the whole dry run
def test_benchmark_json_has_every_section(dry_run):
    _, _, out, _ = dry_run
    bench = json.loads((out / plan.BENCH).read_text())
    assert bench["errors"] == {}
    row = bench["generator"][0]
    assert {"config", "impl", "precision", "forward", "forward_backward"} <= set(row) and row["forward"] > 0
    assert {r["precision"] for r in bench["generator"]} == set(bench["precisions"])
    assert all(v["image_psnr_db"] > 20 for v in bench["accuracy"]["demo64"].values())
    memory = bench["segmentation_memory"]
    assert {"full_image", "region", "region_backward", "official_full_stack"} <= set(memory)
    assert memory["official_stack_bytes"] == memory["d"] * memory["size"] ** 2 * 4
    timings = bench["pipeline"]
    for key in ("embed_step", "apply_and_render", "refine_3", "learn_edit_5", "edit_step", "generator_forward"):
        assert timings[key] > 0, key


@pytest.mark.slow  # reads the whole dry run
def test_training_resumes_from_the_returned_shards(dry_run):
    _, summary, out, root = dry_run
    result = summary["phases"]["train"]["result"]
    last = result["saves"][-1]
    assert len(last["shards"]) >= 2 and all(size <= 2**20 for size in last["shards"].values())  # 0.5-MiB shards
    args = shards.assemble(out, root / "resumed")
    state = torch.load(root / "resumed" / "checkpoint.pt", weights_only=True)
    assert state["step"] == last["step"] and state["images_seen"] == last["images_seen"]
    gan.main([*args, "--kimg", str((state["images_seen"] + 4) / 1000), "--threads", "1"])
    assert torch.load(root / "resumed" / "checkpoint.pt", weights_only=True)["step"] == last["step"] + 1


def test_budgets_keep_time_for_the_later_phases():
    build, cuda_tests, *_, train = plan.PHASES
    assert plan.phase_budget(build, [cuda_tests, train], 1000, dry=False) == build.cap_s
    assert plan.phase_budget(build, [cuda_tests, train], 100, dry=False) == 100 - cuda_tests.floor_s - train.floor_s
    assert plan.phase_budget(train, [], 300, dry=False) == 300  # the rest
    assert plan.phase_budget(build, [], 100, dry=False, override=5) == 5


def test_device_call_fits_the_command_limit():
    call = plan.run_call(plan.DEFAULT_TOTAL_S)
    assert call == {"command": "bash scripts/gpu_run.sh", "carry": [plan.CARRY_DIR],
                    "timeout_s": plan.DEFAULT_TOTAL_S + plan.TIMEOUT_MARGIN_S}
    assert plan.run_call(900)["timeout_s"] == plan.COMMAND_MAX_S
    assert "--phases train" in plan.run_call(200, ["--phases", "train"])["command"]


def test_out_check_names_every_limit(tmp_path):
    for i in range(plan.OUT_MAX_FILES + 1):
        (tmp_path / f"f{i}.txt").write_text("x")
    (tmp_path / "a" / "b" / "c").mkdir(parents=True)
    (tmp_path / "a" / "b" / "c" / "deep.txt").write_text("x")
    (tmp_path / "big.bin").write_bytes(b"\0" * (plan.OUT_MAX_FILE_BYTES + 1))
    problems = " ".join(plan.check_out(tmp_path)["problems"])
    assert "more than 8" in problems and "big.bin" in problems and "deep.txt" in problems


def test_only_referenced_fixtures_travel_and_ui_tests_are_found(tmp_path):
    source, tests = tmp_path / "fixtures", tmp_path / "tests"
    source.mkdir()
    tests.mkdir()
    for name in ("used.pt", "unused.pt"):
        (source / name).write_bytes(b"x")
    (tests / "test_a.py").write_text('DATA = "used.pt"\n')
    (tests / "test_ui.py").write_text("import gradio as gr\n")
    assert [p.name for p in plan.needed_fixtures(source, tests)] == ["used.pt"]
    assert runner.ui_test_files(tests) == ["tests/test_ui.py"]
    assert "tests/test_webapp_logic.py" in runner.ui_test_files(REPO / "tests")


def test_junit_reports_merge_per_phase(tmp_path):
    part = tmp_path / "part.xml"
    part.write_text('<testsuites><testsuite name="pytest" tests="3" failures="1" errors="0" skipped="1">'
                    '<testcase name="a"/></testsuite></testsuites>')
    target = tmp_path / "tests.xml"
    assert runner.merge_junit(target, part, "cuda_tests") == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1}
    runner.merge_junit(target, part, "core_tests")
    runner.merge_junit(target, part, "cuda_tests")  # a rerun replaces its phase's suite
    assert [s.get("name") for s in ET.parse(target).getroot()] == ["core_tests", "cuda_tests"]


def test_cli_refuses_unknown_phases_and_budgets():
    from editgan_core.gpu_run.__main__ import parse

    with pytest.raises(SystemExit):
        parse(["run", "--out", "x", "--phases", "build,fly"])
    with pytest.raises(SystemExit):
        parse(["run", "--out", "x", "--budget", "fly=3"])


def test_prepare_copies_into_the_ignored_carry_folder_and_prints_the_call(tmp_path):
    repo, source = tmp_path / "repo", tmp_path / "fixtures"
    (repo / "tests").mkdir(parents=True)
    source.mkdir()
    (source / "g64.pt").write_bytes(b"x" * 1000)
    (repo / "tests" / "test_a.py").write_text('PATH = "g64.pt"\n')
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    with pytest.raises(RuntimeError, match="not git-ignored"):
        plan.prepare(source, plan.DEFAULT_TOTAL_S, [], repo=repo)
    (repo / ".gitignore").write_text(f"{plan.CARRY_DIR}/\n")
    done = plan.prepare(source, plan.DEFAULT_TOTAL_S, ["--phases", "build"], repo=repo)
    assert done["copied"] == [f"{plan.FIXTURES_DIR}/g64.pt"]
    assert done["travelling_bytes"] >= 1000
    assert done["run"]["command"] == "bash scripts/gpu_run.sh --phases build"
    assert plan.prepare(source, 200, [], repo=repo, tests=False)["copied"] == []
