import pytest

from genmodes.scoring import ScoringError, Scorer, accuracy, chosen, encode_pair, naive_score

REQUESTS = [
    ("The capital of France is", [" Paris", " London", " a city in Europe"]),
    ("Glon are brighter than femp. Femp are", [" dimmer than glon.", " brighter than glon."]),
    ("Q: 2+2= ", ["4", "5"]),  # trailing space moves into the continuation
    ("", [" hello", "x"]),  # nothing to condition on
]
PREFIX = "Use these documents.\n\nGlon are brighter than femp.\nDax are a type of fep.\n\n"


def _assert_matches_naive(model, tok, prefix, batch_tokens):
    fast = Scorer(model, tok, batch_tokens=batch_tokens).score(REQUESTS, prefix=prefix)
    for (ctx, choices), got in zip(REQUESTS, fast):
        ref = naive_score(model, tok, ctx, choices, prefix=prefix)
        assert [s.choice for s in got] == list(choices)
        for a, b in zip(got, ref):
            assert a.n_tokens == b.n_tokens
            assert a.is_greedy == b.is_greedy
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


@pytest.mark.parametrize("prefix", ["", PREFIX])
@pytest.mark.parametrize("batch_tokens", [16, 4096])  # tiny budget forces many small batches
def test_matches_naive_reference_tiny(tiny, prefix, batch_tokens):
    _assert_matches_naive(*tiny, prefix, batch_tokens)


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["", PREFIX])
def test_matches_naive_reference_bundled(smollm, prefix):
    _assert_matches_naive(*smollm, prefix, 4096)


def test_long_prefix_is_chunked_and_still_exact(tiny):
    model, tok = tiny
    prefix = "Glon are brighter than femp. " * 40  # ~1200 byte tokens, several chunks of 256
    fast = Scorer(model, tok, prefix_chunk=256).score(REQUESTS[:2], prefix=prefix)
    for (ctx, choices), got in zip(REQUESTS[:2], fast):
        for a, b in zip(got, naive_score(model, tok, ctx, choices, prefix=prefix)):
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


def test_choice_order_does_not_change_scores(tiny):
    model, tok = tiny
    ctx, choices = REQUESTS[0]
    s = Scorer(model, tok)
    fwd = {c.choice: c.logprob for c in s.score([(ctx, choices)])[0]}
    rev = {c.choice: c.logprob for c in s.score([(ctx, list(reversed(choices)))])[0]}
    assert fwd.keys() == rev.keys()
    for k in fwd:
        assert fwd[k] == pytest.approx(rev[k], abs=1e-5)


def test_prefix_changes_scores_and_is_reused(tiny):
    model, tok = tiny
    s = Scorer(model, tok)
    a = s.score(REQUESTS[:1])[0][0].logprob
    b = s.score(REQUESTS[:1], prefix=PREFIX)[0][0].logprob
    cached = s._prefix
    c = s.score(REQUESTS[1:2], prefix=PREFIX)
    assert s._prefix is cached  # same prefix: its KV cache is not recomputed
    assert a != pytest.approx(b, abs=1e-6)
    assert len(c[0]) == 2


@pytest.mark.slow
def test_bundled_model_knows_paris(smollm):
    model, tok = smollm
    scores = Scorer(model, tok).score([("The capital of France is", [" Paris", " London"])])[0]
    assert scores[0].logprob > scores[1].logprob
    assert scores[0].is_greedy and not scores[1].is_greedy
    assert chosen(scores) == 0


def test_empty_choice_list_and_empty_choice_are_errors(tiny):
    model, tok = tiny
    s = Scorer(model, tok)
    with pytest.raises(ScoringError, match="no choices"):
        s.score([("context", [])])
    with pytest.raises(ScoringError, match="empty choice"):
        s.score([("context", [" a", ""])])
    with pytest.raises(ScoringError, match="list of strings"):
        s.score([("context", " a")])


