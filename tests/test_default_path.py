"""The run a user starts with: every schedule variable at its default (wallclock cap on, warm-up on, warmdown
3500), the README's torchrun command in miniature (only sizes changed), the precision and thread rules, unknown
settings, and the exit status of a run that does not fit."""
from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest
import torch

from tests.helpers import TRAIN_GPT, final_exact, subprocess_env
import train_gpt as tg

# Sizes only: the README's challenge command sets no variable; a test may shrink the model, the data and the time.
MINIATURE = dict(VOCAB_SIZE="260", NUM_LAYERS="2", MODEL_DIM="64", NUM_HEADS="4", NUM_KV_HEADS="2", TRAIN_SEQ_LEN="64",
                 TRAIN_BATCH_TOKENS="1024", EVAL_SEQ_LEN="64", EVAL_STRIDE="32", BIGRAM_BUCKETS="256", BIGRAM_DIM="16")


def clean_env(**settings) -> dict:
    """No setting of the developer's, and no thread count: the thread rule under test is the default's."""
    return subprocess_env(OMP_NUM_THREADS=None, **settings)


def train_lines(stdout: str) -> list[dict]:
    rows = []
    for line in stdout.splitlines():
        if line.startswith("step:") and "train_loss:" in line:
            fields = dict(part.split(":", 1) for part in line.split())
            rows.append({"step": int(fields["step"].split("/")[0]), "train_time": float(fields["train_time"][:-2]),
                         "lr_scale": float(fields["lr_scale"])})
    return rows


@pytest.mark.slow
def test_readme_challenge_command_in_miniature_stops_at_the_cap_and_prints_the_final_lines(tiny_data, tmp_path):
    """`torchrun --standalone --nproc_per_node=1 train_gpt.py` from a folder holding the dataset at the default
    DATA_PATH: the cap, warm-up, warmdown, compile, precision, threads and output folder are all the defaults."""
    default_data = tmp_path / "data" / "datasets" / "fineweb10B_sp1024"
    default_data.parent.mkdir(parents=True)
    default_data.symlink_to(tiny_data, target_is_directory=True)
    cap = 4
    env = clean_env(**MINIATURE, MAX_WALLCLOCK_SECONDS=cap, TRAIN_LOG_EVERY=1)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", str(TRAIN_GPT)]
    result = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    out = result.stdout
    assert "hparam WARMUP_STEPS=20" in out and "hparam WARMDOWN_ITERS=3500" in out and "hparam ITERATIONS=20000" in out
    assert "precision:" in out and "compile:0 (COMPILE=auto" in out and "threads:" in out
    rows = train_lines(out)
    assert rows[0]["step"] == 1 and len(rows) > 5
    # training stops within one step of the cap, keeping time for the calibration that follows it (GPTQ reads
    # training data, so it counts as training): the step that crossed cap - reserve is the last one
    stop = [l for l in out.splitlines() if l.startswith("stopping_early: wallclock_cap")]
    assert len(stop) == 1 and f"train_time:{rows[-1]['train_time']:.0f}ms step:{rows[-1]['step']}/20000 " in stop[0]
    reserved = float(stop[0].split("reserved:")[1].removesuffix("ms"))
    assert 0 < reserved < 1000 * cap / 4
    assert rows[-1]["train_time"] + reserved >= 1000 * cap > rows[-2]["train_time"] + 0.9 * reserved
    calibration = [l for l in out.splitlines() if l.startswith("calibration: ")]
    assert len(calibration) == 1 and "train_time with calibration:" in calibration[0]
    # WARMDOWN_ITERS=3500 is far more steps than fit in the cap: the LR starts at the full value, then follows the
    # remaining time down to almost nothing at the cap
    assert rows[0]["lr_scale"] == 1.0 and rows[1]["lr_scale"] < 1.0 and rows[-1]["lr_scale"] < 0.01
    lines = out.strip().splitlines()
    assert lines[-1] == final_exact(out) and lines[-2].startswith("final_int8_zlib_roundtrip val_loss:")
    summary = json.loads(next((tmp_path / "logs").glob("*.json")).read_text())
    assert summary["steps"] == rows[-1]["step"] and math.isfinite(summary["val_bpb"]) and not summary["over_budget"]
    assert summary["artifact"].startswith("models/") and (tmp_path / summary["artifact"]).is_file()


