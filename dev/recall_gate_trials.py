"""How many epochs fine-tuning needs before it knows the facts: one fine-tuning run of the bundled
model on a semantic_structure dataset under the stopping rule, printing after every epoch the recall
on the dataset's rephrase split (the gate) and on the same facts asked in the training phrasing (is
the fact memorised, or only not transferred to the new phrasing?). Used to size
configs/semantic_structure.yaml (docs/log/2026-12-07-recall-gate-trials.md).

    OMP_NUM_THREADS=1 python dev/recall_gate_trials.py '{"dataset": {...family settings...},
        "until_recall": 0.9, "max_epochs": 12, "lr": 3e-4, "batch_size": 4, "seq_len": 128}'
"""
import dataclasses
import json
import sys
import time

import torch

from genmodes.data.families import make_dataset
from genmodes.data.families.semantic_structure import TEMPLATES, _question_parts
from genmodes.models import load_model
from genmodes.training.finetune import FinetuneSettings, train
from genmodes.training.recall import RecallProbe, RecallScore


def main() -> None:
    torch.set_num_threads(1)
    args = json.loads(sys.argv[1])
    ds = make_dataset("semantic_structure", seed=0, overrides=args.pop("dataset"))
    rephrase = ds.split("rephrase")
    trained = []  # the same facts, asked in the documents' first training phrasing
    for q in rephrase:
        f = q.premises[0]
        context, _ = _question_parts(TEMPLATES[f.relation]["train"][0], f.subject, f.object, f.object)
        trained.append(dataclasses.replace(q, context=context, id=q.id + "-trained"))
    both = RecallProbe(rephrase + trained, ["rephrase"] * len(rephrase) + ["train phrasing"] * len(trained))
    model, tok = load_model("smollm2-135m", seed=0)
    t0 = time.time()

    class Printed(RecallProbe):
        """The gate (rephrase) decides; the training phrasing is printed beside it."""

        def score(self, m, t):
            r = both.score(m, t)
            print(f"  {time.time() - t0:.0f}s", {k: round(v, 3) for k, v in r.by_group.items()}, flush=True)
            return RecallScore({"rephrase": r.by_group["rephrase"]}, r.by_group["rephrase"], len(rephrase))

    tokens = sum(len(tok(d.text).input_ids) for d in ds.documents)
    print(sys.argv[1], "documents", len(ds.documents), "tokens", tokens, "rephrase", len(rephrase), flush=True)
    _, info = train(model, tok, [d.text for d in ds.documents], FinetuneSettings(**args), 0, progress=False,
                    recall=Printed(rephrase))
    print(" epochs", info["epochs_trained"], "reached", info["recall_reached"], "steps", info["steps"],
          "train s", info["train_seconds"], flush=True)


if __name__ == "__main__":
    main()
