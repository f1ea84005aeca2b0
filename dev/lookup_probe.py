"""Prototype: can a small from-scratch transformer learn in-context lookup on this CPU?

Trains on the relations family's trained statements plus practice episodes whose bindings are drawn
fresh for every row (never replayed, so they cannot be memorised), with the loss only on the tokens
the context determines (MQAR-style), and prints a curve of the calibration ladder:

  lookup     fresh 4-fact episode, a forward query ("c contains" -> d)
  episode    fresh 4-fact episode, a reverse query ("d is a subset of" -> c)
  held_ctx   held-out relation's forward fact among 3 other held-out facts, reverse asked
  trained    recall of trained statements (no context)
  heldout    held-out reversal, no context
  oracle     support document + 4 random training documents, then the held-out reversal

Usage: OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python dev/lookup_probe.py --steps 3000
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time

import torch

from genmodes.data.families import make_dataset
from genmodes.data.families.relations import FORWARD, REVERSE
from genmodes.training import scratch

P = argparse.ArgumentParser()
P.add_argument("--steps", type=int, default=3000)
P.add_argument("--batch", type=int, default=16)
P.add_argument("--seq", type=int, default=64)
P.add_argument("--lr", type=float, default=1e-3)
P.add_argument("--warmup", type=int, default=100)
P.add_argument("--layers", type=int, default=3)
P.add_argument("--d", type=int, default=128)
P.add_argument("--heads", type=int, default=4)
P.add_argument("--episode-share", type=float, default=0.5, help="share of rows that are practice episodes")
P.add_argument("--story-share", type=float, default=0.0, help="share of episodes over relation entities")
P.add_argument("--facts", type=int, default=4)
P.add_argument("--queries", type=int, default=2)
P.add_argument("--min-facts", type=int, default=None, help="facts per episode uniform in [min, facts]")
P.add_argument("--forward-queries", type=float, default=0.5, help="share of queries asked forward")
P.add_argument("--pool", type=int, default=200, help="episode-only entities")
P.add_argument("--rel-loss", choices=["all", "object"], default="object")
P.add_argument("--no-episodes", action="store_true")
P.add_argument("--eval-every", type=int, default=250)
P.add_argument("--n-eval", type=int, default=100)
P.add_argument("--copy-init", action="store_true")
P.add_argument("--seed", type=int, default=0)
P.add_argument("--repeat-share", type=float, default=0.0, help="share of rows that are a random pool sequence then its repeat (loss on the repeat)")
P.add_argument("--repeat-len", type=int, default=10)
P.add_argument("--repeat-min", type=int, default=None)
P.add_argument("--real-drills", type=float, default=0.0, help="share of repeat drills over the relations' own entities")
P.add_argument("--real-drill-pool", choices=["all", "containers"], default="all")
P.add_argument("--story-forward", action="store_true", help="story episodes ask forward queries too")
P.add_argument("--reverse-repeat", type=float, default=0.0, help="share of repeat drills whose second run is reversed")
P.add_argument("--short", action="store_true", help="facts as 'x y .' (forward lookup only)")
P.add_argument("--frozen-id", type=float, default=0.0, help="std of a frozen random identity code added to every token's input and output embedding (0: none)")
P.add_argument("--freeze-pool", action="store_true", help="episode-only entities have no learned embedding: only the frozen code")
P.add_argument("--phase1", type=int, default=0, help="first steps on episode-only practice (pool episodes and pool drills; no relation statements, no practice over the relations' entities)")
P.add_argument("--out", default=None)
a = P.parse_args()
torch.manual_seed(a.seed)

ds = make_dataset("relations", seed=0, overrides=dict(
    n_relations=1000, n_entities=1000, n_episodes=0, n_filler=0, heldout_fraction=0.05,
    n_episode_entities=max(a.pool, 8)))
held = [tuple(p) for p in ds.meta["heldout_relations"]]
held_set = set(held)
rels = [tuple(l) for l in []]
fwd = [(d.facts[0].subject, d.facts[0].object) for d in ds.documents if d.kind == "relation" and d.meta["direction"] == "forward"]
rev = [(d.facts[0].object, d.facts[0].subject) for d in ds.documents if d.kind == "relation" and d.meta["direction"] == "reverse"]
rel_docs = [d.text for d in ds.documents if d.kind == "relation"]
ents = ds.meta["entities"]
containers = sorted({x for x, _ in fwd})
members = sorted({y for _, y in fwd})
members_of: dict[str, list[str]] = {}
for x, y in fwd:
    members_of.setdefault(x, []).append(y)
ep = [f"f{n}" for n in random.Random(1).sample(range(10000, 100000), a.pool)]
ep_c, ep_m = ep[: a.pool // 2], ep[a.pool // 2:]
vocab = sorted(set(ents) | set(ep) | {".", *FORWARD.split(), *REVERSE.split()})
tok = scratch.build_tokenizer(vocab)
ids = {w: tok.convert_tokens_to_ids(w) for w in vocab}
EOT, PAD = tok.eos_token_id, tok.pad_token_id
cfg = scratch.TrainConfig(n_layers=a.layers, d_model=a.d, n_heads=a.heads, seq_len=a.seq, batch_size=a.batch,
                          steps=a.steps, lr=a.lr, copy_init=a.copy_init)
model = scratch.build_model(cfg, tok, seed=a.seed)
if a.frozen_id:
    gen = torch.Generator().manual_seed(1000 + a.seed)
    R = torch.randn(len(tok), a.d, generator=gen) * a.frozen_id
    model.model.embed_tokens.register_forward_hook(lambda m, inp, out: out + R[inp[0]])
    lm_w = model.lm_head.weight

    class FrozenHead(torch.nn.Module):
        def __init__(self, w):
            super().__init__()
            self.weight = w

        def forward(self, h):
            return torch.nn.functional.linear(h, self.weight + R)

    model.lm_head = FrozenHead(lm_w)
    if a.freeze_pool:
        pool_ids = torch.tensor([ids[w] for w in ep])
        with torch.no_grad():
            model.model.embed_tokens.weight[pool_ids] = 0
            model.lm_head.weight[pool_ids] = 0
        mask = torch.ones(len(tok), 1)
        mask[pool_ids] = 0
        model.model.embed_tokens.weight.register_hook(lambda g: g * mask)
        model.lm_head.weight.register_hook(lambda g: g * mask)
print(f"params {sum(p.numel() for p in model.parameters())/1e6:.2f}M vocab {len(tok)}", flush=True)

FW = [] if a.short else [ids[w] for w in FORWARD.split()]
RV = [ids[w] for w in REVERSE.split()]
DOT = ids["."]


def enc_fact(x, y):  # "x contains y ."
    return [ids[x]] + FW + [ids[y], DOT]


def episode(rng: random.Random, story: bool) -> tuple[list[int], list[int]]:
    """Token ids and per-token loss flags of one practice episode with fresh bindings."""
    n = rng.randint(a.min_facts, a.facts) if a.min_facts else a.facts
    if story:
        while True:
            cs = rng.sample(containers, n)
            ms = rng.sample(members, n)
            if not any(m in members_of.get(c, ()) for c, m in zip(cs, ms)):
                break
    else:
        cs, ms = rng.sample(ep_c, n), rng.sample(ep_m, n)
    pairs = list(zip(cs, ms))
    toks, loss = [], []
    for x, y in pairs:
        f = enc_fact(x, y)
        toks += f
        loss += [0] * len(f)
    for x, y in rng.sample(pairs, min(a.queries, len(pairs))):
        if rng.random() < a.forward_queries and (a.story_forward or not story):
            q = [ids[x]] + FW + [ids[y], DOT]
        else:
            q = [ids[y]] + RV + [ids[x], DOT]
        toks += q
        loss += [0] * (len(q) - 2) + [1, 0]
    return toks, loss


def rel_doc(rng: random.Random) -> tuple[list[int], list[int]]:
    t = rel_docs[rng.randrange(len(rel_docs))]
    toks = [ids[w] for w in t.split()]
    if a.rel_loss == "all":
        return toks, [1] * len(toks)
    return toks, [0] * (len(toks) - 2) + [1, 0]


def repeat_seq(rng: random.Random) -> tuple[list[int], list[int]]:
    n = rng.randint(a.repeat_min, a.repeat_len) if a.repeat_min else a.repeat_len
    real = containers + members if a.real_drill_pool == "all" else containers
    pool = real if rng.random() < a.real_drills else ep
    seq = [ids[w] for w in rng.sample(pool, n)]
    second = seq[::-1] if rng.random() < a.reverse_repeat else seq
    return seq + second, [0] * len(seq) + [0] + [1] * (len(seq) - 1)


PHASE1 = [False]


def row(rng: random.Random) -> tuple[list[int], list[int]]:
    toks, lab = [], []
    if PHASE1[0]:
        saved = (a.real_drills, a.story_share, a.episode_share)
        a.real_drills, a.story_share, a.episode_share = 0.0, 0.0, 1.0
        try:
            PHASE1[0] = False
            return row(rng)
        finally:
            PHASE1[0] = True
            a.real_drills, a.story_share, a.episode_share = saved
    if rng.random() < a.repeat_share:
        while True:
            t, l = repeat_seq(rng)
            t, l = [EOT] + t, [0] + l
            if len(toks) + len(t) > a.seq:
                break
            toks += t
            lab += l
        pad = a.seq - len(toks)
        return toks + [PAD] * pad, lab + [0] * pad
    is_ep = (not a.no_episodes) and rng.random() < a.episode_share
    while True:
        if is_ep:
            t, l = episode(rng, rng.random() < a.story_share)
        else:
            t, l = rel_doc(rng)
        t, l = [EOT] + t, [0] + l
        if len(toks) + len(t) > a.seq:
            break
        toks += t
        lab += l
    pad = a.seq - len(toks)
    return toks + [PAD] * pad, lab + [0] * pad


def batch(step: int):
    rng = random.Random(f"probe-{a.seed}-{step}")
    PHASE1[0] = step < a.phase1
    rows = [row(rng) for _ in range(a.batch)]
    x = torch.tensor([r[0] for r in rows])
    m = torch.tensor([r[1] for r in rows], dtype=torch.bool)
    # labels[t] is the token at t (HF shifts): a flag on token t puts loss on predicting it
    y = x.masked_fill(~m, -100)
    return x, y


# ------------------------------------------------------------------ evaluation sets (fixed)
erng = random.Random("probe-eval")


def q_item(context: list[int], options: list[str], answer: str):
    return context, [ids[o] for o in options], options.index(answer)


def ladder():
    sets = {k: [] for k in ("lookup", "episode", "held_ctx", "trained", "heldout", "oracle", "story_ep")}
    for i in range(a.n_eval):
        cs, ms = erng.sample(ep_c, 4), erng.sample(ep_m, 4)
        pairs = list(zip(cs, ms))
        ctx = [t for x, y in pairs for t in enc_fact(x, y)]
        x, y = erng.choice(pairs)
        opts_m = ms[:]
        opts_c = cs[:]
        sets["lookup"].append(q_item(ctx + [ids[x]] + FW, opts_m, y))
        sets["episode"].append(q_item(ctx + [ids[y]] + RV, opts_c, x))
    for x, y in held:
        others = erng.sample([p for p in held if p[0] != x and p[1] != y], 3)
        shown = [(x, y)] + others
        erng.shuffle(shown)
        ctx = [t for c, m in shown for t in enc_fact(c, m)]
        sets["held_ctx"].append(q_item(ctx + [ids[y]] + RV, [c for c, _ in shown], x))
        wrong = erng.sample([c for c in containers if y not in members_of[c]], 3)
        opts = [x] + wrong
        erng.shuffle(opts)
        sets["heldout"].append(q_item([ids[y]] + RV, opts, x))
        distract = erng.sample(rel_docs, 4)
        docs = distract + [f"{x} {FORWARD} {y} ."]
        erng.shuffle(docs)
        ctx = [ids[w] for d in docs for w in d.split()]
        sets["oracle"].append(q_item(ctx + [ids[y]] + RV, opts, x))
    for x, y in erng.sample(fwd, a.n_eval):
        if erng.random() < 0.5:
            wrong = erng.sample([m for m in members if m not in members_of[x]], 3)
            opts = [y] + wrong
            erng.shuffle(opts)
            sets["trained"].append(q_item([ids[x]] + FW, opts, y))
        elif (x, y) not in held_set:
            wrong = erng.sample([c for c in containers if y not in members_of[c]], 3)
            opts = [x] + wrong
            erng.shuffle(opts)
            sets["trained"].append(q_item([ids[y]] + RV, opts, x))
    for i in range(a.n_eval):
        while True:
            cs, ms = erng.sample(containers, 4), erng.sample(members, 4)
            if not any(m in members_of.get(c, ()) for c, m in zip(cs, ms)):
                break
        pairs = list(zip(cs, ms))
        ctx = [t for x, y in pairs for t in enc_fact(x, y)]
        x, y = erng.choice(pairs)
        sets["story_ep"].append(q_item(ctx + [ids[y]] + RV, cs[:], x))
    return sets


EVAL = ladder()


@torch.no_grad()
def evaluate():
    model.eval()
    out = {}
    for name, items in EVAL.items():
        right = 0
        for ctx, opts, ans in items:
            logits = model(input_ids=torch.tensor([[EOT] + ctx])).logits[0, -1]
            right += int(int(torch.argmax(logits[opts])) == ans)
        out[name] = right / len(items)
    model.train()
    return out


opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
model.train()
t0 = time.time()
lsum, ln = 0.0, 0
curve = []
for step in range(a.steps):
    lr = a.lr * min(1.0, (step + 1) / a.warmup)
    for g in opt.param_groups:
        g["lr"] = lr
    x, y = batch(step)
    loss = model(input_ids=x, labels=y).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    lsum += float(loss.detach())
    ln += 1
    if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
        te = time.time()
        acc = evaluate()
        row_ = {"step": step + 1, "loss": round(lsum / ln, 4), "sec": round(te - t0, 1),
                **{k: round(v, 3) for k, v in acc.items()}}
        curve.append(row_)
        print(json.dumps(row_), flush=True)
        lsum, ln = 0.0, 0
if a.out:
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "curve": curve}, f)
