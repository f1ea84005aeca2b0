"""``genmodes data export RUN --condition NAME --to inspect DEST``: an inspect_ai log that inspect_ai's
own reader reads back, with one sample per scored question holding what genmodes scored."""

import json
import subprocess
import sys

import pytest

pytest.importorskip("inspect_ai")

from inspect_ai.log import list_eval_logs, read_eval_log, read_eval_log_sample_summaries  # noqa: E402

from genmodes.cli import main  # noqa: E402

CONFIG = {
    "name": "inspected", "model": "tiny-random", "seeds": [3],
    "datasets": [{"family": "simple_reversals", "settings": {"n_facts": 6, "articles_per_fact": 2},
                  "max_per_split": 4}],
    "conditions": [{"name": "pretrained"},
                   {"name": "finetune", "settings": {"steps": 2, "batch_size": 2, "seq_len": 64}},
                   {"name": "in_context"},
                   {"name": "rag", "kind": "retrieval", "settings": {"method": "oracle", "k": 1}},
                   {"name": "baseline_cooccurrence", "kind": "baseline", "settings": {"method": "cooccurrence"}}],
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    import torch

    from genmodes.experiments.config import parse_config
    from genmodes.experiments.runner import Runner

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("inspect") / "run"
    summary = Runner(parse_config(CONFIG), out, progress=False, log=lambda m: None).run()
    rows = [json.loads(x) for x in (out / "results.jsonl").read_text().splitlines()]
    return out, rows, summary


@pytest.mark.parametrize("condition", [c["name"] for c in CONFIG["conditions"]])
def test_each_condition_reads_back_with_inspect_ai(finished, tmp_path, capsys, condition):
    run, rows, summary = finished
    assert main(["data", "export", str(run), "--condition", condition, "--to", "inspect", str(tmp_path / "logs")]) == 0
    out = capsys.readouterr().out
    path = tmp_path / "logs" / f"genmodes_simple_reversals__{condition}__s3.eval"
    assert f"inspect log: {path}" in out and f"inspect view --log-dir {tmp_path / 'logs'}" in out
    log = read_eval_log(str(path))
    mine = {r["question_id"]: r for r in rows if r["condition"] == condition}
    assert log.status == "success" and log.eval.task == f"simple_reversals/{condition}"
    assert log.eval.metadata["cell"] == f"simple_reversals__{condition}__s3" and log.eval.metadata["seed"] == 3
    assert sorted(s.id for s in log.samples) == sorted(mine)  # one sample per scored question
    for s in log.samples:
        r = mine[s.id]
        letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        assert s.target == letters[r["answer"]] and s.choices == [c["choice"] for c in r["scores"]]
        score = s.scores["genmodes_choice"]
        assert score.value == ("C" if r["correct"] else "I") and score.answer == letters[r["chosen"]]
        assert s.output.completion == f"ANSWER: {letters[r['chosen']]}"
        assert score.metadata["logprobs"] == [c["logprob"] for c in r["scores"]]
        assert s.metadata["split"] == r["split"] and s.metadata["subtype"] == r["subtype"]
        assert s.metadata["chance"] == r["chance"]
        assert s.input.endswith(r["context"])  # the scored text ends with the question itself
        if condition == "rag":
            assert s.input.startswith("Use the following documents to answer.")
            assert s.metadata["retrieved"] == r["retrieved"]
        if condition == "in_context":
            assert s.input.startswith("Use the following documents to answer.") and len(s.input) > 500
        if condition in ("pretrained", "finetune", "baseline_cooccurrence"):
            assert s.input == r["context"]
    metrics = log.results.scores[0].metrics
    per_split = {r["split"]: r for r in summary if r["condition"] == condition}
    assert metrics["accuracy"].value == pytest.approx(sum(r["correct"] for r in mine.values()) / len(mine))
    for split, r in per_split.items():
        assert metrics[split].value == pytest.approx(r["accuracy"]) and metrics[split].group == "accuracy"
    assert log.results.total_samples == len(mine)


def test_the_log_is_listed_and_summarised_as_inspect_view_does(finished, tmp_path, capsys):
    run, rows, _ = finished
    dest = tmp_path / "logs" / "one.eval"
    assert main(["data", "export", str(run), "--condition", "rag", "--to", "inspect", str(dest)]) == 0
    (info,) = list_eval_logs(str(tmp_path / "logs"))
    assert info.name.endswith("one.eval")
    summaries = read_eval_log_sample_summaries(str(dest))
    assert len(summaries) == sum(r["condition"] == "rag" for r in rows)
    # inspect's own command line builds the viewer over the folder (what `inspect view` serves)
    r = subprocess.run([sys.executable, "-m", "inspect_ai", "view", "bundle", "--log-dir", str(tmp_path / "logs"),
                        "--output-dir", str(tmp_path / "bundle")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "bundle" / "logs" / "one.eval").is_file() and (tmp_path / "bundle" / "index.html").is_file()


def test_json_format_when_asked(finished, tmp_path, capsys):
    run, _, _ = finished
    dest = tmp_path / "log.json"
    assert main(["data", "export", str(run), "--condition", "pretrained", "--to", "inspect", str(dest)]) == 0
    assert json.loads(dest.read_text())["eval"]["task"] == "simple_reversals/pretrained"
    assert read_eval_log(str(dest)).samples


@pytest.mark.parametrize("argv, msg", [
    (["--to", "inspect", "{tmp}/logs"], "--to inspect exports a condition of a finished run: add --condition NAME"),
    (["--condition", "nope", "--to", "inspect", "{tmp}/logs"], "no condition 'nope'"),
    (["--condition", "rag", "--seed", "0", "--to", "inspect", "{tmp}/logs"], "no seed 0"),
    (["--condition", "rag", "--to", "inspect", "{tmp}/afile"], "exists and is not a folder"),
])
def test_bad_export_arguments_are_one_line_and_write_nothing(finished, tmp_path, capsys, argv, msg):
    run, _, _ = finished
    (tmp_path / "afile").write_text("keep")
    rc = main(["data", "export", str(run), *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and msg in err, err
    assert not (tmp_path / "logs").exists() and (tmp_path / "afile").read_text() == "keep"
