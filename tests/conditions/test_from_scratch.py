"""from_scratch (model stage scratch, with context none or an oracle retrieval): word tokenizer +
Scorer, overfitting, bitwise resume, no held-out leak, oracle contexts, shared trained model, the
no-episodes ablation, and the configs [P2]."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from genmodes import conditions
from genmodes.conditions import from_scratch as fs
from genmodes.conditions import resolve
from genmodes.conditions.base import CellContext
from genmodes.data.families import make_config, make_dataset
from genmodes.errors import ConfigError
from genmodes.training import scratch
from genmodes.scoring import Scorer, accuracy, encode_pair, naive_score

ROOT = Path(__file__).resolve().parents[2]
TINY = dict(n_layers=2, d_model=64, n_heads=4, seq_len=32, batch_size=4, lr=1e-2, warmup_steps=5,
            eval_every=1000, eval_questions=8, checkpoint_every=1000)


@pytest.fixture(scope="module")
def rel():
    return make_dataset("relations", 0, dict(balanced_distractors=False, n_relations=8, n_entities=16, n_episodes=8, n_filler=0,
                                             n_trained_questions=8, heldout_fraction=0.125))


@pytest.fixture(scope="module")
def rel_filler():
    return make_dataset("relations", 1, dict(balanced_distractors=False, n_relations=12, n_entities=40, n_episodes=6, n_filler=30,
                                             filler_max_len=8, n_trained_questions=6, heldout_fraction=0.25))


def prepare(ctx: CellContext, **settings):
    """The short form ``kind: from_scratch`` (``context: none`` or ``oracle``)."""
    return conditions.prepare(ctx, resolve("from_scratch", settings))


def cell(ds, tmp: Path, name: str = "a", spec: str = "scratch") -> CellContext:
    return CellContext(spec, ds, 0, tmp / "cells" / name, shared_dir=tmp / "shared", progress=False)


def split_accuracy(prepared, ds, split: str) -> float:
    qs = [q for q in ds.questions if q.split == split]
    scores = Scorer(prepared.model, prepared.tokenizer).score([(prepared.context_for(q), q.choices) for q in qs])
    return accuracy(scores, [q.answer for q in qs])


# ------------------------------------------------------------------------------------------ tokenizer

def test_word_tokenizer_pair_encoding_and_scorer_match_reference(rel):
    tok = scratch.build_tokenizer(fs.dataset_vocabulary(rel))
    q = rel.questions[0]
    ctx_ids, cont_ids = encode_pair(tok, q.context, q.choices[0])
    assert len(cont_ids) == 1 and tok.convert_ids_to_tokens(cont_ids) == [q.choices[0].strip()]
    assert tok.convert_ids_to_tokens(ctx_ids) == q.context.split()
    # the start token is the document separator of training; decoding joins words with spaces
    assert tok("e1 .").input_ids[0] == tok.eos_token_id == tok.bos_token_id
    assert tok.decode(tok(q.context, add_special_tokens=False).input_ids) == q.context
    assert tok.unk_token_id not in tok(" ".join(d.text for d in rel.documents)).input_ids
    model = scratch.build_model(scratch.TrainConfig(**{**TINY, "steps": 1}), tok, seed=0).eval()
    fast = Scorer(model, tok).score([(q.context, q.choices) for q in rel.questions[:4]])
    for qq, got in zip(rel.questions[:4], fast):
        ref = naive_score(model, tok, qq.context, qq.choices)
        assert [round(s.logprob, 4) for s in got] == [round(s.logprob, 4) for s in ref]


# ------------------------------------------------------------------------------------------ training

@pytest.mark.slow
def test_tiny_model_overfits_a_handful_of_relations(rel, tmp_path):
    prepared = prepare(cell(rel, tmp_path), **{**TINY, "batch_size": 8}, steps=150)
    assert split_accuracy(prepared, rel, "trained") == 1.0
    info = prepared.model_info
    assert info.steps == 150 and info.final_loss < 1.5 and info.train_seconds > 0
    assert info.reused is False and info.device == ("cuda" if torch.cuda.is_available() else "cpu")
    curves = scratch.read_curves(tmp_path / info.curves_file)  # relative to the run folder
    assert curves[-1]["step"] == 150 and set(curves[-1]["accuracy"]) == {q.split for q in rel.questions}


def test_until_ready_stops_at_the_first_curve_point_that_knows_the_facts(rel, tmp_path):
    # the overfitting run above knows every trained fact by step 150: the rule ends it at a curve point
    prepared = prepare(cell(rel, tmp_path), **{**TINY, "batch_size": 8, "eval_every": 25, "eval_questions": 64},
                       steps=400, until_ready=0.9)
    info = prepared.model_info
    curves = scratch.read_curves(tmp_path / info.curves_file)
    assert info.steps == curves[-1]["step"] < 400 and info.steps % 25 == 0
    assert curves[-1]["accuracy"]["trained"] >= 0.9
    assert all(r["accuracy"]["trained"] < 0.9 for r in curves[:-1])  # the first point that passes
    assert split_accuracy(prepared, rel, "trained") >= 0.9
    assert fs.Settings(**TINY, until_ready=0.9).training_key()["until_ready"] == 0.9
    assert "until_ready" not in fs.Settings(**TINY).training_key()


def test_until_ready_holds_a_model_trained_with_practice_to_its_ladder_too():
    ds = make_dataset("relations", 0, dict(n_relations=16, n_entities=32, heldout_fraction=0.5, n_episodes=8,
                                           n_filler=0, n_trained_questions=4, fresh_episode_fraction=1.0,
                                           n_episode_entities=40, lookup_split=True))
    ready = fs._ready(ds, fs.Settings(**TINY, until_ready=0.9))
    assert ready({"trained": 0.95, "lookup_in_context": 0.96})
    assert not ready({"trained": 0.95, "lookup_in_context": 0.9})  # the rung's own threshold: 95%
    assert not ready({"trained": 0.85, "lookup_in_context": 1.0}) and not ready({"lookup_in_context": 1.0})
    ablation = fs._ready(ds, fs.Settings(**TINY, until_ready=0.9, include_episodes=False))
    assert ablation({"trained": 0.95, "lookup_in_context": 0.2})  # the same knowledge, no practice to read
    assert fs._ready(ds, fs.Settings(**TINY)) is None


class Killed(Exception):
    pass


def test_resume_after_interruption_gives_bitwise_identical_weights(rel, tmp_path):
    settings = fs.Settings(**{**TINY, "d_model": 32, "n_heads": 2, "eval_every": 4, "checkpoint_every": 5},
                           steps=16)

    def kill_at(n):
        def cb(step, loss):
            if step == n:
                raise Killed
        return cb

    ref_model, _, ref_info = fs.ensure_trained(cell(rel, tmp_path / "ref"), settings)
    ctx = cell(rel, tmp_path / "run")
    with pytest.raises(Killed):
        fs.ensure_trained(ctx, settings, callback=kill_at(12))
    model, _, info = fs.ensure_trained(ctx, settings)
    assert info.resumed_from == 10 and ref_info.resumed_from == 0
    ref_sd, sd = ref_model.state_dict(), model.state_dict()
    assert all(torch.equal(ref_sd[k], sd[k]) for k in ref_sd)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "seconds"} for r in rows]  # noqa: E731
    assert strip(scratch.read_curves(tmp_path / "ref" / ref_info.curves_file)) == \
        strip(scratch.read_curves(tmp_path / "run" / info.curves_file))
    assert info.final_loss == ref_info.final_loss


def test_heldout_reversals_never_in_packed_training_rows(rel_filler, tmp_path, monkeypatch):
    seen: list[list[int]] = []
    orig = scratch.Packer.batch_for_step

    def record(self, step):
        ids, labels = orig(self, step)
        seen.extend(ids)
        return ids, labels

    monkeypatch.setattr(scratch.Packer, "batch_for_step", record)
    prepared = prepare(cell(rel_filler, tmp_path), **TINY, steps=30)
    tok = prepared.tokenizer
    held = rel_filler.meta["heldout_relations"]
    assert held and len(seen) == 30 * TINY["batch_size"]
    words = set()
    for row in seen:
        text = tok.decode([t for t in row if t != tok.pad_token_id])
        words.update(text.split())
        for x, y in held:
            assert f"{y} is a subset of {x}" not in text
            for doc in text.split(scratch.EOT):  # nor the pair reversed inside one training document
                toks = doc.split()
                assert not (y in toks and x in toks and toks.index(y) < len(toks) - 1 - toks[::-1].index(x))
    assert "subset" in words and "contains" in words  # the rows are real training text
    # the held-out split really is latent: parametric near 0-chance, question text never trained
    assert all(q.meta["heldout"] for q in rel_filler.questions if q.split == "heldout_reversal")


def test_curriculum_starts_on_fresh_episodes_only_then_trains_on_everything(tmp_path, monkeypatch):
    ds = make_dataset("relations", 0, dict(balanced_distractors=False, n_relations=8, n_entities=16, n_episodes=12, n_filler=4,
                                           n_trained_questions=4, heldout_fraction=0.125, episode_facts=2,
                                           fresh_episode_fraction=0.5, n_episode_entities=12))
    seen: list[tuple[int, list[list[int]]]] = []
    orig = scratch.Packer.batch_for_step

    def record(self, step):
        ids, labels = orig(self, step)
        seen.append((step, ids))
        return ids, labels

    monkeypatch.setattr(scratch.Packer, "batch_for_step", record)
    prepared = prepare(cell(ds, tmp_path), **{**TINY, "seq_len": 64}, steps=12, curriculum_steps=5)
    tok = prepared.tokenizer
    fresh = {d.text for d in ds.documents if d.meta.get("fresh")}
    for step, rows in seen:
        docs = {t.strip() for row in rows for t in tok.decode([x for x in row if x != tok.pad_token_id])
                .split(scratch.EOT) if t.strip()}
        if step < 5:
            assert docs <= fresh, step
        else:
            assert docs - fresh, step  # relations and trained episodes come in after the curriculum
    assert sorted({s for s, _ in seen}) == list(range(12))
    # without a curriculum the training key is that of a model trained before the setting existed
    assert "curriculum_steps" not in fs.Settings(**TINY).training_key()
    assert fs.Settings(**TINY, curriculum_steps=3).training_key()["curriculum_steps"] == 3
    with pytest.raises(ConfigError, match="curriculum_steps"):
        prepare(cell(make_dataset("relations", 0, dict(balanced_distractors=False, n_relations=8, n_entities=16, n_episodes=4,
                                                       n_filler=0, n_trained_questions=4,
                                                       heldout_fraction=0.125)), tmp_path, "b"),
                **TINY, steps=4, curriculum_steps=2)


# ------------------------------------------------------------------------------------------ contexts

def test_oracle_context_holds_support_and_exactly_k_distractors(rel_filler, tmp_path):
    # the in-context split's question holds one fact per option: longer rows than TINY's
    settings = dict(**{**TINY, "seq_len": 64}, steps=2, context="oracle", k=3)
    prepared = prepare(cell(rel_filler, tmp_path), **settings)
    by_id = {d.id: d for d in rel_filler.documents}
    train_texts = {d.text for d in rel_filler.documents}
    for q in rel_filler.questions:
        ctx = prepared.context_for(q)
        lines = ctx.split("\n")  # P2's plain format: no instruction, one document per line
        assert lines[-1] == q.context
        docs = lines[:-1]
        support = [by_id[s].text for s in q.support]
        assert len(docs) == len(support) + 3 and all(s in docs for s in support)
        distractors = [d for d in docs if d not in support]
        assert len(distractors) == 3 and all(d in train_texts for d in distractors)
        assert all(by_id[s].kind == "relation" for s in q.support)  # distractors of the support's kind
    # seeded: the same question gets the same context in another cell
    again = prepare(cell(rel_filler, tmp_path, "b"), **settings)
    assert [again.context_for(q) for q in rel_filler.questions] == [prepared.context_for(q) for q in rel_filler.questions]
    assert 0 < prepared.info.context_tokens_max <= settings["seq_len"] == prepared.info.window_tokens
    assert prepared.info.contexts_longer_than_window == 0 and prepared.info.questions_short_of_k == 0
    none = prepare(cell(rel_filler, tmp_path, "c"), **{**settings, "context": "none"})
    assert all(none.context_for(q) == q.context for q in rel_filler.questions)


def test_oracle_distractors_about_the_options_put_every_option_in_the_context(rel_filler, tmp_path):
    settings = dict(**TINY, steps=2, context="oracle", k=4, distractors="options")
    prepared = prepare(cell(rel_filler, tmp_path), **settings)
    random_ = prepare(cell(rel_filler, tmp_path, "r"), **{**settings, "distractors": "random"})
    by_id = {d.id: d for d in rel_filler.documents}
    only_answer = 0
    for q in rel_filler.questions:
        lines = prepared.context_for(q).split("\n")
        docs = lines[:-1]
        assert by_id[q.support[0]].text in docs and len(docs) == 1 + settings["k"]
        words = set(" ".join(docs).split())
        # every option is in the retrieved documents, so copying the one option seen is no strategy
        assert all(c.strip() in words for c in q.choices), q.id
        seen = [c.strip() in set(" ".join(random_.context_for(q).split("\n")[:-1]).split())
                for c in q.choices]
        only_answer += seen == [i == q.answer for i in range(len(q.choices))]
    assert only_answer >= 1  # random distractors can leave the answer the only option in the context


def test_copy_init_starts_the_output_embedding_as_a_copy_and_trains_it_apart(rel, tmp_path):
    tok = scratch.build_tokenizer(fs.dataset_vocabulary(rel))
    cfg = scratch.TrainConfig(**{**TINY, "steps": 2, "copy_init": True})
    model = scratch.build_model(cfg, tok, seed=0)
    assert torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    plain = scratch.build_model(cfg.model_copy(update={"copy_init": False}), tok, seed=0)
    assert torch.equal(plain.model.embed_tokens.weight, model.model.embed_tokens.weight)
    assert not torch.equal(plain.lm_head.weight, model.lm_head.weight)
    scratch.train(model, tok, [d.text for d in rel.documents], tmp_path, cfg, progress=False)
    assert not torch.equal(model.lm_head.weight, model.model.embed_tokens.weight)


def test_same_training_settings_share_one_trained_model(rel, tmp_path):
    a = prepare(cell(rel, tmp_path, "parametric"), **TINY, steps=3, context="none")
    b = prepare(cell(rel, tmp_path, "oracle"), **TINY, steps=3, context="oracle", k=2)
    c = prepare(cell(rel, tmp_path, "ablation"), **TINY, steps=3, include_episodes=False)
    assert a.model_info.reused is False and b.model_info.reused is True and c.model_info.reused is False
    assert a.model_info.artifact == b.model_info.artifact != c.model_info.artifact
    assert b.model_info.train_seconds == a.model_info.train_seconds
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert len(list((tmp_path / "shared" / "scratch").iterdir())) == 2


def test_no_episodes_ablation_removes_in_context_episodes(rel):
    assert any(d.kind == "episode" for d in fs.training_documents(rel, True))
    kept = fs.training_documents(rel, False)
    assert kept and not any(d.kind == "episode" for d in kept)
    cb = make_dataset("codebook", 0, dict(n_codebooks=2, n_symbols=6, n_used=3, sequences_per_codebook=20,
                                          questions_per_codebook=2, n_choices=2, p_definition_in_sequence=0.5))
    with_defs = [d for d in cb.documents if d.meta.get("with_definition")]
    assert with_defs
    stripped = {d.id: d for d in fs.training_documents(cb, False)}
    assert len(stripped) == len(cb.documents)
    for d in with_defs:
        assert "codebook" not in stripped[d.id].text and stripped[d.id].text.startswith("encode with")
    # fresh practice episodes are nothing but in-context episodes: dropped whole
    cbf = make_dataset("codebook", 0, dict(n_codebooks=2, n_symbols=6, n_used=3, sequences_per_codebook=20,
                                           questions_per_codebook=2, n_choices=2, n_fresh_episodes=5))
    assert sum(bool(d.meta.get("fresh")) for d in fs.training_documents(cbf, True)) == 5
    assert not any(d.meta.get("fresh") for d in fs.training_documents(cbf, False))
    relf = make_dataset("relations", 0, dict(balanced_distractors=False, n_relations=8, n_entities=16, n_episodes=8, n_filler=0,
                                             n_trained_questions=8, heldout_fraction=0.125,
                                             fresh_episode_fraction=0.5, n_episode_entities=8))
    assert not any(d.kind == "episode" for d in fs.training_documents(relf, False))


def test_settings_and_model_spec_errors(rel, tmp_path):
    with pytest.raises(ConfigError, match="n_layer"):
        resolve("from_scratch", {"n_layer": 2})
    with pytest.raises(ConfigError, match="context"):
        resolve("from_scratch", {"context": "bm25"})
    with pytest.raises(ConfigError, match="d_model"):
        resolve("from_scratch", {"d_model": 30, "n_heads": 4})
    with pytest.raises(ConfigError, match="model"):
        prepare(cell(rel, tmp_path, spec="smollm2-135m"), **TINY, steps=1)
    with pytest.raises(ConfigError, match="seq_len"):
        prepare(cell(rel, tmp_path), **{**TINY, "seq_len": 8}, steps=1)


@pytest.mark.parametrize("name", ["latent_relations", "latent_codebook", "latent_relations_paper",
                                  "latent_codebook_paper"])
def test_configs_are_valid(name):
    cfg = yaml.safe_load((ROOT / "configs" / f"{name}.yaml").read_text())
    assert cfg["model"] == "scratch"
    for d in cfg["datasets"]:
        make_config(d["family"], d.get("settings", {}))
        if name.endswith("_paper"):  # settings a config check accepts can still ask for more words than exist
            assert make_dataset(d["family"], d.get("seed", 0), d.get("settings", {})).questions
    # the shortcut baselines (no model) stand beside the models in every study
    baselines = {c["settings"]["method"] for c in cfg["conditions"] if c["kind"] == "baseline"}
    assert {"neighbour", "cooccurrence", "bigram"} <= baselines
    conds = {c["name"]: resolve(c["kind"], c.get("settings", {}), where=c["name"]) for c in cfg["conditions"]
             if c["kind"] != "baseline"}
    assert set(conds) == {"parametric", "oracle_retrieval", "parametric_no_episodes", "oracle_retrieval_no_episodes"}
    assert {c.model for c in conds.values()} == {"scratch"}
    assert {c.context for c in conds.values()} == {"none", "retrieval"}
    assert all(c.context_settings.method == "oracle" for c in conds.values() if c.context == "retrieval")
    settings = {n: c.model_settings for n, c in conds.items()}
    assert all(s.include_episodes == ("no_episodes" not in n) for n, s in settings.items())
    # each pair (parametric, oracle) shares one trained model; the ablation's differs only in what
    # needs the practice documents (their curriculum and their rebinding)
    key = {n: s.training_key() for n, s in settings.items()}
    assert key["parametric"] == key["oracle_retrieval"]
    assert key["parametric_no_episodes"] == key["oracle_retrieval_no_episodes"]
    # (and the step budget: a stopping rule's most may be sized to its learning curve, while the
    # ablation trains its whole budget, at least what the model it is compared with had)
    practice_only = ("include_episodes", "curriculum_steps", "fresh_bindings", "until_ready", "steps")
    same = lambda k: {a: b for a, b in k.items() if a not in practice_only}  # noqa: E731
    assert same(key["parametric"]) == same(key["parametric_no_episodes"])
    assert settings["parametric_no_episodes"].until_ready is None
    assert settings["parametric_no_episodes"].steps >= settings["parametric"].steps


def test_oracle_context_of_a_question_without_support_is_its_own(tmp_path):
    # relations' episode_in_context: nothing in training holds its pair, so nothing is retrieved
    ds = make_dataset("relations", 0, dict(balanced_distractors=False, n_relations=8, n_entities=16, n_episodes=12, n_filler=0,
                                           n_trained_questions=4, heldout_fraction=0.125, episode_facts=2,
                                           fresh_episode_fraction=1.0, n_episode_entities=12,
                                           episode_split=True))
    prepared = prepare(cell(ds, tmp_path), **{**TINY, "seq_len": 64}, steps=2, context="oracle", k=3)
    own = [q for q in ds.questions if q.split == "episode_in_context"]
    assert own and all(prepared.context_for(q).strip() == q.context for q in own)
    other = [q for q in ds.questions if q.split != "episode_in_context"]
    assert all(len(prepared.context_for(q).split("\n")) == 1 + 1 + 3 for q in other)


def test_codebook_practice_trains_on_its_targets_with_new_bindings_each_epoch(tmp_path, monkeypatch):
    ds = make_dataset("codebook", 0, {"n_codebooks": 2, "sequences_per_codebook": 6, "questions_per_codebook": 2,
                                      "n_fresh_episodes": 6, "practice_questions": 2, "targets": True,
                                      "rebind_practice": True, "n_repeats": 4})
    seen: list[tuple[list[int], list[int]]] = []
    orig = scratch.Packer.batch_for_step

    def record(self, step):
        ids, labels = orig(self, step)
        seen.extend(zip(ids, labels))
        return ids, labels

    monkeypatch.setattr(scratch.Packer, "batch_for_step", record)
    settings = {**TINY, "seq_len": 96, "steps": 12}
    prepared = prepare(cell(ds, tmp_path), **settings, loss="targets", fresh_bindings=True)
    tok = prepared.tokenizer
    practice_codes = set(ds.meta["rebind_pools"][1])
    labelled = [tok.convert_ids_to_tokens(l) for _, labels in seen for l in labels if l != scratch.IGNORE]
    assert labelled and "=" not in labelled and "->" not in labelled and "encode" not in labelled
    # over 12 steps of 4 rows the practice episodes were packed in several epochs, each time rebound
    texts = {tok.decode([t for t in ids if t != tok.pad_token_id]) for ids, _ in seen}
    rebound = {t for d in ds.documents if d.meta.get("fresh") for t in d.text.split()} & practice_codes
    used = {w for t in texts for w in t.split()} & practice_codes
    assert used - rebound  # code words no stored practice document holds: new bindings
    assert prepared.model_info.steps == 12


def test_symbol_targets_of_drills_can_stop_with_the_curriculum():
    """drill_symbol_targets: curriculum: the curriculum's packer trains a drill's symbols (the drills as
    stored), every later step's packer only their code words (the documents' late targets); documents
    with no late targets train the same in both."""
    cfg = {"n_codebooks": 2, "sequences_per_codebook": 6, "questions_per_codebook": 2, "n_fresh_episodes": 6,
           "practice_questions": 2, "targets": True, "rebind_practice": True, "n_repeats": 40,
           "drill_symbols": True, "encoding_form": "interleaved"}
    ds = make_dataset("codebook", 0, {**cfg, "drill_symbol_targets": "curriculum"})
    docs = fs.training_documents(ds, True)
    roles = fs._document_roles(ds, docs)
    plain = make_dataset("codebook", 0, cfg)
    assert "late_targets" not in fs._document_roles(plain, fs.training_documents(plain, True))
    texts = [d.text for d in docs]
    tok = scratch.build_tokenizer(scratch.vocabulary_of(texts))
    config = scratch.TrainConfig(**{**TINY, "seq_len": 96}, loss="targets", fresh_bindings=True, curriculum_steps=3)
    packer, early = scratch._packers(tok, texts, config, 0, **roles)
    letters = set("abcdefghijkl")
    keep = [i for i, e in enumerate(roles["early"]) if e]
    changed = 0
    for j, i in enumerate(keep):
        words = texts[i].split()
        assert early.targets[j] == docs[i].meta["targets"]
        assert packer.targets[i] == [k for k in docs[i].meta["targets"] if words[k] not in letters] \
            if docs[i].kind == "repeat" else packer.targets[i] == docs[i].meta["targets"]
        changed += packer.targets[i] != early.targets[j]
    assert changed > 0
