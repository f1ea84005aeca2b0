"""Codebook family [P2]: latent mappings are defined but never used; splits, leaks, determinism."""

import json
import re

import pytest

from genmodes.data.audit import audit_dataset
from genmodes.data.families import get_family, make_dataset
from genmodes.data.families.codebook import _SEQ, defines, encodes, parse_statements
from genmodes.errors import DataError

SMALL = {"n_codebooks": 3, "sequences_per_codebook": 30, "questions_per_codebook": 5}


@pytest.fixture(scope="module")
def ds():
    return make_dataset("codebook", seed=0)


def dump(d):
    return json.dumps([[x.to_json() for x in d.documents], [q.to_json() for q in d.questions],
                       [f.to_list() for f in d.knowledge], d.meta], sort_keys=True)


def test_same_seed_same_output_and_different_seed_differs():
    assert dump(make_dataset("codebook", 5, SMALL)) == dump(make_dataset("codebook", 5, SMALL))
    assert dump(make_dataset("codebook", 5, SMALL)) != dump(make_dataset("codebook", 6, SMALL))


def test_split_sizes_and_chance(ds):
    assert ds.splits == ["seen", "latent", "seen_in_context", "latent_in_context"]
    for s in ds.splits:
        assert len(ds.split(s)) == 12 * 20
        assert ds.chance(s) == pytest.approx(0.25)
    assert ds.meta["recall_splits"] == ["seen", "seen_in_context"]
    small = make_dataset("codebook", 0, SMALL)
    assert all(len(small.split(s)) == 15 for s in small.splits)


def test_audit_passes(ds):
    assert audit_dataset(ds).violations == []


def test_latent_mappings_are_defined_but_never_used(ds):
    books = ds.meta["codebooks"]
    used_in_sequences = {}
    for d in ds.documents:
        if d.kind == "definition":
            b = d.meta["codebook"]
            assert {f.relation.split()[1] for f in d.facts} == set(books[b]["map"])  # defined in full
        elif d.kind == "sequence":
            m = _SEQ.fullmatch(d.text.splitlines()[-1])
            used_in_sequences.setdefault(m.group(1), set()).update(m.group(2).split())
    for b, info in books.items():
        assert used_in_sequences[b] == set(info["used"])
        assert not used_in_sequences[b] & set(info["latent"])


def test_questions_ask_the_right_mapping_with_same_codebook_choices(ds):
    books = ds.meta["codebooks"]
    trained_text = {d.text.splitlines()[-1] for d in ds.documents if d.kind == "sequence"}
    for q in ds.questions:
        info = books[q.meta["codebook"]]
        sym = q.meta["symbol"]
        assert q.meta["latent"] == (sym in info["latent"]) == q.split.startswith("latent")
        assert q.choices[q.answer] == " " + info["map"][sym]
        # distractors: other code words of the same codebook, from the same (used / latent) pool
        pool = info["latent"] if q.meta["latent"] else info["used"]
        codes = {info["map"][s] for s in pool}
        assert {c.strip() for c in q.choices} <= codes and len(set(q.choices)) == len(q.choices)
        assert q.meta["sequence"].count(sym) == 1 and q.meta["sequence"][-1] == sym
        assert q.answer_text.splitlines()[-1] not in trained_text  # a new sequence, even for "seen"
        if q.meta["in_context"]:
            defn = ds.doc_index()[q.support[0]].text
            assert q.context.startswith(defn + "\n")
        assert q.premises == [defines(q.meta["codebook"], sym, info["map"][sym])]


def test_latent_answers_not_in_training(ds):
    texts = [d.text for d in ds.documents]
    stated = {f for d in ds.documents for f in d.facts}
    for q in ds.split("latent") + ds.split("latent_in_context"):
        assert not any(q.answer_text in t for t in texts)
        assert q.choice_facts[q.answer] not in stated


def test_small_vocabulary_whitespace_tokens(ds):
    vocab = ds.meta["vocabulary"]
    assert len(vocab) < 300
    assert {"codebook", "encode", "with", ":", "->", "=", ";", "."} <= set(vocab)


def test_parse_statements_round_trip(ds):
    for d in ds.documents:
        assert sorted(parse_statements(d.text)) == d.facts, d.id


def test_oracle_augmentations_use_latent_mappings(ds):
    aug = get_family("codebook").oracle_augmentations(ds)
    kn = set(ds.knowledge)
    got = {f for d in aug for f in d.facts}
    assert got <= kn
    for b, info in ds.meta["codebooks"].items():
        for s in info["latent"]:
            assert encodes(b, s, info["map"][s]) in got
    asked = {q.answer_text.splitlines()[-1] for q in ds.questions}
    assert not any(d.text in asked for d in aug)


