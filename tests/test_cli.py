import json
import subprocess
import sys

import pytest

from genmodes.cli import main


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "genmodes.cli", *args], capture_output=True, text=True)


@pytest.mark.slow
def test_score_json_bundled_model():
    r = run_cli("score", "--model", "smollm2-135m", "--context", "The capital of France is",
                "--choice", " Paris", "--choice", " London", "--json")
    assert r.returncode == 0, r.stderr
    rows = json.loads(r.stdout)
    assert [row["choice"] for row in rows] == [" Paris", " London"]
    assert set(rows[0]) == {"choice", "logprob", "n_tokens", "is_greedy"}
    assert rows[0]["logprob"] > rows[1]["logprob"] and rows[0]["is_greedy"] is True


def test_score_table_marks_chosen(capsys):
    assert main(["score", "--model", "tiny-random", "--context", "ab", "--choice", " c", "--choice", " dd"]) == 0
    out = capsys.readouterr().out
    assert out.count("->") == 1 and "' c'" in out and "' dd'" in out


def test_models_lists_specs(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out
    assert "smollm2-135m" in out and "tiny-random" in out


def test_bad_model_is_one_line_nonzero():
    r = run_cli("score", "--model", "no/such-model", "--context", "x", "--choice", " a")
    assert r.returncode == 2
    lines = [l for l in r.stderr.splitlines() if l.strip()]
    assert lines[-1].startswith("genmodes: error: unknown model") and "Traceback" not in r.stderr


def test_empty_choice_is_one_line_nonzero():
    r = run_cli("score", "--model", "tiny-random", "--context", "x", "--choice", "")
    assert r.returncode == 2 and "empty choice" in r.stderr and "Traceback" not in r.stderr
