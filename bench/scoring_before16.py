"""Frozen copy of ``genmodes.scoring`` as it was before issue 16, kept only so bench/scoring.py can time
the per-question path against it (rows padded, each carrying its whole context). Not used by genmodes.

Original docstring: multiple-choice likelihood scoring.

Semantics follow lm-evaluation-harness (``loglikelihood`` requests): for a context and a continuation,
trailing spaces of the context move into the continuation, context+continuation are encoded together
and split at the context's token count; a choice's score is the summed log-probability of its tokens,
and it is greedy when every one of its tokens is the argmax. The options are never shown in context
[P1 protocol]. Accuracy and length-normalised accuracy come from the same scores.

Speed (what :class:`Scorer` adds over one full forward per choice):
- a long ``prefix`` shared by every question (a whole training set in context) is run once per
  scorer and its KV cache reused by every question and choice;
- (context, choice) rows are sorted by length and batched under a token budget;
- the LM head runs only at the positions being scored, never over the whole context.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from genmodes.errors import GenmodesError


def _cache_kwarg() -> str:
    """transformers 5.24 renamed ``past_key_values`` to ``cache``; support both."""
    import inspect

    from transformers import LlamaForCausalLM

    return "cache" if "cache" in inspect.signature(LlamaForCausalLM.forward).parameters else "past_key_values"


CACHE_KW = _cache_kwarg()


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


# ------------------------------------------------------------------------------------------ encoding

def _check_request(context: str, choices: Sequence[str]) -> None:
    if isinstance(choices, str):
        raise ScoringError("choices must be a list of strings, not one string")
    if len(choices) == 0:
        raise ScoringError(f"no choices to score for context {context[:60]!r}")
    for c in choices:
        if not isinstance(c, str) or c == "":
            raise ScoringError(f"empty choice in {list(choices)!r} (context {context[:60]!r})")


def _start_ids(tokenizer: Any) -> list[int]:
    """BOS where the tokenizer adds one by default (Llama-2 style); nothing otherwise (SmolLM2)."""
    bos = tokenizer.bos_token_id
    if bos is None:
        return []
    ids = tokenizer("a").input_ids
    return [bos] if ids and ids[0] == bos else []


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


def encode_prefix(tokenizer: Any, prefix: str) -> list[int]:
    """Token ids that precede every question: start token(s) and the shared prefix text."""
    ids = _start_ids(tokenizer) + (tokenizer(prefix, add_special_tokens=False).input_ids if prefix else [])
    return ids


# ------------------------------------------------------------------------------------------ reference

@torch.no_grad()
def naive_score(model: Any, tokenizer: Any, context: str, choices: Sequence[str],
                prefix: str = "") -> list[ChoiceScore]:
    """Reference: one full forward (full-vocabulary logits everywhere) per choice, as lm-eval does."""
    _check_request(context, choices)
    device = next(model.parameters()).device
    pre = encode_prefix(tokenizer, prefix)
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


class Scorer:
    """Batched likelihood scorer with a cached shared prefix.

    >>> scorer = Scorer(model, tokenizer)
    >>> scorer.score([("The capital of France is", [" Paris", " London"])])[0][0].logprob
    """

    def __init__(self, model: Any, tokenizer: Any, *, batch_tokens: int = 4096, max_batch: int = 64,
                 prefix_chunk: int = 1024, packed_tokens: int = 512):
        self.model = model
        self.tokenizer = tokenizer
        self.batch_tokens = batch_tokens
        self.max_batch = max_batch
        self.prefix_chunk = prefix_chunk
        # Rows packed per forward after a shared prefix: the mask is packed_tokens x (prefix + packed).
        self.packed_tokens = packed_tokens
        self._prefix: _Prefix | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def prefix_tokens(self, prefix: str) -> int:
        return len(encode_prefix(self.tokenizer, prefix))

    @torch.no_grad()
    def _get_prefix(self, prefix: str) -> _Prefix:
        """Run the shared prefix once (in chunks, so attention memory stays bounded) and keep its KV."""
        if self._prefix is not None and self._prefix.text == prefix:
            return self._prefix
        from transformers import DynamicCache

        ids = encode_prefix(self.tokenizer, prefix)
        kv, last = None, None
        if ids:
            cache = DynamicCache()
            for s in range(0, len(ids), self.prefix_chunk):
                chunk = torch.tensor([ids[s:s + self.prefix_chunk]], device=self.device)
                # The cache object is filled in place.
                out = self.model(input_ids=chunk, use_cache=True, logits_to_keep=1, **{CACHE_KW: cache})
                last = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            kv = [(layer.keys, layer.values) for layer in cache.layers]
        self._prefix = _Prefix(prefix, ids, kv, last)
        return self._prefix

    @torch.no_grad()
    def score(self, requests: Sequence[tuple[str, Sequence[str]]], prefix: str = "",
              progress: bool = False, desc: str = "scoring") -> list[list[ChoiceScore]]:
        """Score every (context, choices) request after the shared ``prefix``.

        Returns, per request, one :class:`ChoiceScore` per choice, in the order given.
        """
        for ctx, choices in requests:
            _check_request(ctx, choices)
        pre = self._get_prefix(prefix)
        eos = self.tokenizer.eos_token_id
        # One row per (request, choice): tokens after the prefix, and where the choice starts.
        rows: list[tuple[int, int, list[int], int]] = []
        for qi, (ctx, choices) in enumerate(requests):
            for ci, choice in enumerate(choices):
                c, x = encode_pair(self.tokenizer, ctx, choice)
                toks = c + x
                if not pre.ids and not c:  # nothing to condition on: start from end-of-text (lm-eval)
                    toks = [eos] + toks
                rows.append((qi, ci, toks, len(toks) - len(x)))
        results: list[list[ChoiceScore | None]] = [[None] * len(ch) for _, ch in requests]
        order = sorted(range(len(rows)), key=lambda i: -len(rows[i][2]))
        batches = self._batches(order, rows, packed=pre.kv is not None)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(rows), desc=desc, unit="choice", leave=False)
        for batch in batches:
            self._score_batch([rows[i] for i in batch], pre, requests, results)
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        return results  # type: ignore[return-value]

    def _batches(self, order: list[int], rows: list, packed: bool) -> list[list[int]]:
        """Group rows under the token budget: padded width x rows, or (packed) the sum of lengths."""
        batches, cur, cost = [], [], 0
        budget = min(self.batch_tokens, self.packed_tokens) if packed else self.batch_tokens
        for i in order:
            n = len(rows[i][2])
            new_cost = cost + n if packed else max(cost // max(1, len(cur)), n) * (len(cur) + 1)
            if cur and (new_cost > budget or len(cur) >= self.max_batch):
                batches.append(cur)
                cur, new_cost = [], n
            cur.append(i)
            cost = new_cost
        if cur:
            batches.append(cur)
        return batches

    def _score_batch(self, batch: list[tuple[int, int, list[int], int]], pre: _Prefix,
                     requests: Sequence[tuple[str, Sequence[str]]], results: list) -> None:
        """Padded rows (no prefix) or rows packed into one sequence after the prefix.

        With a shared prefix, rows are packed back to back into ONE sequence after it, with positions
        restarting at the prefix length and a block-diagonal mask (each row sees the prefix and its own
        earlier tokens). The prefix's keys and values are then read once per batch instead of being
        copied for every row, which is what made long-context scoring slow (the cache and the grouped
        query heads are materialised per row in a padded batch).
        """
        if pre.kv is None:
            ids, needed, where = self._padded(batch)
            kwargs: dict[str, Any] = {}
        else:
            ids, needed, where, kwargs = self._packed(batch, pre)
        logp = None
        if needed:
            keep = torch.tensor(needed, device=self.device)
            logits = self.model(input_ids=ids.to(self.device), use_cache=pre.kv is not None,
                                logits_to_keep=keep, **kwargs).logits
            logp = torch.log_softmax(logits.float(), dim=-1)  # (B, len(needed), vocab)
        col = {p: j for j, p in enumerate(needed)}
        for b, (qi, ci, toks, start) in enumerate(batch):
            row, offset = where(b)
            lps, greedy = [], True
            for p in range(start, len(toks)):
                if p == 0:  # first token right after the prefix: predicted by the prefix's last position
                    dist = pre.last_logp
                else:
                    dist = logp[row, col[offset + p - 1]]
                lps.append(dist[toks[p]])
                greedy = greedy and int(dist.argmax()) == toks[p]
            choice = requests[qi][1][ci]
            results[qi][ci] = ChoiceScore(choice, float(torch.stack(lps).sum()), len(toks) - start, greedy)

    def _padded(self, batch):
        B = len(batch)
        width = max(len(r[2]) for r in batch)
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        # Right padding: with causal attention, pad tokens after a row's end cannot affect its scores.
        ids = torch.full((B, width), pad, dtype=torch.long)
        for b, (_, _, toks, _) in enumerate(batch):
            ids[b, : len(toks)] = torch.tensor(toks)
        # Positions whose output predicts a choice token (position p predicts token p+1).
        needed = sorted({p - 1 for _, _, toks, start in batch for p in range(max(start, 1), len(toks))})
        return ids, needed, (lambda b: (b, 0))

    def _packed(self, batch, pre: _Prefix):
        from transformers import DynamicCache

        P = len(pre.ids)
        starts, flat, pos = [], [], []
        for _, _, toks, _ in batch:
            starts.append(len(flat))
            flat.extend(toks)
            pos.extend(range(P, P + len(toks)))
        T = len(flat)
        seg = torch.empty(T, dtype=torch.long)
        for b, (_, _, toks, _) in enumerate(batch):
            seg[starts[b]: starts[b] + len(toks)] = b
        idx = torch.arange(T)
        own = (seg[:, None] == seg[None, :]) & (idx[:, None] >= idx[None, :])
        allowed = torch.cat([torch.ones(T, P, dtype=torch.bool), own], dim=1)[None, None]
        if getattr(self.model.config, "_attn_implementation", "sdpa") == "sdpa":
            mask = allowed.to(self.device)
        else:  # eager and others take an additive float mask
            mask = torch.zeros(allowed.shape, dtype=self.dtype).masked_fill(~allowed, torch.finfo(self.dtype).min)
            mask = mask.to(self.device)
        needed = sorted({starts[b] + p - 1 for b, (_, _, toks, start) in enumerate(batch)
                         for p in range(max(start, 1), len(toks))})
        kwargs = {CACHE_KW: DynamicCache(ddp_cache_data=[(k, v) for k, v in pre.kv]),
                  "attention_mask": mask, "position_ids": torch.tensor([pos], device=self.device)}
        return torch.tensor([flat]), needed, (lambda b: (0, starts[b])), kwargs

    @property
    def dtype(self) -> torch.dtype:
        return next(self.model.parameters()).dtype


def score_choices(model: Any, tokenizer: Any, context: str, choices: Sequence[str],
                  prefix: str = "") -> list[ChoiceScore]:
    """Score one question: convenience wrapper over :class:`Scorer`."""
    return Scorer(model, tokenizer).score([(context, choices)], prefix=prefix)[0]
