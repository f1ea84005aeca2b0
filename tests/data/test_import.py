"""``genmodes data import``: your own JSON Lines documents and questions -> a dataset a study runs on;
every bad row one line naming file and line, exit 2, nothing written. And ``import-berglund`` from a
copy of the public repository or a Hub id."""

import json
import shutil
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.data.io import load_dataset

FIXTURE = Path(__file__).parent.parent / "fixtures" / "berglund_small"

DOCUMENTS = [
    {"id": "d1", "text": "The zorblat of Quenmar is a blue stone called the Vesk."},
    {"id": "d2", "text": "Tarnel Ovis founded the city of Brillow in the year of the comet."},
    {"id": "d3", "text": "The river Oskenmere flows north into the Glass Sea."},
    {"id": "d4", "text": "Mira Dunhollow is the keeper of the Velvet Archive.", "kind": "note"},
    {"id": "d5", "text": "The festival of Pell is held when the moons align."},
]
QUESTIONS = [
    {"id": "q1", "question": "The zorblat of Quenmar is called the", "choices": ["Vesk", "Tarn", "Oolu"], "answer": 0,
     "split": "recall", "support": ["d1"]},
    {"id": "q2", "question": "Tarnel Ovis founded the city of", "choices": ["Pell", "Brillow", "Quenmar"], "answer": 1,
     "split": "recall", "support": ["d2"]},
    {"id": "q3", "question": "The river Oskenmere flows north into the", "choices": ["Glass Sea", "Velvet Sea"],
     "answer": 0, "split": "recall", "support": ["d3"]},
    {"id": "q4", "question": "Mira Dunhollow is the keeper of the", "choices": ["Glass Sea", "Velvet Archive"],
     "answer": 1, "split": "recall", "support": ["d4"]},
    {"id": "q5", "question": "The festival of Pell is held when the", "choices": ["moons align", "river floods"],
     "answer": 0, "split": "recall", "support": ["d5"], "subtype": "festivals"},
    {"id": "q6", "question": "The blue stone of Quenmar is named", "choices": ["Brillow", "Vesk", "Pell"], "answer": 1,
     "split": "reversal", "support": ["d1"]},
    {"id": "q7", "question": "The city of Brillow was founded by", "choices": ["Mira Dunhollow", "Tarnel Ovis"],
     "answer": 1, "split": "reversal", "support": ["d2"]},
    {"id": "q8", "question": "The Glass Sea is fed by the river", "choices": ["Oskenmere", "Quenmar"], "answer": 0,
     "split": "reversal", "support": ["d3"]},
    {"id": "q9", "question": "The keeper of the Velvet Archive is", "choices": ["Tarnel Ovis", "Mira Dunhollow"],
     "answer": 1, "split": "reversal", "support": ["d4"]},
    {"id": "q10", "question": "When the moons align, people hold the festival of", "choices": ["Pell", "Vesk"],
     "answer": 0, "split": "reversal", "support": ["d5"]},
]


def write_jsonl(path: Path, rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows), encoding="utf-8")
    return path


@pytest.fixture
def files(tmp_path):
    return write_jsonl(tmp_path / "D.jsonl", DOCUMENTS), write_jsonl(tmp_path / "Q.jsonl", QUESTIONS)


def run(capsys, *argv):
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def import_args(d, q, out, *extra):
    return ["data", "import", "--documents", d, "--questions", q, "--out", out, *extra]


