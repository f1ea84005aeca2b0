"""The ``vocabulary: {part, of}`` dataset setting [P3; issue 11, "Transfer by design"]: datasets of one
family declared with different parts share no entity (whatever their seeds), each part alone is a
valid dataset, the setting is part of the dataset's identity, and without it every family writes
exactly the bytes it wrote before the setting existed."""

import hashlib
import json
import re
import tempfile
from pathlib import Path

import pytest

from genmodes.cli import main
from genmodes.conditions.rl import entity_words
from genmodes.data.audit import audit_dataset
from genmodes.data.families import FAMILY_MODULES, make_config, make_dataset
from genmodes.data.io import DATA_FILES, dataset_files, dumps
from genmodes.data.nonsense import (CODAS, NUCLEI, ONSETS, SHORT_NUCLEI, SHORT_ONSETS, NonsenseWords, OutOfWords,
                                    VocabularyPart, is_valid_nonsense)
from genmodes.errors import ConfigError, DataError

CONFIGS = Path(__file__).parent.parent.parent / "configs"

# Small settings that still reach every entity pool: codebook's practice books and codes, relations'
# episode-only entities.
SMALL = {"codebook": {"n_fresh_episodes": 30, "practice_questions": 5},
         "relations": {"n_relations": 400, "heldout_fraction": 0.05, "n_entities": 200, "n_episodes": 100, "n_filler": 50,
                       "fresh_episode_fraction": 0.5, "n_episode_entities": 100, "episode_split": True}}


def digest(ds) -> str:
    """sha256 over the data files and meta.json without the package version (which changes on release)."""
    files = dataset_files(ds)
    meta = json.loads(files["meta.json"])
    meta.pop("genmodes_version")
    h = hashlib.sha256()
    for name in DATA_FILES:
        h.update(files[name])
    h.update(dumps(meta).encode())
    return h.hexdigest()


# Recorded with the code before the setting existed (commit 1ad8ef3), by :func:`digest`; updated where a family
# changed on purpose since (shortcut exemptions for the familiarity baseline, relations targets and balanced
# in-context distractors, codebook's calibration ladder with practice questions, relations' rebind pools
# over the relations' own entities when stories use them). A deliberate
# change to a family's output updates its lines here (and says so in the commit); a new family adds its own.
GOLDEN = [
    ("simple_reversals", 0, {}, "b2e7981db357278dfcce2a352fc0785d3ea59711662f1383910ee1fc9dc12d1f"),
    ("simple_reversals", 1, {}, "55360fcb2b950fa1088de342c1eafec996fe551b433af30bd04b7b66be6ed973"),
    ("simple_syllogisms", 0, {}, "64c49b57d54792363037d8484be607167f9cff56581ac2ec3a7fc4a7a7fb82da"),
    ("simple_syllogisms", 1, {}, "ca17820cd0230563e67c3e7bc9236110283e63b7e06cdb6ac1106f8929f6880f"),
    ("simple_syllogisms", 1, {"n_examples": 400}, "d74d8e670ee33a3b7b9b247845fcc3ea357a49bb29c54c35479fed37e51a7408"),
    ("simple_syllogisms", 0, {"n_examples": 12}, "b1b16950ab51fea5d3b790cebee35bc2f45658d580ca149f1b276981328e6a24"),
    ("reversal_curse", 0, {}, "972a949e1d106a15cfdd051409270b8d78f07255c0f7890a9e405659c8549e68"),
    ("reversal_curse", 1, {}, "6327cd7fb7925755750d489b8e1b139f5c3344db75ba68d479824eee608a1e29"),
    ("reversal_curse", 1, {"n_people_a": 6, "n_people_d": 0, "n_people_b": 0, "n_paraphrases": 3,
                           "n_test_paraphrases": 2},
     "1952e778ee14a4d44922e8c14ed8c1df20eb8acb2093b44103c579c8dc9cc612"),
    ("semantic_structure", 0, {}, "73e13c1df607235c24289381824d6dd479e4d67a2a5616f4cdad8e73b528f470"),
    ("semantic_structure", 1, {}, "20cc39186bd4b4653f46a65dddd6d4288a84e63839916fc6036980b7821239d8"),
    ("codebook", 0, {}, "676752828ebcd89927cecb752ece8444e0e312f02c8beb71ef1b04b44c83d3e3"),
    ("codebook", 1, {}, "a3a508af0c79d113bf75d4376be8de23522303e43a6febd8bbf22bd429579271"),
    ("codebook", 2, {"n_codebooks": 4, "sequences_per_codebook": 20, "n_fresh_episodes": 30, "practice_questions": 5},
     "8045ddb3e7cc7e974a991641d87b18c9577c00bf0639f57c6be14a0fc2311609"),
    ("relations", 0, {}, "97e90f97aa5b62ea2e166b5ddce86cdc3b0c1070f452acb795a3d9887da7f1a6"),
    ("relations", 1, {}, "60a5304bf9c5a67c507bb178ed27c4fa956e497648d9bb510a0af1bd0ba5e200"),
    ("relations", 2, {"n_relations": 400, "heldout_fraction": 0.05, "n_entities": 200, "n_episodes": 100, "n_filler": 50,
                      "fresh_episode_fraction": 0.5, "fresh_entities": "both", "n_episode_entities": 100,
                      "episode_split": True, "copyable_split": True},
     "66cb3503ab053cfc9617beedc53ef1d91f58580ac2a60fe95c9d8c39287b1afb"),
]


