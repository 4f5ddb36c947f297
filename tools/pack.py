"""Pack a checkpoint into an artifact with a chosen quantization scheme and codec.

    python tools/pack.py CKPT -o OUT [--bits 8|6|5|4] [--clip-search] [--embed-bits 16|8] [--float fp16|bf16|fp32]
                         [--codec zlib|zstd|lzma|brotli] [--level N] [--layout bytes|packed] [--json]

CKPT is a training .ckpt, a final_model.safetensors, or an artifact (re-packed from its dequantized weights).
Matrices are stored per output row as intN with one fp16 scale per row (optionally with a per-row clip search);
vectors and control tensors stay float (train_gpt.keeps_float); the tied embedding stays float (--embed-bits 16)
or becomes per-row int8. The artifact is read back and checked before it is written (atomically).
Any train_gpt.read_artifact reads the result once tools/artifact.py is imported.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact as A  # noqa: E402
from artifact import GolfError, tg  # noqa: E402

DEFAULT_CODEC = "brotli"
DEFAULT_LAYOUT = "auto"


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("ckpt", help="training .ckpt, final_model.safetensors or an artifact")
    p.add_argument("-o", "--out", required=True, help="artifact path to write")
    p.add_argument("--bits", type=int, default=8, choices=(8, 6, 5, 4), help="bits per quantized matrix value (default 8)")
    p.add_argument("--clip-search", action="store_true", help="per-row clip level minimising reconstruction MSE")
    p.add_argument("--embed-bits", type=int, default=16, choices=(16, 8), help="tied embedding: 16 = float, 8 = per-row int8")
    p.add_argument("--float", dest="float_kind", default="fp16", choices=tuple(A.FLOAT_KINDS), help="storage of float-kept tensors")
    p.add_argument("--codec", default=DEFAULT_CODEC, choices=tuple(A.CODEC_IDS), help=f"compressor (default {DEFAULT_CODEC})")
    p.add_argument("--level", type=int, default=None, help="compressor level (default: the codec's strongest)")
    p.add_argument("--layout", default=DEFAULT_LAYOUT, choices=("auto", "bytes", "packed"),
                   help="one value per byte or bit-packed codes; auto (default): packed for 4 bits, bytes otherwise "
                        "(the smaller after compression in tools/README.md's measurements)")
    p.add_argument("--code", default=None, help="code file counted against the cap (default: train_gpt.py)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    A.check_codec(args.codec, args.level)
    layout = args.layout if args.layout != "auto" else ("packed" if args.bits == 4 else "bytes")
    scheme = A.Scheme(bits=args.bits, clip_search=args.clip_search, embed_bits=args.embed_bits, layout=layout,
                      float_kind=args.float_kind)
    t0 = time.perf_counter()
    state, config, _ = A.load_model_file(args.ckpt)
    tg.model_from_state(state, config, args.ckpt)  # refuse a checkpoint that does not match its own config
    blob = A.pack(state, config, scheme, args.codec, args.level)
    roundtrip, _ = tg.unpack_artifact(blob, "packed artifact")
    if set(roundtrip) != set(state):
        raise GolfError("internal: the packed artifact does not hold every tensor")
    tg.atomic_write(args.out, blob)
    params = sum(v.numel() for v in state.values())
    code = A.code_bytes(args.code)
    summary = {"out": str(args.out), "scheme": f"{scheme.spec}+{args.codec}", "codec": args.codec,
               "level": A.check_codec(args.codec, args.level), "params": params, "artifact_bytes": len(blob),
               "bytes_per_param": len(blob) / params, "code_bytes": code, "total_bytes": len(blob) + code,
               "margin": A.CAP - len(blob) - code, "rel_error": A.relative_error(state, roundtrip),
               "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"wrote {args.out}: {summary['scheme']} (level {summary['level']}) {len(blob)} bytes "
              f"({summary['bytes_per_param']:.4f} bytes/param over {params} params), rel_error {summary['rel_error']:.3e}")
        print(f"total with code: {summary['total_bytes']} bytes (margin to {A.CAP}: {summary['margin']} bytes)"
              + ("  OVER THE CAP" if summary["margin"] < 0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(A.run_cli(main))
