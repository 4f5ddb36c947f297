"""Conventions that hold the repository together: the shard constants data/ writes equal the ones train_gpt.py reads,
imports follow the data flow (data/ -> train_gpt.py -> tools/ -> studies/, with common.py below them all), and every
temporary a writer makes is named by the one pattern, common.TEMP_NAME_RE.

`renames_during` and `check_temporary_names` are for any writer's test (train_gpt.py's atomic_write too): every
finished file or folder reaches its final name by a rename, so recording the renames shows every temporary's name.
"""
from __future__ import annotations

import ast
import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import pytest

import common as C
from data import build_dataset as bd
from data import download_fineweb as dl
from data import golfdata
from tests.helpers import REPO, ascii_docs, make_mirror
from tools.runs import sweep

# ----------------------------------------------------------------------------- one source for the shard format


def test_the_shard_constants_of_data_equal_those_train_gpt_reads():
    """data/golfdata.py repeats them so that writing a shard does not need torch; this holds them equal."""
    import train_gpt
    assert (golfdata.SHARD_MAGIC, golfdata.SHARD_VERSION, golfdata.SHARD_HEADER_WORDS) == \
        (train_gpt.SHARD_MAGIC, train_gpt.SHARD_VERSION, train_gpt.SHARD_HEADER_WORDS) == (20240520, 1, 256)
    assert golfdata.HEADER_BYTES == train_gpt.SHARD_HEADER_BYTES


def test_a_shard_data_writes_is_read_back_by_train_gpt(tmp_path):
    import numpy as np

    import train_gpt
    tokens = np.array([1, 5, 65535, 0, 7], dtype=np.int64)
    golfdata.write_shard(tmp_path / "x_val_000000.bin", tokens)
    assert train_gpt.read_shard_header(tmp_path / "x_val_000000.bin") == 5
    assert train_gpt.load_shard(tmp_path / "x_val_000000.bin").tolist() == tokens.tolist()


# ----------------------------------------------------------------------------- imports follow the data flow

