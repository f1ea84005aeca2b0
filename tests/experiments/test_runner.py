import csv
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.errors import ConfigError
from genmodes.experiments.config import load_config

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}


def write_config(tmp_path: Path, **over) -> Path:
    cfg = {
        "name": "t",
        "model": "tiny-random",
        "seeds": [0],
        "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
        "conditions": [{"name": "pretrained"}, {"name": "in_context"}],
    }
    cfg.update(over)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "genmodes.cli", *args], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1", **(env or {})})


def test_run_writes_results_cells_and_summary(tmp_path):
    cfg = write_config(tmp_path, seeds=[0, 1])
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-report"]) == 0
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    cells = [json.loads(l) for l in (out / "cells.jsonl").read_text().splitlines()]
    assert len(cells) == 4  # 1 dataset x 2 conditions x 2 seeds
    n_q = cells[0]["n_questions"]
    assert n_q > 0 and len(rows) == 4 * n_q
    assert len({(r["cell"], r["question_id"]) for r in rows}) == len(rows)  # no duplicates
    r = rows[0]
    for key in ("dataset", "split", "subtype", "condition", "seed", "scores", "chosen", "correct", "chance"):
        assert key in r
    assert r["correct"] == (r["chosen"] == r["answer"])
    with open(out / "summary.csv") as f:
        reader = csv.DictReader(f)
        assert reader.fieldnames == ["model", "dataset", "split", "condition", "n", "accuracy", "stderr", "chance", "ci_low",
                                    "ci_high", "gate"]
        summary = list(reader)
    assert {s["condition"] for s in summary} == {"pretrained", "in_context"}
    ic = next(c for c in cells if c["condition"] == "in_context")
    context = ic["stages"]["context"]
    assert context["documents_in_context"] > 0 and context["prefix_tokens"] > 0
    assert yaml.safe_load((out / "config.yaml").read_text())["name"] == "t"


