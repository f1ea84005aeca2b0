"""Benchmark: our scorer vs the naive one (one full forward per choice, as lm-evaluation-harness does).

Setting: the bundled model, a ~2,000-token shared context (training facts in context, as the
in_context condition builds it) and 50 questions x 4 choices. Both scorers run in this process on
the same inputs; the last line is ``speedup: N.Nx (same choices: yes|no)``.

    .venv/bin/python bench/scoring.py [--model smollm2-135m] [--questions 50] [--context-tokens 2000]
                                      [--naive-questions 10]

The naive scorer costs ~10 s per choice here (50 x 4 choices would take over half an hour), so by
default it runs on the first 10 questions and its time per choice is scaled to all of them; both
scorers' choices are compared on those questions. ``--naive-questions 50`` times it on all.
"""

from __future__ import annotations

import argparse
import random
import time

import torch

from genmodes.data.nonsense import NonsenseWords
from genmodes.models import load_model
from genmodes.scoring import Scorer, chosen, naive_score

FEATURES = [("brighter", "dimmer"), ("heavier", "lighter"), ("faster", "slower"), ("larger", "smaller"),
            ("older", "younger"), ("warmer", "colder"), ("louder", "quieter"), ("stronger", "weaker")]


def build(tok, n_questions: int, context_tokens: int, seed: int = 0):
    rng = random.Random(seed)
    words = NonsenseWords(seed, namespace="bench")
    facts, lines = [], []
    while True:
        a, b = words.take(2)
        more, less = rng.choice(FEATURES)
        facts.append((a, b, more, less))
        lines.append(f"Did you know that {a} are {more} than {b}.")
        text = "Use the following facts to answer.\n\n" + "\n".join(lines) + "\n\n"
        if len(tok(text).input_ids) >= context_tokens:
            break
    questions = []
    for a, b, more, less in rng.sample(facts, n_questions):
        # reversal question, 4 options: the true reversal and three contradictory or unrelated ones
        other = rng.choice([f for f in FEATURES if f[0] != more])
        choices = [f" {less} than {a}.", f" {more} than {a}.", f" {other[0]} than {a}.", f" {other[1]} than {a}."]
        rng.shuffle(choices)
        questions.append((f"{b} are", choices))
    return text, questions


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--questions", type=int, default=50)
    ap.add_argument("--context-tokens", type=int, default=2000)
    ap.add_argument("--naive-questions", type=int, default=10,
                    help="questions the naive scorer runs on (its time is scaled to all questions)")
    args = ap.parse_args()
    torch.manual_seed(0)
    model, tok = load_model(args.model)
    prefix, questions = build(tok, args.questions, args.context_tokens)
    n_choices = sum(len(c) for _, c in questions)
    print(f"model {args.model}; context {len(tok(prefix).input_ids)} tokens; "
          f"{len(questions)} questions, {n_choices} choices; torch threads {torch.get_num_threads()}")

    t0 = time.perf_counter()
    fast = Scorer(model, tok).score(questions, prefix=prefix)
    t_fast = time.perf_counter() - t0
    print(f"ours : {t_fast:8.2f} s  ({n_choices / t_fast:7.2f} choices/s)")

    sub = questions[: args.naive_questions]
    n_sub = sum(len(c) for _, c in sub)
    t0 = time.perf_counter()
    naive = [naive_score(model, tok, ctx, ch, prefix=prefix) for ctx, ch in sub]
    t_sub = time.perf_counter() - t0
    t_naive = t_sub * n_choices / n_sub
    print(f"naive: {t_sub:8.2f} s for {len(sub)} questions ({n_sub / t_sub:7.2f} choices/s); "
          f"all {len(questions)} questions: {t_naive:.1f} s" + ("" if len(sub) == len(questions) else " (scaled)"))

    same = all(chosen(a) == chosen(b) for a, b in zip(fast, naive))
    maxdiff = max(abs(x.logprob - y.logprob) for a, b in zip(fast, naive) for x, y in zip(a, b))
    print(f"max |logprob difference|: {maxdiff:.2e}")
    print(f"speedup: {t_naive / t_fast:.1f}x (same choices: {'yes' if same else 'no'})")


if __name__ == "__main__":
    main()
