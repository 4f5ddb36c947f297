"""What a training step costs besides its arithmetic, for the configuration in the environment (train_gpt.py's
settings and rules; default: the 7-layer recipe), on any device:

  - the operator calls one optimizer step dispatches (gradient clipping, Adam, Muon) and one full training step
    (its micro-batches' copy to the device, forward and backward of each, the optimizer step), counted with a
    TorchDispatchMode, so the count is the same on CPU as on CUDA (on an H100 each costs ~5-10 us to launch);
  - the host waits per step: calls whose result the host must read before it can go on (item/float/bool of a tensor,
    data-dependent shapes such as nonzero, copies to the CPU);
  - the graph breaks of the compiled forward (torch._dynamo.explain);
  - on CUDA, the time of a full step and the optimizer's share of it (CUDA events, after warm-up).

Tokens per micro-step do not change the counts, so by default each micro-step is one sequence of TRAIN_SEQ_LEN
(--micro-seqs 0 uses the run's own micro-batch). The step is train_gpt.train_step itself, with the run's
optimizers and loader.

  python -m bench.bench_overhead                       # the default shape
  python -m bench.bench_overhead --json
"""
from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode

import train_gpt as tg
from data.golfdata import write_shard
from tools import common as C
from tools.common import ToolError

# Operators whose result the host must have before it can continue (a device synchronization on CUDA).
HOST_WAITS = {"aten::_local_scalar_dense", "aten::item", "aten::is_nonzero", "aten::equal", "aten::nonzero",
              "aten::masked_select", "aten::unique", "aten::_unique2"}


class Dispatches(TorchDispatchMode):
    """Counts every operator call below autograd, and the ones that make the host wait (any copy to the CPU of a
    tensor that lives elsewhere included)."""

    def __init__(self):
        super().__init__()
        self.calls = collections.Counter()

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        name = func._schema.name
        self.calls[name] += 1
        if name in ("aten::_to_copy", "aten::copy_") and any(
                isinstance(a, torch.Tensor) and a.device.type != "cpu" for a in args) and (
                kwargs.get("device") == torch.device("cpu") or (name == "aten::copy_" and args[0].device.type == "cpu")):
            self.calls["<copy to host>"] += 1
        return func(*args, **kwargs)

    @property
    def total(self) -> int:
        return sum(v for k, v in self.calls.items() if not k.startswith("<"))

    @property
    def waits(self) -> int:
        return sum(v for k, v in self.calls.items() if k in HOST_WAITS or k == "<copy to host>")


def loader_for(h: tg.Hyperparameters, rt: tg.Runtime, folder: Path) -> tg.DistributedTokenLoader:
    """The run's loader over one shard of random tokens (enough for a few steps)."""
    tokens = np.random.default_rng(0).integers(2, h.vocab_size, 4 * h.train_batch_tokens + 8).astype(np.uint16)
    write_shard(folder / "bench_train_000000.bin", tokens)
    return tg.DistributedTokenLoader([folder / "bench_train_000000.bin"], h.vocab_size, rt.rank, rt.world_size, rt.device)


def measure(h: tg.Hyperparameters, rt: tg.Runtime, micro_tokens: int, steps: int) -> dict:
    torch.manual_seed(h.seed)
    cfg = tg.model_config(h, bos_id=1)
    model = tg.GPT(cfg).to(rt.device)
    for p in model.parameters():  # a trained-like model: no zero projections, so every optimizer path does work
        torch.nn.init.normal_(p, std=0.02)
    train_model = tg.runnable(model, h, rt)
    optimizers = tg.build_optimizers(model, h, rt)
    tg.set_schedule(optimizers, 1.0, h.muon_momentum, 1.0)
    with tempfile.TemporaryDirectory(prefix=C.temp_prefix("bench_overhead", "tmp")) as folder:
        loader = loader_for(h, rt, Path(folder))
        step = lambda: tg.train_step(train_model, model, optimizers, loader.next_batches(8 // rt.world_size, micro_tokens, h.train_seq_len), h, rt)
        step()  # warm-up: compile, allocate gradients and optimizer state
        with Dispatches() as full:
            loss = step()
        x, y = loader.next_batch(micro_tokens, h.train_seq_len)
        with rt.autocast:
            model(x, y).backward()
        with Dispatches() as opt:
            if h.grad_clip_norm > 0:
                torch.nn.utils.clip_grad_norm_(model.parameters(), h.grad_clip_norm, foreach=True)
            for o in optimizers:
                o.step()
        model.zero_grad(set_to_none=True)
        torch._dynamo.reset()
        explained = torch._dynamo.explain(model)(x, y)
        timing = cuda_timing(step, optimizers, model, h, x, y, steps) if rt.device.type == "cuda" else None
    return {"device": str(rt.device), "choices": rt.choices, "params": sum(p.numel() for p in model.parameters()),
            "micro_steps": 8 // rt.world_size, "tokens_per_micro_step": micro_tokens,
            "optimizer_step_ops": opt.total, "optimizer_step_host_waits": opt.waits,
            "train_step_ops": full.total, "train_step_host_waits": full.waits,
            "optimizer_top_ops": dict(opt.calls.most_common(8)), "graph_breaks": explained.graph_break_count,
            "graphs": explained.graph_count, "finite_loss": bool(torch.isfinite(loss)), "cuda_timing": timing}


def cuda_timing(step, optimizers, model, h, x, y, steps: int) -> dict:
    """Median over `steps` of a full step and of the optimizer step alone (gradients of one micro-batch), in ms."""
    def timed(fn) -> float:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    def optimizer_only():
        for o in optimizers:
            o.step()
    full = sorted(timed(step) for _ in range(steps))[steps // 2]
    model(x, y).backward()
    optimizer = sorted(timed(optimizer_only) for _ in range(steps))[steps // 2]
    model.zero_grad(set_to_none=True)
    return {"full_step_ms": full, "optimizer_step_ms": optimizer, "optimizer_share": optimizer / full}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog=__doc__.split("\n\n", 1)[1])
    ap.add_argument("--micro-seqs", type=int, default=1, help="sequences per micro-step (0 = the run's own micro-batch)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps on CUDA (median)")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args(argv)
    if args.micro_seqs < 0 or args.steps < 1:
        raise ToolError("--micro-seqs must not be negative and --steps must be positive")
    h = tg.Hyperparameters.from_env()
    rt = tg.setup_runtime(h)
    run_micro = h.train_batch_tokens // 8 // rt.world_size
    t0 = time.perf_counter()
    result = measure(h, rt, args.micro_seqs * h.train_seq_len if args.micro_seqs else run_micro, args.steps)
    result["seconds"] = round(time.perf_counter() - t0, 1)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        for k, v in result.items():
            print(f"{k:28s} {v}")
    return 0


if __name__ == "__main__":
    sys.exit(C.run_cli(main))