def test_trailing_space_moves_to_continuation(tiny):
    _, tok = tiny
    ctx, cont = encode_pair(tok, "Answer: ", "4")
    assert tok.decode(ctx) == "Answer:" and tok.decode(cont) == " 4"


def test_accuracy_and_normalised_accuracy_from_same_scores(tiny):
    from genmodes.scoring import ChoiceScore

    # choice 1 has the higher total log-prob; choice 0 is better per character
    q = [ChoiceScore(" a long option", -7.0, 3, False), ChoiceScore(" b", -6.0, 1, False)]
    assert chosen(q) == 1 and chosen(q, normalized=True) == 0
    assert accuracy([q], [1]) == 1.0 and accuracy([q], [1], normalized=True) == 0.0


# ------------------------------------------------------------------- per-question contexts (issue 16)

def _retrieval_like(n: int) -> list[tuple[str, list[str]]]:
    """Questions with their own contexts of differing lengths and choices of differing token lengths."""
    reqs = []
    for i in range(n):
        docs = " ".join(f"Doc {j}: glon{i} are brighter than femp{j}." for j in range(1 + (i * 7) % 5))
        ctx = f"Use these documents.\n\n{docs}\n\nQ{i}: femp are" + (" " if i % 3 == 0 else "")
        choices = [" dimmer.", "x", f" brighter than glon{i} and every other thing here.", " a"][: 2 + i % 3]
        reqs.append((ctx, choices))
    return reqs


def _assert_same(model, tok, reqs, prefix, **kw):
    fast = Scorer(model, tok, **kw).score(reqs, prefix=prefix)
    for (ctx, choices), got in zip(reqs, fast):
        ref = naive_score(model, tok, ctx, choices, prefix=prefix)
        assert [s.choice for s in got] == list(choices)
        for a, b in zip(got, ref):
            assert (a.n_tokens, a.is_greedy) == (b.n_tokens, b.is_greedy)
            assert a.logprob == pytest.approx(b.logprob, abs=1e-4)


@pytest.mark.parametrize("prefix", ["", PREFIX])
# 8 tokens: every question is a long context (its KV first, then its choices); rows of 60 or 150
# tokens: a few questions per row, rows of differing lengths padded into one batch and split at
# varying boundaries (batch_tokens 300); 100000: everything in one row and one forward.
@pytest.mark.parametrize("packed,row,batch", [(8, 256, 8), (60, 60, 4096), (100000, 150, 300),
                                              (100000, 100000, 100000)])
def test_per_question_contexts_match_naive(tiny, prefix, packed, row, batch):
    _assert_same(*tiny, _retrieval_like(9) + REQUESTS, prefix, packed_tokens=packed, row_tokens=row,
                 batch_tokens=batch)


def test_eager_attention_takes_the_additive_mask(tiny):
    model, tok = tiny
    before = model.config._attn_implementation
    model.set_attn_implementation("eager")
    try:
        assert model.config._attn_implementation == "eager"
        _assert_same(model, tok, _retrieval_like(5), "", row_tokens=120)
        _assert_same(model, tok, _retrieval_like(3), PREFIX)
    finally:
        model.set_attn_implementation(before)


def test_max_batch_boundary_matches_naive(tiny):
    _assert_same(*tiny, _retrieval_like(7), "", max_batch=2)


@pytest.mark.slow
def test_per_question_contexts_match_naive_bundled(smollm):
    _assert_same(*smollm, _retrieval_like(4) + REQUESTS[2:], "")


def test_each_context_is_run_once(tiny):
    """The model sees every question's context once and every choice token once, nothing else
    (padding aside)."""
    model, tok = tiny
    reqs = _retrieval_like(6)
    shapes, real = [], []

    def hook(module, args, out):
        shapes.append(tuple(args[0].shape))
        real.append(int((args[0] != tok.pad_token_id).sum()))

    handle = model.model.embed_tokens.register_forward_hook(hook)
    try:
        Scorer(model, tok, row_tokens=70, batch_tokens=300).score(reqs)
    finally:
        handle.remove()
    want = 0
    for ctx, choices in reqs:
        ctx_ids = encode_pair(tok, ctx, choices[0])[0]
        want += len(ctx_ids) + sum(len(encode_pair(tok, ctx, c)[1]) for c in choices)
    assert sum(real) == want
    assert len(shapes) > 1 and any(b > 1 for b, _ in shapes)  # several forwards, some of several rows