def reserved_ms(stdout: str) -> float:
    """The time the run kept back for its calibration when it stopped at the cap (its stopping_early line)."""
    return float(next(l for l in stdout.splitlines() if l.startswith("stopping_early")).split("reserved:")[1][:-2])


@pytest.mark.slow
def test_warmdown_follows_the_cap_from_full_lr_to_zero(tiny_data, tmp_path):
    # one thread: two threads spin-waiting on a shared, busy machine can make a tiny step 100x slower
    settings = dict(**MINIATURE, DATA_PATH=tiny_data, TRAIN_LOG_EVERY=1, CPU_THREADS=1)
    # The cap holds about 50 steps of this machine as it is now (a short uncapped run measures one), so that the
    # 15-step warmdown starts well after the first steps whatever the machine and its load.
    probe = subprocess.run([sys.executable, str(TRAIN_GPT)], cwd=tmp_path, capture_output=True, text=True, timeout=600,
                           env=clean_env(**settings, OUT_DIR=tmp_path / "probe", ITERATIONS=4, WARMUP_STEPS=0,
                                         MAX_WALLCLOCK_SECONDS=0, VAL_LOSS_EVERY=0))
    assert probe.returncode == 0, probe.stderr[-3000:]
    cap_s = max(6.0, 50 * train_lines(probe.stdout)[-1]["train_time"] / 4 / 1000)
    env = clean_env(**settings, OUT_DIR=tmp_path, MAX_WALLCLOCK_SECONDS=cap_s, WARMDOWN_ITERS=15, WARMUP_STEPS=2)
    result = subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = train_lines(result.stdout)
    scales = [r["lr_scale"] for r in rows]
    assert scales[:5] == [1.0] * 5  # the warmdown has not begun
    assert 0 < min(s for s in scales if s > 0) < 0.5 and scales[-1] < 0.15  # it ran down as the cap neared
    first_below = next(i for i, s in enumerate(scales) if s < 1.0)
    assert len(rows) - first_below <= 30  # about WARMDOWN_ITERS steps before the cap, not the whole run
    reserved = reserved_ms(result.stdout)
    assert rows[-1]["train_time"] + reserved >= 1000 * cap_s > rows[-2]["train_time"] + 0.9 * reserved


@pytest.mark.slow
def test_warm_up_steps_do_not_count_towards_the_cap(tiny_data, tmp_path):
    env = clean_env(**MINIATURE, DATA_PATH=tiny_data, OUT_DIR=tmp_path, MAX_WALLCLOCK_SECONDS=1, WARMUP_STEPS=40,
                    TRAIN_LOG_EVERY=1, CPU_THREADS=1)
    result = subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    rows = train_lines(result.stdout)
    # 40 warm-up steps take longer than the 1 s cap; training still gets its own second (less what it keeps back)
    assert rows[0]["lr_scale"] == 1.0 and rows[-1]["train_time"] + reserved_ms(result.stdout) >= 1000 and len(rows) >= 2


@pytest.mark.slow
def test_over_budget_run_writes_everything_then_exits_non_zero_with_the_over_budget_line_last(tiny_data, tmp_path):
    env = clean_env(**MINIATURE, DATA_PATH=tiny_data, OUT_DIR=tmp_path, RUN_ID="over", ITERATIONS=2, WARMUP_STEPS=0,
                    SIZE_CAP_BYTES=50_000, ARTIFACT="int8+zlib")
    result = subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stderr[-2000:]
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("OVER BUDGET: the submission is ") and "over the 50000-byte cap" in last
    summary = json.loads((tmp_path / "logs" / "over.json").read_text())
    assert summary["over_budget"] and summary["bytes_total"] > 50_000
    assert (tmp_path / "logs" / "over.txt").read_text().rstrip().endswith(last)
    assert (tmp_path / "models" / "over.ptz").exists() and (tmp_path / "models" / "over.safetensors").exists()


