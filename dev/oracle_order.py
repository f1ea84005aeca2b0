"""Oracle retrieval on a codebook run, by where the retrieved support stands: last (nearest the question)
or first (the other definition between it and the question).

Usage: PYTHONPATH=src .venv/bin/python dev/oracle_order.py CONFIG RUN/cells/codebook__oracle_retrieval__s0/results.jsonl
"""
import json, collections, sys
from genmodes.experiments.config import load_config
from genmodes.data.families import make_dataset
cfg, cell = sys.argv[1], sys.argv[2]
st=load_config(cfg); d=st.datasets[0]
ds=make_dataset(d.family, seed=0, overrides=d.settings)
qs={q.id:q for q in ds.questions}
rows=[json.loads(l) for l in open(cell)]
for sp in ["seen","latent"]:
    c=collections.Counter(); n=collections.Counter()
    for r in rows:
        if r["split"]!=sp: continue
        b=qs[r["question_id"]].meta["codebook"]
        first = "support first" if r["retrieved"][0].startswith(f"cb-def-{b}-") else "support last"
        n[first]+=1; c[first]+=r["correct"]
    print(sp, {k: f"{c[k]}/{n[k]} = {c[k]/n[k]:.1%}" for k in sorted(n)})
