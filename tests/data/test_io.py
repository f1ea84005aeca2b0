"""Dataset folders: deterministic bytes, round trip, atomic writes, one-line errors naming file and line."""

import json
import os

import pytest

from genmodes.data.families import make_dataset
from genmodes.data.io import dataset_files, load_dataset, resolve_dataset, save_dataset
from genmodes.errors import DataError

SMALL = {"n_facts": 5, "articles_per_fact": 2}


@pytest.fixture
def ds():
    return make_dataset("simple_reversals", seed=3, overrides=SMALL)


def test_round_trip_is_identical(ds, tmp_path):
    save_dataset(ds, tmp_path / "d")
    back = load_dataset(tmp_path / "d")
    assert back.family == ds.family and back.seed == ds.seed and back.config == ds.config
    assert [d.to_json() for d in back.documents] == [d.to_json() for d in ds.documents]
    assert [q.to_json() for q in back.questions] == [q.to_json() for q in ds.questions]
    assert back.knowledge == ds.knowledge and back.meta == ds.meta
    assert dataset_files(back) == dataset_files(ds)  # save(load(x)) gives the same bytes


def test_files_and_meta(ds, tmp_path):
    out = save_dataset(ds, tmp_path / "d")
    assert sorted(os.listdir(out)) == ["documents.jsonl", "knowledge.jsonl", "meta.json", "questions.jsonl"]
    meta = json.loads((out / "meta.json").read_text())
    assert meta["family"] == "simple_reversals" and meta["seed"] == 3 and len(meta["content_hash"]) == 64
    assert meta["meta"]["recall_splits"] == ["forward"]
    raw = (out / "questions.jsonl").read_bytes()
    assert raw.endswith(b"\n") and b"\r" not in raw and b", " not in raw.split(b'"context"')[0]


def test_replace_existing_dataset_and_leave_no_temp(ds, tmp_path):
    save_dataset(ds, tmp_path / "d")
    ds2 = make_dataset("simple_reversals", seed=4, overrides=SMALL)
    save_dataset(ds2, tmp_path / "d")
    assert load_dataset(tmp_path / "d").seed == 4
    assert os.listdir(tmp_path) == ["d"]


def test_refuses_to_replace_a_non_dataset_folder(ds, tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "notes.txt").write_text("mine")
    with pytest.raises(DataError, match="not a genmodes dataset"):
        save_dataset(ds, tmp_path / "d")
    assert (tmp_path / "d" / "notes.txt").read_text() == "mine"


def test_failed_write_leaves_nothing(ds, tmp_path, monkeypatch):
    save_dataset(ds, tmp_path / "d")
    before = {p: (tmp_path / "d" / p).read_bytes() for p in os.listdir(tmp_path / "d")}
    calls = []

    def boom(fd):
        calls.append(fd)
        if len(calls) % 2 == 0:
            raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", boom)
    with pytest.raises(DataError, match="No space left"):
        save_dataset(make_dataset("simple_reversals", seed=9, overrides=SMALL), tmp_path / "d")
    assert os.listdir(tmp_path) == ["d"]  # no temp folder left behind
    assert {p: (tmp_path / "d" / p).read_bytes() for p in os.listdir(tmp_path / "d")} == before
    calls.clear()
    with pytest.raises(DataError):
        save_dataset(ds, tmp_path / "new")
    assert os.listdir(tmp_path) == ["d"]


def _corrupt(tmp_path, ds, fname, lineno, new_line):
    out = save_dataset(ds, tmp_path / "d")
    lines = (out / fname).read_text().split("\n")
    lines[lineno - 1] = new_line(lines[lineno - 1])
    (out / fname).write_text("\n".join(lines))
    return out


def test_bad_answer_names_file_and_line(ds, tmp_path):
    def bad(line):
        d = json.loads(line)
        d["answer"] = 5
        return json.dumps(d)

    out = _corrupt(tmp_path, ds, "questions.jsonl", 7, bad)
    with pytest.raises(DataError, match=r"^questions\.jsonl line 7: answer 5 out of range for 2 choices$"):
        load_dataset(out)


