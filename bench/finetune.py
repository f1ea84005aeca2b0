"""Benchmark: our packed fine-tuning loop vs transformers' ``Trainer`` on short facts.

Setting: the bundled model and 200 one-sentence facts (``simple_reversals`` documents split into
sentences: fact statements and context lines, 8-20 tokens each). Both run in this process, on the
same thread count, with the same model weights, batch size, learning rate, gradient clipping and
number of optimizer steps:

- ours (:func:`genmodes.training.finetune.train`): examples + EOS packed into full ``seq_len`` rows;
- baseline: the standard setup, ``Trainer`` with tokenized examples and
  ``DataCollatorForLanguageModeling(mlm=False)``, which pads each batch to its longest example.

The rate compared is REAL (non-pad) tokens per second of training time: Trainer's ``train_runtime``
and our loop's ``train_seconds`` (both leave out setup such as tokenizing; both include the first
step). The last line is ``speedup: N.Nx``; the line before gives the same ratio by process CPU time,
which other processes' load on a shared machine disturbs much less (one thread by default).

Where the speedup comes from: with the same batch size in sequences, a packed row carries ``seq_len``
real tokens where a padded row carries one fact and its padding, so each optimizer step (whose cost
for a 135M model has a per-step part: the AdamW update and gradient clipping over all weights, the
dense gradient of the 49k x 576 tied embedding) trains on more tokens. ``--matched`` also times ours with ``seq_len`` set to the baseline's mean
padded row width, the same tokens computed per step, which isolates what skipping padding saves.

Measured once (2 shared CPU cores, load 4-8 from other processes, one thread, SmolLM2-135M, 5 steps,
batch 16, lr 1e-4) with ``OMP_NUM_THREADS=1 .venv/bin/python bench/finetune.py --matched``:
Trainer 879 real tokens (72% of the 1216 computed) at 49.9 tok/CPU-s; ours at seq_len 256, 20480
real tokens at 99.6 tok/CPU-s: 2.0x by CPU time. Wall-clock ratios swung with the neighbours' load:
4.0x in that run, 1.7x in an earlier one; matched width (seq_len 15): 1.3x (wall).

``--trl`` adds TRL's ``SFTTrainer`` (``packing_strategy="bfd_split"``) and a plain ``Trainer``
with ``DataCollatorWithFlattening``, on as many facts as one pass of ours takes; each prints its ratio to
ours (figures and the decision in docs/PERFORMANCE.md). Both flatten a forward's rows into one sequence,
so ``--rows-per-forward 1`` (the default) and ``--micro-batch-size 1`` for ours give all the same
forward shape and keep memory low.

    .venv/bin/python bench/finetune.py [--model smollm2-135m] [--steps 5] [--batch-size 16]
                                       [--seq-len 256] [--threads 1] [--matched]
                                       [--trl | --trl-only] [--rows-per-forward 1] [--micro-batch-size N]
    .venv/bin/python bench/finetune.py --quick [--trl]   # tiny-random, 2 short steps: checks the bench runs
"""

from __future__ import annotations

