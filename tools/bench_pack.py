"""Benchmark packing schemes on a trained checkpoint: bytes per parameter, round-trip val_bpb penalty, pack and score time.

    python tools/bench_pack.py CKPT [--data data/datasets/shakespeare_sp1024] [--schemes ...] [--codecs ...]
                               [--max-tokens 32768] [--seq-len 1024] [--stride 1024] [--batch-seqs 8]
                               [--markdown OUT.md] [--json]

Every scheme x codec is packed in memory and read back through the one loader; each distinct set of round-trip
weights is scored once on the first --max-tokens validation targets (the same tokens for every scheme, so the
penalties are paired differences). Also compares the bytes layout with bit-packed codes for each codec, and
times one end-to-end pack (tools/pack.py path) + score of the best scheme within --target-bytes-per-param.
Issue target: <= 0.70 bytes/param with <= 0.01 bpb penalty (train_gpt's int8+zlib is near 0.95).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact as A  # noqa: E402
import fit  # noqa: E402
import score as S  # noqa: E402
from artifact import GolfError, tg  # noqa: E402

DEFAULT_DATA = str(A.REPO / "data" / "datasets" / "shakespeare_sp1024")
DEFAULT_SCHEMES = ("int8", "int8-clip", "int6-clip", "int6-clip-packed", "int6-clip-emb8", "int5-clip", "int5-clip-packed",
                   "int5-clip-emb8", "int4-clip", "int4-clip-packed")


def markdown(report: dict) -> str:
    base, rows = report["base"], report["rows"]
    out = [f"checkpoint: `{report['checkpoint']}`  params: {base['params']}  unquantized val_bpb: {base['val_bpb']:.4f} "
           f"on the first {base['targets']} validation targets (seq_len {report['seq_len']}, stride {report['stride']})", "",
           "| scheme | codec | artifact bytes | bytes/param | rel. error | val_bpb | penalty | pack s | score s |",
           "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in sorted(rows, key=lambda r: (r["bytes_per_param"])):
        out.append(f"| {r['scheme']} | {r['codec']}:{r['level']} | {r['artifact_bytes']} | {r['bytes_per_param']:.4f} | "
                   f"{r['rel_error']:.2e} | {r['val_bpb']:.4f} | {r['delta_bpb']:+.4f} | {r['pack_seconds']:.1f} | "
                   f"{r['eval_seconds']:.1f} |")
    out += ["", "bytes vs bit-packed layout (artifact bytes; same weights):", "",
            "| scheme | codec | bytes layout | packed layout | packed/bytes |", "|---|---|---:|---:|---:|"]
    for c in report["layout"]:
        out.append(f"| {c['scheme']} | {c['codec']} | {c['bytes']} | {c['packed']} | {c['packed'] / c['bytes']:.3f} |")
    best = report.get("best")
    out.append("")
    if best:
        out.append(f"best within {report['target_bpp']} bytes/param and {report['target_penalty']} bpb: {best['scheme']}+"
                   f"{best['codec']} at {best['bytes_per_param']:.4f} bytes/param, penalty {best['delta_bpb']:+.4f} bpb")
    else:
        out.append(f"no scheme met {report['target_bpp']} bytes/param with <= {report['target_penalty']} bpb penalty")
    if report.get("end_to_end"):
        e = report["end_to_end"]
        out.append(f"end to end ({e['scheme']}+{e['codec']}): load+pack+verify {e['pack_seconds']:.1f} s, score "
                   f"{e['targets']} targets {e['score_seconds']:.1f} s ({e['tokens_per_second']:.0f} tokens/s; the full "
                   f"validation split of {e['val_targets']} targets would take ~{e['full_score_minutes']:.1f} min)")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("ckpt")
    p.add_argument("--data", default=DEFAULT_DATA)
    p.add_argument("--schemes", default=",".join(DEFAULT_SCHEMES))
    p.add_argument("--codecs", default=",".join(fit.DEFAULT_CODECS))
    p.add_argument("--max-tokens", type=int, default=32768)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--stride", type=int, default=None, help="default: --seq-len (non-overlapping)")
    p.add_argument("--batch-seqs", type=int, default=8)
    p.add_argument("--bf16", type=int, default=1, choices=(0, 1))
    p.add_argument("--target-bpp", type=float, default=0.70, help="bytes per parameter target")
    p.add_argument("--target-penalty", type=float, default=0.01, help="val_bpb penalty target")
    p.add_argument("--markdown", default=None, help="also write the markdown report here")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    stride = args.stride or args.seq_len
    schemes, codecs = fit.parse_matrix(args.schemes, args.codecs)
    state, config, _ = A.load_model_file(args.ckpt)
    tg.model_from_state(state, config, args.ckpt)
    data = dict(data=args.data, seq_len=args.seq_len, stride=stride, batch_seqs=args.batch_seqs, bf16=args.bf16,
                max_tokens=args.max_tokens)
    rows, base = fit.run_fit(state, config, schemes, codecs, {}, A.code_bytes(), data, not args.no_progress)
    by_key = {(r["scheme"], r["codec"]): r for r in rows}
    layout = []
    for s in schemes:
        if s.layout == "packed" and (s.spec.replace("-packed", ""), codecs[0]) in by_key:
            for c in codecs:
                layout.append({"scheme": s.spec.replace("-packed", ""), "codec": c,
                               "bytes": by_key[(s.spec.replace("-packed", ""), c)]["artifact_bytes"],
                               "packed": by_key[(s.spec, c)]["artifact_bytes"]})
    ok = [r for r in rows if r["bytes_per_param"] <= args.target_bpp and r["delta_bpb"] <= args.target_penalty]
    best = min(ok, key=lambda r: (r["delta_bpb"], r["artifact_bytes"])) if ok else min(rows, key=lambda r: r["delta_bpb"] + r["bytes_per_param"])
    report = {"checkpoint": str(args.ckpt), "seq_len": args.seq_len, "stride": stride, "base": base, "rows": rows,
              "layout": layout, "target_bpp": args.target_bpp, "target_penalty": args.target_penalty,
              "best": best if ok else None}
    # end to end: what a user runs (load the checkpoint, pack, verify, then score the artifact)
    t0 = time.perf_counter()
    st, cfg, _ = A.load_model_file(args.ckpt)
    blob = A.pack(st, cfg, A.Scheme.parse(best["scheme"]), best["codec"])
    rt, meta = tg.unpack_artifact(blob)
    pack_s = time.perf_counter() - t0
    tokens, luts = S.eval_data(args.data, "", cfg["vocab_size"], args.seq_len, args.max_tokens)
    full = len(tg.load_val_tokens(args.data, 1, cfg["vocab_size"])) - 1
    t1 = time.perf_counter()
    S.score_model(tg.model_from_state(rt, meta["config"]).eval(), tokens, luts, args.seq_len, stride, args.batch_seqs,
                  fit.torch_device(), bool(args.bf16))
    score_s = time.perf_counter() - t1
    report["end_to_end"] = {"scheme": best["scheme"], "codec": best["codec"], "pack_seconds": pack_s, "score_seconds": score_s,
                            "targets": len(tokens) - 1, "tokens_per_second": (len(tokens) - 1) / score_s,
                            "val_targets": full, "full_score_minutes": full / ((len(tokens) - 1) / score_s) / 60}
    text = markdown(report)
    if args.markdown:
        tg.atomic_write(args.markdown, (text + "\n").encode())
    print(json.dumps(report, indent=1) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(A.run_cli(main))
