"""Multiple-choice likelihood scoring: the one definition of "the model chose X" in genmodes.

Semantics follow lm-evaluation-harness (``loglikelihood`` requests): for a context and a continuation,
trailing spaces of the context move into the continuation, context+continuation are encoded together
and split at the context's token count; a choice's score is the summed log-probability of its tokens,
and it is greedy when every one of its tokens is the argmax. The options are never shown in context
[P1 protocol]. Accuracy and length-normalised accuracy come from the same scores.

Speed (what :class:`Scorer` adds over one full forward per choice):
- a long ``prefix`` shared by every question (a whole training set in context) is run once per
  scorer and its KV cache reused by every question and choice;
- each question's own context (retrieved documents, a question alone, a thought) is run once for
  all its choices: questions are packed back to back, each context followed by its choices, with a
  block-diagonal mask, under a token budget (a context too long to pack gets its KV computed once);
- the LM head runs only at the positions that predict a choice token, never over the whole context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from genmodes.errors import GenmodesError
from genmodes.tokens import start_ids


def _cache_kwarg() -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache``; support both."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_KW = _cache_kwarg()
# Architectures whose logits are exactly ``lm_head(decoder(...).last_hidden_state)`` (no softcapping
# or scaling after the head), so the head may be applied to chosen hidden states only.
_PLAIN_HEAD = {"llama", "mistral", "qwen2", "qwen3"}
# Gemma 3's head is plain unless its config sets a final logit softcap (Gemma 3 270M sets none); its
# 262k-word head is what makes running it on chosen positions only worth the check.
_PLAIN_UNLESS_SOFTCAP = {"gemma3_text"}


def _sliding_window(config: Any) -> int | None:
    """The window of a model whose layers mix sliding-window and full attention (``layer_types``),
    which takes a mask per layer type; None for one attention kind throughout."""
    kinds = getattr(config, "layer_types", None) or []
    window = getattr(config, "sliding_window", None)
    return int(window) if window and "sliding_attention" in kinds and "full_attention" in kinds else None


def _plain_head(config: Any) -> bool:
    kind = getattr(config, "model_type", "")
    return kind in _PLAIN_HEAD or (kind in _PLAIN_UNLESS_SOFTCAP
                                   and getattr(config, "final_logit_softcapping", None) is None)


class ScoringError(GenmodesError, ValueError):
    """An impossible scoring request (no choices, an empty choice)."""


@dataclass(frozen=True)
class ChoiceScore:
    choice: str
    logprob: float
    n_tokens: int
    is_greedy: bool

    @property
    def logprob_per_char(self) -> float:
        """lm-eval's ``acc_norm`` normalisation: log-probability per character of the choice."""
        return self.logprob / max(1, len(self.choice))

    def to_json(self) -> dict[str, Any]:
        return {"choice": self.choice, "logprob": self.logprob, "n_tokens": self.n_tokens,
                "is_greedy": self.is_greedy}


def chosen(scores: Sequence[ChoiceScore], normalized: bool = False) -> int:
    """Index of the preferred choice (first one on ties)."""
    key = (lambda s: s.logprob_per_char) if normalized else (lambda s: s.logprob)
    return max(range(len(scores)), key=lambda i: key(scores[i]))


def accuracy(all_scores: Sequence[Sequence[ChoiceScore]], answers: Sequence[int],
             normalized: bool = False) -> float:
    if not answers:
        return float("nan")
    return sum(chosen(s, normalized) == a for s, a in zip(all_scores, answers)) / len(answers)


def accuracy_by_split(model: Any, tokenizer: Any, questions: dict[str, Sequence[Any]]) -> dict[str, float]:
    """Accuracy per split (questions with ``context``, ``choices``, ``answer``), each question alone
    in context; splits without questions are left out."""
    scorer = Scorer(model, tokenizer)
    out = {}
    for split, qs in questions.items():
        if qs:
            scores = scorer.score([(q.context, q.choices) for q in qs])
            out[split] = accuracy(scores, [q.answer for q in qs])
    return out


# ------------------------------------------------------------------------------------------ encoding

def _check_request(context: str, choices: Sequence[str]) -> None:
    if isinstance(choices, str):
        raise ScoringError("choices must be a list of strings, not one string")
    if len(choices) == 0:
        raise ScoringError(f"no choices to score for context {context[:60]!r}")
    for c in choices:
        if not isinstance(c, str) or c == "":
            raise ScoringError(f"empty choice in {list(choices)!r} (context {context[:60]!r})")