def test_bad_config_is_one_clear_error():
    with pytest.raises(DataError, match="n_used"):
        make_dataset("codebook", 0, {"n_used": 12, "n_symbols": 12})
    with pytest.raises(DataError, match="n_choices"):
        make_dataset("codebook", 0, {"n_choices": 7})
    with pytest.raises(DataError, match="n_codebooks"):  # more code words than the word stream has
        make_dataset("codebook", 0, {"n_codebooks": 150, "sequences_per_codebook": 1})


def least_overlap(q):
    """The shortcut the seed's options allowed: the option least often in the sequence so far."""
    seq = q.context.split("->")[-1].split()
    counts = [seq.count(c.strip()) for c in q.choices]
    best = [i for i, n in enumerate(counts) if n == min(counts)]
    return (q.answer in best) / len(best)


def test_no_option_is_in_the_sequence_so_far_so_least_overlap_is_chance(ds):
    for s in ds.splits:
        qs = ds.split(s)
        for q in qs:
            assert not set(q.meta["sequence"][:-1]) & {
                sym for sym, code in ds.meta["codebooks"][q.meta["codebook"]]["map"].items()
                if " " + code in q.choices}
        assert sum(map(least_overlap, qs)) / len(qs) == pytest.approx(0.25)


def test_definition_forms():
    code_first = make_dataset("codebook", 0, SMALL)
    symbol_first = make_dataset("codebook", 0, {**SMALL, "definition_form": "symbol_first"})
    for d, pattern in ((code_first, r"codebook \S+ : [a-z]{2,} = [a-z] ;"),
                       (symbol_first, r"codebook \S+ : [a-z] = [a-z]{2,} ;")):
        defs = [x for x in d.documents if x.kind == "definition"]
        assert defs and all(re.match(pattern, x.text) for x in defs)
        for x in d.documents:
            assert sorted(parse_statements(x.text)) == x.facts, x.id
        assert audit_dataset(d).violations == []
    # the same mappings and questions either way, only the surface form of definitions differs
    assert code_first.meta["codebooks"] == symbol_first.meta["codebooks"]
    assert [q.choices for q in code_first.questions] == [q.choices for q in symbol_first.questions]


def test_definitions_only_inside_episodes():
    d = make_dataset("codebook", 0, {**SMALL, "standalone_definitions": False})
    assert not [x for x in d.documents if x.kind == "definition"]
    docs = d.doc_index()
    for q in d.questions:  # the support (what an oracle retrieves) is a training episode of the codebook
        sup = docs[q.support[0]]
        assert sup.kind == "sequence" and sup.meta["with_definition"] and sup.meta["codebook"] == q.meta["codebook"]
        assert set(q.premises) <= set(sup.facts)
    assert audit_dataset(d).violations == []


def test_fresh_episodes_are_practice_codebooks_with_a_new_mapping_each():
    d = make_dataset("codebook", 0, {**SMALL, "n_fresh_episodes": 30})
    plain = make_dataset("codebook", 0, SMALL)
    fresh = [x for x in d.documents if x.meta.get("fresh")]
    assert len(fresh) == 30
    real = set(d.meta["codebooks"])
    maps = set()
    for x in fresh:
        assert x.meta["codebook"] not in real and x.meta["with_definition"]
        defn, enc = x.text.splitlines()
        maps.add(defn.split(" : ", 1)[1])
        assert sorted(parse_statements(x.text)) == x.facts
    assert len(maps) == 30  # a new mapping every time: only the context tells the encoding
    # the real codebooks, their documents and the questions do not depend on the fresh episodes
    assert [x.to_json() for x in d.documents if not x.meta.get("fresh")] == [x.to_json() for x in plain.documents]
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in plain.questions]
    assert audit_dataset(d).violations == []


def test_definition_order_says_nothing_about_the_symbol():
    d = make_dataset("codebook", 0, {**SMALL, "p_definition_in_sequence": 0.5})
    alphabet = sorted(d.meta["codebooks"][d.questions[0].meta["codebook"]]["map"])
    orders = []
    for x in d.documents:
        if x.kind == "definition" or x.meta.get("with_definition"):
            defn = x.text.splitlines()[0]
            orders.append(tuple(re.findall(r"= ([a-z]) [;.]", defn)))
    assert len(orders) > 20 and all(sorted(o) == alphabet for o in orders)
    # no fixed slot per symbol (the seed's episodes and questions all had alphabet order)
    assert tuple(alphabet) not in orders and len(set(orders)) > len(orders) // 2
    seed_form = make_dataset("codebook", 0, {**SMALL, "shuffle_definitions": False})
    first = [x for x in seed_form.documents if x.id.endswith("-0") and x.kind == "definition"]
    assert all(tuple(re.findall(r"= ([a-z]) [;.]", x.text)) == tuple(alphabet) for x in first)


