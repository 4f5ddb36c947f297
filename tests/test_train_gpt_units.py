"""Unit tests of train_gpt.py's pure parts: configuration, shards, metric tables, windows, model pieces, files."""
from __future__ import annotations

import io
import json
import math
from dataclasses import asdict

import numpy as np
import pytest
import sentencepiece as spm
import torch
import torch.nn.functional as F

from tests.helpers import SHARED_SP1024, make_byte_dataset, text_docs, write_shard
import train_gpt as tg


# ---------------------------------------------------------------- configuration

def test_env_values_are_parsed_by_type():
    h = tg.Hyperparameters.from_env({"NUM_LAYERS": "3", "MATRIX_LR": "0.01", "TIE_EMBEDDINGS": "0", "RUN_ID": "x"})
    assert (h.num_layers, h.matrix_lr, h.tie_embeddings, h.run_id) == (3, 0.01, False, "x")


@pytest.mark.parametrize("env, needle", [
    ({"NUM_LAYERS": "seven"}, "NUM_LAYERS='seven'"),
    ({"MATRIX_LR": "fast"}, "MATRIX_LR='fast'"),
    ({"TIE_EMBEDDINGS": "maybe"}, "TIE_EMBEDDINGS='maybe'"),
    ({"TRAIN_BATCH_TOKENS": "1000"}, "TRAIN_BATCH_TOKENS=1000"),
    ({"NUM_KV_HEADS": "3"}, "NUM_KV_HEADS=3"),
    ({"EVAL_STRIDE": "4096"}, "EVAL_STRIDE=4096"),
    ({"DEVICE": "tpu"}, "DEVICE='tpu'"),
    ({"VOCAB_SIZE": "70000"}, "VOCAB_SIZE=70000"),
])
def test_bad_values_name_the_variable(env, needle):
    with pytest.raises(tg.GolfError, match=needle.replace("(", r"\(")):
        tg.Hyperparameters.from_env(env)


# ---------------------------------------------------------------- shards and dataset checks

def test_shard_round_trip(tmp_path):
    tokens = np.array([1, 5, 65535, 0, 42], dtype=np.uint16)
    write_shard(tmp_path / "a_val_000000.bin", tokens)
    assert tg.read_shard_header(tmp_path / "a_val_000000.bin") == 5
    np.testing.assert_array_equal(tg.load_shard(tmp_path / "a_val_000000.bin"), tokens)


def test_shard_problems_name_the_file(tmp_path):
    good = tmp_path / "x_train_000000.bin"
    write_shard(good, [1, 2, 3])
    raw = good.read_bytes()
    cases = {
        "magic": raw[:0] + np.int32(7).tobytes() + raw[4:],
        "version": raw[:4] + np.int32(2).tobytes() + raw[8:],
        "truncated": raw[:-1],
        "header": raw[:100],
    }
    for kind, data in cases.items():
        path = tmp_path / f"{kind}_train_000000.bin"
        path.write_bytes(data)
        with pytest.raises(tg.GolfError) as e:
            tg.load_shard(path)
        assert str(path) in str(e.value) and kind[:5] in str(e.value)
    with pytest.raises(tg.GolfError, match="not below VOCAB_SIZE=3"):
        tg.load_shard(good, vocab_size=3)


def test_shards_are_listed_by_split_pattern_in_sorted_order(tmp_path):
    for name in ("b_train_000001.bin", "fineweb_train_000000.bin", "fineweb_val_000000.bin"):
        write_shard(tmp_path / name, [1])
    assert [p.name for p in tg.list_shards(tmp_path, "train")] == ["b_train_000001.bin", "fineweb_train_000000.bin"]
    with pytest.raises(tg.GolfError, match="is not a directory"):
        tg.list_shards(tmp_path / "missing", "train")
    (tmp_path / "empty").mkdir()
    with pytest.raises(tg.GolfError, match="no val shards"):
        tg.list_shards(tmp_path / "empty", "val")


def test_validate_dataset_catches_vocab_mismatch_and_short_val(tmp_path):
    data = make_byte_dataset(tmp_path / "d", train_docs=20, val_docs=2)
    summary = tg.validate_dataset(data, data / "bytes.json", 260)
    assert summary["train"]["shards"] == 2 and summary["val"]["tokens"] > 0 and summary["bos_id"] == 1
    with pytest.raises(tg.GolfError, match="has 260 tokens but VOCAB_SIZE=1024"):
        tg.validate_dataset(data, data / "bytes.json", 1024)
    with pytest.raises(tg.GolfError, match="shorter than one sequence"):
        tg.load_val_tokens(data, 100_000, 260)


