"""Prototype: can a small from-scratch transformer learn to read a codebook definition in its context?

Trains only on practice episodes drawn fresh for every row (a practice codebook, a new random mapping
over a pool of code words, defined code-first "fop = a", then used), with the loss only on the code
words the definition determines, and prints every ``--eval-every`` steps the share of new codebooks
(names never trained) whose last symbol's code it picks among 4 of the definition's codes (chance 25%).

Two encoding forms:
  aligned      encode with B : a c b -> fop klu trel     (the k-th code is the k-th symbol's: the model
               must find which symbol comes next, then look it up)
  interleaved  encode with B : a -> fop ; c -> klu ; b -> trel   (each code right after its symbol)

Usage: OMP_NUM_THREADS=1 PYTHONPATH=src .venv/bin/python dev/codebook_probe.py --form interleaved --steps 2000
"""

from __future__ import annotations

import argparse
import json
import random
import string
import time

import torch

from genmodes.training import scratch

P = argparse.ArgumentParser()
P.add_argument("--form", choices=["aligned", "interleaved"], default="aligned")
P.add_argument("--steps", type=int, default=2000)
P.add_argument("--batch", type=int, default=32)
P.add_argument("--seq", type=int, default=128)
P.add_argument("--lr", type=float, default=1e-3)
P.add_argument("--warmup", type=int, default=100)
P.add_argument("--layers", type=int, default=3)
P.add_argument("--d", type=int, default=64)
P.add_argument("--heads", type=int, default=4)
P.add_argument("--symbols", type=int, default=12)
P.add_argument("--codes", type=int, default=60, help="practice code words")
P.add_argument("--books", type=int, default=20, help="practice codebook names")
P.add_argument("--min-len", type=int, default=1)
P.add_argument("--max-len", type=int, default=6)
P.add_argument("--min-pairs", type=int, default=None, help="practice definitions of a random subset of the "
               "alphabet, uniform in [min-pairs, symbols] mappings (None: all); evaluation always defines all")
P.add_argument("--arrow", default="->", help="the interleaved encoding's word between a symbol and its code")
P.add_argument("--distinct", action="store_true", help="practice encodings use each symbol at most once (every "
               "code is then read from the definition, none from earlier in the encoding)")
P.add_argument("--symbol-pool", type=int, default=0, help="symbols drawn from a pool of this many (0: the "
               "shared alphabet); each definition maps --symbols of them")
P.add_argument("--drill-symbols", action="store_true", help="drills draw from the symbols as well as the codes")
P.add_argument("--max-pairs", type=int, default=None, help="at most this many mappings per practice definition")
P.add_argument("--eval-pairs", type=int, default=4, help="also evaluate on new codebooks of this many mappings")
P.add_argument("--repeat-share", type=float, default=0.0, help="share of rows that are repeat drills: runs of "
               "distinct code words, each followed by itself again (loss on the second run)")
P.add_argument("--repeat-min", type=int, default=3)
P.add_argument("--repeat-len", type=int, default=12)
P.add_argument("--reverse-repeat", type=float, default=0.0, help="share of drills whose second run is reversed")
P.add_argument("--symbol-first", type=float, default=0.0, help="share of practice definitions written symbol-first "
               "('a = fop': the code right after its symbol, as in plain induction); evaluation stays code-first")
P.add_argument("--copy-init", action="store_true")
P.add_argument("--eval-every", type=int, default=250)
P.add_argument("--n-eval", type=int, default=200)
P.add_argument("--seed", type=int, default=0)
P.add_argument("--out", default=None)
a = P.parse_args()
torch.manual_seed(a.seed)

alphabet = list(string.ascii_lowercase[: a.symbols])
pool_syms = [f"s{n}" for n in range(a.symbol_pool)]
codes = [f"c{n}" for n in range(a.codes)]
books = [f"b{n}" for n in range(a.books)]
eval_books = [f"e{n}" for n in range(a.n_eval)]
vocab = sorted(set(alphabet) | set(pool_syms) | set(codes) | set(books) | set(eval_books)
               | {"codebook", ":", "=", ";", ".", "encode", "with", "->"})
tok = scratch.build_tokenizer(vocab)
ids = {w: tok.convert_tokens_to_ids(w) for w in vocab}
EOT, PAD = tok.eos_token_id, tok.pad_token_id
cfg = scratch.TrainConfig(n_layers=a.layers, d_model=a.d, n_heads=a.heads, seq_len=a.seq, batch_size=a.batch,
                          steps=a.steps, lr=a.lr, copy_init=a.copy_init)
model = scratch.build_model(cfg, tok, seed=a.seed)
print(f"params {sum(p.numel() for p in model.parameters())/1e6:.2f}M vocab {len(tok)} form {a.form}", flush=True)


def definition(book: str, m: dict[str, str], rng: random.Random, symbol_first: bool = False) -> list[str]:
    pairs = list(m.items())
    rng.shuffle(pairs)
    body = " ; ".join(f"{s} = {c}" if symbol_first else f"{c} = {s}" for s, c in pairs)
    return ["codebook", book, ":"] + body.split() + ["."]


