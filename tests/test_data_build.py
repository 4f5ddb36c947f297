"""python -m data.build_dataset: corpus -> shards + tokenizer + manifest, read back with train_gpt.py's reader."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import train_gpt
from data import build_dataset as bd
from data import golfdata
from tests.helpers import ascii_docs, cli, decoded_docs, metric_bytes, split_stream, write_jsonl


def build(docs, out, **kw):
    kw.setdefault("workers", 1)
    kw.setdefault("progress", False)
    kw.setdefault("source", "test")
    if docs and isinstance(docs[0], str):
        docs = [bd.Doc(t) for t in docs]
    return bd.build_dataset(iter(docs), out, bd.BuildSettings(**kw))


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.startswith("."))


@pytest.fixture(scope="module")
def corpus():
    return ascii_docs(400, seed=1)


@pytest.fixture(scope="module")
def sp_dataset(tmp_path_factory, corpus):
    out = tmp_path_factory.mktemp("sp") / "ds"
    result = build(corpus, out, vocab_size=256, val_docs=40, seed=7)
    return out, result


def test_shard_round_trip_through_train_gpt_reader(tmp_path):
    tokens = np.random.default_rng(0).integers(0, 65536, size=5000).astype(np.uint16)
    golfdata.write_shard(tmp_path / "x_train_000000.bin", tokens)
    assert np.array_equal(train_gpt.load_shard(tmp_path / "x_train_000000.bin"), tokens)
    assert train_gpt.read_shard_header(tmp_path / "x_train_000000.bin") == 5000
    assert (tmp_path / "x_train_000000.bin").stat().st_size == 1024 + 2 * 5000


def test_trained_tokenizer_dataset_validates_and_decodes_to_the_documents(sp_dataset, corpus):
    out, result = sp_dataset
    m = json.loads((out / "manifest.json").read_text())
    assert m["format"] == "golf-dataset" and m["version"] == 1
    assert m["tokenizer_kind"] == "sentencepiece" and m["vocab_size"] == 256 and m["bos_id"] == 1
    assert m["byte_fallback"] is False and m["tokenizer_path"] == "corpus_256_bpe.model"
    assert m["splits"]["val"]["docs"] == 40 and m["splits"]["train"]["docs"] == 360
    summary = train_gpt.validate_dataset(out, train_gpt.resolve_tokenizer_path(out, ""), 256, full=True)
    assert summary["val"]["tokens"] == m["splits"]["val"]["tokens"]
    assert summary["train"]["tokens"] == m["splits"]["train"]["tokens"]
    tok = train_gpt.load_tokenizer(out / m["tokenizer_path"])
    normalized = {tok.decode(tok.encode(t)) for t in corpus}  # nmt_nfkc folds newlines/extra spaces
    got = decoded_docs(out, "train") + decoded_docs(out, "val")
    assert len(got) == 400 and set(got) == normalized


def test_byte_count_of_ascii_val_docs_equals_their_utf8_length(sp_dataset):
    out, _ = sp_dataset
    m = json.loads((out / "manifest.json").read_text())
    tok = train_gpt.load_tokenizer(out / m["tokenizer_path"])
    stream = np.concatenate([train_gpt.load_shard(f) for f in train_gpt.list_shards(out, "val")])
    assert not np.any(stream == tok.sp.unk_id())  # plain ASCII: every character is in the vocabulary
    docs = decoded_docs(out, "val")
    assert metric_bytes(stream, train_gpt.build_byte_luts(tok)) == sum(len(d.encode("utf-8")) for d in docs)


def test_byte_fallback_tokenizer_counts_non_ascii_bytes_through_its_byte_pieces(tmp_path):
    docs = [d + " café naïve ☃ 東京" for d in ascii_docs(300, seed=2)]
    out = tmp_path / "bf"
    build(docs, out, vocab_size=400, val_docs=30, byte_fallback=True)
    m = json.loads((out / "manifest.json").read_text())
    assert m["byte_fallback"] is True
    tok = train_gpt.load_tokenizer(out / m["tokenizer_path"])
    stream = np.concatenate([train_gpt.load_shard(f) for f in train_gpt.list_shards(out, "val")])
    assert not np.any(stream == tok.sp.unk_id())
    decoded = decoded_docs(out, "val")
    assert all("☃" in d for d in decoded)
    assert metric_bytes(stream, train_gpt.build_byte_luts(tok)) == sum(len(d.encode("utf-8")) for d in decoded)


def test_byte_vocab_dataset_holds_exact_documents_and_counts_every_byte(tmp_path):
    docs = ascii_docs(120, seed=3) + ["naïve ☃\n\n  spaced  out  "]
    out = tmp_path / "byte"
    build(docs, out, byte=True, val_fraction=0.25)
    m = json.loads((out / "manifest.json").read_text())
    assert (m["tokenizer_kind"], m["vocab_size"], m["tokenizer_path"]) == ("pure_byte", 260, "byte260.json")
    train_gpt.validate_dataset(out, out / "byte260.json", 260, full=True)
    got = decoded_docs(out, "train") + decoded_docs(out, "val")
    assert sorted(got) == sorted(docs)  # byte vocabulary: lossless
    tok = train_gpt.load_tokenizer(out / "byte260.json")
    stream = np.concatenate([train_gpt.load_shard(f) for f in train_gpt.list_shards(out, "val")])
    assert metric_bytes(stream, train_gpt.build_byte_luts(tok)) == sum(len(d.encode()) for d in decoded_docs(out, "val"))


def test_duplicates_never_land_in_both_splits(tmp_path):
    base = ascii_docs(60, seed=4)
    docs = base + base[:30] + base[10:20]  # 40 exact duplicates
    out = tmp_path / "dup"
    result = build(docs, out, byte=True, val_fraction=0.5)
    assert result["input"]["duplicates_removed"] == 40
    train, val = decoded_docs(out, "train"), decoded_docs(out, "val")
    assert not set(train) & set(val)
    assert len(train) + len(val) == 60 and len(set(train + val)) == 60


def test_documents_of_a_group_stay_in_one_split(tmp_path):
    docs = [bd.Doc(f"work {g} part {i}: " + "x" * (g + i), group=f"w{g}") for g in range(12) for i in range(5)]
    out = tmp_path / "groups"
    result = build(docs, out, byte=True, val_fraction=0.2)
    val = decoded_docs(out, "val")
    val_groups = {d.split(":")[0].split(" part")[0] for d in val}
    train_groups = {d.split(":")[0].split(" part")[0] for d in decoded_docs(out, "train")}
    assert val_groups and not val_groups & train_groups
    assert len(val) == 5 * len(val_groups) == 15  # whole groups until >= 20% of 60 docs
    assert sorted(result["input"]["val_groups"]) == sorted(g.replace("work ", "w") for g in val_groups)


def test_same_inputs_and_seed_give_byte_identical_outputs(tmp_path, corpus):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    build(corpus, a, vocab_size=256, val_docs=40, seed=5, workers=2, shard_tokens=3000)
    build(corpus, b, vocab_size=256, val_docs=40, seed=5, workers=2, shard_tokens=3000)
    names = sorted(p.name for p in a.iterdir())
    assert len([n for n in names if "_train_" in n]) > 1  # several shards were cut
    assert names == sorted(p.name for p in b.iterdir())
    for n in names:
        assert (a / n).read_bytes() == (b / n).read_bytes(), n
    build(corpus, c, vocab_size=256, val_docs=40, seed=6, workers=1, shard_tokens=3000)
    assert (a / "corpus_val_000000.bin").read_bytes() != (c / "corpus_val_000000.bin").read_bytes()


def test_worker_count_does_not_change_the_shards(tmp_path, corpus):
    one, two = tmp_path / "one", tmp_path / "two"
    build(corpus, one, byte=True, val_docs=40, workers=1)
    build(corpus, two, byte=True, val_docs=40, workers=2)
    for f in sorted(one.glob("*.bin")):
        assert f.read_bytes() == (two / f.name).read_bytes()


def test_shards_are_cut_at_shard_tokens_and_read_back_as_one_stream(tmp_path, corpus):
    out = tmp_path / "cut"
    result = build(corpus, out, byte=True, val_docs=40, shard_tokens=10_000)
    files = train_gpt.list_shards(out, "train")
    sizes = [train_gpt.read_shard_header(f) for f in files]
    assert len(files) == result["splits"]["train"]["shards"] > 2
    assert all(s == 10_000 for s in sizes[:-1]) and 0 < sizes[-1] <= 10_000
    docs = split_stream(out, "train", 1)
    assert len(docs) == 360


def test_reused_tokenizer_is_copied_and_recorded(tmp_path, sp_dataset, corpus):
    src, _ = sp_dataset
    out = tmp_path / "reuse"
    build(corpus[:100], out, tokenizer=str(src / "corpus_256_bpe.model"), val_docs=10)
    m = json.loads((out / "manifest.json").read_text())
    assert m["vocab_size"] == 256 and m["tokenizer"]["reused_from"] == "corpus_256_bpe.model"
    assert (out / "corpus_256_bpe.model").read_bytes() == (src / "corpus_256_bpe.model").read_bytes()


def test_cli_builds_from_text_files_and_jsonl(tmp_path, capsys):
    (tmp_path / "in").mkdir()
    docs = ascii_docs(50, seed=9)
    for i, d in enumerate(docs[:20]):
        (tmp_path / "in" / f"d{i:02d}.txt").write_text(d)
    write_jsonl(tmp_path / "in" / "more.jsonl", docs[20:])
    rc, stdout, err = cli(bd.main, [str(tmp_path / "in"), "--out", str(tmp_path / "ds"), "--byte", "--val-docs", "5",
                  "--no-progress", "--json"], capsys)
    assert rc == 0, err
    report = json.loads(stdout)
    assert report["splits"]["train"]["docs"] + report["splits"]["val"]["docs"] == 50
    assert report["throughput"]["tokens_per_s"] > 0 and "tokens/s" in err
    rc, stdout, err = cli(bd.main, [str(tmp_path / "in"), "--out", str(tmp_path / "ds"), "--byte", "--val-docs", "5", "--no-progress"], capsys)
    assert rc == 0 and "nothing to do" in err  # same inputs and settings: the directory is up to date


# ----------------------------------------------------------------------------- bad input

def test_empty_input_is_an_error_and_writes_nothing(tmp_path, capsys):
    (tmp_path / "empty.txt").write_text("\n\n   \n")
    rc, stdout, err = cli(bd.main, [str(tmp_path / "empty.txt"), "--out", str(tmp_path / "ds"), "--byte"], capsys)
    assert rc == 1 and err.startswith("error: no documents") and err.count("\n") == 1
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_missing_and_undecodable_files_are_named(tmp_path, capsys):
    rc, stdout, err = cli(bd.main, [str(tmp_path / "nope.txt"), "--out", str(tmp_path / "ds"), "--byte"], capsys)
    assert rc == 1 and "nope.txt" in err and err.startswith("error:")
    (tmp_path / "bin.txt").write_bytes(b"ok \xff\xfe bad")
    rc, stdout, err = cli(bd.main, [str(tmp_path / "bin.txt"), "--out", str(tmp_path / "ds"), "--byte"], capsys)
    assert rc == 1 and "bin.txt" in err and "UTF-8" in err
    assert not (tmp_path / "ds").exists()


def test_jsonl_line_without_text_names_file_and_line(tmp_path, capsys):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"text": "a"}\n{"text": "b"}\n{"body": "c"}\n')
    rc, stdout, err = cli(bd.main, [str(path), "--out", str(tmp_path / "ds"), "--byte"], capsys)
    assert rc == 1 and f"{path}:3: no 'text' field" in err
    path.write_text('{"text": "a"}\nnot json\n')
    rc, stdout, err = cli(bd.main, [str(path), "--out", str(tmp_path / "ds"), "--byte"], capsys)
    assert rc == 1 and f"{path}:2: invalid JSON" in err
    assert not (tmp_path / "ds").exists()


def test_vocab_too_large_for_uint16_is_refused(tmp_path, capsys):
    write_jsonl(tmp_path / "c.jsonl", ascii_docs(20))
    rc, stdout, err = cli(bd.main, [str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "ds"), "--vocab-size", "70000"], capsys)
    assert rc == 1 and "uint16" in err and not (tmp_path / "ds").exists()


def test_vocab_the_corpus_cannot_fill_fails_without_leftovers(tmp_path, capsys):
    write_jsonl(tmp_path / "c.jsonl", ascii_docs(30))
    rc, stdout, err = cli(bd.main, [str(tmp_path / "c.jsonl"), "--out", str(tmp_path / "ds"), "--vocab-size", "4000",
                  "--workers", "1", "--no-progress"], capsys)
    assert rc == 1 and "too small" in err
    assert not (tmp_path / "ds").exists() and leftovers(tmp_path) == []


def test_output_holding_a_different_dataset_is_refused_unless_forced(tmp_path, capsys):
    write_jsonl(tmp_path / "a.jsonl", ascii_docs(40, seed=1))
    write_jsonl(tmp_path / "b.jsonl", ascii_docs(40, seed=2))
    out = tmp_path / "ds"
    args = ["--out", str(out), "--byte", "--val-docs", "4", "--no-progress"]
    assert cli(bd.main, [str(tmp_path / "a.jsonl"), *args], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    rc, stdout, err = cli(bd.main, [str(tmp_path / "b.jsonl"), *args], capsys)
    assert rc == 1 and "already holds a different dataset" in err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert leftovers(tmp_path) == []
    rc, stdout, err = cli(bd.main, [str(tmp_path / "b.jsonl"), *args, "--force"], capsys)
    assert rc == 0
    assert {p.name: p.read_bytes() for p in out.iterdir()} != before and leftovers(tmp_path) == []
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    rc, stdout, err = cli(bd.main, [str(tmp_path / "a.jsonl"), "--out", str(tmp_path / "other"), "--byte"], capsys)
    assert rc == 1 and "already holds other files" in err