def test_golden_list_covers_every_family():
    assert {f for f, *_ in GOLDEN} == set(FAMILY_MODULES)


@pytest.mark.parametrize("family,seed,settings,expected", GOLDEN,
                         ids=[f"{f}-s{s}-{i}" for i, (f, s, _, _) in enumerate(GOLDEN)])
def test_without_the_setting_every_family_writes_what_it_wrote_before(family, seed, settings, expected):
    ds = make_dataset(family, seed=seed, overrides=settings)
    assert "vocabulary" not in ds.config  # meta.json and cell keys as before
    assert digest(ds) == expected


# Any token the nonsense generator can produce, or a relations id: what an entity looks like in text.
_ALT = lambda xs: "(?:" + "|".join(sorted(map(re.escape, xs), key=len, reverse=True)) + ")"  # noqa: E731
_NONSENSE_SHAPE = re.compile(f"{_ALT(ONSETS)}{_ALT(NUCLEI)}{_ALT(CODAS)}|"
                             f"{_ALT(ONSETS)}{_ALT(SHORT_NUCLEI)}{_ALT(SHORT_ONSETS)}{_ALT(SHORT_NUCLEI)}")
_ID = re.compile(r"[ef]\d{5}")


def entity_tokens(ds) -> set[str]:
    """Every token of the dataset's text (documents, questions, choices) that could be an entity."""
    texts = ([d.text for d in ds.documents] + [q.context for q in ds.questions]
             + [c for q in ds.questions for c in q.choices])
    toks = {t for x in texts for t in re.findall(r"[a-z0-9]+", x.lower())}
    return {t for t in toks if _ID.fullmatch(t) or (_NONSENSE_SHAPE.fullmatch(t) and is_valid_nonsense(t))}


def entities(ds) -> set[str]:
    """The declared entities, each word on its own, and any description a family draws (reversal_curse)."""
    out = {w for e in ds.meta["entities"] for w in str(e).lower().split()}
    return out | {p["description"] for p in ds.meta.get("people", [])}


def part(p: int, of: int = 2) -> dict:
    return {"vocabulary": {"part": p, "of": of}}


@pytest.mark.parametrize("seeds", [(0, 1), (3, 3)], ids=["different seeds", "same seed"])
@pytest.mark.parametrize("family", list(FAMILY_MODULES))
def test_datasets_of_different_parts_share_no_entity(family, seeds):
    a = make_dataset(family, seed=seeds[0], overrides={**SMALL.get(family, {}), **part(0)})
    b = make_dataset(family, seed=seeds[1], overrides={**SMALL.get(family, {}), **part(1)})
    ea, eb = entities(a), entities(b)
    assert ea and eb and not ea & eb
    ta, tb = entity_tokens(a), entity_tokens(b)
    assert ta and tb and not ta & tb, sorted(ta & tb)[:10]
    # by construction, not by luck: every entity lies in its own part
    assert all(VocabularyPart(part=0, of=2).holds(e) for e in ea)
    assert all(VocabularyPart(part=1, of=2).holds(e) for e in eb)
    assert a.config["vocabulary"] == {"part": 0, "of": 2}


@pytest.mark.parametrize("p", [0, 1])
@pytest.mark.parametrize("family", list(FAMILY_MODULES))
def test_each_part_alone_passes_the_family_audit(family, p):
    ds = make_dataset(family, seed=0, overrides=part(p))
    default = make_dataset(family, seed=0)
    rep = audit_dataset(ds)  # leaks, validity and every cheap shortcut baseline
    assert rep.ok, rep.violations[:5]
    assert ds.summary() == default.summary()  # same sizes and splits, other words


def test_one_part_of_one_is_the_whole_vocabulary():
    whole = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 12, **part(0, 1)})
    default = make_dataset("simple_syllogisms", seed=0, overrides={"n_examples": 12})
    assert whole.documents == default.documents and whole.questions == default.questions
    assert whole.config != default.config  # still a declared setting


