"""Small transformers trained from scratch on a dataset's own symbols [P2, "latent learning"].

P2 shows the reversal failure is not an artefact of fine-tuning: a decoder-only model trained from
scratch on synthetic relations recalls the trained direction, reverses in context, and fails on
held-out reversals from its parameters. This module provides the three pieces of that track:

- :func:`build_tokenizer`: a word-level tokenizer over the dataset's symbols (whitespace split), as
  a ``transformers.PreTrainedTokenizerFast``, so :class:`genmodes.scoring.Scorer` works unchanged:
  choices carry a leading space, whitespace is never a token, so lm-eval's pair encoding splits
  context and choice at a word boundary. It adds ``<|endoftext|>`` in front of a text (the Scorer's
  start token), the same token that separates packed training documents, so a question is scored in
  the position a document starts in training.
- :func:`build_model`: a small ``LlamaForCausalLM`` (no dropout, untied embeddings) from :class:`TrainConfig`.
- :func:`train`: AdamW with linear warmup and cosine decay over packed training rows; deterministic
  given the seed (the batch of a step is a pure function of (seed, step), and the learning rate of
  the step); a progress bar with the loss; atomic checkpoints (model, optimizer, RNG, step, loss
  accumulators) every ``checkpoint_every`` steps, from which a killed run resumes to bitwise the same
  final weights on the same device; and a curve file (JSONL rows ``{"step", "loss", "accuracy":
  {split: acc}}``) evaluated every ``eval_every`` steps by the caller's scorer.

Packing: each epoch shuffles the documents (seeded by seed and epoch) and fills rows of ``seq_len``
tokens greedily, whole documents only, each preceded by ``<|endoftext|>``; the rest of a row is
padding that carries no loss. Attention crosses document boundaries within a row (nanoGPT style):
the model learns that text after ``<|endoftext|>`` is unrelated, and that statements within one
document (an episode) are related.
"""

from __future__ import annotations

import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, model_validator

from genmodes.errors import ConfigError

EOT = "<|endoftext|>"  # start of every document and of every scored text
PAD = "<pad>"
UNK = "<unk>"
CHECKPOINT = "checkpoint.pt"
CURVES = "curves.jsonl"
FORMAT_VERSION = 2  # bump when packing or training semantics change (part of artifact keys)


