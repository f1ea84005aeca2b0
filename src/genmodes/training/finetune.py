"""Fine-tuning on texts: the training loop of the ``finetune``, ``augmented_finetune``, ``finetune_all``
and ``rl`` model stages [P1, fine-tuning condition].

P1 fine-tuned on the training documents (batch 8-16, learning rate 3e-4, 200-1000 steps) and found
that *sentence splitting* helps parametric learning at matched data and steps: an n-sentence document
becomes n examples, either ``independent`` (each sentence alone) or ``cumulative`` (each sentence
with all earlier ones as context, the loss on the new sentence only). It hurt on semantic structure,
so it is off by default (``sentence_split="none"``).

The training loop is our own (plain torch, AdamW, linear warmup then linear decay), because the
examples are short facts: padding each batch to its longest example, as the standard
``Trainer`` + ``DataCollatorForLanguageModeling`` setup does, spends much of the compute on pad
tokens (``bench/finetune.py`` measures the difference). Instead every example is tokenized, followed
by EOS, and *packed* back to back into full ``seq_len`` rows; only the very last row of a run may be
short. Examples do not attend to each other: each example's position ids restart at 0, and
transformers turns position-id resets into a block-diagonal causal mask when no attention mask and
no KV cache are passed (``masking_utils.find_packed_sequence_indices``; the tests check that packed
logits equal unpacked ones). An example that does not fit in the rest of a row continues at the
start of the next one (positions restart there too; its first token there gets no loss, as nothing
in that row predicts it). The loss projects through the LM head in tiles at labelled positions only
(:mod:`genmodes.models.lm_loss`), never the full (tokens x vocabulary) logits. TRL's ``SFTTrainer``
with padding-free packing was measured against this loop at equal precision and was 6-16% slower
(docs/PERFORMANCE.md, "Fine-tuning loop vs TRL's SFTTrainer"), so the loop stays.

Training to the gate (``until_recall``, with ``max_epochs``): a failure to generalize counts only where
the model knows the facts, and P1 trained to convergence, so a fixed short budget is a confound. The
dataset's recall split(s) are scored with the one scorer at the end of every epoch
(:class:`genmodes.training.recall.RecallProbe`) and the run stops at the first epoch where recall
reaches the rule; the epochs it took are part of the run's info (``epochs_trained``, ``recall_curve``).
Epochs end inside steps (rows run across epoch boundaries): an epoch is scored after the first step
whose rows hold that many passes over the packed data.

Loss is on document tokens only: every token of an example but its first (nothing in the example
predicts it; the scorer does not score a question's first token either) plus the closing EOS; in
``cumulative`` mode only on the new sentence and EOS. :func:`train` fine-tunes a loaded model;
:func:`save_checkpoint` and :func:`load_checkpoint` write and read a finished run (the stages key it
in a run-wide artifact folder and reuse it, :mod:`genmodes.conditions.finetune`). torch is imported
where it is used, so the settings parse without it.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Iterable, Iterator, Literal, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from genmodes.data.text import sentence_spans
from genmodes.data.types import Document
from genmodes.errors import ConfigError, NumericError
from genmodes.io import write_json_atomic
from genmodes.timing import Timer
from genmodes.tokens import start_ids  # the scorer's start tokens: train on what is scored
from genmodes.training.recall import RecallProbe, RecallScore

if TYPE_CHECKING:
    import torch

DEFAULT_EPOCHS = 10.0
# Full: P1's 3e-4. Measured on smollm2-135m (simple_reversals, 8 facts x 3 articles, 10 epochs, batch
# 4 x 64, 22 steps): loss 6.12 -> 0.44 at 3e-4 vs -> 1.00 at 1e-4, forward recall 8/8 with both.
DEFAULT_LR = {"full": 3e-4, "lora": 1e-3}
LORA_DEFAULTS = {"lora_r": 16, "lora_alpha": 32.0, "lora_dropout": 0.0}
LORA_KEYS = ("lora_r", "lora_alpha", "lora_dropout", "target_modules")
DEFAULT_MAX_EPOCHS = 30  # with until_recall
DONE_MARKER = "DONE"  # written last into a finished checkpoint folder
IGNORE = -100


class FinetuneSettings(BaseModel):
    """A fine-tuning run's settings (every field but ``report_to`` changes the weights)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    # Fields a run that leaves them unset is not keyed by (its checkpoint, its cell): added after runs
    # that never used them, whose keys stay as they were, so those runs resume instead of recomputing.
    UNKEYED_WHEN_UNSET: ClassVar[tuple[str, ...]] = ("until_recall", "max_epochs")

    method: Literal["full", "lora"] = "full"
    # LoRA only (an error with method "full"); defaults filled in for "lora": r 16, alpha 32, dropout 0.
    lora_r: int | None = Field(default=None, gt=0)
    lora_alpha: float | None = Field(default=None, gt=0)
    lora_dropout: float | None = Field(default=None, ge=0, lt=1)
    target_modules: list[str] | None = Field(default=None, min_length=1,
                                             description="LoRA target module names (default: all linear layers)")
    # Default: 3e-4 for full fine-tuning (P1's value), 1e-3 for LoRA.
    lr: float = Field(default=None, gt=0)  # type: ignore[assignment]
    # Exactly one of steps / epochs (epochs over the packed data; default 10 epochs when neither is set).
    steps: int | None = Field(default=None, gt=0)
    epochs: float | None = Field(default=None, gt=0)
    batch_size: int = Field(default=16, gt=0, description="packed sequences per optimizer step")
    micro_batch_size: int | None = Field(default=None, gt=0,
                                         description="sequences per forward (gradient accumulation); default batch_size")
    seq_len: int = Field(default=256, ge=8, description="packed sequence length in tokens")
    warmup_steps: int | None = Field(default=None, ge=0, description="default: 5% of the steps")
    weight_decay: float = Field(default=0.0, ge=0)
    grad_clip: float | None = Field(default=1.0, gt=0)
    sentence_split: Literal["none", "independent", "cumulative"] = "none"
    # The stopping rule: train until the model knows the facts. The recall split(s) are scored at the
    # end of every epoch (genmodes.training.recall) and training stops at the first epoch where recall
    # reaches this, or after max_epochs: the run of max_epochs (warmup and linear decay over all of
    # them) stopped early. The decay settles what a constant rate leaves oscillating just below a
    # gate (measured: 88-89% for epochs 4-6 at a constant 3e-4, docs/log/2026-12-07-recall-gate-trials.md).
    until_recall: float | None = Field(default=None, gt=0, le=1,
                                       description="stop at the first epoch whose recall accuracy reaches this")
    max_epochs: int | None = Field(default=None, gt=0, le=10_000,
                                   description=f"with until_recall: the most epochs (default {DEFAULT_MAX_EPOCHS})")
    # Besides the run folder's own curves: "tensorboard" (event files in the cell's folder,
    # `tensorboard --logdir runs/NAME/cells`) and/or "wandb" (when installed) get the loss and learning
    # rate of every step, then the cell's accuracy per split once it is scored (eval/<split>/accuracy,
    # genmodes.conditions.tracking). Not part of the checkpoint's identity: logging does not change the weights.
    report_to: list[Literal["tensorboard", "wandb"]] = Field(default_factory=list)

    @field_validator("report_to", mode="before")
    @classmethod
    def _report_to(cls, v: Any) -> Any:
        v = [v] if isinstance(v, str) else (v or [])
        for name, module in (("tensorboard", "tensorboard"), ("wandb", "wandb")):
            if name in v:
                import importlib.util

                if importlib.util.find_spec(module) is None:
                    raise ValueError(f"{name!r} is not installed (pip install {module})")
        return v

    @model_validator(mode="before")
    @classmethod
    def _defaults(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        method = data.get("method", "full")
        if data.get("until_recall") is not None:
            for k in ("steps", "epochs"):
                if data.get(k) is not None:
                    raise ValueError(f"'until_recall' trains epoch by epoch until recall reaches it: set "
                                     f"'max_epochs', not '{k}'")
            if data.get("max_epochs") is None:
                data["max_epochs"] = DEFAULT_MAX_EPOCHS
        elif data.get("max_epochs") is not None:
            raise ValueError("'max_epochs' bounds the 'until_recall' rule; set 'until_recall' too (or 'epochs')")
        elif data.get("steps") is None and data.get("epochs") is None:
            data["epochs"] = DEFAULT_EPOCHS
        if data.get("lr") is None and method in DEFAULT_LR:
            data["lr"] = DEFAULT_LR[method]
        if method == "lora":
            for k, v in LORA_DEFAULTS.items():
                if data.get(k) is None:
                    data[k] = v
        return data

    @field_validator("epochs")
    @classmethod
    def _one_of_steps_epochs(cls, v: float | None, info: ValidationInfo) -> float | None:
        if v is not None and info.data.get("steps") is not None:
            raise ValueError("'steps' and 'epochs' are both set; set exactly one")
        return v

    @field_validator(*LORA_KEYS)
    @classmethod
    def _lora_only(cls, v: Any, info: ValidationInfo) -> Any:
        if v is not None and info.data.get("method") == "full":
            raise ValueError(f"{info.field_name!r} is a LoRA setting; it needs method 'lora' (method is 'full')")
        return v

    def key(self) -> dict[str, Any]:
        """What keys the run's checkpoint: every setting but ``report_to`` (logging does not change the
        weights), and the stopping rule only when it is set."""
        d = self.model_dump(mode="json", exclude={"report_to"})
        for k in self.UNKEYED_WHEN_UNSET:
            if d.get(k) is None:
                d.pop(k, None)
        return d

    @property
    def planned_epochs(self) -> float | None:
        """The epochs the run plans (``max_epochs`` under the stopping rule), None when set in steps."""
        return float(self.max_epochs) if self.until_recall is not None else self.epochs

    @model_validator(mode="after")
    def _micro(self) -> "FinetuneSettings":
        if self.micro_batch_size is not None and self.micro_batch_size > self.batch_size:
            raise ValueError(f"'micro_batch_size' ({self.micro_batch_size}) exceeds 'batch_size' ({self.batch_size})")
        return self


# ------------------------------------------------------------------------------------------ examples

def examples_from_texts(texts: Iterable[str], sentence_split: str = "none") -> list[tuple[str, str]]:
    """Training examples ``(context, target)``; the loss is on ``target`` only.

    ``none``: the whole text; ``independent``: each sentence alone; ``cumulative``: each sentence as
    target, the text before it as context (the context's trailing whitespace moves to the target, as
    in the scorer's pair encoding, so ``context + target`` is the text up to that sentence).
    """
    out: list[tuple[str, str]] = []
    for text in texts:
        if sentence_split == "none":
            if text.strip():
                out.append(("", text.strip()))
            continue
        if sentence_split not in ("independent", "cumulative"):
            raise ConfigError(f"unknown sentence_split {sentence_split!r}; known: none, independent, cumulative")
        spans = sentence_spans(text)
        for i, (s, e) in enumerate(spans):
            if sentence_split == "independent" or i == 0:
                out.append(("", text[s:e]))
            else:
                ctx = text[spans[0][0]:s].rstrip()
                out.append((ctx, text[spans[0][0] + len(ctx):e]))
    return out


def examples_from_documents(docs: Sequence[Document], sentence_split: str = "none") -> list[tuple[str, str]]:
    """:func:`examples_from_texts` over the documents' texts, in order."""
    return examples_from_texts([d.text for d in docs], sentence_split)


# ------------------------------------------------------------------------------------------ packing

def encode_examples(tokenizer: Any, examples: Sequence[tuple[str, str]]) -> list[tuple[list[int], list[int]]]:
    """``(input_ids, labels)`` per example: start token(s) + context + target + EOS; labels are the
    token ids on the target and EOS, -100 elsewhere and always on the example's first token."""
    eos = tokenizer.eos_token_id
    if eos is None:
        raise ConfigError("the tokenizer has no EOS token; fine-tuning separates examples with it")
    start = start_ids(tokenizer)
    contexts = [c for c, _ in examples]
    wholes = tokenizer([c + t for c, t in examples], add_special_tokens=False).input_ids if examples else []
    ctx_ids = tokenizer([c for c in contexts if c], add_special_tokens=False).input_ids if any(contexts) else []
    it = iter(ctx_ids)
    out = []
    for (c, _), whole in zip(examples, wholes):
        cids = next(it) if c else []
        # Where the context's tokens end inside the joint encoding (a merge across the boundary moves
        # the split one token earlier: that token then counts as target).
        k = 0
        while k < min(len(cids), len(whole)) and cids[k] == whole[k]:
            k += 1
        ids = start + whole + [eos]
        labels = [IGNORE] * (len(start) + k) + whole[k:] + [eos]
        labels[0] = IGNORE
        out.append((ids, labels))
    return out


@dataclass
class Row:
    """One packed sequence. ``length`` real tokens; the rest (last row only) is padding."""

    input_ids: list[int]
    labels: list[int]
    position_ids: list[int]
    length: int


def pack(encoded: Iterable[tuple[list[int], list[int]]], seq_len: int, pad_id: int) -> Iterator[Row]:
    """Pack examples back to back into rows of ``seq_len`` tokens; an example that does not fit in the
    rest of a row continues in the next. Every row is full but possibly the last (padded, labels -100).
    Position ids restart at 0 at each example and each row (the model's per-example attention mask)."""
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    for ex_ids, ex_labels in encoded:
        i = 0
        while i < len(ex_ids):
            take = min(seq_len - len(ids), len(ex_ids) - i)
            row_start = not ids
            ids += ex_ids[i:i + take]
            piece = ex_labels[i:i + take]
            if row_start and i > 0:  # a continuation: nothing in this row predicts its first token
                piece = [IGNORE] + piece[1:]
            labels += piece
            pos += list(range(take))
            i += take
            if len(ids) == seq_len:
                yield Row(ids, labels, pos, seq_len)
                ids, labels, pos = [], [], []
    if ids:
        n = len(ids)
        last = pos[-1]
        # Pad positions continue the last example: causal attention keeps them from affecting it.
        yield Row(ids + [pad_id] * (seq_len - n), labels + [IGNORE] * (seq_len - n),
                  pos + list(range(last + 1, last + 1 + seq_len - n)), n)


def example_stream(encoded: Sequence[tuple[list[int], list[int]]], seed: int,
                   epochs: int | None = None) -> Iterator[tuple[list[int], list[int]]]:
    """Examples in a fresh seeded order each epoch; ``epochs=None`` repeats forever."""
    epoch = 0
    while epochs is None or epoch < epochs:
        order = list(range(len(encoded)))
        random.Random(f"finetune-{seed}-{epoch}").shuffle(order)
        for i in order:
            yield encoded[i]
        epoch += 1


def plan_rows(encoded: Sequence[tuple[list[int], list[int]]], settings: FinetuneSettings) -> tuple[int, int]:
    """(rows, steps) the run trains on: ``steps`` x ``batch_size`` rows, or ``epochs`` x the packed
    size of one epoch (rounded up to whole rows)."""
    if settings.steps is not None:
        return settings.steps * settings.batch_size, settings.steps
    tokens = sum(len(ids) for ids, _ in encoded)
    rows = max(1, math.ceil(float(settings.planned_epochs) * tokens / settings.seq_len))
    return rows, math.ceil(rows / settings.batch_size)


def epoch_ends(encoded: Sequence[tuple[list[int], list[int]]], settings: FinetuneSettings) -> dict[int, int]:
    """Optimizer step -> the epoch completed by it: the first step whose rows hold that many passes
    over the packed data (rows run across epoch boundaries, so an epoch ends inside a step). Empty
    for a run set in steps."""
    if settings.steps is not None:
        return {}
    _, n_steps = plan_rows(encoded, settings)
    rows_per_epoch = sum(len(ids) for ids, _ in encoded) / settings.seq_len
    out: dict[int, int] = {}
    for k in range(1, math.ceil(float(settings.planned_epochs)) + 1):
        out[min(n_steps, max(1, math.ceil(k * rows_per_epoch / settings.batch_size)))] = k
    return out


def packed_rows(encoded: Sequence[tuple[list[int], list[int]]], settings: FinetuneSettings, seed: int,
                pad_id: int) -> list[Row]:
    """Every row of the run, in training order."""
    n_rows, _ = plan_rows(encoded, settings)
    epochs = None if settings.steps is not None else math.ceil(float(settings.planned_epochs))
    rows = []
    for row in pack(example_stream(encoded, seed, epochs), settings.seq_len, pad_id):
        rows.append(row)
        if len(rows) == n_rows:
            break
    return rows


# ------------------------------------------------------------------------------------------ training

def texts_hash(texts: Sequence[str]) -> str:
    h = hashlib.sha256()
    for t in texts:
        b = t.encode()
        h.update(len(b).to_bytes(8, "little"))
        h.update(b)
    return h.hexdigest()


def _collate(rows: Sequence[Row], device: Any) -> dict[str, torch.Tensor]:
    import torch

    width = max(r.length for r in rows)  # only the final, partial row can be shorter than seq_len
    return {"input_ids": torch.tensor([r.input_ids[:width] for r in rows], device=device),
            "labels": torch.tensor([r.labels[:width] for r in rows], device=device),
            "position_ids": torch.tensor([r.position_ids[:width] for r in rows], device=device)}


def _loss_sum(model: Any, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed next-token cross-entropy over labelled tokens, the LM head in tiles at labelled positions
    only (:mod:`genmodes.models.lm_loss`; the full logits would dominate the step)."""
    from genmodes.models.lm_loss import loss_sum

    return loss_sum(model, batch["input_ids"], batch["position_ids"], batch["labels"])


def _wrap_lora(model: Any, settings: FinetuneSettings) -> Any:
    from peft import LoraConfig, get_peft_model

    cfg = LoraConfig(r=settings.lora_r, lora_alpha=settings.lora_alpha, lora_dropout=settings.lora_dropout,
                     target_modules=settings.target_modules or "all-linear", task_type="CAUSAL_LM")
    try:
        return get_peft_model(model, cfg)
    except ValueError as e:
        raise ConfigError(f"bad setting 'target_modules': {str(e).splitlines()[0]}") from None


class _Loggers:
    """The ``report_to`` destinations: each gets the loss and learning rate of every step."""

    def __init__(self, settings: FinetuneSettings, log_dir: Path | None, name: str):
        self.tb = self.wandb = None
        if "tensorboard" in settings.report_to and log_dir is not None:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(log_dir=str(log_dir / "tensorboard"))
        if "wandb" in settings.report_to:
            import wandb

            self.wandb = wandb.init(project=os.environ.get("WANDB_PROJECT", "genmodes"), name=name,
                                    dir=str(log_dir) if log_dir is not None else None,
                                    config=settings.model_dump(mode="json"), reinit=True)

    def step(self, step: int, loss: float, lr: float) -> None:
        if self.tb is not None:
            self.tb.add_scalar("train/loss", loss, step)
            self.tb.add_scalar("train/learning_rate", lr, step)
        if self.wandb is not None:
            self.wandb.log({"train/loss": loss, "train/learning_rate": lr}, step=step)

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()
        if self.wandb is not None:
            self.wandb.finish()


def train(model: Any, tokenizer: Any, texts: Sequence[str], settings: FinetuneSettings, seed: int,
          progress: bool = True, desc: str = "finetune", log_dir: Path | None = None,
          examples: Sequence[tuple[str, str]] | None = None,
          recall: RecallProbe | None = None) -> tuple[Any, dict[str, Any]]:
    """Fine-tune ``model`` on ``texts`` in place (LoRA: wraps it first). Returns (model, info).
    ``log_dir``: where ``report_to`` loggers write (the cell's folder). ``examples``: ``(context,
    target)`` pairs to train on instead of the texts (the loss on the targets only: a thought after
    its prompt). ``recall``: the recall questions the stopping rule (``until_recall``) scores at the
    end of every epoch."""
    import torch

    examples = list(examples) if examples is not None else examples_from_texts(texts, settings.sentence_split)
    if not examples:
        raise ConfigError("nothing to fine-tune on: no non-empty training texts")
    if settings.until_recall is not None and not recall:
        raise ConfigError("bad setting 'until_recall': the dataset has no recall split to score "
                          "(meta recall_splits; imported data: --recall SPLIT)")
    max_pos = getattr(model.config, "max_position_embeddings", None)
    if max_pos is not None and settings.seq_len > max_pos:
        raise ConfigError(f"bad setting 'seq_len': {settings.seq_len} exceeds the model's context ({max_pos})")
    encoded = encode_examples(tokenizer, examples)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    rows = packed_rows(encoded, settings, seed, pad)
    _, n_steps = plan_rows(encoded, settings)
    warmup = settings.warmup_steps if settings.warmup_steps is not None else round(0.05 * n_steps)
    warmup = min(warmup, n_steps)
    rule = _StoppingRule(settings, epoch_ends(encoded, settings), recall, tokenizer)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)  # LoRA init and dropout: same seed, same weights
        if settings.method == "lora":
            model = _wrap_lora(model, settings)
        curve, tokens, seconds = _optimize(model, rows, settings, n_steps, warmup, progress, desc, log_dir,
                                           rule if settings.until_recall is not None else None)
    model.eval()
    real = sum(r.length for r in rows[:len(curve) * settings.batch_size])
    # train-time compute: the steps and the stopping rule's recall checks (tokens per second: the steps)
    info = {"method": settings.method, "train_seconds": round(seconds + rule.seconds, 3), "steps": len(curve),
            "tokens_trained": tokens, "tokens_seen": real, "packed_rows": min(len(rows), len(curve) * settings.batch_size),
            "examples": len(examples),
            "texts": len(texts), "epochs": round(real / max(1, sum(len(i) for i, _ in encoded)), 4),
            "lr": settings.lr, "warmup_steps": warmup, "loss_curve": curve,
            "tokens_per_second": round(real / seconds, 1) if seconds > 0 else None,
            "attention": "per-example (position-id resets)", "reused": False, **rule.info()}
    return model, info


class _StoppingRule:
    """``until_recall``: the recall probe scored at each epoch's end; stop once it is reached."""

    def __init__(self, settings: FinetuneSettings, ends: dict[int, int], probe: RecallProbe | None, tokenizer: Any):
        self.settings, self.ends, self.probe, self.tokenizer = settings, ends, probe, tokenizer
        self.curve: list[tuple[int, float]] = []  # (epoch, pooled recall accuracy)
        self.by_dataset: list[tuple[int, dict[str, float]]] = []  # (epoch, recall per dataset)
        self.last: RecallScore | None = None
        self.line: str | None = None  # the last check, for the progress display (taken once)
        self.seconds = 0.0

    def __call__(self, model: Any, step: int) -> bool:
        """After optimizer step ``step``: True to stop here."""
        epoch = self.ends.get(step)
        if epoch is None or self.probe is None:
            return False
        with Timer() as t:
            self.last = self.probe.score(model, self.tokenizer)
        self.seconds += t.seconds
        self.curve.append((epoch, round(self.last.accuracy, 6)))
        by = {k: round(v, 6) for k, v in self.last.by_group.items()}
        self.by_dataset.append((epoch, by))
        parts = ", ".join(f"{k} {100 * v:.1f}%" for k, v in by.items()) if len(by) > 1 else ""
        self.line = (f"epoch {epoch}: recall {100 * self.last.accuracy:.1f}%" + (f" ({parts})" if parts else "")
                     + f", gate {100 * float(self.settings.until_recall):.0f}%")
        return self.last.reached(float(self.settings.until_recall))

    def info(self) -> dict[str, Any]:
        if self.settings.until_recall is None:
            return {}
        out: dict[str, Any] = {"until_recall": self.settings.until_recall, "max_epochs": self.settings.max_epochs,
                               "recall_curve": self.curve, "recall_seconds": round(self.seconds, 3),
                               "epochs_trained": self.curve[-1][0] if self.curve else 0,
                               "recall_reached": self.last is not None and self.last.reached(float(self.settings.until_recall))}
        if self.last is not None:
            out["recall_by_dataset"] = self.by_dataset[-1][1]
            if len(self.last.by_group) > 1:
                out["recall_by_dataset_curve"] = self.by_dataset
        return out


def _optimize(model: Any, rows: list[Row], settings: FinetuneSettings, n_steps: int, warmup: int, progress: bool,
              desc: str, log_dir: Path | None,
              stop: "_StoppingRule | None" = None) -> tuple[list[tuple[int, float]], int, float]:
    """AdamW over ``rows``, ``batch_size`` rows a step (micro-batches accumulated), linear warmup then
    linear decay. ``stop(model, step)`` after each step ends the run early when it returns True.
    Returns (the loss curve, tokens trained, seconds of the steps alone: not the stopping rule's)."""
    import torch
    from tqdm.auto import tqdm

    params = [p for p in model.parameters() if p.requires_grad]
    # No weight decay on norms and biases (1-d tensors), as usual.
    groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": settings.weight_decay},
              {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=settings.lr)

    def lr_at(step: int) -> float:  # linear warmup to lr, then linear decay to 0
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (n_steps - step) / max(1, n_steps - warmup))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_at)
    device = next(model.parameters()).device
    curve: list[tuple[int, float]] = []
    tokens = 0
    stop_seconds = 0.0
    bar = tqdm(total=n_steps, desc=desc, unit="step", disable=not progress, leave=False)
    loggers = _Loggers(settings, log_dir, desc)
    model.train()
    try:
        with Timer() as t:
            for step in range(n_steps):
                batch_rows = rows[step * settings.batch_size:(step + 1) * settings.batch_size]
                if not batch_rows:
                    break
                n_tok = sum(sum(1 for x in r.labels[1:] if x != IGNORE) for r in batch_rows)
                opt.zero_grad(set_to_none=True)
                total = _accumulate(model, batch_rows, settings.micro_batch_size or settings.batch_size, n_tok, device)
                if not math.isfinite(total):
                    raise NumericError(f"training loss is {total} at step {step + 1} of {n_steps} (lr "
                                       f"{settings.lr:g} too high?); stopped: a diverged model's scores mean nothing")
                if settings.grad_clip is not None:
                    torch.nn.utils.clip_grad_norm_(params, settings.grad_clip)
                opt.step()
                sched.step()
                tokens += n_tok
                curve.append((step + 1, round(total, 5)))
                loggers.step(step + 1, total, sched.get_last_lr()[0])
                bar.update(1)
                bar.set_postfix(loss=f"{total:.3f}")
                if stop is not None:
                    with Timer() as ts:
                        done = stop(model, step + 1)
                    stop_seconds += ts.seconds
                    if progress and stop.line:
                        bar.write(f"{desc}: {stop.line}", file=sys.stderr)
                        stop.line = None
                    if done:
                        break
    finally:
        bar.close()
    loggers.close()
    return curve, tokens, t.seconds - stop_seconds