def test_practice_split_and_longer_practice_episodes():
    d = make_dataset("codebook", 0, {**SMALL, "n_fresh_episodes": 30, "fresh_min_len": 7, "fresh_max_len": 9,
                                     "practice_questions": 8})
    plain = make_dataset("codebook", 0, {**SMALL, "n_fresh_episodes": 30})
    for x in d.documents:
        if x.meta.get("fresh"):
            assert 7 <= len(_SEQ.fullmatch(x.text.splitlines()[1]).group(2).split()) <= 9
    # practice episode lengths leave the real codebooks' documents and questions as they were
    assert [x.to_json() for x in d.documents if not x.meta.get("fresh")] == \
        [x.to_json() for x in plain.documents if not x.meta.get("fresh")]
    assert [q.to_json() for q in d.questions if q.split != "practice_in_context"] == \
        [q.to_json() for q in plain.questions]
    qs = [q for q in d.questions if q.split == "practice_in_context"]
    trained_books = {x.meta["codebook"] for x in d.documents}
    know = set(d.knowledge)
    assert len(qs) == 8 and len({q.meta["codebook"] for q in qs}) == 8
    for q in qs:
        book = q.meta["codebook"]
        assert book not in trained_books and not q.support  # only the context defines it
        defn = parse_statements(q.context.splitlines()[0])
        code = q.choices[q.answer].strip()
        assert defines(book, q.meta["symbol"], code) in defn
        assert [f in know for f in q.choice_facts] == [i == q.answer for i in range(len(q.choices))]
    assert audit_dataset(d).violations == []
    with pytest.raises(DataError, match="practice_questions"):
        make_dataset("codebook", 0, {**SMALL, "practice_questions": 3})


# ------------------------------------------------------------------------------ practice that cannot be memorised

PRACTICE = {**SMALL, "n_fresh_episodes": 30, "practice_questions": 6, "targets": True, "rebind_practice": True,
            "n_repeats": 40, "repeat_min_len": 2, "repeat_max_len": 6, "repeat_reversed": 0.5}


@pytest.fixture(scope="module")
def practice():
    return make_dataset("codebook", 0, PRACTICE)


def _targets_words(doc):
    words = doc.text.split()
    return [words[i] for i in doc.meta["targets"]]


def test_targets_are_the_codes_after_the_arrow_and_the_symbols_after_each_equals(practice):
    books = practice.meta["codebooks"]
    kinds = set()
    for d in practice.documents:
        words = d.text.split()
        arrow = words.index("->") if "->" in words else None
        after_arrow = list(range(arrow + 1, len(words))) if arrow is not None else []
        after_eq = [i + 1 for i, w in enumerate(words) if w == "="]
        if d.kind == "repeat":
            continue
        if d.meta.get("fresh"):  # a practice episode: its random definition carries no loss
            kinds.add("practice")
            assert after_eq and d.meta["targets"] == after_arrow
        elif d.kind == "definition":
            kinds.add("definition")
            assert d.meta["targets"] == after_eq
            assert set(_targets_words(d)) == set(books[d.meta["codebook"]]["map"])  # the symbols (code_first)
        else:
            kinds.add("episode" if d.meta["with_definition"] else "sequence")
            assert d.meta["targets"] == (after_eq if d.meta["with_definition"] else []) + after_arrow
            m = _SEQ.fullmatch(d.text.splitlines()[-1])
            assert _targets_words(d)[-len(after_arrow):] == m.group(3).split()  # the code words
    assert kinds == {"practice", "definition", "episode", "sequence"}
    # symbol_first definitions: the word after "=" is the code
    sf = make_dataset("codebook", 0, {**SMALL, "targets": True, "definition_form": "symbol_first"})
    d = next(x for x in sf.documents if x.kind == "definition")
    assert set(_targets_words(d)) == set(sf.meta["codebooks"][d.meta["codebook"]]["map"].values())


def test_without_the_new_settings_the_dataset_is_as_before(practice):
    plain = make_dataset("codebook", 0, {**SMALL, "n_fresh_episodes": 30, "practice_questions": 6})
    assert not any("targets" in d.meta for d in plain.documents) and "rebind_pools" not in plain.meta
    assert set(plain.config) == set(make_dataset("codebook", 0, SMALL).config)  # the new settings are not dumped
    # the settings add targets, pools and drills; texts, questions and knowledge stay
    strip = [d.text for d in practice.documents if d.kind != "repeat"]
    assert strip == [d.text for d in plain.documents]
    assert [q.to_json() for q in practice.questions] == [q.to_json() for q in plain.questions]
    assert practice.knowledge == plain.knowledge
    assert practice.meta["calibration_splits"] == plain.meta["calibration_splits"] == {"practice_in_context": 0.9}
    assert "calibration_splits" not in make_dataset("codebook", 0, {**SMALL, "n_fresh_episodes": 30}).meta
    with pytest.raises(DataError, match="rebind_practice"):
        make_dataset("codebook", 0, {**SMALL, "rebind_practice": True})
    with pytest.raises(DataError, match="repeat_max_len"):
        make_dataset("codebook", 0, {**SMALL, "n_repeats": 3, "repeat_max_len": 99})


