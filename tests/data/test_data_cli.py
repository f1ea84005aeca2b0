"""``genmodes data ...`` end to end: outputs, exit codes, one-line errors, nothing half-written."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from genmodes.cli import main

FIXTURE = Path(__file__).parent.parent / "fixtures" / "berglund_small"
SMALL = ["--set", "n_facts=6", "--set", "articles_per_fact=3"]


def run(capsys, *argv):
    rc = main(list(argv))
    out, err = capsys.readouterr()
    return rc, out, err


def test_make_show_audit(tmp_path, capsys):
    out = tmp_path / "sr"
    rc, o, _ = run(capsys, "data", "make", "simple_reversals", "--out", str(out), "--seed", "2", *SMALL)
    assert rc == 0 and "18 documents" in o and (out / "meta.json").exists()
    rc, o, _ = run(capsys, "data", "show", str(out))
    assert rc == 0 and "reversal" in o and "0.500" in o and "*" in o
    rc, o, _ = run(capsys, "data", "audit", str(out))
    assert rc == 0 and "audit passed" in o


def test_audit_exits_1_and_lists_violations(tmp_path, capsys):
    out = tmp_path / "sr"
    run(capsys, "data", "make", "simple_reversals", "--out", str(out), *SMALL)
    qs = [json.loads(x) for x in (out / "questions.jsonl").read_text().splitlines()]
    rev = next(q for q in qs if q["split"] == "reversal")
    with open(out / "documents.jsonl", "a") as f:
        f.write(json.dumps({"id": "leak", "text": rev["context"] + rev["choices"][rev["answer"]]}) + "\n")
    meta = json.loads((out / "meta.json").read_text())
    meta.pop("content_hash")
    (out / "meta.json").write_text(json.dumps(meta))
    rc, o, _ = run(capsys, "data", "audit", str(out))
    assert rc == 1 and "appears in document leak" in o


@pytest.mark.parametrize("argv, msg", [
    (["data", "make", "nosuch", "--out", "{tmp}/x"], "unknown dataset family 'nosuch'"),
    (["data", "make", "simple_reversals", "--out", "{tmp}/x", "--set", "n_facts=lots"], "bad setting 'n_facts'"),
    (["data", "make", "simple_reversals", "--out", "{tmp}/x", "--set", "colour=red"], "bad setting 'colour'"),
    (["data", "make", "simple_reversals", "--out", "{tmp}/x", "--set", "n_facts"], "--set expects key=value"),
    (["data", "make", "simple_reversals", "--out", "{tmp}/notes"], "is not a genmodes dataset"),
    (["data", "audit", "{tmp}/nothing"], "no such dataset folder"),
    (["data", "show", "{tmp}/notes"], "missing meta.json"),
    (["data", "import-berglund", "{tmp}/nothing", "--out", "{tmp}/x"], "no such folder"),
])
def test_user_errors_are_one_line_exit_2(tmp_path, capsys, argv, msg):
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("keep")
    rc, o, err = run(capsys, *[a.format(tmp=tmp_path) for a in argv])
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("genmodes: error: ") and msg in err, err
    assert not (tmp_path / "x").exists()
    assert sorted(os.listdir(tmp_path)) == ["notes"] and os.listdir(tmp_path / "notes") == ["a.txt"]


def test_corrupt_file_names_file_and_line(tmp_path, capsys):
    out = tmp_path / "sr"
    run(capsys, "data", "make", "simple_reversals", "--out", str(out), *SMALL)
    lines = (out / "questions.jsonl").read_text().splitlines()
    q = json.loads(lines[6])
    q["answer"] = 5
    lines[6] = json.dumps(q)
    (out / "questions.jsonl").write_text("\n".join(lines) + "\n")
    rc, _, err = run(capsys, "data", "audit", str(out))
    assert rc == 2 and err == "genmodes: error: questions.jsonl line 7: answer 5 out of range for 2 choices\n"


def test_import_berglund_cli(tmp_path, capsys):
    rc, o, _ = run(capsys, "data", "import-berglund", str(FIXTURE), "--out", str(tmp_path / "bg"))
    assert rc == 0 and "33 documents" in o
    rc, o, _ = run(capsys, "data", "audit", str(tmp_path / "bg"))
    assert rc == 0


def test_console_script_exit_code(tmp_path):
    exe = Path(sys.executable).parent / "genmodes"
    r = subprocess.run([str(exe), "data", "audit", str(tmp_path / "none")], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().startswith("genmodes: error:") and r.stderr.count("\n") == 1