def encode_pair(tokenizer: Any, context: str, continuation: str) -> tuple[list[int], list[int]]:
    """lm-eval's pair encoding: trailing spaces move from the context to the continuation."""
    n_space = len(context) - len(context.rstrip(" "))
    if n_space:
        continuation = context[-n_space:] + continuation
        context = context[:-n_space]
    whole = tokenizer(context + continuation, add_special_tokens=False).input_ids
    ctx = tokenizer(context, add_special_tokens=False).input_ids if context else []
    cont = whole[len(ctx):]
    if not cont:
        raise ScoringError(f"choice {continuation!r} encodes to no tokens after context {context[-40:]!r}")
    return ctx, cont


def split_prefix(prefix: str) -> tuple[str, str]:
    """(core, trailing whitespace) of a shared prefix.

    The trailing whitespace is scored at the start of each question's context, not at the end of the
    prefix: a byte-level BPE reads a lone "\n\n" as one token but "\n\nQuestion" as "\n", "\n",
    "Question", so encoding the prefix on its own would give different tokens than encoding prefix and
    question as one text, as lm-eval does (the same rule as lm-eval's, which moves a context's trailing
    space into the continuation).
    """
    core = prefix.rstrip()
    return core, prefix[len(core):]


def encode_prefix(tokenizer: Any, prefix: str) -> list[int]:
    """Token ids that precede every question: start token(s) and the shared prefix text, without its
    trailing whitespace (that goes with each question: :func:`split_prefix`)."""
    core, _ = split_prefix(prefix)
    return start_ids(tokenizer) + (tokenizer(core, add_special_tokens=False).input_ids if core else [])


# ------------------------------------------------------------------------------------------ reference

@torch.no_grad()
def naive_score(model: Any, tokenizer: Any, context: str, choices: Sequence[str],
                prefix: str = "") -> list[ChoiceScore]:
    """Reference: one full forward (full-vocabulary logits everywhere) per choice, as lm-eval does."""
    _check_request(context, choices)
    device = next(model.parameters()).device
    pre = encode_prefix(tokenizer, prefix)
    context = split_prefix(prefix)[1] + context
    out = []
    for choice in choices:
        ctx, cont = encode_pair(tokenizer, context, choice)
        head = pre + ctx
        if not head:  # nothing to condition on: lm-eval starts from the end-of-text token
            head = [tokenizer.eos_token_id]
        ids = torch.tensor([head + cont], device=device)
        logp = torch.log_softmax(model(ids).logits[0].float(), dim=-1)
        pos = torch.arange(len(head) - 1, len(head) + len(cont) - 1, device=device)
        tgt = torch.tensor(cont, device=device)
        lp = logp[pos, tgt]
        greedy = bool((logp[pos].argmax(-1) == tgt).all())
        out.append(ChoiceScore(choice, float(lp.sum()), len(cont), greedy))
    return out


# ------------------------------------------------------------------------------------------ fast scorer

@dataclass
class _Prefix:
    text: str
    ids: list[int]
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None  # per layer (keys, values), batch 1
    last_logp: torch.Tensor | None  # log-probs after the last prefix token (vocab,)


@dataclass
class _Group:
    """One question: its context tokens (after the prefix) once, then each choice's tokens."""

    qi: int
    ctx: list[int]
    conts: list[tuple[int, list[int]]]  # (choice index, continuation tokens)

    @property
    def size(self) -> int:
        return len(self.ctx) + sum(len(x) for _, x in self.conts)


@dataclass(frozen=True)
class Forward:
    """One model call of a scoring run: ``rows`` x ``width`` new tokens (rows padded to the widest)
    after ``past`` cached tokens. ``kind``: ``packed`` (questions and their choices, a block-diagonal
    mask; the LM head at ``head`` positions) or ``cache`` (a shared prefix or a long context run in
    chunks to keep its keys and values; the head at its last position)."""

    kind: str
    rows: int
    width: int
    past: int
    head: int

    @property
    def tokens(self) -> int:
        return self.rows * self.width

    @property
    def keys(self) -> int:
        """Keys each new token's attention reads (the cache and its own row)."""
        return self.past + self.width


