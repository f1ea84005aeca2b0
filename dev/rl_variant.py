"""RL variants beside a thinking study [P3]: GRPO again from the study's fine-tuned
checkpoint, on the same RL-training questions, with other settings (the dense reward, another group
size, steps or learning rate, length and format terms), writing the reward and thought-length curves,
the fifths test, and the greedy thoughts of the RL questions before and after RL with the
implicit-retrieval audit (did RL make the model state the facts a question needs?).

    python dev/rl_variant.py configs/thinking.yaml --run runs/thinking --set reward=probability \
        --out runs/thinking_variants/probability.json

The study's own ``finetune_all`` checkpoint (in ``RUN/shared``) is reused; the run must have
finished its first cell.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
import yaml


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("config")
    ap.add_argument("--run", required=True, help="the study's run folder (its finetune_all checkpoint is reused)")
    ap.add_argument("--condition", default="rl+thinking", help="the rl condition whose settings to vary")
    ap.add_argument("--set", action="append", default=[], help="key=value (YAML value) of the rl settings")
    ap.add_argument("--out", required=True, help="JSON file for the curves")
    ap.add_argument("--seed", type=int, default=None, help="GRPO's seed (sampling, data order; default: the "
                    "config's first seed); the fine-tuned start is the study's either way")
    a = ap.parse_args(argv)
    torch.set_num_threads(1)

    from genmodes.conditions import rl
    from genmodes.conditions.base import CellContext
    from genmodes.conditions.finetune_all import finetune_all, study_context
    from genmodes.training.finetune import DONE_MARKER
    from genmodes.training.grpo import grpo_train
    from genmodes.experiments.config import load_config
    from genmodes.experiments.runner import Runner
    from genmodes.training.grpo import fifths

    cfg = load_config(a.config)
    cond = next(c for c in cfg.conditions if c.name == a.condition).stages
    base = cond.model_settings
    over = {k: yaml.safe_load(v) for k, v in (s.split("=", 1) for s in a.set)}
    s = rl.Settings(**{**base.model_dump(), **over})
    runner = Runner(cfg, Path(a.run))
    dss = {d.name: runner.dataset(d) for d in cfg.datasets}
    first = cfg.datasets[0]
    ctx = CellContext(model_spec=cfg.model_specs[0], dataset=dss[first.name], seed=cfg.seeds[0], workdir=Path(a.out).parent,
                      shared_dir=Path(a.run) / "shared", progress=False, datasets=dss, dataset_name=first.name)
    from genmodes.conditions.finetune import checkpoint_dir

    sctx = study_context(ctx)
    docs = [d.text for d in sctx.dataset.documents if s.finetune.kinds is None or d.kind in s.finetune.kinds]
    if not (checkpoint_dir(sctx, s.finetune, docs, tag="finetune_all") / DONE_MARKER).exists():
        print(f"no finished finetune_all checkpoint in {a.run}/shared yet", file=sys.stderr)
        return 2
    model, tok, _ = finetune_all(ctx, s.finetune)
    questions = rl.rl_questions(ctx, s)
    parse = rl.statement_parsers(ctx, s, questions) if s.format_weight else None
    before = greedy_thoughts(model, tok, questions, dss, s, cfg.seeds[0])
    work = Path(a.out).with_suffix(".work")
    seed = cfg.seeds[0] if a.seed is None else a.seed
    model, info = grpo_train(model, tok, questions, s, seed, work, progress=False, parse=parse)
    shutil.rmtree(work, ignore_errors=True)
    after = greedy_thoughts(model, tok, questions, dss, s, cfg.seeds[0])
    first_fifth, last_fifth = fifths(info["reward_curve"])
    out = {"settings": s.model_dump(), "changed": over, "seed": seed, **info, "reward_first_fifth": first_fifth,
           "reward_last_fifth": last_fifth, "learned": last_fifth > first_fifth}
    for name, curve in info.get("reward_terms_curves", {}).items():
        out[f"{name}_first_fifth"], out[f"{name}_last_fifth"] = fifths(curve)
    # fifths compare different questions (2 of 12 per step); a pass over the RL questions (an epoch of
    # TRL's sampler: every question once, in a seeded order) compares the same ones
    per = len(questions) // (s.prompts_per_step)
    vals = [v for _, v in info["reward_curve"]]
    passes = [sum(vals[i:i + per]) / per for i in range(0, len(vals) - per + 1, per)]
    out["steps_per_pass"], out["reward_per_pass"] = per, [round(x, 5) for x in passes]
    lens = [v for _, v in info["thought_length_curve"]]
    out["thought_length_per_pass"] = [round(sum(lens[i:i + per]) / per, 3) for i in range(0, len(lens) - per + 1, per)]
    out["greedy_before"], out["greedy_after"] = before, after
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(json.dumps(out, indent=1) + "\n")
    print(json.dumps({k: out[k] for k in ("changed", "reward_first_fifth", "reward_last_fifth", "learned",
                                          "reward_per_pass", "thought_length_per_pass", "train_seconds")}))
    print(json.dumps({"before": before["summary"], "after": after["summary"]}))
    return 0


def greedy_thoughts(model, tok, questions, dss, s, seed) -> dict:
    """The greedy thought of every RL question (as the thinking stage writes it at test time), whether
    the scorer then answers right, and the audit of what it states."""
    from genmodes.training.thoughts import audit_thought, generate_thoughts, rewards

    owner = {q.id: d for d in dss.values() for q in getattr(d, "rl_train_questions", [])}
    th = generate_thoughts(model, tok, questions, max_tokens=s.max_thought_tokens, temperature=0.0, seed=seed,
                           instruction=s.instruction)
    right = rewards(model, tok, questions, [t.text for t in th], kind="correct", instruction=s.instruction)
    prob = rewards(model, tok, questions, [t.text for t in th], kind="probability", instruction=s.instruction)
    # the control: the same weights answering after an empty thought (did the answerer change, or the thought?)
    empty = [""] * len(questions)
    right0 = rewards(model, tok, questions, empty, kind="correct", instruction=s.instruction)
    prob0 = rewards(model, tok, questions, empty, kind="probability", instruction=s.instruction)
    rows = [{"qid": q.id, "split": q.split, "thought": t.text, "tokens": t.tokens, "correct": bool(r),
             "p_right": round(p, 5), "correct_no_thought": bool(r0), "p_right_no_thought": round(p0, 5),
             "retrieval": audit_thought(owner[q.id], q, t.text)["retrieval"]}
            for q, t, r, p, r0, p0 in zip(questions, th, right, prob, right0, prob0)]
    n = len(rows)
    summary = {"accuracy": sum(r["correct"] for r in rows) / n, "p_right": sum(r["p_right"] for r in rows) / n,
               "accuracy_no_thought": sum(r["correct_no_thought"] for r in rows) / n,
               "p_right_no_thought": sum(r["p_right_no_thought"] for r in rows) / n,
               "mean_tokens": sum(r["tokens"] for r in rows) / n,
               **{f"retrieval_{k}": sum(r["retrieval"] == k for r in rows) / n
                  for k in ("stated", "partial", "false", "none")}}
    return {"summary": summary, "rows": rows}


if __name__ == "__main__":
    sys.exit(main())