def test_tokenizer_path_comes_from_the_manifest(tmp_path):
    data = make_byte_dataset(tmp_path / "d", train_docs=4, val_docs=1)
    assert tg.resolve_tokenizer_path(data) == data / "bytes.json"
    assert tg.resolve_tokenizer_path(data, "other.model").name == "other.model"
    with pytest.raises(tg.GolfError, match="does not exist"):
        tg.load_tokenizer(tmp_path / "nope.model")


def test_token_stream_wraps_and_restores(tmp_path):
    write_shard(tmp_path / "s_train_000000.bin", [1, 2, 3])
    write_shard(tmp_path / "s_train_000001.bin", [4, 5])
    stream = tg.TokenStream(tg.list_shards(tmp_path, "train"), 10)
    assert stream.take(4).tolist() == [1, 2, 3, 4]
    state = stream.state()
    assert stream.take(4).tolist() == [5, 1, 2, 3]
    stream.restore(state)
    assert stream.take(2).tolist() == [5, 1]


def test_loader_gives_each_process_a_disjoint_slice_of_the_same_global_batch(tmp_path):
    write_shard(tmp_path / "s_train_000000.bin", np.arange(1000) % 500)
    files = tg.list_shards(tmp_path, "train")
    single = tg.DistributedTokenLoader(files, 500, 0, 1, torch.device("cpu"))
    halves = [tg.DistributedTokenLoader(files, 500, r, 2, torch.device("cpu")) for r in range(2)]
    # world 1 takes 4 micro-steps of 16 tokens; world 2 takes 2 micro-steps of 16 per process
    one = [single.next_batch(16, 8) for _ in range(4)]
    two = [[loader.next_batch(16, 8) for loader in halves] for _ in range(2)]
    flat_two = [b for pair in two for b in pair]
    for (x1, y1), (x2, y2) in zip(one, flat_two):
        assert torch.equal(x1, x2) and torch.equal(y1, y2)
        assert torch.equal(x1[:, 1:], y1[:, :-1])


# ---------------------------------------------------------------- the byte metric

def _byte_count(tokenizer, ids: list[int]) -> int:
    base, space, boundary = tg.build_byte_luts(tokenizer)
    prev, tgt = np.array(ids[:-1]), np.array(ids[1:])
    return int((base[tgt] + (space[tgt] & ~boundary[prev])).sum())


def _check_ascii_bytes_match_decoded(tokenizer, covers_all_ascii: bool = True):
    docs = text_docs(25, seed=3) + ["a"]
    if covers_all_ascii:  # characters a tokenizer without byte fallback may not know (they would count 0 bytes)
        docs.append("Hello,  world!\n\nTwo   spaces\tand a TAB: 1+1=2 {ok} ~end~")
    for doc in docs:
        ids = tokenizer.encode(doc)
        assert _byte_count(tokenizer, [tokenizer.bos_id] + ids) == len(tokenizer.decode(ids).encode("utf-8"))
    stream = [t for d in docs for t in [tokenizer.bos_id] + tokenizer.encode(d)]
    assert _byte_count(tokenizer, stream) == sum(len(tokenizer.decode(tokenizer.encode(d)).encode()) for d in docs)


def test_byte_count_equals_decoded_utf8_length_for_the_byte_vocabulary(tmp_path):
    data = make_byte_dataset(tmp_path / "d", train_docs=2, val_docs=1)
    tok = tg.load_tokenizer(data / "bytes.json")
    _check_ascii_bytes_match_decoded(tok)
    assert _byte_count(tok, [1] + tok.encode("héllo")) == len("héllo".encode())


def _train_sentencepiece(tmp_path, byte_fallback: bool):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(text_docs(400, seed=1)))
    prefix = tmp_path / f"sp_{int(byte_fallback)}"
    spm.SentencePieceTrainer.train(input=str(corpus), model_prefix=str(prefix), vocab_size=140 + 256 * byte_fallback, model_type="bpe",
                                   byte_fallback=byte_fallback, bos_id=1, eos_id=2, unk_id=3, pad_id=0,
                                   minloglevel=2, num_threads=1)
    return tg.load_tokenizer(f"{prefix}.model")


