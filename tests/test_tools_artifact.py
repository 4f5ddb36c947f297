"""Artifacts written by tools are train_gpt.py's: every scheme a tool can write is decoded by train_gpt.py alone (copied
into an empty folder), no tool extends or bypasses train_gpt's packer, and tools/common.py reads any model file."""
from __future__ import annotations

import ast
import hashlib
import json
import pickle
import struct
import subprocess
import sys
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

import train_gpt as tg
from tests.helpers import REPO, make_byte_dataset, trained_like_state
from tools import common as C
from tools.artifacts import fit, pack
from tools.artifacts import model_file as M

CONFIG = tg.ModelConfig(vocab_size=260, num_layers=2, model_dim=64, num_heads=4, num_kv_heads=2, bigram_buckets=64,
                        bigram_dim=16)
CODECS = list(tg.CODEC_IDS)


def every_tool_scheme() -> list[str]:
    """Specs covering every width (matrices 2..8; embeddings and the bigram table 2..8 and 16), bit-packed and
    byte-shuffled payloads, GPTQ, fixed steps (sd<K>), every codec and a non-default level of each."""
    specs = []
    for i, bits in enumerate(range(2, 9)):
        for j, (packed, shuffle) in enumerate([(False, False), (True, False), (False, True), (True, True)]):
            flags = "-packed" * packed + "-shuffle" * shuffle
            emb = "-emb4" if packed and bits == 8 else ""  # packed needs a width below 8 (int8 alone is refused)
            specs.append(f"int{bits}{emb}{flags}+{CODECS[(i + j) % 4]}")
    for i, emb in enumerate([2, 3, 4, 5, 6, 7, 8, 16]):
        specs.append(f"int6-emb{emb}-bigram{[16, 2, 8, 5, 3, 7, 4, 6][i]}+{CODECS[i % 4]}")
    for codec in CODECS:
        specs.append(f"int5-emb6-gptq-packed-shuffle+{codec}")
        specs.append(f"int4+{codec}-{tg.CODEC_LEVELS[codec][1]}")
    specs += ["int5-sd12-gptq+brotli", "int3-sd4.5-packed+zstd", "int8-emb16-sd256-shuffle+lzma"]
    return specs


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """Every scheme of every_tool_scheme(), written by the tools' own path (pack.pack, as pack.py does), plus what the
    packing process itself reads back."""
    root = tmp_path_factory.mktemp("schemes")
    data = make_byte_dataset(root / "data", train_docs=60, val_docs=5)
    state, config = trained_like_state(CONFIG), asdict(CONFIG)
    out, expected = root / "artifacts", {}
    out.mkdir()
    for i, spec in enumerate(every_tool_scheme()):
        blob = pack.pack(state, config, tg.Scheme.parse(spec), str(data), gptq_batches=2, seq_len=64, batch_tokens=256)
        path = out / f"{i:03d}.ptz"
        path.write_bytes(blob)
        back, meta = tg.unpack_artifact(blob)
        expected[path.name] = (meta["scheme"], hashlib.sha256(b"".join(back[k].numpy().tobytes() for k in sorted(back))).hexdigest())
        assert meta["scheme"] == tg.Scheme.parse(spec).spec
    return root, out, expected, state


