"""What a run records (issue 10, item 1): the manifest (config, data and weights hashes, versions, git
commit), cell keys, and reruns whose data changed recomputing exactly the changed cells."""

from __future__ import annotations

import csv
import hashlib
import json
import subprocess
from pathlib import Path

import pytest
import yaml

from genmodes.cli import main
from genmodes.experiments import provenance

TINY_RC = {"n_people_a": 4, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 3, "n_test_paraphrases": 2}


def write_config(tmp_path: Path, **over) -> Path:
    cfg = {"name": "t", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rc", "family": "reversal_curse", "settings": TINY_RC}],
           "conditions": [{"name": "pretrained"}, {"name": "in_context"}]}
    cfg.update(over)
    p = tmp_path / "cfg.yaml"
    p.write_text(yaml.safe_dump(cfg))
    return p


def make_reversals(out: Path, n_facts: int) -> None:
    assert main(["data", "make", "simple_reversals", "--out", str(out), "--set", f"n_facts={n_facts}",
                 "--set", "articles_per_fact=2", "--no-audit"]) == 0


def rows_of(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "results.jsonl").read_text().splitlines()]


def test_a_regenerated_path_dataset_recomputes_exactly_its_cells(tmp_path, capsys):
    """The issue's case: `data make` 40 questions, run, regenerate 10 at the same path, rerun: the new
    10 are scored (not the old 40 reused), the other dataset's cells are not recomputed."""
    data = tmp_path / "sr"
    make_reversals(data, 20)
    cfg = write_config(tmp_path, datasets=[{"name": "sr", "path": str(data)},
                                           {"name": "rc", "family": "reversal_curse", "settings": TINY_RC}])
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    assert sum(r["dataset"] == "sr" for r in rows_of(run)) == 2 * 40
    kept = {c: (run / "cells" / c / "cell.json").stat().st_mtime_ns for c in ("rc__pretrained__s0", "rc__in_context__s0")}
    old_hash = json.loads((run / "manifest.json").read_text())["datasets"]["sr"]["content_hash"]
    capsys.readouterr()

    make_reversals(data, 5)
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    err = capsys.readouterr().err
    new_hash = json.loads((run / "manifest.json").read_text())["datasets"]["sr"]["content_hash"]
    said = [line for line in err.splitlines() if line.startswith("recomputing ")]
    assert said == [f"recomputing sr__{c}__s0: changed since it was computed: dataset content "
                    f"{old_hash[:12]} -> {new_hash[:12]}" for c in ("pretrained", "in_context")]
    assert "resuming: 2 of 4 cells already finished" in err
    assert sum(r["dataset"] == "sr" for r in rows_of(run)) == 2 * 10
    assert {c: (run / "cells" / c / "cell.json").stat().st_mtime_ns for c in kept} == kept
    # the rerun holds exactly what a fresh run on the new data gives
    fresh = tmp_path / "fresh"
    assert main(["run", str(cfg), "--out", str(fresh), "--no-report"]) == 0
    assert (run / "results.jsonl").read_bytes() == (fresh / "results.jsonl").read_bytes()
    assert (run / "summary.csv").read_bytes() == (fresh / "summary.csv").read_bytes()
    with (run / "summary.csv").open() as f:
        assert [r["n"] for r in csv.DictReader(f) if r["dataset"] == "sr"] == ["5"] * 4


def test_a_cell_record_without_a_key_is_recomputed_to_the_same_results(tmp_path, capsys):
    cfg = write_config(tmp_path, conditions=[{"name": "pretrained"}])
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    before = (run / "results.jsonl").read_bytes()
    done = run / "cells" / "rc__pretrained__s0" / "cell.json"
    record = json.loads(done.read_text())
    del record["key"]  # a record an older genmodes wrote
    done.write_text(json.dumps(record))
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    err = capsys.readouterr().err
    assert "recomputing rc__pretrained__s0: its record is unreadable or predates cell keys" in err
    assert "key" in json.loads(done.read_text()) and (run / "results.jsonl").read_bytes() == before


def test_a_changed_config_stops_with_one_line_naming_the_change(tmp_path, capsys):
    cfg = write_config(tmp_path, conditions=[{"name": "pretrained"}])
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    before = sorted(p.relative_to(run) for p in run.rglob("*"))
    capsys.readouterr()
    cfg2 = write_config(tmp_path, conditions=[{"name": "pretrained"}], seeds=[5])
    assert main(["run", str(cfg2), "--out", str(run), "--no-report"]) == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("genmodes: error:") and "different config (changed: seeds;" in line
    assert "start fresh" in line
    assert sorted(p.relative_to(run) for p in run.rglob("*")) == before  # nothing written


