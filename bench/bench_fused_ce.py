#!/usr/bin/env python3
"""Time the fused soft-capped cross-entropy (in train_gpt.py) against the PyTorch reference, and report
the memory the fused path avoids.

The memory figures need no GPU: the reference's (N, V)-sized tensors are counted by running it on CPU at a
small token count and scaling linearly (every such tensor is linear in N); the fused path's are analytic.
Timing needs CUDA and triton; without them the script says so and exits 0 after the memory report.

Example (the challenge's default: 131,072 tokens per step in 8 micro-steps of 16,384):
    python -m bench.bench_fused_ce --tokens 16384 --vocab 1024 --dim 512 --softcap 30 --micro-steps 8
"""
import argparse
import json
import sys

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from train_gpt import reference_softcap_ce, triton_available

MiB = 2**20


class _CountNV(TorchDispatchMode):
    """Sums the bytes of every new (not a view) op output shaped like the (N, V) logits or their transpose."""

    def __init__(self, shape):
        super().__init__()
        self.shape, self.bytes, self.ops = sorted(shape), 0, []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in () if func.is_view else out if isinstance(out, (tuple, list)) else (out,):
            if isinstance(t, torch.Tensor) and sorted(t.shape) == self.shape:
                self.bytes += t.numel() * t.element_size()
                self.ops.append(f"{func.__name__}:{str(t.dtype).replace('torch.', '')}")
        return out


def reference_nv_bytes(V, D, softcap, n_probe=61):
    """Bytes per token of (N, V)-shaped tensors the eager bf16-autocast reference writes (fwd, bwd) and keeps for backward."""
    x = torch.randn(n_probe, D, requires_grad=True)
    W = torch.randn(V, D, requires_grad=True)
    y = torch.randint(0, V, (n_probe,))
    saved = {}

    def pack(t):
        if sorted(t.shape) == sorted((n_probe, V)):
            saved[t.data_ptr()] = t.numel() * t.element_size()
        return t

    with torch.autocast("cpu", dtype=torch.bfloat16), torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with _CountNV((n_probe, V)) as fwd:
            loss = reference_softcap_ce(x, W, y, softcap)
    with _CountNV((n_probe, V)) as bwd:
        loss.backward()
    return {"fwd": fwd.bytes / n_probe, "bwd": bwd.bytes / n_probe, "saved": sum(saved.values()) / n_probe,
            "fwd_ops": fwd.ops, "bwd_ops": bwd.ops}


def memory_report(N, V, D, softcap, chunk, micro_steps):
    ref = reference_nv_bytes(V, D, softcap)
    c = min(chunk, N)
    fused = {"fwd": N * V * 2, "bwd": N * V * 2, "saved": N * 4, "live": c * V * 2}  # bf16 logits chunks (fwd, recomputed in bwd; grad in place), lse
    rep = {
        "tokens_per_micro_step": N, "micro_steps": micro_steps, "vocab": V, "dim": D, "softcap": softcap, "chunk": c,
        "reference_written_bytes": int((ref["fwd"] + ref["bwd"]) * N), "reference_saved_bytes": int(ref["saved"] * N),
        "reference_ops": {"forward": ref["fwd_ops"], "backward": ref["bwd_ops"]},
        "fused_written_bytes": fused["fwd"] + fused["bwd"], "fused_saved_bytes": fused["saved"], "fused_live_chunk_bytes": fused["live"],
    }
    rep["saved_written_bytes_per_step"] = (rep["reference_written_bytes"] - rep["fused_written_bytes"]) * micro_steps
    return rep


def print_memory(r):
    N, V = r["tokens_per_micro_step"], r["vocab"]
    print(f"shape: {N} tokens per micro-step x {r['micro_steps']} micro-steps = {N * r['micro_steps']} tokens per step, "
          f"V={V}, D={r['dim']}, softcap={r['softcap']}, chunk={r['chunk']}")
    print(f"one (N, V) tensor: {N * V * 4 / MiB:.0f} MiB in fp32, {N * V * 2 / MiB:.0f} MiB in bf16")
    print(f"reference (eager, bf16 autocast) writes {r['reference_written_bytes'] / MiB:.0f} MiB of (N, V) tensors per micro-step "
          f"({len(r['reference_ops']['forward'])} forward: {' '.join(r['reference_ops']['forward'])}; "
          f"{len(r['reference_ops']['backward'])} backward: {' '.join(r['reference_ops']['backward'])})")
    print(f"reference keeps {r['reference_saved_bytes'] / MiB:.0f} MiB of them alive from forward to backward")
    print(f"fused writes {r['fused_written_bytes'] / MiB:.0f} MiB per micro-step (bf16 logits chunks, once forward, once recomputed "
          f"backward; gradient written in place), keeps {r['fused_saved_bytes'] / 2**10:.0f} KiB (per-token logsumexp) "
          f"and holds at most {r['fused_live_chunk_bytes'] / MiB:.0f} MiB of logits at a time")
    print(f"not materialised per step: {r['saved_written_bytes_per_step'] / MiB:.0f} MiB "
          f"({r['saved_written_bytes_per_step'] / 1e9:.2f} GB); peak activation memory lower by about "
          f"{(r['reference_saved_bytes'] - r['fused_saved_bytes']) / MiB:.0f} MiB")
    print("note: torch.compile fuses much of the reference's elementwise chain itself; the timing below compares both")


