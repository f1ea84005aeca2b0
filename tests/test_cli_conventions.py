"""Command-line conventions: ``python -m genmodes``, help when a command is missing, ``--json`` where
a script reads the output, and the Hub card quoting the hash ``data show`` prints."""

import json
import os
import subprocess
import sys

import pytest

from genmodes.cli import main


def module(*args):
    return subprocess.run([sys.executable, "-m", "genmodes", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_python_dash_m_genmodes_is_the_cli():
    from genmodes import __version__

    r = module("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"genmodes {__version__}"
    r = module("data", "show", "/nonexistent/folder")
    assert r.returncode == 2 and r.stderr.strip() == "genmodes: error: /nonexistent/folder: no such dataset folder"


def test_genmodes_alone_prints_its_help(capsys):
    assert main([]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: genmodes") and "run" in out and "settings" in out and err == ""
    assert main(["data"]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith("usage: genmodes data") and "import" in out and "export" in out


def test_a_usage_error_names_the_command_once(capsys):
    assert main(["data", "show"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == ("genmodes: error: data show: the following arguments are required: dir "
                   "(see genmodes data show --help)")
    assert main(["nosuch"]) == 2
    assert capsys.readouterr().err.startswith("genmodes: error: argument COMMAND: invalid choice: 'nosuch'")


def test_models_json(capsys):
    assert main(["models", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    tiny = next(m for m in out["models"] if m["spec"] == "tiny-random")
    assert tiny["available"] is True and tiny["status"].startswith("available")
    assert {m["spec"] for m in out["models"]} >= {"smollm2-135m", "gemma3-270m", "tiny-random"}
    assert isinstance(out["converted"], list)


@pytest.fixture
def dataset(tmp_path, capsys):
    out = tmp_path / "sr"
    assert main(["data", "make", "simple_reversals", "--out", str(out), "--set", "n_facts=6",
                 "--set", "articles_per_fact=3"]) == 0
    capsys.readouterr()
    return out


def test_data_show_json_and_its_hash_is_the_one_the_hub_card_quotes(dataset, tmp_path, capsys):
    assert main(["data", "show", str(dataset), "--json", "--samples", "2"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["family"] == "simple_reversals" and shown["questions"] == 12 and shown["documents"] == 18
    assert [(s["split"], s["n"], s["kind"]) for s in shown["splits"]] == [("forward", 6, "recall"),
                                                                        ("reversal", 6, "held-out")]
    assert len(shown["documents_sample"]) == 2 and len(shown["questions_sample"]["reversal"]) == 2
    digest = json.loads((dataset / "meta.json").read_text())["content_hash"]
    assert shown["content_hash"] == digest
    assert main(["data", "show", str(dataset)]) == 0
    assert f"content hash: {digest}" in capsys.readouterr().out
    pytest.importorskip("datasets")
    assert main(["data", "export", str(dataset), "--to", "hf", str(tmp_path / "hub")]) == 0
    card = (tmp_path / "hub" / "README.md").read_text()
    assert "as\n`genmodes data show` prints it): `" + digest + "`" in card


def test_data_audit_json_and_its_exit_status(dataset, capsys):
    assert main(["data", "audit", str(dataset), "--json"]) == 0
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is True and rep["violations"] == []
    assert {b["method"] for b in rep["baselines"]} >= {"position", "cooccurrence", "bigram"}
    assert all(isinstance(b["offence"], bool) for b in rep["baselines"])
    # a leak: the audit fails, still one JSON document, exit 1
    qs = [json.loads(x) for x in (dataset / "questions.jsonl").read_text().splitlines()]
    rev = next(q for q in qs if q["split"] == "reversal")
    with open(dataset / "documents.jsonl", "a") as f:
        f.write(json.dumps({"id": "leak", "text": rev["context"] + rev["choices"][rev["answer"]]}) + "\n")
    meta = json.loads((dataset / "meta.json").read_text())
    meta.pop("content_hash")
    (dataset / "meta.json").write_text(json.dumps(meta))
    assert main(["data", "audit", str(dataset), "--json"]) == 1
    rep = json.loads(capsys.readouterr().out)
    assert rep["ok"] is False and any("appears in document leak" in v for v in rep["violations"])
