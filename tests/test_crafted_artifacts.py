"""Crafted model files through every loader: train_gpt.read_artifact / load_tensors, tools/artifacts/model_file.py's
loaders, and the score, inspect_artifact and pack commands. Header lies, bit flips for every codec (refused by the hash),
decompression bombs, pickles, lying configs (num_layers=200000 with a few tensors), NaN weights, JSON list headers,
float offsets: each is refused with one `error:` line, never a traceback, never an allocation for a lying config,
never anything unpickled or written."""
from __future__ import annotations

import hashlib
import json
import pickle
import random
import resource
import struct
import subprocess
import zlib
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import train_gpt as tg
from tests.helpers import make_byte_dataset, subprocess_env, tool_command, trained_like_state
from tools import common as C
from tools.artifacts import inspect_artifact, pack, sample, score
from tools.artifacts import model_file as M

CONFIG = tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                        bigram_dim=16)
STATE = trained_like_state(CONFIG, 7)
CODECS = list(tg.CODEC_IDS)


def z(data: bytes) -> bytes:
    return zlib.compress(data, 1)


def container(payload: bytes, codec: str, flags: int = 0, version: int = tg.ARTIFACT_VERSION) -> bytes:
    """An artifact around an already-compressed payload, with a correct hash (so only the inside lies)."""
    return b"GOLF" + bytes([version, tg.CODEC_IDS[codec], flags]) + hashlib.sha256(payload).digest() + payload


def inner(header, data: bytes = b"", raw_head: bytes | None = None) -> bytes:
    """A safetensors-layout buffer with any header, JSON-encoded as given (lists, floats, lies)."""
    head = raw_head if raw_head is not None else json.dumps(header).encode()
    return struct.pack("<Q", len(head)) + head + data


def golf_meta(tensors: dict, config=None, scheme="int8+zlib") -> dict:
    return {"__metadata__": {"golf": json.dumps({"scheme": scheme, "config": asdict(CONFIG) if config is None else config,
                                                  "tensors": tensors})}}


def good_payload() -> bytes:
    blob = tg.pack_artifact(STATE, asdict(CONFIG), tg.Scheme.parse("int6+zlib"))
    return zlib.decompress(blob[tg.ARTIFACT_HEAD:])


def swap_metadata(edit) -> bytes:
    """The good payload with its golf metadata changed by edit(metadata) (tensor bytes untouched)."""
    buf = good_payload()
    (n,) = struct.unpack("<Q", buf[:8])
    header = json.loads(buf[8:8 + n])
    meta = json.loads(header["__metadata__"]["golf"])
    edit(meta)
    header["__metadata__"]["golf"] = json.dumps(meta)
    return inner(None, buf[8 + n:], json.dumps(header).encode())


def with_config(config=None, **changes) -> bytes:
    """A valid artifact whose stored config is replaced (JSON as Python writes it, NaN included: a crafted file can)."""
    cfg = config if config is not None else {k: v for k, v in dict(asdict(CONFIG), **changes).items() if v is not ...}
    return container(z(swap_metadata(lambda m: m.update(config=cfg))), "zlib")


def nan_state() -> dict:
    bad = {k: v.clone() for k, v in STATE.items()}
    bad["blocks.0.attn_scale"][3] = float("nan")
    return bad


