"""The fused soft-capped cross-entropy kernel (in train_gpt.py) matches the PyTorch reference.

Triton runs on CPU only under its interpreter, which must be switched on (TRITON_INTERPRET=1) before triton
is first imported. To leave the rest of the suite untouched, every check runs in a child process: this module,
run as `python -m tests.test_fused_ce --worker <mode>`, does the work and prints JSON; the tests only read that JSON.
"""
import importlib.util
import json
import subprocess
import sys

import pytest

from tests.helpers import module_command, subprocess_env

HAS_TRITON = importlib.util.find_spec("triton") is not None
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton; Linux x86_64/aarch64 only)")

# name: (N tokens, V vocab, D width, softcap, reduction, chunk over N, BLOCK_V, logit scale)
FP32_CASES = {
    "softcap_ragged_vocab_and_chunks": (100, 200, 32, 30.0, "mean", 37, 64, 1.0),
    "softcap_full_vocab_per_token": (45, 1024, 64, 15.0, "none", 16, 1024, 1.0),
    "no_softcap_chunk_larger_than_batch": (50, 130, 16, 0.0, "mean", 64, 64, 1.0),
    "no_softcap_odd_vocab_per_token": (31, 77, 8, 0.0, "none", 10, 32, 1.0),
    "softcap_saturated_large_logits": (40, 96, 16, 30.0, "mean", 16, 32, 200.0),
    "no_softcap_large_logits_stable": (40, 96, 16, 0.0, "none", 16, 32, 50.0),
}
RTOL, ATOL_FRAC = 1e-5, 1e-6  # elementwise |a-b| <= ATOL_FRAC * max|ref| + RTOL * |ref|


def _compare(a, b, rtol, atol_frac):
    a, b = a.detach().double(), b.detach().double()
    scale = b.abs().max().item()
    ok = bool(((a - b).abs() <= atol_frac * scale + rtol * b.abs()).all())
    return {"ok": ok, "max_abs": (a - b).abs().max().item(), "ref_max": scale}


def _run_case(N, V, D, cap, red, chunk, bv, scale, dtype, autocast):
    import torch
    from train_gpt import fused_softcap_ce, reference_softcap_ce

    g = torch.Generator().manual_seed(N * 1000 + V)
    x0 = torch.randn(N, D, generator=g) * scale / D**0.5
    W0 = torch.randn(V, D, generator=g)
    y = torch.randint(0, V, (N,), generator=g)
    y[0], y[-1] = 0, V - 1
    go = torch.rand(N, generator=g) + 0.5 if red == "none" else torch.tensor(1.7)
    out = {}
    for name, fn in (("fused", lambda x, W: fused_softcap_ce(x, W, y, cap, red, chunk=chunk, block_v=bv)),
                     ("ref", lambda x, W: reference_softcap_ce(x, W, y, cap, red))):
        x = x0.to(dtype).clone().requires_grad_()
        W = W0.to(dtype).clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = fn(x, W)
        loss.backward(go)
        out[name] = (loss, x.grad, W.grad)
    return out


def _fused_model_in_one_graph() -> dict:
    """A GPT using the fused cross-entropy: dynamo captures it in one graph (the kernels are custom operators), and
    compiled whole (fullgraph) its loss and gradients match the same model with the reference cross-entropy."""
    import torch
    import train_gpt as tg

    torch.manual_seed(0)
    model = tg.GPT(tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                                  bigram_dim=8))
    for p in model.parameters():
        torch.nn.init.normal_(p, std=0.05)
    ids = torch.randint(4, 260, (2, 33))
    ref = model(ids[:, :-1], ids[:, 1:])
    ref.backward()
    ref_grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad(set_to_none=True)
    model.fused_ce = True
    breaks = torch._dynamo.explain(model)(ids[:, :-1], ids[:, 1:]).graph_break_count
    torch._dynamo.reset()
    loss = torch.compile(model, fullgraph=True, backend="aot_eager")(ids[:, :-1], ids[:, 1:])
    loss.backward()
    grads_ok = all(_compare(p.grad, g, RTOL, ATOL_FRAC)["ok"] for p, g in zip(model.parameters(), ref_grads))
    return {"graph_breaks": breaks, "loss": _compare(loss, ref, RTOL, ATOL_FRAC), "grads_ok": grads_ok}