def test_manifest_records_config_data_weights_versions_and_commit(tmp_path):
    import torch

    from genmodes.experiments.config import load_config
    from genmodes.experiments.grid import build_dataset
    from genmodes.models import tiny_random

    cfg = write_config(tmp_path)
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    m = json.loads((run / "manifest.json").read_text())
    assert m["schema_version"] == 2 and m["name"] == "t"
    assert m["config_hash"] == hashlib.sha256((run / "config.yaml").read_bytes()).hexdigest()
    ds = build_dataset(load_config(cfg).datasets[0])
    assert m["datasets"] == {"rc": {"content_hash": ds.meta["content_hash"], "source": "family:reversal_curse",
                                    "questions": len(ds.questions)}}
    assert m["models"] == [{"spec": "tiny-random", "weights_hash": provenance.state_dict_hash(tiny_random(seed=0)[0]),
                            "weights_source": "state dict of tiny_random(seed=0)"}]
    assert m["versions"]["torch"] == torch.__version__
    src = Path(provenance.__file__).parent
    head = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True)
    assert m["git_commit"] == (head.stdout.strip() if head.returncode == 0 else None)
    # every cell records its key, and the parts it was hashed from
    cells = [json.loads(line) for line in (run / "cells.jsonl").read_text().splitlines()]
    assert {c["key_parts"]["model"]["weights_hash"] for c in cells} == {m["models"][0]["weights_hash"]}
    assert {c["key_parts"]["dataset"]["content_hash"] for c in cells} == {ds.meta["content_hash"]}
    assert len({c["key"] for c in cells}) == 2  # two conditions, two keys


def test_git_commit_is_none_outside_a_checkout_or_without_git(tmp_path, monkeypatch):
    assert provenance.git_commit(tmp_path) == (None, None)

    def no_git(*a, **k):
        raise FileNotFoundError("git")

    monkeypatch.setattr(provenance.subprocess, "run", no_git)
    assert provenance.git_commit() == (None, None)


def test_weight_file_hashes_are_cached_by_path_size_and_mtime(tmp_path):
    f, cache = tmp_path / "model.safetensors", tmp_path / "cache.json"
    f.write_bytes(b"weights")
    assert provenance._file_hash(f, cache) == hashlib.sha256(b"weights").hexdigest()
    # the second call reads the cache, not the file: a poisoned entry shows it
    entries = json.loads(cache.read_text())
    cache.write_text(json.dumps({k: "cached" for k in entries}))
    assert provenance._file_hash(f, cache) == "cached"
    f.write_bytes(b"other weights")  # another size: another entry
    assert provenance._file_hash(f, cache) == hashlib.sha256(b"other weights").hexdigest()


def test_weights_hash_of_a_model_folder_follows_its_weights(tmp_path):
    from genmodes.models import tiny_random

    hashes = []
    for seed in (0, 1):
        model, tok = tiny_random(seed=seed)
        folder = tmp_path / f"m{seed}"
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        w = provenance.weights_provenance(str(folder), cache=tmp_path / "cache")
        assert w.weights_source == str(folder)
        hashes.append(w.weights_hash)
    assert hashes[0] != hashes[1] and all(len(h) == 64 for h in hashes)
    assert provenance.weights_provenance("scratch").weights_hash is None


def test_records_refuse_unknown_fields():
    from pydantic import ValidationError

    from genmodes.experiments.records import ResultRow

    row = {"cell": "c", "model": "m", "dataset": "d", "family": "f", "split": "s", "subtype": "", "condition": "c",
           "condition_kind": "pretrained", "seed": 0, "question_id": "q", "answer": 0, "chance": 0.5, "scores": [],
           "chosen": 0, "chosen_norm": 0, "correct": True, "correct_norm": True, "context_tokens": 0, "context": ""}
    assert ResultRow.model_validate(row).details == {}
    with pytest.raises(ValidationError, match="thoughts"):
        ResultRow.model_validate({**row, "thoughts": "..."})  # a stage's extras go in `details`
    extra = ResultRow.model_validate({**row, "details": {"thoughts": "..."}, "model_stage": "finetune"})
    assert extra.details == {"thoughts": "..."} and extra.model_stage == "finetune"


def test_new_weights_in_a_model_folder_recompute_the_cells_that_use_the_model(tmp_path, capsys):
    from genmodes.models import tiny_random

    def save(seed):
        model, tok = tiny_random(seed=seed)
        model.save_pretrained(tmp_path / "model")
        tok.save_pretrained(tmp_path / "model")

    save(0)
    cfg = write_config(tmp_path, model=str(tmp_path / "model"),
                       conditions=[{"name": "pretrained"},
                                   {"name": "baseline_cooccurrence", "kind": "baseline",
                                    "settings": {"method": "cooccurrence"}}])
    run = tmp_path / "run"
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    old = json.loads((run / "manifest.json").read_text())["models"][0]["weights_hash"]
    before = {r["question_id"]: r["scores"] for r in rows_of(run) if r["condition"] == "pretrained"}
    save(1)
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(run), "--no-report"]) == 0
    new = json.loads((run / "manifest.json").read_text())["models"][0]["weights_hash"]
    said = [line for line in capsys.readouterr().err.splitlines() if line.startswith("recomputing ")]
    assert old != new and f"model weights {old[:12]} -> {new[:12]}" in said[0]
    assert len(said) == 1  # the baseline never loads the model: its cell stands
    after = {r["question_id"]: r["scores"] for r in rows_of(run) if r["condition"] == "pretrained"}
    assert after.keys() == before.keys() and after != before