def test_parts_split_the_word_stream_without_repeats():
    words = [NonsenseWords(5, namespace="simple_syllogisms", part=VocabularyPart(part=p, of=3)).take(40)
             for p in range(3)]
    flat = [w for ws in words for w in ws]
    assert len(flat) == len(set(flat))
    assert [sum(VocabularyPart(part=p, of=3).holds(w) for w in words[p]) for p in range(3)] == [40, 40, 40]


@pytest.mark.parametrize("value,msg", [
    ({"part": 2, "of": 2}, "'vocabulary'.*part 2 must be below of=2"),
    ({"part": -1, "of": 2}, "'vocabulary.part'"),
    ({"part": 0, "of": 0}, "'vocabulary.of'"),
    ({"part": 0}, "'vocabulary.of'.*required"),
    ({"part": 0, "of": 2, "parts": 3}, "'vocabulary.parts'"),
    ("half", "'vocabulary'.*'P/N'"),
])
def test_bad_setting_is_named(value, msg):
    with pytest.raises(DataError, match=msg):
        make_config("reversal_curse", {"vocabulary": value})


def test_command_line_takes_p_slash_n_and_refuses_a_bad_part(tmp_path, capsys):
    out = tmp_path / "syl"
    assert main(["data", "make", "simple_syllogisms", "--set", "n_examples=6", "--set", "vocabulary=1/2",
                 "--out", str(out)]) == 0
    assert json.loads((out / "meta.json").read_text())["config"]["vocabulary"] == {"part": 1, "of": 2}
    capsys.readouterr()
    bad = tmp_path / "bad"
    assert main(["data", "make", "simple_syllogisms", "--set", "vocabulary=2/2", "--out", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("genmodes: error: ") and err.count("\n") == 1 and "vocabulary" in err, err
    assert not bad.exists()


def test_too_small_a_part_is_a_one_line_error():
    with pytest.raises(OutOfWords, match="simple_syllogisms: ran out of nonsense words in vocabulary part 0 of 40") as e:
        make_dataset("simple_syllogisms", overrides={"n_examples": 40, **part(0, 40)})
    assert isinstance(e.value, DataError) and isinstance(e.value, RuntimeError)
    with pytest.raises(DataError, match="vocabulary part 0 of 1000"):
        make_dataset("relations", overrides={**SMALL["relations"], **part(0, 1000)})


def test_the_setting_is_part_of_the_dataset_identity():
    from genmodes.experiments.config import parse_config
    from genmodes.experiments.grid import grid
    from genmodes.experiments.runner import Runner

    ds = [{"name": n, "family": "simple_syllogisms", "settings": {"n_examples": 6, **extra}}
          for n, extra in (("plain", {}), ("p0", part(0)), ("p1", part(1)))]
    cfg = parse_config({"name": "v", "model": "tiny-random", "datasets": ds, "conditions": [{"name": "pretrained"}]},
                       source="test")
    r = Runner(cfg, Path(tempfile.mkdtemp()), progress=False)
    keys = {c.dataset.name: r.key_parts(c)["dataset"] for c in grid(cfg)}
    assert len({k["content_hash"] for k in keys.values()}) == 3
    assert keys["p1"]["settings"]["vocabulary"] == {"part": 1, "of": 2}
    assert "vocabulary" not in keys["plain"]["settings"]
    with pytest.raises(ConfigError, match=r"datasets\[0\].*'vocabulary'"):
        parse_config({"name": "v", "datasets": [{"family": "simple_syllogisms", "settings": {"vocabulary": "3/2"}}],
                      "conditions": [{"name": "pretrained"}]}, source="test")


@pytest.mark.parametrize("config", ["thinking.yaml", "thinking_paper.yaml"])
def test_thinking_studies_have_disjoint_a_and_b(config, tmp_path):
    """The P3 setting: train on A, test transfer to B, with no word in common (rl_design reports 0)."""
    from genmodes.experiments.config import load_config
    from genmodes.experiments.runner import Runner

    cfg = load_config(CONFIGS / config)
    r = Runner(cfg, tmp_path / "run", progress=False)
    built = {d.name: r.dataset(d) for d in cfg.datasets}
    for fam in ("semantic", "reversal"):
        a, b = built[f"{fam}_a"], built[f"{fam}_b"]
        assert a.family == b.family and a.seed != b.seed
        assert a.config["vocabulary"]["part"] != b.config["vocabulary"]["part"]
        assert entity_words(a) and not entity_words(a) & entity_words(b)
    assert all(d.meta["rl_design"]["entities_shared_with_other_datasets"] == 0 for d in built.values())
    # the chain drills' practice dataset shares no word with A or B either, and is scored on recall only
    practice = built["semantic_practice"]
    for name in ("semantic_a", "semantic_b"):
        assert entity_words(practice) and not entity_words(practice) & entity_words(built[name])
    assert {q.split for q in practice.questions} <= set(practice.meta["recall_splits"])