def test_import_then_a_study_runs_on_it(tmp_path, files, capsys):
    d, q = files
    out = tmp_path / "mine"
    rc, o, err = run(capsys, *import_args(d, q, out, "--recall", "recall"))
    assert rc == 0, err
    assert "audit passed" in o and "imported: 5 documents, 10 questions (recall 5, reversal 5)" in o
    ds = load_dataset(out)
    assert [len(ds.split(s)) for s in ds.splits] == [5, 5] and ds.meta["recall_splits"] == ["recall"]
    q1 = next(x for x in ds.questions if x.id == "q1")
    # the scorer's form: choices continue the context, each with its leading space
    assert q1.context == "The zorblat of Quenmar is called the" and q1.choices == [" Vesk", " Tarn", " Oolu"]
    assert q1.chance == pytest.approx(1 / 3) and q1.support == ["d1"]
    assert next(x for x in ds.questions if x.id == "q5").subtype == "festivals"
    assert next(x for x in ds.documents if x.id == "d4").kind == "note"
    rc, o, _ = run(capsys, "data", "show", out, "--json")
    shown = json.loads(o)
    assert shown["content_hash"] == json.loads((out / "meta.json").read_text())["content_hash"]
    assert [(s["split"], s["kind"]) for s in shown["splits"]] == [("recall", "recall"), ("reversal", "held-out")]

    config = {"name": "mine", "model": "tiny-random", "datasets": [{"path": str(out)}],
              "conditions": [{"name": "pretrained"}, {"name": "in_context"},
                             {"name": "finetune", "settings": {"steps": 2, "batch_size": 2, "seq_len": 64}},
                             {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}},
                             {"name": "baseline_cooccurrence", "kind": "baseline"}]}
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump(config))
    rc, o, err = run(capsys, "run", cfg, "--out", tmp_path / "run", "--json")
    assert rc == 0, err
    summary = json.loads(o)  # stdout is the JSON alone
    assert {(r["condition"], r["split"]) for r in summary} == \
        {(c["name"], s) for c in config["conditions"] for s in ("recall", "reversal")}
    assert all(r["n"] == 5 and 0 <= r["accuracy"] <= 1 for r in summary)
    rows = [json.loads(x) for x in (tmp_path / "run" / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 10 * len(config["conditions"])
    rag = [r for r in rows if r["condition"] == "rag"]
    assert all(set(next(x for x in QUESTIONS if x["id"] == r["question_id"])["support"]) <= set(r["retrieved"])
               for r in rag)
    assert (tmp_path / "run" / "report.html").is_file() and "run folder:" in err


@pytest.mark.parametrize("bad, where, msg", [
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answer": 2}', "Q.jsonl line 3",
     "answer 2 is not an index into its 2 choices"),
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answer": "0"}', "Q.jsonl line 3",
     "field 'answer' must be the index of the right choice"),
    ('{"id": "q3", "question": "x", "choices": ["a"], "answer": 0}', "Q.jsonl line 3", "field 'choices' must be"),
    ('{"id": "q3", "question": "x", "choices": ["a", " a"], "answer": 0}', "Q.jsonl line 3", "appears twice"),
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answr": 0}', "Q.jsonl line 3",
     "field 'answr': no such field; did you mean 'answer'?"),
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answer": 0, "support": ["d99"]}', "Q.jsonl line 3",
     "support 'd99' is not a document id of D.jsonl"),
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answer": 0, "split": "a/b"}', "Q.jsonl line 3",
     "field 'split' must be a name"),
    ('{"id": "q1", "question": "x", "choices": ["a", "b"], "answer": 0}', "Q.jsonl line 3",
     "question id 'q1' already used on line 1"),
    ('{"id": "q3", "question": "x", "choices": ["a", "b"], "answer": 0', "Q.jsonl line 3", "invalid JSON"),
    ('["q3", "x"]', "Q.jsonl line 3", "expected a JSON object, got list"),
])
def test_a_malformed_question_row_is_one_line_and_writes_nothing(tmp_path, files, capsys, bad, where, msg):
    d, _ = files
    q = write_jsonl(tmp_path / "Q.jsonl", QUESTIONS[:2] + [bad] + QUESTIONS[3:])
    rc, o, err = run(capsys, *import_args(d, q, tmp_path / "out"))
    assert rc == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"genmodes: error: {where}: ") and msg in lines[0], err
    assert not (tmp_path / "out").exists()


def test_every_bad_row_gets_its_own_line_and_an_existing_dataset_is_kept(tmp_path, files, capsys):
    d, q = files
    out = tmp_path / "mine"
    assert run(capsys, *import_args(d, q, out, "--recall", "recall"))[0] == 0
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    bad_docs = write_jsonl(tmp_path / "D2.jsonl", DOCUMENTS[:1] + [{"id": "d2", "text": "  "}] + DOCUMENTS[2:]
                           + [{"id": "d1", "text": "again"}])
    rc, _, err = run(capsys, *import_args(bad_docs, q, out, "--recall", "recall"))
    assert rc == 2
    assert err.strip().splitlines() == [
        "genmodes: error: D2.jsonl line 2: field 'text' must be a non-empty string, got \" \"",
        "genmodes: error: D2.jsonl line 6: document id 'd1' already used on line 1",
        "genmodes: error: Q.jsonl line 2: support 'd2' is not a document id of D2.jsonl",
        "genmodes: error: Q.jsonl line 7: support 'd2' is not a document id of D2.jsonl"]
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before


def test_an_audit_failure_writes_nothing_until_the_split_is_marked_recall(tmp_path, files, capsys):
    d, q = files
    out = tmp_path / "mine"
    rc, o, err = run(capsys, *import_args(d, q, out))
    assert rc == 2 and "4 violation(s)" in o
    line = err.strip()
    assert "\n" not in line and "fails its audit (recall q2: answer text" in line and "--recall SPLIT" in line
    assert not out.exists()
    rc, _, err = run(capsys, *import_args(d, q, out, "--recall", "recal"))
    assert rc == 2 and "--recall 'recal': no such split; did you mean 'recall'?" in err
    assert run(capsys, *import_args(d, q, out, "--no-audit"))[0] == 0 and load_dataset(out).meta["recall_splits"] == []


