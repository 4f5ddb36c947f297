"""Score a checkpoint or any artifact on a dataset's validation split, exactly as train_gpt.py does.

    python tools/score.py MODEL --data DIR [--tokenizer PATH] [--seq-len N] [--stride N] [--batch-seqs N]
                          [--max-tokens N] [--bf16 0|1] [--device auto|cpu|cuda] [--json]
    torchrun --standalone --nproc_per_node=2 tools/score.py MODEL --data DIR ...   (gloo on CPU, NCCL on CUDA)

MODEL: an artifact (any scheme/codec), a training .ckpt or a final_model.safetensors. The defaults are train_gpt's
(EVAL_SEQ_LEN, EVAL_STRIDE, EVAL_BATCH_SEQS, BF16=1); --stride equal to --seq-len is the non-overlapping pass.
For an artifact written by a run and that run's settings, world size 1 and the same thread count, the figures
equal the run's `final_int8_zlib_roundtrip_exact` line digit for digit. --max-tokens N scores only the first N
validation targets (a quick look, not comparable to a full score).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact as A  # noqa: E402
from artifact import GolfError, tg  # noqa: E402

H = tg.Hyperparameters()


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="artifact, .ckpt or final_model.safetensors")
    p.add_argument("--data", required=True, help="dataset directory (val shards, manifest.json)")
    p.add_argument("--tokenizer", default="", help="tokenizer path (default: the dataset's manifest)")
    p.add_argument("--seq-len", type=int, default=H.eval_seq_len, help=f"window length (default {H.eval_seq_len})")
    p.add_argument("--stride", type=int, default=None, help=f"window stride (default {H.eval_stride}, capped at --seq-len)")
    p.add_argument("--batch-seqs", type=int, default=H.eval_batch_seqs, help=f"windows per forward pass per process (default {H.eval_batch_seqs})")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N validation targets (0 = all)")
    p.add_argument("--bf16", type=int, default=1, choices=(0, 1), help="bf16 autocast (default 1, as train_gpt BF16=1)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the text lines")
    args = p.parse_args(argv)
    if args.stride is None:
        args.stride = min(H.eval_stride, args.seq_len)
    for name in ("seq_len", "stride", "batch_seqs"):
        if getattr(args, name) <= 0:
            raise GolfError(f"--{name.replace('_', '-')} must be positive")
    if args.stride > args.seq_len:
        raise GolfError(f"--stride {args.stride} exceeds --seq-len {args.seq_len}")
    if args.max_tokens < 0:
        raise GolfError("--max-tokens must not be negative")
    return args


def eval_data(data: str, tokenizer: str, vocab_size: int, seq_len: int, max_tokens: int = 0):
    """(val tokens, byte LUTs) checked against the model's vocabulary."""
    tok_path = tg.resolve_tokenizer_path(data, tokenizer)
    tok = tg.load_tokenizer(tok_path)
    if tok.vocab_size != vocab_size:
        raise GolfError(f"tokenizer {tok_path} has {tok.vocab_size} tokens but the model's vocab_size is {vocab_size}")
    tokens = tg.load_val_tokens(data, 1, vocab_size)
    if max_tokens:
        tokens = tokens[:max_tokens + 1]
    if len(tokens) < 2:
        raise GolfError(f"the validation split of {data} has fewer than 2 tokens")
    return tokens, tg.build_byte_luts(tok)


def autocast_for(device: torch.device, bf16: bool):
    return torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()


def score_model(model, tokens, luts, seq_len: int, stride: int, batch_seqs: int, device, bf16: bool,
                rank: int = 0, world_size: int = 1) -> tuple[float, float]:
    return tg.evaluate(model.to(device), tokens, luts, seq_len, stride, batch_seqs, device, autocast_for(device, bf16),
                       rank, world_size)


def main(argv=None) -> int:
    args = parse_args(argv)
    rank, world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
    use_cuda = args.device == "cuda" or (args.device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise GolfError("--device cuda but no CUDA device is available")
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if use_cuda else torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if use_cuda else "gloo")
    try:
        model, config, _ = A.load_model(args.model)
        tokens, luts = eval_data(args.data, args.tokenizer, config["vocab_size"], args.seq_len, args.max_tokens)
        t0 = time.perf_counter()
        val_loss, val_bpb = score_model(model, tokens, luts, args.seq_len, args.stride, args.batch_seqs, device,
                                        bool(args.bf16), rank, world)
        ms = 1000 * (time.perf_counter() - t0)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rank == 0:
        if args.json:
            print(json.dumps({"model": str(args.model), "val_loss": val_loss, "val_bpb": val_bpb, "targets": len(tokens) - 1,
                              "seq_len": args.seq_len, "stride": args.stride, "batch_seqs": args.batch_seqs,
                              "bf16": args.bf16, "world_size": world, "eval_time_ms": round(ms)}, indent=1))
        else:
            print(f"model:{args.model} targets:{len(tokens) - 1} seq_len:{args.seq_len} stride:{args.stride} "
                  f"batch_seqs:{args.batch_seqs} bf16:{args.bf16} world_size:{world}")
            print(f"score val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{ms:.0f}ms")
            print(f"score_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return 0


if __name__ == "__main__":
    sys.exit(A.run_cli(main))