@pytest.mark.slow
def test_train_gpt_alone_in_an_empty_folder_decodes_every_scheme_a_tool_writes(written, tmp_path):
    _, out, expected, _ = written
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "train_gpt.py").write_bytes((REPO / "train_gpt.py").read_bytes())
    # a script in that folder, run with no environment and no user site: Python puts only its own folder first
    (alone / "decode_all.py").write_text(
        "import hashlib, json, sys\n"
        "import train_gpt\n"
        "assert train_gpt.__file__.startswith(sys.path[0]) and not any(m.split('.')[0] == 'tools' for m in sys.modules)\n"
        "res = {}\n"
        f"for p in sorted(__import__('pathlib').Path({str(out)!r}).glob('*.ptz')):\n"
        "    state, meta = train_gpt.read_artifact(p)\n"
        "    train_gpt.model_from_state(state, meta['config'], str(p))\n"
        "    res[p.name] = [meta['scheme'], hashlib.sha256(b''.join(state[k].numpy().tobytes() for k in sorted(state))).hexdigest()]\n"
        "print(json.dumps(res))\n")
    r = subprocess.run([sys.executable, "-E", "-s", str(alone / "decode_all.py")], cwd=alone, capture_output=True,
                       text=True, timeout=300,
                       env={"PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1", "HOME": str(tmp_path)})
    assert r.returncode == 0, r.stderr[-3000:]
    decoded = {k: tuple(v) for k, v in json.loads(r.stdout).items()}
    assert decoded == expected and len(decoded) == len(every_tool_scheme())
    widths = {(s.bits, s.embed_bits, s.bigram_bits, s.packed, s.shuffle, s.codec, s.gptq)
              for s in map(tg.Scheme.parse, (v[0] for v in decoded.values()))}
    assert {w[0] for w in widths} == set(range(2, 9)) and {w[1] for w in widths} >= {2, 3, 4, 5, 6, 7, 8, 16}
    assert {w[5] for w in widths} == set(CODECS) and any(w[3] for w in widths) and any(w[4] for w in widths)
    assert any(w[6] for w in widths)


@pytest.mark.slow
def test_each_round_trip_is_within_half_a_quantization_step_of_unclipped_weights(written):
    _, out, _, state = written
    for path in sorted(out.glob("*.ptz"))[:28:3]:
        back, meta = tg.read_artifact(path)
        scheme = tg.Scheme.parse(meta["scheme"])
        for name, w in state.items():
            info = meta["tensors"][name]
            if info["q"] == "fp16":
                assert torch.equal(back[name], w.half().float())
                continue
            assert info["bits"] == {"matrix": scheme.bits, "embed": scheme.embed_bits, "bigram": scheme.bigram_bits}[
                tg.tensor_role(name, w)]
            err = (back[name] - w).abs()
            step = (back[name].abs().amax(dim=1, keepdim=True) / (2 ** (info["bits"] - 1) - 1)).clamp_min(1e-12)
            inside = w.abs() <= back[name].abs().amax(dim=1, keepdim=True)
            assert torch.all(err[inside] <= step.expand_as(w)[inside] * 0.5001 + 1e-6), (path.name, name)


def _tool_sources() -> dict[str, ast.Module]:
    """Every module of the commands around train_gpt.py: tools/, bench/, studies/ and data/."""
    paths = sorted(p for d in ("tools", "bench", "studies", "data") for p in (REPO / d).rglob("*.py"))
    return {str(p.relative_to(REPO)): ast.parse(p.read_text(), p.name) for p in paths}


def test_no_tool_changes_or_bypasses_train_gpts_artifact_code():
    """No tool assigns into train_gpt's module or its tables, frames a container itself, or keeps its own scheme
    grammar: a tool makes an artifact only with train_gpt.pack_artifact (or its two halves, quantize_state_dict and
    encode_artifact)."""
    roots = {"tg", "train_gpt"}
    for name, tree in _tool_sources().items():
        compared = {id(n) for c in ast.walk(tree) if isinstance(c, ast.Compare) for n in ast.walk(c)}
        for node in ast.walk(tree):
            targets = []
            if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)):
                targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                base = t
                while isinstance(base, (ast.Attribute, ast.Subscript)):
                    base = base.value
                assert not (isinstance(base, ast.Name) and base.id in roots and base is not t), \
                    f"{name}:{node.lineno} assigns into train_gpt"
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
                owner = ast.unparse(node.func.value)
                assert not (owner.split(".")[0] in roots and "." in owner and node.func.attr in
                            ("setdefault", "update", "append", "__setitem__", "pop", "clear")), \
                    f"{name}:{node.lineno} mutates {owner}"
            if isinstance(node, ast.Constant) and isinstance(node.value, bytes):
                assert b"GOLF" not in node.value, f"{name}:{node.lineno} writes the container magic itself"
            if isinstance(node, ast.Attribute) and node.attr in ("ARTIFACT_MAGIC", "ARTIFACT_VERSION", "tensors_to_bytes") \
                    and id(node) not in compared:  # reading a magic number (a comparison) is fine; writing one is not
                pytest.fail(f"{name}:{node.lineno} uses {node.attr}: artifacts are framed by train_gpt.pack_artifact only")
            if isinstance(node, ast.ClassDef):
                assert node.name != "Scheme", f"{name} defines its own Scheme"


