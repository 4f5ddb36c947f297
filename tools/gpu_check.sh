#!/usr/bin/env bash
# The GPU check: one command that proves the CUDA paths and measures the default recipe. Allow 9 minutes on one
# H100 (on 2026-11-27 the tests took 50 s; ARTIFACT=auto now compresses one candidate, ~45 s; docs/gpu.md).
# It needs a small dataset built beforehand (GPU machines are often offline), for example:
#   python -m data.shakespeare --out data/datasets/shakespeare_sp1024
#   bash tools/gpu_check.sh data/datasets/shakespeare_sp1024
# It runs: the CUDA-only tests (compile, flash attention, fused cross-entropy against the reference), the
# training benchmark and the overhead benchmark of the default shape (operator calls, host waits, the optimizer's
# share of a step), and the default recipe for GPU_CHECK_CAP seconds (default 120) with every other setting at its
# default, through ARTIFACT=auto to the final round-trip line. It prints and writes to $GPU_CHECK_OUT (default
# gpu_check_out/): step time, tokens/s, model FLOP/s, estimated MFU, peak memory, artifact bytes, the round-trip
# val_bpb, and how many times the run saw its training text. A small dataset repeats many times (Shakespeare ~25
# times in 120 s): use the largest corpus you can carry (python -m data.build_dataset on any text, see data/README.md),
# and read a repeated corpus's val_bpb as proof that the run works, not as how good the recipe is.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/datasets/shakespeare_sp1024}
OUT=${GPU_CHECK_OUT:-gpu_check_out}
CAP=${GPU_CHECK_CAP:-120}
if [ ! -d "$DATA" ]; then echo "error: dataset $DATA does not exist (build it first; see the top of this script)" >&2; exit 1; fi
python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" || {
  echo "error: no CUDA device is visible to PyTorch: this check is for a GPU machine" >&2; exit 1; }
mkdir -p "$OUT"
{
  date -u +"date: %Y-%m-%dT%H:%M:%SZ"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | sed 's/^/gpu: /'
  python -c "import torch, sys; print('torch:', torch.__version__, 'cuda:', torch.version.cuda, 'python:', sys.version.split()[0])"
} | tee "$OUT/env.txt"
echo "== CUDA tests"
# A failing test is reported, and the benchmark and the run still happen: one check's figures are worth having.
set +e
python -m pytest -q -rs tests/test_cuda.py tests/test_fused_ce.py > "$OUT/tests.txt" 2>&1
tests_status=$?
set -e
tail -5 "$OUT/tests.txt"
echo "== benchmark of the default shape"
python -m bench.bench_train --steps 5 --json > "$OUT/bench.json"
python -m bench.bench_overhead --micro-seqs 0 --json > "$OUT/overhead.json"  # the run's own micro-batch
echo "== default recipe, MAX_WALLCLOCK_SECONDS=$CAP, data $DATA"
set +e
DATA_PATH="$DATA" MAX_WALLCLOCK_SECONDS="$CAP" OUT_DIR="$OUT" RUN_ID=gpu_check \
  torchrun --standalone --nproc_per_node=1 train_gpt.py > "$OUT/train.txt" 2>&1
status=$?
set -e
tail -4 "$OUT/train.txt"
python - "$OUT" "$status" <<'PY' | tee "$OUT/summary.txt"
import json, sys
from pathlib import Path
from tools.runs import logparse
out, status = Path(sys.argv[1]), int(sys.argv[2])
try:
    run = logparse.parse_log(out / "logs" / "gpu_check.txt")
except logparse.ToolError as e:
    print(f"log: {e}")
    run = logparse.RunLog()
bench = json.loads((out / "bench.json").read_text())
overhead = json.loads((out / "overhead.json").read_text())
last = run.train[-1] if run.train else None
print(f"tests: {(out / 'tests.txt').read_text().strip().splitlines()[-1]}")
print(f"train exit status: {status}")
print(f"last train step: {last.step if last else 'none'}/{run.iterations}  train_loss: {last.train_loss if last else 'none'}")
print(f"step_avg_ms: {run.step_avg_ms}  tokens_per_s: {last.tok_s if last else 'none'}")
print(f"peak memory: {run.peak_memory}")
print(f"artifact: {run.model_format} {run.bytes_model} bytes  total: {run.bytes_total} bytes (margin {run.margin})")
print(f"round trip: val_loss:{run.exact_val_loss} val_bpb:{run.exact_val_bpb}")
train_tokens = run.data_train_tokens or 0
seen = (last.step if last else 0) * int(run.hparams.get("TRAIN_BATCH_TOKENS", 131072))
print(f"training text seen {seen / train_tokens:.2f} times ({seen:,} tokens of {train_tokens:,})" if train_tokens else "training text: unknown size")
timing = overhead.get("cuda_timing") or {}
print(f"overhead: optimizer step {overhead['optimizer_step_ops']} operator calls, full step {overhead['train_step_ops']}, "
      f"host waits {overhead['train_step_host_waits']}, graph breaks {overhead['graph_breaks']}; "
      f"optimizer {timing.get('optimizer_step_ms', float('nan')):.1f} ms of a {timing.get('full_step_ms', float('nan')):.1f} ms step "
      f"({timing.get('optimizer_share', float('nan')):.1%})")
print(f"bench (default shape, {bench['choices']}): model {bench['model_gflops'] / 1e3:.1f} TFLOP/s, "
      f"measured matmul peak {bench['matmul_peak_gflops'] / 1e3:.1f} TFLOP/s, MFU vs measured peak {bench['share_of_peak']:.1%}, "
      f"vs the H100 SXM bf16 dense spec (989 TFLOP/s) {bench['model_gflops'] / 989e3:.1%}, "
      f"peak memory {bench['peak_memory_mib']:.0f} MiB")
PY
[ "$status" -ne 0 ] && exit "$status"
if [ "$tests_status" -ne 0 ]; then echo "error: the CUDA tests failed (see $OUT/tests.txt)" >&2; fi
exit "$tests_status"