@pytest.mark.parametrize("prefix", ["", PREFIX * 12])  # ~1,000 byte tokens: several chunks of 256
@pytest.mark.parametrize("packed,row,batch", [(40, 256, 8), (60, 60, 4096), (100000, 150, 300)])
def test_plan_is_the_forwards_score_makes(tiny, prefix, packed, row, batch):
    """What the dry run costs is what scoring runs: every model call, its rows, width and cached
    tokens, and the LM head's positions, in order (long contexts alone, the prefix in chunks)."""
    from genmodes.scoring import CACHE_KW, Forward, encode_prefix

    model, tok = tiny
    reqs = _retrieval_like(9) + REQUESTS
    calls, heads = [], []

    def hook(module, args, kwargs):
        ids, cache = kwargs["input_ids"], kwargs.get(CACHE_KW)
        calls.append((tuple(ids.shape), cache.get_seq_length() if cache is not None else 0))

    handles = [model.model.register_forward_pre_hook(hook, with_kwargs=True),
               model.lm_head.register_forward_hook(lambda m, a, out: heads.append(out.shape[-2]))]
    scorer = Scorer(model, tok, prefix_chunk=256, packed_tokens=packed, row_tokens=row, batch_tokens=batch)
    try:
        scorer.score(reqs, prefix=prefix)
    finally:
        for h in handles:
            h.remove()
    plan = Scorer(model, tok, prefix_chunk=256, packed_tokens=packed, row_tokens=row, batch_tokens=batch).plan(
        reqs, prefix=prefix)
    assert all(isinstance(f, Forward) for f in plan)
    assert [((f.rows, f.width), f.past) for f in plan] == calls
    assert [f.head for f in plan] == heads
    chunks = -(-len(encode_prefix(tok, prefix)) // 256) if prefix else 0
    assert chunks > 3 if prefix else True
    assert all(f.kind == "cache" and f.rows == 1 for f in plan[:chunks])
    if packed == 40:  # contexts too long to pack: each its KV (after the prefix), then its choices
        assert any(f.kind == "cache" for f in plan[chunks:])


def test_other_architectures_take_logits_from_the_full_model(tiny, monkeypatch):
    """Where the head might be more than a matmul (softcapping, scaling), logits come from the model."""
    import genmodes.scoring as scoring

    monkeypatch.setattr(scoring, "_PLAIN_HEAD", set())
    _assert_same(*tiny, _retrieval_like(5), "", row_tokens=120)


@pytest.mark.slow
def test_prefix_trailing_whitespace_scores_like_one_text(smollm):
    """A prefix ending in a blank line is scored as lm-eval scores prefix + question as one text: on a
    byte-level BPE a lone "\\n\\n" is one token, but before a word it is two."""
    from genmodes.scoring import encode_prefix, naive_score

    model, tok = smollm
    prefix = "Use the documents.\n\nFemp Glorn is the keeper of the glass well.\n\n"
    reqs = [("The keeper of the glass well is", [" Femp Glorn.", " Yomp Trall."]), ("Q:", [" yes", " no"])]
    assert len(tok("\n\n", add_special_tokens=False).input_ids) == 1
    assert tok.convert_ids_to_tokens(encode_prefix(tok, prefix))[-1] != tok.convert_ids_to_tokens(
        tok("\n\n", add_special_tokens=False).input_ids)[0]
    got = Scorer(model, tok).score(reqs, prefix=prefix)
    for (ctx, choices), sc in zip(reqs, got):
        ref = naive_score(model, tok, prefix + ctx, choices)  # one text, no shared prefix
        assert [round(a.logprob, 3) for a in sc] == [round(b.logprob, 3) for b in ref]