class TrainConfig(BaseModel):
    """Model size and training schedule of a from-scratch model (every field changes the weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    n_layers: int = Field(3, ge=1)
    d_model: int = Field(128, ge=8)
    n_heads: int = Field(4, ge=1)
    d_ff: int | None = Field(None, ge=1, description="MLP width; default 4 * d_model")
    seq_len: int = Field(64, ge=8, description="packed row length in tokens; also the longest scored text")
    batch_size: int = Field(32, ge=1, description="rows per step")
    steps: int = Field(800, ge=1)
    lr: float = Field(3e-3, gt=0)
    min_lr_ratio: float = Field(0.1, ge=0, le=1, description="final learning rate / lr (cosine)")
    warmup_steps: int = Field(50, ge=0)
    weight_decay: float = Field(0.0, ge=0)
    grad_clip: float = Field(1.0, gt=0)
    eval_every: int = Field(100, ge=1, description="steps between curve points")
    eval_questions: int = Field(64, ge=1, description="questions per split in a curve point")
    checkpoint_every: int = Field(100, ge=1)
    copy_init: bool = Field(False, description="the output embedding starts as a copy of the input embedding "
                                                "(trained apart): a prior for copying a context token")
    curriculum_steps: int = Field(0, ge=0, description="first steps on the early documents only (the in-context "
                                  "episodes answerable only from their context), then on everything")
    schedule: Literal["cosine", "constant"] = Field(
        "cosine", description="learning rate after warm-up: cosine decay to min_lr_ratio, or constant (lookup "
                              "forms after a plateau; a decaying rate can end before it)")
    loss: Literal["all", "targets"] = Field(
        "all", description="which tokens carry the loss: every token, or only a document's targets (the words its "
                           "context determines, declared by the family; documents declaring none: every token)")
    until_ready: float | None = Field(
        None, gt=0, le=1, description="stopping rule: end training at the first curve point where every recall split "
                                      "reaches this accuracy and, for a model trained with practice, every rung of "
                                      "the dataset's calibration ladder its threshold (steps is then the most); "
                                      "None: train all steps")
    fresh_bindings: bool = Field(
        False, description="documents marked fresh get new entities every time they are packed (each epoch): the "
                           "dataset's rebind pools permuted, so practice episodes cannot be memorised")

    @model_validator(mode="after")
    def _check(self) -> "TrainConfig":
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model ({self.d_model}) must be a multiple of n_heads ({self.n_heads})")
        if (self.d_model // self.n_heads) % 2:
            raise ValueError(f"head size d_model/n_heads ({self.d_model // self.n_heads}) must be even (rotary)")
        return self

    def train_fields(self) -> dict[str, Any]:
        """The fields of this class only (a subclass may add non-training settings). A field at its
        default that did not exist in an earlier version is left out, so models trained before it
        keep their keys."""
        out = {k: getattr(self, k) for k in TrainConfig.model_fields}
        for k, default in (("curriculum_steps", 0), ("schedule", "cosine"), ("loss", "all"),
                           ("fresh_bindings", False), ("until_ready", None)):
            if out[k] == default:
                del out[k]
        return out


# ------------------------------------------------------------------------------------------ tokenizer

def vocabulary_of(texts: Iterable[str]) -> list[str]:
    """Every whitespace-separated symbol of ``texts``, sorted."""
    return sorted({w for t in texts for w in t.split()})


def build_tokenizer(vocabulary: Iterable[str]) -> Any:
    """A word-level ``PreTrainedTokenizerFast``: ids 0-2 are ``<|endoftext|>`` (bos = eos), ``<pad>``,
    ``<unk>``; then the symbols in sorted order. Encoding with special tokens prepends ``<|endoftext|>``;
    decoding joins words with spaces."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    words = [w for w in sorted(set(vocabulary)) if w not in (EOT, PAD, UNK)]
    if any(not w or any(c.isspace() for c in w) for w in words):
        raise ConfigError("vocabulary symbols must be non-empty and contain no whitespace")
    vocab = {EOT: 0, PAD: 1, UNK: 2}
    for w in words:
        vocab[w] = len(vocab)
    tk = Tokenizer(models.WordLevel(vocab=vocab, unk_token=UNK))
    tk.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tk.decoder = decoders.WordPiece(prefix="##", cleanup=False)  # joins words with single spaces
    tk.post_processor = processors.TemplateProcessing(single=f"{EOT} $A", special_tokens=[(EOT, 0)])
    return PreTrainedTokenizerFast(tokenizer_object=tk, bos_token=EOT, eos_token=EOT, pad_token=PAD,
                                   unk_token=UNK)


# ------------------------------------------------------------------------------------------ model

