"""Which scheme fits under 16,000,000 bytes, and what does it cost? A schemes x codecs table for one checkpoint.

    python -m tools fit MODEL [--schemes int8,int6,int6-gptq,int5-emb6,...] [--codecs zlib,zstd,lzma,brotli]
                        [--level zstd=19 ...] [--data DIR [--max-tokens N] [--seq-len N] [--stride N] [--batch-seqs N]
                        [--gptq-batches N] [--calib-seq-len N] [--batch-tokens N]] [--bf16 auto|0|1] [--code PATH] [--json]

Every artifact is made as train_gpt.pack_artifact makes it (train_gpt.quantize_state_dict once per quantization, then
train_gpt.encode_artifact per codec) and read back by train_gpt.unpack_artifact. A --schemes item is
the quantization part of a scheme (int6-emb8-gptq), crossed with every --codecs entry, or a whole scheme (int6+zstd-19),
used as is. Columns: artifact bytes, code bytes (train_gpt.py, or --code), total, margin = 16,000,000 - total, bytes per
parameter, relative reconstruction error ||W - deq(W)|| / ||W|| over all float tensors and, with --data, the
round-trip val_bpb and its difference to the unquantized checkpoint (each distinct set of round-trip weights is scored
once: codecs, -packed and -shuffle change bytes, not weights). -gptq schemes need --data (calibration batches from the
training shards, see tools/artifacts/pack.py). Rows that fit come first, best first (lowest val_bpb with --data, else lowest
error; ties: smallest total).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

from tqdm import tqdm

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.artifacts import pack as P
from tools.artifacts import score as S
from tools.common import ToolError

DEFAULT_SCHEMES = ("int8", "int7", "int6", "int6-emb6", "int5-emb6", "int4-emb5-packed")
DEFAULT_CODECS = tuple(tg.CODEC_IDS)


def table_row(scheme: str, artifact_bytes: int, code_bytes: int, params: int, rel_error: float,
              val_bpb: float | None = None, base_bpb: float | None = None, seconds: float = 0.0) -> dict:
    """One row of the table; the arithmetic lives here (and is tested)."""
    total, cap = artifact_bytes + code_bytes, C.SUBMISSION_CAP_BYTES
    return {"scheme": scheme, "artifact_bytes": artifact_bytes, "code_bytes": code_bytes, "total_bytes": total,
            "margin": cap - total, "fits": total <= cap, "bytes_per_param": artifact_bytes / params if params else None,
            "rel_error": rel_error, "val_bpb": val_bpb,
            "delta_bpb": None if val_bpb is None or base_bpb is None else val_bpb - base_bpb, "pack_seconds": round(seconds, 3)}


def sort_rows(rows: list[dict]) -> list[dict]:
    """Fitting rows first, best first; then the rest by total size."""
    def key(r):
        quality = r["val_bpb"] if r["val_bpb"] is not None else r["rel_error"]
        return (0, quality, r["total_bytes"]) if r["fits"] else (1, r["total_bytes"], quality)
    return sorted(rows, key=key)


def parse_levels(items) -> dict:
    levels = {}
    for item in items or []:
        codec, _, value = item.partition("=")
        if codec not in tg.CODEC_LEVELS or not value.isdecimal():
            raise ToolError(f"--level {item!r}: expected CODEC=N with a codec of {', '.join(tg.CODEC_IDS)}, e.g. zstd=19")
        levels[codec] = int(value)
    return levels


def parse_matrix(schemes_arg: str, codecs_arg: str, levels: dict | None = None) -> list:
    """The schemes to pack: every --schemes quantization part with every codec (at --level), or a whole scheme as given;
    each checked by train_gpt.Scheme.parse, duplicates dropped."""
    codecs = [c.strip() for c in codecs_arg.split(",") if c.strip()]
    items = [s.strip() for s in schemes_arg.split(",") if s.strip()]
    if not items or not codecs:
        raise ToolError("need at least one scheme and one codec")
    specs = []
    for item in items:
        for codec in ([None] if "+" in item else codecs):
            level = (levels or {}).get(codec)
            specs.append(item if codec is None else f"{item}+{codec}" + (f"-{level}" if level is not None else ""))
    schemes = list(dict.fromkeys(tg.Scheme.parse(s) for s in specs))
    for s in schemes:
        if s.sd < 0:  # train_gpt.pack_artifact refuses it too; here the two halves are called separately
            raise ToolError(f"artifact scheme {s.spec}: a bare sd is fitted to the cap by ARTIFACT, give sd<K> here")
    return schemes


def weights_key(scheme) -> "tg.Scheme":
    """Schemes with the same key round-trip to the same weights (codec, packing and shuffle only change bytes)."""
    return replace(scheme, packed=False, shuffle=False, codec="zlib", level=tg.CODEC_LEVELS["zlib"][0])


def run_fit(state: dict, config: dict, schemes: list, code: int, data: dict | None = None, progress: bool = True,
            bf16: str = "auto") -> tuple[list[dict], dict]:
    """Pack every scheme, read each artifact back, measure; returns (rows, base info).
    data: None or dict(data, tokenizer, seq_len, stride, batch_seqs, max_tokens, gptq_batches, calib_seq_len, batch_tokens)."""
    params = sum(v.numel() for v in state.values())
    base = {"params": params, "val_bpb": None, "val_loss": None}
    needs_gptq = any(s.gptq for s in schemes)
    if needs_gptq and data is None:
        raise ToolError("-gptq schemes need --data DIR (calibration batches from its training shards)")
    rt = M.runtime(bf16=bf16) if data is not None else None
    evaluator, hessians = None, None
    if data is not None:
        model = tg.model_from_state(state, config, "checkpoint").eval()
        if needs_gptq:
            hessians = P.calibration_hessians(model, data["data"], data["gptq_batches"], data["calib_seq_len"],
                                              data["batch_tokens"], rt)
        tokens, luts = S.eval_data(data["data"], data.get("tokenizer", ""), config["vocab_size"], data.get("max_tokens", 0))

        h = tg.Hyperparameters(eval_seq_len=data["seq_len"], eval_stride=data["stride"], eval_batch_seqs=data["batch_seqs"])

        def evaluator(weights):
            model.load_state_dict(weights)
            return S.score_model(model, tokens, luts, h, rt)[:2]
        t0 = time.perf_counter()
        base["val_loss"], base["val_bpb"] = evaluator(state)
        base["eval_seconds"] = round(time.perf_counter() - t0, 3)
        base["targets"] = len(tokens) - 1
    rows, scored, errors, quantized = [], {}, {}, {}
    bar = tqdm(total=len(schemes), desc="fit", disable=not progress, file=sys.stderr)
    for scheme in schemes:
        bar.set_postfix_str(scheme.spec)
        t0 = time.perf_counter()
        qkey = replace(scheme, shuffle=False, codec="zlib", level=tg.CODEC_LEVELS["zlib"][0])  # what quantization reads
        if qkey not in quantized:  # one (GPTQ) quantization, then each codec: exactly what pack_artifact would write
            quantized[qkey] = (tg.quantize_state_dict(state, scheme, hessians), time.perf_counter() - t0)
        (tensors, info), quant_s = quantized[qkey]
        t1 = time.perf_counter()
        blob = tg.encode_artifact(tensors, info, config, scheme)
        seconds = quant_s + time.perf_counter() - t1
        roundtrip, _ = tg.unpack_artifact(blob, scheme.spec)
        key = weights_key(scheme)
        if key not in errors:
            errors[key] = M.relative_error(state, roundtrip)
        if evaluator and key not in scored:
            t1 = time.perf_counter()
            scored[key] = (evaluator(roundtrip)[1], time.perf_counter() - t1)
        val_bpb, eval_s = scored.get(key, (None, None))
        row = table_row(scheme.spec, len(blob), code, params, errors[key], val_bpb, base["val_bpb"], seconds)
        row["eval_seconds"] = None if eval_s is None else round(eval_s, 3)
        rows.append(row)
        bar.update(1)
    bar.close()
    return sort_rows(rows), base


def format_table(rows: list[dict], base: dict) -> str:
    has_bpb = any(r["val_bpb"] is not None for r in rows)
    width = max(30, *(len(r["scheme"]) for r in rows))
    head = f"{'scheme':<{width}} {'artifact':>10} {'code':>7} {'total':>10} {'margin':>11} {'B/param':>8} {'rel_err':>9}"
    head += f" {'val_bpb':>9} {'d_bpb':>8}" if has_bpb else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r['scheme']:<{width}} {r['artifact_bytes']:>10} {r['code_bytes']:>7} {r['total_bytes']:>10} "
                f"{r['margin']:>11} {r['bytes_per_param']:>8.4f} {r['rel_error']:>9.2e}")
        if has_bpb:
            line += f" {r['val_bpb']:>9.4f} {r['delta_bpb']:>+8.4f}"
        lines.append(line + ("" if r["fits"] else "  over"))
    foot = f"params: {base['params']}  cap: {C.SUBMISSION_CAP_BYTES}"
    if base.get("val_bpb") is not None:
        foot += f"  unquantized val_bpb: {base['val_bpb']:.4f} over {base['targets']} targets"
    return "\n".join(lines + [foot])


def add_data_args(p: argparse.ArgumentParser, seq_len: int, batch_seqs: int) -> None:
    p.add_argument("--data", default=None, help="dataset directory: score each round trip (and GPTQ statistics)")
    p.add_argument("--tokenizer", default="")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N validation targets (0 = all)")
    p.add_argument("--seq-len", type=int, default=seq_len, help=f"scoring window (default {seq_len})")
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--batch-seqs", type=int, default=batch_seqs)
    p.add_argument("--gptq-batches", type=int, default=P.H.gptq_batches, help="GPTQ calibration batches")
    p.add_argument("--calib-seq-len", type=int, default=P.H.train_seq_len, help="GPTQ calibration sequence length")
    p.add_argument("--batch-tokens", type=int, default=P.H.train_batch_tokens // 8, help="tokens per calibration batch")
    p.add_argument("--bf16", default="auto", choices=("auto", "0", "1"))


def data_settings(args) -> dict | None:
    if args.stride is None:
        args.stride = min(S.H.eval_stride, args.seq_len)
    if args.seq_len <= 0 or args.stride <= 0 or args.stride > args.seq_len or args.batch_seqs <= 0 or args.max_tokens < 0:
        raise ToolError("need 0 < --stride <= --seq-len, --batch-seqs > 0 and --max-tokens >= 0")
    if not args.data:
        return None
    return dict(data=args.data, tokenizer=args.tokenizer, seq_len=args.seq_len, stride=args.stride,
                batch_seqs=args.batch_seqs, max_tokens=args.max_tokens, gptq_batches=args.gptq_batches,
                calib_seq_len=args.calib_seq_len, batch_tokens=args.batch_tokens)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="training .ckpt, raw-weights .safetensors or an artifact")
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES), help="comma-separated schemes or quantization parts")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help="comma-separated codecs")
    p.add_argument("--level", action="append", metavar="CODEC=N", help="compressor level for a codec (repeatable)")
    add_data_args(p, S.H.eval_seq_len, S.H.eval_batch_seqs)
    p.add_argument("--code", default=None, help="code file counted against the cap, as it ships (default: train_gpt.py)")
    p.add_argument("--json", action="store_true", help="print JSON (rows and base) instead of the table")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    schemes = parse_matrix(args.schemes, args.codecs, parse_levels(args.level))
    data = data_settings(args)
    state, config, _ = M.load_model_file(args.model)
    rows, base = run_fit(state, config, schemes, M.counted_code_bytes(args.code), data, not args.no_progress, args.bf16)
    if args.json:
        print(json.dumps({"checkpoint": str(args.model), "base": base, "rows": rows}, indent=1))
    else:
        print(format_table(rows, base))
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