def test_drills_repeat_a_run_of_practice_codes_and_train_on_its_second_run(practice):
    codes = set(practice.meta["rebind_pools"][1])
    drills = [d for d in practice.documents if d.kind == "repeat"]
    assert len(drills) == 40 and all(d.meta["fresh"] for d in drills)
    reversed_ = 0
    for d in drills:
        words = d.text.split()
        n = len(words) // 2
        run, second = words[:n], words[n:]
        assert 2 <= n <= 6 and len(set(run)) == n and set(run) <= codes
        assert second in (run, run[::-1])
        reversed_ += second != run
        assert d.meta["targets"] == list(range(n + 1, 2 * n))  # the second run but its first word
    assert 5 <= reversed_ <= 35  # a share of them reversed


def test_rebinding_gives_practice_a_new_mapping_every_epoch_and_leaves_the_real_codebooks(practice):
    from genmodes.conditions.from_scratch import _document_roles, dataset_vocabulary
    from genmodes.training import scratch

    tok = scratch.build_tokenizer(dataset_vocabulary(practice))
    docs = practice.documents
    roles = _document_roles(practice, docs)
    assert roles["pools"] == practice.meta["rebind_pools"] and len(roles["pools"]) == 2
    ids = [tok(d.text, add_special_tokens=False).input_ids for d in docs]
    pools = [tok.convert_tokens_to_ids(p) for p in roles["pools"]]
    packer = scratch.Packer(ids, 200, 4, 0, tok.eos_token_id, tok.pad_token_id, roles["targets"], roles["fresh"], pools)
    real_words = {c for info in practice.meta["codebooks"].values() for c in info["map"].values()}
    real_words |= set(practice.meta["codebooks"])
    changed = 0
    for i, d in enumerate(docs):
        texts = [tok.decode(packer._piece(e, i)[0][1:]) for e in (0, 1)]
        if not d.meta.get("fresh"):
            assert texts == [d.text.replace("\n", " ")] * 2  # real codebooks: never rebound
            continue
        assert not real_words & set(" ".join(texts).split())
        if d.kind == "repeat":
            continue
        maps = []
        for t in texts:  # each epoch's episode is a consistent codebook: its encoding follows its definition
            definition = {f.object: f.relation.split()[1] for f in parse_statements(t.split(" encode ")[0])}
            m = _SEQ.fullmatch("encode " + t.split(" encode ")[1])
            assert [definition[c] for c in m.group(3).split()] == m.group(2).split()
            maps.append(definition)
        changed += maps[0] != maps[1]
    assert changed == 30  # a new mapping for every practice episode
    # the labels follow the targets: a practice episode trains on its codes after "->" only
    i = next(k for k, d in enumerate(docs) if d.meta.get("fresh") and d.kind == "sequence")
    piece, labels = packer._piece(0, i)
    assert [k - 1 for k, l in enumerate(labels) if l != scratch.IGNORE] == docs[i].meta["targets"]


def test_practice_questions_stay_over_never_trained_codebooks(practice):
    trained = {w for d in practice.documents for w in d.text.split()} | {w for p in practice.meta["rebind_pools"]
                                                                        for w in p}
    qs = [q for q in practice.questions if q.split == "practice_in_context"]
    assert len(qs) == 6 and all(q.meta["codebook"] not in trained for q in qs)
    assert audit_dataset(practice).violations == []


def test_the_no_episodes_ablation_keeps_targets_on_the_codes():
    from genmodes.conditions.from_scratch import training_documents

    d = make_dataset("codebook", 0, {**SMALL, "targets": True, "n_repeats": 5})
    kept = training_documents(d, include_episodes=False)
    assert not any(x.meta.get("fresh") for x in kept)  # drills are practice: left out with the episodes
    stripped = [x for x in kept if x.kind == "sequence"]
    assert stripped and all("\n" not in x.text for x in stripped)
    for x in stripped:
        assert _targets_words(x) == _SEQ.fullmatch(x.text).group(3).split()