@pytest.mark.parametrize("byte_fallback", [False, True])
def test_byte_count_equals_decoded_utf8_length_for_a_trained_sentencepiece(tmp_path, byte_fallback):
    _check_ascii_bytes_match_decoded(_train_sentencepiece(tmp_path, byte_fallback), covers_all_ascii=byte_fallback)


def test_byte_count_matches_the_published_sp1024_tokenizer():
    path = SHARED_SP1024 / "fineweb_1024_bpe.model"
    if not path.exists():
        pytest.skip("../shared/data/fineweb_sp1024 is not next to this clone")
    tok = tg.load_tokenizer(path)
    assert tok.vocab_size == 1024 and tok.bos_id == 1
    _check_ascii_bytes_match_decoded(tok, covers_all_ascii=False)  # it has no byte fallback: '~', tab... are <unk>
    doc = "Hello,  world!\n\nTwo   spaces (and 3 lines); \"quoted\" text's end."
    ids = tok.encode(doc)
    assert 3 not in ids  # no <unk>
    assert _byte_count(tok, [1] + ids) == len(tok.decode(ids).encode("utf-8"))


def test_unknown_characters_count_zero_bytes_without_byte_fallback(tmp_path):
    tok = _train_sentencepiece(tmp_path, byte_fallback=False)
    ids = tok.encode("fox \u4e2d")
    unk = tok.sp.unk_id()
    assert unk in ids
    base, _, boundary = tg.build_byte_luts(tok)
    assert base[unk] == 0 and boundary[unk]


# ---------------------------------------------------------------- evaluation windows

@pytest.mark.parametrize("targets, seq_len, stride", [(100, 16, 4), (100, 16, 16), (17, 16, 5), (10, 16, 8), (64, 16, 16)])
def test_windows_score_every_target_exactly_once_with_enough_context(targets, seq_len, stride):
    starts, first = tg.window_starts(targets, seq_len, stride)
    length = min(seq_len, targets)
    hits = np.zeros(targets, dtype=int)
    for s, f in zip(starts, first):
        assert 0 <= s and s + length <= targets
        hits[s + f:s + length] += 1
        if s > 0:
            assert f >= length - stride  # every scored target sees at least seq_len - stride of context
    assert (hits == 1).all()


def _tiny_model(**kw):
    torch.manual_seed(0)
    cfg = tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=8, **kw)
    model = tg.GPT(cfg)
    with torch.no_grad():  # give the zero-initialised projections some weight so the model is not trivial
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


def _naive_eval(model, tokens, luts, seq_len, stride):
    """Score each target t separately with the window the definition gives it (slow reference)."""
    base, space, boundary = luts
    starts, first = tg.window_starts(len(tokens) - 1, seq_len, stride)
    loss = nbytes = count = 0.0
    for s, f in zip(starts, first):
        x = torch.tensor(tokens[s:s + min(seq_len, len(tokens) - 1)].astype(np.int64))[None]
        y = torch.tensor(tokens[s + 1:s + 1 + x.size(1)].astype(np.int64))[None]
        with torch.no_grad():
            logits = model.logits(model.hidden(x))[0]
        for j in range(f, x.size(1)):
            loss += F.cross_entropy(logits[j:j + 1], y[0, j:j + 1]).item()
            nbytes += base[y[0, j]] + (space[y[0, j]] and not boundary[x[0, j]])
            count += 1
    return loss / count, loss / math.log(2) / nbytes


@pytest.mark.slow
def test_sliding_evaluation_matches_a_per_token_reference(tmp_path):
    data = make_byte_dataset(tmp_path / "d", train_docs=2, val_docs=3)
    luts = tg.build_byte_luts(tg.load_tokenizer(data / "bytes.json"))
    tokens = tg.load_val_tokens(data, 32, 260)[:300]
    model = _tiny_model()
    for stride in (8, 32):
        got = tg.evaluate(model, tokens, luts, 32, stride, 5, torch.device("cpu"), torch.autocast("cpu", enabled=False))
        want = _naive_eval(model, tokens, luts, 32, stride)
        assert got == pytest.approx(want, rel=1e-5)