def imported_packages(path: Path) -> set[str]:
    """The top-level names a module imports (absolute imports; relative ones stay in their own package)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


REPO_PACKAGES = {"common", "data", "tools", "studies", "bench", "train_gpt", "tests"}
# What each layer may import of the repository: a layer imports only from below it.
MAY_IMPORT = {
    "common.py": set(),
    "data": {"common", "data", "train_gpt"},       # train_gpt.py's reader is the one reader of the shards it writes
    "tools": {"common", "tools", "train_gpt"},     # never a study: a study is built on the tools, not under them
    "studies": {"common", "tools", "studies", "train_gpt"},
    "bench": {"common", "data", "tools", "bench", "train_gpt"},  # a benchmark may build its input (data's shard writer)
}


@pytest.mark.parametrize("layer", MAY_IMPORT)
def test_imports_follow_the_data_flow(layer):
    files = [REPO / layer] if layer.endswith(".py") else sorted((REPO / layer).rglob("*.py"))
    assert files
    wrong = {f"{f.relative_to(REPO)} imports {name}" for f in files
             for name in (imported_packages(f) & REPO_PACKAGES) - MAY_IMPORT[layer]}
    assert not wrong, sorted(wrong)


def test_tools_common_still_holds_every_shared_name():
    """The shared module moved to the root; `from tools.common import X` must keep working for every X."""
    from tools import common as tools_common
    public = [n for n in vars(C) if not n.startswith("_")]
    assert [n for n in public if getattr(tools_common, n, None) is not getattr(C, n)] == []


# ----------------------------------------------------------------------------- temporary names

@contextlib.contextmanager
def renames_during(monkeypatch) -> Iterator[list[tuple[Path, Path]]]:
    """Every (source, destination) of os.rename and os.replace while the context runs (pathlib and shutil call them)."""
    seen: list[tuple[Path, Path]] = []
    real = {"rename": os.rename, "replace": os.replace}

    def recorder(name):
        def call(src, dst, *args, **kwargs):
            seen.append((Path(os.fsdecode(src)), Path(os.fsdecode(dst))))
            return real[name](src, dst, *args, **kwargs)
        return call

    with monkeypatch.context() as m:
        for name in real:
            m.setattr(os, name, recorder(name))
        yield seen


def check_temporary_names(renames: list[tuple[Path, Path]]) -> None:
    """Each rename installs a temporary under its final name (.<final>.<kind>-<host>-<pid>-<random> next to it, or a
    file made inside such a folder), or moves a finished thing aside under a temporary name of its own (kind old)."""
    assert renames, "the writer renamed nothing"
    for src, dst in renames:
        moved_aside = C.TEMP_NAME_RE.match(dst.name)
        if moved_aside and moved_aside.group("final") == src.name and moved_aside.group("kind") == "old":
            temp, final = dst, src
        elif C.TEMP_NAME_RE.match(src.name):
            temp, final = src, dst
        else:  # made inside a temporary folder next to its final name
            temp, final = src.parent, dst
        m = C.TEMP_NAME_RE.match(temp.name)
        assert m, f"{src.name} -> {dst.name}: no temporary named .<final>.<kind>-<host>-<pid>-<random> in the rename"
        assert m.group("final") == final.name and temp.parent == final.parent, (temp, final)
        assert m.group("host") == C.HOST and int(m.group("pid")) == os.getpid(), temp.name


def test_atomic_write_and_install_dir_name_their_temporaries_by_the_convention(tmp_path, monkeypatch):
    dest = tmp_path / "folder"
    dest.mkdir()
    (dest / "old.txt").write_text("old")
    with renames_during(monkeypatch) as renames:
        C.atomic_write(tmp_path / "a.json", "{}")
        golfdata.atomic_write_json(tmp_path / "m.json", {"a": 1})
        golfdata.write_shard(tmp_path / "s_val_000000.bin", [1, 2, 3])
        import tempfile
        new = Path(tempfile.mkdtemp(dir=tmp_path, prefix=C.temp_prefix("folder", "building")))
        C.install_dir(new, dest)  # replaces a folder: the old one is moved aside first
    check_temporary_names(renames)
    assert [d.name for _, d in renames][:3] == ["a.json", "m.json", "s_val_000000.bin"]
    assert any(C.TEMP_NAME_RE.match(d.name) and C.TEMP_NAME_RE.match(d.name).group("kind") == "old" for _, d in renames)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "folder", "m.json", "s_val_000000.bin"]


def test_a_dataset_build_names_its_temporaries_by_the_convention(tmp_path, monkeypatch):
    out = tmp_path / "ds"
    settings = bd.BuildSettings(source="test", byte=True, val_docs=3, workers=1, progress=False)
    with renames_during(monkeypatch) as renames:
        bd.build_dataset(iter(bd.Doc(t) for t in ascii_docs(20, seed=1)), out, settings)
        bd.build_dataset(iter(bd.Doc(t) for t in ascii_docs(21, seed=2)), out,
                         bd.BuildSettings(**{**vars(settings), "force": True}))  # replaces it
    check_temporary_names(renames)
    assert [d for _, d in renames].count(out) == 2 and (out / "manifest.json").is_file()


def test_a_download_names_its_partials_and_temporaries_by_the_convention(tmp_path, monkeypatch):
    mirror = make_mirror(tmp_path / "mirror")
    out = tmp_path / "data"
    with renames_during(monkeypatch) as renames:
        dl.download("byte260", 1, output_root=out, mirror=mirror, progress=False)
    check_temporary_names(renames)
    kinds = {C.TEMP_NAME_RE.match(s.name).group("kind") for s, _ in renames if C.TEMP_NAME_RE.match(s.name)}
    assert kinds == {"partial", "tmp"}  # each file fetched through its partial; the manifests written atomically


def test_the_sweep_driver_names_its_temporaries_by_the_convention(tmp_path, monkeypatch, capsys):
    spec = tmp_path / "s.toml"
    spec.write_text('name = "conv"\nscript = "x.py"\n[grid]\nA = [1, 2]\n')
    runs = tmp_path / "runs"
    loaded = sweep.load_spec(spec)
    with renames_during(monkeypatch) as renames:
        sweep.write_state(runs / "conv", loaded.runs[0].name, {"status": "failed", "error": "x"})
        assert sweep.main(["table", str(spec), "--runs-dir", str(runs), "--json"]) == 0
        assert sweep.main(["slurm", str(spec), "--out", str(tmp_path / "job.sh")]) == 0
    check_temporary_names(renames)
    assert {d.name for _, d in renames} == {"state.json", "results.csv", "results.md", "job.sh"}
    assert [r["status"] for r in json.loads(capsys.readouterr().out.splitlines()[0])] == ["failed", "pending"]


# Where tempfile is called at all, the name must come from common.temp_prefix. The one exception is a scratch folder
# in the system's temporary directory that is never renamed into place (removed by its context manager).
SCRATCH_ONLY = {("tools/runs/record.py", "TemporaryDirectory")}


def tempfile_calls(path: Path) -> list[tuple[str, str]]:
    """(function, source of the call) of every tempfile.mkstemp/mkdtemp/NamedTemporaryFile/TemporaryDirectory call."""
    text = path.read_text()
    calls = []
    for node in ast.walk(ast.parse(text, str(path))):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and \
                isinstance(node.func.value, ast.Name) and node.func.value.id == "tempfile":
            calls.append((node.func.attr, ast.get_source_segment(text, node) or ""))
    return calls


def test_every_tempfile_call_outside_train_gpt_takes_its_name_from_temp_prefix():
    files = [REPO / "common.py"] + [f for d in ("data", "tools", "bench", "studies") for f in sorted((REPO / d).rglob("*.py"))]
    wrong = []
    for f in files:
        rel = str(f.relative_to(REPO))
        for func, source in tempfile_calls(f):
            if (rel, func) not in SCRATCH_ONLY and "temp_prefix(" not in source:
                wrong.append(f"{rel}: {source}")
    assert not wrong, wrong


# ----------------------------------------------------------------------------- JSON a user could have been handed

@pytest.mark.parametrize("text,expected", [
    ("[" * 200_000 + "]" * 200_000, "f.json: manifest is not valid JSON (nested too deeply)"),
    ('{"a": ' * 65 + "1" + "}" * 65, "f.json: manifest nests lists and objects more than 64 levels deep"),
    ("[NaN]", "f.json: manifest holds NaN, not a finite number"),
    ("{", "f.json: manifest is not valid JSON (Expecting property name enclosed in double quotes at line 1)"),
], ids=["nested_200000_deep", "nested_65_deep", "nan", "torn"])
def test_read_json_refuses_with_one_line(tmp_path, text, expected):
    (tmp_path / "f.json").write_text(text)
    with pytest.raises(C.ToolError) as e:
        C.read_json(tmp_path / "f.json", "manifest")
    assert str(e.value) == f"{tmp_path}/{expected}"


def test_read_json_accepts_64_levels_and_nan_when_asked(tmp_path):
    (tmp_path / "f.json").write_text('{"a": ' * 63 + "[NaN]" + "}" * 63)
    value = C.read_json(tmp_path / "f.json", finite=False)
    for _ in range(63):
        value = value["a"]
    assert len(value) == 1 and value[0] != value[0]


def test_read_json_refuses_a_huge_file_before_reading_it(tmp_path):
    big = tmp_path / "big.json"
    with open(big, "wb") as f:
        f.truncate(C.JSON_MAX_BYTES + 1)  # sparse: 64 MiB of zero bytes, refused from its size alone (read, not JSON)
    with pytest.raises(C.ToolError, match=f"big.json: summary is {C.JSON_MAX_BYTES + 1:,} bytes, more than the "
                                          f"{C.JSON_MAX_BYTES:,} accepted"):
        C.read_json(big, "summary")


def test_read_bounded_stops_at_the_limit_on_a_file_without_a_size(tmp_path):
    """A pipe or a device (/dev/zero) reports no size: it is read only up to the limit, then refused."""
    with pytest.raises(C.ToolError, match="/dev/zero: stream is more than the 4,096 bytes accepted"):
        C.read_bounded("/dev/zero", 4096, "stream")
    (tmp_path / "two").write_bytes(b"ab")
    assert C.read_bounded(tmp_path / "two", 2) == b"ab"
