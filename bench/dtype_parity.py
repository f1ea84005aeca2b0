"""Benchmark: the scorer's parity across devices and precisions (its agreement with the fp32 CPU
reference, per dtype).

Scores the headline study's questions (the reversal_curse family at the headline's settings, every
question, each in its own context as the pretrained condition scores it) with one model:

- reference: fp32 on the CPU (the precision every CPU number in the docs uses);
- each other variant: fp32 / bf16 (mixed: fp32 weights, bf16 products under ``torch.autocast``, as
  ``genmodes run --dtype bf16`` does) on each device present.

For each variant it prints the accuracy, the share of questions whose chosen option equals the
reference's, the largest and the mean absolute difference of a choice's summed log-probability, and
the scoring time as a ratio to the reference's (same process).

    python bench/dtype_parity.py [--model smollm2-135m] [--devices cpu,cuda] [--threads 4]
    python bench/dtype_parity.py --quick     # tiny-random on the CPU: checks the bench runs (seconds)
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def main() -> None:
    import torch

    from genmodes.data.families import make_dataset
    from genmodes.models import load_model, precision
    from genmodes.scoring import Scorer, chosen

    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="smollm2-135m")
    ap.add_argument("--devices", default="cpu,cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--quick", action="store_true", help="tiny-random on the CPU, one thread (seconds)")
    args = ap.parse_args()
    if args.quick:
        args.model, args.devices, args.threads = "tiny-random", "cpu", 1
    torch.set_num_threads(args.threads)

    ds = make_dataset("reversal_curse", seed=0, overrides={"n_people_a": 10, "n_people_d": 0, "n_people_b": 10,
                                                           "n_paraphrases": 2, "n_test_paraphrases": 3})
    requests = [(q.context, q.choices) for q in ds.questions]
    runs: dict[str, tuple[list, float]] = {}
    for device in args.devices.split(","):
        for dtype in ("fp32", "bf16"):
            model, tok = load_model(args.model, device=device)
            scorer = Scorer(model, tok)
            with precision(dtype, device):
                scorer.score(requests[:2], progress=False)  # warm-up (kernels, caches)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                scores = scorer.score(requests, progress=False)
                if device.startswith("cuda"):
                    torch.cuda.synchronize()
                runs[f"{device}/{dtype}"] = (scores, time.perf_counter() - t0)
            del model, scorer
    ref_scores, ref_t = runs["cpu/fp32"] if "cpu/fp32" in runs else next(iter(runs.values()))
    ref_pick = [chosen(s) for s in ref_scores]
    print(f"model {args.model}, {len(requests)} questions ({ds.family}, headline settings); "
          f"reference cpu/fp32; torch {torch.__version__}"
          + (f"; GPU {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""))
    print(f"{'variant':<12} {'accuracy':>8} {'same pick':>9} {'max |dlogp|':>11} {'mean |dlogp|':>12} {'time ratio':>10}")
    for name, (scores, t) in runs.items():
        picks = [chosen(s) for s in scores]
        acc = sum(p == q.answer for p, q in zip(picks, ds.questions)) / len(picks)
        same = sum(a == b for a, b in zip(picks, ref_pick)) / len(picks)
        diffs = [abs(a.logprob - b.logprob) for s, r in zip(scores, ref_scores) for a, b in zip(s, r)]
        print(f"{name:<12} {acc:>8.1%} {same:>9.1%} {max(diffs):>11.4f} {sum(diffs) / len(diffs):>12.5f} "
              f"{t / ref_t:>10.2f}")


if __name__ == "__main__":
    main()
