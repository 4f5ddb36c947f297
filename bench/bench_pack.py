"""Benchmark packing schemes on a trained checkpoint: bytes per parameter, round-trip val_bpb penalty, pack and score time.

    python -m bench.bench_pack MODEL [--data data/datasets/shakespeare_sp1024] [--schemes ...] [--codecs ...]
                               [--max-tokens 32768] [--seq-len 1024] [--stride 1024] [--batch-seqs 8]
                               [--markdown OUT.md] [--json]

Every scheme x codec is packed by train_gpt.pack_artifact and read back by train_gpt.unpack_artifact; each distinct
set of round-trip weights is scored once on the first --max-tokens validation targets (the same tokens for every
scheme, so the penalties are paired differences). Also compares one-code-per-byte with bit-packed codes (-packed) and
plain with byte-shuffled payloads (-shuffle) for each codec, and times one end-to-end pack (the pack command's path)
+ score of the best scheme within --target-bpp. Issue target: <= 0.70 bytes/param with <= 0.01 bpb penalty.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace

import train_gpt as tg
from tools import common as C
from tools.artifacts import fit
from tools.artifacts import model_file as M
from tools.artifacts import pack as P
from tools.artifacts import score as S

DEFAULT_DATA = str(C.REPO / "data" / "datasets" / "shakespeare_sp1024")
DEFAULT_SCHEMES = ("int8", "int7", "int6", "int6-packed", "int6-shuffle", "int6-gptq", "int5-emb6", "int5-emb6-packed",
                   "int5-emb6-gptq", "int4-emb5", "int4-emb5-packed", "int4-emb5-gptq")


def markdown(report: dict) -> str:
    base, rows = report["base"], report["rows"]
    out = [f"checkpoint: `{report['checkpoint']}`  params: {base['params']}  unquantized val_bpb: {base['val_bpb']:.4f} "
           f"on the first {base['targets']} validation targets (seq_len {report['seq_len']}, stride {report['stride']})", "",
           "| scheme | artifact bytes | bytes/param | rel. error | val_bpb | penalty | pack s | score s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["bytes_per_param"])):
        out.append(f"| {r['scheme']} | {r['artifact_bytes']} | {r['bytes_per_param']:.4f} | "
                   f"{r['rel_error']:.2e} | {r['val_bpb']:.4f} | {r['delta_bpb']:+.4f} | {r['pack_seconds']:.1f} | "
                   f"{r['eval_seconds']:.1f} |")
    out += ["", "layout variants (artifact bytes; same weights):", "",
            "| scheme | variant | plain | variant bytes | variant/plain |", "|---|---|---:|---:|---:|"]
    for c in report["layout"]:
        out.append(f"| {c['scheme']} | {c['variant']} | {c['plain']} | {c['bytes']} | {c['bytes'] / c['plain']:.3f} |")
    best = report.get("best")
    out.append("")
    if best:
        out.append(f"best within {report['target_bpp']} bytes/param and {report['target_penalty']} bpb: {best['scheme']} at "
                   f"{best['bytes_per_param']:.4f} bytes/param, penalty {best['delta_bpb']:+.4f} bpb")
    else:
        out.append(f"no scheme met {report['target_bpp']} bytes/param with <= {report['target_penalty']} bpb penalty")
    if report.get("end_to_end"):
        e = report["end_to_end"]
        out.append(f"end to end ({e['scheme']}): load+pack+verify {e['pack_seconds']:.1f} s, score "
                   f"{e['targets']} targets {e['score_seconds']:.1f} s ({e['tokens_per_second']:.0f} tokens/s; the full "
                   f"validation split of {e['val_targets']} targets would take ~{e['full_score_minutes']:.1f} min)")
    return "\n".join(out)


def layout_pairs(rows: list[dict]) -> list[dict]:
    """Each -packed or -shuffle row beside the same scheme without it."""
    by_spec = {r["scheme"]: r for r in rows}
    pairs = []
    for r in rows:
        scheme = tg.Scheme.parse(r["scheme"])
        for variant in ("packed", "shuffle"):
            plain = replace(scheme, **{variant: False}).spec
            if getattr(scheme, variant) and plain in by_spec:
                pairs.append({"scheme": plain, "variant": variant, "plain": by_spec[plain]["artifact_bytes"],
                              "bytes": r["artifact_bytes"]})
    return pairs


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model")
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES))
    p.add_argument("--codecs", default=",".join(fit.DEFAULT_CODECS))
    fit.add_data_args(p, 1024, 8)
    p.set_defaults(data=DEFAULT_DATA, max_tokens=32768)
    p.add_argument("--target-bpp", type=float, default=0.70, help="bytes per parameter target")
    p.add_argument("--target-penalty", type=float, default=0.01, help="val_bpb penalty target")
    p.add_argument("--markdown", default=None, help="also write the markdown report here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    args.stride = args.stride or args.seq_len
    data = fit.data_settings(args)
    schemes = fit.parse_matrix(args.schemes, args.codecs)
    state, config, _ = M.load_model_file(args.model)
    rows, base = fit.run_fit(state, config, schemes, M.counted_code_bytes(), data, not args.no_progress, args.bf16)
    ok = [r for r in rows if r["bytes_per_param"] <= args.target_bpp and r["delta_bpb"] <= args.target_penalty]
    best = min(ok, key=lambda r: (r["delta_bpb"], r["artifact_bytes"])) if ok else \
        min(rows, key=lambda r: r["delta_bpb"] + r["bytes_per_param"])
    report = {"checkpoint": str(args.model), "seq_len": args.seq_len, "stride": args.stride, "base": base, "rows": rows,
              "layout": layout_pairs(rows), "target_bpp": args.target_bpp, "target_penalty": args.target_penalty,
              "best": best if ok else None}
    # end to end: what a user runs (load the checkpoint, pack, verify, then score the artifact)
    t0 = time.perf_counter()
    st, cfg, _ = M.load_model_file(args.model)
    blob = P.pack(st, cfg, tg.Scheme.parse(best["scheme"]), args.data, args.gptq_batches, args.calib_seq_len,
                  args.batch_tokens, args.bf16)
    rt_state, meta = tg.unpack_artifact(blob)
    pack_s = time.perf_counter() - t0
    tokens, luts = S.eval_data(args.data, "", cfg["vocab_size"], args.max_tokens)
    full = len(tg.load_val_tokens(args.data, 1, cfg["vocab_size"])) - 1
    t1 = time.perf_counter()
    S.score_model(tg.model_from_state(rt_state, meta["config"]).eval(), tokens, luts,
                  tg.Hyperparameters(eval_seq_len=args.seq_len, eval_stride=args.stride, eval_batch_seqs=args.batch_seqs),
                  M.runtime(bf16=args.bf16))
    score_s = time.perf_counter() - t1
    report["end_to_end"] = {"scheme": best["scheme"], "pack_seconds": pack_s, "score_seconds": score_s,
                            "targets": len(tokens) - 1, "tokens_per_second": (len(tokens) - 1) / score_s,
                            "val_targets": full, "full_score_minutes": full / ((len(tokens) - 1) / score_s) / 60}
    text = markdown(report)
    if args.markdown:
        C.atomic_write(args.markdown, text + "\n")  # the one temporary-name convention (common.py)
    print(json.dumps(report, indent=1) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
