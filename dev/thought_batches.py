"""How far a thinking run's generation batches really decode, against the dry run's assumption that a
batch decodes to its token budget (it ends when its longest thought ends).

    python dev/thought_batches.py RUN_DIR                        # the test-time thoughts' batches
    OMP_NUM_THREADS=1 PYTHONPATH=src python dev/thought_batches.py RUN_DIR --resample CONDITION SEED

Without ``--resample``: from the run's thought caches (shared/thoughts/*/thoughts.jsonl, generate
mode), the thoughts' mean length and each batch's longest, in tokens, against the budget. With it: CONDITION's first round
of expert iteration sampled again as the run sampled it (the knowledge fine-tune of SEED from the run
folder, its RL questions, temperature, batches and stop rule), timed, beside the same batches decoded
to the budget as the dry run times them (two batches, scaled to all): the share of the budget's time
the round's sampling took. Loads the checkpoint read-only; writes nothing.
"""
import json
import sys
import time
from pathlib import Path

args = sys.argv[1:]
run = Path(args[0])
if "--resample" not in args:
    for path in sorted((run / "shared" / "thoughts").glob("*/thoughts.jsonl")):
        lines = path.read_text().splitlines()
        key = json.loads(lines[0])
        if key["verify"]:
            continue
        tokens = [json.loads(x)["tokens"] for x in lines[1:]]
        size, budget = key["settings"]["batch_size"], key["settings"]["max_thought_tokens"]
        longest = [max(tokens[i:i + size]) for i in range(0, len(tokens), size)]
        print(f"{path.parent.name} seed {key['seed']}: {len(tokens)} thoughts of {sum(tokens) / len(tokens):.1f} tokens "
              f"on average, batches of {size}, budget {budget}: longest per batch {longest}")
    sys.exit(0)

import torch  # noqa: E402

from genmodes.experiments.config import load_config  # noqa: E402
from genmodes.experiments.runner import Runner  # noqa: E402
from genmodes.generate import PrefixGenerator  # noqa: E402
from genmodes.models import load_model  # noqa: E402
from genmodes.training.expert_iteration import round_seed  # noqa: E402
from genmodes.training.thoughts import STOP, row_seed, think_prompt  # noqa: E402

condition, seed = args[args.index("--resample") + 1], int(args[args.index("--resample") + 2])
study = load_config(str(run / "config.yaml"))
if study.threads:
    torch.set_num_threads(study.threads)
dss = Runner(study, Path("/nonexistent/thought_batches"), progress=False).datasets()
s = study.condition(condition).stages.model_settings
ei = s.expert_iteration
cell = next(json.loads(x) for x in (run / "cells.jsonl").read_text().splitlines()
            if json.loads(x)["condition"] == condition and json.loads(x)["seed"] == seed)
model, tok = load_model(cell["stages"]["model"]["finetune"]["checkpoint"], seed=0)
qs = [q for name in s.rl_dataset for q in dss[name].rl_train_questions]
rows = [(q, k) for q in qs for k in range(ei.samples)]
gen = PrefixGenerator(model, tok)
gen.generate(["x"], max_new_tokens=2)  # warm-up
sampled, budget, longest = 0.0, [], []
for b in range(0, len(rows), ei.generation_batch):
    chunk = rows[b:b + ei.generation_batch]
    prompts = [think_prompt(q, s.instruction, s.lead) for q, _ in chunk]
    seeds = [row_seed(round_seed(seed, 0), q.id, k) for q, k in chunk]
    t0 = time.perf_counter()
    texts = gen.generate(prompts, max_new_tokens=s.max_thought_tokens, temperature=s.temperature, seeds=seeds,
                         stop=[STOP])
    sampled += time.perf_counter() - t0
    longest.append(max(len(tok(t, add_special_tokens=False).input_ids) for t in texts))
    if len(budget) < 2:
        t0 = time.perf_counter()
        gen.generate(prompts, max_new_tokens=s.max_thought_tokens, temperature=s.temperature, seeds=seeds,
                     to_budget=True)
        budget.append(time.perf_counter() - t0)
at_budget = sum(budget) / len(budget) * len(longest)
print(f"{condition} seed {seed}, round 1: {len(rows)} thoughts in {len(longest)} batches of {ei.generation_batch}; "
      f"sampled with the stop rule in {sampled:.1f} s, to the budget ({s.max_thought_tokens}) ~{at_budget:.1f} s "
      f"(sampled / budget {sampled / at_budget:.2f}); longest thought per batch {longest}")
