"""Which fact in the context a from-scratch relations model picks: by content or by position?

For the in-context splits with one fact per option (``episode_in_context``, ``heldout_reversal_in_context``)
it counts, per run folder, the position in the context (0 = first fact) of the fact whose container the
model chose, beside the position of the fact that answers. A model that reads the context matches the
second row; a recency heuristic piles up at the last positions.

    python3 dev/scratch_choice_position.py RUN_DIR [RUN_DIR ...]
"""

from __future__ import annotations

import gzip
import json
import re
import sys
from collections import Counter
from pathlib import Path

SPLITS = ("episode_in_context", "heldout_reversal_in_context")
_FACT = re.compile(r"(\S+) contains (\S+) \.")


def rows(run: Path):
    for name in ("results.jsonl", "results.jsonl.gz"):
        p = run / name
        if p.exists():
            with (gzip.open(p, "rt") if name.endswith(".gz") else p.open()) as f:
                for line in f:
                    yield json.loads(line)
            return


def main() -> int:
    print("| run | split | n | chosen fact by position (0 = first) | answer fact by position | picked last two |")
    print("|---|---|---:|---|---|---:|")
    for arg in sys.argv[1:]:
        run = Path(arg)
        chosen: dict[str, Counter] = {s: Counter() for s in SPLITS}
        answer: dict[str, Counter] = {s: Counter() for s in SPLITS}
        for r in rows(run):
            if r["split"] not in SPLITS or r["condition"] != "parametric":
                continue
            facts = _FACT.findall(r["context"])
            member = r["context"].split()[-5]  # "<member> is a subset of"
            containers = [a for a, _ in facts]
            chosen[r["split"]][containers.index(r["scores"][r["chosen"]]["choice"].strip())] += 1
            answer[r["split"]][[b for _, b in facts].index(member)] += 1
        for s in SPLITS:
            n = sum(chosen[s].values())
            if n:
                k = max(chosen[s]) + 1
                last2 = chosen[s][k - 1] + chosen[s][k - 2]
                print(f"| {run.name} | {s} | {n} | {[chosen[s][i] for i in range(k)]} | "
                      f"{[answer[s][i] for i in range(k)]} | {last2} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