def build_model(config: TrainConfig, tokenizer: Any, seed: int = 0) -> Any:
    """A randomly initialised ``LlamaForCausalLM`` sized by ``config``, weights from ``seed``."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    cfg = LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=config.d_model,
        intermediate_size=config.d_ff or 4 * config.d_model, num_hidden_layers=config.n_layers,
        num_attention_heads=config.n_heads, num_key_value_heads=config.n_heads,
        max_position_embeddings=config.seq_len, bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        # Untied: with tied input/output embeddings, training "X contains Y" also moves the input
        # embedding of Y, a path to held-out reversals. Measured on relations (1,000 relations, 800
        # steps): held-out reversals from parameters 66% tied vs 22% untied (chance 25%).
        tie_word_embeddings=False, attention_dropout=0.0)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = LlamaForCausalLM(cfg)
    if config.copy_init:
        # Untied, yet W_U[t] . W_E[t] starts large for every token t: an attention head that moves a
        # context token's embedding forward then already raises that token's logit, so copying from
        # the context need not be learned token by token (entity tokens are rare). Training moves the
        # two matrices apart, so the held-out-reversal path of tied embeddings stays closed.
        with torch.no_grad():
            model.lm_head.weight.copy_(model.model.embed_tokens.weight)
    return model


# ------------------------------------------------------------------------------------------ packing

IGNORE = -100


class Packer:
    """The training rows of every step: a pure function of (documents, seq_len, seed, step).

    ``rows_for_step(step)`` gives ``batch_size`` rows of ``seq_len`` token ids (padded with the pad id)
    and their labels (the ids where a token carries the loss, -100 elsewhere). Epochs are packed
    lazily; the order of rows is the order of the shuffled documents.

    ``targets[i]``: the positions of document ``i``'s tokens that carry the loss (None: all of them,
    and the start token before it). ``fresh[i]`` with ``pools``: document ``i`` is packed with new
    entities in every epoch: each of its tokens from a pool is mapped to a distinct token of the same
    pool, drawn from (seed, epoch, i), so no binding of a practice episode is ever replayed.
    """

    def __init__(self, doc_ids: Sequence[Sequence[int]], seq_len: int, batch_size: int, seed: int,
                 eot_id: int, pad_id: int, targets: Sequence[Sequence[int] | None] | None = None,
                 fresh: Sequence[bool] | None = None, pools: Sequence[Sequence[int]] = ()):
        if not doc_ids:
            raise ConfigError("no training documents to train on")
        longest = max(len(d) for d in doc_ids) + 1
        if longest > seq_len:
            raise ConfigError(f"seq_len ({seq_len}) is shorter than the longest training document "
                              f"({longest} tokens with its start token): raise seq_len")
        self.docs = [list(d) for d in doc_ids]
        self.targets = list(targets) if targets is not None else [None] * len(self.docs)
        self.fresh = list(fresh) if fresh is not None and pools else [False] * len(self.docs)
        self.pool_of = {t: k for k, pool in enumerate(pools) for t in pool}
        self.pools = [list(p) for p in pools]
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.eot, self.pad = eot_id, pad_id
        self._starts: list[int] = []  # global index of the first row of each epoch packed so far
        self._lens: list[int] = []  # rows of each such epoch
        self._cache: dict[int, list[tuple[list[int], list[int]]]] = {}  # the last epochs' rows

    def _rebind(self, ids: list[int], epoch: int, i: int) -> list[int]:
        rng = random.Random(f"scratch-rebind-{self.seed}-{epoch}-{i}")
        mapping: dict[int, int] = {}
        for k, pool in enumerate(self.pools):
            mine = sorted({t for t in ids if self.pool_of.get(t) == k})
            mapping.update(zip(mine, rng.sample(pool, len(mine))))
        return [mapping.get(t, t) for t in ids]

    def _piece(self, epoch: int, i: int) -> tuple[list[int], list[int]]:
        ids = self._rebind(self.docs[i], epoch, i) if self.fresh[i] else self.docs[i]
        piece = [self.eot] + ids
        tg = self.targets[i]
        if tg is None:
            return piece, piece[:]
        labels = [IGNORE] * len(piece)
        for j in tg:
            labels[1 + j] = piece[1 + j]
        return piece, labels

    def _pack(self, e: int) -> list[tuple[list[int], list[int]]]:
        order = list(range(len(self.docs)))
        random.Random(f"scratch-pack-{self.seed}-{e}").shuffle(order)
        rows: list[tuple[list[int], list[int]]] = []
        cur: list[int] = []
        lab: list[int] = []
        for i in order:
            piece, labels = self._piece(e, i)
            if len(cur) + len(piece) > self.seq_len:
                rows.append(self._pad(cur, lab))
                cur, lab = [], []
            cur += piece
            lab += labels
        if cur:
            rows.append(self._pad(cur, lab))
        return rows

    def _pad(self, ids: list[int], labels: list[int]) -> tuple[list[int], list[int]]:
        n = self.seq_len - len(ids)
        return ids + [self.pad] * n, [IGNORE if t == self.pad else t for t in labels] + [IGNORE] * n

    def epoch_rows(self, epoch: int) -> list[tuple[list[int], list[int]]]:
        self._known(epoch)
        if epoch not in self._cache:  # an epoch read again (the epoch count at the end of training)
            self._cache[epoch] = self._pack(epoch)
        return self._cache[epoch]

    def _known(self, epoch: int) -> None:
        """Pack epochs in order until ``epoch``'s first row index is known."""
        while len(self._starts) <= epoch:
            e = len(self._starts)
            rows = self._pack(e)
            self._starts.append(self._starts[-1] + self._lens[-1] if e else 0)
            self._lens.append(len(rows))
            self._cache[e] = rows
            for old in [k for k in self._cache if k < e - 1]:
                del self._cache[old]  # rows are read in order: two epochs cover a step across a boundary

    def row(self, index: int) -> tuple[list[int], list[int]]:
        e = 0
        while True:
            self._known(e)
            if index < self._starts[e] + self._lens[e]:
                return self.epoch_rows(e)[index - self._starts[e]]
            e += 1

    def rows_for_step(self, step: int) -> list[list[int]]:
        return [self.row(step * self.batch_size + b)[0] for b in range(self.batch_size)]

    def batch_for_step(self, step: int) -> tuple[list[list[int]], list[list[int]]]:
        """(token ids, labels) of the step's rows."""
        rows = [self.row(step * self.batch_size + b) for b in range(self.batch_size)]
        return [r[0] for r in rows], [r[1] for r in rows]

    def tokens_per_epoch(self) -> int:
        return sum(len(d) + 1 for d in self.docs)


