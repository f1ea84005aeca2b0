"""One shortcut baseline (default neighbour) on every dataset of the given study configs: its best held-out
split and any audit offence (cooccurrence is evaluated beside it for the offences list).

Usage: PYTHONPATH=src .venv/bin/python dev/baseline_configs.py configs/latent_codebook.yaml configs/latent_relations.yaml ...
"""
import sys, glob, time
from genmodes.experiments.config import load_config
from genmodes.data.families import make_dataset
from genmodes.data import baselines
seen=set()
for path in sys.argv[1:]:
    try:
        st=load_config(path)
    except Exception as e:
        print(path, "ERR", e); continue
    for d in st.datasets:
        if not getattr(d,"family",None): continue
        key=(d.family, d.seed if d.seed is not None else 0, str(sorted((d.settings or {}).items())))
        if key in seen: continue
        seen.add(key)
        t=time.time()
        try:
            ds=make_dataset(d.family, seed=d.seed or 0, overrides=d.settings)
        except Exception as e:
            print(path, d.name, "ERR", e); continue
        rows=baselines.evaluate(ds, ["neighbour","cooccurrence"])
        off=baselines.offences(rows)
        worst=max((r for r in rows if r.held_out and r.method=="neighbour"), key=lambda r:r.accuracy, default=None)
        print(f"{path} {d.name} ({d.family}) neighbour max held-out: {worst.split if worst else '-'} {worst.accuracy if worst else 0:.1%} (n={worst.n if worst else 0}) offences={off} [{time.time()-t:.0f}s]", flush=True)
