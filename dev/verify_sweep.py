"""What in-context verification keeps of the model's own augmentations, per margin.

Reads the generations a finished run cached (its shared/augment folder), judges every statement with
the bundled model and its source document in context (genmodes.conditions.augment.verify_in_context),
and prints the audit (true / false / unverifiable against the ground truth) before verification and
after it at each margin. No fine-tuning: this is the cheap half of the decision.

    .venv/bin/python dev/verify_sweep.py runs/headline --margins 0,0.5,1,2,4
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from genmodes.conditions import augment
from genmodes.experiments.config import load_config
from genmodes.experiments.grid import build_dataset
from genmodes.models import load_model


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("run")
    ap.add_argument("--margins", default="0,0.5,1,2,4")
    ap.add_argument("--alternatives", type=int, default=3)
    args = ap.parse_args()
    run = Path(args.run)
    cfg = load_config(run / "config.yaml")
    ds = build_dataset(cfg.datasets[0])
    caches = sorted((run / "shared" / "augment").glob("*/generations.jsonl"))
    if not caches:
        raise SystemExit(f"{run}: no cached generations (run the study first)")
    texts, sources = [], []
    for line in caches[0].read_text().splitlines():
        rec = json.loads(line)
        items = []
        for out, fin in zip(rec["outputs"], rec.get("finished", [True] * len(rec["outputs"]))):
            its = augment.split_items(out)
            items += its[:-1] if (not fin and its) else its
        for t in dict.fromkeys(items):
            texts.append(t)
            sources.append(rec["doc"])
    model, tok = load_model(cfg.model)
    before = augment.verify(ds, texts)
    print(f"{len(texts)} statements from {caches[0].parent.name}; before: true {before['true']}, "
          f"false {before['false']}, unverifiable {before['unverifiable']}, "
          f"test answers stated {before['test_answers_stated']}/{before['test_answers_total']}")
    for m in (float(x) for x in args.margins.split(",")):
        st = augment.Settings(source="local", verify="in_context", verify_margin=m,
                              verify_alternatives=args.alternatives)
        keep, info = augment.verify_in_context(model, tok, ds, texts, sources, st, seed=0)
        kept = [t for t, k in zip(texts, keep) if k]
        a = augment.verify(ds, kept)
        print(f"margin {m:>4}: kept {len(kept):>3}: true {a['true']}, false {a['false']}, unverifiable "
              f"{a['unverifiable']}, test answers stated {a['test_answers_stated']}/{a['test_answers_total']}")


if __name__ == "__main__":
    main()