def test_practice_over_the_real_codebooks_code_words_is_rebound_among_them(practice):
    from genmodes.conditions.from_scratch import _document_roles

    d = make_dataset("codebook", 0, {**PRACTICE, "real_code_drills": 0.5, "real_code_episodes": 0.5})
    real = [c for info in d.meta["codebooks"].values() for c in info["map"].values()]
    assert d.meta["rebind_pools"][2] == real  # a pool of their own: rebound among themselves
    own = [x for x in d.documents if x.meta.get("real_words")]
    drills = [x for x in own if x.kind == "repeat"]
    episodes = [x for x in own if x.kind == "sequence"]
    assert drills and episodes and all(x.meta["fresh"] for x in own)
    assert all(set(x.text.split()) <= set(real) for x in drills)
    for x in episodes:  # a practice codebook's mapping over real code words; its codes are its targets
        codes = x.text.split("->")[1].split()
        assert set(codes) <= set(real) and x.meta["codebook"] in d.meta["rebind_pools"][0]
        assert _targets_words(x) == codes
    # practice over real words waits for the curriculum's second part; the rest of practice starts it
    roles = _document_roles(d, d.documents)
    assert [i for i, e in enumerate(roles["early"]) if e] == [
        i for i, x in enumerate(d.documents) if x.meta.get("fresh") and not x.meta.get("real_words")]
    # the same streams otherwise: the real codebooks and questions are unchanged, the defaults not dumped
    assert [x.text for x in d.documents if not x.meta.get("fresh")] == \
        [x.text for x in practice.documents if not x.meta.get("fresh")]
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in practice.questions]
    assert "real_code_drills" not in practice.config
    with pytest.raises(DataError, match="real_code_drills"):
        make_dataset("codebook", 0, {**SMALL, "real_code_drills": 0.5})


def test_practice_episodes_can_define_a_known_codebooks_name_over_practice_words(practice):
    """real_name_episodes: a share of practice episodes defines a real codebook's name with a new
    mapping over the practice code words (so a definition in context is read even where the name is
    known), never a real code word; the name is rebound among the real names each epoch, the episodes
    wait for the curriculum's second part, and everything else is drawn as without them."""
    from genmodes.conditions.from_scratch import _document_roles

    d = make_dataset("codebook", 0, {**PRACTICE, "real_name_episodes": 0.5})
    books = list(d.meta["codebooks"])
    real_codes = {c for info in d.meta["codebooks"].values() for c in info["map"].values()}
    named = [x for x in d.documents if x.meta.get("real_name")]
    assert 0 < len(named) < 30 and d.meta["rebind_pools"][-1] == books
    for x in named:
        assert x.meta["codebook"] in books and x.text.split()[1] == x.meta["codebook"]
        assert x.meta["fresh"] and x.meta["real_words"]
        words = set(x.text.split())
        assert not words & real_codes and words & set(d.meta["rebind_pools"][1])
        # its own mapping, not the real one: the codes it uses are practice words
        assert _targets_words(x) and set(_targets_words(x)) <= set(d.meta["rebind_pools"][1])
    roles = _document_roles(d, d.documents)
    assert not any(roles["early"][i] for i, x in enumerate(d.documents) if x.meta.get("real_name"))
    unnamed = [x.text for x in d.documents if not x.meta.get("real_name")]
    same = [x.text for x, y in zip(practice.documents, d.documents) if not y.meta.get("real_name")]
    assert unnamed == same  # the other episodes, the drills and the real codebooks are unchanged
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in practice.questions]
    assert "real_name_episodes" not in practice.config
    with pytest.raises(DataError, match="real_name_episodes"):
        make_dataset("codebook", 0, {**SMALL, "real_name_episodes": 0.5})


def test_known_name_questions_are_a_second_rung_read_from_the_context_alone(practice):
    """known_name_in_context: a real codebook's name defined in the context with a new mapping over
    other real codebooks' code words; the answer is the definition's code for the asked symbol, no
    option is one of the name's own code words, and the split is a calibration rung beside
    practice_in_context. Its mappings are not knowledge (they contradict the real ones), so the audit
    finds nothing to flag."""
    from genmodes.data.audit import audit_dataset

    d = make_dataset("codebook", 0, {**PRACTICE, "real_name_episodes": 0.5, "known_name_questions": 8})
    assert d.meta["calibration_splits"] == {"practice_in_context": 0.9, "known_name_in_context": 0.9}
    books = set(d.meta["codebooks"])
    real_codes = {c for info in d.meta["codebooks"].values() for c in info["map"].values()}
    qs = d.split("known_name_in_context")
    assert len(qs) == 8
    for q in qs:
        definition, query = q.context.split("\n")
        assert q.meta["codebook"] in books and definition.split()[1] == q.meta["codebook"]
        mapping = {sym: code for code, sym in re.findall(r"(\S+) = (\S+)", definition)}
        assert q.choices[q.answer] == " " + mapping[q.meta["symbol"]] and q.meta["sequence"][-1] == q.meta["symbol"]
        assert query.startswith(f"encode with {q.meta['codebook']} :")
        own = set(d.meta["codebooks"][q.meta["codebook"]]["map"].values())
        assert {c.strip() for c in q.choices} <= real_codes - own and not q.choice_facts
    assert audit_dataset(d, baselines=False).violations == []
    # the other questions are drawn as without the rung
    assert [q.to_json() for q in d.questions if q.split != "known_name_in_context"] == \
        [q.to_json() for q in make_dataset("codebook", 0, {**PRACTICE, "real_name_episodes": 0.5}).questions]


