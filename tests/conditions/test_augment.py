"""augmented_finetune: generation (local, global, cached and resumable), the oracle source,
verification against the ground truth, the fine-tuning data, and prepare() end to end."""

from __future__ import annotations

import json
import math

import pytest
import torch

from genmodes.conditions import MODEL_STAGES, augment, model_stage, resolve
from genmodes.conditions.base import CellContext
from genmodes.generate import PrefixGenerator
from genmodes.data.families import make_dataset
from genmodes.data.types import Fact
from genmodes.errors import ConfigError, DataError
from genmodes.scoring import Scorer

FINETUNE_FAST = {"steps": 2, "batch_size": 2, "seq_len": 64}


@pytest.fixture(scope="module")
def reversals():
    return make_dataset("simple_reversals", 0, {"n_facts": 3, "articles_per_fact": 2})


@pytest.fixture(scope="module")
def curse():
    return make_dataset("reversal_curse", 0, {"n_people_a": 4, "n_people_d": 0, "n_people_b": 0,
                                              "n_paraphrases": 2, "n_test_paraphrases": 1})


def _ctx(ds, tmp_path):
    return CellContext(model_spec="tiny-random", dataset=ds, seed=0, workdir=tmp_path, progress=False)


def _write_cache(ctx, settings, outputs, finished=None):
    """A finished generation cache in which every document got ``outputs``."""
    path = augment.cache_dir(ctx, settings) / "generations.jsonl"
    path.parent.mkdir(parents=True)
    with path.open("w") as f:
        for d in ctx.dataset.documents:
            f.write(json.dumps({"doc": d.id, "outputs": outputs, "finished": finished or [True] * len(outputs),
                                "seconds": 0.5}) + "\n")


def _local(**kw):
    return augment.Settings(**{"source": "local", "max_new_tokens": 6, "generation_batch_size": 3, **kw})


# ------------------------------------------------------------------------------------------ generation

def test_batched_generation_matches_one_at_a_time_and_hf_generate(tiny):
    model, tok = tiny
    gen = PrefixGenerator(model, tok, prefix="A shared block of documents.\n\n")
    prompts = ["Statement: a b\n-", "Statement: a much longer prompt than the first\n-", "x"]
    batched = gen.generate(prompts, max_new_tokens=12)
    assert batched == [gen.generate([p], max_new_tokens=12)[0] for p in prompts]
    ids = gen.prefix_ids + tok(prompts[1], add_special_tokens=False).input_ids
    ref = model.generate(torch.tensor([ids]), max_new_tokens=12, do_sample=False)
    assert batched[1] == tok.decode(ref[0, len(ids):], skip_special_tokens=True)
    # sampled rows depend on their own seed only, not on the batch they are in
    sampled = gen.generate(prompts, max_new_tokens=12, temperature=1.0, seeds=[5, 6, 7])
    assert sampled == [gen.generate([p], max_new_tokens=12, temperature=1.0, seeds=[s])[0]
                       for p, s in zip(prompts, [5, 6, 7])]
    assert gen.generate(prompts[:1], max_new_tokens=12, temperature=1.0, seeds=[8]) != sampled[:1]


def test_generation_cuts_at_stop_strings(tiny):
    model, tok = tiny
    gen = PrefixGenerator(model, tok)
    full = gen.generate(["abc"], max_new_tokens=16)[0]
    assert len(full) > 2
    stop = full[1:3]
    assert gen.generate(["abc"], max_new_tokens=16, stop=[stop])[0] == full[: full.find(stop)]
    assert gen.generate(["abc"], max_new_tokens=16, stop=[stop], return_finished=True)[1] == [True]
    assert gen.generate(["abc"], max_new_tokens=1, return_finished=True) == ([full[:1]], [False])


