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
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

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
        if not self.curriculum_steps:
            del out["curriculum_steps"]
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

class Packer:
    """The training rows of every step: a pure function of (documents, seq_len, seed, step).

    ``rows_for_step(step)`` gives ``batch_size`` rows of ``seq_len`` token ids (padded with the pad id).
    Epochs are packed lazily and cached; the order of rows is the order of the shuffled documents.
    """

    def __init__(self, doc_ids: Sequence[Sequence[int]], seq_len: int, batch_size: int, seed: int,
                 eot_id: int, pad_id: int):
        if not doc_ids:
            raise ConfigError("no training documents to train on")
        longest = max(len(d) for d in doc_ids) + 1
        if longest > seq_len:
            raise ConfigError(f"seq_len ({seq_len}) is shorter than the longest training document "
                              f"({longest} tokens with its start token): raise seq_len")
        self.docs = [list(d) for d in doc_ids]
        self.seq_len, self.batch_size, self.seed = seq_len, batch_size, seed
        self.eot, self.pad = eot_id, pad_id
        self._epochs: list[list[list[int]]] = []
        self._starts: list[int] = []  # global index of the first row of each epoch

    def epoch_rows(self, epoch: int) -> list[list[int]]:
        while len(self._epochs) <= epoch:
            e = len(self._epochs)
            order = list(range(len(self.docs)))
            random.Random(f"scratch-pack-{self.seed}-{e}").shuffle(order)
            rows: list[list[int]] = []
            cur: list[int] = []
            for i in order:
                piece = [self.eot] + self.docs[i]
                if len(cur) + len(piece) > self.seq_len:
                    rows.append(cur + [self.pad] * (self.seq_len - len(cur)))
                    cur = []
                cur += piece
            if cur:
                rows.append(cur + [self.pad] * (self.seq_len - len(cur)))
            self._starts.append(self._starts[-1] + len(self._epochs[-1]) if self._epochs else 0)
            self._epochs.append(rows)
        return self._epochs[epoch]

    def row(self, index: int) -> list[int]:
        e = 0
        while True:
            rows = self.epoch_rows(e)
            if index < self._starts[e] + len(rows):
                return rows[index - self._starts[e]]
            e += 1

    def rows_for_step(self, step: int) -> list[list[int]]:
        return [self.row(step * self.batch_size + b) for b in range(self.batch_size)]

    def tokens_per_epoch(self) -> int:
        return sum(len(d) + 1 for d in self.docs)


# ------------------------------------------------------------------------------------------ training

def lr_at(step: int, config: TrainConfig) -> float:
    """Linear warmup over ``warmup_steps``, then cosine decay to ``min_lr_ratio * lr`` at the last step."""
    if config.warmup_steps and step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
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