def _time(fn, iters, warmup):
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    start.record()
    for _ in range(iters):
        fn()
    end.record()
    torch.cuda.synchronize()
    return start.elapsed_time(end) / iters, (torch.cuda.max_memory_allocated() - base) / MiB


def bench_cuda(a):
    from train_gpt import fused_softcap_ce

    N, V, D, cap = a.tokens, a.vocab, a.dim, a.softcap
    g = torch.Generator(device="cuda").manual_seed(0)
    x = torch.randn(N, D, device="cuda", generator=g).requires_grad_()
    W = (torch.randn(V, D, device="cuda", generator=g) * D**-0.5).requires_grad_()
    y = torch.randint(0, V, (N,), device="cuda", generator=g)
    paths = {"reference_eager": lambda: reference_softcap_ce(x, W, y, cap),
             "fused_triton": lambda: fused_softcap_ce(x, W, y, cap, chunk=a.chunk)}
    if not a.no_compile:
        compiled = torch.compile(reference_softcap_ce, dynamic=False)
        paths["reference_compiled"] = lambda: compiled(x, W, y, cap)
    results, grads = {}, {}
    for name, f in paths.items():
        def step():
            x.grad = W.grad = None
            with torch.autocast("cuda", dtype=torch.bfloat16):
                loss = f()
            loss.backward()
            return loss
        loss = step()
        grads[name] = (loss.detach().float(), x.grad.clone(), W.grad.clone())
        ms, peak = _time(step, a.iters, a.warmup)
        gbs = 2 * N * V * 4 / (ms * 1e-3) / 1e9  # normalised: one fp32 (N, V) tensor forward + one backward
        results[name] = {"ms_per_micro_step": ms, "ms_per_step": ms * a.micro_steps, "fp32_logits_equiv_GBps": gbs, "peak_extra_MiB": peak}
    r, f = grads["reference_eager"], grads["fused_triton"]
    results["fused_vs_reference_max_rel_diff"] = {k: ((u - v).abs().max() / v.abs().max()).item() for k, u, v in zip(("loss", "grad_x", "grad_W"), f, r)}
    return results


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tokens", type=int, default=16384, help="tokens per micro-step, N (default 16384 = 131072 / 8)")
    p.add_argument("--vocab", type=int, default=1024, help="vocabulary size V (default 1024)")
    p.add_argument("--dim", type=int, default=512, help="model width D (default 512)")
    p.add_argument("--softcap", type=float, default=30.0, help="logit softcap; <= 0 switches it off (default 30)")
    p.add_argument("--micro-steps", type=int, default=8, help="micro-steps per optimizer step (default 8)")
    p.add_argument("--chunk", type=int, default=8192, help="tokens per fused chunk (default 8192)")
    p.add_argument("--iters", type=int, default=50, help="timed iterations (default 50)")
    p.add_argument("--warmup", type=int, default=10, help="untimed warm-up iterations (default 10)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile'd reference")
    p.add_argument("--json", action="store_true", help="print one JSON object instead of text")
    a = p.parse_args()
    try:
        for k in ("tokens", "vocab", "dim", "micro_steps", "chunk", "iters"):
            if getattr(a, k) <= 0:
                raise ValueError(f"--{k.replace('_', '-')} must be positive, got {getattr(a, k)}")
        torch.set_num_threads(1)
        out = {"memory": memory_report(a.tokens, a.vocab, a.dim, a.softcap, a.chunk, a.micro_steps)}
        if not a.json:
            print_memory(out["memory"])
        if not torch.cuda.is_available():
            out["timing"] = None
            out["skipped"] = "no CUDA device: timing skipped (correctness is proven by tests/test_fused_ce.py under TRITON_INTERPRET=1)"
        elif not triton_available():
            out["timing"] = None
            out["skipped"] = "triton is not installed: timing skipped"
        else:
            out["device"] = torch.cuda.get_device_name()
            out["timing"] = bench_cuda(a)
    except (ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    if a.json:
        print(json.dumps(out))
    elif out["timing"] is None:
        print(out["skipped"])
    else:
        print(f"device: {out['device']}")
        for name, t in out["timing"].items():
            if name.endswith("diff"):
                print(f"{name}: " + " ".join(f"{k}={v:.2e}" for k, v in t.items()))
            else:
                print(f"{name:20s} {t['ms_per_micro_step']:8.3f} ms/micro-step {t['ms_per_step']:8.2f} ms/step "
                      f"{t['fp32_logits_equiv_GBps']:7.1f} GB/s (fp32-logits equivalent) peak +{t['peak_extra_MiB']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