import argparse
import gc
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def facts(n: int = 200, seed: int = 0) -> list[str]:
    from genmodes.training.finetune import examples_from_texts
    from genmodes.data.families import make_dataset

    ds = make_dataset("simple_reversals", seed, {"n_facts": max(1, (n + 1) // 2), "articles_per_fact": 1})
    return [t for _, t in examples_from_texts([d.text for d in ds.documents], "independent")][:n]


def facts_for_tokens(tokenizer, target: int, seed: int = 0) -> list[str]:
    """The first facts whose tokens plus one EOS each reach ``target`` (one pass of every run)."""
    n = 256
    while True:
        texts = facts(n, seed)
        lengths = [len(ids) + 1 for ids in tokenizer(texts, add_special_tokens=False).input_ids]
        total = 0
        for i, k in enumerate(lengths):
            total += k
            if total >= target:
                return texts[:i + 1]
        if len(texts) < n:  # the family cannot make more
            return texts
        n *= 2


def _count_tokens(model, real: dict) -> None:
    """Count the real tokens of every training forward: the attention mask's ones where there is
    one, every token of a flattened (padding-free) row otherwise."""

    def count(module, args, kwargs):
        if module.training:
            mask = kwargs.get("attention_mask")
            ids = kwargs["input_ids"]
            real["tokens"] += int(mask.sum()) if mask is not None else ids.numel()
            real["padded"] += ids.numel()
            real["rows"] += ids.shape[0]
            real["width"] = max(real.get("width", 0), ids.shape[1])

    model.register_forward_pre_hook(count, with_kwargs=True)


def _train_args(args: argparse.Namespace, outdir: str, batch: int, cls=None, accumulate: int = 1, **extra):
    from transformers import TrainingArguments

    cls = cls or TrainingArguments
    return cls(output_dir=outdir, per_device_train_batch_size=batch, gradient_accumulation_steps=accumulate,
               max_steps=args.steps,
               learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
               max_grad_norm=1.0, logging_strategy="steps", logging_steps=1, save_strategy="no", report_to=[],
               use_cpu=True, dataloader_num_workers=0, seed=0, disable_tqdm=True, **extra)


def _timed_train(trainer) -> tuple[float, float, tuple[float, float]]:
    """(Trainer's train_runtime, process CPU seconds, (first, last) logged loss)."""
    from transformers import PrinterCallback

    trainer.remove_callback(PrinterCallback)  # a dict per logged step on stdout; the losses are read below
    c0 = time.process_time()
    metrics = trainer.train().metrics
    cpu = time.process_time() - c0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    # Trainer's own train_runtime leaves out its setup, as ours leaves out tokenizing and packing.
    return float(metrics["train_runtime"]), cpu, (losses[0], losses[-1])


def run_ours(model_spec: str, texts: list[str], args: argparse.Namespace, seq_len: int) -> tuple[int, float, float, dict]:
    """(real tokens, loop seconds, process CPU seconds, info)."""
    from genmodes.training.finetune import FinetuneSettings as Settings, train
    from genmodes.models import load_model

    from genmodes.models import precision

    model, tok = load_model(model_spec, device="cpu")
    s = Settings(steps=args.steps, batch_size=args.batch_size, seq_len=seq_len, lr=args.lr, warmup_steps=0,
                 micro_batch_size=args.micro_batch_size)
    c0 = time.process_time()
    with precision(args.dtype, "cpu"):  # as the runner trains a cell (--dtype)
        _, info = train(model, tok, texts, s, seed=0, progress=False)
    cpu = time.process_time() - c0
    return info["tokens_seen"], info["train_seconds"], cpu, info


def run_trainer(model_spec: str, texts: list[str], args: argparse.Namespace, outdir: str) -> tuple[int, float, float, int]:
    from datasets import Dataset, disable_progress_bars
    from transformers import DataCollatorForLanguageModeling, Trainer

    from genmodes.models import load_model

    model, tok = load_model(model_spec, device="cpu")
    disable_progress_bars()
    ds = Dataset.from_dict({"text": texts}).map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
    real = {"tokens": 0, "padded": 0, "rows": 0}
    _count_tokens(model, real)
    trainer = Trainer(model=model, args=_train_args(args, outdir, args.batch_size), train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tokenizer=tok, mlm=False))
    seconds, cpu, _ = _timed_train(trainer)
    return real["tokens"], seconds, cpu, real["padded"]


def run_flattening(model_spec: str, texts: list[str], args: argparse.Namespace, outdir: str,
                   examples_per_forward: int, accumulate: int) -> tuple[dict, float, float, tuple[float, float]]:
    """Plain Trainer with ``DataCollatorWithFlattening``: each batch of examples (text + EOS, as ours)
    concatenated into one row, position ids restarting per example; labels -100 on each example's
    first token, so the loss is on the same tokens as ours."""
    from datasets import Dataset, disable_progress_bars
    from transformers import DataCollatorWithFlattening, Trainer

    from genmodes.models import load_model

    model, tok = load_model(model_spec, device="cpu")
    disable_progress_bars()
    eos = tok.eos_token_id

    def encode(b):
        ids = [x + [eos] for x in tok(b["text"], add_special_tokens=False).input_ids]
        return {"input_ids": ids, "labels": ids}

    ds = Dataset.from_dict({"text": texts}).map(encode, batched=True, remove_columns=["text"])
    real = {"tokens": 0, "padded": 0, "rows": 0}
    _count_tokens(model, real)
    trainer = Trainer(model=model, args=_train_args(args, outdir, examples_per_forward, accumulate=accumulate,
                                                    bf16=args.dtype == "bf16"),
                      train_dataset=ds, data_collator=DataCollatorWithFlattening())
    seconds, cpu, losses = _timed_train(trainer)
    return real, seconds, cpu, losses


def run_trl(model_spec: str, texts: list[str], args: argparse.Namespace, outdir: str
            ) -> tuple[dict, float, float, tuple[float, float]]:
    """TRL's ``SFTTrainer`` with ``packing_strategy="bfd_split"`` at our ``seq_len``: examples (text +
    the EOS TRL appends, as ours) packed best-fit into rows, an example too long for a row split
    across rows; ``batch_size`` rows per step, ``rows_per_forward`` of them per forward (gradient
    accumulation over the rest). bfd packing makes TRL train padding-free: a forward's rows are
    flattened into one sequence whose position ids restart per example, labels -100 at each restart
    (the loss on the same tokens as ours)."""
    from datasets import Dataset, disable_progress_bars
    from trl import SFTConfig, SFTTrainer

    from genmodes.models import load_model

    model, tok = load_model(model_spec, device="cpu")
    disable_progress_bars()
    ds = Dataset.from_dict({"text": texts})
    real = {"tokens": 0, "padded": 0, "rows": 0}
    _count_tokens(model, real)
    cfg = _train_args(args, outdir, args.rows_per_forward, cls=SFTConfig,
                      accumulate=args.batch_size // args.rows_per_forward, packing=True, packing_strategy="bfd_split",
                      max_length=args.seq_len, completion_only_loss=None, dataset_num_proc=None,
                      # SFTConfig's defaults are bf16 autocast and gradient checkpointing: compare at the
                      # precision ours runs in (--dtype), with every activation kept, as ours does
                      bf16=args.dtype == "bf16", gradient_checkpointing=False)
    trainer = SFTTrainer(model=model, args=cfg, train_dataset=ds, processing_class=tok)
    real["packed_rows"] = len(trainer.train_dataset)
    seconds, cpu, losses = _timed_train(trainer)
    return real, seconds, cpu, losses


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--facts", type=int, default=None,
                    help="facts to train on (default 200; with --trl: as many as one pass of ours takes)")
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--matched", action="store_true",
                    help="also time ours with seq_len = the baseline's mean padded row (same compute per step)")
    ap.add_argument("--trl", action="store_true",
                    help="also time TRL's SFTTrainer (bfd_split packing) and Trainer + DataCollatorWithFlattening")
    ap.add_argument("--rows-per-forward", type=int, default=1,
                    help="--trl: packed rows (flattening: a row's worth of examples) per forward, the rest of a "
                         "step by gradient accumulation; both flatten a forward into one sequence, whose "
                         "attention (no varlen kernel on CPU) grows with its square")
    ap.add_argument("--micro-batch-size", type=int, default=None,
                    help="ours: rows per forward (gradient accumulation over the step; default the whole batch, "
                         "which on SmolLM2 at 16 x 256 needs about 8 GB)")
    ap.add_argument("--trl-only", action="store_true", help="time TRL's SFTTrainer and ours, nothing else")
    ap.add_argument("--dtype", choices=["fp32", "bf16"], default="fp32",
                    help="--trl: precision of ours and TRL alike (bf16 = autocast, fp32 weights); the padded "
                         "Trainer baseline stays fp32")
    ap.add_argument("--full-logits", action="store_true",
                    help="also time ours with the loss over the full logits (before the tiled LM-head loss)")
    ap.add_argument("--quick", action="store_true",
                    help="tiny-random, 2 steps of 4 rows of 64 tokens: checks the bench runs (seconds)")
    args = ap.parse_args()
    if args.quick:
        args.model, args.steps, args.batch_size, args.seq_len = "tiny-random", 2, 4, 64
        args.facts = args.facts or 40
    args.trl = args.trl or args.trl_only
    torch.set_num_threads(args.threads)

    if args.trl:
        from genmodes.models import load_model

        _, tok = load_model(args.model, device="cpu")
        texts = (facts(args.facts) if args.facts else
                 facts_for_tokens(tok, args.steps * args.batch_size * args.seq_len))
        lengths = [len(x) + 1 for x in tok(texts, add_special_tokens=False).input_ids]  # the flattening's rows
    else:
        texts = facts(args.facts or 200)
        lengths = []
    print(f"model {args.model}, {len(texts)} facts, batch {args.batch_size}, {args.steps} steps each, "
          f"{args.threads} thread(s), {args.dtype}", flush=True)
    # Ours first, each other setup's ratio printed as soon as it is measured: a run cut short still
    # leaves complete comparisons. Memory is freed between runs (each holds a model and AdamW state).
    our_tokens, our_s, our_cpu, info = run_ours(args.model, texts, args, args.seq_len)
    gc.collect()
    our_rate = our_tokens / our_s
    print(f"genmodes packed loop (seq_len {args.seq_len}): {our_tokens} real tokens in {our_s:.1f} s "
          f"= {our_rate:.1f} tok/s; CPU {our_cpu:.1f} s = {our_tokens / our_cpu:.1f} tok/CPU-s "
          f"(loss {info['loss_curve'][0][1]:.3f} -> {info['loss_curve'][-1][1]:.3f})", flush=True)

    def versus(name: str, tokens: int, seconds: float, cpu: float) -> None:
        # Above 1: ours trains more real tokens per second than this one.
        print(f"ours vs {name}: {(our_tokens / our_cpu) / (tokens / cpu):.2f}x by CPU time, "
              f"{our_rate / (tokens / seconds):.2f}x by wall clock", flush=True)

    if args.trl:
        if args.batch_size % args.rows_per_forward:
            ap.error("--rows-per-forward must divide --batch-size")
        accumulate = args.batch_size // args.rows_per_forward
        with tempfile.TemporaryDirectory() as out:
            r, s, c, loss = run_trl(args.model, texts, args, out)
        gc.collect()
        print(f"TRL SFTTrainer (packing bfd_split, max_length {args.seq_len}; {r['packed_rows']} packed rows; "
              f"padding-free; {args.rows_per_forward} rows per forward, {accumulate} forwards per step): "
              f"{r['tokens']} real tokens (mean flattened row {r['padded'] / max(1, r['rows']):.0f}) "
              f"in {s:.1f} s = {r['tokens'] / s:.1f} tok/s; CPU {c:.1f} s = {r['tokens'] / c:.1f} tok/CPU-s "
              f"(loss {loss[0]:.3f} -> {loss[1]:.3f})", flush=True)
        versus("TRL SFTTrainer", r["tokens"], s, c)
        if not args.trl_only:
            # As many examples per forward as fill rows_per_forward x seq_len tokens: the same tokens per step.
            per_fwd = max(1, round(args.rows_per_forward * args.seq_len / (sum(lengths) / len(lengths))))
            with tempfile.TemporaryDirectory() as out:
                r, s, c, loss = run_flattening(args.model, texts, args, out, per_fwd, accumulate)
            gc.collect()
            print(f"Trainer + DataCollatorWithFlattening ({per_fwd} examples per forward, {accumulate} forwards "
                  f"per step): {r['tokens']} real tokens (mean row {r['padded'] / max(1, r['rows']):.0f}) in "
                  f"{s:.1f} s = {r['tokens'] / s:.1f} tok/s; CPU {c:.1f} s = {r['tokens'] / c:.1f} tok/CPU-s "
                  f"(loss {loss[0]:.3f} -> {loss[1]:.3f})", flush=True)
            versus("Trainer + DataCollatorWithFlattening", r["tokens"], s, c)
    if args.full_logits:
        from genmodes.models import lm_loss

        tiled = lm_loss._parts
        lm_loss._parts = lambda model: None  # the plain path: full (tokens x vocabulary) logits
        try:
            f_tokens, f_s, f_cpu, f_info = run_ours(args.model, texts, args, args.seq_len)
        finally:
            lm_loss._parts = tiled
        gc.collect()
        print(f"genmodes packed loop, full logits (seq_len {args.seq_len}): {f_tokens} real tokens in {f_s:.1f} s "
              f"= {f_tokens / f_s:.1f} tok/s; CPU {f_cpu:.1f} s = {f_tokens / f_cpu:.1f} tok/CPU-s "
              f"(loss {f_info['loss_curve'][0][1]:.3f} -> {f_info['loss_curve'][-1][1]:.3f})", flush=True)
        versus("ours with full logits", f_tokens, f_s, f_cpu)
    if args.trl_only:
        return
    with tempfile.TemporaryDirectory() as out:
        hf_tokens, hf_s, hf_cpu, hf_padded = run_trainer(args.model, texts, args, out)
    gc.collect()
    hf_rate = hf_tokens / hf_s
    width = hf_padded / (args.steps * args.batch_size)
    print(f"Trainer + DataCollatorForLanguageModeling (pad to longest): {hf_tokens} real tokens "
          f"({hf_tokens / hf_padded:.0%} of {hf_padded} computed; mean row {width:.1f}) in {hf_s:.1f} s "
          f"= {hf_rate:.1f} tok/s; CPU {hf_cpu:.1f} s = {hf_tokens / hf_cpu:.1f} tok/CPU-s", flush=True)
    if args.matched:
        # Same tokens computed per step as the baseline: isolates the padding saved from the bigger steps.
        seq = max(8, round(width))
        m_tokens, m_s, _, _ = run_ours(args.model, texts, args, seq)  # wall time, as the main line
        print(f"genmodes packed loop at the baseline's row width (seq_len {seq}): {m_tokens} real tokens in "
              f"{m_s:.1f} s = {m_tokens / m_s:.1f} tok/s ({m_tokens / m_s / hf_rate:.1f}x)", flush=True)
    # On a shared machine wall time depends on the neighbours' load; CPU time (one thread) much less.
    print(f"speedup by CPU time: {(our_tokens / our_cpu) / (hf_tokens / hf_cpu):.1f}x")
    print(f"speedup: {our_rate / hf_rate:.1f}x")


if __name__ == "__main__":
    main()
