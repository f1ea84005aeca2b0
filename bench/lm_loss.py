"""Benchmark: the tiled LM-head loss (``genmodes.models.lm_loss``) vs cross-entropy over the full logits.

One fine-tuning forward + backward of the bundled model on 16 packed 256-token rows (the default
fine-tuning shape: the whole batch in one forward), twice per variant; each variant in its own
process, so its peak resident memory is its own. Prints process CPU seconds per forward + backward
and the peak RSS of each, then the ratios (full / tiled).

    OMP_NUM_THREADS=1 .venv/bin/python bench/lm_loss.py            # both variants, one after the other
    OMP_NUM_THREADS=1 .venv/bin/python bench/lm_loss.py tiled      # one variant
    python bench/lm_loss.py --quick     # tiny-random, 4 rows of 64 tokens: checks the bench runs (seconds)
"""

from __future__ import annotations

import os
import re
import resource
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def one(variant: str, quick: bool = False) -> None:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from finetune import facts

    from genmodes.training.finetune import _collate, encode_examples, examples_from_texts, pack
    from genmodes.models import lm_loss, load_model

    spec, rows, width = ("tiny-random", 4, 64) if quick else ("smollm2-135m", 16, 256)
    model, tok = load_model(spec, device="cpu")
    enc = encode_examples(tok, examples_from_texts(facts(600), "none"))
    b = _collate(list(pack(enc, width, tok.eos_token_id))[:rows], "cpu")
    if variant == "full":
        lm_loss._parts = lambda m: None  # the plain path: full (tokens x vocabulary) logits
    model.train()
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(2):
        model.zero_grad(set_to_none=True)
        c = time.process_time()
        lm_loss.loss_sum(model, b["input_ids"], b["position_ids"], b["labels"]).backward()
        times.append(time.process_time() - c)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"{variant}: rows {tuple(b['input_ids'].shape)} CPU s per forward+backward "
          f"{' '.join(f'{t:.1f}' if t >= 1 else f'{t:.4f}' for t in times)}; peak RSS {peak / 2**20:.2f} GB (model loaded: {base / 2**20:.2f} GB)",
          flush=True)


def main() -> None:
    args = sys.argv[1:]
    quick = "--quick" in args
    args = [a for a in args if a != "--quick"]
    if args:
        if len(args) > 1 or args[0] not in ("tiled", "full"):
            sys.exit("usage: bench/lm_loss.py [--quick] [tiled|full]")
        return one(args[0], quick)
    got = {}
    for v in ("tiled", "full"):
        line = subprocess.run([sys.executable, __file__, v] + (["--quick"] if quick else []), check=True,
                              capture_output=True, text=True).stdout.strip()
        print(line, flush=True)
        cpu = min(float(x) for x in re.search(r"forward\+backward ([\d. ]+);", line).group(1).split())
        got[v] = (cpu, float(re.search(r"peak RSS ([\d.]+) GB", line).group(1)))
    print(f"full / tiled: CPU time {got['full'][0] / got['tiled'][0]:.2f}x, peak RSS {got['full'][1] / got['tiled'][1]:.2f}x")


if __name__ == "__main__":
    main()
