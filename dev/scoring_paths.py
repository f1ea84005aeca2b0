"""Check: the scorer picks the same choice as the naive reference (``genmodes.scoring.naive_score``, one
full forward per choice, as lm-evaluation-harness does) and gives the same log-probabilities (within
1e-4) on real conditions' requests: a dataset, a few conditions prepared as the runner prepares them,
every question scored both ways.

    python dev/scoring_paths.py --model tiny-random                  # the headline's data
    python dev/scoring_paths.py --model smollm2-135m --berglund DIR --per-split 5 --conditions retrieval_oracle
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from genmodes.conditions import prepare, resolve
from genmodes.conditions.base import CellContext
from genmodes.experiments.config import DatasetSpec
from genmodes.experiments.grid import build_dataset
from genmodes.scoring import Scorer, chosen, naive_score

HEADLINE_DATA = {"n_people_a": 10, "n_people_d": 0, "n_people_b": 10, "n_paraphrases": 2, "n_test_paraphrases": 3}
CONDITIONS = {"pretrained": ("pretrained", {}), "in_context": ("in_context", {}),
              "retrieval_oracle": ("retrieval", {"method": "oracle", "k": 4})}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="tiny-random")
    ap.add_argument("--berglund", help="the published reversal-curse folder (default: the headline's generated data)")
    ap.add_argument("--per-split", type=int, help="seeded subsample of questions per split")
    ap.add_argument("--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS))
    args = ap.parse_args()
    spec = (DatasetSpec(berglund=args.berglund, max_per_split=args.per_split) if args.berglund else
            DatasetSpec(family="reversal_curse", settings=HEADLINE_DATA, max_per_split=args.per_split))
    ds = build_dataset(spec)
    print(f"model {args.model}; dataset {spec.name}: {len(ds.documents)} documents, {len(ds.questions)} questions; "
          f"torch threads {torch.get_num_threads()}")
    worst = 0.0
    all_same = True
    for name in args.conditions:
        kind, settings = CONDITIONS[name]
        with tempfile.TemporaryDirectory() as tmp:
            ctx = CellContext(model_spec=args.model, dataset=ds, seed=0, workdir=Path(tmp), progress=False)
            prepared = prepare(ctx, resolve(kind, settings))
        requests = [(prepared.context_for(q), q.choices) for q in ds.questions]
        new = Scorer(prepared.model, prepared.tokenizer).score(requests, prefix=prepared.prefix)
        old = [naive_score(prepared.model, prepared.tokenizer, ctx, ch, prefix=prepared.prefix) for ctx, ch in requests]
        same = all(chosen(a) == chosen(b) and chosen(a, True) == chosen(b, True) for a, b in zip(new, old))
        greedy = all(x.is_greedy == y.is_greedy for a, b in zip(new, old) for x, y in zip(a, b))
        diff = max(abs(x.logprob - y.logprob) for a, b in zip(new, old) for x, y in zip(a, b))
        n = sum(len(c) for _, c in requests)
        print(f"{name:17s} {len(requests)} questions, {n} choices, prefix {len(prepared.prefix)} chars: "
              f"same choices {'yes' if same else 'no'}, same greedy flags {'yes' if greedy else 'no'}, "
              f"max |logprob difference| {diff:.2e}")
        worst, all_same = max(worst, diff), all_same and same and greedy
    print(f"all conditions: same choices: {'yes' if all_same else 'no'}; max |logprob difference| {worst:.2e} "
          f"({'within' if worst <= 1e-4 else 'OVER'} 1e-4)")


if __name__ == "__main__":
    main()
