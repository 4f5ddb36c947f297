"""Which packing fits under 16,000,000 bytes, and what does it cost? A schemes x codecs table for one checkpoint.

    python tools/fit.py CKPT [--schemes int8,int6-clip,...] [--codecs zlib,zstd,lzma,brotli] [--level zstd=19 ...]
                        [--data DIR [--max-tokens N] [--seq-len N] [--stride N] [--batch-seqs N] [--bf16 0|1]]
                        [--code PATH] [--json]

Columns: artifact bytes, code bytes (train_gpt.py, or --code), total = artifact + code, margin = 16,000,000 - total,
bytes per parameter, relative reconstruction error ||W - deq(W)|| / ||W|| over all float tensors, and with --data
the round-trip val_bpb (the artifact read back through the one loader, then train_gpt.evaluate) and its
difference to the unquantized checkpoint. Rows that fit come first, best first (lowest val_bpb with --data,
otherwise lowest reconstruction error; ties: smallest total). Scheme specs: int8|int6|int5|int4, then any of
-clip (per-row clip search), -emb8 (tied embedding in int8), -packed (bit-packed codes), -bf16/-fp32 (float storage).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact as A  # noqa: E402
import score as S  # noqa: E402
from artifact import GolfError, tg  # noqa: E402

DEFAULT_SCHEMES = ("int8", "int8-clip", "int6-clip", "int6-clip-emb8", "int5-clip", "int5-clip-emb8", "int4-clip")
DEFAULT_CODECS = ("zlib", "zstd", "lzma", "brotli")


def table_row(scheme: str, codec: str, level: int, artifact_bytes: int, code_bytes: int, params: int,
              rel_error: float, val_bpb: float | None = None, base_bpb: float | None = None, seconds: float = 0.0) -> dict:
    """One row of the table; the arithmetic lives here (and is tested)."""
    total = artifact_bytes + code_bytes
    return {"scheme": scheme, "codec": codec, "level": level, "artifact_bytes": artifact_bytes, "code_bytes": code_bytes,
            "total_bytes": total, "margin": A.CAP - total, "fits": total <= A.CAP,
            "bytes_per_param": artifact_bytes / params if params else None, "rel_error": rel_error,
            "val_bpb": val_bpb, "delta_bpb": None if val_bpb is None or base_bpb is None else val_bpb - base_bpb,
            "pack_seconds": round(seconds, 3)}


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
        if not value.lstrip("-").isdigit():
            raise GolfError(f"--level {item!r}: expected CODEC=N, e.g. zstd=19")
        levels[codec] = A.check_codec(codec, int(value)) if codec in A.CODEC_IDS else A.check_codec(codec)
    return levels


def run_fit(state: dict, config: dict, schemes: list, codecs: list, levels: dict, code: int, data=None,
            progress: bool = True) -> tuple[list[dict], dict]:
    """Pack every scheme with every codec, read each artifact back, measure; returns (rows, base info).
    data: None or dict(data, tokenizer, seq_len, stride, batch_seqs, bf16, max_tokens)."""
    params = sum(v.numel() for v in state.values())
    base = {"params": params, "val_bpb": None, "val_loss": None}
    evaluator = None
    if data is not None:
        tokens, luts = S.eval_data(data["data"], data.get("tokenizer", ""), config["vocab_size"], data["seq_len"],
                                   data.get("max_tokens", 0))

        def evaluator(sd):
            model = tg.model_from_state(sd, config, "checkpoint").eval()
            return S.score_model(model, tokens, luts, data["seq_len"], data["stride"], data["batch_seqs"],
                                 torch_device(), bool(data.get("bf16", 1)))
        t0 = time.perf_counter()
        base["val_loss"], base["val_bpb"] = evaluator(state)
        base["eval_seconds"] = round(time.perf_counter() - t0, 3)
        base["targets"] = len(tokens) - 1
    rows, scored = [], {}  # scored: the layout does not change the weights, so each is evaluated once
    evals = len({replace(s, layout="bytes") for s in schemes}) if evaluator else 0
    bar = tqdm(total=len(schemes) * len(codecs) + evals, desc="fit", disable=not progress, file=sys.stderr)
    for scheme in schemes:
        t0 = time.perf_counter()
        tensors, info = A.quantize(state, scheme)
        quant_s = time.perf_counter() - t0
        rel_error = None
        for codec in codecs:
            bar.set_postfix_str(f"{scheme.spec}+{codec}")
            t1 = time.perf_counter()
            inner = tg.tensors_to_bytes(tensors, A.metadata_for(scheme, codec, config, info))
            blob = A.frame(A.compress(inner, codec, levels.get(codec)), codec)
            seconds = quant_s + time.perf_counter() - t1
            roundtrip, _ = tg.unpack_artifact(blob, f"{scheme.spec}+{codec}")
            if rel_error is None:  # every codec is lossless: the round-trip weights are the same for all of them
                rel_error = A.relative_error(state, roundtrip)
                key = replace(scheme, layout="bytes")
                if evaluator and key not in scored:
                    bar.set_postfix_str(f"{scheme.spec} eval")
                    t2 = time.perf_counter()
                    scored[key] = (evaluator(roundtrip)[1], time.perf_counter() - t2)
                    bar.update(1)
            val_bpb, eval_s = scored.get(replace(scheme, layout="bytes"), (None, None))
            row = table_row(scheme.spec, codec, A.check_codec(codec, levels.get(codec)), len(blob), code, params,
                            rel_error, val_bpb, base["val_bpb"], seconds)
            row["eval_seconds"] = None if eval_s is None else round(eval_s, 3)
            rows.append(row)
            bar.update(1)
    bar.close()
    return sort_rows(rows), base


def torch_device():
    import torch
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def format_table(rows: list[dict], base: dict) -> str:
    has_bpb = any(r["val_bpb"] is not None for r in rows)
    head = f"{'scheme':<22} {'codec':<10} {'artifact':>10} {'code':>7} {'total':>10} {'margin':>11} {'B/param':>8} {'rel_err':>9}"
    head += f" {'val_bpb':>9} {'d_bpb':>8}" if has_bpb else ""
    lines = [head, "-" * len(head)]
    for r in rows:
        line = (f"{r['scheme']:<22} {r['codec'] + ':' + str(r['level']):<10} {r['artifact_bytes']:>10} {r['code_bytes']:>7} "
                f"{r['total_bytes']:>10} {r['margin']:>11} {r['bytes_per_param']:>8.4f} {r['rel_error']:>9.2e}")
        if has_bpb:
            line += f" {r['val_bpb']:>9.4f} {r['delta_bpb']:>+8.4f}"
        lines.append(line + ("" if r["fits"] else "  over"))
    foot = f"params: {base['params']}  cap: {A.CAP}"
    if base.get("val_bpb") is not None:
        foot += f"  unquantized val_bpb: {base['val_bpb']:.4f} over {base['targets']} targets"
    return "\n".join(lines + [foot])


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("ckpt", help="training .ckpt, final_model.safetensors or an artifact")
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES), help="comma-separated scheme specs")
    p.add_argument("--codecs", default=",".join(DEFAULT_CODECS), help="comma-separated codecs")
    p.add_argument("--level", action="append", metavar="CODEC=N", help="compressor level for a codec (repeatable)")
    p.add_argument("--data", default=None, help="dataset directory: also score each round trip")
    p.add_argument("--tokenizer", default="")
    p.add_argument("--max-tokens", type=int, default=0, help="score only the first N validation targets (0 = all)")
    p.add_argument("--seq-len", type=int, default=S.H.eval_seq_len)
    p.add_argument("--stride", type=int, default=None)
    p.add_argument("--batch-seqs", type=int, default=S.H.eval_batch_seqs)
    p.add_argument("--bf16", type=int, default=1, choices=(0, 1))
    p.add_argument("--code", default=None, help="code file counted against the cap (default: train_gpt.py)")
    p.add_argument("--json", action="store_true", help="print JSON (rows and base) instead of the table")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    if args.stride is None:
        args.stride = min(S.H.eval_stride, args.seq_len)
    if args.seq_len <= 0 or args.stride <= 0 or args.stride > args.seq_len or args.batch_seqs <= 0 or args.max_tokens < 0:
        raise GolfError("need 0 < --stride <= --seq-len, --batch-seqs > 0 and --max-tokens >= 0")
    return args


def parse_matrix(schemes_arg: str, codecs_arg: str) -> tuple[list, list[str]]:
    """The comma-separated --schemes and --codecs lists, each item checked."""
    schemes = [A.Scheme.parse(s) for s in schemes_arg.split(",") if s.strip()]
    codecs = [c.strip() for c in codecs_arg.split(",") if c.strip()]
    for c in codecs:
        A.check_codec(c)
    if not schemes or not codecs:
        raise GolfError("need at least one scheme and one codec")
    return schemes, codecs


def main(argv=None) -> int:
    args = parse_args(argv)
    schemes, codecs = parse_matrix(args.schemes, args.codecs)
    levels = parse_levels(args.level)
    state, config, _ = A.load_model_file(args.ckpt)
    tg.model_from_state(state, config, args.ckpt)
    data = None if not args.data else dict(data=args.data, tokenizer=args.tokenizer, seq_len=args.seq_len, stride=args.stride,
                                           batch_seqs=args.batch_seqs, bf16=args.bf16, max_tokens=args.max_tokens)
    rows, base = run_fit(state, config, schemes, codecs, levels, A.code_bytes(args.code), data, not args.no_progress)
    if args.json:
        print(json.dumps({"checkpoint": str(args.ckpt), "base": base, "rows": rows}, indent=1))
    else:
        print(format_table(rows, base))
    return 0


if __name__ == "__main__":
    sys.exit(A.run_cli(main))
