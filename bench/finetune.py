"""Benchmark: our packed fine-tuning loop vs transformers' ``Trainer`` on short facts.

Setting: the bundled model and 200 one-sentence facts (``simple_reversals`` documents split into
sentences: fact statements and context lines, 8-20 tokens each). Both run in this process, on the
same thread count, with the same model weights, batch size, learning rate, gradient clipping and
number of optimizer steps:

- ours (:func:`genmodes.conditions.finetune.train`): examples + EOS packed into full ``seq_len`` rows;
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

    .venv/bin/python bench/finetune.py [--model smollm2-135m] [--steps 5] [--batch-size 16]
                                       [--seq-len 256] [--threads 1] [--matched]
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def facts(n: int = 200, seed: int = 0) -> list[str]:
    from genmodes.conditions.finetune import examples_from_texts
    from genmodes.data.families import make_dataset

    ds = make_dataset("simple_reversals", seed, {"n_facts": max(1, (n + 1) // 2), "articles_per_fact": 1})
    return [t for _, t in examples_from_texts([d.text for d in ds.documents], "independent")][:n]


def run_ours(model_spec: str, texts: list[str], args: argparse.Namespace, seq_len: int) -> tuple[int, float, float, dict]:
    """(real tokens, loop seconds, process CPU seconds, info)."""
    from genmodes.conditions.finetune import Settings, train
    from genmodes.models import load_model

    model, tok = load_model(model_spec, device="cpu")
    s = Settings(steps=args.steps, batch_size=args.batch_size, seq_len=seq_len, lr=args.lr, warmup_steps=0)
    c0 = time.process_time()
    _, info = train(model, tok, texts, s, seed=0, progress=False)
    cpu = time.process_time() - c0
    return info["tokens_seen"], info["train_seconds"], cpu, info


def run_trainer(model_spec: str, texts: list[str], args: argparse.Namespace, outdir: str) -> tuple[int, float, float, int]:
    from datasets import Dataset, disable_progress_bars
    from transformers import DataCollatorForLanguageModeling, Trainer, TrainingArguments

    from genmodes.models import load_model

    model, tok = load_model(model_spec, device="cpu")
    disable_progress_bars()
    ds = Dataset.from_dict({"text": texts}).map(lambda b: tok(b["text"]), batched=True, remove_columns=["text"])
    real = {"tokens": 0, "padded": 0}

    def count(module, args, kwargs):  # tokens of every training forward: the attention mask's ones, and all
        if module.training:
            real["tokens"] += int(kwargs["attention_mask"].sum())
            real["padded"] += kwargs["attention_mask"].numel()

    model.register_forward_pre_hook(count, with_kwargs=True)
    targs = TrainingArguments(output_dir=outdir, per_device_train_batch_size=args.batch_size, max_steps=args.steps,
                              learning_rate=args.lr, lr_scheduler_type="linear", warmup_steps=0, weight_decay=0.0,
                              max_grad_norm=1.0, logging_strategy="no", save_strategy="no", report_to=[], use_cpu=True,
                              dataloader_num_workers=0, seed=0, disable_tqdm=True)
    trainer = Trainer(model=model, args=targs, train_dataset=ds,
                      data_collator=DataCollatorForLanguageModeling(tokenizer=tok, mlm=False))
    c0 = time.process_time()
    metrics = trainer.train().metrics
    cpu = time.process_time() - c0
    # Trainer's own train_runtime leaves out its setup, as ours leaves out tokenizing and packing.
    return real["tokens"], float(metrics["train_runtime"]), cpu, real["padded"]


def main() -> None:
    import tempfile

    import torch

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--facts", type=int, default=200)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--matched", action="store_true",
                    help="also time ours with seq_len = the baseline's mean padded row (same compute per step)")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    texts = facts(args.facts)
    print(f"model {args.model}, {len(texts)} facts, batch {args.batch_size}, {args.steps} steps each, "
          f"{args.threads} thread(s)", flush=True)
    with tempfile.TemporaryDirectory() as out:
        hf_tokens, hf_s, hf_cpu, hf_padded = run_trainer(args.model, texts, args, out)
    hf_rate = hf_tokens / hf_s
    width = hf_padded / (args.steps * args.batch_size)
    print(f"Trainer + DataCollatorForLanguageModeling (pad to longest): {hf_tokens} real tokens "
          f"({hf_tokens / hf_padded:.0%} of {hf_padded} computed; mean row {width:.1f}) in {hf_s:.1f} s "
          f"= {hf_rate:.1f} tok/s; CPU {hf_cpu:.1f} s = {hf_tokens / hf_cpu:.1f} tok/CPU-s", flush=True)
    matched = None
    if args.matched:
        # Same tokens computed per step as the baseline: isolates the padding saved from the bigger steps.
        seq = max(8, round(width))
        m_tokens, m_s, _, _ = run_ours(args.model, texts, args, seq)  # wall time, as the main line
        matched = m_tokens / m_s / hf_rate
        print(f"genmodes packed loop at the baseline's row width (seq_len {seq}): {m_tokens} real tokens in "
              f"{m_s:.1f} s = {m_tokens / m_s:.1f} tok/s ({matched:.1f}x)", flush=True)
    our_tokens, our_s, our_cpu, info = run_ours(args.model, texts, args, args.seq_len)
    our_rate = our_tokens / our_s
    print(f"genmodes packed loop (seq_len {args.seq_len}): {our_tokens} real tokens in {our_s:.1f} s "
          f"= {our_rate:.1f} tok/s; CPU {our_cpu:.1f} s = {our_tokens / our_cpu:.1f} tok/CPU-s "
          f"(loss {info['loss_curve'][0][1]:.3f} -> {info['loss_curve'][-1][1]:.3f})")
    # On a shared machine wall time depends on the neighbours' load; CPU time (one thread) much less.
    print(f"speedup by CPU time: {(our_tokens / our_cpu) / (hf_tokens / hf_cpu):.1f}x")
    print(f"speedup: {our_rate / hf_rate:.1f}x")


if __name__ == "__main__":
    main()