# Artifacts refused by train_gpt.read_artifact itself (and so by every tool): (case, bytes, message fragment).
GOOD = tg.pack_artifact(STATE, asdict(CONFIG), tg.Scheme.parse("int6+zlib"))
REFUSED = [
    ("bad magic", b"NOPE" + GOOD[4:], "not a golf artifact"),
    ("truncated header", GOOD[:20], "not a golf artifact"),
    ("empty file", b"", "not a golf artifact"),
    ("version 1", GOOD[:4] + b"\x01" + GOOD[5:], "version 1 is not supported"),
    ("version 3", GOOD[:4] + b"\x03" + GOOD[5:], "version 3 is not supported"),
    ("codec id 0", GOOD[:5] + b"\x00" + GOOD[6:], "unknown compression codec id 0"),
    ("codec id 99", GOOD[:5] + b"\x63" + GOOD[6:], "unknown compression codec id 99"),
    ("flags 2", GOOD[:6] + b"\x02" + GOOD[7:], "flags 2"),
    ("wrong codec id for the stream", GOOD[:5] + bytes([tg.CODEC_IDS["zstd"]]) + GOOD[6:], "corrupt zstd stream"),
    ("hash lies", GOOD[:10] + bytes([GOOD[10] ^ 1]) + GOOD[11:], "integrity check failed"),
    ("truncated payload", GOOD[:-50], "integrity check failed"),
    ("appended bytes", GOOD + b"\x00" * 8, "integrity check failed"),
    ("truncated stream, hash recomputed", container(GOOD[tg.ARTIFACT_HEAD:-40], "zlib"), "truncated"),
    ("trailing bytes after the stream, hash recomputed", container(GOOD[tg.ARTIFACT_HEAD:] + b"junk", "zlib"), "trailing bytes"),
    ("not a stream of its codec", container(b"plain bytes, not zlib", "zlib"), "corrupt zlib stream"),
    ("JSON list header", container(z(inner([1, 2, 3])), "zlib"), "not a JSON object"),
    ("header length past the end", container(z(struct.pack("<Q", 1 << 40) + b"{}"), "zlib"), "header length"),
    ("header not JSON", container(z(inner(None, b"", b"{not json")), "zlib"), "corrupt header"),
    ("float offsets", container(z(inner({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}, **golf_meta({})},
                                        b"\x00" * 8)), "zlib"), "malformed entry"),
    ("offsets outside the data", container(z(inner({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                                                    **golf_meta({"w": {"q": "raw"}})}, b"\x00" * 4)), "zlib"), "outside the file"),
    ("shape does not match the byte range", container(z(inner({"w": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]},
                                                               **golf_meta({"w": {"q": "raw"}})}, b"\x00" * 8)), "zlib"),
     "outside the file"),
    ("negative shape", container(z(inner({"w": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, **golf_meta({})},
                                         b"\x00" * 8)), "zlib"), "malformed entry"),
    ("unknown dtype", container(z(inner({"w": {"dtype": "F8", "shape": [2], "data_offsets": [0, 2]}, **golf_meta({})},
                                        b"\x00" * 2)), "zlib"), "malformed entry"),
    ("metadata is a list", container(z(inner({"__metadata__": {"golf": "[1, 2]"}})), "zlib"), "metadata object"),
    ("metadata not a string", container(z(inner({"__metadata__": {"golf": 5}})), "zlib"), "metadata object"),
    ("no tensors", container(z(swap_metadata(lambda m: m.update(tensors={}))), "zlib"), "lists no tensors"),
    ("tensor info not a dict", container(z(swap_metadata(lambda m: m["tensors"].update({"tok_emb.weight": "int8"}))), "zlib"),
     "cannot be decoded"),
    ("unknown quantization", container(z(swap_metadata(lambda m: m["tensors"]["tok_emb.weight"].update(q="int3_magic"))), "zlib"),
     "unknown quantization 'int3_magic'"),
    ("width lies", container(z(swap_metadata(lambda m: m["tensors"]["blocks.0.attn.q.weight"].update(bits=2))), "zlib"),
     "codes do not fit 2 bits"),
    ("width out of range", container(z(swap_metadata(lambda m: m["tensors"]["blocks.0.attn.q.weight"].update(bits=12))), "zlib"),
     "bad width 12"),
    ("width is a float", container(z(swap_metadata(lambda m: m["tensors"]["blocks.0.attn.q.weight"].update(bits=6.0))), "zlib"),
     "bad width 6.0"),
    ("listed tensor not stored", container(z(swap_metadata(lambda m: m["tensors"].update({"ghost.weight": {"q": "raw"}}))), "zlib"),
     "cannot be decoded"),
    ("packed shape lies", container(z(inner(
        {"w": {"dtype": "U8", "shape": [3], "data_offsets": [0, 3]}, "w.scale": {"dtype": "F16", "shape": [2], "data_offsets": [3, 7]},
         **golf_meta({"w": {"q": "int_row_packed", "bits": 4, "shape": [2, 64]}})}, b"\x00" * 7)), "zlib"), "packed bytes hold fewer"),
    ("NaN weights", tg.pack_artifact(nan_state(), asdict(CONFIG), tg.Scheme.parse("int8+zlib")), "non-finite weights"),
]
# Artifacts train_gpt.read_artifact reads (the config is not its business) and train_gpt.model_from_state refuses.
BAD_CONFIGS = [
    ("num_layers=200000 with two blocks", with_config(num_layers=200000), "NUM_LAYERS=200000 must be in [1, 1024]"),
    ("num_layers past the bound", with_config(num_layers=1 << 21), "must be in [1, 1024]"),
    ("negative width", with_config(model_dim=-64), "MODEL_DIM=-64 must be in [1, 65536]"),
    ("string width", with_config(model_dim="64"), "is not a int"),
    ("bool width", with_config(num_heads=True), "is not a int"),
    ("NaN rope base", with_config(rope_base=float("nan")), "ROPE_BASE=nan must be a finite number"),
    ("missing field whose default does not fit", with_config(bigram_dim=...), "do not match the model config"),
    ("extra field", with_config(evil=1), "(unknown: ['evil'])"),
    ("heads do not divide the width", with_config(num_heads=5), "MODEL_DIM=64 is not divisible by NUM_HEADS=5"),
    ("3 heads at width 64", with_config(num_heads=3, num_kv_heads=1), "MODEL_DIM=64 is not divisible by NUM_HEADS=3"),
    ("4 query heads over 3 KV heads", with_config(num_kv_heads=3), "NUM_HEADS=4 is not divisible by NUM_KV_HEADS=3"),
    ("one bigram bucket", with_config(bigram_buckets=1), "BIGRAM_BUCKETS=1 must be 0 (off) or at least 2"),
    ("RoPE dims past the head", with_config(rope_dims=1000), "ROPE_DIMS=1000 must be even and at most the head width 16"),
    ("BOS outside the vocabulary", with_config(bos_id=260), "BOS id 260 is not below VOCAB_SIZE=260"),
    ("loop past the last block", with_config(loop_repeats=1, loop_start=1, loop_end=2), "LOOP_START=1..LOOP_END=2 must be blocks of the 2"),
    ("shapes do not match", with_config(model_dim=32, num_heads=2, num_kv_heads=1), "do not match the model config"),
    ("config is a list", with_config([1, 2]), "not an object of ModelConfig fields"),
    # finite in float64 but not in float32: torch.full and the SVD of the initialisation used to end in tracebacks
    ("QK gain past float32", with_config(qk_gain_init=1e39), "QK_GAIN_INIT=1e+39 must be a finite number (below 3.4e38)"),
    ("init std past its bound", with_config(tied_embed_init_std=1e30), "TIED_EMBED_INIT_STD=1e+30 must be in (0, 100]"),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_byte_dataset(tmp_path_factory.mktemp("crafted_data"), train_docs=20, val_docs=4)


def tool_errors(path: Path, data: Path, capsys) -> dict[str, str]:
    """The one error line of every tools/ loader and command on this file (fails on any traceback or success)."""
    out = {}
    for name, call in [("load_model_file", lambda _: M.load_model_file(path)), ("load_model", lambda _: M.load_model(path)),
                       ("score.py", lambda _: score.main([str(path), "--data", str(data), "--seq-len", "64"])),
                       ("inspect_artifact.py", lambda _: inspect_artifact.main([str(path), "--no-progress"])),
                       ("pack.py", lambda _: pack.main([str(path), "-o", str(path) + ".out", "--scheme", "int8+zlib"]))]:
        assert C.run_cli(call, []) == 1, f"{name} accepted {path.name}"
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1, (name, err)
        out[name] = err
    assert not Path(str(path) + ".out").exists()
    return out


@pytest.mark.parametrize("case, blob, message", REFUSED, ids=[c[0] for c in REFUSED])
def test_refused_by_train_gpt_and_every_tool(case, blob, message, tmp_path, data, capsys):
    path = tmp_path / "crafted.ptz"
    path.write_bytes(blob)
    with pytest.raises(tg.GolfError) as e:
        tg.read_artifact(path)
    assert any(part in str(e.value) for part in message.split("|")), str(e.value)
    errors = tool_errors(path, data, capsys)
    if blob[:4] == b"GOLF":  # the tools say what train_gpt says
        assert all(str(e.value) in err for name, err in errors.items()), errors


@pytest.mark.parametrize("case, blob, message", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_lying_configs_are_refused_before_any_model_is_built(case, blob, message, tmp_path, data, capsys, monkeypatch):
    path = tmp_path / "config.ptz"
    path.write_bytes(blob)
    state, meta = tg.read_artifact(path)
    built = []
    real_init = tg.GPT.__init__

    def watch(self, cfg, init=True):
        built.append((cfg, init))
        real_init(self, cfg, init)
    monkeypatch.setattr(tg.GPT, "__init__", watch)
    with pytest.raises(tg.GolfError) as e:
        tg.model_from_state(state, meta["config"], "crafted")
    assert any(p in str(e.value) for p in message.split("|")), str(e.value)
    assert all(not init for _, init in built)  # at most the shapes on the meta device, never real weights
    errors = tool_errors(path, data, capsys)
    assert all(any(p in err for p in message.split("|")) for err in errors.values()), errors


@pytest.mark.parametrize("codec", CODECS)
def test_every_single_bit_flip_is_refused_by_the_hash_for_every_codec(codec, tmp_path, data, capsys):
    """brotli and zstd streams have no checksum of their own; a flipped bit used to load changed weights."""
    blob = tg.pack_artifact(STATE, asdict(CONFIG), tg.Scheme.parse(f"int6+{codec}"))
    rng = random.Random(codec)
    positions = [rng.randrange(7, len(blob)) for _ in range(60)]  # the hash and the payload
    for pos in positions:
        flipped = bytearray(blob)
        flipped[pos] ^= 1 << rng.randrange(8)
        with pytest.raises(tg.GolfError, match="integrity check failed"):
            tg.unpack_artifact(bytes(flipped), "flipped")
    path = tmp_path / "flipped.ptz"
    path.write_bytes(bytes(flipped))
    assert all("integrity check failed" in e for e in tool_errors(path, data, capsys).values())


def zero_bomb(codec: str, nbytes: int) -> bytes:
    """A compressed stream of nbytes zeros, built piecewise for zlib/zstd (never holding nbytes in memory)."""
    if codec in ("lzma", "brotli"):
        return tg.compress(bytes(nbytes), codec, {"lzma": 0, "brotli": 1}[codec])
    chunk = bytes(1 << 24)
    c = zlib.compressobj(9) if codec == "zlib" else __import__("zstandard").ZstdCompressor(level=3).compressobj()
    return b"".join([c.compress(chunk) for _ in range(nbytes // len(chunk))] + [c.flush()])


@pytest.mark.parametrize("codec", CODECS)
def test_decompression_bombs_are_refused_for_every_codec(codec, tmp_path):
    blob = container(zero_bomb(codec, 48 << 20), codec)
    assert len(blob) < (1 << 20)
    path = tmp_path / "bomb.ptz"
    path.write_bytes(blob)
    with pytest.raises(tg.GolfError, match="decompression bomb"):
        tg.read_artifact(path, limit=16 << 20)


@pytest.fixture(scope="module")
def past_the_default_limit(tmp_path_factory):
    path = tmp_path_factory.mktemp("bomb") / "bomb.ptz"
    path.write_bytes(container(zero_bomb("zstd", tg.MAX_INFLATED_BYTES + (16 << 20)), "zstd"))
    assert path.stat().st_size < 200_000
    return path


@pytest.mark.slow
def test_a_bomb_past_the_default_limit_is_refused_by_every_tool(past_the_default_limit, data, capsys):
    errors = tool_errors(past_the_default_limit, data, capsys)
    assert all("decompression bomb" in e for e in errors.values()), errors


def test_pickles_are_never_unpickled_by_any_loader(tmp_path, data, capsys):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))
    raw, zipped = tmp_path / "raw.ptz", tmp_path / "zipped.ptz"
    raw.write_bytes(pickle.dumps({"w": Payload()}, protocol=4))
    torch.save({"w": torch.zeros(2)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(tg.GolfError, match="not a golf artifact"):
            tg.read_artifact(path)
        with pytest.raises(tg.GolfError):
            tg.load_tensors(path)
        assert all("pickle" in e for e in tool_errors(path, data, capsys).values())
    assert not marker.exists()


# Raw weights / training checkpoints (safetensors layout) that lie.
def st(header, data=b"", raw_head=None) -> bytes:
    return inner(header, data, raw_head)


GOOD_ST = tg.tensors_to_bytes(STATE, {"config": asdict(CONFIG)})
BAD_SAFETENSORS = [
    ("JSON list header", st([1, 2]), "not a JSON object"),
    ("float offsets", st({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0.0, 8.0]}}, b"\x00" * 8), "malformed entry"),
    ("offsets outside the file", st({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\x00" * 4), "outside the file"),
    ("truncated", GOOD_ST[:-100], "outside the file"),
    ("NaN weights", tg.tensors_to_bytes(nan_state(), {"config": asdict(CONFIG)}), "non-finite weights"),
    ("no config", tg.tensors_to_bytes(STATE, {"step": 3}), "no model config"),
    ("num_layers=200000", tg.tensors_to_bytes(STATE, {"config": dict(asdict(CONFIG), num_layers=200000)}), "must be in [1, 1024]"),
    ("num_layers=200 with two blocks", tg.tensors_to_bytes(STATE, {"config": dict(asdict(CONFIG), num_layers=200)}), "layers do not match"),
    ("no tensors", tg.tensors_to_bytes({}, {"config": asdict(CONFIG)}), "holds no tensors"),
]


@pytest.mark.parametrize("case, blob, message", BAD_SAFETENSORS, ids=[c[0] for c in BAD_SAFETENSORS])
def test_crafted_checkpoints_are_refused_by_every_tool(case, blob, message, tmp_path, data, capsys):
    path = tmp_path / "crafted.safetensors"
    path.write_bytes(blob)
    for name, call in [("load_model_file", lambda _: M.load_model_file(path)), ("load_model", lambda _: M.load_model(path)),
                       ("score.py", lambda _: score.main([str(path), "--data", str(data), "--seq-len", "64"])),
                       ("pack.py", lambda _: pack.main([str(path), "-o", str(tmp_path / "o.ptz")]))]:
        assert C.run_cli(call, []) == 1, name
        err = capsys.readouterr().err
        assert err.startswith("error: ") and err.count("\n") == 1 and message in err, (name, err)
    assert not (tmp_path / "o.ptz").exists()


def _score_cli(path: Path, data: Path) -> tuple[subprocess.CompletedProcess, float]:
    """The score command's result and the peak memory (GiB) of the largest child process so far."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    r = subprocess.run(tool_command("score", path, "--data", data, "--seq-len", 64), env=subprocess_env(),
                       capture_output=True, text=True, timeout=300)
    return r, max(before, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss) / 2**20


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["num_layers=200000", "bomb", "pickle", "JSON list header"])
def test_score_cli_refuses_with_one_line_and_little_memory(kind, tmp_path, data, past_the_default_limit):
    """A 214 KB artifact whose config says num_layers=200000 made score.py use 5.6 GB before it was killed."""
    path = tmp_path / "x.ptz"
    blobs = {"num_layers=200000": BAD_CONFIGS[0][1], "pickle": pickle.dumps({"w": [1.0]}),
             "JSON list header": REFUSED[15][1]}
    if kind == "bomb":
        path = past_the_default_limit
    else:
        path.write_bytes(blobs[kind])
    r, peak_gib = _score_cli(path, data)
    assert r.returncode == 1 and r.stdout == "", r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), r.stderr[-2000:]
    assert peak_gib < 2.5, peak_gib  # refused before anything of that size is allocated


def test_a_config_written_before_a_switch_existed_loads_with_the_switch_off(tmp_path):
    """Fields added to ModelConfig later default to off, so an older artifact still builds the model it describes."""
    path = tmp_path / "older.ptz"
    path.write_bytes(with_config(xsa_last_n=..., smear_gate=..., loop_repeats=...))
    state, meta = tg.read_artifact(path)
    assert "xsa_last_n" not in meta["config"]
    model = tg.model_from_state(state, meta["config"], "older")
    assert model.cfg.xsa_last_n == 0 and model.cfg.smear_gate is False and model.smear is None


@pytest.mark.parametrize("scoring, flags", [({"EVAL_STRIDE": "abc"}, ["--seq-len", "32"]), ({"EVAL_STRIDE": "abc"}, []),
                                            ({"EVAL_STRIDE": "0"}, [])],
                         ids=["stride not a number, window given", "stride not a number", "stride zero"])
def test_bad_recorded_scoring_settings_are_the_files_fault_in_one_line(scoring, flags, tmp_path, data, capsys):
    """score used to end a file recording EVAL_STRIDE='abc' with a ValueError traceback when --seq-len was given, and
    blamed a flag the user never gave (`--stride 0 must be positive`) for the file's own values."""
    path = tmp_path / "scoring.ptz"
    path.write_bytes(container(z(swap_metadata(lambda m: m.update(scoring=scoring))), "zlib"))
    assert C.run_cli(score.main, [str(path), "--data", str(data), *flags]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path}: its recorded scoring settings are invalid: EVAL_STRIDE=") and err.count("\n") == 1, err


@pytest.mark.parametrize("temperature", ["nan", "inf", "-inf"])
def test_sample_refuses_a_temperature_that_is_not_a_finite_number(temperature, tmp_path, data, capsys):
    """--temperature nan used to end in torch.multinomial's RuntimeError traceback, inf sampled uniform noise."""
    path = tmp_path / "good.ptz"
    path.write_bytes(GOOD)
    argv = [str(path), "--data", str(data), "--prompt", "the", "--tokens", "2", f"--temperature={temperature}"]
    assert C.run_cli(sample.main, argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "--temperature" in err and err.count("\n") == 1, err


def test_a_block_index_of_unicode_digits_is_refused_in_one_line():
    """'blocks.\u00b2' passes str.isdigit() and fails int(): it used to end in a ValueError traceback."""
    state = {("blocks.\u00b2" + k[len("blocks.0"):] if k.startswith("blocks.0.") else k): v for k, v in STATE.items()}
    with pytest.raises(tg.GolfError, match="layers do not match"):
        tg.model_from_state(state, asdict(CONFIG), "crafted")


@pytest.mark.parametrize("width, rank, ok", [(64, 100, False), (64, 64, True), (768, 600, True)])
def test_score_bounds_the_recorded_lora_rank_by_the_models_own_width(width, rank, ok):
    """TTT_LORA_RANK is at most the width of the model scored, not the default MODEL_DIM (512): a 768-wide model's
    rank 600 is scored, a 64-wide model's rank 100 is the file's fault."""
    cfg = tg.ModelConfig(vocab_size=260, num_layers=1, model_dim=width, num_heads=4, num_kv_heads=2)
    args = score.parse_args(["model.ptz", "--data", "d"])
    recorded = {"TTT": "lora", "TTT_LORA_RANK": str(rank)}
    if ok:
        assert score.eval_settings(args, recorded, cfg).ttt_lora_rank == rank
    else:
        with pytest.raises(C.ToolError, match=f"recorded scoring settings are invalid: TTT_LORA_RANK={rank} must be at most MODEL_DIM={width}"):
            score.eval_settings(args, recorded, cfg)