def _accumulate(model: Any, batch_rows: list[Row], micro: int, n_tok: int, device: Any) -> float:
    """One step's gradients, ``micro`` rows per forward; the loss is per labelled token of the step."""
    total = 0.0
    for m in range(0, len(batch_rows), micro):
        loss = _loss_sum(model, _collate(batch_rows[m:m + micro], device)) / max(1, n_tok)
        loss.backward()
        total += float(loss.detach())
    return total


# ------------------------------------------------------------------------------------------ checkpoints

def save_checkpoint(model: Any, tokenizer: Any, info: dict[str, Any], target: Path) -> None:
    """Write the checkpoint to a temp folder beside ``target``, marker last, then rename it there."""
    from genmodes.io import atomic_dir
    from transformers.utils import logging as hf_logging

    # an existing target is either a stale unfinished folder or another process's identical result:
    # replacing it atomically is right in both cases
    with atomic_dir(target) as tmp:
        # transformers draws a "Writing model shards" bar that stays behind in the run's output
        was_on = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model.save_pretrained(tmp)  # peft: the adapter only
        finally:
            if was_on:
                hf_logging.enable_progress_bar()
        tokenizer.save_pretrained(tmp)
        write_json_atomic(tmp / "info.json", info)
        (tmp / DONE_MARKER).write_text("ok\n")


def load_checkpoint(path: Path, method: str, device: str | None,
                    load_base: Callable[[], tuple[Any, Any]]) -> tuple[Any, Any, dict[str, Any]]:
    """A finished checkpoint: (model, tokenizer, the info saved with it). A LoRA adapter is loaded
    onto ``load_base()``'s model (the model it was trained from)."""
    from genmodes.models import load_model

    info = json.loads((path / "info.json").read_text())
    if method == "lora":
        from peft import PeftModel

        base, tok = load_base()
        model = PeftModel.from_pretrained(base, str(path))
    else:
        model, tok = load_model(str(path), device=device)
    model.eval()
    return model, tok, info
