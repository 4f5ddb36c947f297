"""Pack a checkpoint into an artifact with any scheme train_gpt.py knows (train_gpt.pack_artifact does the packing).

    python -m tools pack MODEL -o OUT.ptz [--scheme int6-emb8-gptq+brotli] [--data DIR [--gptq-batches 16]
                         [--seq-len 2048] [--batch-tokens 16384]] [--bf16 auto|0|1] [--code PATH] [--json]

MODEL is a training .ckpt, a raw-weights .safetensors (models/<RUN_ID>.safetensors) or an artifact (re-packed from
its dequantized weights). Scheme grammar (train_gpt.Scheme): int<B>[-emb<B>][-bigram<B>][-sd<K>][-gptq][-packed]
[-shuffle]+<codec>[-<level>], codecs zlib, zstd, lzma, brotli. A -gptq scheme needs --data: its rounding uses the input
statistics of the model on --gptq-batches batches from the start of the dataset's training shards
(train_gpt.input_moments). The artifact is read back by train_gpt.unpack_artifact before it is written (atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError

DEFAULT_SCHEME = "int6+brotli"
H = tg.Hyperparameters()


def calibration_hessians(model, data: str, batches: int, seq_len: int, batch_tokens: int, rt) -> dict:
    """GPTQ's E[x x^T] per quantized matrix, from `batches` batches of `batch_tokens` tokens read from the start of
    the dataset's training shards, exactly as train_gpt.Trainer.calibrate collects them (train_gpt.input_moments)."""
    if batches < 1 or seq_len < 1 or batch_tokens < seq_len or batch_tokens % seq_len:
        raise ToolError("need --gptq-batches >= 1 and --batch-tokens a positive multiple of --seq-len")
    files = tg.list_shards(data, "train")
    loader = tg.DistributedTokenLoader(files, model.cfg.vocab_size, 0, 1, rt.device)
    model = model.to(rt.device)
    sums, tokens = tg.input_moments(model, (loader.next_batch(batch_tokens, seq_len)[0] for _ in range(batches)), rt.autocast)
    return {k: (v / tokens).cpu() for k, v in sums.items()}


def pack(state: dict, config: dict, scheme: "tg.Scheme", data: str | None = None, gptq_batches: int = H.gptq_batches,
         seq_len: int = H.train_seq_len, batch_tokens: int = H.train_batch_tokens // 8, bf16: str = "auto") -> bytes:
    """The artifact bytes train_gpt.pack_artifact writes for these weights (with GPTQ statistics when the scheme asks)."""
    hessians = None
    if scheme.gptq:
        if not data:
            raise ToolError(f"scheme {scheme.spec} uses GPTQ: give --data DIR (calibration batches from its training shards)")
        model = tg.model_from_state(state, config, "checkpoint").eval()
        hessians = calibration_hessians(model, data, gptq_batches, seq_len, batch_tokens, M.runtime(bf16=bf16))
    return tg.pack_artifact(state, config, scheme, hessians)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("model", help="training .ckpt, raw-weights .safetensors or an artifact")
    p.add_argument("-o", "--out", required=True, help="artifact path to write")
    p.add_argument("--scheme", default=DEFAULT_SCHEME, help=f"artifact scheme (default {DEFAULT_SCHEME})")
    p.add_argument("--data", default=None, help="dataset directory: training shards for GPTQ statistics")
    p.add_argument("--gptq-batches", type=int, default=H.gptq_batches, help=f"calibration batches (default {H.gptq_batches})")
    p.add_argument("--seq-len", type=int, default=H.train_seq_len, help=f"calibration sequence length (default {H.train_seq_len})")
    p.add_argument("--batch-tokens", type=int, default=H.train_batch_tokens // 8,
                   help=f"tokens per calibration batch (default {H.train_batch_tokens // 8}, a run's micro-batch)")
    p.add_argument("--bf16", default="auto", choices=("auto", "0", "1"), help="precision of the calibration pass (as BF16)")
    p.add_argument("--code", default=None, help="code file counted against the cap, as it ships (default: train_gpt.py)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    scheme = tg.Scheme.parse(args.scheme)
    out = Path(args.out)
    if out.is_dir():
        raise ToolError(f"-o {out} is a folder: give the path of the artifact file to write")
    C.refuse_writing_over(out, [args.model], "-o", "the model file it packs")
    t0 = time.perf_counter()
    state, config, _ = M.load_model_file(args.model)
    blob = pack(state, config, scheme, args.data, args.gptq_batches, args.seq_len, args.batch_tokens, args.bf16)
    roundtrip, meta = tg.unpack_artifact(blob, "packed artifact")
    if set(roundtrip) != set(state) or meta.get("scheme") != scheme.spec:
        raise ToolError("internal: the packed artifact does not read back as written")
    C.atomic_write(args.out, blob)
    params = sum(v.numel() for v in state.values())
    code = M.counted_code_bytes(args.code)
    summary = {"out": str(args.out), "scheme": scheme.spec, "params": params, "artifact_bytes": len(blob),
               "bytes_per_param": len(blob) / params, "code_bytes": code, "total_bytes": len(blob) + code,
               "cap": C.SUBMISSION_CAP_BYTES, "margin": C.SUBMISSION_CAP_BYTES - len(blob) - code,
               "rel_error": M.relative_error(state, roundtrip), "seconds": round(time.perf_counter() - t0, 2)}
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"wrote {args.out}: {scheme.spec} {len(blob)} bytes ({summary['bytes_per_param']:.4f} bytes/param over "
              f"{params} params), rel_error {summary['rel_error']:.3e}")
        print(f"total with code: {summary['total_bytes']} bytes (margin to {C.SUBMISSION_CAP_BYTES}: {summary['margin']} bytes)"
              + ("  OVER THE CAP" if summary["margin"] < 0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
