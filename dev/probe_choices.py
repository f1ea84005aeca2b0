"""Where each condition's answers go on the semantic-structure co-occurrence probe: per condition and
probe split, the right answer, the cue word (the option the "See also" links put beside the
subject: the answer on congruent items, a wrong option, the lure, on incongruent ones) or another
option; for retrieval cells also how many questions had the cue in a "See also" line of their
retrieved documents (the link text, not a statement).

    python dev/probe_choices.py RUN_FOLDER

The dataset is regenerated from the run's config.yaml (the questions' cues are not in
results.jsonl) and must match the run's content hash, else nothing is printed.
"""
import json
import re
import sys
from collections import defaultdict
from pathlib import Path

from genmodes.data.families.semantic_structure import SEE_ALSO
from genmodes.experiments.config import load_config
from genmodes.experiments.grid import build_dataset

PROBE = ("cooccurrence_congruent", "cooccurrence_incongruent")

run = Path(sys.argv[1])
manifest = json.loads((run / "manifest.json").read_text())
study = load_config(run / "config.yaml")
cue, docs_of = {}, {}
for spec in study.config.datasets:
    ds = build_dataset(spec)
    want = manifest["datasets"][spec.name]["content_hash"]
    if ds.meta["content_hash"] != want:
        sys.exit(f"{spec.name}: regenerated content hash {ds.meta['content_hash']} is not the run's {want}")
    cue.update({(spec.name, q.id): q.meta["cue"] for q in ds.questions if q.split in PROBE})
    docs_of[spec.name] = {d.id: d.text for d in ds.documents}

rows = [json.loads(line) for line in open(run / "results.jsonl")]
tally: dict[tuple, dict[str, int]] = defaultdict(lambda: defaultdict(int))
for r in rows:
    if r["split"] not in PROBE:
        continue
    c = cue[(r["dataset"], r["question_id"])]
    chosen = r["scores"][r["chosen"]]["choice"].strip(" .")
    t = tally[(r["dataset"], r["condition"], r["split"])]
    t["n"] += 1
    t["right"] += r["correct"]
    t["cue"] += chosen == c
    t["other"] += not r["correct"] and chosen != c
    if "retrieved" in r:
        links = [line for i in r["retrieved"] for line in docs_of[r["dataset"]][i].splitlines()
                 if line.startswith(SEE_ALSO)]
        has = any(re.search(rf"\b{re.escape(c)}\b", line) for line in links)
        t["cue in retrieved"] += has
        t["right, cue in retrieved"] += has and r["correct"]

print('| dataset | condition | split | n | right | picked the cue | another wrong option | cue in a retrieved "See also" line |')
print("|---|---|---|---:|---:|---:|---:|---:|")
for (d, cond, split), t in tally.items():
    ret = f"{t['cue in retrieved']} of {t['n']}" if "cue in retrieved" in t else "–"
    print(f"| {d} | {cond} | {split} | {t['n']} | {t['right']} | {t['cue']} | {t['other']} | {ret} |")
