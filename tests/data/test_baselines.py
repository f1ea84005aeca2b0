"""Shortcut baselines: each predictor does what it says on a built case, the audit fails a split a
shortcut answers (and not one it doesn't), reworded leaks are caught, and the ``baseline`` condition
puts the rows in a run's summary."""

import csv
import json

import pytest
import yaml

from genmodes.data.audit import audit_dataset
from genmodes.data.baselines import Baselines, credit, evaluate, offences
from genmodes.data.families import FAMILY_MODULES, get_family, make_dataset
from genmodes.data.types import Dataset, Document, Fact, Question


def _assoc(n: int = 40, answer_cooccurs: bool = True) -> Dataset:
    """Each question names a thing; the answer is (or is not) the word trained beside it."""
    docs, qs = [], []
    for i in range(n):
        docs.append(Document(f"d{i}", f"The zorp{i} lives near the glim{i}."))
    for i in range(n):
        right = f"glim{i}" if answer_cooccurs else f"glim{(i + 1) % n}"
        wrong = [f"glim{(i + k) % n}" for k in (2, 3, 4)]
        opts = [right, *wrong]
        k = i % 4
        opts.insert(k, opts.pop(0))
        qs.append(Question(f"q{i}", "held", f"s{i % 3}", f"Where does zorp{i} live? Near the",
                           [" " + o + "." for o in opts], k))
    return Dataset("test", {}, 0, docs, qs, [], meta={"recall_splits": []})


def test_cooccurrence_finds_the_trained_neighbour_and_the_audit_fails_it():
    ds = _assoc()
    rows = {r.method: r for r in evaluate(ds)}
    assert rows["cooccurrence"].accuracy == 1.0
    assert rows["position"].accuracy <= 0.25 and abs(rows["longest"].accuracy - 0.25) < 0.1
    lines = offences(evaluate(ds))
    assert lines and lines[0].startswith("held: the cooccurrence baseline gets 100.0%")
    # exempt by design (as a reversal split is): reported, not failed
    ds.meta["shortcut_exempt"] = {"held": {"cooccurrence": "by design"}}
    assert not offences(evaluate(ds)) and audit_dataset(ds).ok
    # no option co-occurs with the question: a four-way tie, credited at chance exactly
    assert {r.method: r for r in evaluate(_assoc(answer_cooccurs=False))}["cooccurrence"].accuracy == 0.25


def test_neighbour_finds_the_word_written_beside_a_frequent_key():
    """A key in every document is no content word, so co-occurrence cannot use it; the neighbour
    baseline counts what stands beside the question's last word however common it is (a codebook's
    code word written next to its symbol in definitions, the symbol asked last)."""
    syms = ["alpha", "beta", "gamma", "delta"]
    docs = [Document(f"d{i}", f"kod{i} = {syms[i % 4]} . then {' '.join(syms)}") for i in range(40)]
    qs = []
    for i in range(40):
        wrong = [f"kod{(i + k) % 40}" for k in (1, 2, 3)]  # other symbols' code words
        opts = [f"kod{i}", *wrong]
        k = i % 4
        opts.insert(k, opts.pop(0))
        qs.append(Question(f"q{i}", "held", "s", f"encode with it : {syms[i % 4]} ->", [" " + o for o in opts], k))
    ds = Dataset("test", {}, 0, docs, qs, [], meta={"recall_splits": []})
    rows = {r.method: r for r in evaluate(ds)}
    assert rows["neighbour"].accuracy == 1.0 and rows["cooccurrence"].accuracy == 0.25
    assert any(line.startswith("held: the neighbour baseline gets 100.0%") for line in offences(evaluate(ds)))
    # nothing beside the key: a tie, chance exactly
    far = Dataset("test", {}, 0, [Document(f"d{i}", f"kod{i} is here . then {' '.join(syms)}") for i in range(40)], qs,
                  [], meta={"recall_splits": []})
    assert {r.method: r for r in evaluate(far)}["neighbour"].accuracy == 0.25


def test_ties_give_chance_credit_and_priors_are_leave_one_out():
    assert credit([1.0, 1.0, 0.0, 1.0], 0) == pytest.approx(1 / 3)
    assert credit([1.0, 1.0, 0.0, 1.0], 2) == 0.0
    ds = _assoc()
    b = Baselines(ds)
    q = ds.questions[0]
    # answers cycle over positions 0..3: leaving q out makes its own position the rarest
    assert b.score("position", q)[q.answer] == min(b.score("position", q))
    assert len(b.score("bigram", q)) == len(q.choices)
    with pytest.raises(ValueError, match="unknown baseline"):
        b.score("oracle", q)