def test_practice_episodes_can_hold_a_distractor_definition(practice):
    """practice_distractors: a share of practice episodes also define another practice codebook
    (before or after their own), as a retrieved context holds the support among distractors; the
    episode still uses its own codebook, whose codes are its only targets; the rest is drawn as
    without them."""
    d = make_dataset("codebook", 0, {**PRACTICE, "practice_distractors": 0.5})
    books = set(d.meta["rebind_pools"][0])
    two = [x for x in d.documents if x.meta.get("fresh") and x.text.count("codebook ") == 2]
    assert 0 < len(two) < 30
    firsts = set()
    for x in two:
        *defs, use = x.text.split("\n")
        names = [t.split()[1] for t in defs]
        own = x.meta["codebook"]
        assert len(defs) == 2 and own in names and len(set(names)) == 2 and set(names) <= books
        assert use.startswith(f"encode with {own} :")
        mapping = {sym: code for code, sym in re.findall(r"(\S+) = (\S+)", defs[names.index(own)])}
        assert _targets_words(x) == [mapping[sym] for sym in re.findall(r"(\S+) ->", use)] or \
            _targets_words(x) == use.split("->", 1)[1].split()
        firsts.add(names[0] == own)
    assert firsts == {True, False}  # the distractor comes before and after
    assert [x.text for x in d.documents if x not in two] == \
        [x.text for x, y in zip(practice.documents, d.documents) if y not in two]
    assert [q.to_json() for q in d.questions] == [q.to_json() for q in practice.questions]
    assert "practice_distractors" not in practice.config


def test_drills_can_copy_only_the_used_mappings_code_words(practice):
    """real_code_drill_pool: used keeps every latent use's answer out of practice: the drills over real
    code words copy (and are rebound among) the codes of the used mappings only."""
    d = make_dataset("codebook", 0, {**PRACTICE, "real_code_drills": 0.5, "real_code_drill_pool": "used"})
    info = d.meta["codebooks"]
    latent = {info[b]["map"][x] for b in info for x in info[b]["latent"]}
    used = {info[b]["map"][x] for b in info for x in info[b]["used"]}
    drills = [x for x in d.documents if x.kind == "repeat" and x.meta.get("real_words")]
    assert drills and all(set(x.text.split()) <= used for x in drills)
    assert set(d.meta["rebind_pools"][2]) == used and not used & latent
    with pytest.raises(DataError, match="real_code_drill_pool"):
        make_dataset("codebook", 0, {**PRACTICE, "real_code_drills": 0.5, "real_code_episodes": 0.5,
                                     "real_code_drill_pool": "used"})


# ------------------------------------------------------------------------------ interleaved encodings

INTERLEAVED = {**PRACTICE, "encoding_form": "interleaved"}


def test_interleaved_encodings_put_each_code_right_after_its_symbol():
    ds = make_dataset("codebook", 0, INTERLEAVED)
    aligned = make_dataset("codebook", 0, PRACTICE)
    # with code words of its own, each code is written next to one symbol in the definitions, and the
    # asked symbol ends an interleaved question: the neighbour baseline answers a latent use from that
    # (the design the shared code words replace); the aligned form ends on a code word
    assert [v for v in audit_dataset(ds).violations if "neighbour" in v] and \
        all("neighbour" in v for v in audit_dataset(ds).violations)
    assert audit_dataset(aligned).violations == []
    assert audit_dataset(make_dataset("codebook", 0, {**INTERLEAVED, "n_codebooks": 12, "n_symbols": 12, "n_used": 6,
                                                      "code_words": "shared"})).violations == []
    books = ds.meta["codebooks"]
    for d, a in zip(ds.documents, aligned.documents):
        assert sorted(parse_statements(d.text)) == d.facts == a.facts, d.id  # the same facts, another text
        last = d.text.splitlines()[-1]
        if "->" not in last:
            assert d.text == a.text and d.meta.get("targets") == a.meta.get("targets")
            continue
        pairs = [p.split(" -> ") for p in last.split(" : ", 1)[1].split(" ; ")]
        words = d.text.split()
        arrows = [i + 1 for i, w in enumerate(words) if w == "->"]
        assert [words[i] for i in arrows] == [c for _, c in pairs]
        eq = [i + 1 for i, w in enumerate(words) if w == "="]
        assert d.meta["targets"] == ([] if d.meta.get("fresh") else eq) + arrows  # the loss on each code
        if d.kind == "sequence" and not d.meta.get("fresh"):
            m = books[d.meta["codebook"]]["map"]
            assert all(m[s] == c for s, c in pairs)
    for q, a in zip(ds.questions, aligned.questions):
        assert (q.choices, q.answer, q.meta["sequence"]) == (a.choices, a.answer, a.meta["sequence"])
        tail = q.context.splitlines()[-1]
        assert tail.endswith(f" {q.meta['sequence'][-1]} ->")  # the asked symbol right before the arrow
        shown = [p.split(" -> ") for p in tail[: -len(" ->")].split(" : ", 1)[1].split(" ; ")[:-1]]
        assert [s for s, _ in shown] == q.meta["sequence"][:-1]
        if not q.meta.get("practice"):
            m = books[q.meta["codebook"]]["map"]
            assert all(m[s] == c for s, c in shown)
        assert not any(c.strip() in tail.split() for c in q.choices)  # no option earlier in the encoding