class Scorer:
    """Batched likelihood scorer with a cached shared prefix.

    >>> scorer = Scorer(model, tokenizer)
    >>> scorer.score([("The capital of France is", [" Paris", " London"])])[0][0].logprob
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_tokens: int = 4096, max_batch: int = 64,
                 prefix_chunk: int = 1024, packed_tokens: int = 512, row_tokens: int = 256):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.prefix_chunk = prefix_chunk
        # Tokens packed into one forward after a shared prefix: the mask is packed_tokens x (prefix +
        # packed); a question longer than this (context and choices) gets its context's KV first
        # (without a shared prefix, a question longer than batch_tokens does).
        self.packed_tokens = packed_tokens
        # Without a shared prefix: tokens per packed row (several rows per forward); attention is
        # computed across the whole row, so short rows waste little on other questions' tokens.
        self.row_tokens = row_tokens
        self._prefix: _Prefix | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype

    def prefix_tokens(self, prefix: str) -> int:
        return len(encode_prefix(self.tokenizer, prefix))

    @torch.no_grad()
    def _extend(self, pre: _Prefix | None, ids: list[int], text: str = "") -> _Prefix:
        """Run ``ids`` after ``pre`` (in chunks, so attention memory stays bounded) and keep the KV."""
        from transformers import DynamicCache

        base = list(pre.ids) if pre is not None else []
        if not ids:
            return pre if pre is not None else _Prefix(text, [], None, None)
        # The cache concatenates new keys onto copies, so ``pre``'s tensors are left as they were.
        cache = DynamicCache(ddp_cache_data=list(pre.kv)) if pre is not None and pre.kv else DynamicCache()
        last = None
        for s in range(0, len(ids), self.prefix_chunk):
            chunk = torch.tensor([ids[s:s + self.prefix_chunk]], device=self.device)
            out = self.model(input_ids=chunk, use_cache=True, logits_to_keep=1, **{CACHE_KW: cache})
            last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
        kv = [(layer.keys, layer.values) for layer in cache.layers]
        return _Prefix(text, base + list(ids), kv, last)

    def _get_prefix(self, prefix: str) -> _Prefix:
        """The shared prefix's KV, computed once per scorer and prefix text."""
        if self._prefix is not None and self._prefix.text == prefix:
            return self._prefix
        self._prefix = self._extend(None, encode_prefix(self.tokenizer, prefix), prefix)
        self._prefix.text = prefix
        return self._prefix

    def _groups(self, requests: Sequence[tuple[str, Sequence[str]]], pre: _Prefix) -> list[_Group]:
        eos = self.tokenizer.eos_token_id
        groups = []
        for qi, (ctx, choices) in enumerate(requests):
            head: list[int] | None = None
            conts = []
            for ci, choice in enumerate(choices):
                # The context's tokens do not depend on the choice (lm-eval encodes it alone), so one
                # copy serves every choice.
                c, x = encode_pair(self.tokenizer, ctx, choice)
                head = c if head is None else head
                conts.append((ci, x))
            if not pre.ids and not head:  # nothing to condition on: start from end-of-text (lm-eval)
                head = [eos]
            groups.append(_Group(qi, head or [], conts))
        return groups

    @torch.no_grad()
    def score(self, requests: Sequence[tuple[str, Sequence[str]]], prefix: str = "",
              progress: bool = False, desc: str = "scoring") -> list[list[ChoiceScore]]:
        """Score every (context, choices) request after the shared ``prefix``.

        Returns, per request, one :class:`ChoiceScore` per choice, in the order given.

        Each question's context is run once, not once per choice: a question becomes a packed
        stretch of tokens (its context, then each choice after it) with a block-diagonal mask, so a
        choice sees the prefix, its own question's context and its own earlier tokens. Without a
        shared prefix, questions are packed into rows of about ``row_tokens`` and rows batched (short
        rows keep the wasted attention across packed questions small); after a shared prefix, one
        packed row per forward, so the prefix's KV is read once rather than copied per row. A
        context too long to pack is run once on its own (its KV kept) and its choices packed after.
        """
        requests = self._requests(requests, prefix)
        pre = self._get_prefix(prefix)
        results: list[list[ChoiceScore | None]] = [[None] * len(ch) for _, ch in requests]
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=sum(len(ch) for _, ch in requests), desc=desc, unit="choice", leave=False)
        alone, batches = self._schedule(self._groups(requests, pre), shared=pre.kv is not None)
        for g in alone:  # a long context: its KV once, then its choices as a contextless row after it
            self._run([[_Group(g.qi, [], g.conts)]], self._extend(pre, g.ctx), requests, results, bar)
        for batch in batches:
            self._run(batch, pre, requests, results, bar)
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def _requests(self, requests: Sequence[tuple[str, Sequence[str]]], prefix: str) -> list[tuple[str, Sequence[str]]]:
        for ctx, choices in requests:
            _check_request(ctx, choices)
        tail = split_prefix(prefix)[1]
        return [(tail + ctx, choices) for ctx, choices in requests] if tail else list(requests)

    def _schedule(self, groups: list[_Group], shared: bool) -> tuple[list[_Group], list[list[list[_Group]]]]:
        """How :meth:`score` runs ``groups``: (the questions too long to pack, each run alone after its
        context's KV; the forwards, each a list of packed rows, each a list of questions)."""
        groups = sorted(groups, key=lambda g: -g.size)
        # A question over ``limit`` tokens is run alone: its context's KV first, then its choices.
        limit = min(self.batch_tokens, self.packed_tokens) if shared else self.batch_tokens
        width = limit if shared else min(limit, self.row_tokens)
        alone: list[_Group] = []
        rows: list[list[_Group]] = []
        used = 0
        for g in groups:
            if g.size > limit and len(g.ctx) > 1:
                alone.append(g)
            elif rows and used + g.size <= width:
                rows[-1].append(g)
                used += g.size
            else:
                rows.append([g])
                used = g.size
        # Rows come longest first: a batch is padded to its first row's length.
        batches: list[list[list[_Group]]] = []
        batch: list[list[_Group]] = []
        for row in rows:
            n = sum(g.size for g in row)
            if batch and (shared or max(sum(g.size for g in batch[0]), n) * (len(batch) + 1) > self.batch_tokens
                          or len(batch) >= self.max_batch):
                batches.append(batch)
                batch = []
            batch.append(row)
        if batch:
            batches.append(batch)
        return alone, batches

    def plan(self, requests: Sequence[tuple[str, Sequence[str]]], prefix: str = "") -> list["Forward"]:
        """The model calls :meth:`score` makes for these requests on a fresh scorer, in order, without
        running the model: what ``genmodes run --dry-run`` costs (it times calls of these shapes)."""
        requests = self._requests(requests, prefix)
        ids = encode_prefix(self.tokenizer, prefix)  # a BOS alone, with no prefix, is a cached prefix too
        out = self.cache_forwards(0, len(ids))
        alone, batches = self._schedule(self._groups(requests, _Prefix(prefix, ids, None, None)), shared=bool(ids))
        for g in alone:
            out += self.cache_forwards(len(ids), len(g.ctx))
            out.append(self._packed_forward([[_Group(g.qi, [], g.conts)]], len(ids) + len(g.ctx)))
        return out + [self._packed_forward(batch, len(ids)) for batch in batches]

    def cache_forwards(self, past: int, n: int) -> list["Forward"]:
        """:meth:`_extend` running ``n`` tokens after ``past`` cached ones, chunk by chunk."""
        return [Forward("cache", 1, min(self.prefix_chunk, n - s), past + s, 1) for s in range(0, n, self.prefix_chunk)]

    def _packed_forward(self, batch: list[list[_Group]], past: int) -> "Forward":
        lay = _layout(batch, past)
        head = len({(r, p) for r, p in lay.src if p >= 0})
        return Forward("packed", len(batch), max(len(f) for f in lay.flats), past, head)

    @torch.no_grad()
    def forward_runner(self, f: "Forward") -> Any:
        """A function that makes one model call of ``f``'s shape on placeholder tokens, after placeholder
        keys and values for its ``past`` tokens (made here, not in the call: its time depends on the
        shape, not on the values). What the dry run times."""
        fill = self._filler()
        pre = _Prefix("", [], None, None)
        if f.past:
            one = self._extend(None, [fill])
            pre = _Prefix("", [fill] * f.past,
                          [(k.new_empty(k.shape[:2] + (f.past,) + k.shape[3:]).normal_(),
                            v.new_empty(v.shape[:2] + (f.past,) + v.shape[3:]).normal_()) for k, v in one.kv or []],
                          one.last_logp)
        if f.kind == "cache":
            return lambda: self._extend(pre, [fill] * f.width)
        # each row one question: a context, then one choice whose tokens take the head positions wanted
        m = max(1, min(f.width - 1, f.head // max(1, f.rows)))
        g = _Group(0, [fill] * (f.width - m), [(0, [fill] * m)])

        @torch.no_grad()
        def call() -> None:
            self._run([[g] for _ in range(f.rows)], pre, [("", ["x"])], [[None]], None)

        return call

    def _filler(self) -> int:
        eos = self.tokenizer.eos_token_id
        return int(eos if eos is not None else 0)

    def _head_logits(self, ids: torch.Tensor, needed: list[tuple[int, int]], **kwargs: Any) -> torch.Tensor:
        """Logits at the (row, position) pairs in ``needed`` only.

        ``logits_to_keep`` takes positions shared by every row, so on a batch of differently laid out
        rows it would run the LM head (the largest matmul per token here: 49k x 576 for SmolLM2) on
        the union of all rows' positions. Where the logits are known to be the LM head applied to the
        decoder's last hidden state, the head runs on the needed hidden states alone.
        """
        r_idx = torch.tensor([r for r, _ in needed], device=ids.device)
        p_idx = torch.tensor([p for _, p in needed], device=ids.device)
        decoder, head = self.model.get_decoder(), self.model.get_output_embeddings()
        if _plain_head(self.model.config) and decoder is not None and head is not None:
            hidden = decoder(input_ids=ids, **kwargs).last_hidden_state
            return head(hidden[r_idx, p_idx])
        keep = sorted(set(p_idx.tolist()))
        logits = self.model(input_ids=ids, logits_to_keep=torch.tensor(keep, device=ids.device), **kwargs).logits
        at = {p: j for j, p in enumerate(keep)}
        kcol = torch.tensor([at[p] for p in p_idx.tolist()], device=ids.device)
        return logits[r_idx, kcol]

    def _mask(self, allowed: torch.Tensor) -> torch.Tensor:
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "sdpa":
            return allowed.to(self.device)
        # eager and others take an additive float mask
        return torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(
            ~allowed, torch.finfo(self.dtype).min).to(self.device)

    def _run(self, batch: list[list[_Group]], pre: _Prefix, requests: Sequence[tuple[str, Sequence[str]]],
             results: list, bar: Any) -> None:
        """One forward over ``batch`` (rows of packed questions) after ``pre``; fills ``results``."""
        from transformers import DynamicCache

        P = len(pre.ids)
        lay = _layout(batch, P)
        needed = sorted({(r, p) for r, p in lay.src if p >= 0})
        logp = None
        if needed:
            ids, pos_t, mask = self._inputs(lay, P)
            kwargs: dict[str, Any] = {"attention_mask": mask, "position_ids": pos_t.to(self.device)}
            if pre.kv is not None:  # B is 1 here (see score)
                kwargs[CACHE_KW] = DynamicCache(ddp_cache_data=list(pre.kv))
            logits = self._head_logits(ids.to(self.device), needed, use_cache=pre.kv is not None, **kwargs)
            logp = torch.log_softmax(logits.float(), dim=-1)  # (len(needed), vocab)
        col = {rp: j for j, rp in enumerate(needed)}
        at = [col[rp] if rp[1] >= 0 else -1 for rp in lay.src]
        if any(j < 0 for j in at):
            dists = torch.stack([logp[j] if j >= 0 else pre.last_logp for j in at])
        else:
            dists = logp[torch.tensor(at, device=logp.device)]
        tgt_t = torch.tensor(lay.tgt, device=dists.device)
        lps = dists.gather(1, tgt_t[:, None])[:, 0].tolist()
        hits = (dists.argmax(-1) == tgt_t).tolist()
        acc: dict[tuple[int, int], list] = {}
        for key, lp, hit in zip(lay.owner, lps, hits):
            a = acc.setdefault(key, [[], True])
            a[0].append(lp)
            a[1] = a[1] and hit
        for (qi, ci), (vals, greedy) in acc.items():
            results[qi][ci] = ChoiceScore(requests[qi][1][ci], float(sum(vals)), len(vals), bool(greedy))
        if bar is not None:
            bar.update(len(acc))

    def _inputs(self, lay: "_Layout", P: int) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """Token ids, position ids and the attention mask of a packed batch: each question's tokens see
        the prefix, its own context and its own choice, nothing of the other questions or choices."""
        B, T = len(lay.flats), max(len(f) for f in lay.flats)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((B, T), pad, dtype=torch.long)
        pos_t = torch.zeros((B, T), dtype=torch.long)
        grp_t = torch.full((B, T), -1, dtype=torch.long)  # -1: padding
        br_t = torch.zeros((B, T), dtype=torch.long)
        for r in range(B):
            n = len(lay.flats[r])
            ids[r, :n] = torch.tensor(lay.flats[r])
            pos_t[r, :n] = torch.tensor(lay.poss[r])
            grp_t[r, :n] = torch.tensor(lay.grps[r])
            br_t[r, :n] = torch.tensor(lay.branches[r])
        idx = torch.arange(T)
        own = ((grp_t[:, :, None] == grp_t[:, None, :]) & (idx[:, None] >= idx[None, :])
               & ((br_t[:, None, :] == 0) | (br_t[:, :, None] == br_t[:, None, :])))
        # Padding sees itself only: a row with nothing allowed would give NaN keys and values.
        own |= (grp_t[:, :, None] < 0) & torch.eye(T, dtype=torch.bool)
        own &= (grp_t[:, None, :] >= 0) | torch.eye(T, dtype=torch.bool)
        allowed = own if P == 0 else torch.cat([torch.ones(B, T, P, dtype=torch.bool), own], dim=2)
        allowed = allowed[:, None]
        window = _sliding_window(self.model.config)
        if window is None:
            return ids, pos_t, self._mask(allowed)
        # A model with sliding-window layers (Gemma 3: 512 tokens in 5 of 6 layers) uses a 4D mask as
        # given in every layer; its sliding layers get the same mask cut to the window (key position >
        # query position - window, as transformers' own sliding mask).
        kpos = pos_t if P == 0 else torch.cat([torch.arange(P).expand(B, P), pos_t], dim=1)
        near = (kpos[:, None, :] > pos_t[:, :, None] - window)[:, None]
        return ids, pos_t, {"full_attention": self._mask(allowed), "sliding_attention": self._mask(allowed & near)}


@dataclass
class _Layout:
    """A packed batch, row by row: token ids, positions, the question each token belongs to, and its
    branch (0: the question's context; i + 1: choice i). Per choice token: (row, index in the row) whose
    output predicts it (-1: the prefix's last output), the token, and whose choice it is."""

    flats: list[list[int]]
    poss: list[list[int]]
    grps: list[list[int]]
    branches: list[list[int]]
    src: list[tuple[int, int]]
    tgt: list[int]
    owner: list[tuple[int, int]]


def _layout(batch: list[list[_Group]], P: int) -> _Layout:
    lay = _Layout([], [], [], [], [], [], [])
    for r, row in enumerate(batch):
        flat: list[int] = []
        pos: list[int] = []
        grp: list[int] = []
        branch: list[int] = []
        for b, g in enumerate(row):
            s = len(flat)
            flat.extend(g.ctx)
            pos.extend(range(P, P + len(g.ctx)))
            grp.extend([b] * len(g.ctx))
            branch.extend([0] * len(g.ctx))
            for k, (ci, x) in enumerate(g.conts):
                prev = s + len(g.ctx) - 1 if g.ctx else -1
                for j, t in enumerate(x):
                    lay.src.append((r, prev))
                    lay.tgt.append(t)
                    lay.owner.append((g.qi, ci))
                    prev = len(flat)
                    flat.append(t)
                    pos.append(P + len(g.ctx) + j)
                    grp.append(b)
                    branch.append(k + 1)
        lay.flats.append(flat)
        lay.poss.append(pos)
        lay.grps.append(grp)
        lay.branches.append(branch)
    return lay


def score_choices(model: Any, tokenizer: Any, context: str, choices: Sequence[str],
                  prefix: str = "") -> list[ChoiceScore]:
    """Score one question: convenience wrapper over :class:`Scorer`."""
    return Scorer(model, tokenizer).score([(context, choices)], prefix=prefix)[0]
