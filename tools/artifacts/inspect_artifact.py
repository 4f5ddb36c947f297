"""Show what an artifact holds: scheme, codec, tensors, shapes, widths, bytes, totals against the cap.

    python -m tools inspect_artifact ART [--code PATH] [--json] [--no-progress]

The artifact is first read in full by train_gpt.unpack_artifact (hash, bounded decompression, every tensor decoded)
and its model config checked against the tensors (train_gpt.model_from_state): anything they refuse is refused here.
Per tensor: stored dtype and bytes (with its per-row scale), and an estimate of its compressed size: the tensor's
stored bytes (plus scale) compressed alone with the artifact's codec at its default level. The estimates do not add
up to the artifact (the whole payload is one stream), but show where the bytes go.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError


def tensor_bytes(t) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def stored_tensors(blob: bytes, what: str) -> tuple[dict, dict, str]:
    """(stored tensors, metadata, codec) of an artifact that train_gpt accepts in full (every tensor decoded, the
    config matching them)."""
    state, metadata = tg.unpack_artifact(blob, what)
    tg.model_from_state(state, metadata.get("config"), what)
    return tg.inflate_artifact(blob, what)


def inspect(path, progress: bool = True) -> dict:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise ToolError(f"cannot read {path}: {e.strerror}") from None
    stored, metadata, codec = stored_tensors(blob, str(path))
    level = tg.CODEC_LEVELS[codec][0]
    rows, params = [], 0
    for name, info in tqdm(metadata["tensors"].items(), desc="inspect", disable=not progress, file=sys.stderr):
        parts = [stored[name]] + ([stored[name + ".scale"]] if name + ".scale" in stored else [])
        raw = b"".join(tensor_bytes(t) for t in parts)
        shape = info.get("shape") or list(stored[name].shape)
        numel = 1
        for s in shape:
            numel *= int(s)
        params += numel
        rows.append({"name": name, "shape": [int(s) for s in shape], "kind": info.get("q"), "bits": info.get("bits"),
                     "dtype": tg.ST_DTYPES[stored[name].dtype], "numel": numel, "stored_bytes": len(raw),
                     "est_compressed_bytes": len(tg.compress(raw, codec, level))})
    return {"path": str(path), "scheme": metadata.get("scheme"), "codec": codec, "config": metadata.get("config"),
            "artifact_bytes": len(blob), "params": params, "bytes_per_param": len(blob) / params if params else None,
            "tensors": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("artifact")
    p.add_argument("--code", default=None, help="code file counted against the cap, as it ships (default: train_gpt.py)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    report = inspect(args.artifact, not args.no_progress)
    code, cap = M.counted_code_bytes(args.code), C.SUBMISSION_CAP_BYTES
    report.update(code_bytes=code, total_bytes=report["artifact_bytes"] + code, cap=cap,
                  margin=cap - report["artifact_bytes"] - code)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['path']}: scheme {report['scheme']}, codec {report['codec']}")
    print(f"{'tensor':<34} {'shape':<14} {'kind':<17} {'dtype':<5} {'stored':>10} {'~compressed':>12} {'B/param':>8}")
    for r in report["tensors"]:
        kind = r["kind"] + (f"/{r['bits']}" if r["bits"] else "")
        est = r["est_compressed_bytes"]
        print(f"{r['name']:<34} {'x'.join(map(str, r['shape'])):<14} {kind:<17} {r['dtype']:<5} {r['stored_bytes']:>10} "
              f"{est:>12} {est / max(r['numel'], 1):>8.3f}")
    est_sum = sum(r["est_compressed_bytes"] for r in report["tensors"])
    print(f"params: {report['params']}  stored: {sum(r['stored_bytes'] for r in report['tensors'])} bytes  "
          f"per-tensor estimates sum: {est_sum} bytes")
    print(f"artifact: {report['artifact_bytes']} bytes ({report['bytes_per_param']:.4f} bytes/param)  code: {code} bytes  "
          f"total: {report['total_bytes']} bytes  margin to {cap}: {report['margin']} bytes"
          + ("  OVER THE CAP" if report["margin"] < 0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