# ------------------------------------------------------------------------------------------ training

def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    if config.schedule == "constant":
        return config.lr
    span = max(1, config.steps - config.warmup_steps)
    t = min(1.0, (step - config.warmup_steps) / span)
    floor = config.min_lr_ratio
    return config.lr * (floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class TrainResult:
    steps: int
    final_loss: float
    train_seconds: float  # training compute of this call and any earlier, interrupted ones (no evals)
    resumed_from: int  # step of the checkpoint this call started from (0 = fresh)
    epochs: float  # passes over the training documents
    curves_file: Path


def eval_sample(questions: Sequence[Any], n: int, seed: int) -> dict[str, list[Any]]:
    """Up to ``n`` questions per split, a seeded sample fixed for the whole run."""
    by_split: dict[str, list[Any]] = {}
    for q in questions:
        by_split.setdefault(q.split, []).append(q)
    rng = random.Random(f"scratch-eval-{seed}")
    return {s: (rng.sample(qs, n) if len(qs) > n else list(qs)) for s, qs in sorted(by_split.items())}


def _atomic_save(obj: Any, path: Path) -> None:
    import torch

    from genmodes.io import atomic_file

    with atomic_file(path) as tmp:
        torch.save(obj, tmp)


def _packers(tokenizer: Any, texts: Sequence[str], config: TrainConfig, seed: int,
             early: Sequence[bool] | None, targets: Sequence[Sequence[int] | None] | None,
             fresh: Sequence[bool] | None, pools: Sequence[Sequence[str]],
             late_targets: Sequence[Sequence[int] | None] | None = None) -> tuple[Packer, Packer | None]:
    """The packer of every step, and the curriculum's packer of the early documents (or None).
    ``late_targets``: the targets after the curriculum, where they differ (the curriculum's packer
    keeps ``targets``)."""
    doc_ids = tokenizer(list(texts), add_special_tokens=False).input_ids
    if config.loss == "targets":
        if targets is None or len(targets) != len(doc_ids):
            raise ConfigError("loss 'targets' needs the documents' targets (the words their context determines)")
        for text, ids in zip(texts, doc_ids):
            if len(ids) != len(text.split()):  # targets are word positions: one token per word
                raise ConfigError("loss 'targets' needs a word-level tokenizer (one token per word)")
        if late_targets is not None and len(late_targets) != len(doc_ids):
            raise ValueError(f"{len(late_targets)} late targets for {len(doc_ids)} texts")
    else:
        targets = late_targets = None
    pool_ids: list[list[int]] = []
    if config.fresh_bindings:
        if fresh is None or not any(fresh) or not pools:
            raise ConfigError("fresh_bindings needs documents marked fresh and the dataset's rebind pools "
                              "(a family whose practice episodes have episode-only entities)")
        pool_ids = [tokenizer.convert_tokens_to_ids(list(p)) for p in pools]
    eot, pad = tokenizer.eos_token_id, tokenizer.pad_token_id
    packer = Packer(doc_ids, config.seq_len, config.batch_size, seed, eot, pad,
                    late_targets if late_targets is not None else targets,
                    fresh if config.fresh_bindings else None, pool_ids)
    if not config.curriculum_steps:
        return packer, None
    if early is None or len(early) != len(doc_ids) or not any(early):
        raise ConfigError("curriculum_steps needs early documents (fresh in-context episodes) to start on")
    keep = [i for i, e in enumerate(early) if e]
    return packer, Packer([doc_ids[i] for i in keep], config.seq_len, config.batch_size, seed, eot, pad,
                          [targets[i] for i in keep] if targets is not None else None,
                          [fresh[i] for i in keep] if config.fresh_bindings and fresh is not None else None,
                          pool_ids)


@dataclass
class _State:
    """What a checkpoint restores besides the weights and the optimizer."""

    start: int = 0
    seconds_before: float = 0.0
    loss_sum: float = 0.0  # loss accumulated since the last curve point
    loss_n: int = 0
    last_losses: list[float] = field(default_factory=list)


def _restore(model: Any, opt: Any, ckpt_path: Path, config: TrainConfig, seed: int) -> _State:
    import torch

    if not ckpt_path.exists():
        return _State()
    # on the CPU: RNG states must stay there; load_state_dict moves tensors to the model's device
    ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
    if ck.get("config") != config.train_fields() or ck.get("seed") != seed:
        raise ConfigError(f"{ckpt_path} was made with other training settings: delete it to retrain")
    model.load_state_dict(ck["model"])
    opt.load_state_dict(ck["optimizer"])
    random.setstate(ck["rng"]["python"])
    torch.set_rng_state(ck["rng"]["torch"])
    if torch.cuda.is_available() and ck["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
    return _State(ck["step"], ck["train_seconds"], ck["loss_sum"], ck["loss_n"], ck["last_losses"])


def _save(model: Any, opt: Any, ckpt_path: Path, config: TrainConfig, seed: int, done: int, seconds: float,
          st: _State) -> None:
    import torch

    _atomic_save({
        "model": model.state_dict(), "optimizer": opt.state_dict(), "step": done, "seed": seed,
        "config": config.train_fields(), "train_seconds": seconds, "loss_sum": st.loss_sum,
        "loss_n": st.loss_n, "last_losses": st.last_losses,
        "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
    }, ckpt_path)


def _optimizer(model: Any, config: TrainConfig) -> Any:
    import torch

    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.95))


