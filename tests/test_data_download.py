"""python -m data.download_fineweb against a local mirror laid out like the Hugging Face repository."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import train_gpt
from data import download_fineweb as dl
from data import golfdata
from tests.helpers import SP_MODEL, make_mirror
import common as C


@pytest.fixture()
def mirror(tmp_path):
    """tmp/mirror/datasets/{manifest.json, tokenizers/, datasets/fineweb10B_{sp1024,byte260}/} with tiny shards."""
    if not SP_MODEL.is_file():
        pytest.skip("needs ../shared/data/fineweb_sp1024 (the published tokenizer)")
    return make_mirror(tmp_path)


def run(mirror, out, **kw):
    kw.setdefault("train_shards", 2)
    return dl.download(kw.pop("variant", "sp1024"), output_root=out, mirror=mirror, progress=False, **kw)


def shard_path(out: Path, variant: str, split: str, i: int) -> Path:
    return out / "datasets" / f"fineweb10B_{variant}" / f"fineweb_{split}_{i:06d}.bin"


def test_downloads_manifest_tokenizer_val_and_a_prefix_of_train_shards(mirror, tmp_path):
    out = tmp_path / "data"
    report = run(mirror, out, train_shards=2)
    ds = out / "datasets" / "fineweb10B_sp1024"
    assert (out / "manifest.json").read_bytes() == (mirror / "datasets" / "manifest.json").read_bytes()
    assert (out / "tokenizers" / "fineweb_1024_bpe.model").read_bytes() == SP_MODEL.read_bytes()
    assert (out / "tokenizers" / "fineweb_1024_bpe.vocab").is_file()
    assert sorted(p.name for p in ds.glob("*.bin")) == ["fineweb_train_000000.bin", "fineweb_train_000001.bin",
                                                        "fineweb_val_000000.bin"]
    for p in ds.glob("*.bin"):
        assert p.read_bytes() == (mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / p.name).read_bytes()
    assert not list(out.rglob("*.partial")) and not list(out.rglob(".*.partial-*"))
    # train_gpt finds the tokenizer through the dataset directory's manifest and validates everything
    tok = train_gpt.resolve_tokenizer_path(ds, "")
    assert tok.resolve() == (out / "tokenizers" / "fineweb_1024_bpe.model").resolve()
    summary = train_gpt.validate_dataset(ds, tok, 1024, full=True)
    assert summary["train"]["shards"] == 2 and summary["val"]["shards"] == 1
    golf = json.loads((ds / "manifest.json").read_text())
    assert golf["splits"]["train"]["docs"] == 20 + 21 and golf["splits"]["val"]["docs"] == 5
    assert golf["splits"]["val"]["tokens"] == summary["val"]["tokens"] and golf["byte_fallback"] is False
    assert report["dataset_dir"] == str(ds) and report["vocab_size"] == 1024


def test_rerun_skips_complete_files_and_fetches_only_new_shards(mirror, tmp_path):
    out = tmp_path / "data"
    run(mirror, out, train_shards=1)
    report = run(mirror, out, train_shards=3)
    status = {Path(f["path"]).name: f["status"] for f in report["files"]}
    assert status["fineweb_train_000000.bin"] == "present" and status["fineweb_val_000000.bin"] == "present"
    assert status["fineweb_train_000002.bin"] == "downloaded"
    assert json.loads((out / "datasets/fineweb10B_sp1024/manifest.json").read_text())["splits"]["train"]["docs"] == 63


@pytest.mark.parametrize("part_name", [f".fineweb_train_000001.bin.partial-{C.HOST}-99999999-abc123",  # a dead pid
                                       "fineweb_train_000001.bin.partial"],  # as earlier versions named it
                         ids=["partial", "legacy_partial"])
def test_interrupted_file_resumes_from_its_partial(mirror, tmp_path, part_name):
    out = tmp_path / "data"
    src = mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000001.bin"
    part = shard_path(out, "sp1024", "train", 1).with_name(part_name)
    part.parent.mkdir(parents=True)
    part.write_bytes(src.read_bytes()[:1500])  # what an interrupted copy leaves behind
    report = run(mirror, out, train_shards=2)
    entry = next(f for f in report["files"] if f["path"].endswith("fineweb_train_000001.bin"))
    assert entry["status"] == "resumed" and entry["resumed_from"] == 1500
    assert entry["transferred"] == src.stat().st_size - 1500
    assert shard_path(out, "sp1024", "train", 1).read_bytes() == src.read_bytes() and not part.exists()


def test_a_partial_with_wrong_bytes_is_fetched_again(mirror, tmp_path):
    out = tmp_path / "data"
    src = mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / "fineweb_val_000000.bin"
    part = shard_path(out, "sp1024", "val", 0).with_name(f".fineweb_val_000000.bin.partial-{C.HOST}-99999999-x1")
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * 1024)  # a bad header: the resumed file fails its check, then a clean fetch
    run(mirror, out, train_shards=0)
    assert shard_path(out, "sp1024", "val", 0).read_bytes() == src.read_bytes()


def test_a_truncated_shard_on_the_source_is_detected_and_not_installed(mirror, tmp_path):
    src = mirror / "datasets" / "datasets" / "fineweb10B_sp1024" / "fineweb_train_000001.bin"
    src.write_bytes(src.read_bytes()[:-6])
    out = tmp_path / "data"
    with pytest.raises(C.ToolError, match="fineweb_train_000001.bin.*header promises"):
        run(mirror, out, train_shards=2)
    assert shard_path(out, "sp1024", "train", 0).is_file()
    assert not shard_path(out, "sp1024", "train", 1).exists() and not list(out.rglob("*.partial"))
    assert not list(out.rglob(".*.partial-*"))


def test_a_hash_mismatch_from_the_manifest_is_detected(mirror, tmp_path):
    man_path = mirror / "datasets" / "manifest.json"
    man = json.loads(man_path.read_text())
    rel = "datasets/fineweb10B_sp1024/fineweb_val_000000.bin"
    src = mirror / "datasets" / rel
    good = golfdata.sha256_file(src)
    man["files"] = {rel: {"size": src.stat().st_size, "sha256": good}}
    man_path.write_text(json.dumps(man))
    data = bytearray(src.read_bytes())
    data[-1] ^= 0xFF  # same size, one flipped byte: only the hash can tell
    src.write_bytes(bytes(data))
    with pytest.raises(C.ToolError, match="fineweb_val_000000.bin: SHA-256"):
        run(mirror, tmp_path / "data", train_shards=0)
    assert not shard_path(tmp_path / "data", "sp1024", "val", 0).exists()


def test_a_corrupt_local_file_is_replaced(mirror, tmp_path, capsys):
    out = tmp_path / "data"
    run(mirror, out, train_shards=1)
    local = shard_path(out, "sp1024", "train", 0)
    local.write_bytes(local.read_bytes()[:2000])
    report = run(mirror, out, train_shards=1)
    assert "incomplete or corrupt" in capsys.readouterr().err
    assert next(f for f in report["files"] if f["path"] == str(local))["status"] == "downloaded"
    train_gpt.read_shard_header(local)


def test_byte260_variant_gets_its_json_tokenizer(mirror, tmp_path):
    out = tmp_path / "data"
    report = run(mirror, out, variant="byte260", train_shards=1)
    ds = out / "datasets" / "fineweb10B_byte260"
    tok = train_gpt.resolve_tokenizer_path(ds, "")
    assert tok.name == "fineweb_pure_byte_260.json" and report["vocab_size"] == 260
    assert train_gpt.validate_dataset(ds, tok, 260)["train"]["shards"] == 1


def test_bad_requests_are_one_line_errors(mirror, tmp_path, capsys):
    base = ["--mirror", str(mirror), "--output-root", str(tmp_path / "data"), "--no-progress"]
    rc = C.run_cli(dl.main, ["--variant", "sp4096", *base])
    err = capsys.readouterr().err
    assert rc == 1 and err.startswith("error: variant sp4096") and "byte260, sp1024" in err
    rc = C.run_cli(dl.main, ["--train-shards", "9", *base])
    assert rc == 1 and "has 3 training shards, 9 requested" in capsys.readouterr().err
    rc = C.run_cli(dl.main, ["--mirror", str(tmp_path / "nowhere"), "--output-root", str(tmp_path / "d")])
    assert rc == 1 and "no such directory" in capsys.readouterr().err


def test_cli_prints_where_everything_went(mirror, tmp_path, capsys):
    rc = C.run_cli(dl.main, ["--mirror", str(mirror), "--output-root", str(tmp_path / "data"),
                                    "--train-shards", "1", "--no-progress"])
    out = capsys.readouterr().out
    assert rc == 0
    assert f"tokenizer: {tmp_path / 'data' / 'tokenizers' / 'fineweb_1024_bpe.model'}" in out
    assert f"DATA_PATH={tmp_path / 'data' / 'datasets' / 'fineweb10B_sp1024'}" in out


def test_default_path_uses_the_hub_client(mirror, tmp_path, monkeypatch):
    """The hub path calls huggingface_hub (get_paths_info for sizes/hashes, hf_hub_download for bytes)."""
    import huggingface_hub
    calls = []

    class Entry:
        def __init__(self, path):
            self.path, self.size, self.lfs = path, (mirror / path).stat().st_size, None

    class FakeApi:
        def get_paths_info(self, repo_id, paths, repo_type=None, revision=None):
            calls.append(("info", repo_id, repo_type, tuple(paths)))
            return [Entry(p) for p in paths]

    def fake_download(repo_id, filename, repo_type=None, revision=None, **kw):
        calls.append(("download", repo_id, repo_type, filename))
        return str(mirror / filename)

    monkeypatch.setattr(huggingface_hub, "HfApi", FakeApi)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake_download)
    out = tmp_path / "data"
    dl.download("sp1024", 1, output_root=out, progress=False)
    downloads = [c[3] for c in calls if c[0] == "download"]
    assert downloads[0] == "datasets/manifest.json"
    assert "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin" in downloads
    assert "datasets/datasets/fineweb10B_sp1024/fineweb_train_000001.bin" not in downloads
    assert all(c[1] == "willdepueoai/parameter-golf" and c[2] == "dataset" for c in calls)
    assert shard_path(out, "sp1024", "train", 0).read_bytes() == \
        (mirror / "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin").read_bytes()
    # the mirror's own files were hard-linked or copied, never moved
    assert (mirror / "datasets/datasets/fineweb10B_sp1024/fineweb_train_000000.bin").is_file()


def test_larger_vocabularies_come_from_the_repository_that_published_them(monkeypatch):
    monkeypatch.delenv("FINEWEB_REPO_ID", raising=False)
    monkeypatch.delenv("MATCHED_FINEWEB_REPO_ID", raising=False)
    assert dl.repo_for("sp1024") == "willdepueoai/parameter-golf" and dl.repo_for("byte260") == "willdepueoai/parameter-golf"
    assert dl.repo_for("sp4096") == dl.repo_for("sp8192") == "kevclark/parameter-golf"
    monkeypatch.setenv("MATCHED_FINEWEB_REPO_ID", "someone/mirror")
    assert dl.repo_for("sp8192") == "someone/mirror"