def test_small_noise_is_not_an_offence():
    """5 of 12 right (42%, chance 25%) is over the margin but not significant after correction."""
    from genmodes.data.baselines import BaselineRow, _binom_sf

    p = _binom_sf(5, 12, 0.25)
    row = BaselineRow("s", "bigram", 12, 5 / 12, 0.25, True, p_value=p, alpha=0.05 / 9)
    assert 0.05 / 9 < p < 0.5 and not row.offence
    big = BaselineRow("s", "bigram", 300, 0.42, 0.25, True, p_value=_binom_sf(126, 300, 0.25), alpha=0.05 / 9)
    assert big.offence


# --------------------------------------------------------------------------------- reworded leaks

REWORDED = {
    # family -> a function writing the held-out answer fact in a wording the exact-text check misses
    "simple_reversals": lambda f: f"Everyone agrees: {f.subject} are {f.relation} than {f.object}, as ever.",
    "simple_syllogisms": lambda f: (f"Some {f.object} are {f.subject}." if f.relation == "some" else
                                    f"No {f.object} are {f.subject}." if f.relation == "no" else
                                    f"Some {f.subject} are not {f.object}."),
    "reversal_curse": lambda f: f"Known for being {f.subject}, the person we mean is {f.object}.",
}


@pytest.mark.parametrize("name", sorted(REWORDED))
def test_reworded_leak_is_named(name):
    ds = make_dataset(name, seed=0)
    recall = set(ds.meta["recall_splits"])
    q = next(q for q in ds.questions if q.split not in recall and q.choice_facts)
    fact = q.choice_facts[q.answer]
    text = REWORDED[name](fact)
    assert fact in get_family(name).parse_statements(text), text
    assert audit_dataset(ds, baselines=False).ok
    ds.documents.append(Document("leak", text))  # no declared facts: only the parser can see it
    v = audit_dataset(ds, baselines=False).violations
    assert any("stated (reworded) by document leak" in x and q.id in x for x in v), v


@pytest.mark.parametrize("name", list(FAMILY_MODULES))
def test_every_family_parser_reads_no_false_leak(name):
    """The reworded-leak check on a clean family at default size finds nothing (no false alarms)."""
    ds = make_dataset(name, seed=0)
    assert not [v for v in audit_dataset(ds, baselines=False).violations if "reworded" in v]


def test_separate_vocabularies_per_family():
    ents = {n: set(make_dataset(n, seed=0).meta.get("entities") or ()) for n in
            ("simple_reversals", "simple_syllogisms", "reversal_curse")}
    assert all(ents.values())
    names = list(ents)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert not ents[a] & ents[b], (a, b)


# --------------------------------------------------------------------------------- baseline condition

def test_baseline_condition_rows_in_summary(tmp_path):
    from genmodes.cli import main

    cfg = {"name": "b", "model": "tiny-random", "seeds": [0],
           "datasets": [{"name": "rc", "family": "reversal_curse",
                         "settings": {"n_people_a": 8, "n_people_d": 0, "n_people_b": 2, "n_paraphrases": 2,
                                      "n_test_paraphrases": 2}}],
           "conditions": [{"name": "cooccurrence", "kind": "baseline", "settings": {"method": "cooccurrence"}},
                          {"name": "bigram", "kind": "baseline", "settings": {"method": "bigram"}}]}
    p = tmp_path / "c.yaml"
    p.write_text(yaml.safe_dump(cfg))
    out = tmp_path / "run"
    assert main(["run", str(p), "--out", str(out), "--no-report"]) == 0
    rows = [json.loads(line) for line in (out / "results.jsonl").read_text().splitlines()]
    with open(out / "summary.csv") as f:
        summary = {(r["split"], r["condition"]): float(r["accuracy"]) for r in csv.DictReader(f)}
    # what an associative learner gets: every reversal answer co-occurs with its description
    assert summary[("reversal", "cooccurrence")] == 1.0
    ds = make_dataset("reversal_curse", overrides=cfg["datasets"][0]["settings"])
    expect = {r.split: r.accuracy for r in evaluate(ds, ["bigram"])}
    # ties broken at random: the realised accuracy is near the expected credit
    assert abs(summary[("reversal", "bigram")] - expect["reversal"]) <= 0.35
    assert all(r["condition_kind"] == "baseline" and r["context_tokens"] == 0 for r in rows)
    bad = tmp_path / "bad.yaml"
    cfg["conditions"] = [{"name": "x", "kind": "baseline", "settings": {"method": "oracle"}}]
    bad.write_text(yaml.safe_dump(cfg))
    assert main(["run", str(bad), "--out", str(tmp_path / "run2"), "--no-report"]) == 2
