"""Text generation after a long shared prefix whose KV cache is computed once [P1, augmentation].

Global augmentation [P1] puts the whole training set in context and asks, once per document, for the
inferences linking that document to the rest: hundreds of generations after the same few thousand
tokens. :class:`PrefixGenerator` encodes the shared prefix once (in chunks, like the scorer) and
starts every generation from a copy of its cache, so each generation costs only its own prompt and
new tokens.

Batching several prompts of different lengths pads them on the left *between* the prefix and the
prompts: ``[prefix][pad pad][prompt][new tokens...]``. An attention mask hides the pads and explicit
position ids continue the prefix's positions without counting them, so a padded row computes what
it would alone. Sampling uses one ``torch.Generator`` per row, seeded by the caller, so a row's text
does not depend on which other rows share its batch (what makes a resumed run agree with an
uninterrupted one).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from genmodes.scoring import CACHE_KW, encode_prefix


class PrefixGenerator:
    """Greedy or sampled generation of continuations of ``prefix + prompt``.

    >>> gen = PrefixGenerator(model, tokenizer, prefix="<whole training set>")
    >>> gen.generate(["Document: ...\\nInferences:\\n-"], max_new_tokens=64)
    """

    def __init__(self, model: Any, tokenizer: Any, prefix: str = "", *, prefix_chunk: int = 1024):
        self.model = model
        self.tokenizer = tokenizer
        self.prefix = prefix
        self.prefix_chunk = prefix_chunk
        ids = encode_prefix(tokenizer, prefix)
        if not ids:
            # Nothing to condition on: start from end-of-text (as the scorer does), which also keeps
            # every row's first real query attending to something (a pad-only row would give NaNs).
            ids = [tokenizer.eos_token_id]
        self.prefix_ids: list[int] = ids
        self._kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    @torch.no_grad()
    def _prefix_kv(self) -> list[tuple[torch.Tensor, torch.Tensor]]:
        if self._kv is None:
            from transformers import DynamicCache

            cache = DynamicCache()
            for s in range(0, len(self.prefix_ids), self.prefix_chunk):
                chunk = torch.tensor([self.prefix_ids[s:s + self.prefix_chunk]], device=self.device)
                self.model(input_ids=chunk, use_cache=True, logits_to_keep=1, **{CACHE_KW: cache})
            self._kv = [(layer.keys, layer.values) for layer in cache.layers]
        return self._kv

    def prompt_tokens(self, prompt: str) -> int:
        return len(self.tokenizer(prompt, add_special_tokens=False).input_ids)

    @torch.no_grad()
    def generate(self, prompts: Sequence[str], *, max_new_tokens: int = 128, temperature: float = 0.0,
                 seeds: Sequence[int] | None = None, stop: Sequence[str] = (),
                 return_finished: bool = False, to_budget: bool = False) -> list[str] | tuple[list[str], list[bool]]:
        """One continuation per prompt (generated together as one batch).

        ``temperature`` 0 is greedy; otherwise softmax sampling at that temperature, row ``i`` drawing
        from a generator seeded with ``seeds[i]``. A row ends at end-of-text, at the first ``stop``
        string (cut off, not returned) or after ``max_new_tokens`` tokens. With ``return_finished``,
        also says per row whether it ended by itself (False: cut by ``max_new_tokens``). ``to_budget``:
        no row ends before ``max_new_tokens`` (end-of-text is a token like any other): the dry run times
        a batch at its budget this way, whatever the model it times would write.
        """
        from transformers import DynamicCache

        if not prompts:
            return ([], []) if return_finished else []
        B = len(prompts)
        P = len(self.prefix_ids)
        enc = [self.tokenizer(p, add_special_tokens=False).input_ids for p in prompts]
        W = max(len(e) for e in enc)
        if W == 0:
            raise ValueError("empty prompt: give every row at least one token")
        dev = self.device
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        ids = torch.full((B, W), pad, dtype=torch.long)
        mask = torch.ones((B, P + W), dtype=torch.long)
        pos = torch.zeros((B, W), dtype=torch.long)
        for b, e in enumerate(enc):
            n = len(e)
            ids[b, W - n:] = torch.tensor(e)
            mask[b, P:P + W - n] = 0
            pos[b, W - n:] = torch.arange(P, P + n)
            pos[b, :W - n] = P  # pads: any position, they are masked out
        ids, mask, pos = ids.to(dev), mask.to(dev), pos.to(dev)
        cache = DynamicCache(ddp_cache_data=[(k.expand(B, -1, -1, -1), v.expand(B, -1, -1, -1))
                                             for k, v in self._prefix_kv()])
        gens = None
        if temperature > 0:
            seeds = list(seeds) if seeds is not None else list(range(B))
            if len(seeds) != B:
                raise ValueError(f"{len(seeds)} seeds for {B} prompts")
            gens = [torch.Generator(device="cpu").manual_seed(int(s)) for s in seeds]
        eos = None if to_budget else self.tokenizer.eos_token_id
        out: list[list[int]] = [[] for _ in range(B)]
        texts: list[str | None] = [None] * B
        next_pos = pos[:, -1:] + 1
        logits = self.model(input_ids=ids, attention_mask=mask, position_ids=pos, use_cache=True,
                            logits_to_keep=1, **{CACHE_KW: cache}).logits[:, -1]
        for _ in range(max_new_tokens):
            tok = self._pick(logits, temperature, gens)
            for b in range(B):
                if texts[b] is not None:
                    continue
                t = int(tok[b])
                if t == eos:
                    texts[b] = self.tokenizer.decode(out[b], skip_special_tokens=True)
                    continue
                out[b].append(t)
                if stop:
                    text = self.tokenizer.decode(out[b], skip_special_tokens=True)
                    cut = min((text.find(s) for s in stop if s in text), default=-1)
                    if cut >= 0:
                        texts[b] = text[:cut]
            if all(t is not None for t in texts):
                break
            mask = torch.cat([mask, torch.ones((B, 1), dtype=mask.dtype, device=dev)], dim=1)
            logits = self.model(input_ids=tok[:, None], attention_mask=mask, position_ids=next_pos,
                                use_cache=True, **{CACHE_KW: cache}).logits[:, -1]
            next_pos = next_pos + 1
        result = [t if t is not None else self.tokenizer.decode(o, skip_special_tokens=True)
                  for t, o in zip(texts, out)]
        if return_finished:
            return result, [t is not None for t in texts]
        return result

    @staticmethod
    def _pick(logits: torch.Tensor, temperature: float, gens: list[torch.Generator] | None) -> torch.Tensor:
        if temperature <= 0 or gens is None:
            return logits.argmax(-1)
        probs = torch.softmax(logits.float().cpu() / temperature, dim=-1)
        picks = [torch.multinomial(probs[b], 1, generator=g) for b, g in enumerate(gens)]
        return torch.cat(picks).to(logits.device)