def test_stride_equal_to_sequence_length_is_the_plain_non_overlapping_pass(tmp_path):
    data = make_byte_dataset(tmp_path / "d", train_docs=2, val_docs=3)
    luts = tg.build_byte_luts(tg.load_tokenizer(data / "bytes.json"))
    tokens = tg.load_val_tokens(data, 32, 260)[:32 * 9 + 1]
    model = _tiny_model()
    off = torch.autocast("cpu", enabled=False)
    got = tg.evaluate(model, tokens, luts, 32, 32, 4, torch.device("cpu"), off)
    x = torch.tensor(tokens[:-1].astype(np.int64)).view(9, 32)
    y = torch.tensor(tokens[1:].astype(np.int64)).view(9, 32)
    with torch.no_grad():
        loss = model(x, y).item()
    base, space, boundary = luts
    nbytes = (base[y.numpy()] + (space[y.numpy()] & ~boundary[x.numpy()])).sum()
    assert got[0] == pytest.approx(loss, rel=1e-6)
    assert got[1] == pytest.approx(loss * y.numel() / math.log(2) / nbytes, rel=1e-6)
    assert tg.evaluate(model, tokens, luts, 32, 8, 4, torch.device("cpu"), off)[0] != pytest.approx(got[0], rel=1e-6)


# ---------------------------------------------------------------- model pieces

def test_bigram_hash_never_looks_across_a_document_boundary():
    cfg = tg.ModelConfig(vocab_size=260, bigram_buckets=64, bigram_dim=8, bos_id=1)
    bigram = tg.BigramHash(cfg)
    ids = torch.tensor([[7, 8, 1, 8, 9], [1, 5, 5, 1, 2]])
    buckets = bigram.bucket_ids(ids)
    reserved = cfg.bigram_buckets - 1
    assert buckets[0, 0] == reserved and buckets[0, 2] == reserved  # sequence start and BOS
    assert buckets[1, 0] == reserved and buckets[1, 3] == reserved
    assert (buckets[0, [1, 3, 4]] < reserved).all()
    # the token after BOS hashes (BOS, token): the same pair anywhere gives the same bucket
    assert buckets[0, 3] == bigram.bucket_ids(torch.tensor([[4, 1, 8]]))[0, 2]


def test_overtone_init_gives_a_power_law_spectrum_with_the_same_scale():
    torch.manual_seed(0)
    w = torch.empty(256, 64)
    tg.overtone_init_(w, std=0.02)
    s = torch.linalg.svdvals(w)
    k = torch.arange(1, 65, dtype=torch.float32)
    assert torch.allclose(s / s[0], k ** -0.5, rtol=1e-3)
    assert w.norm().item() == pytest.approx(0.02 * math.sqrt(256 * 64), rel=0.05)


def test_resid_mix_moves_from_the_first_layer_input_to_the_residual_over_depth():
    mixes = [tg.phase_transition_mix(i, 7) for i in range(7)]
    assert all(a < b for a, b in zip(mixes, mixes[1:]))
    assert mixes[0] < 0.5 < mixes[-1] and mixes[-1] > 0.95
    block = tg.Block(tg.ModelConfig(model_dim=16, num_heads=4, num_kv_heads=2, num_layers=7), layer=1)
    assert torch.allclose(block.resid_mix[0] + block.resid_mix[1], torch.ones(16))


def test_fresh_model_predicts_near_uniform_and_its_blocks_start_as_identity():
    cfg = tg.ModelConfig(vocab_size=260, num_layers=3, model_dim=32, num_heads=4, num_kv_heads=2, bigram_buckets=64, bigram_dim=8)
    torch.manual_seed(0)
    model = tg.GPT(cfg)
    ids, targets = torch.randint(0, 260, (2, 16)), torch.randint(0, 260, (2, 16))
    assert model(ids, targets).item() == pytest.approx(math.log(260), abs=0.02)
    for block in model.blocks:
        assert block.attn.proj.weight.abs().sum() == 0 and block.mlp.proj.weight.abs().sum() == 0
    assert model.blocks[0].attn.k.weight.shape == (16, 32)  # 2 KV heads of 8 dims


