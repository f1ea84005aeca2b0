"""Check an in_context run: per cell, the kept documents and the budget, whether every scored
row (context_tokens + the choice's tokens) fits the model's window, and accuracy overall and on the
questions whose supporting documents were in context, per split.

    python dev/in_context_rows.py RUN_FOLDER
"""
import json, sys
run = sys.argv[1]
cells = [json.loads(l) for l in open(f"{run}/cells.jsonl")]
rows = [json.loads(l) for l in open(f"{run}/results.jsonl")]
for c in cells:
    i = c["stages"]["context"] if "stages" in c else c["info"]  # schema 2 records each stage apart
    print({k: i[k] for k in ("documents", "documents_in_context", "prefix_tokens", "budget_tokens", "window_tokens",
                             "longest_question_choice_tokens", "questions_without_support")}, "timings", c["timings"])
    gone = set(i["questions_without_support_ids"])
    mine = [r for r in rows if r["cell"] == c["cell"]]
    worst = max(r["context_tokens"] + max(s["n_tokens"] for s in r["scores"]) for r in mine)
    sup = [r for r in mine if r["question_id"] not in gone]
    print(f"rows {len(mine)}; max context_tokens + choice tokens {worst} (window {i['window_tokens']}): "
          f"{'all fit' if worst <= i['window_tokens'] else 'OVER'}; max context_tokens {max(r['context_tokens'] for r in mine)}")
    for split in sorted({r['split'] for r in mine}):
        a = [r for r in mine if r['split'] == split]
        b = [r for r in sup if r['split'] == split]
        print(f"  {split}: accuracy {sum(r['correct'] for r in a)}/{len(a)} = {sum(r['correct'] for r in a)/len(a):.1%}; "
              f"support in context {len(b)}: {sum(r['correct'] for r in b)}/{len(b)} = {sum(r['correct'] for r in b)/max(1,len(b)):.1%}")
    print(f"  all: {sum(r['correct'] for r in mine)}/{len(mine)} = {sum(r['correct'] for r in mine)/len(mine):.1%}; "
          f"support in context: {sum(r['correct'] for r in sup)}/{len(sup)} = {sum(r['correct'] for r in sup)/len(sup):.1%}")