def test_same_seed_same_summary_and_rerun_computes_nothing(tmp_path):
    cfg = write_config(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert main(["run", str(cfg), "--out", str(a), "--no-report"]) == 0
    assert main(["run", str(cfg), "--out", str(b), "--no-report"]) == 0
    assert (a / "summary.csv").read_bytes() == (b / "summary.csv").read_bytes()
    assert (a / "results.jsonl").read_bytes() == (b / "results.jsonl").read_bytes()
    mtime = (a / "cells" / "rc__pretrained__s0" / "cell.json").stat().st_mtime_ns
    assert main(["run", str(cfg), "--out", str(a), "--no-report"]) == 0
    assert (a / "cells" / "rc__pretrained__s0" / "cell.json").stat().st_mtime_ns == mtime


# The run killed (SIGKILL, no cleanup) at a fixed point: inside the third cell, after its results.jsonl
# is written and before its cell.json marks it done. Two cells are finished then, whatever the load.
_KILL_IN_THIRD_CELL = """
import os, signal, sys
from genmodes.experiments import runfolder

real, done = runfolder.atomic_write, []

def write(path, *args, **kwargs):
    if path.name == runfolder.CELL_DONE and path.parent.parent.name == "cells":
        done.append(path)
        if len(done) == 3:
            os.kill(os.getpid(), signal.SIGKILL)
    return real(path, *args, **kwargs)

runfolder.atomic_write = write
from genmodes.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_kill_and_resume_gives_the_same_results(tmp_path):
    cfg = write_config(tmp_path, seeds=[0, 1, 2])
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    assert main(["run", str(cfg), "--out", str(ref), "--no-report"]) == 0
    proc = subprocess.run([sys.executable, "-c", _KILL_IN_THIRD_CELL, "run", str(cfg), "--out", str(killed),
                           "--no-report"], capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-2000:]
    assert len(list(killed.glob("cells/*/cell.json"))) == 2
    assert len(list(killed.glob("cells/*/results.jsonl"))) == 3  # the third cell's rows, not marked done
    r = cli("run", str(cfg), "--out", str(killed), "--no-report")
    assert r.returncode == 0, r.stderr
    assert "resuming: 2 of 6 cells already finished" in r.stderr
    assert (killed / "results.jsonl").read_bytes() == (ref / "results.jsonl").read_bytes()
    assert (killed / "summary.csv").read_bytes() == (ref / "summary.csv").read_bytes()


def test_in_context_with_no_documents_equals_pretrained(tmp_path):
    cfg = write_config(tmp_path, conditions=[
        {"name": "pretrained"}, {"name": "in_context", "settings": {"kinds": ["no-such-kind"]}}])
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-report"]) == 0
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    pre = {r["question_id"]: r["scores"] for r in rows if r["condition"] == "pretrained"}
    ic = {r["question_id"]: r["scores"] for r in rows if r["condition"] == "in_context"}
    assert pre == ic


def test_splits_and_max_per_split(tmp_path):
    cfg = write_config(tmp_path, datasets=[{"name": "rc", "family": "reversal_curse", "settings": TINY_RC,
                                            "splits": ["reversal"], "max_per_split": 3}],
                       conditions=[{"name": "pretrained"}])
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-report"]) == 0
    rows = [json.loads(l) for l in (out / "results.jsonl").read_text().splitlines()]
    assert len(rows) == 3 and {r["split"] for r in rows} == {"reversal"}


@pytest.mark.parametrize("over,msg", [
    ({"conditions": [{"name": "finetunez"}]}, "unknown condition 'finetunez'"),
    ({"conditions": [{"name": "in_context", "settings": {"budget": 5}}]}, "conditions[0] (in_context): bad setting 'budget'"),
    ({"datasets": [{"family": "nope"}]}, "unknown dataset family 'nope'"),
    ({"datasets": [{"family": "reversal_curse", "settings": {"n_people_a": "many"}}]}, "n_people_a"),
    ({"datasets": [{"family": "reversal_curse", "path": "x"}]}, "exactly one of"),
    ({"seeds": []}, "seeds"),
    ({"colour": "blue"}, "colour"),
    ({"conditions": [{"name": "pretrained"}, {"name": "pretrained"}]}, "duplicate condition"),
])
def test_bad_config_gives_one_clear_line(tmp_path, capsys, over, msg):
    cfg = write_config(tmp_path, **over)
    with pytest.raises(ConfigError) as e:
        load_config(cfg)
    assert msg in str(e.value) and "\n" not in str(e.value)
    # in this process (a real process's exit status: tests/test_cli.py)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("genmodes: error:") and msg in err
    assert not (tmp_path / "run").exists()  # nothing written


def test_invalid_yaml_names_the_line(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("name: x\ndatasets: [\n")
    with pytest.raises(ConfigError, match="bad.yaml: line"):
        load_config(p)


def test_out_folder_of_another_config_is_refused(tmp_path):
    cfg = write_config(tmp_path, conditions=[{"name": "pretrained"}])
    out = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(out), "--no-report"]) == 0
    cfg2 = write_config(tmp_path, conditions=[{"name": "pretrained"}], seeds=[5])
    with pytest.raises(ConfigError, match="different config"):
        from genmodes.experiments.runner import Runner
        Runner(load_config(cfg2), out).init_folder()


def test_dry_run_prints_grid_and_writes_nothing(tmp_path, capsys):
    cfg = write_config(tmp_path)
    assert main(["run", str(cfg), "--out", str(tmp_path / "run"), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "rc__pretrained__s0" in out and "rc__in_context__s0" in out and "estimated total" in out
    assert not (tmp_path / "run").exists()


def test_every_shipped_config_validates():
    configs = sorted(Path(__file__).resolve().parents[2].joinpath("configs").glob("*.yaml"))
    assert configs, "configs/ should hold the study configs"
    for p in configs:
        first = p.read_text().splitlines()[0]
        assert first.startswith("#") and "genmodes run" in p.read_text().split("\n\n")[0], f"{p.name}: header comment with its command"
        try:
            load_config(p)
        except ConfigError as e:
            if "no such directory" in str(e):  # third-party data not present on this machine
                continue
            raise