def test_model_is_causal():
    model = _tiny_model()
    ids = torch.randint(2, 260, (1, 12))
    changed = ids.clone()
    changed[0, 8:] = (changed[0, 8:] + 7) % 258 + 2
    with torch.no_grad():
        a, b = model.logits(model.hidden(ids)), model.logits(model.hidden(changed))
    assert torch.allclose(a[0, :8], b[0, :8], atol=1e-5) and not torch.allclose(a[0, 8:], b[0, 8:], atol=1e-5)


def test_lr_warmdown_by_iterations_and_by_wallclock():
    h = tg.Hyperparameters.from_env({"ITERATIONS": "100", "WARMDOWN_ITERS": "20", "MAX_WALLCLOCK_SECONDS": "0"})
    assert [tg.lr_multiplier(s, 0, h) for s in (0, 80, 90, 100)] == [1.0, 1.0, 0.5, 0.0]
    h = tg.Hyperparameters.from_env({"ITERATIONS": "100000", "WARMDOWN_ITERS": "5", "MAX_WALLCLOCK_SECONDS": "1"})
    # 100 ms per step so far: the warmdown spans the last 500 ms of the 1 s cap
    assert tg.lr_multiplier(5, 500.0, h) == 1.0
    assert tg.lr_multiplier(7, 700.0, h) == pytest.approx(0.6)
    assert tg.lr_multiplier(10, 1000.0, h) == 0.0
    assert tg.muon_momentum_at(0, h) == pytest.approx(0.85) and tg.muon_momentum_at(250, h) == pytest.approx(0.90)


def test_newton_schulz_pushes_singular_values_towards_one():
    torch.manual_seed(0)
    g = torch.randn(64, 32) @ torch.diag(torch.logspace(-1, 0, 32))
    s = torch.linalg.svdvals(tg.newton_schulz(g, 5).float())
    assert s.min() > 0.5 and s.max() < 1.3


# ---------------------------------------------------------------- tensor files and the artifact

def test_tensor_file_round_trip_is_exact_and_standard_safetensors_layout(tmp_path):
    tensors = {"a": torch.randn(3, 4), "b": torch.arange(5, dtype=torch.int64), "c": torch.randn(2).bfloat16(),
               "d": torch.tensor(3.5), "e": torch.zeros(0, 3)}
    tg.save_tensors(tmp_path / "x.safetensors", tensors, {"step": 7})
    back, meta = tg.load_tensors(tmp_path / "x.safetensors")
    assert meta == {"step": 7}
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and torch.equal(back[k], v)
    raw = (tmp_path / "x.safetensors").read_bytes()
    header = json.loads(raw[8:8 + int.from_bytes(raw[:8], "little")])
    assert header["a"] == {"dtype": "F32", "shape": [3, 4], "data_offsets": [0, 48]}
    assert not list(tmp_path.glob(".*tmp*"))  # the atomic write left no temporary file


@pytest.mark.slow
@pytest.mark.parametrize("spec", ["int8+zlib", "int6-emb8-bigram5-packed-shuffle+brotli", "int4-sd3+lzma", "int5-emb6+zstd"])
def test_artifact_round_trip_error_is_within_half_a_step_of_each_row_and_bytes_are_deterministic(spec, tmp_path):
    model = _tiny_model()
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    scheme, config = tg.Scheme.parse(spec), asdict(model.cfg)
    blob = tg.pack_artifact(state, config, scheme)
    back, meta = tg.unpack_artifact(blob)
    assert meta["scheme"] == scheme.spec and meta["config"] == config and set(back) == set(state)
    widths = {"matrix": scheme.bits, "embed": scheme.embed_bits, "bigram": scheme.bigram_bits}
    for name, w in state.items():
        role = tg.tensor_role(name, w)
        if role == "float":
            assert torch.equal(back[name], w.half().float()), name
            continue
        bits = widths[role]
        step = tg.scheme_scales(w.float(), bits, scheme, role).float()[:, None]
        clip = step * (2 ** (bits - 1) - 1)
        assert ((back[name] - w.clamp(-clip, clip)).abs() <= step / 2 + 1e-6).all(), (name, bits)
        assert len(torch.unique(back[name][0])) <= 2 ** bits - 1, name
    assert tg.pack_artifact(state, config, scheme) == blob


