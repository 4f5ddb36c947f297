"""Score a checkpoint or any artifact on a dataset's validation split, exactly as train_gpt.py does.

    python -m tools score MODEL --data DIR [--tokenizer PATH] [--seq-len N] [--stride N] [--batch-seqs N]
                          [--max-tokens N] [--bf16 auto|0|1] [--device auto|cpu|cuda] [--cpu-threads N] [--json]
    torchrun --standalone --nproc_per_node=2 -m tools score MODEL --data DIR ...   (gloo on CPU, NCCL on CUDA)

MODEL: an artifact (any scheme train_gpt.py writes), a training .ckpt or a raw-weights .safetensors. Defaults are
train_gpt's (EVAL_SEQ_LEN, EVAL_STRIDE, EVAL_BATCH_SEQS, BF16=auto, CPU_THREADS=0), and device, precision and thread
count are chosen by train_gpt.setup_runtime itself. So for a run's models/<RUN_ID>.ptz with that run's settings on
the same machine and world size, `score_exact` equals the log's `final_int8_zlib_roundtrip_exact` digit for digit.
--max-tokens N scores only the first N validation targets (a quick look, not comparable to a full score).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time

import torch.distributed as dist

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError

H = tg.Hyperparameters()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="artifact, training .ckpt or raw-weights .safetensors")
    p.add_argument("--data", required=True, help="dataset directory (val shards, manifest.json)")
    p.add_argument("--tokenizer", default="", help="tokenizer path (default: the dataset's manifest)")
    p.add_argument("--seq-len", type=int, default=H.eval_seq_len, help=f"window length (default {H.eval_seq_len})")
    p.add_argument("--stride", type=int, default=None, help=f"window stride (default {H.eval_stride}, capped at --seq-len)")
    p.add_argument("--batch-seqs", type=int, default=H.eval_batch_seqs, help=f"windows per forward pass per process (default {H.eval_batch_seqs})")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N validation targets (0 = all)")
    p.add_argument("--bf16", default=H.bf16, choices=("auto", "0", "1"), help=f"bf16 autocast, as train_gpt's BF16 (default {H.bf16})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--cpu-threads", type=int, default=0, help="as train_gpt's CPU_THREADS (0 = OMP_NUM_THREADS, else this process's share of the cores)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the text lines")
    args = p.parse_args(argv)
    if args.stride is None:
        args.stride = min(H.eval_stride, args.seq_len)
    for name in ("seq_len", "stride", "batch_seqs"):
        if getattr(args, name) <= 0:
            raise ToolError(f"--{name.replace('_', '-')} must be positive")
    if args.stride > args.seq_len:
        raise ToolError(f"--stride {args.stride} exceeds --seq-len {args.seq_len}")
    if args.max_tokens < 0 or args.cpu_threads < 0:
        raise ToolError("--max-tokens and --cpu-threads must not be negative")
    return args


def eval_data(data: str, tokenizer: str, vocab_size: int, max_tokens: int = 0):
    """(val tokens, byte LUTs) checked against the model's vocabulary."""
    tok_path = tg.resolve_tokenizer_path(data, tokenizer)
    tok = tg.load_tokenizer(tok_path)
    if tok.vocab_size != vocab_size:
        raise ToolError(f"tokenizer {tok_path} has {tok.vocab_size} tokens but the model's vocab_size is {vocab_size}")
    tokens = tg.load_val_tokens(data, 1, vocab_size)
    if max_tokens:
        tokens = tokens[:max_tokens + 1]
    return tokens, tg.build_byte_luts(tok)


def score_model(model, tokens, luts, seq_len: int, stride: int, batch_seqs: int, rt) -> tuple[float, float]:
    """train_gpt.evaluate on this runtime's device, precision and processes; a non-finite score is refused."""
    val_loss, val_bpb = tg.evaluate(model.to(rt.device), tokens, luts, seq_len, stride, batch_seqs, rt.device, rt.autocast,
                                    rt.rank, rt.world_size)
    if not (math.isfinite(val_loss) and math.isfinite(val_bpb)):
        raise ToolError(f"the score is not finite (val_loss {val_loss}): the weights are broken")
    return val_loss, val_bpb


def main(argv=None) -> int:
    args = parse_args(argv)
    rt = M.runtime(args.device, args.bf16, args.cpu_threads)
    try:
        model, config, _ = M.load_model(args.model)
        tokens, luts = eval_data(args.data, args.tokenizer, config["vocab_size"], args.max_tokens)
        t0 = time.perf_counter()
        val_loss, val_bpb = score_model(model, tokens, luts, args.seq_len, args.stride, args.batch_seqs, rt)
        ms = 1000 * (time.perf_counter() - t0)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rt.is_main:
        info = {"model": str(args.model), "val_loss": val_loss, "val_bpb": val_bpb, "targets": len(tokens) - 1,
                "seq_len": args.seq_len, "stride": args.stride, "batch_seqs": args.batch_seqs, "bf16": int(rt.bf16),
                "world_size": rt.world_size, "eval_time_ms": round(ms), "runtime": rt.choices}
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print(f"model:{args.model} targets:{info['targets']} seq_len:{args.seq_len} stride:{args.stride} "
                  f"batch_seqs:{args.batch_seqs} world_size:{rt.world_size} {rt.choices}")
            print(f"score val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{ms:.0f}ms")
            print(f"score_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
