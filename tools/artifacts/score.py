"""Score a checkpoint or any artifact on a dataset's validation split, exactly as train_gpt.py does.

    python -m tools score MODEL --data DIR [--tokenizer PATH] [--seq-len N] [--stride N] [--batch-seqs N]
                          [--doc-eval 0|1] [--ttt 0|sgd|lora] [--max-tokens N] [--bf16 auto|0|1]
                          [--device auto|cpu|cuda] [--cpu-threads N] [--json]
    torchrun --standalone --nproc_per_node=2 -m tools score MODEL --data DIR ...   (gloo on CPU, NCCL on CUDA)

MODEL: an artifact (any scheme train_gpt.py writes), a training .ckpt or a raw-weights .safetensors. The evaluation
settings (window, stride, batch, document-aware windows, test-time training) default to the ones the file records,
i.e. the ones its run scored it with (an artifact or raw weights written by train_gpt.py), else to train_gpt's
defaults; a flag overrides one. The score is train_gpt.final_score itself, on the device, precision, compile and
thread count train_gpt.setup_runtime chooses. So for a run's models/<RUN_ID>.ptz on the same machine and world
size, `score_exact` equals the log's `final_int8_zlib_roundtrip_exact` digit for digit.
--max-tokens N scores only the first N validation targets (a quick look, not comparable to a full score).
"""
from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import fields

import torch.distributed as dist

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError

H = tg.Hyperparameters()
FLAGS = {"seq_len": "EVAL_SEQ_LEN", "stride": "EVAL_STRIDE", "batch_seqs": "EVAL_BATCH_SEQS", "doc_eval": "DOC_EVAL",
         "ttt": "TTT"}


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="artifact, training .ckpt or raw-weights .safetensors")
    p.add_argument("--data", required=True, help="dataset directory (val shards, manifest.json)")
    p.add_argument("--tokenizer", default="", help="tokenizer path (default: the dataset's manifest)")
    p.add_argument("--seq-len", type=int, help=f"window length (default: recorded, else {H.eval_seq_len})")
    p.add_argument("--stride", type=int, help=f"window stride (default: recorded, else {H.eval_stride}, capped at --seq-len)")
    p.add_argument("--batch-seqs", type=int, help=f"windows per forward pass per process (default: recorded, else {H.eval_batch_seqs})")
    p.add_argument("--doc-eval", choices=("0", "1"), help="windows within documents (default: recorded, else 0)")
    p.add_argument("--ttt", choices=("0", "sgd", "lora"), help="score-first test-time training (default: recorded, else 0)")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N validation targets (0 = all)")
    p.add_argument("--bf16", default=H.bf16, choices=("auto", "0", "1"), help=f"bf16 autocast, as train_gpt's BF16 (default {H.bf16})")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    p.add_argument("--cpu-threads", type=int, default=0, help="as train_gpt's CPU_THREADS (0 = OMP_NUM_THREADS, else this process's share of the cores)")
    p.add_argument("--json", action="store_true", help="print a JSON object instead of the text lines")
    args = p.parse_args(argv)
    if args.max_tokens < 0 or args.cpu_threads < 0:
        raise ToolError("--max-tokens and --cpu-threads must not be negative")
    return args


def eval_settings(args, recorded: dict, cfg: tg.ModelConfig) -> tg.Hyperparameters:
    """train_gpt's settings for scoring: the flags given, over the ones the model file records, over the model's own
    shape (which rules such as TTT_LORA_RANK <= MODEL_DIM read), over the defaults."""
    shape = {f.name.upper(): str(getattr(cfg, f.name)) for f in fields(tg.Hyperparameters) if f.metadata["part"] == "model"}
    recorded = {**shape, **recorded}
    try:  # the file's own settings first, so that a crafted one is blamed on the file, not on a flag
        tg.Hyperparameters.from_env({}, recorded=recorded)
    except tg.GolfError as e:
        raise ToolError(f"{args.model}: its recorded scoring settings are invalid: {e}") from None
    given = {name: str(getattr(args, flag)) for flag, name in FLAGS.items() if getattr(args, flag) is not None}
    if args.seq_len is not None and args.stride is None:  # a shorter window than the recorded stride: stride follows
        given["EVAL_STRIDE"] = str(min(int(recorded.get("EVAL_STRIDE", H.eval_stride)), args.seq_len))
    try:
        return tg.Hyperparameters.from_env(given, recorded=recorded)
    except tg.GolfError as e:  # name the flag, not the setting
        flag = {name: flag for flag, name in FLAGS.items()}
        msg = str(e)
        for name, f in flag.items():
            msg = msg.replace(f"{name}=", f"--{f.replace('_', '-')} ")
        raise ToolError(msg) from None


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


def score_model(model, tokens, luts, h: tg.Hyperparameters, rt, log=print) -> tuple[float, float, dict | None]:
    """train_gpt.final_score on this runtime's device, precision and processes; a non-finite score is refused."""
    model = model.to(rt.device)
    val_loss, val_bpb, facts = tg.final_score(model, tg.runnable(model, h, rt), tokens, luts, h, rt, log)
    if not (math.isfinite(val_loss) and math.isfinite(val_bpb)):
        raise ToolError(f"the score is not finite (val_loss {val_loss}): the weights are broken")
    return val_loss, val_bpb, facts


def main(argv=None) -> int:
    args = parse_args(argv)
    model, config, recorded = M.load_scored_model(args.model)
    h = eval_settings(args, recorded, model.cfg)
    rt = M.runtime(args.device, args.bf16, args.cpu_threads, compile="auto")
    try:
        tokens, luts = eval_data(args.data, args.tokenizer, config["vocab_size"], args.max_tokens)
        t0 = time.perf_counter()
        val_loss, val_bpb, facts = score_model(model, tokens, luts, h, rt, log=print if rt.is_main and not args.json else lambda m: None)
        ms = 1000 * (time.perf_counter() - t0)
    finally:
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
    if rt.is_main:
        info = {"model": str(args.model), "val_loss": val_loss, "val_bpb": val_bpb, "targets": len(tokens) - 1,
                "seq_len": h.eval_seq_len, "stride": h.eval_stride, "batch_seqs": h.eval_batch_seqs, "doc_eval": int(h.doc_eval),
                "ttt": h.ttt, "ttt_facts": facts, "bf16": int(rt.bf16), "world_size": rt.world_size, "eval_time_ms": round(ms),
                "runtime": rt.choices}
        if args.json:
            print(json.dumps(info, indent=1))
        else:
            print(f"model:{args.model} targets:{info['targets']} seq_len:{h.eval_seq_len} stride:{h.eval_stride} "
                  f"batch_seqs:{h.eval_batch_seqs} doc_eval:{int(h.doc_eval)} ttt:{h.ttt} world_size:{rt.world_size} {rt.choices}")
            print(f"score val_loss:{val_loss:.4f} val_bpb:{val_bpb:.4f} eval_time:{ms:.0f}ms")
            print(f"score_exact val_loss:{val_loss:.8f} val_bpb:{val_bpb:.8f}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