@pytest.mark.slow
@pytest.mark.parametrize("name, expected", [
    ("MATRX_LR", "error: MATRX_LR is not a setting of train_gpt.py (did you mean MATRIX_LR?)"),
    ("matrix_lr", "error: matrix_lr is not a setting of train_gpt.py (did you mean MATRIX_LR?)"),
    ("MUON_WD", "error: MUON_WD is not a setting of train_gpt.py (did you mean WEIGHT_DECAY?)"),
    ("QAT_ENABLED", "error: QAT_ENABLED is a setting of the challenge's record scripts that golf does not have"),
])
def test_unknown_settings_stop_the_run_with_one_line(tiny_data, tmp_path, name, expected):
    env = clean_env(**MINIATURE, DATA_PATH=tiny_data, OUT_DIR=tmp_path, **{name: "0.5"})
    result = subprocess.run([sys.executable, str(TRAIN_GPT)], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [result.stderr.strip()] and result.stderr.strip().startswith(expected)
    assert not (tmp_path / "logs").exists()


def test_ordinary_environment_variables_are_not_mistaken_for_settings():
    settings = {f.name.upper() for f in tg.fields(tg.Hyperparameters)}
    ordinary = ["PATH", "HOME", "USER", "SHELL", "TERM", "LANG", "LC_ALL", "PWD", "OLDPWD", "TMPDIR", "HOSTNAME", "DISPLAY",
                "CUDA_VISIBLE_DEVICES", "MASTER_ADDR", "MASTER_PORT", "RANK", "LOCAL_RANK", "WORLD_SIZE", "LOCAL_WORLD_SIZE",
                "GROUP_RANK", "ROLE_RANK", "ROLE_WORLD_SIZE", "GROUP_WORLD_SIZE", "TORCHELASTIC_RUN_ID", "OMP_NUM_THREADS",
                "MKL_NUM_THREADS", "PYTHONPATH", "PYTHONHASHSEED", "VIRTUAL_ENV", "CONDA_PREFIX", "HF_HOME", "HF_TOKEN",
                "SLURM_JOB_ID", "NCCL_DEBUG", "TORCH_HOME", "TRITON_INTERPRET", "TORCHINDUCTOR_CACHE_DIR", "EDITOR", "LOGNAME",
                "http_proxy", "no_proxy", "SSH_TTY", "XDG_RUNTIME_DIR", "_"]
    assert {n: tg.setting_name_problem(n, settings) for n in ordinary} == {n: None for n in ordinary}
    assert tg.setting_name_problem("SEEDS", settings).endswith("(did you mean SEED?)")
    assert tg.setting_name_problem("ITERATONS", settings).endswith("(did you mean ITERATIONS?)")
    assert tg.setting_name_problem("ADAM_WD", settings).startswith("ADAM_WD is a setting of the challenge's record")
    assert not settings & tg.RECORD_ONLY_SETTINGS  # a record's name that golf now has is golf's own setting
    assert tg.setting_name_problem("EMA_DECAY", settings) is None
    with pytest.raises(tg.GolfError, match="MATRX_LR"):
        tg.Hyperparameters.from_env({"MATRX_LR": "0.5"})


def test_a_typo_gets_the_closest_setting_and_a_record_name_is_not_forced_onto_one():
    settings = {f.name.upper() for f in tg.fields(tg.Hyperparameters)}
    assert tg.setting_name_problem("MTARIX_LR", settings).endswith("(did you mean MATRIX_LR?)")  # a swap of neighbours
    assert tg.setting_name_problem("EMBED_WD", settings).startswith("EMBED_WD is a setting of the challenge's record")  # not EMBED_LR


# ---------------------------------------------------------------- precision, compile and threads per device

def _cpuinfo(tmp_path, text) -> str:
    path = tmp_path / "cpuinfo"
    path.write_text(text)
    return str(path)


def test_native_bf16_is_read_from_the_cpu_flags(tmp_path):
    avx2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma\n"
    zen4 = "processor\t: 0\nflags\t\t: fpu avx2 avx512f avx512bw avx512_bf16 avx512_vnni\n"
    spr = "processor\t: 0\nflags\t\t: avx2 avx512f amx_bf16 amx_tile amx_int8\n"
    graviton3 = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    assert tg.cpu_native_bf16(_cpuinfo(tmp_path, avx2)) is False
    assert tg.cpu_native_bf16(_cpuinfo(tmp_path, zen4)) is True
    assert tg.cpu_native_bf16(_cpuinfo(tmp_path, spr)) is True
    assert tg.cpu_native_bf16(_cpuinfo(tmp_path, graviton3)) is True
    assert tg.cpu_native_bf16(str(tmp_path / "absent")) is None


def test_precision_rule_on_both_kinds_of_cpu_and_on_cuda():
    def never(dtype):
        raise AssertionError("no measurement is needed when the flags are known")

    slow_bf16 = lambda dtype: 40.0 if dtype == torch.float32 else 0.8
    fast_bf16 = lambda dtype: 40.0 if dtype == torch.float32 else 60.0
    assert tg.choose_bf16("auto", "cpu", native=True, measure=never) == (True, tg.choose_bf16("auto", "cpu", True, never)[1])
    assert tg.choose_bf16("auto", "cpu", native=True, measure=never)[0] is True
    use, why = tg.choose_bf16("auto", "cpu", native=False, measure=never)
    assert use is False and "no native bf16" in why
    use, why = tg.choose_bf16("1", "cpu", native=False, measure=slow_bf16)
    assert use is True and why.startswith("warning: BF16=1 on a CPU without native bf16 matmul") and "50.0x slower" in why
    assert tg.choose_bf16("0", "cpu", native=True, measure=never)[0] is False
    assert tg.choose_bf16("auto", "cpu", native=None, measure=slow_bf16)[0] is False  # flags unknown: measured
    assert tg.choose_bf16("auto", "cpu", native=None, measure=fast_bf16)[0] is True
    assert tg.choose_bf16("auto", "cuda", native=None, measure=never)[0] is True
    assert tg.choose_bf16("0", "cuda", native=None, measure=never)[0] is False


def test_newton_schulz_follows_the_precision():
    model = tg.GPT(tg.ModelConfig(vocab_size=64, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=0))
    h = tg.Hyperparameters.from_env({})
    assert tg.build_optimizers(model, h, tg.Runtime(0, 1, torch.device("cpu"), bf16=False, compile=False))[1].ns_dtype == torch.float32
    assert tg.build_optimizers(model, h, tg.Runtime(0, 1, torch.device("cpu"), bf16=True, compile=False))[1].ns_dtype == torch.bfloat16
    g = torch.randn(32, 16)
    assert tg.newton_schulz(g, 5, torch.float32).dtype == torch.float32


def test_cpu_threads_share_the_cores_among_processes():
    assert tg.cpu_thread_count(0, {}, 1, 16)[0] == 16
    assert tg.cpu_thread_count(0, {}, 4, 16)[0] == 4
    assert tg.cpu_thread_count(0, {}, 4, 2)[0] == 1
    # the OMP_NUM_THREADS=1 that torchrun sets for several processes is its default, not the user's choice
    assert tg.cpu_thread_count(0, {"OMP_NUM_THREADS": "1", "TORCHELASTIC_RUN_ID": "x"}, 2, 16)[0] == 8
    assert tg.cpu_thread_count(0, {"OMP_NUM_THREADS": "3"}, 2, 16)[0] == 3
    assert tg.cpu_thread_count(5, {"OMP_NUM_THREADS": "3"}, 2, 16)[0] == 5


def test_setting_values_are_checked():
    with pytest.raises(tg.GolfError, match="BF16='yes' must be one of auto, 0, 1"):
        tg.Hyperparameters.from_env({"BF16": "yes"})
    with pytest.raises(tg.GolfError, match="SIZE_CAP_BYTES=0 must be positive"):
        tg.Hyperparameters.from_env({"SIZE_CAP_BYTES": "0"})