def worker(mode):
    import torch

    torch.set_num_threads(1)
    res = {}
    if mode == "interpret":
        import triton

        res["triton_version"] = triton.__version__
        for name, case in FP32_CASES.items():
            o = _run_case(*case, dtype=torch.float32, autocast=False)
            res[name] = {k: _compare(o["fused"][i], o["ref"][i], RTOL, ATOL_FRAC) for i, k in enumerate(("loss", "grad_x", "grad_W"))}
        for name, dtype, autocast in (("bf16_inputs", torch.bfloat16, False), ("fp32_params_bf16_autocast", torch.float32, True)):
            o = _run_case(64, 160, 32, 30.0, "mean", 24, 64, 1.0, dtype=dtype, autocast=autocast)
            res[name] = {k: _compare(o["fused"][i], o["ref"][i], 2e-2, 2e-2) for i, k in enumerate(("loss", "grad_x", "grad_W"))}
            res[name]["dtypes"] = [str(t.dtype) for t in o["fused"]] + [str(t.dtype) for t in o["ref"]]
        from train_gpt import fused_softcap_ce, reference_softcap_ce

        x, W, y = torch.randn(20, 8), torch.randn(50, 8), torch.randint(0, 50, (20,))
        with torch.inference_mode():
            res["no_grad_eval"] = _compare(fused_softcap_ce(x, W, y, 30.0, "none", block_v=16), reference_softcap_ce(x, W, y, 30.0, "none"), RTOL, ATOL_FRAC)
        compiled = torch.compile(lambda x, W: fused_softcap_ce(rms(x, (8,)), W, y, 30.0, "none", block_v=16) * 2, backend="eager")
        rms = torch.nn.functional.rms_norm
        res["inside_torch_compile"] = _compare(compiled(x, W), reference_softcap_ce(rms(x, (8,)), W, y, 30.0, "none") * 2, RTOL, ATOL_FRAC)
        res["model_with_fused_ce"] = _fused_model_in_one_graph()
    elif mode == "compile":
        import triton
        from triton.backends.compiler import GPUTarget
        from triton.compiler import ASTSource
        from train_gpt import _ce_bwd, _ce_fwd

        common = {"L": "*bf16", "stride": "i32", "Y": "*i64", "V": "constexpr", "cap": "fp32", "HAS_CAP": "constexpr", "BLOCK_V": "constexpr"}
        sigs = {_ce_fwd: {**common, "LOSS": "*fp32", "LSE": "*fp32"}, _ce_bwd: {**common, "LSE": "*fp32", "G": "*fp32", "g_stride": "i32"}}
        for fn, sig in sigs.items():
            sig = {a: sig[a] for a in fn.arg_names}
            for cap in (True, False):
                k = triton.compile(ASTSource(fn, sig, constexprs={"V": 1024, "HAS_CAP": cap, "BLOCK_V": 1024}), target=GPUTarget("cuda", 90, 32))
                res[f"{fn.__name__}_cap{int(cap)}"] = len(k.asm["cubin"])
    elif mode == "no_triton":
        sys.modules["triton"] = None  # makes `import triton` raise ImportError
        import train_gpt as fused_ce

        x, W, y = torch.randn(6, 4), torch.randn(9, 4), torch.randint(0, 9, (6,))
        res = {"available": fused_ce.triton_available(), "has_fused": hasattr(fused_ce, "fused_softcap_ce"),
               "ref_loss": fused_ce.reference_softcap_ce(x, W, y, 30.0).item()}
    print(json.dumps(res))


def _spawn(mode, interpret):
    env = subprocess_env(TRITON_DEFAULT_FP_FUSION=1, TRITON_INTERPRET=1 if interpret else None)
    p = subprocess.run(module_command("tests.test_fused_ce", "--worker", mode), env=env, capture_output=True, text=True,
                       timeout=300)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def interpreted():
    return _spawn("interpret", interpret=True)


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize("case", list(FP32_CASES))
def test_fused_loss_and_grads_match_reference_in_fp32(interpreted, case):
    for k, r in interpreted[case].items():
        assert r["ok"], f"{case} {k}: max |fused - ref| = {r['max_abs']:.3g} with max |ref| = {r['ref_max']:.3g}"


@pytest.mark.slow
@needs_triton
@pytest.mark.parametrize("case", ["bf16_inputs", "fp32_params_bf16_autocast"])
def test_bf16_paths_match_reference_within_bf16_rounding_and_keep_dtypes(interpreted, case):
    r = interpreted[case]
    for k in ("loss", "grad_x", "grad_W"):
        assert r[k]["ok"], f"{case} {k}: {r[k]}"
    fused, ref = r["dtypes"][:3], r["dtypes"][3:]
    assert fused == ref


@pytest.mark.slow
@needs_triton
def test_per_token_loss_works_under_inference_mode(interpreted):
    assert interpreted["no_grad_eval"]["ok"], interpreted["no_grad_eval"]


@pytest.mark.slow
@needs_triton
def test_fused_loss_runs_inside_a_torch_compiled_function(interpreted):
    assert interpreted["inside_torch_compile"]["ok"], interpreted["inside_torch_compile"]


@pytest.mark.slow
@needs_triton
def test_a_model_with_the_fused_loss_compiles_in_one_graph_forward_and_backward(interpreted):
    r = interpreted["model_with_fused_ce"]
    assert r["graph_breaks"] == 0 and r["loss"]["ok"] and r["grads_ok"], r


@pytest.mark.slow
@needs_triton
def test_kernels_compile_to_sm90_cubin_without_a_gpu():
    try:
        import triton.backends.compiler  # noqa: F401
        from triton.compiler import ASTSource  # noqa: F401
    except ImportError as e:
        pytest.skip(f"this triton has no ASTSource/GPUTarget API: {e}")
    res = _spawn("compile", interpret=False)
    assert len(res) == 4 and all(n > 1000 for n in res.values()), res


@pytest.mark.slow
def test_module_imports_without_triton_and_keeps_the_reference():
    res = _spawn("no_triton", interpret=False)
    assert res["available"] is False and res["has_fused"] is False
    assert 0 < res["ref_loss"] < 100


@pytest.mark.slow
@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the no-GPU path")
def test_bench_without_gpu_reports_memory_saved_and_exits_zero():
    p = subprocess.run(module_command("bench.bench_fused_ce", "--json"), env=subprocess_env(), capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-2000:]
    r = json.loads(p.stdout)
    assert r["timing"] is None and "timing skipped" in r["skipped"]
    m = r["memory"]  # default shape: 16384 tokens x V=1024 per micro-step, softcap on
    assert m["fused_written_bytes"] == 2 * 16384 * 1024 * 2 and m["fused_saved_bytes"] == 16384 * 4
    assert m["reference_written_bytes"] == 22 * 16384 * 1024 * 2  # bf16 mm + 5 fp32 forward, 5 fp32 + 1 bf16 backward
    assert m["saved_written_bytes_per_step"] == 8 * 20 * 16384 * 1024 * 2


if __name__ == "__main__" and sys.argv[1:2] == ["--worker"]:
    worker(sys.argv[2])