def test_invalid_json_and_missing_field(ds, tmp_path):
    out = _corrupt(tmp_path, ds, "documents.jsonl", 3, lambda line: line[:20])
    with pytest.raises(DataError, match=r"^documents\.jsonl line 3: invalid JSON"):
        load_dataset(out)
    out = _corrupt(tmp_path, ds, "knowledge.jsonl", 2, lambda line: '["a", "b"]')
    with pytest.raises(DataError, match=r"^knowledge\.jsonl line 2: .*three strings"):
        load_dataset(out)


def test_missing_files_and_hash(ds, tmp_path):
    with pytest.raises(DataError, match="no such dataset folder"):
        load_dataset(tmp_path / "nope")
    out = save_dataset(ds, tmp_path / "d")
    (out / "knowledge.jsonl").write_text((out / "knowledge.jsonl").read_text() + '["x","y","z"]\n')
    with pytest.raises(DataError, match="content_hash"):
        load_dataset(out)
    assert len(load_dataset(out, verify_hash=False).knowledge) == len(ds.knowledge) + 1
    (out / "questions.jsonl").unlink()
    with pytest.raises(DataError, match="missing file questions.jsonl"):
        load_dataset(out)


def test_resolve_dataset(ds, tmp_path):
    save_dataset(ds, tmp_path / "d")
    assert resolve_dataset(tmp_path / "d").seed == 3
    got = resolve_dataset("simple_reversals", seed=3, overrides=SMALL)
    assert dataset_files(got) == dataset_files(ds)
    with pytest.raises(DataError, match="neither a dataset folder nor a family"):
        resolve_dataset(str(tmp_path / "missing"))


QROW = {"id": "q", "split": "s", "context": "c", "choices": [" a", " b"], "answer": 1}


@pytest.mark.parametrize("row, message", [
    ({**QROW, "answer": "1"}, "field 'answer' must be an integer, got \"1\""),  # strict: no coercion
    ({**QROW, "answer": 1.0}, "field 'answer' must be an integer, got 1.0"),
    ({**QROW, "answer": True}, "field 'answer' must be an integer, got true"),
    ({**QROW, "subtype": 3}, "field 'subtype' must be a string, got 3"),
    ({**QROW, "choices": [" a", 2]}, "field 'choices' must be a non-empty list of strings, got [\" a\",2]"),
    ({**QROW, "premises": [["a", "b", "c", "d"]]}, "field 'premises' must be a list of facts"),
    ({**QROW, "choice_facts": [["a", "b", "c"]]}, "1 choice_facts for 2 choices"),
    ({k: v for k, v in QROW.items() if k != "split"}, "missing field 'split'"),
    ([QROW], "expected a JSON object, got list"),
])
def test_question_rows_are_checked_strictly(row, message):
    from genmodes.data.io import question_from_row

    with pytest.raises(ValueError) as e:
        question_from_row(row)
    assert str(e.value).startswith(message)


def test_rows_take_defaults_and_ignore_unknown_fields():
    from genmodes.data.io import document_from_row, question_from_row
    from genmodes.data.types import Fact

    q = question_from_row({**QROW, "premises": [["a", "r", "b"]], "choice_facts": [None, ["a", "r", "b"]],
                           "added_later": 1})
    assert (q.subtype, q.support, q.meta, q.premises) == ("", [], {}, [Fact("a", "r", "b")])
    assert q.choice_facts == [None, Fact("a", "r", "b")]
    d = document_from_row({"id": "d", "text": "t"})
    assert (d.kind, d.facts, d.meta) == ("article", [], {})
    with pytest.raises(ValueError, match="field 'kind' must be a string, got 5"):
        document_from_row({"id": "d", "text": "t", "kind": 5})


def test_meta_file_is_checked_strictly(ds, tmp_path):
    out = save_dataset(ds, tmp_path / "d")
    meta = json.loads((out / "meta.json").read_text())
    for key, value, message in [("seed", "3", "field 'seed' must be an integer"),
                                ("family", None, "field 'family' must be a string"),
                                ("config", [], "field 'config' must be an object"),
                                ("seed", -1, "seed -1 must be from 0 to")]:
        (out / "meta.json").write_text(json.dumps({**meta, key: value}))
        with pytest.raises(DataError, match=f"meta.json: {message}"):
            load_dataset(out)
