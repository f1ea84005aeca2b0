"""Benchmark: our scorer vs the naive one (one full forward per choice, as lm-evaluation-harness
does: ``genmodes.scoring.naive_score``), in two settings, both in this process on the same inputs.

1. Shared prefix: the bundled model, a ~2,000-token context shared by every question (training facts
   in context, as the in_context condition builds it), 50 questions x 4 choices. Prints
   ``speedup: N.Nx (same choices: yes|no)``.
2. A context per question (retrieval-like): each of 100 questions has its own ~200-token context
   (facts, the relevant one among them) and 4 choices. Prints
   ``per-question speedup: N.Nx (same choices: yes|no)``.

For each case it also prints the achieved GFLOP/s: the useful work (each distinct token run once
through the model, attention over what it sees, the LM head at the positions that predict a choice
token) over our CPU time, and that as a fraction of the fp32 matmul peak measured in the same run
(best of several 1024 x 1024 matmuls, at the start and after each case). Times are CPU seconds of
this process (wall seconds beside them): on a shared machine, time spent waiting for a core is the
neighbours' doing, not the scorer's.

    OMP_NUM_THREADS=1 python bench/scoring.py [--model smollm2-135m] [--questions 50] [--context-tokens 2000]
        [--naive-questions 10] [--pq-questions 100] [--pq-context-tokens 200] [--pq-naive-questions 10]
    python bench/scoring.py --quick     # tiny-random, a few short questions: seconds (the test suite runs it)

The naive scorer costs seconds per choice, so by default it runs on the first 10 questions of each
case and its time per choice is scaled to all of them; its choices are compared on those questions.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from genmodes.data.nonsense import NonsenseWords
from genmodes.models import load_model
from genmodes.scoring import Scorer, chosen, encode_pair, encode_prefix, naive_score

FEATURES = [("brighter", "dimmer"), ("heavier", "lighter"), ("faster", "slower"), ("larger", "smaller"),
            ("older", "younger"), ("warmer", "colder"), ("louder", "quieter"), ("stronger", "weaker")]
INSTRUCTION = "Use the following facts to answer.\n\n"


def _fact(words, rng):
    a, b = words.take(2)
    more, less = rng.choice(FEATURES)
    return (a, b, more, less), f"Did you know that {a} are {more} than {b}."


def _question(fact, rng):
    # reversal question, 4 options: the true reversal and three contradictory or unrelated ones
    a, b, more, less = fact
    other = rng.choice([f for f in FEATURES if f[0] != more])
    choices = [f" {less} than {a}.", f" {more} than {a}.", f" {other[0]} than {a}.", f" {other[1]} than {a}."]
    rng.shuffle(choices)
    return f"{b} are", choices


def build(tok, n_questions: int, context_tokens: int, seed: int = 0):
    """Shared prefix: one block of facts before every question."""
    rng = random.Random(seed)
    words = NonsenseWords(seed, namespace="bench")
    facts, lines = [], []
    while True:
        fact, line = _fact(words, rng)
        facts.append(fact)
        lines.append(line)
        text = INSTRUCTION + "\n".join(lines) + "\n\n"
        if len(tok(text).input_ids) >= context_tokens:
            break
    return text, [_question(f, rng) for f in rng.sample(facts, n_questions)]


def build_per_question(tok, n_questions: int, context_tokens: int, seed: int = 1):
    """A context per question: the relevant fact among distractors, ~context_tokens long. Each
    question's context is independent of the others, so each draws from a word stream of its own
    (one stream for all would need fresh words for every fact of every context, more than the
    bench's share of the word space holds)."""
    rng = random.Random(seed)
    out = []
    for i in range(n_questions):
        words = NonsenseWords(seed * 1_000_003 + i, namespace="bench")
        facts = []
        while True:
            facts.append(_fact(words, rng))
            text = INSTRUCTION + "\n".join(line for _, line in facts) + "\n\n"
            if len(tok(text).input_ids) >= context_tokens:
                break
        q, choices = _question(rng.choice(facts)[0], rng)
        out.append((text + q, choices))
    return out


def matmul_peak(n: int = 1024, reps: int = 5) -> float:
    """fp32 GFLOP/s per CPU second of the best of ``reps`` n x n matmuls (the attainable peak)."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best = float("inf")
    for _ in range(reps):
        t0 = time.process_time()
        for _ in range(4):
            a @ b
        best = min(best, (time.process_time() - t0) / 4)
    return 2 * n ** 3 / best / 1e9


def useful_flops(model, tok, prefix: str, requests) -> float:
    """Work a scorer cannot avoid: every distinct token once through the layers, attention over the
    keys it sees, and the LM head at each position that predicts a choice token."""
    c = model.config
    d, f, L, V = c.hidden_size, c.intermediate_size, c.num_hidden_layers, c.vocab_size
    hd = getattr(c, "head_dim", None) or d // c.num_attention_heads
    kv = c.num_key_value_heads * hd
    per_token = 2 * L * (d * d + 2 * d * kv + d * d + 3 * d * f)
    attn = 4 * L * c.num_attention_heads * hd  # QK^T and AV, per (query, key) pair
    head = 2 * d * V
    P = len(encode_prefix(tok, prefix))
    total = P * per_token + attn * P * (P + 1) / 2 + (head if P else 0)
    for ctx, choices in requests:
        n_ctx = len(encode_pair(tok, ctx, choices[0])[0]) or (0 if P else 1)
        total += n_ctx * per_token + attn * sum(P + i + 1 for i in range(n_ctx))
        total += head if n_ctx else 0
        for ch in choices:
            n = len(encode_pair(tok, ctx, ch)[1])
            total += n * per_token + attn * sum(P + n_ctx + i + 1 for i in range(n)) + head * (n - 1)
    return total


def timed(fn):
    """(result, CPU seconds, wall seconds). Ratios use CPU time: on a machine shared with other jobs,
    waiting for a core inflates wall time by whatever the neighbours do at that moment."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.process_time() - c0, time.perf_counter() - t0


def run_case(name, model, tok, prefix, questions, n_naive, peak):
    """(our CPU seconds, naive CPU seconds scaled to every question, same choices on the naive's questions)."""
    n_choices = sum(len(c) for _, c in questions)
    print(f"[{name}] prefix {len(encode_prefix(tok, prefix))} tokens; {len(questions)} questions, "
          f"{n_choices} choices; mean question context "
          f"{sum(len(tok(q).input_ids) for q, _ in questions) / len(questions):.0f} tokens")
    fast, t_fast, w_fast = timed(lambda: Scorer(model, tok).score(questions, prefix=prefix, progress=False))
    print(f"ours : {t_fast:8.2f} CPU s ({w_fast:7.2f} wall s, {n_choices / t_fast:7.2f} choices per CPU s)")
    sub = questions[:n_naive]
    n_sub = sum(len(c) for _, c in sub)
    naive, t_sub, w_sub = timed(lambda: [naive_score(model, tok, ctx, ch, prefix=prefix) for ctx, ch in sub])
    t_naive = t_sub * n_choices / n_sub
    print(f"naive: {t_sub:8.2f} CPU s ({w_sub:7.2f} wall s) for {len(sub)} questions; all {len(questions)} "
          f"questions: {t_naive:.1f} CPU s" + ("" if len(sub) == len(questions) else " (scaled)"))
    same = all(chosen(a) == chosen(b) for a, b in zip(fast, naive))
    diff = max(abs(x.logprob - y.logprob) for a, b in zip(fast, naive) for x, y in zip(a, b))
    print(f"max |logprob difference| vs naive: {diff:.2e}")
    gflop = useful_flops(model, tok, prefix, questions) / 1e9
    peak = max(peak, matmul_peak())
    print(f"ours vs naive {t_naive / t_fast:.1f}x (CPU time); useful work {gflop:.0f} GFLOP: ours "
          f"{gflop / t_fast:.1f} GFLOP/s = {gflop / t_fast / peak:.0%} of the fp32 matmul peak {peak:.1f} GFLOP/s")
    return t_fast, t_naive, same


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--context-tokens", type=int, default=2000)
    ap.add_argument("--naive-questions", type=int, default=10,
                    help="questions the naive scorer runs on (its time is scaled to all questions)")
    ap.add_argument("--pq-questions", type=int, default=100)
    ap.add_argument("--pq-context-tokens", type=int, default=200)
    ap.add_argument("--pq-naive-questions", type=int, default=10)
    ap.add_argument("--quick", action="store_true",
                    help="tiny-random, 4 questions per case with short contexts: checks the bench runs (seconds)")
    args = ap.parse_args()
    if args.quick:
        args.model, args.questions, args.context_tokens, args.naive_questions = "tiny-random", 4, 300, 2
        args.pq_questions, args.pq_context_tokens, args.pq_naive_questions = 4, 150, 2
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    peak = matmul_peak()
    print(f"model {args.model}; torch threads {torch.get_num_threads()}; "
          f"fp32 matmul peak at start {peak:.1f} GFLOP/s (1024 x 1024, best of 5)")

    prefix, questions = build(tok, args.questions, args.context_tokens)
    t_fast, t_naive, same = run_case("shared prefix", model, tok, prefix, questions, args.naive_questions, peak)
    print(f"speedup: {t_naive / t_fast:.1f}x (same choices: {'yes' if same else 'no'})")

    pq = build_per_question(tok, args.pq_questions, args.pq_context_tokens)
    t_fast, t_naive, same = run_case("context per question", model, tok, "", pq, args.pq_naive_questions, peak)
    print(f"per-question speedup: {t_naive / t_fast:.1f}x (same choices: {'yes' if same else 'no'})")


if __name__ == "__main__":
    main()