def _step(model: Any, opt: Any, source: Packer, step: int, config: TrainConfig, device: Any) -> float:
    """One optimizer step on the step's rows; its loss (a non-finite one stops training)."""
    import torch

    from genmodes.errors import NumericError

    ids, labels = source.batch_for_step(step)
    batch = torch.tensor(ids, dtype=torch.long, device=device)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, config)
    loss = model(input_ids=batch, labels=torch.tensor(labels, dtype=torch.long, device=device)).loss
    lv = float(loss.detach())
    if not math.isfinite(lv):
        raise NumericError(f"training from scratch diverged at step {step + 1}: the loss is {lv} (lower 'lr'?)")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
    opt.step()
    return lv


def train(model: Any, tokenizer: Any, texts: Sequence[str], out_dir: Path, config: TrainConfig, *,
          seed: int = 0, eval_questions: Sequence[Any] = (),
          evaluate: Callable[[Any, Any, dict[str, list[Any]]], dict[str, float]] | None = None,
          progress: bool = True, callback: Callable[[int, float], None] | None = None,
          early: Sequence[bool] | None = None, targets: Sequence[Sequence[int] | None] | None = None,
          fresh: Sequence[bool] | None = None, pools: Sequence[Sequence[str]] = (),
          ready: Callable[[dict[str, float]], bool] | None = None,
          late_targets: Sequence[Sequence[int] | None] | None = None) -> TrainResult:
    """Train ``model`` in place on ``texts`` for ``config.steps`` steps, resuming from
    ``out_dir/checkpoint.pt`` when one exists. ``callback(step, loss)`` runs after every step (after
    any checkpoint of that step); an exception there stops training as a kill would.
    ``evaluate(model, tokenizer, {split: questions})`` gives the curve's accuracy per split on a
    sample of ``eval_questions`` (the caller passes the scorer: it sits above the models layer).

    Curriculum: the first ``config.curriculum_steps`` steps pack only the texts flagged in ``early``
    (their own packer, so every step stays a pure function of (seed, step)); the later steps pack all
    texts. ``targets`` (with ``loss: targets``): per text, the word positions that carry the loss
    (None: all); ``late_targets``: those after the curriculum, where a document's differ. ``fresh``
    and ``pools`` (with ``fresh_bindings``): texts packed with new entities drawn from the pools every
    epoch (:class:`Packer`). ``ready(accuracy by split)``, asked at every
    curve point, ends training there when it returns True (the stopping rule, ``until_ready``)."""
    import torch

    if eval_questions and evaluate is None:
        raise ValueError("eval_questions were given without an evaluate function to score them")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    packer, early_packer = _packers(tokenizer, texts, config, seed, early, targets, fresh, pools, late_targets)
    evalset = eval_sample(eval_questions, config.eval_questions, seed)
    opt = _optimizer(model, config)
    ckpt_path, curves = out_dir / CHECKPOINT, out_dir / CURVES
    st = _restore(model, opt, ckpt_path, config, seed)
    # curve rows past the checkpoint came from the interrupted run: they will be made again
    rows = [json.loads(x) for x in curves.read_text().splitlines() if x.strip()] if curves.exists() else []
    curves.write_text("".join(json.dumps(r) + "\n" for r in rows if r["step"] <= st.start))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=st.start, desc="training from scratch", unit="step",
                   dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    eval_seconds = 0.0  # curve points are monitoring, not training compute

    def elapsed() -> float:
        return st.seconds_before + time.perf_counter() - t0 - eval_seconds

    stopped = None
    try:
        for step in range(st.start, config.steps):
            source = early_packer if early_packer is not None and step < config.curriculum_steps else packer
            lv = _step(model, opt, source, step, config, device)
            st.loss_sum, st.loss_n = st.loss_sum + lv, st.loss_n + 1
            st.last_losses = (st.last_losses + [lv])[-config.eval_every:]
            done = step + 1
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{lv:.3f}", lr=f"{lr_at(step, config):.1e}")
            if done % config.eval_every == 0 or done == config.steps:
                te = time.perf_counter()
                model.eval()
                acc = evaluate(model, tokenizer, evalset) if evalset and evaluate else {}
                model.train()
                eval_seconds += time.perf_counter() - te
                row = {"step": done, "loss": st.loss_sum / max(1, st.loss_n), "accuracy": acc,
                       "seconds": round(elapsed(), 2)}
                with curves.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                st.loss_sum, st.loss_n = 0.0, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.3f}", **{k: f"{v:.2f}" for k, v in acc.items()})
                if ready is not None and done < config.steps and ready(acc):
                    stopped = done
            if done % config.checkpoint_every == 0 and done < config.steps and stopped is None:
                _save(model, opt, ckpt_path, config, seed, done, elapsed(), st)
            if callback is not None:
                callback(done, lv)
            if stopped is not None:
                break
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    final_loss = sum(st.last_losses) / len(st.last_losses) if st.last_losses else float("nan")
    steps = stopped or config.steps
    return TrainResult(steps=steps, final_loss=final_loss, train_seconds=elapsed(),
                       resumed_from=st.start, curves_file=curves,
                       epochs=steps * config.batch_size / len(packer.epoch_rows(0)))


def read_curves(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