def test_distinct_practice_encodings_read_every_code_from_the_definition():
    ds = make_dataset("codebook", 0, {**INTERLEAVED, "fresh_distinct": True, "fresh_min_len": 6, "fresh_max_len": 12})
    fresh = [d for d in ds.documents if d.meta.get("fresh") and d.kind == "sequence"]
    assert fresh and audit_dataset(ds, baselines=False).violations == []
    lengths = set()
    for d in fresh:
        syms = [p.split(" -> ")[0] for p in d.text.splitlines()[-1].split(" : ", 1)[1].split(" ; ")]
        assert len(syms) == len(set(syms)) and 6 <= len(syms) <= 12
        lengths.add(len(syms))
    assert len(lengths) > 1
    with pytest.raises(DataError, match="fresh_max_len"):
        make_dataset("codebook", 0, {**INTERLEAVED, "fresh_distinct": True, "fresh_max_len": 13})


def test_drill_symbols_put_the_input_symbols_in_practice_drills_only():
    cfg = {**INTERLEAVED, "real_code_drills": 0.3, "n_repeats": 200}
    plain = make_dataset("codebook", 0, cfg)
    ds = make_dataset("codebook", 0, {**cfg, "drill_symbols": True})
    letters = set("abcdefghijkl")
    drills = [d for d in ds.documents if d.kind == "repeat"]
    with_symbols = [d for d in drills if set(d.text.split()) & letters]
    assert with_symbols and not any(d.meta.get("real_words") for d in with_symbols)
    assert any(d.meta.get("real_words") for d in drills)
    for d in drills:
        words = d.text.split()
        n = len(words) // 2
        assert words[n:] in (words[:n], words[:n][::-1])
    assert not any(set(d.text.split()) & letters for d in plain.documents if d.kind == "repeat")
    assert [d.text for d in ds.documents if d.kind != "repeat"] == [d.text for d in plain.documents if d.kind != "repeat"]


def test_drill_symbols_can_be_keys_only_with_no_loss_on_them():
    """drill_symbol_targets: false keeps the symbols in the drills (matching a symbol with its earlier
    copy is still practised) but takes them out of the drills' targets, so no drill trains a symbol's
    output; every other document, and every code word target, is as with the default."""
    cfg = {**INTERLEAVED, "real_code_drills": 0.3, "n_repeats": 200, "drill_symbols": True}
    on = make_dataset("codebook", 0, cfg)
    off = make_dataset("codebook", 0, {**cfg, "drill_symbol_targets": "never"})
    letters = set("abcdefghijkl")
    assert [d.text for d in off.documents] == [d.text for d in on.documents]
    masked = 0
    for a, b in zip(on.documents, off.documents):
        if a.kind != "repeat":
            assert a.meta == b.meta
            continue
        words = a.text.split()
        assert b.meta["targets"] == [i for i in a.meta["targets"] if words[i] not in letters]
        masked += len(a.meta["targets"]) - len(b.meta["targets"])
        assert any(words[i] in letters for i in a.meta["targets"]) == (a.meta["targets"] != b.meta["targets"])
    assert masked > 0
    assert "drill_symbol_targets" not in on.config and off.config["drill_symbol_targets"] == "never"
    late = make_dataset("codebook", 0, {**cfg, "drill_symbol_targets": "curriculum"})
    for a, b in zip(on.documents, late.documents):  # stored as always; after the curriculum, as never
        assert b.meta["targets"] == a.meta["targets"]
        assert b.meta.get("late_targets", b.meta["targets"]) == off.documents[on.documents.index(a)].meta["targets"]


