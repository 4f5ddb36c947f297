"""The sweep command without training: spec expansion, run names, Slurm script, slots, SIGTERM, failures, early stop.

The runs here use a stand-in trainer that writes a fake train_gpt.py log line by line (tests/helpers.py)."""
from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import REPO, fake_log, subprocess_env, tool_command, write_fake_trainer
from tools import common as C
from tools.runs import sweep

SWEEP = tool_command("sweep")  # python -m tools sweep

SPEC = """
name = "unit"
seeds = [1, 2]
[base]
ITERATIONS = 20
DEVICE = "cpu"
[grid]
MATRIX_LR = [0.02, 0.04]
NUM_LAYERS = [2, 3]
[[configs]]
MLP_MULT = 2
[[configs]]
MLP_MULT = 4
BIGRAM_BUCKETS = 0
[random]
count = 3
seed = 7
[random.params]
WARMDOWN_ITERS = { int_uniform = [0, 10] }
SCALAR_LR = { log_uniform = [0.001, 0.1], digits = 3 }
BETA2 = { uniform = [0.9, 0.99] }
MUON_BACKEND_STEPS = { choice = [3, 5] }
"""


def _spec(tmp_path: Path, text: str, name: str = "spec.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def test_spec_expands_configs_grid_random_and_seeds(tmp_path):
    spec = sweep.load_spec(_spec(tmp_path, SPEC))
    assert len(spec.runs) == 2 * 4 * 3 * 2
    assert spec.axes == ["MLP_MULT", "BIGRAM_BUCKETS", "MATRIX_LR", "NUM_LAYERS", "WARMDOWN_ITERS", "SCALAR_LR",
                         "BETA2", "MUON_BACKEND_STEPS", "SEED"]
    names = [r.name for r in spec.runs]
    assert len(set(names)) == len(names)
    r0 = spec.runs[0]
    assert r0.env["ITERATIONS"] == "20" and r0.env["DEVICE"] == "cpu" and r0.axes["SEED"] == "1"
    assert r0.name.startswith("mlp_mult2-matrix_lr0.02-num_layers2-") and "-s1-" in r0.name
    for r in spec.runs:
        assert 0 <= int(r.env["WARMDOWN_ITERS"]) <= 10
        assert 0.001 <= float(r.env["SCALAR_LR"]) <= 0.1 and len(r.env["SCALAR_LR"].replace("0.", "", 1)) <= 5
        assert 0.9 <= float(r.env["BETA2"]) <= 0.99 and r.env["MUON_BACKEND_STEPS"] in ("3", "5")
    # deterministic: same spec, same runs and names; another sampler seed, other samples
    assert [r.name for r in sweep.load_spec(_spec(tmp_path, SPEC, "again.toml")).runs] == names
    other = sweep.load_spec(_spec(tmp_path, SPEC.replace("seed = 7", "seed = 8"), "other.toml"))
    assert {r.env["SCALAR_LR"] for r in other.runs} != {r.env["SCALAR_LR"] for r in spec.runs}


def test_log_uniform_samples_spread_over_decades():
    samples = sweep.sample_random({"count": 400, "seed": 0, "params": {"LR": {"log_uniform": [1e-4, 1e-1]}}})
    logs = [math.log10(float(s["LR"])) for s in samples]
    per_decade = [sum(lo <= x < lo + 1 for x in logs) for lo in (-4, -3, -2)]
    assert all(100 <= n <= 170 for n in per_decade), per_decade  # ~133 each: uniform in log space


@pytest.mark.parametrize("text,msg", [
    ("[grid]\nSEED = [1]\n", None),
    ("seeds = [1]\n[grid]\nSEED = [1, 2]\n", "SEED is set by both"),
    ("[grid]\nA = [1]\n[[configs]]\nA = 2\n", "A is set by both"),
    ("[base]\nOUT_DIR = 'x'\n", "`base.OUT_DIR`: OUT_DIR is set by the driver"),
    ("[grid]\nlower = [1]\n", "`grid`: 'lower' is not an UPPER_SNAKE_CASE"),
    ("[random]\ncount = 2\n[random.params]\nA = { log_uniform = [0, 1] }\n", "log_uniform needs low > 0"),
    ("[random]\ncount = 2\n[random.params]\nA = { gauss = [0, 1] }\n", "`random.params.A`: give exactly one of"),
    ("bogus = 1\n", "the spec has unknown key.s. bogus"),
    ("[grid]\nA = []\n", "`grid.A` is an empty array, expected a non-empty array"),
    ("grid = [1, 2]\n", "`grid` is an array, expected a table"),
    ("base = 3\n", "`base` is an integer 3, expected a table"),
    ("configs = 5\n", "`configs` is an integer 5, expected an array of tables"),
    ("random = [1]\n", "`random` is an array, expected a table"),
    ("seeds = 7\n", "`seeds` is an integer 7, expected a non-empty array"),
])
def test_bad_specs_are_refused_with_the_reason(tmp_path, text, msg):
    p = _spec(tmp_path, text)
    if msg is None:
        assert len(sweep.load_spec(p).runs) == 1
        return
    with pytest.raises(C.ToolError, match=msg) as e:
        sweep.load_spec(p)
    assert str(e.value).startswith(f"{p}: ")


# Every key of every table, with the wrong type or out of its range: one error naming the file and the key. The first
# four gave tracebacks before the spec was typed (issue 23), even with --dry-run.
MISTYPED = {
    "nproc_per_node_string": ('nproc_per_node = "x"\n', r'`nproc_per_node` is a string "x", expected an integer in \[1, 1024\]'),
    "script_number": ("script = 5\n", "`script` is an integer 5, expected a non-empty string"),
    "digits_string": ('[random]\ncount = 2\n[random.params]\nA = { uniform = [0, 1], digits = "x" }\n',
                      r'`random.params.A.digits` is a string "x", expected an integer in \[1, 17\]'),
    "digits_negative": ("[random]\ncount = 2\n[random.params]\nA = { uniform = [0, 1], digits = -1 }\n",
                        r"`random.params.A.digits` is an integer -1, expected an integer in \[1, 17\]"),
    "nproc_per_node_zero": ("nproc_per_node = 0\n", r"`nproc_per_node` is an integer 0, expected an integer in \[1, "),
    "nproc_per_node_bool": ("nproc_per_node = true\n", "`nproc_per_node` is a boolean"),
    "name_number": ("name = 5\n", "`name` is an integer 5, expected a non-empty string"),
    "name_with_a_slash": ('name = "../x"\n', "`name` '../x' must be 1-100 letters"),
    "launcher_unknown": ('launcher = "srun"\n', r'`launcher` is a string "srun", expected "torchrun" or "python"'),
    "script_with_a_newline": ('script = "a\\nb"\n', "`script` is a string .*without control characters"),
    "seed_not_an_integer": ('seeds = ["a"]\n', r'`seeds\[0\]` is a string "a", expected an integer in \[0, '),
    "seed_negative": ("seeds = [1, -1]\n", r"`seeds\[1\]` is an integer -1"),
    "seeds_empty": ("seeds = []\n", "`seeds` is an empty array"),
    "base_value_table": ("[base]\nA = { B = 1 }\n", "`base.A` is a table, expected a string"),
    "base_value_newline": ('[base]\nA = "x\\nrm -rf ~"\n', "`base.A` is a string .*without control characters"),
    "base_value_nan": ("[base]\nA = nan\n", "`base.A` is nan, expected a finite number"),
    "base_value_date": ("[base]\nA = 1979-05-27\n", "`base.A` is a date"),
    "grid_values_not_an_array": ('[grid]\nA = "x"\n', '`grid.A` is a string "x", expected a non-empty array'),
    "grid_value_array": ("[grid]\nA = [[1, 2]]\n", r"`grid.A\[0\]` is an array"),
    "config_not_a_table": ("configs = [1]\n", r"`configs\[0\]` is an integer 1, expected a table"),
    "config_value_inf": ("[[configs]]\nA = inf\n", r"`configs\[0\].A` is inf, expected a finite number"),
    "random_unknown_key": ("[random]\ncount = 1\nsamples = 3\n", "`random` has unknown key.s. samples"),
    "random_count_string": ('[random]\ncount = "3"\n', '`random.count` is a string "3", expected an integer'),
    "random_count_negative": ("[random]\ncount = -1\n", r"`random.count` is an integer -1, expected an integer in \[0, "),
    "random_seed_float": ("[random]\nseed = 1.5\n", "`random.seed` is a float 1.5, expected an integer"),
    "random_params_not_a_table": ("[random]\ncount = 1\nparams = 3\n", "`random.params` is an integer 3, expected a table"),
    "random_count_without_params": ("[random]\ncount = 2\n", "a count of samples needs a .random.params. table"),
    "param_not_a_table": ("[random]\ncount = 1\n[random.params]\nA = 3\n", "`random.params.A` is an integer 3"),
    "param_unknown_key": ("[random]\ncount = 1\n[random.params]\nA = { uniform = [0, 1], step = 2 }\n",
                          "`random.params.A` has unknown key.s. step"),
    "param_digits_on_choice": ("[random]\ncount = 1\n[random.params]\nA = { choice = [1, 2], digits = 2 }\n",
                               "`random.params.A` has unknown key.s. digits"),
    "param_bounds_infinite": ("[random]\ncount = 1\n[random.params]\nA = { uniform = [0, inf] }\n",
                              r"`random.params.A.uniform` is an array, expected \[low, high\], two finite numbers"),
    "param_bounds_three": ("[random]\ncount = 1\n[random.params]\nA = { uniform = [0, 1, 2] }\n",
                           r"expected \[low, high\]"),
    "param_bounds_reversed": ("[random]\ncount = 1\n[random.params]\nA = { uniform = [1, 0] }\n", "low 1 > high 0"),
    "param_int_bounds_floats": ("[random]\ncount = 1\n[random.params]\nA = { int_uniform = [0.5, 2] }\n",
                                "two integers"),
    "param_choice_empty": ("[random]\ncount = 1\n[random.params]\nA = { choice = [] }\n",
                           "`random.params.A.choice` is an empty array"),
    "param_choice_array": ("[random]\ncount = 1\n[random.params]\nA = { choice = [1, [2]] }\n",
                           r"`random.params.A.choice\[1\]` is an array"),
    "param_digits_too_many": ("[random]\ncount = 1\n[random.params]\nA = { log_uniform = [1e-3, 1], digits = 18 }\n",
                              r"`random.params.A.digits` is an integer 18, expected an integer in \[1, 17\]"),
}


@pytest.mark.parametrize("case", MISTYPED, ids=list(MISTYPED))
def test_every_key_is_checked_for_its_type_and_range(tmp_path, case):
    text, msg = MISTYPED[case]
    p = _spec(tmp_path, 'name = "typed"\n' * (not text.startswith("name")) + text)
    with pytest.raises(C.ToolError, match=msg) as e:
        sweep.load_spec(p)
    assert str(e.value).startswith(f"{p}: ") and "\n" not in str(e.value)


TEN_AXES = "[grid]\n" + "".join(f"AXIS_{i} = [{', '.join(map(str, range(10)))}]\n" for i in range(10))
# Specs whose expansion was built before it was counted: a 10-axis grid of 10 values each ended in a MemoryError,
# [random] count = 100000000000 hung with no output (issue 23).
TOO_MANY = {
    "ten_axes_of_ten": (TEN_AXES, "10,000,000,000"),
    "random_count": ("[random]\ncount = 100000000000\n[random.params]\nA = { uniform = [0, 1] }\n", "100,000,000,000"),
    "product_of_parts": ("seeds = [1, 2, 3]\n[grid]\nA = [" + ", ".join(map(str, range(60))) + "]\n"
                         "[random]\ncount = 60\n[random.params]\nB = { uniform = [0, 1] }\n", "10,800"),
}


@pytest.mark.parametrize("case", TOO_MANY, ids=list(TOO_MANY))
def test_a_spec_is_counted_before_it_is_expanded_and_refused_over_the_limit(tmp_path, case):
    text, count = TOO_MANY[case]
    p = _spec(tmp_path, 'name = "big"\n' + text)
    with pytest.raises(C.ToolError, match=f"expands to {count} runs, more than the {sweep.MAX_RUNS:,} one sweep may have"):
        sweep.load_spec(p)


def test_a_spec_at_the_limit_expands_and_one_over_it_does_not():
    seeds = list(range(10))
    spec = sweep.expand_spec({"name": "s", "script": "other.py", "seeds": seeds,
                              "grid": {"A": list(range(100)), "B": list(range(10))}})
    assert len(spec.runs) == sweep.MAX_RUNS == 10_000
    with pytest.raises(C.ToolError, match="expands to 10,010 runs"):
        sweep.expand_spec({"name": "s", "script": "other.py", "seeds": seeds,
                           "grid": {"A": list(range(91)), "B": list(range(11))}})


def test_sample_random_refuses_a_count_over_the_limit():
    with pytest.raises(C.ToolError, match=f"expands to 10,001 runs, more than the {sweep.MAX_RUNS:,}"):
        sweep.sample_random({"count": sweep.MAX_RUNS + 1, "params": {"A": {"uniform": [0, 1]}}})


@pytest.mark.parametrize("content,msg", [
    ("a = " + "[" * 200_000 + "]" * 200_000 + "\n", "not valid TOML .nested too deeply."),
    ("name = 'x'\n# " + "x" * (1 << 20) + "\n", "sweep spec is 1,048,5.. bytes, more than the 1,048,576 accepted"),
    (b"name = '\xff'\n", "not valid UTF-8"),
    ("name = \n", "not valid TOML"),
], ids=["nested_200000_deep", "over_1_MiB", "not_utf8", "not_toml"])
def test_a_spec_file_that_is_not_a_small_toml_document_is_one_error(tmp_path, content, msg):
    p = tmp_path / "spec.toml"
    p.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(C.ToolError, match=msg) as e:
        sweep.load_spec(p)
    assert str(e.value).startswith(f"{p}: ")


def test_example_spec_parses_and_dry_run_prints_commands(tmp_path, capsys):
    ex = REPO / "sweeps" / "example.toml"
    spec = sweep.load_spec(ex)
    assert sweep.main(["run", str(ex), "--dry-run", "--runs-dir", str(tmp_path / "runs")]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == len(spec.runs) >= 4
    for run, line in zip(spec.runs, lines):
        assert f"RUN_ID={run.name}" in line and f"OUT_DIR={tmp_path / 'runs' / 'example' / run.name}" in line
        assert "--standalone --nproc_per_node=1" in line and line.endswith("train_gpt.py")
    assert not (tmp_path / "runs").exists()  # a dry run starts nothing


@pytest.mark.parametrize("spec_path", sorted((REPO / "sweeps").glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_spec_expands_to_runs_train_gpt_accepts(spec_path):
    """A spec in sweeps/ is how docs/techniques.md's figures are reproduced: every run it expands to must resolve to
    valid settings (names and values), or the reproduction would stop at the first bad run."""
    import train_gpt
    spec = sweep.load_spec(spec_path)
    assert spec.runs
    for run in spec.runs:
        h = train_gpt.Hyperparameters.from_env({**run.env, "RUN_ID": run.name})
        assert h.seed == int(run.env.get("SEED", h.seed))


@pytest.mark.slow
def test_slurm_script_has_one_array_task_per_run(tmp_path):
    p = _spec(tmp_path, 'name = "sl"\nseeds = [1, 2]\n[grid]\nMATRIX_LR = [0.02, 0.04]\n')
    spec = sweep.load_spec(p)
    text = sweep.slurm_script(spec, p, runs_dir="runs", partition="gpu", time_limit="00:20:00", gpus_per_task=1,
                              cpus_per_task=8, max_parallel=2, nproc=1, workdir="/work/golf")
    assert text.startswith("#!/bin/bash\n")
    for line in ("#SBATCH --array=0-3%2", "#SBATCH --partition=gpu", "#SBATCH --time=00:20:00",
                 "#SBATCH --gpus-per-task=1", "#SBATCH --cpus-per-task=8", "#SBATCH --output=runs/sl/slurm-%A_%a.out",
                 "cd /work/golf", 'case "$SLURM_ARRAY_TASK_ID" in'):
        assert line in text.splitlines(), line
    for r in spec.runs:
        assert f"  {r.index}) RUN={r.name} ;;  # MATRIX_LR={r.axes['MATRIX_LR']} SEED={r.axes['SEED']}" in text
    assert f'python -m tools sweep run-one {p} --run "$RUN" --runs-dir runs --launcher torchrun --nproc-per-node 1' in text
    out = tmp_path / "job.sh"
    assert sweep.main(["slurm", str(p), "--out", str(out)]) == 0 and out.read_text().count(") RUN=") == 4
    r = subprocess.run(["bash", "-n", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_run_one_runs_a_single_named_run_in_the_sweep_layout(tmp_path):
    fake = write_fake_trainer(tmp_path / "fake_train.py")
    p = _spec(tmp_path, 'name = "one"\n[grid]\nMATRIX_LR = [0.02, 0.04]\n')
    spec = sweep.load_spec(p)
    name = spec.runs[1].name
    args = [*SWEEP, "run-one", str(p), "--run", name, "--runs-dir", str(tmp_path / "runs"),
            "--launcher", "python", "--script", str(fake)]
    r = subprocess.run(args, capture_output=True, text=True, env=subprocess_env(), cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    st = json.loads((tmp_path / "runs" / "one" / name / "state.json").read_text())
    assert st["status"] == "done" and st["result"]["val_bpb"] == pytest.approx(1.04)
    assert not (tmp_path / "runs" / "one" / spec.runs[0].name).exists()
    args[args.index(name)] = "nope"
    r = subprocess.run(args, capture_output=True, text=True, env=subprocess_env())
    assert r.returncode == 1 and r.stderr.startswith("error: no run named nope")


def _drive(tmp_path, spec_text, *extra, fake_env=None, wait=True):
    fake = write_fake_trainer(tmp_path / "fake_train.py")
    p = _spec(tmp_path, spec_text)
    args = [*SWEEP, "run", str(p), "--runs-dir", str(tmp_path / "runs"), "--launcher", "python",
            "--script", str(fake), "--poll-seconds", "0.05", "--quiet", *extra]
    env = subprocess_env(**{**(fake_env or {}), "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})  # a stub predictor here
    if not wait:
        return subprocess.Popen(args, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, start_new_session=True), p
    return subprocess.run(args, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120), p


def _states(tmp_path, sweep_name):
    return {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "runs" / sweep_name).glob("*/state.json")}


@pytest.mark.slow
def test_gpu_slots_run_in_parallel_with_one_device_each(tmp_path):
    r, _ = _drive(tmp_path, 'name = "g"\n[grid]\nMATRIX_LR = [0.01, 0.02, 0.03, 0.04]\n', "--gpus", "0,1",
                  fake_env={"FAKE_STEP_SLEEP": "0.03"})
    assert r.returncode == 0, r.stderr
    infos = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "g").glob("*/env.json")]
    assert len(infos) == 4 and {i["CUDA_VISIBLE_DEVICES"] for i in infos} == {"0", "1"}
    spans = sorted((i["start"], i["end"]) for i in infos)
    assert any(b[0] < a[1] for a, b in zip(spans, spans[1:]))  # two runs overlapped in time


@pytest.mark.slow
def test_cpu_core_budget_sets_threads_and_parallelism(tmp_path):
    r, _ = _drive(tmp_path, 'name = "c"\n[grid]\nMATRIX_LR = [0.01, 0.02, 0.03]\n', "--cpu-cores", "2",
                  "--cores-per-run", "1", fake_env={"FAKE_STEP_SLEEP": "0.03"})
    assert r.returncode == 0, r.stderr
    infos = [json.loads(p.read_text()) for p in (tmp_path / "runs" / "c").glob("*/env.json")]
    assert len(infos) == 3 and {i["OMP_NUM_THREADS"] for i in infos} == {"1"}
    assert {i["CUDA_VISIBLE_DEVICES"] for i in infos} == {os.environ.get("CUDA_VISIBLE_DEVICES")}


@pytest.mark.slow
def test_failed_run_is_recorded_with_stderr_and_the_sweep_goes_on(tmp_path):
    text = 'name = "f"\n[[configs]]\nMATRIX_LR = 0.01\n[[configs]]\nFAKE_FAIL = 1\n[[configs]]\nMATRIX_LR = 0.03\n'
    r, p = _drive(tmp_path, text)
    assert r.returncode == 0, r.stderr
    states = _states(tmp_path, "f")
    by_status = sorted(s["status"] for s in states.values())
    assert by_status == ["done", "done", "failed"]
    failed = next(s for s in states.values() if s["status"] == "failed")
    assert failed["returncode"] == 3 and "exit code 3" in failed["error"] and "FAKE_FAIL is set" in failed["error"]
    rows = sweep.collect(sweep.load_spec(p), tmp_path / "runs")
    assert [r["status"] for r in rows] == ["done", "done", "failed"] and "FAKE_FAIL" in rows[2]["note"]
    # a second driver run leaves the failure alone; --retry-failed reruns it
    r, _ = _drive(tmp_path, text)
    assert _states(tmp_path, "f")[failed["name"]]["attempts"] == 1
    r, _ = _drive(tmp_path, text, "--retry-failed")
    assert _states(tmp_path, "f")[failed["name"]]["attempts"] == 2


@pytest.mark.slow
def test_sigterm_to_the_driver_interrupts_runs_and_a_restart_finishes_them(tmp_path):
    text = 'name = "t"\n[grid]\nMATRIX_LR = [0.01, 0.02, 0.03]\n'
    proc, p = _drive(tmp_path, text, fake_env={"FAKE_STEP_SLEEP": "0.08"}, wait=False)
    deadline = time.time() + 60
    while time.time() < deadline:
        st = _states(tmp_path, "t")
        if any(s["status"] == "done" for s in st.values()) and any(s["status"] == "running" for s in st.values()):
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGTERM)
    proc.wait(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM
    st = _states(tmp_path, "t")
    assert sorted(s["status"] for s in st.values()) == ["done", "interrupted"]
    done_before = {n: s for n, s in st.items() if s["status"] == "done"}
    r, _ = _drive(tmp_path, text)
    assert r.returncode == 0, r.stderr
    st = _states(tmp_path, "t")
    assert len(st) == 3 and all(s["status"] == "done" for s in st.values())
    for n, s in done_before.items():
        assert st[n] == s  # finished results untouched
    assert sorted(s["attempts"] for s in st.values()) == [1, 1, 2]


@pytest.mark.slow
def test_driver_recovers_a_run_that_finished_while_unrecorded(tmp_path):
    text = 'name = "rec"\n[grid]\nMATRIX_LR = [0.01]\n'
    r, p = _drive(tmp_path, text)
    spec = sweep.load_spec(p)
    name = spec.runs[0].name
    sdir = tmp_path / "runs" / "rec"
    st = json.loads((sdir / name / "state.json").read_text())
    st.update(status="running", result=None)  # as if the driver died between exit and record
    sweep.write_state(sdir, name, st)
    todo, done = sweep.Driver(spec, tmp_path / "runs", "python", 1, "x", [{"label": "d", "env": {}}]).classify()
    assert todo == [] and [r.name for r in done] == [name]
    st = json.loads((sdir / name / "state.json").read_text())
    assert st["status"] == "done" and st["recovered"] and st["attempts"] == 1 and st["result"]["val_bpb"] > 0


STUB = '''
def should_stop(prefix, best_final, margin, min_fraction):
    calls = prefix["steps"], prefix["values"], prefix["total_steps"]
    if prefix["hparams"].get("MATRIX_LR") == "0.9" and len(prefix["steps"]) >= 1:
        return True, 9.99, f"stub: lr 0.9 is hopeless (best {best_final:.3f}, margin {margin})"
    return False, None, "keep going"
'''


@pytest.mark.slow
def test_early_stop_hook_stops_a_run_with_the_predictors_reason(tmp_path):
    (tmp_path / "stub_predict.py").write_text(STUB)
    text = 'name = "es"\n[grid]\nMATRIX_LR = [0.01, 0.9]\n'
    r, p = _drive(tmp_path, text, "--early-stop-margin", "0.02", "--early-stop-min-fraction", "0.2",
                  "--predictor", "stub_predict:should_stop", "--check-seconds", "0.05",
                  fake_env={"FAKE_STEP_SLEEP": "0.05", "ITERATIONS": "40"})
    assert r.returncode == 0, r.stderr
    st = {s["axes"]["MATRIX_LR"]: s for s in _states(tmp_path, "es").values()}
    assert st["0.01"]["status"] == "done"
    stopped = st["0.9"]
    assert stopped["status"] == "stopped_early" and stopped["predicted"] == 9.99
    assert stopped["reason"].startswith("stub: lr 0.9 is hopeless (best 1.0") and "margin 0.02" in stopped["reason"]
    assert stopped["result"]["steps"] < 40
    rows = sweep.collect(sweep.load_spec(p), tmp_path / "runs")
    assert rows[1]["status"] == "stopped_early" and rows[1]["note"].startswith("stub:")
    r, _ = _drive(tmp_path, text)  # resumed sweep: a stopped run stays stopped
    assert _states(tmp_path, "es")[stopped["name"]]["attempts"] == 1


@pytest.mark.slow
def test_early_stop_with_the_real_predictor(tmp_path):
    text = 'name = "esr"\n[grid]\nMATRIX_LR = [0.01, 0.5]\n'
    r, _ = _drive(tmp_path, text, "--early-stop-margin", "0.05", "--early-stop-min-fraction", "0.3",
                  "--check-seconds", "0.05", fake_env={"FAKE_STEP_SLEEP": "0.05", "ITERATIONS": "40"})
    assert r.returncode == 0, r.stderr
    st = {s["axes"]["MATRIX_LR"]: s for s in _states(tmp_path, "esr").values()}
    assert st["0.01"]["status"] == "done"
    assert st["0.5"]["status"] == "stopped_early", st["0.5"]
    assert "predicted final val_bpb" in st["0.5"]["reason"]


def test_spec_settings_are_checked_like_train_gpt_checks_them():
    with pytest.raises(C.ToolError, match=r"MATRX_LR is not a setting of train_gpt.py \(did you mean MATRIX_LR\?\)"):
        sweep.expand_spec({"name": "s", "base": {"ITERATIONS": 10}, "grid": {"MATRX_LR": [0.01, 0.02]}})
    import train_gpt
    settings = {f.name.upper() for f in __import__("dataclasses").fields(train_gpt.Hyperparameters)}
    only = next(n for n in sorted(train_gpt.RECORD_ONLY_SETTINGS) if train_gpt.setting_name_problem(n, settings)
                and "record scripts" in train_gpt.setting_name_problem(n, settings))
    with pytest.raises(C.ToolError, match=f"{only} is a setting of the challenge's record scripts"):
        sweep.expand_spec({"name": "s", "base": {only: 0.99}})
    # another script has its own settings: the train_gpt.py rule does not apply
    assert len(sweep.expand_spec({"name": "s", "script": "other.py", "grid": {"MATRX_LR": [0.01, 0.02]}}).runs) == 2
    assert len(sweep.expand_spec({"name": "s", "base": {"OMP_NUM_THREADS": 1}, "grid": {"MATRIX_LR": [0.01, 0.02]}}).runs) == 2


# The specs that once gave a traceback or ran away, with what their one error line must say. Each goes through every
# sweep subcommand, as a user runs it, with its address space capped: a regression fails with an error, not a machine
# out of memory.
SPECS_THROUGH_EVERY_COMMAND = {
    "grid_array": ("grid = [1, 2]\n", "`grid` is an array, expected a table"),
    "base_number": ("base = 3\n", "`base` is an integer 3, expected a table"),
    "nproc_per_node_string": MISTYPED["nproc_per_node_string"],
    "script_number": MISTYPED["script_number"],
    "digits_string": MISTYPED["digits_string"],
    "digits_negative": MISTYPED["digits_negative"],
    "ten_axes_of_ten": (TEN_AXES, "expands to 10,000,000,000 runs, more than the 10,000"),
    "random_count": (TOO_MANY["random_count"][0], "expands to 100,000,000,000 runs, more than the 10,000"),
}
SUBCOMMANDS = {"run --dry-run": ["run", "{spec}", "--dry-run"], "run": ["run", "{spec}", "--launcher", "python"],
               "run-one": ["run-one", "{spec}", "--run", "x"], "table": ["table", "{spec}"],
               "table --json": ["table", "{spec}", "--json"], "plot": ["plot", "{spec}"], "slurm": ["slurm", "{spec}"]}


def _cap_memory():
    import resource
    resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))


@pytest.mark.slow
@pytest.mark.parametrize("case", SPECS_THROUGH_EVERY_COMMAND, ids=list(SPECS_THROUGH_EVERY_COMMAND))
def test_a_bad_spec_is_one_error_line_for_every_command(tmp_path, case):
    text, msg = SPECS_THROUGH_EVERY_COMMAND[case]
    p = _spec(tmp_path, 'name = "b"\n' + text)
    for label, cmd in SUBCOMMANDS.items():
        args = [a.replace("{spec}", str(p)) for a in cmd]
        r = subprocess.run([*SWEEP, *args, "--runs-dir", str(tmp_path / "runs")], capture_output=True, text=True,
                           env=subprocess_env(), timeout=60, preexec_fn=_cap_memory)
        lines = r.stderr.strip().splitlines()
        assert r.returncode == 1 and len(lines) == 1, (label, r.returncode, r.stderr[-2000:])
        assert lines[0].startswith(f"error: {p}: ") and re.search(msg, lines[0]), (label, lines[0])
    assert not (tmp_path / "runs").exists()  # refused before anything was written


def _wait_running(tmp_path, sweep_name, timeout=60):
    deadline = time.time() + timeout
    while time.time() < deadline:
        running = [s for s in _states(tmp_path, sweep_name).values() if s["status"] == "running"]
        if running:
            return running[0]
        time.sleep(0.05)
    raise AssertionError("no run started")


@pytest.mark.slow
def test_run_one_cannot_race_the_sweep_driver_nor_the_driver_a_run_one(tmp_path):
    """`run-one` once took only its own lock, so it ran a run that `sweep run` was running."""
    text = 'name = "race"\n[grid]\nMATRIX_LR = [0.01, 0.02]\n'
    hold = tmp_path / "release"
    proc, p = _drive(tmp_path, text, fake_env={"FAKE_HOLD": str(hold)}, wait=False)
    try:
        running = _wait_running(tmp_path, "race")
        fake = tmp_path / "fake_train.py"
        one = [*SWEEP, "run-one", str(p), "--run", running["name"], "--runs-dir", str(tmp_path / "runs"),
               "--launcher", "python", "--script", str(fake)]
        r = subprocess.run(one, capture_output=True, text=True, env=subprocess_env(), timeout=60)
        assert r.returncode == 1 and "another driver ('python -m tools sweep run') is running sweep race" in r.stderr, r.stderr
        assert _states(tmp_path, "race")[running["name"]]["attempts"] == 1
    finally:
        hold.touch()
        proc.wait(timeout=120)
    assert proc.returncode == 0, proc.stderr.read()
    # the other way round: while a run-one runs, the whole-sweep driver is refused; another run's run-one is not
    text2 = 'name = "race2"\n[grid]\nMATRIX_LR = [0.01, 0.02]\n'
    p2 = _spec(tmp_path, text2, "race2.toml")
    spec = sweep.load_spec(p2)
    hold2 = tmp_path / "release2"
    env = subprocess_env(FAKE_HOLD=hold2)
    base = [*SWEEP, "run-one", str(p2), "--runs-dir", str(tmp_path / "runs"), "--launcher", "python",
            "--script", str(tmp_path / "fake_train.py")]
    first = subprocess.Popen(base + ["--run", spec.runs[0].name], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_running(tmp_path, "race2")
        whole = subprocess.Popen([*SWEEP, "run", str(p2), "--runs-dir", str(tmp_path / "runs"), "--launcher",
                                  "python", "--script", str(tmp_path / "fake_train.py"), "--quiet"],
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        same = subprocess.Popen(base + ["--run", spec.runs[0].name], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=env)
        assert whole.wait(timeout=60) == 1 and "another driver is running sweep race2 or one of its runs" in whole.stderr.read()
        assert same.wait(timeout=60) == 1 and f"another driver is running run {spec.runs[0].name}" in same.stderr.read()
        assert first.poll() is None  # both were refused while the first run-one was still running
        other = subprocess.Popen(base + ["--run", spec.runs[1].name], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True, env=env)
        deadline = time.time() + 60  # a run-one of another run goes on beside it (a Slurm array)
        while time.time() < deadline and sum(s["status"] == "running" for s in _states(tmp_path, "race2").values()) < 2:
            time.sleep(0.05)
        assert sum(s["status"] == "running" for s in _states(tmp_path, "race2").values()) == 2
    finally:
        hold2.touch()
        first.wait(timeout=120)
    assert other.wait(timeout=120) == 0, other.stderr.read()
    assert first.returncode == 0, first.stderr.read()
    st = _states(tmp_path, "race2")
    assert sorted(s["status"] for s in st.values()) == ["done", "done"] and all(s["attempts"] == 1 for s in st.values())


@pytest.mark.slow
def test_an_over_budget_run_is_finished_and_its_row_says_so(tmp_path):
    r, p = _drive(tmp_path, 'name = "ob"\n[grid]\nMATRIX_LR = [0.01]\n', fake_env={"FAKE_OVER_BUDGET": "1"})
    assert r.returncode == 0, r.stderr
    (st,) = _states(tmp_path, "ob").values()
    assert st["status"] == "done" and st["returncode"] == 3 and st["result"]["over_budget"] is True
    assert st["result"]["margin"] == C.SUBMISSION_CAP_BYTES - st["result"]["bytes_total"] < 0
    (row,) = sweep.collect(sweep.load_spec(p), tmp_path / "runs")
    assert row["note"].startswith("OVER BUDGET")


def test_results_come_from_the_runs_own_summary_and_artifact(tmp_path):
    run_dir = tmp_path / "r1"
    (run_dir / "logs").mkdir(parents=True)
    (run_dir / "logs" / "r1.txt").write_text(fake_log(val_bpb=1.5))
    summary = {"run_id": "r1", "val_loss": 2.34567891, "val_bpb": 1.49999, "bytes_code": 69, "bytes_model": 10, "bytes_total": 79,
               "hparams": {}, "hardware": "cpu", "artifact": "models/r1.ptz", "artifact_scheme": "int6+brotli",
               "size_cap_bytes": 100, "eval_time_ms": 5, "over_budget": False}
    (run_dir / "logs" / "r1.json").write_text(json.dumps(summary))
    res = sweep.result_from_log(run_dir, "r1")
    assert res["val_bpb"] == 1.49999 and res["margin"] == 21 and res["artifact"] == str(run_dir / "models" / "r1.ptz")
    assert res["eval_time_ms"] == 5 and res["artifact_scheme"] == "int6+brotli"


def _one_error_line(capsys, argv) -> str:
    rc = C.run_cli(sweep.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: "), (rc, err)
    return err[0]


DEEP_JSON = "[" * 200_000 + "]" * 200_000
BAD_STATES = {
    "nested_200000_deep": (DEEP_JSON, "not valid JSON .nested too deeply."),
    "nested_65_deep": ("[" * 65 + "]" * 65, "nests lists and objects more than 64 levels deep"),
    "not_json": ("{", "not valid JSON"),
    "not_an_object": ("[1]", "`.the document.` is a list, expected an object"),
    "status_unknown": ('{"status": "won"}', "`status` is a string, expected running or done"),
    "result_a_list": ('{"status": "done", "result": [1]}', "`result` is a list, expected an object or null"),
    "result_figure_a_string": ('{"status": "done", "result": {"val_bpb": "low"}}', "`result.val_bpb` is a string"),
    "attempts_a_string": ('{"status": "failed", "attempts": "2"}', "`attempts` is a string, expected an integer"),
    "error_a_number": ('{"status": "failed", "error": 5}', "`error` is an integer, expected a string or null"),
}


@pytest.mark.parametrize("case", BAD_STATES, ids=list(BAD_STATES))
def test_a_state_file_the_driver_did_not_write_is_one_error_line(tmp_path, capsys, case):
    text, msg = BAD_STATES[case]
    p = _spec(tmp_path, 'name = "st"\nscript = "x.py"\n[grid]\nA = [1, 2]\n')
    spec = sweep.load_spec(p)
    state = tmp_path / "runs" / "st" / spec.runs[1].name / "state.json"
    state.parent.mkdir(parents=True)
    state.write_text(text)
    for argv in (["table", str(p)], ["table", str(p), "--json"], ["run", str(p), "--dry-run"], ["plot", str(p)]):
        line = _one_error_line(capsys, [*argv, "--runs-dir", str(tmp_path / "runs")])
        assert line.startswith(f"error: {state}: ") and re.search(msg, line), line


def test_a_state_file_over_its_size_limit_is_refused_before_it_is_read(tmp_path, capsys):
    p = _spec(tmp_path, 'name = "st"\nscript = "x.py"\n[grid]\nA = [1]\n')
    state = tmp_path / "runs" / "st" / sweep.load_spec(p).runs[0].name / "state.json"
    state.parent.mkdir(parents=True)
    with open(state, "wb") as f:
        f.truncate(sweep.STATE_MAX_BYTES + 1)  # sparse: nothing is written, the size alone is over
    line = _one_error_line(capsys, ["table", str(p), "--runs-dir", str(tmp_path / "runs")])
    assert "sweep state is 1,048,577 bytes, more than the 1,048,576 accepted" in line


@pytest.mark.parametrize("flags,msg", [
    (["--nproc-per-node", "0"], r"--nproc-per-node is 0, expected an integer in \[1, 1024\]"),
    (["--gpus-per-run", "0"], "--gpus-per-run is 0, expected an integer >= 1"),
    (["--cpu-cores", "0"], "--cpu-cores is 0, expected an integer >= 1"),
    (["--early-stop-margin", "nan"], "--early-stop-margin is nan, expected a finite number >= 0"),
    (["--early-stop-margin", "-0.1"], "--early-stop-margin is -0.1, expected a finite number >= 0"),
    (["--early-stop-min-fraction", "2"], r"--early-stop-min-fraction is 2.0, expected a finite number in \[0.0, 1.0\]"),
    (["--poll-seconds", "0"], "--poll-seconds is 0.0, expected a finite number > 0"),
    (["--check-seconds", "inf"], "--check-seconds is inf, expected a finite number"),
    (["--early-stop-margin", "0.1", "--predictor", ":should_stop"], "--predictor :should_stop: "),
])
def test_run_flags_out_of_range_are_one_error_line(tmp_path, capsys, flags, msg):
    p = _spec(tmp_path, 'name = "fl"\nscript = "x.py"\n[grid]\nA = [1]\n')
    line = _one_error_line(capsys, ["run", str(p), "--dry-run", "--runs-dir", str(tmp_path / "runs"), *flags])
    assert re.search(msg, line), line


@pytest.mark.parametrize("flags,msg", [
    (["--partition", "gpu\nrm -rf ~"], "--partition 'gpu.nrm -rf ~' must be one word"),
    (["--time", "1:00 #"], "--time '1:00 #' must be one word"),
    (["--max-parallel", "0"], "--max-parallel is 0, expected an integer >= 1"),
    (["--cpus-per-task", "0"], "--cpus-per-task is 0, expected an integer >= 1"),
    (["--gpus-per-task", "-1"], "--gpus-per-task is -1, expected an integer >= 0"),
])
def test_slurm_flags_that_would_break_the_script_are_one_error_line(tmp_path, capsys, flags, msg):
    p = _spec(tmp_path, 'name = "fl"\nscript = "x.py"\n[grid]\nA = [1]\n')
    line = _one_error_line(capsys, ["slurm", str(p), *flags])
    assert re.search(msg, line), line