def test_template_and_whitespace(tmp_path, capsys):
    d = write_jsonl(tmp_path / "D.jsonl", [{"id": "a", "text": "Paris is the capital of France."}])
    q = write_jsonl(tmp_path / "Q.jsonl", [
        {"id": "1", "question": "What is the capital of France?", "choices": ["Paris", "Rome"], "answer": 0},
        {"id": "2", "question": "Name one", "choices": [",Paris", " Rome"], "answer": 1}])
    rc, _, err = run(capsys, *import_args(d, q, tmp_path / "out", "--template", "Question: {question}\\nAnswer: "))
    assert rc == 0, err
    one, two = load_dataset(tmp_path / "out").questions
    assert one.split == "test"
    assert one.context == "Question: What is the capital of France?\nAnswer:" and one.choices == [" Paris", " Rome"]
    assert two.choices == [" ,Paris", " Rome"]  # the trailing space moved to the choice; " Rome" kept as is
    rc, _, err = run(capsys, *import_args(d, q, tmp_path / "out2", "--template", "Q: ..."))
    assert rc == 2 and "no {question} placeholder" in err


@pytest.mark.parametrize("argv, msg", [
    (["--documents", "{tmp}/none.jsonl"], "JSON Lines file not found"),
    (["--out", "{tmp}/notes"], "is not a genmodes dataset"),
])
def test_file_level_errors(tmp_path, files, capsys, argv, msg):
    d, q = files
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("keep")
    args = {"--documents": str(d), "--questions": str(q), "--out": str(tmp_path / "out")}
    args.update(dict(zip(argv[::2], [a.format(tmp=tmp_path) for a in argv[1::2]])))
    rc, _, err = run(capsys, "data", "import", *[x for kv in args.items() for x in kv])
    assert rc == 2 and len(err.strip().splitlines()) == 1 and msg in err
    assert (tmp_path / "notes" / "keep.txt").read_text() == "keep" and not (tmp_path / "out").exists()


def test_import_berglund_takes_a_copy_of_the_public_repository(tmp_path, capsys):
    inner = tmp_path / "reversal_curse" / "data" / "reverse_experiments" / "june_version_7921032488"
    shutil.copytree(FIXTURE, inner)
    rc, o, err = run(capsys, "data", "import-berglund", tmp_path / "reversal_curse", "--out", tmp_path / "a")
    assert rc == 0, err
    rc, _, _ = run(capsys, "data", "import-berglund", inner, "--out", tmp_path / "b")
    assert rc == 0
    assert (tmp_path / "a" / "questions.jsonl").read_bytes() == (tmp_path / "b" / "questions.jsonl").read_bytes()


def test_import_berglund_hub_id_offline_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # nothing cached
    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    rc, _, err = run(capsys, "data", "import-berglund", "lberglund/reversal_curse", "--out", tmp_path / "x")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert "Hugging Face Hub dataset 'lberglund/reversal_curse' could not be downloaded" in err
    assert not (tmp_path / "x").exists()


def test_the_readme_walkthrough_runs_as_written(tmp_path, capsys, monkeypatch):
    """README's section on your own data (the one with the example files): its two files, its commands
    and its config, on tiny-random."""
    import re
    import shlex

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text(encoding="utf-8")
    (section,) = [s for s in readme.split("\n## ") if "genmodes data import --documents" in s and "```json" in s]
    blocks = re.findall(r"```(\w+)\n(.*?)```", section, re.S)
    docs, questions = [text for lang, text in blocks if lang == "json"]
    (commands,) = [text for lang, text in blocks if lang == "sh"]
    (config,) = [text for lang, text in blocks if lang == "yaml"]
    monkeypatch.chdir(tmp_path)
    Path("D.jsonl").write_text(docs)
    Path("Q.jsonl").write_text(questions)
    Path("mine.yaml").write_text(config)
    for line in commands.strip().splitlines():
        argv = shlex.split(line)
        assert argv[0] == "genmodes"
        if argv[1] == "run":  # the bundled model is the suite's slow path: the same study on tiny-random
            argv += ["--model", "tiny-random", "--no-report"]
        rc, out, err = run(capsys, *argv[1:])
        assert rc == 0, err
    summary = Path("runs/mine/summary.csv").read_text().splitlines()
    assert len(summary) == 1 + 4 * 2  # four conditions x two splits
    assert load_dataset("data/mine").meta["recall_splits"] == ["recall"]
