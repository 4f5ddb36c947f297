"""Benchmark train_gpt.py's model on this machine: parameters, FLOPs per token, training throughput, model FLOP/s
and its share of this machine's own measured matmul peak at the precision the run would use, peak memory, and the
int8+zlib artifact size of the freshly initialised model.

The configuration, precision (BF16=auto|0|1), compile and thread choices come from the same environment variables
and rules as train_gpt.py (defaults: the 7-layer recipe). It times forward+backward micro-steps of --micro-seqs
sequences (default: the run's own micro-batch, TRAIN_BATCH_TOKENS/8/TRAIN_SEQ_LEN) and the optimizer step
separately, and estimates a full TRAIN_BATCH_TOKENS step from both. The peak is the best of a few large square
matrix products in the same dtype with the same threads.

  python -m bench.bench_train --micro-seqs 1                    # default config, 1 sequence of 2048 per micro-step
  NUM_LAYERS=4 MODEL_DIM=256 NUM_HEADS=4 NUM_KV_HEADS=2 TRAIN_SEQ_LEN=256 TRAIN_BATCH_TOKENS=16384 \
    python -m bench.bench_train                                 # the CPU-small shape
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import asdict
from pathlib import Path

import torch

import train_gpt as tg
from tools import common as C
from tools.common import ToolError


def flops_per_token(cfg: tg.ModelConfig, seq_len: int) -> dict:
    """Training FLOPs per token: 6 per matmul weight (forward 2, backward 4), plus causal attention scores."""
    matmul = 0
    model = tg.GPT(cfg)
    for name, p in model.named_parameters():
        if p.ndim == 2 and name.startswith(("blocks.", "bigram.proj")):
            matmul += p.numel()
    matmul += cfg.vocab_size * cfg.model_dim  # output projection (tied or not)
    attention = cfg.num_layers * seq_len * cfg.model_dim * 2  # QK^T and AV, causal: half of 2*2*T*D, fwd
    return {"matmul_params": matmul, "train_flops_per_token": 6 * matmul + 3 * attention}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--micro-seqs", type=int, default=0,
                    help="sequences of TRAIN_SEQ_LEN per timed micro-step (default: the run's micro-batch)")
    ap.add_argument("--steps", type=int, default=3, help="timed repetitions of each part after one untimed warm-up")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    args = ap.parse_args(argv)
    h = tg.Hyperparameters.from_env()
    if args.micro_seqs < 0 or args.steps < 1:
        raise ToolError("--micro-seqs must not be negative and --steps must be positive")
    rt = tg.setup_runtime(h)
    torch.manual_seed(h.seed)
    cfg = tg.model_config(h, bos_id=1)
    model = tg.GPT(cfg)
    artifact_bytes = len(tg.pack_artifact({k: v.float() for k, v in model.state_dict().items()}, asdict(cfg),
                                          tg.Scheme.parse("int8+zlib")))
    code_bytes = len(tg.shipped_code(Path(tg.__file__).read_bytes()))  # as a record ships it
    model = model.to(rt.device)
    train_model = torch.compile(model) if rt.compile else model
    optimizers = tg.build_optimizers(model, h, rt)
    micro_seqs = args.micro_seqs or max(1, h.train_batch_tokens // 8 // h.train_seq_len)
    ids = torch.randint(0, h.vocab_size, (micro_seqs, h.train_seq_len + 1), device=rt.device)

    def micro_step():
        with rt.autocast:
            loss = train_model(ids[:, :-1], ids[:, 1:])
        loss.backward()

    def optimizer_step():  # gradients stay in place, so repeated steps time the same work
        for opt in optimizers:
            opt.step()

    def timed(fn) -> float:
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in range(args.steps):
            fn()
        if rt.device.type == "cuda":
            torch.cuda.synchronize()
        return (time.perf_counter() - t0) / args.steps

    micro_step()  # warm-up: compile, allocate gradients and optimizer state
    optimizer_step()
    model.zero_grad(set_to_none=True)
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    micro_seconds = timed(micro_step)
    optimizer_seconds = timed(optimizer_step)
    tokens = micro_seqs * h.train_seq_len
    flops = flops_per_token(cfg, h.train_seq_len)
    full_step = micro_seconds * h.train_batch_tokens / tokens + optimizer_seconds
    dtype = torch.bfloat16 if rt.bf16 else torch.float32
    peak = max(tg.matmul_gflops(dtype, n=2048 if rt.device.type == "cpu" else 8192, seconds=1.0, device=rt.device)
               for _ in range(3))
    model_gflops = flops["train_flops_per_token"] * h.train_batch_tokens / full_step / 1e9
    result = {
        "device": str(rt.device), "choices": rt.choices, "compile": rt.compile, "bf16": rt.bf16, "threads": torch.get_num_threads(),
        "params": sum(p.numel() for p in model.parameters()), **flops,
        "tokens_per_micro_step": tokens, "micro_step_seconds": micro_seconds, "optimizer_step_seconds": optimizer_seconds,
        "forward_backward_tokens_per_second": tokens / micro_seconds,
        "achieved_gflops": flops["train_flops_per_token"] * tokens / micro_seconds / 1e9,
        "full_batch_step_seconds_estimate": full_step,
        "full_batch_tokens_per_second_estimate": h.train_batch_tokens / full_step,
        "model_gflops": model_gflops, "matmul_peak_gflops": peak, "share_of_peak": model_gflops / peak,
        "peak_memory_mib": tg.peak_memory_mib(rt.device),
        "fresh_artifact_bytes": artifact_bytes, "code_bytes": code_bytes, "fresh_total_bytes": artifact_bytes + code_bytes,
    }
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:38s} {v:,.3f}" if isinstance(v, float) else f"{k:38s} {v:,}" if isinstance(v, int) and not isinstance(v, bool) else f"{k:38s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
