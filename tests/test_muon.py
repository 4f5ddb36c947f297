"""Muon by shape (issue 24): the batched, foreach step equals the per-matrix step it replaced to fp32 rounding, for
every variant (row norm, Polar Express, weight decay and its taper), on one process and sharded over two."""
from __future__ import annotations

import json
import subprocess
import sys
import pytest
import torch

import train_gpt as tg
from tests.helpers import REPO, subprocess_env

CFG = tg.ModelConfig(vocab_size=260, num_layers=3, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                     bigram_dim=16)  # shapes (64,64) q/o, (32,64) k/v, (256,64) fc, (64,256) proj, (64,16) bigram proj
VARIANTS = {"standard": dict(), "row_norm": dict(row_norm=True), "polar": dict(ns_kind="polar"),
            "polar_row_norm": dict(ns_kind="polar", row_norm=True)}


def reference_newton_schulz(g: torch.Tensor, steps: int, kind: str) -> torch.Tensor:
    """The per-matrix iteration as train_gpt.py had it before batching (fp32)."""
    coefficients = tg.NS_COEFFICIENTS[kind]
    x = g / (g.norm() + 1e-7)
    tall = x.size(0) > x.size(1)
    if tall:
        x = x.T
    for i in range(steps):
        a, b, c = coefficients[min(i, len(coefficients) - 1)]
        s = x @ x.T
        x = a * x + (b * s + c * s @ s) @ x
    return x.T if tall else x


def reference_step(params, grads, bufs, lr, momentum, weight_decay, steps, ns_kind="standard", row_norm=False):
    """One Muon step, one matrix at a time (the algorithm before issue 24)."""
    for p, g, buf in zip(params, grads, bufs):
        buf.mul_(momentum).add_(g)
        u = g.add(buf, alpha=momentum)
        if row_norm:
            u = u / u.norm(dim=1, keepdim=True).clamp_min(1e-7)
        u = reference_newton_schulz(u, steps, ns_kind) * max(1.0, p.size(0) / p.size(1)) ** 0.5
        p.mul_(1 - lr * weight_decay)
        p.add_(u, alpha=-lr)


def matrices(seed: int = 0) -> list[torch.nn.Parameter]:
    torch.manual_seed(seed)
    model = tg.GPT(CFG)
    return [p for n, p in model.named_parameters() if tg.tensor_role(n, p) == "matrix"]


def compare(variant: dict) -> float:
    """Largest |difference| between the batched step and the reference after three steps with fresh gradients and a
    weight decay that changes between steps (the taper's effect)."""
    ours, theirs = matrices(), matrices()
    assert len({tuple(p.shape) for p in ours}) == 5
    muon = tg.Muon(ours, lr=0.02, momentum=0.9, backend_steps=5, weight_decay=0.1, ns_dtype=torch.float32, **variant)
    bufs = [torch.zeros_like(p) for p in theirs]
    for step, wd in enumerate((0.1, 0.05, 0.0)):
        torch.manual_seed(100 + step)
        grads = [torch.randn_like(p) for p in ours]
        for p, g in zip(ours, grads):
            p.grad = g.clone()
        muon.param_groups[0]["weight_decay"] = wd
        muon.step()
        with torch.no_grad():
            reference_step(theirs, grads, bufs, 0.02, 0.9, wd, 5, **variant)
    return max((a - b).abs().max().item() for a, b in zip(ours, theirs))


@pytest.mark.parametrize("variant", VARIANTS)
def test_batched_step_equals_the_per_matrix_step(variant):
    assert compare(VARIANTS[variant]) < 1e-5


def test_momentum_state_keeps_its_per_parameter_form():
    """Checkpoints store one momentum buffer per matrix, as before."""
    params = matrices()
    muon = tg.Muon(params, lr=0.02, momentum=0.9, backend_steps=2, weight_decay=0.0, ns_dtype=torch.float32)
    for p in params:
        p.grad = torch.ones_like(p)
    muon.step()
    assert all(muon.state[p]["momentum_buffer"].shape == p.shape for p in params)


def test_batched_newton_schulz_equals_one_matrix_at_a_time():
    torch.manual_seed(1)
    stack = torch.randn(3, 24, 40)
    for kind in tg.NS_COEFFICIENTS:
        batched = tg.newton_schulz(stack, 5, torch.float32, kind)
        for i in range(3):
            assert torch.allclose(batched[i], reference_newton_schulz(stack[i], 5, kind), atol=2e-6)
        tall = tg.newton_schulz(stack.mT, 5, torch.float32, kind)
        assert torch.allclose(tall, batched.mT, atol=2e-6)


WORKER = """
import json, sys
import torch, torch.distributed as dist
sys.path.insert(0, {repo!r})
from tests.test_muon import VARIANTS, compare
dist.init_process_group("gloo")
result = {{name: compare(v) for name, v in VARIANTS.items()}}
if dist.get_rank() == 0:
    print(json.dumps(result))
dist.destroy_process_group()
"""


@pytest.mark.slow
def test_two_processes_share_the_shapes_and_get_the_same_step(tmp_path):
    worker = tmp_path / "muon_worker.py"
    worker.write_text(WORKER.format(repo=str(REPO)))
    run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2", str(worker)],
                         env=subprocess_env(), capture_output=True, text=True, timeout=240, cwd=tmp_path)
    assert run.returncode == 0, run.stderr[-3000:]
    differences = json.loads(run.stdout.strip().splitlines()[-1])
    assert set(differences) == set(VARIANTS) and max(differences.values()) < 1e-5, differences