def train(model: Any, tokenizer: Any, texts: Sequence[str], out_dir: Path, config: TrainConfig, *,
          seed: int = 0, eval_questions: Sequence[Any] = (),
          evaluate: Callable[[Any, Any, dict[str, list[Any]]], dict[str, float]] | None = None,
          progress: bool = True, callback: Callable[[int, float], None] | None = None,
          early: Sequence[bool] | None = None) -> TrainResult:
    """Train ``model`` in place on ``texts`` for ``config.steps`` steps, resuming from
    ``out_dir/checkpoint.pt`` when one exists. ``callback(step, loss)`` runs after every step (after
    any checkpoint of that step); an exception there stops training as a kill would.
    ``evaluate(model, tokenizer, {split: questions})`` gives the curve's accuracy per split on a
    sample of ``eval_questions`` (the caller passes the scorer: it sits above the models layer).

    Curriculum: the first ``config.curriculum_steps`` steps pack only the texts flagged in ``early``
    (their own packer, so every step stays a pure function of (seed, step)); the later steps pack all
    texts. P2's in-context episodes teach reading the context; alone at first, they are not drowned
    by the memorisation of relations, which has a lower loss to gain per token early on."""
    import torch

    if eval_questions and evaluate is None:
        raise ValueError("eval_questions were given without an evaluate function to score them")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    device = next(model.parameters()).device
    doc_ids = tokenizer(list(texts), add_special_tokens=False).input_ids
    packer = Packer(doc_ids, config.seq_len, config.batch_size, seed, tokenizer.eos_token_id,
                    tokenizer.pad_token_id)
    early_packer = None
    if config.curriculum_steps:
        if early is None or len(early) != len(doc_ids) or not any(early):
            raise ConfigError("curriculum_steps needs early documents (fresh in-context episodes) to start on")
        early_packer = Packer([d for d, e in zip(doc_ids, early) if e], config.seq_len, config.batch_size,
                              seed, tokenizer.eos_token_id, tokenizer.pad_token_id)
    evalset = eval_sample(eval_questions, config.eval_questions, seed)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": config.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}], lr=config.lr, betas=(0.9, 0.95))

    start, seconds_before = 0, 0.0
    loss_sum, loss_n, last_losses = 0.0, 0, []  # loss accumulated since the last curve point
    curves = out_dir / CURVES
    ckpt_path = out_dir / CHECKPOINT
    if ckpt_path.exists():
        # on the CPU: RNG states must stay there; load_state_dict moves tensors to the model's device
        ck = torch.load(ckpt_path, map_location="cpu", weights_only=False)
        if ck.get("config") != config.train_fields() or ck.get("seed") != seed:
            raise ConfigError(f"{ckpt_path} was made with other training settings: delete it to retrain")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["optimizer"])
        start, seconds_before = ck["step"], ck["train_seconds"]
        loss_sum, loss_n, last_losses = ck["loss_sum"], ck["loss_n"], ck["last_losses"]
        random.setstate(ck["rng"]["python"])
        torch.set_rng_state(ck["rng"]["torch"])
        if torch.cuda.is_available() and ck["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state_all(ck["rng"]["cuda"])
    # curve rows past the checkpoint came from the interrupted run: they will be made again
    rows = [json.loads(x) for x in curves.read_text().splitlines() if x.strip()] if curves.exists() else []
    rows = [r for r in rows if r["step"] <= start]
    curves.write_text("".join(json.dumps(r) + "\n" for r in rows))

    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=config.steps, initial=start, desc="training from scratch", unit="step",
                   dynamic_ncols=True)
    model.train()
    t0 = time.perf_counter()
    eval_seconds = 0.0  # curve points are monitoring, not training compute

    def elapsed() -> float:
        return seconds_before + time.perf_counter() - t0 - eval_seconds

    try:
        for step in range(start, config.steps):
            source = early_packer if early_packer is not None and step < config.curriculum_steps else packer
            batch = torch.tensor(source.rows_for_step(step), dtype=torch.long, device=device)
            labels = batch.masked_fill(batch == tokenizer.pad_token_id, -100)
            for g in opt.param_groups:
                g["lr"] = lr_at(step, config)
            loss = model(input_ids=batch, labels=labels).loss
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            lv = float(loss.detach())
            loss_sum, loss_n = loss_sum + lv, loss_n + 1
            last_losses = (last_losses + [lv])[-config.eval_every:]
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
                row = {"step": done, "loss": loss_sum / max(1, loss_n), "accuracy": acc,
                       "seconds": round(elapsed(), 2)}
                with curves.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                loss_sum, loss_n = 0.0, 0
                if bar is not None:
                    bar.set_postfix(loss=f"{lv:.3f}", **{k: f"{v:.2f}" for k, v in acc.items()})
            if done % config.checkpoint_every == 0 and done < config.steps:
                _atomic_save({
                    "model": model.state_dict(), "optimizer": opt.state_dict(), "step": done, "seed": seed,
                    "config": config.train_fields(), "train_seconds": elapsed(), "loss_sum": loss_sum,
                    "loss_n": loss_n, "last_losses": last_losses,
                    "rng": {"python": random.getstate(), "torch": torch.get_rng_state(),
                            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None},
                }, ckpt_path)
            if callback is not None:
                callback(done, lv)
    finally:
        if bar is not None:
            bar.close()
        model.eval()
    final_loss = sum(last_losses) / len(last_losses) if last_losses else float("nan")
    return TrainResult(steps=config.steps, final_loss=final_loss, train_seconds=elapsed(),
                       resumed_from=start, curves_file=curves,
                       epochs=config.steps * config.batch_size / len(packer.epoch_rows(0)))


def read_curves(path: Path) -> list[dict[str, Any]]:
    return [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