def test_to_budget_decodes_every_row_to_its_budget(tiny):
    """The dry run times a batch at its budget: with ``to_budget`` end-of-text does not end a row."""
    model, tok = tiny
    gen = PrefixGenerator(model, tok)
    ids = gen.prefix_ids + tok("abc", add_special_tokens=False).input_ids
    with torch.no_grad():
        first = int(model(torch.tensor([ids])).logits[0, -1].argmax())

    class EndsAtFirst:  # the tokenizer, with the row's first token as its end-of-text
        eos_token_id = first

        def __getattr__(self, name):
            return getattr(tok, name)

        def __call__(self, *args, **kw):
            return tok(*args, **kw)

    gen.tokenizer = EndsAtFirst()
    assert gen.generate(["abc"], max_new_tokens=8, return_finished=True) == ([""], [True])
    text, finished = gen.generate(["abc"], max_new_tokens=8, return_finished=True, to_budget=True)
    assert finished == [False] and len(tok(text[0], add_special_tokens=False).input_ids) >= 4


def test_local_generation_is_cached_and_resumes(reversals, tmp_path):
    ctx, settings = _ctx(reversals, tmp_path), _local()
    texts, info = augment.generate_augmentations(ctx, settings)
    n = len(reversals.documents)
    assert info["generated_now"] == n and info["resumed_documents"] == 0 and info["generated_documents"] == n
    assert info["generation_seconds"] > 0
    path = augment.cache_dir(ctx, settings) / "generations.jsonl"
    lines = path.read_text().splitlines()
    recs = [json.loads(x) for x in lines]
    assert [r["doc"] for r in recs] == [d.id for d in reversals.documents]
    assert all(len(r["outputs"]) == 1 and r["outputs"][0] for r in recs)
    # a second run generates nothing
    again, info2 = augment.generate_augmentations(ctx, settings)
    assert again == texts and info2["generated_now"] == 0 and info2["generation_seconds"] == info["generation_seconds"]
    # keep every other line, then a crash mid-write: only the missing documents are regenerated
    kept = lines[::2]
    path.write_text("\n".join(kept) + "\n" + lines[1][: len(lines[1]) // 2])
    resumed, info3 = augment.generate_augmentations(ctx, settings)
    assert info3["generated_now"] == n - len(kept) and info3["resumed_documents"] == len(kept)
    assert resumed == texts  # greedy: the regenerated documents read as before
    recs = [json.loads(x) for x in path.read_text().splitlines()]
    assert sorted(r["doc"] for r in recs) == sorted(d.id for d in reversals.documents)
    assert [r["doc"] for r in recs[len(kept):]] == [json.loads(x)["doc"] for x in lines[1::2]]


def test_corrupt_cache_line_is_a_one_line_error(reversals, tmp_path):
    ctx, settings = _ctx(reversals, tmp_path), _local()
    path = augment.cache_dir(ctx, settings) / "generations.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text('not json\n{"doc": "x", "outputs": [], "seconds": 0}\n')
    with pytest.raises(DataError, match=r"generations.jsonl line 1"):
        augment.generate_augmentations(ctx, settings)


def test_cache_is_keyed_by_generation_settings(reversals, tmp_path):
    ctx = _ctx(reversals, tmp_path)
    assert augment.cache_dir(ctx, _local()) == augment.cache_dir(ctx, _local(generation_batch_size=1))
    assert augment.cache_dir(ctx, _local()) != augment.cache_dir(ctx, _local(max_new_tokens=7))
    assert augment.cache_dir(ctx, _local()) != augment.cache_dir(ctx, _local(source="global"))


def test_global_generation_puts_the_budgeted_training_set_before_each_document(curse, tmp_path):
    ctx = _ctx(curse, tmp_path)
    settings = augment.Settings(source="global", max_new_tokens=4, budget_tokens=900)
    texts, info = augment.generate_augmentations(ctx, settings)
    assert 0 < info["documents_in_context"] < len(curse.documents)
    assert info["generated_documents"] == len(curse.documents)
    prefix = json.loads((augment.cache_dir(ctx, settings) / "settings.json").read_text())["prefix"]
    assert prefix.startswith(augment.GLOBAL_INSTRUCTION)
    assert sum(d.text in prefix for d in curse.documents) == info["documents_in_context"]
    with pytest.raises(ConfigError, match="budget_tokens"):
        augment.generate_augmentations(ctx, settings.model_copy(update={"budget_tokens": 300}))


# ------------------------------------------------------------------------------------------ verification

def test_verification_counts_on_hand_written_texts(reversals):
    fwd = reversals.documents[0].facts[0]
    rev = next(f for f in reversals.knowledge if f.subject == fwd.object and f.object == fwd.subject)
    wrong = Fact(rev.subject, fwd.relation, rev.object)  # the contradictory comparison
    texts = [f"- {rev.subject} are {rev.relation} than {rev.object}.\n- {wrong.subject} are {wrong.relation} "
             f"than {wrong.object}.", "The weather was lovely on Tuesday."]
    counts = augment.verify(reversals, texts)
    assert {k: counts[k] for k in ("statements", "true", "false", "unverifiable", "test_answers_stated")} == \
        {"statements": 3, "true": 1, "false": 1, "unverifiable": 1, "test_answers_stated": 1}
    assert counts["test_answers_total"] == 3  # three facts, each with one held-out reversal
    # a trained (forward) fact is true but is no held-out answer
    assert augment.verify(reversals, [reversals.documents[0].text])["test_answers_stated"] == 0


def test_a_parse_nested_in_another_counts_once(curse):
    f = next(f for f in curse.knowledge if f.object[0].isupper())  # (description, is, name)
    counts = augment.verify(curse, [f"Carrying the weight of being {f.subject} is {f.object}."])
    assert (counts["true"], counts["false"], counts["test_answers_stated"]) == (1, 0, 1)


@pytest.mark.parametrize("ds_name", ["reversals", "curse"])
def test_oracle_states_only_true_facts_and_the_test_answers(ds_name, request, tmp_path):
    ds = request.getfixturevalue(ds_name)
    texts, info = augment.augmentations(_ctx(ds, tmp_path), augment.Settings(source="oracle"))
    assert texts and info["generated_texts"] == len(texts) and info["generation_seconds"] == 0
    assert info["false"] == 0 and info["true"] > 0
    assert info["test_answers_stated"] == info["test_answers_total"] > 0
    assert not list(tmp_path.iterdir())  # nothing generated, nothing cached


# ------------------------------------------------------------------------------------------ fine-tuning

def test_finetune_data_is_original_plus_generated(reversals, tmp_path, monkeypatch, tiny):
    seen = {}

    def fake_train(ctx, settings, texts, tag="finetune"):
        seen.update(texts=list(texts), tag=tag, settings=settings)
        return tiny[0], tiny[1], augment.FinetuneInfo(train_seconds=2.5, steps=1)

    monkeypatch.setattr(augment, "train_on_texts", fake_train)
    ctx, settings = _ctx(reversals, tmp_path), _local()
    _write_cache(ctx, settings, [" A is B.\n- B is A.\n"])
    generated, _ = augment.generate_augmentations(ctx, settings)
    assert generated == ["A is B.", "B is A."] * len(reversals.documents)
    prepared = augment.build(ctx, settings)
    original = [d.text for d in reversals.documents]
    assert seen["texts"] == original + generated and seen["tag"] == "augmented_finetune"
    # the fine-tuning run's settings alone: what a plain finetune with them would train with
    assert seen["settings"] == settings.finetune_settings() == augment.FinetuneSettings()
    info = prepared.info
    assert info.original_texts == len(original) and info.generated_texts == len(generated)
    assert info.finetune_seconds == 2.5 and info.generation_seconds > 0
    assert math.isclose(info.train_seconds, info.generation_seconds + 2.5)
    aug = info.augmentation.model_dump(exclude_none=True)
    assert {"statements", "true", "false", "unverifiable", "test_answers_stated", "generated_documents",
            "generation_seconds"} <= set(aug)
    json.dumps(info.model_dump(mode="json"))  # goes to the report as JSON

    prepared = augment.build(ctx, augment.Settings(source="oracle"))
    from genmodes.data.families import get_family
    oracle = [d.text for d in get_family("simple_reversals").oracle_augmentations(reversals)]
    assert seen["texts"] == original + oracle and prepared.info.generation_seconds == 0


def test_settings_are_validated():
    assert model_stage("augmented_finetune") is augment and "augmented_finetune" in MODEL_STAGES
    with pytest.raises(ConfigError, match="temperature"):
        resolve("augmented_finetune", {"samples_per_document": 3})
    with pytest.raises(ConfigError, match="sourse"):
        resolve("augmented_finetune", {"sourse": "local"})
    with pytest.raises(ConfigError, match="source"):
        resolve("augmented_finetune", {"source": "psychic"})
    s = resolve("augmented_finetune", {"source": "global", "temperature": 0.7, "samples_per_document": 2})
    assert s.model_settings.samples_per_document == 2 and s.context == "none"
    # the short form's nested finetune settings and generation batch map onto the flat model stage
    s = resolve("augmented_finetune", {"batch_size": 16, "finetune": {"batch_size": 8, "lr": 1e-4}})
    assert (s.model_settings.generation_batch_size, s.model_settings.batch_size) == (16, 8)
    assert s.model_settings.finetune_settings().lr == 1e-4
    with pytest.raises(ConfigError, match="bad setting 'finetune.lr'"):
        resolve("augmented_finetune", {"finetune": {"lr": -1}})
    with pytest.raises(ConfigError, match="bad setting 'batch_size'"):
        resolve("augmented_finetune", {"batch_size": 0})


def test_prepare_end_to_end_generates_fine_tunes_and_scores(curse, tmp_path):
    settings = resolve("augmented_finetune", {"source": "local", "max_new_tokens": 6, "batch_size": 4,
                                              "finetune": FINETUNE_FAST})
    ctx = _ctx(curse, tmp_path)
    from genmodes import conditions

    prepared = conditions.prepare(ctx, settings)
    base, _ = ctx.load_model()
    changed = [n for (n, p), q in zip(prepared.model.named_parameters(), base.parameters())
               if not torch.equal(p, q)]
    assert changed  # fine-tuning moved the weights
    scores = Scorer(prepared.model, prepared.tokenizer).score(
        [(prepared.context_for(q), q.choices) for q in curse.questions], prefix=prepared.prefix)
    assert all(math.isfinite(c.logprob) for s in scores for c in s)
    info = prepared.model_info
    assert info.augmentation.generated_documents == len(curse.documents)
    assert info.train_seconds >= info.generation_seconds > 0


def test_statements_repeated_within_a_document_are_kept_once(reversals, tmp_path):
    ctx, settings = _ctx(reversals, tmp_path), _local()
    _write_cache(ctx, settings, [" A is B.\n- A is B.\n- B is A.\n", " C is D.\n- D is"], [True, False])
    texts, info = augment.generate_augmentations(ctx, settings)
    n = len(reversals.documents)
    assert texts == ["A is B.", "B is A.", "C is D."] * n  # across documents, repeats stay; cut-off "D is" goes
    assert info["duplicates_dropped"] == n and info["cut_statements_dropped"] == n
    assert info["generated_now"] == 0 and info["generation_seconds"] == 0.5 * n


def test_augment_fraction_generates_for_a_seeded_subset(reversals, tmp_path):
    ctx = _ctx(reversals, tmp_path)
    settings = _local(augment_fraction=0.25)
    _, info = augment.generate_augmentations(ctx, settings)
    n = len(reversals.documents)
    assert info["generated_documents"] == round(n * 0.25) == info["generated_now"]
    recs = [json.loads(x) for x in (augment.cache_dir(ctx, settings) / "generations.jsonl").read_text().splitlines()]
    ids = {r["doc"] for r in recs}
    assert ids < {d.id for d in reversals.documents}
    # the same seed picks the same documents
    ctx2 = _ctx(reversals, tmp_path / "again")
    augment.generate_augmentations(ctx2, settings)
    recs2 = [json.loads(x) for x in (augment.cache_dir(ctx2, settings) / "generations.jsonl").read_text().splitlines()]
    assert {r["doc"] for r in recs2} == ids


# ------------------------------------------------------------------------------------------ verification

def test_alternatives_swap_an_entity_for_a_peer_and_are_false(curse):
    doc = next(d for d in curse.documents if d.meta["order"] == "name_first")
    name, desc = doc.facts[0].subject, doc.facts[0].object
    text = f"The one who is {desc} is none other than {name}."
    fact = Fact(desc, "is", name)
    alts = augment.alternatives(text, fact, curse, 3, seed=0)
    assert len(alts) == 6 and len(set(alts)) == 6 and text not in alts
    know = set(curse.knowledge)
    other_names = [a for a in alts if desc in a]       # the name swapped
    other_descs = [a for a in alts if name in a]       # the description swapped
    assert len(other_names) == 3 and len(other_descs) == 3
    for a in other_names:
        other = a.rsplit(" than ", 1)[1].rstrip(".")
        assert other != name and other[:1].isupper() and Fact(desc, "is", other) not in know
    for a in other_descs:
        other = a[len("The one who is "):a.index(" is none other")]
        assert other != desc and other.startswith("the ") and Fact(other, "is", name) not in know


@pytest.mark.slow
def test_verification_keeps_the_true_statement_and_drops_its_contradiction(curse, smollm):
    """With the source document in context, the bundled model prefers the name it just read."""
    model, tok = smollm
    doc = next(d for d in curse.documents if d.meta["order"] == "name_first")
    name, desc = doc.facts[0].subject, doc.facts[0].object
    other = next(p["name"] for p in curse.meta["people"] if p["name"] != name)
    texts = [f"The one who is {desc} is none other than {name}.",
             f"The one who is {desc} is none other than {other}.",
             "Something nobody can parse."]
    settings = augment.Settings(source="local", verify="in_context", verify_margin=0.5)
    keep, info = augment.verify_in_context(model, tok, curse, texts, [doc.id] * 3, settings, seed=0)
    assert keep == [True, False, False]
    assert info["judged_statements"] == 2 and info["kept"] == 1 and info["dropped"] == 2
    keep2, _ = augment.verify_in_context(model, tok, curse, texts, [doc.id] * 3,
                                         settings.model_copy(update={"verify_unparsed": "keep"}), seed=0)
    assert keep2 == [True, False, True]


def test_audit_before_and_after_verification_match_a_hand_count(curse, tmp_path, monkeypatch):
    """augmentations() reports the audit before and after verification; counts checked by hand."""
    people = curse.meta["people"]
    a, b = people[0], people[1]
    outputs = [f"The one who is {a['description']} is none other than {a['name']}.\n"   # true
               f"- The one who is {a['description']} is none other than {b['name']}.\n"  # false
               f"- Nothing to see here."]                                               # unverifiable
    ctx = _ctx(curse, tmp_path)
    settings = _local(verify="in_context")
    _write_cache(ctx, settings, outputs)
    # a judge that keeps exactly the statements true in the world (stands in for the model)
    know = set(curse.knowledge)

    def judge(model, tok, ds, texts, sources, st, seed, kinds=None):
        parse = augment.get_family(ds.family).parse_statements
        keep = [bool(parse(t)) and all(f in know for f in parse(t)) for t in texts]
        return keep, {"kept": sum(keep), "dropped": len(texts) - sum(keep)}

    monkeypatch.setattr(augment, "verify_in_context", judge)
    texts, info = augment.augmentations(ctx, settings)
    n = len(curse.documents)  # every document "wrote" the same three statements
    before = info["verification"]["before"]
    assert (before["true"], before["false"], before["unverifiable"]) == (n, n, n)
    assert (info["true"], info["false"], info["unverifiable"]) == (n, 0, 0)
    assert len(texts) == n and info["verification"]["kept"] == n
