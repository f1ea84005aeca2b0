"""The report's RL curves [P3] for RL variants written by ``dev/rl_variant.py``: reward
and thought length against step, one line per variant JSON (the same plots as the report's section
"RL: reward and thought length over steps"), and the reward's terms apart where a variant has them;
prints a line per variant: the fifths test, the mean per pass over the RL questions (every question
once per pass, so passes compare the same questions), tokens, seconds, and the greedy before/after check.

    python dev/rl_variant_plot.py runs/thinking_variants/*.json --out runs/thinking_variants/curves
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("variants", nargs="+", help="JSON files of dev/rl_variant.py")
    ap.add_argument("--out", required=True, help="prefix of the PNG files (PREFIX_reward.png, ...)")
    a = ap.parse_args(argv)

    from genmodes.report.figures import loss_curves

    runs = [(Path(p).stem, json.loads(Path(p).read_text())) for p in a.variants]
    out = Path(a.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    paths = [loss_curves("RL reward (mean over the step's thoughts)", [(n, r["reward_curve"]) for n, r in runs],
                         out.with_name(out.name + "_reward.png"), xlabel="RL step", ylabel="reward", markers=True),
             loss_curves("thought length", [(n, r["thought_length_curve"]) for n, r in runs],
                         out.with_name(out.name + "_thought_length.png"), xlabel="RL step",
                         ylabel="tokens per thought", markers=True)]
    terms = [(f"{n}: {t}", c) for n, r in runs for t, c in r.get("reward_terms_curves", {}).items()]
    if terms:
        paths.append(loss_curves("reward terms (unweighted)", terms, out.with_name(out.name + "_terms.png"),
                                 xlabel="RL step", ylabel="term", markers=True))
    print("\n".join(map(str, paths)))
    for n, r in runs:
        print(json.dumps({"variant": n, **summary(r)}))
    return 0


def per_pass(curve: list, steps_per_pass: int) -> list[float]:
    vals = [v for _, v in curve]
    k = steps_per_pass
    return [round(sum(vals[i:i + k]) / k, 3) for i in range(0, len(vals) - k + 1, k)]


def summary(r: dict) -> dict:
    from genmodes.training.grpo import fifths

    s = r["settings"]
    k = r.get("steps_per_pass") or r["questions"] // s["prompts_per_step"]
    first, last = fifths(r["reward_curve"])
    out = {"steps": r["steps"], "reward_fifths": [round(first, 3), round(last, 3)],
           "reward_per_pass": per_pass(r["reward_curve"], k),
           "thought_length_per_pass": per_pass(r["thought_length_curve"], k),
           "thought_length_first_last_step": [r["thought_length_curve"][0][1], r["thought_length_curve"][-1][1]],
           "tokens_generated": r["tokens_generated"], "train_seconds": r["train_seconds"], "resumed": r["resumed"]}
    for t, c in r.get("reward_terms_curves", {}).items():
        out[f"{t}_per_pass"] = per_pass(c, k)
    for tag in ("greedy_before", "greedy_after"):
        if tag in r:
            out[tag] = {a: round(b, 3) for a, b in r[tag]["summary"].items()}
    return out


if __name__ == "__main__":
    sys.exit(main())
