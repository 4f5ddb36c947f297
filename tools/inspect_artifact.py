"""Show what an artifact holds: scheme, codec, tensors, shapes, quantization kinds, bytes, totals against the cap.

    python tools/inspect_artifact.py ART [--code PATH] [--level N] [--json]

Per tensor: stored dtype and bytes (with its per-row scale), and an estimate of its compressed size: the tensor's
stored bytes (plus scale) compressed alone with the artifact's codec (at --level, default the codec's strongest).
The estimates do not add up to the artifact exactly (the whole file is compressed as one stream), but they show
where the bytes go. Nothing is dequantized or executed; decompression is bounded.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent))
import artifact as A  # noqa: E402
from artifact import GolfError, tg  # noqa: E402


def tensor_bytes(t) -> bytes:
    return t.contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""


def inspect(path, level: int | None = None, progress: bool = True) -> dict:
    try:
        blob = Path(path).read_bytes()
    except OSError as e:
        raise GolfError(f"cannot read {path}: {e.strerror}") from None
    stored, metadata, codec_id = A.inflate(blob, str(path))
    codec = A.codec_name(codec_id)
    infos = metadata.get("tensors")
    if not isinstance(infos, dict):
        raise GolfError(f"{path}: metadata lists no tensors")
    rows, params = [], 0
    for name, info in tqdm(infos.items(), desc="inspect", disable=not progress, file=sys.stderr):
        kind = info.get("q")
        if kind not in tg.DEQUANTIZERS:
            raise GolfError(f"{path}: tensor {name!r} uses unknown quantization {kind!r}")
        if name not in stored:
            raise GolfError(f"{path}: tensor {name!r} is listed but not stored")
        parts = [stored[name]] + ([stored[name + ".scale"]] if name + ".scale" in stored else [])
        raw = b"".join(tensor_bytes(t) for t in parts)
        shape = info.get("shape") or list(stored[name].shape)
        numel = 1
        for s in shape:
            numel *= int(s)
        params += numel
        rows.append({"name": name, "shape": [int(s) for s in shape], "kind": kind, "bits": info.get("bits"),
                     "dtype": tg.ST_DTYPES[stored[name].dtype], "numel": numel, "stored_bytes": len(raw),
                     "est_compressed_bytes": len(A.compress(raw, codec, level)) if codec in A.CODEC_IDS else None})
    return {"path": str(path), "scheme": metadata.get("scheme"), "codec": codec, "codec_id": codec_id,
            "config": metadata.get("config"), "artifact_bytes": len(blob), "params": params,
            "bytes_per_param": len(blob) / params if params else None, "tensors": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("artifact")
    p.add_argument("--code", default=None, help="code file counted against the cap (default: train_gpt.py)")
    p.add_argument("--level", type=int, default=None, help="codec level for the per-tensor estimates")
    p.add_argument("--json", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    report = inspect(args.artifact, args.level, not args.no_progress)
    code = A.code_bytes(args.code)
    report.update(code_bytes=code, total_bytes=report["artifact_bytes"] + code, cap=A.CAP,
                  margin=A.CAP - report["artifact_bytes"] - code)
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    print(f"{report['path']}: scheme {report['scheme']}, codec {report['codec']} (id {report['codec_id']})")
    print(f"{'tensor':<34} {'shape':<14} {'kind':<15} {'dtype':<5} {'stored':>10} {'~compressed':>12} {'B/param':>8}")
    for r in report["tensors"]:
        kind = r["kind"] + (f"/{r['bits']}" if r["bits"] else "")
        est = r["est_compressed_bytes"]
        print(f"{r['name']:<34} {'x'.join(map(str, r['shape'])):<14} {kind:<15} {r['dtype']:<5} {r['stored_bytes']:>10} "
              f"{est if est is not None else '?':>12} {(est or 0) / max(r['numel'], 1):>8.3f}")
    est_sum = sum(r["est_compressed_bytes"] or 0 for r in report["tensors"])
    print(f"params: {report['params']}  stored: {sum(r['stored_bytes'] for r in report['tensors'])} bytes  "
          f"per-tensor estimates sum: {est_sum} bytes")
    print(f"artifact: {report['artifact_bytes']} bytes ({report['bytes_per_param']:.4f} bytes/param)  code: {code} bytes  "
          f"total: {report['total_bytes']} bytes  margin to {A.CAP}: {report['margin']} bytes"
          + ("  OVER THE CAP" if report["margin"] < 0 else ""))
    return 0


if __name__ == "__main__":
    sys.exit(A.run_cli(main))