# ------------------------------------------------------------------------------ shared code words

SHARED = {"n_codebooks": 12, "n_symbols": 12, "n_used": 6, "sequences_per_codebook": 20, "questions_per_codebook": 5,
          "encoding_form": "interleaved", "code_words": "shared"}


@pytest.fixture(scope="module")
def shared():
    return make_dataset("codebook", 0, SHARED)


def test_shared_code_words_are_latin_squares_with_latent_code_words(shared):
    """Every codebook maps the alphabet onto one set of n_symbols code words; in each block of
    n_symbols codebooks a word stands for each symbol once (a Latin square); a mapping is latent
    exactly when its word is a latent word, so a latent word is the output of no training sequence."""
    books = shared.meta["codebooks"]
    words = {c for info in books.values() for c in info["map"].values()}
    assert len(words) == 12 and all(set(info["map"].values()) == words for info in books.values())
    for s in "abcdefghijkl":
        assert len({info["map"][s] for info in books.values()}) == 12
    latent_words = {info["map"][s] for info in books.values() for s in info["latent"]}
    used_words = {info["map"][s] for info in books.values() for s in info["used"]}
    assert len(latent_words) == len(used_words) == 6 and not latent_words & used_words
    assert all(len(info["used"]) == 6 for info in books.values())
    outputs = {c for d in shared.documents if d.kind == "sequence" for c in re.findall(r"-> (\S+)", d.text)}
    assert outputs == used_words
    assert audit_dataset(shared, baselines=False).violations == []
    # a partial block (fewer codebooks than symbols) keeps the Latin property within it; more codebooks
    # than symbols start a new square
    many = make_dataset("codebook", 0, {**SHARED, "n_codebooks": 17})
    maps = list(many.meta["codebooks"].values())
    for block in (maps[:12], maps[12:]):
        for s in "abcdefghijkl":
            assert len({m["map"][s] for m in block}) == len(block)
    assert dump(make_dataset("codebook", 0, SHARED)) == dump(shared)


def test_shared_code_words_leave_only_book_and_symbol_together_to_answer_a_latent_use(shared):
    """A latent question's options are all the codebook's words, and each stands for the asked symbol
    in exactly one codebook, where that mapping is latent too: neither the symbol's associations nor the
    codebook's pick the answer (the own-words design let the symbol alone pick it: a code word belonged
    to one codebook and stood next to one symbol). The audit's baselines stay at chance."""
    books = shared.meta["codebooks"]
    for q in shared.split("latent"):
        b, s = q.meta["codebook"], q.meta["symbol"]
        for c in q.choices:
            c = c.strip()
            assert c in books[b]["map"].values()
            where = [x for x, info in books.items() if info["map"][s] == c]
            assert len(where) == 1 and s in books[where[0]]["latent"]
        assert q.choices[q.answer].strip() == books[b]["map"][s]
    rep = audit_dataset(shared)
    assert not [r for r in rep.baselines if r.split == "latent" and r.p_value < r.alpha]


def test_known_name_rung_over_shared_words_never_offers_the_names_own_code():
    d = make_dataset("codebook", 0, {**SHARED, "n_fresh_episodes": 30, "real_name_episodes": 0.5,
                                     "known_name_questions": 24})
    books = d.meta["codebooks"]
    qs = d.split("known_name_in_context")
    assert len(qs) == 24
    for q in qs:
        definition = q.context.split("\n")[0]
        mapping = {sym: code for code, sym in re.findall(r"(\S+) = (\S+)", definition)}
        assert q.choices[q.answer] == " " + mapping[q.meta["symbol"]]
        own = books[q.meta["codebook"]]["map"][q.meta["symbol"]]
        assert own not in {c.strip() for c in q.choices}


def test_a_practice_distractor_definition_can_map_the_episodes_own_words():
    """distractor_words: same: the distractor definition permutes the episode's own code words, as a
    retrieved real definition does with shared code words, so only the name tells which to read."""
    base = {**SHARED, "n_fresh_episodes": 40, "practice_distractors": 1.0}
    same = make_dataset("codebook", 0, {**base, "distractor_words": "same"})
    own = make_dataset("codebook", 0, base)
    seen_same = 0
    for d, o in zip(same.documents, own.documents):
        if not d.meta.get("fresh"):
            assert d.text == o.text
            continue
        *defs, _ = d.text.split("\n")
        assert len(defs) == 2
        words = [set(re.findall(r"(\S+) = \S+", x)) for x in defs]
        assert words[0] == words[1] and defs[0] != defs[1]
        seen_same += 1
    assert seen_same == 40
    with pytest.raises(DataError, match="distractor_words"):
        make_dataset("codebook", 0, {**SHARED, "distractor_words": "same"})
