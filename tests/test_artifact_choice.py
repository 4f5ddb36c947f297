"""ARTIFACT=auto: the candidates a run logs, the one it ships, the size forecast at each validation, and late QAT."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from tests.helpers import final_exact, run_concurrently, run_train, tiny_env
import train_gpt as tg

CANDIDATE = re.compile(r"^artifact candidate (\S+): forecast ~(\d+) bytes \+ code (\d+) (fits, held-out loss ([0-9.]+)|> \d+ less [0-9.]+%, not packed)")
NOT_PACKED = re.compile(r"^artifact candidate (\S+): forecast ~(\d+) bytes \+ code (\d+) > (\d+) by more than 3%, not quantized")
SHIPPED = re.compile(r"^artifact (\S+): (\d+) bytes \((fits|over) the (\d+)-byte budget for the model\)")


def candidates(stdout: str) -> list[dict]:
    """Every candidate the run quantized, by its forecast: spec, forecast bytes, total with the code, fits, loss."""
    rows = []
    for line in stdout.splitlines():
        m = CANDIDATE.match(line)
        if m:
            rows.append({"spec": m[1], "bytes": int(m[2]), "total": int(m[2]) + int(m[3]), "fits": m[4].startswith("fits"),
                         "loss": float(m[5]) if m[5] else None})
    return rows


def compressed(stdout: str) -> list[tuple[str, int]]:
    """(spec, bytes) of every candidate compressed for real: only the one shipped, unless it did not fit."""
    return [(m[1], int(m[2])) for m in map(SHIPPED.match, stdout.splitlines()) if m]


def shipped(stdout: str) -> str:
    return next(l for l in stdout.splitlines() if l.startswith("artifact scheme: ")).split()[2]


def test_late_qat_rounds_each_row_in_the_forward_pass_and_passes_the_gradient_straight_through():
    torch.manual_seed(0)
    layer, x = tg.Linear(16, 8, bias=False), torch.randn(4, 16)
    layer.qat_bits = 4
    y = layer(x)
    w = layer.weight.detach()
    scale = w.abs().amax(dim=1, keepdim=True) / 7
    assert torch.allclose(y, x @ (torch.round(w / scale) * scale).T, atol=1e-6)
    assert len(torch.unique(torch.round(w / scale))) <= 15
    y.square().sum().backward()
    # straight-through: the weight's gradient is that of a linear layer whose output was y (it does not see the rounding)
    expected = (2 * y.detach()).T @ x
    assert torch.allclose(layer.weight.grad, expected, atol=1e-5)


@pytest.mark.slow
def test_auto_ships_the_best_fitting_candidate_logs_every_one_and_forecasts_at_each_validation(tiny_data, tmp_path):
    env = tiny_env(tiny_data, tmp_path, RUN_ID="auto", ITERATIONS=8, VAL_LOSS_EVERY=4, QAT_BITS="auto", QAT_LR_SCALE=0.5)
    run = run_train(env)
    assert run.returncode == 0, run.stderr[-3000:]
    out = run.stdout
    rows = first = candidates(out)
    assert [r["spec"] for r in rows] == [tg.Scheme.parse(s).spec for s in tg.AUTO_SCHEMES[:2]]  # two fit: it stops
    assert all(r["fits"] and r["loss"] is not None for r in rows)
    best = min(rows, key=lambda r: r["loss"])
    assert shipped(out) == best["spec"] and compressed(out) == [(best["spec"], compressed(out)[0][1])]  # compressed once
    assert f"Serialized model {best['spec']}: {compressed(out)[0][1]} bytes" in out
    assert 0.95 < compressed(out)[0][1] / best["bytes"] < tg.FORECAST_MARGIN  # the forecast is close
    forecasts = [l for l in out.splitlines() if l.startswith("artifact forecast: ")]
    assert len(forecasts) == 2 and all("fits 16000000" in l for l in forecasts)  # at steps 4 and 8
    # QAT_BITS=auto: the forecast scheme's width, once a step has run at an LR multiplier of at most 0.5 (with
    # WARMDOWN_ITERS=4 of 8, the 7th step runs at 2/4), so from the 8th step on
    qat = [l for l in out.splitlines() if l.startswith("qat: ")]
    assert qat == [f"qat: int{tg.Scheme.parse(tg.AUTO_SCHEMES[0]).bits} fake quantization of the block matrices from step 7"]

    # Two more runs, started together: a cap between the two candidates (tight), and one 15% under int7's bytes (fitted)
    assert rows[0]["total"] - rows[1]["total"] > 1000
    code = rows[0]["total"] - rows[0]["bytes"]  # the code as it ships, as the candidates count it
    caps = {"tight": (rows[0]["total"] + rows[1]["total"]) // 2, "fitted": code + int(0.85 * first[1]["bytes"])}
    tight, fitted = run_concurrently(*(lambda name=name: run_train({**env, "RUN_ID": name, "SIZE_CAP_BYTES": str(caps[name])})
                                       for name in ("tight", "fitted")))

    # A cap between the two (int8 is ~12% bigger here): the larger is over by more than the forecast's slack, so it
    # is not even quantized; the next ones are tried, and what ships fits
    cap = caps["tight"]
    assert tight.returncode == 0, tight.stderr[-3000:]
    skipped = [NOT_PACKED.match(l) for l in tight.stdout.splitlines() if NOT_PACKED.match(l)]
    assert [m[1] for m in skipped] == [rows[0]["spec"]]
    assert int(skipped[0][3]) == code
    assert int(skipped[0][2]) > tg.FORECAST_SLACK * (cap - code) and rows[0]["total"] > cap  # it would not have fit
    rows = candidates(tight.stdout)
    assert rows[0]["spec"] == tg.Scheme.parse(tg.AUTO_SCHEMES[1]).spec and sum(r["fits"] for r in rows) >= 1
    chosen = next(r for r in rows if r["spec"] == shipped(tight.stdout))
    assert chosen["fits"] and chosen["total"] <= cap
    assert min((r["loss"] for r in rows if r["fits"]), default=None) == chosen["loss"]
    assert final_exact(tight.stdout).startswith("final_int8_zlib_roundtrip_exact val_loss:")

    # A cap 15% under int7's bytes: neither fixed step is quantized, the forecast at each validation names the step
    # it fits to the cap, and a fitted-step candidate ships inside the cap
    cap = caps["fitted"]
    assert fitted.returncode == 0, fitted.stderr[-3000:]
    assert [NOT_PACKED.match(l)[1] for l in fitted.stdout.splitlines() if NOT_PACKED.match(l)] == [r["spec"] for r in first]
    forecasts = [l for l in fitted.stdout.splitlines() if l.startswith("artifact forecast: ")]
    assert len(forecasts) == 2, forecasts
    assert all(re.match(rf"artifact forecast: int8-emb8-bigram8-sd[0-9.]+-gptq\+brotli ~\d+ bytes \+ code {code} \(fits {cap};", l)
               for l in forecasts), forecasts
    rows = candidates(fitted.stdout)
    assert rows and all("-sd" in r["spec"] for r in rows)
    family = lambda spec: re.sub(r"-sd[0-9.]+", "", spec)  # a step fitted again to brotli's ratio keeps its family
    chosen = next(r for r in rows if family(r["spec"]) == family(shipped(fitted.stdout)))
    total = int(re.search(r"^Total submission size \S+: (\d+) bytes", fitted.stdout, re.M)[1])
    assert chosen["fits"] and total <= cap and len(compressed(fitted.stdout)) <= 2


@pytest.mark.slow
def test_auto_fails_fast_with_one_line_when_no_scheme_can_fit_and_keeps_the_raw_weights(no_scheme_fits):
    """A cap no scheme can meet, even at the coarsest fitted step: nothing is quantized or compressed, the error names
    the smallest candidate, and the raw weights are on disk."""
    tmp_path, cap, run = no_scheme_fits  # RUN_ID=huge, SIZE_CAP_BYTES = the code as it ships + 2,000 bytes
    assert cap == len(tg.shipped_code(Path(tg.__file__).read_bytes())) + 2000
    assert run.returncode == 1, run.stderr[-2000:]
    skipped = [NOT_PACKED.match(l)[1] for l in run.stdout.splitlines() if NOT_PACKED.match(l)]
    assert len(skipped) == len(tg.AUTO_SCHEMES) and not candidates(run.stdout)
    assert skipped[-1] == tg.Scheme.parse(tg.AUTO_SCHEMES[-1].replace("-sd-", "-sd256-")).spec
    errors = [l for l in run.stderr.splitlines() if l.startswith("error: ")]
    assert len(errors) == 1 and " bytes by the forecast + " in errors[0]
    assert errors[0].startswith(f"error: no artifact scheme fits SIZE_CAP_BYTES={cap}: the smallest, {skipped[-1]}, is ~")
    assert (tmp_path / "models" / "huge.safetensors").is_file() and not (tmp_path / "models" / "huge.ptz").exists()


def test_the_weights_the_choice_quantizes_are_a_copy_that_scoring_candidates_cannot_change():
    """The held-out scoring of a candidate loads its rounded weights into the model: the state the next candidates
    are quantized from (and the model is restored from) must not be the model's own tensors (it was, on CPU)."""
    from types import SimpleNamespace
    model = tg.GPT(tg.ModelConfig(vocab_size=64, num_layers=1, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=0))
    state = tg.Trainer.float_state(SimpleNamespace(model=model))
    before = {k: v.clone() for k, v in state.items()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)  # what loading a candidate's weights into the model does to its tensors
    assert all(torch.equal(state[k], before[k]) for k in state)
