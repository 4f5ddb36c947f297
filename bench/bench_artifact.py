"""How long the artifact choice takes after training, on a checkpoint: GPTQ's calibration (counted as training time
in a run) and then ARTIFACT's choice itself (train_gpt.choose_artifact: quantize the candidates, judge them by the
forecast and the held-out loss, compress the one that ships), exactly as a run does them, with the settings in the
environment (ARTIFACT, SIZE_CAP_BYTES, GPTQ_BATCHES, TRAIN_BATCH_TOKENS, TRAIN_SEQ_LEN, ARTIFACT_EVAL_TOKENS, ...).

  python -m bench.bench_artifact models/<RUN_ID>.safetensors --data DATASET_DIR
  ARTIFACT=int6-gptq+brotli python -m bench.bench_artifact CKPT --data DIR --json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

import train_gpt as tg
from tools import common as C
from tools.artifacts import model_file as M
from tools.common import ToolError


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("model", help="a run's raw weights (.safetensors), a training checkpoint or an artifact")
    ap.add_argument("--data", required=True, help="dataset directory: calibration and held-out tokens from its training shards")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    h = tg.Hyperparameters.from_env()
    rt = tg.setup_runtime(h)
    model, config, _ = M.load_scored_model(args.model)
    if config["vocab_size"] != h.vocab_size:
        raise ToolError(f"{args.model} has vocab_size {config['vocab_size']}: set VOCAB_SIZE={config['vocab_size']}")
    model = model.to(rt.device)
    state = {k: v.detach().float().clone() for k, v in model.state_dict().items()}  # not the model's own tensors
    loader = tg.DistributedTokenLoader(tg.list_shards(args.data, "train"), h.vocab_size, rt.rank, rt.world_size, rt.device)
    luts = tg.build_byte_luts(tg.load_tokenizer(tg.resolve_tokenizer_path(args.data, h.tokenizer_path, h.vocab_size)))
    code_bytes = M.counted_code_bytes()
    t0 = time.perf_counter()
    hessians = tg.calibrate(model, loader, h, rt) if h.artifact == "auto" or tg.Scheme.parse(h.artifact).gptq else None
    calibration_s = time.perf_counter() - t0
    heldout = loader.stream.take(h.artifact_eval_tokens + 1)
    seq = min(h.train_seq_len, len(heldout) - 1)

    def heldout_loss(weights: dict) -> float:
        model.load_state_dict(weights)
        return tg.evaluate(model, heldout, luts, seq, seq, h.eval_batch_seqs, rt.device, rt.autocast)[0]

    lines = []
    def log(msg: str) -> None:
        lines.append(f"[{time.perf_counter() - t1:6.1f}s] {msg}")
        if not args.json:
            print(lines[-1], flush=True)
    t1 = time.perf_counter()
    blob, scheme = tg.choose_artifact(state, dict(config), h, code_bytes, hessians, heldout_loss, log)
    choice_s = time.perf_counter() - t1
    result = {"model": str(args.model), "artifact": h.artifact, "params": sum(t.numel() for t in state.values()),
              "calibration_batches": h.gptq_batches if hessians is not None else 0, "calibration_seconds": round(calibration_s, 1),
              "choice_seconds": round(choice_s, 1), "shipped_scheme": scheme.spec, "artifact_bytes": len(blob),
              "code_bytes": code_bytes, "total_bytes": len(blob) + code_bytes, "threads": torch.get_num_threads(),
              "device": str(rt.device), "log": lines}
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            if k != "log":
                print(f"{k:22s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