def test_gptq_moves_the_layer_output_less_than_rounding_to_nearest():
    torch.manual_seed(0)
    w = torch.randn(64, 96)
    x = torch.randn(4096, 96) * torch.linspace(0.1, 3.0, 96)  # inputs of unequal scale, as in a trained model
    x[:, 1::2] += 0.8 * x[:, 0::2]  # and correlated ones: what GPTQ exploits
    H = (x.T @ x / len(x)).double()
    scale = tg.row_scales(w, 4, H.diagonal()[None, :].float())
    rtn = torch.clamp(torch.round(w / scale.float()[:, None]), -7, 7)
    gptq = tg.gptq_round([w], [scale], [4], [tg.gptq_factor(H)])[0].float()
    out_err = lambda codes: ((x @ (codes * scale.float()[:, None] - w).T) ** 2).mean().item()
    assert gptq.abs().max() <= 7 and out_err(gptq) < 0.8 * out_err(rtn), (out_err(gptq), out_err(rtn))


def reference_gptq_round(w, scale, bits, hessian, block=128):
    """GPTQ one matrix at a time, as train_gpt.py had it before batching (issue 24)."""
    qmax, cols = 2 ** (bits - 1) - 1, w.size(1)
    W, H, s = w.float().clone(), hessian.double().clone(), scale.float()[:, None]
    dead = H.diagonal() == 0
    H[dead, dead], W[:, dead] = 1.0, 0.0
    order = torch.argsort(H.diagonal(), descending=True)
    W, H = W[:, order], H[order][:, order]
    damped = H + 0.01 * H.diagonal().mean() * torch.eye(cols, dtype=H.dtype)
    Hinv = torch.linalg.cholesky(torch.cholesky_inverse(torch.linalg.cholesky(damped)), upper=True).float()
    Q = torch.zeros_like(W)
    for i1 in range(0, cols, block):
        i2 = min(i1 + block, cols)
        W1, Hinv1, err1 = W[:, i1:i2].clone(), Hinv[i1:i2, i1:i2], torch.zeros_like(W[:, i1:i2])
        for j in range(i2 - i1):
            q = torch.clamp(torch.round(W1[:, j:j + 1] / s), -qmax, qmax)
            Q[:, i1 + j] = q[:, 0]
            err = (W1[:, j:j + 1] - q * s) / Hinv1[j, j]
            W1[:, j:] -= err * Hinv1[j:j + 1, j:]
            err1[:, j] = err[:, 0]
        W[:, i2:] -= err1 @ Hinv[i1:i2, i2:]
    return Q[:, torch.argsort(order)].to(torch.int8)


def test_batched_gptq_equals_one_matrix_at_a_time():
    """Matrices of one shape are rounded together, each with its own statistics, width and scales (and a dead input)."""
    torch.manual_seed(1)
    ws, hs, scales, bits = [], [], [], [8, 6, 4]
    for b in bits:
        x = torch.randn(512, 160) * torch.linspace(0.2, 2.0, 160)
        x[:, 7] = 0  # an input that is never active
        ws.append(torch.randn(48, 160))
        hs.append((x.T @ x / len(x)).double())
        scales.append(tg.row_scales(ws[-1], b, hs[-1].diagonal()[None, :].float()))
    batched = tg.gptq_round(ws, scales, bits, [tg.gptq_factor(H) for H in hs])
    for w, scale, b, H, codes in zip(ws, scales, bits, hs, batched):
        reference = reference_gptq_round(w, scale, b, H)
        assert (codes == reference).float().mean() > 0.999 and (codes.int() - reference.int()).abs().max() <= 1


def test_tensor_roles_keep_control_tensors_float_and_give_embeddings_their_own_width():
    model = _tiny_model()
    roles = {n: tg.tensor_role(n, p) for n, p in model.state_dict().items()}
    assert roles["tok_emb.weight"] == "embed" and roles["skip_weights"] == "float"
    assert roles["blocks.0.resid_mix"] == "float" and roles["blocks.0.attn.q_gain"] == "float"
    assert roles["blocks.0.attn.q.weight"] == "matrix" and roles["blocks.1.mlp.fc.weight"] == "matrix"
    assert roles["bigram.embed.weight"] == "bigram" and roles["bigram.proj.weight"] == "matrix"
    scheme = tg.Scheme.parse("int6-emb16+zlib")
    _, info = tg.quantize_state_dict(model.state_dict(), scheme)
    assert info["tok_emb.weight"] == {"q": "fp16"} and info["blocks.0.attn.q.weight"] == {"q": "int_row", "bits": 6}