def encoding(book: str, syms: list[str], m: dict[str, str]) -> tuple[list[str], list[int]]:
    """Words of the encoding and the positions of the code words in it."""
    head = ["encode", "with", book, ":"]
    if a.form == "aligned":
        words = head + syms + ["->"] + [m[s] for s in syms]
        return words, list(range(len(head) + len(syms) + 1, len(words)))
    words, pos = head[:], []
    for i, s in enumerate(syms):
        words += ([";"] if i else []) + [s, a.arrow]
        pos.append(len(words))
        words.append(m[s])
    return words, pos


def episode(rng: random.Random) -> tuple[list[int], list[int]]:
    book = rng.choice(books)
    base = rng.sample(pool_syms, a.symbols) if pool_syms else alphabet
    letters = base if a.min_pairs is None else rng.sample(base, rng.randint(a.min_pairs, a.max_pairs or a.symbols))
    m = dict(zip(letters, rng.sample(codes, len(letters))))
    d = definition(book, m, rng, rng.random() < a.symbol_first)
    n = rng.randint(a.min_len, a.max_len)
    syms = rng.sample(letters, min(n, len(letters))) if a.distinct else [rng.choice(letters) for _ in range(n)]
    e, pos = encoding(book, syms, m)
    words = d + e
    flags = [0] * len(words)
    for p in pos:
        flags[len(d) + p] = 1
    return [ids[w] for w in words], flags


def drill(rng: random.Random) -> tuple[list[int], list[int]]:
    pool = codes + (pool_syms or alphabet) if a.drill_symbols else codes
    seq = [ids[w] for w in rng.sample(pool, rng.randint(a.repeat_min, a.repeat_len))]
    second = seq[::-1] if rng.random() < a.reverse_repeat else seq
    return seq + second, [0] * len(seq) + [0] + [1] * (len(seq) - 1)


def row(rng: random.Random) -> tuple[list[int], list[int]]:
    toks, lab = [], []
    make = drill if rng.random() < a.repeat_share else episode
    while True:
        t, l = make(rng)
        t, l = [EOT] + t, [0] + l
        if len(toks) + len(t) > a.seq:
            break
        toks += t
        lab += l
    pad = a.seq - len(toks)
    return toks + [PAD] * pad, lab + [0] * pad


def batch(step: int):
    rng = random.Random(f"cbprobe-{a.seed}-{step}")
    rows = [row(rng) for _ in range(a.batch)]
    x = torch.tensor([r[0] for r in rows])
    m = torch.tensor([r[1] for r in rows], dtype=torch.bool)
    return x, x.masked_fill(~m, -100)


def eval_items(n_pairs: int):
    """As the dataset's practice_in_context: a never-trained codebook name, the target's and the wrong
    options' symbols absent from the sequence before it."""
    rng = random.Random(f"cbprobe-eval-{n_pairs}")
    items = []
    for book in eval_books:
        letters = rng.sample(pool_syms or alphabet, n_pairs)
        m = dict(zip(letters, rng.sample(codes, n_pairs)))
        d = definition(book, m, rng)
        target = rng.choice(letters)
        wrong = rng.sample([s for s in letters if s != target], 3)
        others = [s for s in letters if s != target and s not in wrong]
        n = rng.randint(a.min_len, a.max_len) if others else 1
        syms = [rng.choice(others) for _ in range(n - 1)] + [target]
        e, pos = encoding(book, syms, m)
        ctx = d + e[: pos[-1]]
        opts = [target] + wrong
        rng.shuffle(opts)
        items.append(([ids[w] for w in ctx], [ids[m[s]] for s in opts], opts.index(target)))
    return items


EVAL = {"practice_in_context": eval_items(a.symbols), f"pairs{a.eval_pairs}": eval_items(a.eval_pairs)}


@torch.no_grad()
def evaluate() -> dict[str, float]:
    model.eval()
    out = {}
    for name, items in EVAL.items():
        right = 0
        for ctx, opts, ans in items:
            logits = model(input_ids=torch.tensor([[EOT] + ctx])).logits[0, -1]
            right += int(int(torch.argmax(logits[opts])) == ans)
        out[name] = round(right / len(items), 3)
    model.train()
    return out


opt = torch.optim.AdamW(model.parameters(), lr=a.lr, betas=(0.9, 0.95), weight_decay=0.0)
model.train()
t0 = time.time()
lsum, ln, curve = 0.0, 0, []
for step in range(a.steps):
    for g in opt.param_groups:
        g["lr"] = a.lr * min(1.0, (step + 1) / a.warmup)
    x, y = batch(step)
    loss = model(input_ids=x, labels=y).loss
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    lsum += float(loss.detach())
    ln += 1
    if (step + 1) % a.eval_every == 0 or step + 1 == a.steps:
        r = {"step": step + 1, "loss": round(lsum / ln, 4), "sec": round(time.time() - t0, 1),
             **evaluate()}
        curve.append(r)
        print(json.dumps(r), flush=True)
        lsum, ln = 0.0, 0
if a.out:
    with open(a.out, "w") as f:
        json.dump({"args": vars(a), "curve": curve}, f)
