"""Does a from-scratch codebook model pick a latent use's code by the asked symbol alone (the code word
written next to one symbol in every definition), or by codebook and symbol together? Scores each latent and
seen question as asked, and with the codebook's name swapped for another real codebook's (options unchanged).

Usage: OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python dev/codebook_book_swap.py RUN/shared/scratch/HASH/model CONFIG
(the dataset is made from CONFIG's first dataset at seed 0)."""
import random, re, sys
import torch
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast
from genmodes.experiments.config import load_config
from genmodes.data.families import make_dataset

model_dir, config = sys.argv[1], sys.argv[2]
torch.set_num_threads(1)
tok = PreTrainedTokenizerFast.from_pretrained(model_dir)
model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
st = load_config(config)
d = st.datasets[0]
ds = make_dataset(d.family, seed=0, overrides=d.settings)
books = sorted({m.group(1) for x in ds.documents if x.kind == "definition" for m in [re.match(r"codebook (\S+) :", x.text)]})
rng = random.Random(0)

def pick(ctx, choices):
    ids = tok(ctx, return_tensors="pt").input_ids
    with torch.no_grad():
        logits = model(ids).logits[0, -1]
    opt = [tok(c.strip(), add_special_tokens=False).input_ids for c in choices]
    scores = [logits[o[0]].item() for o in opt]
    return max(range(len(scores)), key=scores.__getitem__)

for split in ["latent", "seen"]:
    qs = [q for q in ds.questions if q.split == split]
    same = swap = 0
    for q in qs:
        book = re.match(r"encode with (\S+) :", q.context).group(1)
        other = rng.choice([b for b in books if b != book])
        same += pick(q.context, q.choices) == q.answer
        swap += pick(q.context.replace(f"encode with {book} :", f"encode with {other} :"), q.choices) == q.answer
    print(f"{split}: n={len(qs)} as asked {same/len(qs):.1%}, book swapped {swap/len(qs):.1%}")