@pytest.mark.slow
def test_every_artifact_a_tool_writes_is_exactly_pack_artifacts_output(tmp_path, monkeypatch, capsys):
    state, config = trained_like_state(CONFIG, 1), asdict(CONFIG)
    src = tmp_path / "w.safetensors"
    tg.save_tensors(src, state, {"config": config})
    made = []
    real = tg.pack_artifact

    def recording(*a, **kw):
        made.append(real(*a, **kw))
        return made[-1]
    monkeypatch.setattr(tg, "pack_artifact", recording)
    for spec in ("int7-emb5-shuffle+lzma", "int3-packed+zstd-3"):
        out = tmp_path / f"{spec}.ptz"
        assert C.run_cli(pack.main, [str(src), "-o", str(out), "--scheme", spec, "--json"]) == 0
        assert out.read_bytes() == made[-1] == real(state, config, tg.Scheme.parse(spec))
    schemes = fit.parse_matrix("int8,int4-emb6-shuffle", "zlib,brotli")
    rows, _ = fit.run_fit(state, config, schemes, 1000, progress=False)
    assert sorted(r["artifact_bytes"] for r in rows) == sorted(len(real(state, config, s)) for s in schemes)
    capsys.readouterr()
    for bad in ("int9+zlib", "int6-fast+brotli", "int6+gzip", "fp8+zlib", "int6+zstd-23", "int6-sd+brotli", "int6-sd0.1+zlib"):
        assert C.run_cli(pack.main, [str(src), "-o", str(tmp_path / "x.ptz"), "--scheme", bad]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: artifact scheme") and err.count("\n") == 1, err
        with pytest.raises(C.user_errors()):  # train_gpt's GolfError, or the tool's own ToolError
            fit.parse_matrix(bad, "zlib")
    assert not (tmp_path / "x.ptz").exists()


@pytest.mark.slow
def test_gptq_needs_data_and_uses_the_training_shards(tmp_path):
    data = make_byte_dataset(tmp_path / "data", train_docs=40, val_docs=4)
    state, config = trained_like_state(CONFIG, 2), asdict(CONFIG)
    scheme = tg.Scheme.parse("int4-gptq+zlib")
    with pytest.raises(C.ToolError, match="uses GPTQ: give --data"):
        pack.pack(state, config, scheme)
    gptq = pack.pack(state, config, scheme, str(data), gptq_batches=2, seq_len=64, batch_tokens=256)
    again = pack.pack(state, config, scheme, str(data), gptq_batches=2, seq_len=64, batch_tokens=256)
    assert gptq == again  # deterministic
    rtn = tg.pack_artifact(state, config, tg.Scheme.parse("int4+zlib"))
    assert tg.unpack_artifact(gptq)[1]["scheme"] == scheme.spec
    assert not torch.equal(tg.unpack_artifact(gptq)[0]["blocks.0.attn.q.weight"],
                           tg.unpack_artifact(rtn)[0]["blocks.0.attn.q.weight"])
    with pytest.raises(C.ToolError, match="multiple of --seq-len"):
        pack.pack(state, config, scheme, str(data), gptq_batches=2, seq_len=64, batch_tokens=100)


# ----------------------------------------------------------------------------- reading any model file

def pk_safetensors(tensors: dict, metadata: dict) -> bytes:
    """A valid safetensors file whose u64 header length is 0x4B50, i.e. whose first two bytes read 'PK'."""
    buf = tg.tensors_to_bytes(tensors, metadata)
    (n,) = struct.unpack("<Q", buf[:8])
    target = 0x4B50
    assert n <= target
    head = buf[8:8 + n].rstrip(b" ") + b" " * (target - len(buf[8:8 + n].rstrip(b" ")))
    out = struct.pack("<Q", target) + head + buf[8 + n:]
    assert out[:2] == b"PK"
    return out


def test_a_safetensors_file_whose_header_starts_with_PK_is_read_not_refused_as_a_pickle(tmp_path):
    """The sniffer once tested 'PK' before the safetensors structure and refused this valid file."""
    state = trained_like_state(CONFIG, 3)
    path = tmp_path / "pk.safetensors"
    path.write_bytes(pk_safetensors(state, {"config": asdict(CONFIG)}))
    assert M.sniff(path) == "safetensors"
    loaded, config, kind = M.load_model_file(path)
    assert kind == "safetensors" and config == asdict(CONFIG)
    assert all(torch.equal(loaded[k], state[k].float()) for k in state)
    model, _, _ = M.load_model(path)
    assert sum(p.numel() for p in model.parameters()) == sum(v.numel() for v in state.values())


def test_pickles_are_refused_without_being_unpickled(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:
        def __reduce__(self):
            return (Path.touch, (marker,))
    raw = tmp_path / "model.pkl"
    raw.write_bytes(pickle.dumps({"w": Payload()}, protocol=4))
    zipped = tmp_path / "model.pt"
    torch.save({"w": torch.zeros(2)}, zipped)
    for path in (raw, zipped):
        assert M.sniff(path) == "pickle"
        with pytest.raises(C.ToolError, match="pickle"):
            M.load_model_file(path)
    assert not marker.exists()


def test_checkpoints_raw_weights_and_artifacts_load_to_the_same_names(tmp_path):
    state = trained_like_state(CONFIG, 4)
    config = asdict(CONFIG)
    ckpt, raw, art = tmp_path / "s.ckpt", tmp_path / "r.safetensors", tmp_path / "a.ptz"
    tg.save_tensors(ckpt, {**{f"model.{k}": v for k, v in state.items()}, "opt0.0.exp_avg": torch.zeros(3)},
                    {"config": config, "step": 5})
    tg.save_tensors(raw, state, {"config": config})
    art.write_bytes(tg.pack_artifact(state, config, tg.Scheme.parse("int8+zlib")))
    loaded = {p.suffix: M.load_model_file(p) for p in (ckpt, raw, art)}
    assert [v[2] for v in loaded.values()] == ["safetensors", "safetensors", "artifact"]
    for sd, cfg, _ in loaded.values():
        assert set(sd) == set(state) and cfg == config
    assert all(torch.equal(loaded[".ckpt"][0][k], state[k]) for k in state)
    assert M.relative_error(state, loaded[".ptz"][0]) < 0.01 and M.relative_error(state, state) == 0


def test_the_tools_judge_a_fit_against_the_cap_a_run_judges_itself_against():
    assert C.SUBMISSION_CAP_BYTES == tg.Hyperparameters().size_cap_bytes


def test_pack_never_writes_over_the_model_it_reads_nor_into_a_folder(tmp_path, capsys):
    """`pack w.safetensors -o w.safetensors` used to replace the raw weights with their artifact (the fp32 weights
    lost for good); `-o FOLDER` named a temporary file in its error."""
    state, config = trained_like_state(CONFIG, 2), asdict(CONFIG)
    src = tmp_path / "w.safetensors"
    tg.save_tensors(src, state, {"config": config})
    before = src.read_bytes()
    (tmp_path / "folder").mkdir()
    for out, message in [(src, "is the model file it packs"), (tmp_path / "." / src.name, "is the model file it packs"),
                         (tmp_path / "folder", "is a folder")]:
        assert C.run_cli(pack.main, [str(src), "-o", str(out), "--scheme", "int6+zlib"]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ") and message in err and err.count("\n") == 1, err
    assert src.read_bytes() == before and not list((tmp_path / "folder").iterdir())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "w.safetensors"]  # no temporary left behind
